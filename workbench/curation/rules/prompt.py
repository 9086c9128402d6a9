"""``{prompt: "a watermark", max: 0.25}``: cosine of each embedding with prompts (text, or a stored
``.npy`` with ``prompt_embedding:``), optionally minus negatives, thresholded."""
from __future__ import annotations

from pathlib import Path

import polars as pl

from workbench.curation.rules.base import BOUNDS, RuleKind, bounded, bounds_name, check_bounds, digest, strings
from workbench.errors import RecipeError


class PromptRule(RuleKind):
    key = "prompt"
    aliases = ("prompt_embedding",)
    settings = frozenset({"negatives", "reduce", "embeddings", *BOUNDS})
    threshold = True
    rankable = True
    scorer_names = ("prompt",)
    file_params = {"prompt_embedding": ("path",)}

    @classmethod
    def check(cls, p):
        if "prompt" in p and "prompt_embedding" in p:
            raise RecipeError("a prompt rule takes `prompt:` (text) or `prompt_embedding:` (a .npy file), not both")
        if "prompt" in p:
            strings(p["prompt"], "prompt")
        else:
            strings(p["prompt_embedding"], "prompt_embedding")
        if "negatives" in p:
            strings(p["negatives"], "negatives")
        if p.get("reduce", "max") not in ("max", "mean"):
            raise RecipeError(f"prompt: reduce must be max or mean, got {p['reduce']!r}")
        if p.get("embeddings", "image") not in ("image", "text"):
            raise RecipeError(f"prompt: embeddings must be image or text, got {p['embeddings']!r}")
        check_bounds(p, "prompt")

    @classmethod
    def request(cls, p) -> dict:
        """The score request without its column (the column is named by its digest)."""
        req = {"scorer": "prompt", "reduce": p.get("reduce", "max"), "embeddings": p.get("embeddings", "image")}
        if "prompt" in p:
            req["texts"] = strings(p["prompt"], "prompt")
        else:
            req["files"] = strings(p["prompt_embedding"], "prompt_embedding")
        if "negatives" in p:
            req["negatives"] = strings(p["negatives"], "negatives")
        return req

    @classmethod
    def name(cls, p):
        v = p.get("prompt", p.get("prompt_embedding"))
        v = v if isinstance(v, list) else [v]
        label = ", ".join(repr(t) for t in v[:2]) + (f" +{len(v) - 2}" if len(v) > 2 else "")
        label = label if "prompt" in p else "embedding " + label
        if "negatives" in p:
            label += " - " + ", ".join(repr(t) for t in strings(p["negatives"], "negatives")[:2])
        return bounds_name(f"prompt {label}", p, " ")

    @classmethod
    def columns(cls, p):
        return ["prompt_" + digest(cls.request(p))]

    @classmethod
    def keep(cls, p, base: Path | None = None):
        return pl.all_horizontal(bounded(pl.col(cls.columns(p)[0]), p))

    @classmethod
    def score_requests(cls, p):
        return [{**cls.request(p), "column": cls.columns(p)[0]}]

    @classmethod
    def scorer(cls, request, collection, encoder=None, base=None, device="auto"):
        from workbench.scoring.scorers import PromptScorer

        return PromptScorer(request["column"], texts=request.get("texts"), files=request.get("files"),
                            negatives=request.get("negatives"), reduce=request["reduce"],
                            embeddings=request["embeddings"], encoder=encoder, base=base, device=device)

    @classmethod
    def needs_text_encoder(cls, request):
        return bool(request.get("texts") or request.get("negatives"))
