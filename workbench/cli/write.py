"""``workbench export | embed``: writing listed rows out, embedding images into a new collection."""
from __future__ import annotations

import json
import sys

from workbench.cli.common import EXIT_OK, open_from_args, show_progress


def cmd_export(args) -> int:
    from workbench.engine import make_engine
    from workbench.export.rowsfile import export_rows_file, parse_formats

    formats = parse_formats(args.format)
    c = open_from_args(args)
    with make_engine(args.engine, args.workers, args.address) as engine:
        out = export_rows_file(c, args.dst, args.rows, formats=formats, rows_per_shard=args.rows_per_shard,
                               samples_per_tar=args.samples_per_tar, engine=engine, progress=show_progress(args))
    if args.json:
        print(json.dumps(out))
    else:
        print(f"wrote {out['written_rows']:,} rows ({out['distinct_rows']:,} distinct) to {args.dst} as {', '.join(formats)}")
    return EXIT_OK


def cmd_embed(args) -> int:
    from workbench.engine import make_engine
    from workbench.export.embed import embed, embed_summary

    with make_engine(args.engine, args.workers, args.address) as engine:
        res = embed(args.src, args.dst, args.model, args.pretrained, device=args.device, batch_size=args.batch_size,
                    rows_per_shard=args.rows_per_shard, keep_failed=args.keep_failed, captions=args.captions,
                    decode_workers=args.decode_workers, precision=args.precision,
                    gpu_decode={"auto": "auto", "on": True, "off": False}[args.gpu_decode], engine=engine,
                    progress=show_progress(args), random_weights=args.random_weights)
    out = {"src": args.src, "dst": args.dst, **embed_summary(res)}
    if out["random_weights"]:
        print(f"warning: {args.dst} holds embeddings of random weights (--random-weights): they mean nothing",
              file=sys.stderr)
    if args.json:
        print(json.dumps(out))
    else:
        _print_embed(args, out)
    return EXIT_OK


def _print_embed(args, out: dict) -> None:
    if out.get("already_complete"):
        print(f"{args.dst} already holds this embedding run (manifest.json); nothing to do")
    failed = out["failed"]
    rate = f" ({out['images_per_s']:,.1f} images/s)" if out.get("images_per_s") else ""
    print(f"embedded {out['embedded']:,} of {out['items']:,} images into {out['shards']} shard(s) in {args.dst}{rate}")
    if sum(failed.values()):
        print(f"{sum(failed.values()):,} failed: " + ", ".join(f"{k} {v:,}" for k, v in sorted(failed.items()))
              + (" (written with zero image embeddings; " if args.keep_failed else " (left out; ")
              + f"each listed with its error in {args.dst}/failed/)")
