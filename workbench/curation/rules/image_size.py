"""``{image_size: {min_side: 200, max_aspect: 3}}``: bounds on the image's width and height.

A row whose width or height is missing (null, NaN) fails, like a missing value in every rule."""
from __future__ import annotations

from pathlib import Path

import polars as pl

from workbench.curation.rules.base import RuleKind, fmt, num
from workbench.errors import RecipeError

SIZE_KEYS = ("min_side", "min_width", "min_height", "max_aspect")


class ImageSizeRule(RuleKind):
    key = "image_size"

    @classmethod
    def check(cls, p):
        spec = p["image_size"]
        if not isinstance(spec, dict) or not spec or set(spec) - set(SIZE_KEYS):
            raise RecipeError(f"image_size: give a mapping of {', '.join(SIZE_KEYS)}, e.g. {{min_side: 200}}")
        for k, v in spec.items():
            if num(v, f"image_size: {k}") <= 0:
                raise RecipeError(f"image_size: {k} must be > 0")

    @classmethod
    def name(cls, p):
        names = {"min_side": "min side >= {}", "min_width": "width >= {}", "min_height": "height >= {}",
                 "max_aspect": "aspect <= {}"}
        return " & ".join(names[k].format(fmt(float(p["image_size"][k]))) for k in SIZE_KEYS if k in p["image_size"])

    @classmethod
    def columns(cls, p):
        return ["width", "height"]

    @classmethod
    def keep(cls, p, base: Path | None = None):
        spec = p["image_size"]
        w, h = pl.col("width").cast(pl.Float64), pl.col("height").cast(pl.Float64)
        ops = {"min_side": lambda v: pl.min_horizontal(w, h) >= v, "min_width": lambda v: w >= v,
               "min_height": lambda v: h >= v,
               "max_aspect": lambda v: pl.max_horizontal(w, h) / pl.min_horizontal(w, h) <= v}
        # polars' min/max_horizontal skip nulls: a row must have both sides (finite) to pass any bound
        known = (w.is_finite() & h.is_finite()).fill_null(False)
        return pl.all_horizontal([known] + [ops[k](float(spec[k])) for k in SIZE_KEYS if k in spec])
