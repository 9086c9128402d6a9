"""The ``workbench`` command's arguments: :func:`build_parser` (every verb, its flags, defaults and
help) and the argument groups verbs share. Each verb's function lives in the module of its family
(collections, curate, write, papers, search)."""
from __future__ import annotations

import argparse

import workbench.cli.collections as collections
import workbench.cli.curate as curate
import workbench.cli.fetch as fetch
import workbench.cli.heads as heads
import workbench.cli.papers as papers
import workbench.cli.search as search
import workbench.cli.write as write

ENGINE_CHOICES = ("local", "ray")  # workbench.engine.ENGINES, without importing it


def _version() -> str:
    """The installed package's version (importlib.metadata), else the source's."""
    try:
        from importlib.metadata import version

        return version("laion-workbench")
    except Exception:  # noqa: BLE001 - not installed (a source checkout on sys.path)
        from workbench import __version__

        return __version__


def _engine_args(s) -> None:
    s.add_argument("--engine", choices=ENGINE_CHOICES, default="local", help="where per-shard work runs (local)")
    s.add_argument("--workers", type=int, default=None, help="worker processes (local: 1; ray: the cluster's CPUs)")
    s.add_argument("--address", help="--engine ray: an existing cluster (host:port or auto); default: start a local one")


def _model_args(s) -> None:
    s.add_argument("--model", help="text/image tower: an open_clip name[/tag], or an open_clip model-config JSON; "
                                   "for DataComp pools, b32 or l14 picks the embeddings")
    s.add_argument("--pretrained", help="pretrained tag, or a local checkpoint (.pt/.pth/.bin/.safetensors)")
    s.add_argument("--device", default="auto", help="auto (cuda when present), cuda or cpu")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="workbench", description="Curation workbench for LAION-scale image-text collections.")
    p.add_argument("--version", action="version", version=f"workbench {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("info", help="layout, shards, rows, dims and columns of a collection (headers only)")
    s.add_argument("path")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--model", help="DataComp pools: b32 or l14 (default l14 when present)")
    s.set_defaults(func=collections.cmd_info)

    s = sub.add_parser("validate", help="read every embedding: NaN/inf, zero-norm, non-unit rows, foreign-model shards")
    s.add_argument("path")
    s.add_argument("--kind", choices=["image", "text", "both"], default="both")
    s.add_argument("--json", action="store_true")
    s.add_argument("--model", help="DataComp pools: b32 or l14")
    s.set_defaults(func=collections.cmd_validate)

    s = sub.add_parser("verify", help="re-check a written collection against its manifest.json (exit 0 only if every file matches)")
    s.add_argument("path")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=collections.cmd_verify)

    s = sub.add_parser("fetch", help="download parts of a public release (laion400m, datacomp-small, datacomp-medium) or "
                                     "of an http(s) clip-retrieval folder into DST; resumable; DST opens as a collection")
    s.add_argument("source", help="a release name (laion400m, datacomp-small, datacomp-medium; see docs/real-data.md) or "
                                  "an http(s):// base URL of a folder with img_emb/img_emb_<i>.npy [text_emb/, metadata/]")
    s.add_argument("dst", help="the folder to fill (new, empty, or an unfinished fetch of the same source: resumed)")
    s.add_argument("--parts", help="A-B (inclusive) or N; default: every part (a release's table or listing; for a URL, "
                                   "parts 0.. counted by probing img_emb_<i>.npy until one is missing). "
                                   "A LAION-400M part is about 2 GB, a DataComp small part about 3.2 GB")
    s.add_argument("--retries", type=int, default=5, help="retries of a dropped connection per file, each resuming (5)")
    s.add_argument("--timeout", type=float, default=60.0, help="seconds without data before a connection counts as dropped (60)")
    s.add_argument("--json", action="store_true", help="print one JSON object: source, dst, parts, files, bytes, rows")
    s.add_argument("--progress", action="store_true", help="a progress bar even when stderr is not a terminal")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=fetch.cmd_fetch)

    s = sub.add_parser("demo", help="build (once) and open the SYNTHETIC demo world, and print its summary")
    s.add_argument("--out", default="demo_world", help="folder for the demo world (default: ./demo_world)")
    s.add_argument("--rows", type=int, default=100_000, help="rows (default 100,000; up to 10M)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--rows-per-shard", type=int, default=None)
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=collections.cmd_demo)

    s = sub.add_parser("apply", help="apply a recipe (a file or a preset) to a collection: counts, and the selected rows written out")
    s.add_argument("recipe", help="recipe file (.yaml/.json) or preset name")
    s.add_argument("path", help="the source collection")
    s.add_argument("dst", nargs="?", help="write the selected rows here, LAION layout, source order (an empty or new folder)")
    s.add_argument("--dry-run", action="store_true", help="count only; write nothing but the score cache")
    s.add_argument("--out", help="the same as DST")
    s.add_argument("--format", action="append", metavar="F[,F]",
                   help="output formats: laion (default), webdataset, img2dataset, datacomp, or all (repeatable)")
    s.add_argument("--rows-per-shard", type=int, default=1_000_000, help="rows per LAION shard and img2dataset list (1,000,000)")
    s.add_argument("--samples-per-tar", type=int, default=10_000, help="samples per webdataset tar (10,000)")
    _engine_args(s)
    s.add_argument("--on-error", choices=("fail", "skip"), default="fail",
                   help="a broken source shard fails the run (default) or is skipped, reported and listed in the manifest")
    s.add_argument("--reasons", help="write every removed row with its reason to this parquet file")
    s.add_argument("--by-cluster", action="store_true", help="also count per map cluster (computed or cached) the rows "
                   "removed, with a 95%% interval on the share, and what each rule removes alone")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--no-cache", action="store_true", help="compute score columns without reading or writing the cache")
    s.add_argument("--progress", action="store_true", help="progress bars even when stderr is not a terminal")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    _model_args(s)
    s.set_defaults(func=curate.cmd_apply)

    s = sub.add_parser("diff", help="two recipes compared: rows kept by both, only A, only B, neither; per rule and cluster")
    s.add_argument("recipe_a", help="recipe A: a file (.yaml/.json) or preset name")
    s.add_argument("recipe_b", help="recipe B: a file (.yaml/.json) or preset name")
    s.add_argument("path", help="the collection")
    s.add_argument("--sample", type=int, default=12, help="row ids shown per set (12)")
    s.add_argument("--seed", type=int, default=0, help="seed of the samples (0)")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--progress", action="store_true", help="progress bars even when stderr is not a terminal")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    _model_args(s)
    s.set_defaults(func=curate.cmd_diff)

    s = sub.add_parser("embed", help="embed images and captions (folders, webdataset tars, a table of paths) into LAION-layout shards")
    s.add_argument("src", help="a folder of images, a folder of webdataset .tar shards, or a .parquet/.csv of image paths")
    s.add_argument("dst", help="the output folder (new or empty; an unfinished run there is resumed)")
    s.add_argument("--model", required=True, help="an open_clip model name, or a path to an open_clip model-config JSON")
    s.add_argument("--pretrained", help="an open_clip pretrained tag, or a local checkpoint (.pt/.pth/.bin/.safetensors)")
    s.add_argument("--random-weights", action="store_true",
                   help="embed with random weights (no --pretrained; for tests: the embeddings mean nothing); "
                        "recorded in the manifest")
    s.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    s.add_argument("--batch-size", type=int, default=64)
    s.add_argument("--rows-per-shard", type=int, default=1_000_000)
    s.add_argument("--captions", help="a .parquet/.csv with a path (or file name) column and a caption column")
    s.add_argument("--keep-failed", action="store_true", help="write rows for bad images too (zero image embedding, their status)")
    s.add_argument("--decode-workers", type=int, help="image-decoding processes (default: 1 on CPU, cores-1 up to 16 on CUDA)")
    s.add_argument("--precision", choices=("auto", "fp32", "fp16", "bf16"), default="auto",
                   help="auto: fp16 autocast on CUDA, fp32 on CPU")
    s.add_argument("--gpu-decode", choices=("auto", "on", "off"), default="auto",
                   help="decode JPEGs on the GPU (nvJPEG) when the device is CUDA (auto); on: the tensor path anywhere")
    _engine_args(s)
    s.add_argument("--json", action="store_true")
    s.add_argument("--progress", action="store_true", help="a progress bar (images/s) even when stderr is not a terminal")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=write.cmd_embed)

    s = sub.add_parser("sample", help="sample rows by a score: top, Soft Cap or Hard Cap Sampling -> row, count parquet")
    s.add_argument("path", help="the collection")
    s.add_argument("--by", required=True, help="the score column (metadata, or from --scores)")
    s.add_argument("--method", required=True, choices=("top", "soft-cap", "hard-cap"))
    how_many = s.add_mutually_exclusive_group(required=True)
    how_many.add_argument("--n", type=int, help="picks in all (the counts sum to N)")
    how_many.add_argument("--fraction", type=float,
                          help="picks as a share of the scored rows: N = ceil(F x scored rows), 0 < F <= 1 "
                               "(with --method top, the recipe rule top_fraction's rows)")
    s.add_argument("--penalty", type=float, default=0.15, help="soft-cap: repetition penalty (0.15)")
    s.add_argument("--cap", type=int, default=15, help="hard-cap: most picks of one row (15)")
    s.add_argument("--batch", type=int, default=100_000, help="soft-cap: rows drawn per batch (100,000)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--scores", help="a parquet with row + score columns (e.g. from workbench score --out)")
    s.add_argument("--model", help="DataComp pools: b32 or l14")
    s.add_argument("--out", required=True, help="the parquet to write: row, count")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=papers.cmd_sample)

    s = sub.add_parser("pairs", help="CLIP-DPO preference pairs: rank candidate captions per image by CLIP score")
    s.add_argument("path", help="the collection holding the images' embeddings")
    s.add_argument("candidates", help="a parquet: image (key or row id), prompt, candidate [, embedding]")
    s.add_argument("--out", required=True, help="folder for pairs.parquet, pairs.jsonl, candidates.parquet, counts.json")
    s.add_argument("--min-score", type=float, help="drop candidates below this score (100 x cosine)")
    s.add_argument("--max-length", type=int, help="drop candidates longer than this (characters)")
    s.add_argument("--text-prompt", help="a prompt that finds images containing text, e.g. 'an image with text'")
    s.add_argument("--text-max", type=float, help="drop images whose --text-prompt score is above this")
    s.add_argument("--min-margin", type=float, default=2.0, help="least score gap between chosen and rejected (2.0)")
    s.add_argument("--max-length-ratio", type=float, default=2.0, help="longer / shorter text at most (2.0; 0: off)")
    s.add_argument("--json", action="store_true")
    _model_args(s)
    s.set_defaults(func=papers.cmd_pairs)

    s = sub.add_parser("audit", help="the LAION-400M audit: caption terms vs explicit keywords and NSFW tags; unsafe share of a query's top-k")
    s.add_argument("path", help="the collection")
    s.add_argument("--term", action="append", help="a caption term (repeatable), e.g. desi")
    s.add_argument("--query", action="append", help="a text query (repeatable), e.g. 'beautiful'")
    s.add_argument("-k", "--k", type=int, default=100, help="top-k per query (100)")
    s.add_argument("--unsafe-column", help="a score column for 'unsafe' (default: punsafe when present)")
    s.add_argument("--unsafe-threshold", type=float, default=0.5)
    s.add_argument("--json", action="store_true")
    _model_args(s)
    s.set_defaults(func=papers.cmd_audit)

    s = sub.add_parser("mix", help="learn one score as a weighted mix of score columns (M-FLYT-style), from labelled "
                                   "rows or from a zero-shot proxy task")
    s.add_argument("path", help="the collection")
    s.add_argument("--column", action="append", required=True, help="a score column to mix (repeatable or comma-separated)")
    s.add_argument("--labels", help="a parquet: row, label (1 good / 0 bad): logistic regression")
    s.add_argument("--proxy", help="a parquet: class and row (rows of the collection, left out of the pool) or embedding "
                                   "(a list of floats per image): the FLYT objective on zero-shot classification")
    s.add_argument("--template", default="a photo of a {}.", help="class prompt for --proxy ({} = the class name)")
    s.add_argument("--pool", type=int, default=50_000, help="pool rows sampled for --proxy (50000)")
    s.add_argument("--steps", type=int, default=200, help="optimisation steps for --proxy (200)")
    s.add_argument("--scores", help="a parquet with row + score columns (e.g. from workbench score --out)")
    s.add_argument("--name", default="mix", help="the new column's name (mix)")
    s.add_argument("--seed", type=int, default=0)
    _model_args(s)
    s.add_argument("--out", required=True, help="the parquet to write: row + the new column")
    s.add_argument("--json", action="store_true")
    s.add_argument("--progress", action="store_true", help="a progress bar (--proxy steps) even when stderr is not a terminal")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=papers.cmd_mix)

    s = sub.add_parser("export", help="write listed rows (a row[, count] parquet, e.g. from sample) as shards; counts repeat rows")
    s.add_argument("path", help="the source collection")
    s.add_argument("dst", help="the output folder (new or empty; an unfinished export there is resumed)")
    s.add_argument("--rows", required=True, help="a parquet with row (and count: each row written that many times)")
    s.add_argument("--format", action="append", metavar="F[,F]", help="laion (default), webdataset, img2dataset, datacomp, all")
    s.add_argument("--rows-per-shard", type=int, default=1_000_000)
    s.add_argument("--samples-per-tar", type=int, default=10_000)
    _engine_args(s)
    s.add_argument("--model", help="DataComp pools: b32 or l14")
    s.add_argument("--json", action="store_true")
    s.add_argument("--progress", action="store_true")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=write.cmd_export)

    s = sub.add_parser("score", help="compute score columns over all rows (cached beside the collection) and summarise them")
    s.add_argument("path")
    s.add_argument("--prompt", action="append", help="a text prompt (repeatable)")
    s.add_argument("--prompt-embedding", action="append", help="a .npy prompt embedding (repeatable)")
    s.add_argument("--head", action="append", help="a head name or file (repeatable)")
    s.add_argument("--zero-shot", action="append", choices=["laion400m-nsfw", "safety"])
    s.add_argument("--language", action="store_true", help="caption language (fastText lid.176)")
    s.add_argument("--similarity", action="store_true", help="image-caption cosine from the embeddings")
    s.add_argument("--out", help="also write the columns (with row) to this parquet file")
    s.add_argument("--json", action="store_true", help="print the summary as JSON (otherwise a table)")
    s.add_argument("--no-cache", action="store_true")
    s.add_argument("--progress", action="store_true", help="a progress bar even when stderr is not a terminal")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    _model_args(s)
    _engine_args(s)
    s.set_defaults(func=curate.cmd_score)

    s = sub.add_parser("neighbors", help="nearest neighbours of a row, a text, an image or an embedding: top-k with scores")
    s.add_argument("path")
    s.add_argument("--row", type=int, help="a global row id (more like this row; the row itself left out)")
    s.add_argument("--text", help="a text (needs the text tower: the demo world's, or --model)")
    s.add_argument("--image", help="an image file (needs --model)")
    s.add_argument("--embedding", help="a .npy query vector")
    s.add_argument("-k", type=int, default=10)
    s.add_argument("--kind", choices=["image", "text"], default="image", help="search image or text embeddings")
    s.add_argument("--index", default="auto", help="auto (exact when small, else a built or clip-retrieval index), exact, or an index file")
    s.add_argument("--nprobe", type=int)
    s.add_argument("--json", action="store_true")
    _model_args(s)
    s.set_defaults(func=search.cmd_neighbors)

    s = sub.add_parser("index", help="build a memory-mapped IVF-PQ faiss index of a collection's embeddings")
    s.add_argument("path")
    s.add_argument("--out", required=True, help="the index file to write")
    s.add_argument("--kind", choices=["image", "text"], default="image")
    s.add_argument("--memory-budget", default="2GB", help="size the index codes must fit in (e.g. 4GB)")
    s.add_argument("--factory", help="a faiss index_factory string instead of the automatic choice")
    s.add_argument("--json", action="store_true")
    s.add_argument("--progress", action="store_true", help="stages and a bar even when stderr is not a terminal")
    s.add_argument("--quiet", action="store_true", help="no progress output")
    s.add_argument("--model", help="DataComp pools: b32 or l14")
    s.set_defaults(func=search.cmd_index)

    s = sub.add_parser("map", help="compute (and cache beside the collection) the UMAP map of every row")
    s.add_argument("path")
    s.add_argument("--kind", choices=["image", "text"], default="image")
    s.add_argument("--sample", type=int, help="rows UMAP is fitted on, the rest placed (default: a fifth of the rows, "
                                              "20,000 to 50,000)")
    s.add_argument("--n-neighbors", type=int, default=15)
    s.add_argument("--min-dist", type=float, default=0.1)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--place-k", type=int, default=10)
    s.add_argument("--n-epochs", type=int)
    s.add_argument("--json", action="store_true")
    s.add_argument("--progress-json", action="store_true", help="one JSON line per progress step (for the notebook)")
    s.add_argument("--progress", action="store_true", help="a bar per stage even when stderr is not a terminal")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.add_argument("--model", help="DataComp pools: b32 or l14")
    _engine_args(s)
    s.set_defaults(func=search.cmd_map)

    s = sub.add_parser("heads", help="the published detector heads: fetch their files now, or list them (cached or not)")
    hs = s.add_subparsers(dest="heads_command", required=True)
    h = hs.add_parser("fetch", help="fetch the files of all (or the named) heads into the heads folder, each checked "
                                    "against its pinned sha256")
    h.add_argument("names", nargs="*", metavar="NAME", help="head names (default: all; see `workbench heads list`)")
    h.add_argument("--mirror", help="fetch from a mirror of the heads folder's layout (http(s)://, file:// or a folder) "
                                    "instead of upstream (default: $WORKBENCH_HEADS_MIRROR)")
    h.add_argument("--json", action="store_true")
    h.set_defaults(func=heads.cmd_heads_fetch)
    h = hs.add_parser("list", help="each head, its input width, whether its file is cached, and its upstream")
    h.add_argument("--json", action="store_true")
    h.set_defaults(func=heads.cmd_heads_list)
    return p
