"""The presets: the rules of the releases (REFERENCE.md §2), as recipe mappings.

:func:`workbench.curation.recipe.preset` makes one a :class:`~workbench.curation.recipe.Recipe`."""
from __future__ import annotations


# DataComp's caption filter (basic's text rules), which its text- and image-based baselines apply too
_DATACOMP_CAPTION = ({"language": ["en"]}, {"caption_length": {"min_words": 3, "min_chars": 6}})

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
        "description": "DataComp basic: English caption (fastText language ID), caption > 2 words and > 5 chars, "
                       "min image side >= 200 px, aspect ratio <= 3",
        "rules": [*_DATACOMP_CAPTION, {"image_size": {"min_side": 200, "max_aspect": 3}}],
    },
    "datacomp-clip-score": {
        "name": "datacomp-clip-score",
        "description": "DataComp clip_score: the top 30% by ViT-L/14 image-text cosine (open a DataComp pool with "
                       "model l14; for the ViT-B/32 variant use the preset datacomp-clip-score-b32)",
        "rules": [{"top_fraction": 0.30, "by": "similarity"}],
    },
    "datacomp-laion2b": {
        "name": "datacomp-laion2b",
        "description": "DataComp's LAION-2B filter: English caption (fastText language ID) and ViT-B/32 image-text "
                       "cosine >= 0.28 (open a DataComp pool with model b32)",
        "rules": [{"language": ["en"]}, {"column": "similarity", "min": 0.28}],
    },
    "datacomp-text-based": {
        "name": "datacomp-text-based",
        "description": "DataComp text-based: English captions of > 2 words and > 5 chars that name an ImageNet class "
                       "(whole words, any case). DataComp matched ImageNet-21k synset names; this list is "
                       "ImageNet-1k's 1,000 class names (give your own with caption_keywords: {file: WORDS.txt})",
        "rules": [*_DATACOMP_CAPTION, {"caption_keywords": {"list": "imagenet-1k"}, "action": "keep"}],
    },
    "datacomp-image-based": {
        "name": "datacomp-image-based",
        "description": "DataComp image-based: English captions of > 2 words and > 5 chars, and an image in a k-means "
                       "cluster (k = rows/128, at most 100,000) that is the nearest centroid of some ImageNet "
                       "reference. DataComp used ImageNet-1k train image embeddings and clustered after the caption "
                       "filter; this preset uses the text embeddings of 'a photo of a {class}.' for the 1,000 classes "
                       "and clusters all rows (give image embeddings with image_clusters: REF.npy)",
        "rules": [*_DATACOMP_CAPTION, {"image_clusters": {"list": "imagenet-1k"}}],
    },
    "datacomp-image-clip-score": {
        "name": "datacomp-image-clip-score",
        "description": "DataComp-1B's recipe: image-based AND clip_score (top 30% by ViT-L/14 image-text cosine, "
                       "ranked over all rows)",
        "rules": [*_DATACOMP_CAPTION, {"image_clusters": {"list": "imagenet-1k"}},
                  {"top_fraction": 0.30, "by": "similarity"}],
    },
    "datacomp-clip-score-b32": {
        "name": "datacomp-clip-score-b32",
        "description": "DataComp clip_score, ViT-B/32 variant: image-text cosine >= 0.25 (open the pool with model b32)",
        "rules": [{"column": "similarity", "min": 0.25}],
    },
}
