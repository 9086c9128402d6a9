"""Word and class-name lists for recipes: a named list shipped by a library, or a text file.

    words("imagenet-1k")            # the 1,000 ImageNet class names (open_clip's list)
    words("my_words.txt", base)     # one word or phrase per line; blank lines and '#' comments skipped

DataComp's text-based baseline keeps captions that name an ImageNet class, and its image-based
baseline keeps the k-means clusters nearest to ImageNet; both read their class names from here.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from workbench.errors import RecipeError

NAMED = ("imagenet-1k",)


@lru_cache(maxsize=8)
def _named(name: str) -> tuple[str, ...]:
    if name == "imagenet-1k":
        from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

        return tuple(IMAGENET_CLASSNAMES)
    raise RecipeError(f"unknown word list {name!r} (named lists: {', '.join(NAMED)}; or give a .txt file)")


@lru_cache(maxsize=32)
def _file(path: Path, mtime_ns: int) -> tuple[str, ...]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError(f"word list is not UTF-8 text ({exc.reason} at byte {exc.start})", path) from None
    out = []
    for line in text.splitlines():
        w = line.split("#", 1)[0].strip()
        if w:
            out.append(w)
    if not out:
        raise RecipeError("word list has no words (one word or phrase per line)", path)
    return tuple(out)


def words(spec: str, base: Path | None = None) -> list[str]:
    """The words of a named list (:data:`NAMED`) or of a text file (relative to `base` when given)."""
    if spec in NAMED:
        return list(_named(spec))
    path = Path(spec)
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    if not path.is_file():
        raise RecipeError(f"no word list {spec!r}: not a named list ({', '.join(NAMED)}) nor a file", path)
    return list(_file(path.resolve(), path.stat().st_mtime_ns))
