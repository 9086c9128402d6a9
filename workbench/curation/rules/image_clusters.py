"""``{image_clusters: imagenet_train.npy, k: 1000}``: DataComp's image-based filter: k-means of the
image embeddings, keeping the clusters nearest a reference (embeddings, prompts or class names)."""
from __future__ import annotations

from pathlib import Path

import polars as pl

from workbench.curation.rules.base import RuleKind, check_int, check_word_source, digest, strings
from workbench.errors import RecipeError


class ImageClustersRule(RuleKind):
    key = "image_clusters"
    settings = frozenset({"k", "sample", "seed", "template"})
    scorer_names = ("image_clusters",)
    file_params = {"image_clusters": ("path", "mapping")}

    @classmethod
    def check(cls, p):
        check_word_source(p["image_clusters"], "image_clusters",
                          "a reference: REF.npy (embeddings), a list of prompts, or {list: imagenet-1k} / "
                          "{file: CLASSES.txt} (class names put into `template`)")
        check_int(p, "k", 2, "image_clusters")
        check_int(p, "sample", 2, "image_clusters")
        check_int(p, "seed", 0, "image_clusters")
        if "template" in p and (not isinstance(p["template"], str) or "{}" not in p["template"]):
            raise RecipeError("image_clusters: template must be a string holding {} (e.g. 'a photo of a {}.')")

    @classmethod
    def request(cls, p) -> dict:
        """The score request without its column (the column is named by its digest)."""
        v = p["image_clusters"]
        req = {"scorer": "image_clusters", "k": p.get("k"), "sample": p.get("sample"), "seed": p.get("seed", 0)}
        if isinstance(v, dict):
            req.update(names=v.get("list") or v["file"], template=p.get("template", "a photo of a {}."))
        else:
            v = strings(v, "image_clusters")
            if all(x.endswith(".npy") for x in v):
                req["files"] = v
            else:
                req["texts"] = v
        return req

    @classmethod
    def name(cls, p):
        v = p["image_clusters"]
        what = (v.get("list") or Path(v["file"]).name) if isinstance(v, dict) else (
            ", ".join(strings(v, "image_clusters")[:2]) + ("..." if len(strings(v, "image_clusters")) > 2 else ""))
        return f"image cluster near {what}" + (f" (k={p['k']})" if "k" in p else "")

    @classmethod
    def columns(cls, p):
        col = "imgclust_" + digest(cls.request(p))
        return [col, col + "_near"]

    @classmethod
    def keep(cls, p, base: Path | None = None):
        return pl.col(cls.columns(p)[1])

    @classmethod
    def score_requests(cls, p):
        return [{**cls.request(p), "column": cls.columns(p)[0]}]

    @classmethod
    def scorer(cls, request, collection, encoder=None, base=None, device="auto"):
        from workbench.map.clusters import ReferenceClusterScorer

        return ReferenceClusterScorer(request["column"], k=request.get("k"), files=request.get("files"),
                                      texts=request.get("texts"), names=request.get("names"),
                                      template=request.get("template", "a photo of a {}."),
                                      sample=request.get("sample"), seed=request.get("seed", 0), encoder=encoder,
                                      base=base)

    @classmethod
    def needs_text_encoder(cls, request):
        return not request.get("files")
