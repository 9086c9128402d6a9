"""``{caption_synsets: imagenet-21k}``: DataComp's text-based filter. A row is kept when a word of its
caption (``str.split()``) has, as its first WordNet 3.0 synset (``wordnet.synsets(word)[0]``, NLTK
3.8.1's look-up), one of the list's synsets: ``imagenet-21k`` (the 21,843 synsets DataComp matches:
timm's ``imagenet21k_goog_synsets.txt``, sha256-checked) or a file of synset ids (``n01440764``, one a
line, relative to the recipe's folder). Needs the WordNet 3.0 database: see
:mod:`workbench.curation.wordnet`."""
from __future__ import annotations

from pathlib import Path

import polars as pl

from workbench.curation.rules.base import RuleKind, digest
from workbench.errors import RecipeError

NAMED_SYNSETS = ("imagenet-21k",)


class CaptionSynsetsRule(RuleKind):
    key = "caption_synsets"
    scorer_names = ("caption_synsets",)
    file_params = {"caption_synsets": ("path",)}

    @classmethod
    def check(cls, p):
        v = p["caption_synsets"]
        if not isinstance(v, str) or not v.strip() or (v not in NAMED_SYNSETS and not Path(v).suffix):
            raise RecipeError("caption_synsets: give a named synset list (imagenet-21k) or a file of synset ids "
                              "(SYNSETS.txt, one id such as n01440764 a line)")

    @classmethod
    def name(cls, p):
        v = p["caption_synsets"]
        return f"caption names a synset of {v if v in NAMED_SYNSETS else Path(v).name}"

    @classmethod
    def columns(cls, p):
        return ["synsets_" + digest({"caption_synsets": p["caption_synsets"]})]

    @classmethod
    def keep(cls, p, base: Path | None = None):
        return pl.col(cls.columns(p)[0]).fill_null(False)

    @classmethod
    def score_requests(cls, p):
        return [{"scorer": "caption_synsets", "synsets": p["caption_synsets"], "column": cls.columns(p)[0]}]

    @classmethod
    def scorer(cls, request, collection, encoder=None, base=None, device="auto"):
        from workbench.curation.wordnet import CaptionSynsetScorer

        return CaptionSynsetScorer(request["column"], request["synsets"], base)
