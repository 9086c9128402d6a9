"""``workbench neighbors | index | map``: nearest neighbours, faiss indexes, the 2-D map."""
from __future__ import annotations

import json

from workbench.cli.common import EXIT_OK, encoder_from_args, open_from_args, tower_from_args


def cmd_neighbors(args) -> int:
    from workbench.scoring.neighbors import query_vector, search

    c = open_from_args(args)
    q, exclude = query_vector(c, row=args.row, text=args.text, image=args.image, embedding=args.embedding,
                              kind=args.kind, encoder=encoder_from_args(args, c), model=tower_from_args(args),
                              pretrained=args.pretrained, device=args.device)
    index = {"auto": "auto", "exact": None}.get(args.index, args.index)
    df = search(c, q, k=args.k, kind=args.kind, index=index, nprobe=args.nprobe, exclude_rows=exclude)
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
                       progress=args.progress)
    print(json.dumps(info) if args.json else f"wrote {args.out}: {json.dumps(info)}")
    return EXIT_OK


def cmd_map(args) -> int:
    from workbench.map.projection import map_collection

    c = open_from_args(args)
    out = map_collection(c, kind=args.kind, sample=args.sample, n_neighbors=args.n_neighbors, min_dist=args.min_dist,
                         seed=args.seed, place_k=args.place_k, n_epochs=args.n_epochs,
                         progress=_print_progress if args.progress_json else None)
    print(json.dumps({"done": True, **out}) if args.progress_json or args.json else
          f"map of {out['rows']:,} rows: {'read from cache' if out['report']['cached'] else 'computed'} "
          f"in {out['seconds']} s ({out['cache']})")
    return EXIT_OK


def _print_progress(stage, fraction=None) -> None:
    """--progress-json: one JSON line per progress step (the notebook reads them)."""
    print(json.dumps({"stage": stage, "fraction": fraction}), flush=True)
