"""What every verb of the ``workbench`` command shares: exit codes, and turning the common
arguments (the collection path, --model/--pretrained/--device, a recipe) into library objects."""
from __future__ import annotations

import sys

EXIT_OK, EXIT_PROBLEMS, EXIT_ERROR, EXIT_INCOMPLETE = 0, 1, 2, 3
DATACOMP_MODELS = ("b32", "l14")  # --model values that pick a DataComp pool's embeddings, not a tower
REMOVED = "sidecars/removed.parquet"  # workbench.export.exporter.REMOVED_ROWS: every removed source row and its reason


def open_from_args(args):
    """The collection at ``args.path`` (--model picks a DataComp pool's embeddings, --on-error);
    each skipped shard said on stderr (never silently; the manifest keeps them too)."""
    from workbench.io.collection import open_collection

    model = getattr(args, "model", None)
    c = open_collection(args.path, model=model if model in DATACOMP_MODELS else None,
                        on_error=getattr(args, "on_error", None) or "fail")
    for s in c.skipped:
        print(f"warning: skipped shard {s['shard']}: {' '.join(s['error'].split())}", file=sys.stderr)
    return c


def encoder_from_args(args, collection):
    """The text encoder named by --model/--pretrained/--device, as a zero-argument callable that loads
    it (the library calls it only when a computation needs it); None when no tower is named (the
    collection's own is then used)."""
    model = getattr(args, "model", None)
    if model is None or model in DATACOMP_MODELS:
        return None

    def load():
        from workbench.models.prompts import text_encoder

        return text_encoder(collection, model=model, pretrained=args.pretrained, device=args.device)

    return load


def tower_from_args(args) -> str | None:
    """--model as an open_clip tower (None when absent or a DataComp pool name)."""
    model = getattr(args, "model", None)
    return None if model is None or model in DATACOMP_MODELS else model


def show_progress(args) -> bool:
    """Progress bars: --progress, or stderr a terminal unless --quiet."""
    return bool(args.progress or (not args.quiet and sys.stderr.isatty()))


def load_recipe(spec: str):
    """A recipe argument: a preset name (unless a file of that name exists) or a recipe file."""
    from workbench.curation.compare import resolve_recipe

    return resolve_recipe(spec)


def recipe_text(spec: str) -> str:
    """The recipe argument verbatim, as the manifest keeps it: the file's text, or the preset's name."""
    from pathlib import Path

    p = Path(spec)
    return p.read_text() if p.is_file() else f"preset: {spec}\n"
