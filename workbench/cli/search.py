"""``workbench neighbors | index | map``: nearest neighbours, faiss indexes, the 2-D map."""
from __future__ import annotations

import json

from workbench.cli.common import EXIT_OK, encoder_from_args, open_from_args, show_progress, tower_from_args


def cmd_neighbors(args) -> int:
    from workbench.scoring.neighbors import neighbors

    c = open_from_args(args)
    df = neighbors(c, row=args.row, text=args.text, image=args.image, embedding=args.embedding, k=args.k,
                   kind=args.kind, index=args.index, nprobe=args.nprobe, encoder=encoder_from_args(args, c),
                   model=tower_from_args(args), pretrained=args.pretrained, device=args.device)
    if args.json:
        print(json.dumps({"source": str(c.path), "k": args.k, "results": df.to_dicts()}, default=str))
    else:
        for r in df.iter_rows(named=True):
            cap = " ".join(str(r.get("caption") or "").split())[:90]
            print(f"{r['rank']:>3}  row {r['row']:>10}  {r['score']:.4f}  {cap}")
    return EXIT_OK


def cmd_index(args) -> int:
    from workbench.scoring.faissindex import build_index

    c = open_from_args(args)
    info = build_index(c, args.out, kind=args.kind, memory_budget=args.memory_budget, factory=args.factory,
                       progress=show_progress(args))
    print(json.dumps(info) if args.json else f"wrote {args.out}: {json.dumps(info)}")
    return EXIT_OK


def cmd_map(args) -> int:
    from workbench.engine import make_engine
    from workbench.io.progress import stage_progress
    from workbench.map.projection import map_collection

    c = open_from_args(args)
    progress = _print_progress if args.progress_json else stage_progress(show_progress(args))
    try:
        with make_engine(args.engine, args.workers, args.address) as engine:
            out = map_collection(c, kind=args.kind, sample=args.sample, n_neighbors=args.n_neighbors,
                                 min_dist=args.min_dist, seed=args.seed, place_k=args.place_k,
                                 n_epochs=args.n_epochs, progress=progress,
                                 engine=None if args.engine == "local" and (args.workers or 1) == 1 else engine)
    finally:
        if hasattr(progress, "close"):
            progress.close()
    print(json.dumps({"done": True, **out}) if args.progress_json or args.json else
          f"map of {out['rows']:,} rows: {'read from cache' if out['report']['cached'] else 'computed'} "
          f"in {out['seconds']} s ({out['cache']})")
    return EXIT_OK


def _print_progress(stage, fraction=None) -> None:
    """--progress-json: one JSON line per progress step (the notebook reads them)."""
    print(json.dumps({"stage": stage, "fraction": fraction}), flush=True)
