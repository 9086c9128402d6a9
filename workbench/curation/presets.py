"""The presets: the rules of the releases (REFERENCE.md §2), as recipe mappings.

:func:`workbench.curation.recipe.preset` makes one a :class:`~workbench.curation.recipe.Recipe`.

A ``datacomp-*`` preset reproduces DataComp's own code (``baselines/apply_filter.py``) row for row on
the same inputs: it reads DataComp's metadata columns (``clip_b32_similarity_score``,
``clip_l14_similarity_score``) whatever model the pool was opened with, and refuses where an input
is missing (gcld3, WordNet, DataComp's published centroids) rather than substitute another. The
``workbench-*`` presets are the workbench's own versions of the same ideas, which run on any
collection (docs/recipes.md#presets lists what each differs in).
"""
from __future__ import annotations

# DataComp's cut of a top fraction: the (floor(n*f)+1)-th largest score over all rows, ties kept
_DC_TOP30_L14 = {"top_fraction": 0.30, "by": "clip_l14_similarity_score", "cut": "datacomp"}
# the workbench's caption filter (basic's text rules), used by its own text- and image-based presets
_CAPTION = ({"language": ["en"]}, {"caption_length": {"min_words": 3, "min_chars": 6}})

PRESETS: dict[str, dict] = {
    "laion400m": {
        "name": "laion400m",
        "description": "LAION-400M (ViT-B/32): alt-text >= 5 chars, exact (url, caption) dedup, similarity >= 0.30, "
                       "and the zero-shot NSFW tag's under-age/animal drops (NSFW-tagged rows were kept, tagged). "
                       "The 5 KB image-size rule needs file sizes, which embedding shards do not carry.",
        "rules": [
            {"caption_length": {"min_chars": 5}},
            {"dedup": "exact", "columns": ["url", "caption"]},
            {"column": "similarity", "min": 0.30},
            {"zero_shot": "laion400m-nsfw"},
        ],
    },
    "laion2b-en": {
        "name": "laion2b-en",
        "description": "LAION-2B-en: alt-text >= 5 chars, exact (url, caption) dedup, ViT-B/32 similarity >= 0.28 "
                       "(laion2B-multi used 0.26 with multilingual CLIP)",
        "rules": [
            {"caption_length": {"min_chars": 5}},
            {"dedup": "exact", "columns": ["url", "caption"]},
            {"column": "similarity", "min": 0.28},
        ],
    },
    "laion-aesthetics": {
        "name": "laion-aesthetics",
        "description": "LAION-Aesthetics V2: punsafe < 0.5, pwatermark < 0.8, and the improved aesthetic predictor "
                       "(ViT-L/14) >= 5 (the 5+ subset; the release also cut at 6, 6.25 and 6.5)",
        "rules": [
            {"column": "punsafe", "below": 0.5},
            {"column": "pwatermark", "below": 0.8},
            {"head": "aesthetic-v2-l14", "min": 5.0},
        ],
    },
    "datacomp-basic": {
        "name": "datacomp-basic",
        "description": "DataComp basic: English caption (fastText language ID), caption > 2 words (str.split) and "
                       "> 5 chars, min image side >= 200 px, aspect ratio <= 3",
        "rules": [*_CAPTION, {"image_size": {"min_side": 200, "max_aspect": 3}}],
    },
    "datacomp-clip-score": {
        "name": "datacomp-clip-score",
        "description": "DataComp clip_score (--arch l14 --fraction 0.3): DataComp's ViT-L/14 score >= its top-30% "
                       "threshold (the (floor(0.3 n)+1)-th largest over all rows; ties kept)",
        "rules": [_DC_TOP30_L14],
    },
    "datacomp-clip-score-b32": {
        "name": "datacomp-clip-score-b32",
        "description": "DataComp clip_score, ViT-B/32 variant (--arch b32 --threshold 0.25): DataComp's B/32 score "
                       ">= 0.25",
        "rules": [{"column": "clip_b32_similarity_score", "min": 0.25}],
    },
    "datacomp-laion2b": {
        "name": "datacomp-laion2b",
        "description": "DataComp's LAION-2B filter: English caption by gcld3 (CLD3) and DataComp's B/32 score >= 0.28 "
                       "(needs the gcld3 extra: pip install 'laion-workbench[gcld3]')",
        "rules": [{"language": ["en"], "detector": "gcld3"}, {"column": "clip_b32_similarity_score", "min": 0.28}],
    },
    "datacomp-text-based": {
        "name": "datacomp-text-based",
        "description": "DataComp text-based: English caption (fastText) with a word whose first WordNet synset is an "
                       "ImageNet-21k synset (needs the WordNet 3.0 database)",
        "rules": [{"language": ["en"]}, {"caption_synsets": "imagenet-21k"}],
    },
    "datacomp-image-based": {
        "name": "datacomp-image-based",
        "description": "DataComp image-based (--image_based_scale small): DataComp's caption pre-filter, and an L/14 "
                       "image embedding whose nearest published small-scale centroid is the nearest of some "
                       "ImageNet-1k train image (needs DataComp's centroid and ImageNet feature files)",
        "rules": [{"datacomp_image": "small"}],
    },
    "datacomp-image-clip-score": {
        "name": "datacomp-image-clip-score",
        "description": "DataComp-1B's recipe (image_based_intersect_clip_score, small centroids, --arch l14 "
                       "--fraction 0.3): image-based AND DataComp's ViT-L/14 top-30% cut over all rows",
        "rules": [{"datacomp_image": "small"}, _DC_TOP30_L14],
    },
    # -- the workbench's own versions: run on any collection, and say what they change -------------------------------
    "workbench-clip-score": {
        "name": "workbench-clip-score",
        "description": "The top 30% by the collection's similarity column: exactly ceil(0.3 x finite rows) rows, ties "
                       "to the earlier row (for DataComp's cut on a DataComp pool use datacomp-clip-score)",
        "rules": [{"top_fraction": 0.30, "by": "similarity"}],
    },
    "workbench-laion2b": {
        "name": "workbench-laion2b",
        "description": "English caption by fastText (not gcld3) and similarity >= 0.28 on the collection's own scores "
                       "(DataComp's exact baseline is datacomp-laion2b)",
        "rules": [{"language": ["en"]}, {"column": "similarity", "min": 0.28}],
    },
    "workbench-text-based": {
        "name": "workbench-text-based",
        "description": "English captions of > 2 words and > 5 chars that name one of ImageNet-1k's 1,000 class names "
                       "(whole words, any case); no WordNet needed (DataComp's exact baseline is datacomp-text-based)",
        "rules": [*_CAPTION, {"caption_keywords": {"list": "imagenet-1k"}, "action": "keep"}],
    },
    "workbench-image-based": {
        "name": "workbench-image-based",
        "description": "English captions of > 2 words and > 5 chars, and an image in a spherical k-means cluster "
                       "(k = rows/128, at most 100,000, all rows) nearest to the text embedding of 'a photo of a "
                       "{class}.' for ImageNet-1k's classes; no published files needed (DataComp's exact baseline is "
                       "datacomp-image-based)",
        "rules": [*_CAPTION, {"image_clusters": {"list": "imagenet-1k"}}],
    },
    "workbench-image-clip-score": {
        "name": "workbench-image-clip-score",
        "description": "workbench-image-based AND the top 30% by the collection's similarity (ranked over all rows)",
        "rules": [*_CAPTION, {"image_clusters": {"list": "imagenet-1k"}}, {"top_fraction": 0.30, "by": "similarity"}],
    },
}
