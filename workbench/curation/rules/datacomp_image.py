"""``{datacomp_image: small}``: DataComp's image-based baseline as its code runs it
(:mod:`workbench.curation.datacomp`): DataComp's caption pre-filter, and a stored image embedding whose
nearest centroid (DataComp's published centroids of a scale: small, medium, large, xlarge; or a
``.npy`` of your own) is the nearest centroid of some reference row (``reference``: ``imagenet-1k``,
DataComp's ImageNet-1k ViT-L/14 image features, the default; or ``.npy`` files)."""
from __future__ import annotations

from pathlib import Path

import polars as pl

from workbench.curation.rules.base import RuleKind, digest, strings
from workbench.errors import RecipeError

SCALES = ("small", "medium", "large", "xlarge")


class DataCompImageRule(RuleKind):
    key = "datacomp_image"
    settings = frozenset({"reference"})
    scorer_names = ("datacomp_image", "datacomp_caption")
    file_params = {"datacomp_image": ("path",), "reference": ("path",)}

    @classmethod
    def check(cls, p):
        v = p["datacomp_image"]
        if not isinstance(v, str) or (v not in SCALES and Path(v).suffix not in (".npy", ".pt")):
            raise RecipeError(f"datacomp_image: give DataComp's centroids by scale ({', '.join(SCALES)}) or a "
                              "CENTROIDS.npy file")
        ref = p.get("reference", "imagenet-1k")
        if ref != "imagenet-1k" and not all(Path(x).suffix == ".npy" for x in strings(ref, "datacomp_image: reference")):
            raise RecipeError("datacomp_image: reference is imagenet-1k or .npy file(s) of image embeddings")

    @classmethod
    def name(cls, p):
        v = p["datacomp_image"]
        return f"DataComp image-based ({v if v in SCALES else Path(v).name} centroids)"

    @classmethod
    def request(cls, p) -> dict:
        return {"scorer": "datacomp_image", "centroids": p["datacomp_image"],
                "reference": p.get("reference", "imagenet-1k")}

    @classmethod
    def columns(cls, p):
        col = "dcimg_" + digest(cls.request(p))
        return ["datacomp_caption", col + "_near"]

    @classmethod
    def keep(cls, p, base: Path | None = None):
        caption, near = cls.columns(p)
        return (pl.col(caption) & pl.col(near)).fill_null(False)

    @classmethod
    def score_requests(cls, p):
        return [{"scorer": "datacomp_caption", "column": "datacomp_caption"},
                {**cls.request(p), "column": cls.columns(p)[1][:-len("_near")]}]

    @classmethod
    def scorer(cls, request, collection, encoder=None, base=None, device="auto"):
        from workbench.curation.datacomp import DataCompCaptionScorer, DataCompImageScorer

        if request["scorer"] == "datacomp_caption":
            return DataCompCaptionScorer()
        return DataCompImageScorer(request["column"], request["centroids"], request["reference"], base)
