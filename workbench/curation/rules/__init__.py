"""The rule kinds of recipes: one module per kind, each holding one :class:`~.base.RuleKind` subclass.

:data:`KINDS` is the registry: every kind a recipe may use. A rule mapping's kind is the first of
its keys that is some kind's key or alias (:func:`kind_of`); a mapping naming two kinds is refused.
To add a kind, write one module here with one class and list it in :data:`KINDS` (or call
:func:`register` from elsewhere, e.g. a test or a plugin).
"""
from __future__ import annotations

from workbench.curation.rules.base import BOUNDS, RuleKind
from workbench.curation.rules.caption_keywords import CaptionKeywordsRule
from workbench.curation.rules.caption_length import CaptionLengthRule
from workbench.curation.rules.caption_regex import CaptionRegexRule
from workbench.curation.rules.caption_synsets import CaptionSynsetsRule
from workbench.curation.rules.column import ColumnRule
from workbench.curation.rules.datacomp_image import DataCompImageRule
from workbench.curation.rules.dedup import DedupRule
from workbench.curation.rules.drop_rows import DropRowsRule
from workbench.curation.rules.head import HeadRule, head_column
from workbench.curation.rules.image_clusters import ImageClustersRule
from workbench.curation.rules.image_size import ImageSizeRule
from workbench.curation.rules.keep_rows import KeepRowsRule
from workbench.curation.rules.language import LanguageRule
from workbench.curation.rules.prompt import PromptRule
from workbench.curation.rules.top_fraction import TopFractionRule
from workbench.curation.rules.zero_shot import ZERO_SHOT, ZeroShotRule
from workbench.errors import ArgumentTypeError, ConfigError, RecipeError

KINDS: list[type[RuleKind]] = [
    ColumnRule, PromptRule, HeadRule, ZeroShotRule, DedupRule, TopFractionRule, CaptionLengthRule,
    CaptionRegexRule, CaptionKeywordsRule, ImageSizeRule, LanguageRule, ImageClustersRule, DropRowsRule, KeepRowsRule,
    CaptionSynsetsRule, DataCompImageRule,
]

__all__ = ["BOUNDS", "KINDS", "RuleKind", "ZERO_SHOT", "head_column", "kind_keys", "kind_named", "kind_of",
           "kind_for_scorer", "register", *(k.__name__ for k in KINDS)]


def kind_keys() -> dict[str, type[RuleKind]]:
    """Every key that names a kind (keys and aliases) -> its class."""
    return {k: cls for cls in KINDS for k in (cls.key, *cls.aliases)}


def kind_named(key: str) -> type[RuleKind]:
    """The registered class whose key is `key`."""
    for cls in KINDS:
        if cls.key == key:
            return cls
    raise RecipeError(f"no rule kind {key!r}")


def kind_of(d: dict) -> type[RuleKind]:
    """The kind of a rule mapping: the first of its keys that names a kind."""
    keys = kind_keys()
    kinds = [keys[k] for k in d if k in keys]
    if not kinds:
        raise RecipeError(f"a rule names its kind by its first key: one of {', '.join(sorted(keys))}; "
                          f"got keys {sorted(map(str, d))}")
    if len({k.key for k in kinds}) > 1:
        raise RecipeError(f"a rule has one kind; this one names {sorted({k.key for k in kinds})}")
    return kinds[0]


def kind_for_scorer(scorer: str) -> type[RuleKind] | None:
    """The kind whose score requests name `scorer` (see :attr:`RuleKind.scorer_names`), or None."""
    return next((cls for cls in KINDS if scorer in cls.scorer_names), None)


def register(cls: type[RuleKind]) -> type[RuleKind]:
    """Add a kind to :data:`KINDS` (usable as a class decorator); a key or alias already taken is refused."""
    if not (isinstance(cls, type) and issubclass(cls, RuleKind)) or not cls.key:
        raise ArgumentTypeError("a rule kind is a RuleKind subclass with a key")
    taken = set(kind_keys()) & {cls.key, *cls.aliases}
    if taken and cls not in KINDS:
        raise ConfigError(f"rule kind key(s) {sorted(taken)} already taken")
    if cls not in KINDS:
        KINDS.append(cls)
    return cls
