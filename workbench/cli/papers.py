"""``workbench sample | pairs | audit | mix``: the papers' methods (FLYT sampling, CLIP-DPO pairs,
the LAION-400M audit, M-FLYT score mixing)."""
from __future__ import annotations

import json

from workbench.cli.common import EXIT_OK, encoder_from_args, open_from_args, show_progress


def cmd_sample(args) -> int:
    from workbench.papers.sampling import sample_collection

    c = open_from_args(args)
    res = sample_collection(c, args.by, args.method, args.out, n=args.n, fraction=args.fraction, penalty=args.penalty,
                            cap=args.cap, batch=args.batch, seed=args.seed, scores=args.scores)
    if args.json:
        print(json.dumps(res))
    else:
        print(f"{args.method}: {res['n']:,} picks of {res['distinct']:,} distinct rows (of {res['rows']:,}; "
              f"most picked {res['max_count']} times) by {args.by} -> {res['out']}")
    return EXIT_OK


def cmd_pairs(args) -> int:
    from workbench.papers.preference import PairRules, pairs_from_file

    c = open_from_args(args)
    rules = PairRules(min_score=args.min_score, max_length=args.max_length, text_prompt=args.text_prompt,
                      text_max=args.text_max, min_margin=args.min_margin,
                      max_length_ratio=None if args.max_length_ratio <= 0 else args.max_length_ratio)
    res, out, files = pairs_from_file(c, args.candidates, rules, args.out, encoder=encoder_from_args(args, c),
                                      device=args.device)
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{res.counts['pairs']:,} pairs from {res.counts['candidates']:,} candidates of {res.counts['images']:,} images")
        for k, v in res.counts.items():
            if "dropped" in k or k == "images_with_text":
                print(f"  {k}: {v:,}")
        print(f"wrote {files['pairs']} and {files['jsonl']}")
    return EXIT_OK


def cmd_audit(args) -> int:
    from workbench.papers.audit import audit

    c = open_from_args(args)
    out, unsafe = audit(c, args.term, args.query, k=args.k, unsafe_column=args.unsafe_column,
                        unsafe_threshold=args.unsafe_threshold, encoder=encoder_from_args(args, c), device=args.device)
    if args.json:
        print(json.dumps(out))
    else:
        _print_audit(out, unsafe, args.unsafe_threshold)
    return EXIT_OK


def _print_audit(out: dict, unsafe: str | None, threshold: float) -> None:
    for r in out.get("terms", []):
        share = "-" if r["explicit_share"] is None else f"{100 * r['explicit_share']:.2f}%"
        tags = ", ".join(f"{g} {r[f'tag_{g}']:,}" for g in ("UNLIKELY", "UNSURE", "NSFW") if f"tag_{g}" in r)
        print(f"{r['term']!r}: {r['rows']:,} rows, {r['explicit']:,} with an explicit keyword ({share})"
              + (f"; their NSFW tags: {tags}" if tags else "")
              + (f"; {r['unsafe']:,} with {unsafe} >= {threshold}" if "unsafe" in r else ""))
    for r in out.get("queries", []):
        parts = [f"{k.replace('_share', '')} {100 * v:.0f}%" for k, v in r.items() if k.endswith("_share") and v is not None]
        print(f"top {r['k']} of {r['query']!r}: " + ", ".join(parts))
    print("keyword hits and scores are leads to look at, not labels")


def cmd_mix(args) -> int:
    from workbench.papers.proxymix import mix_collection

    c = open_from_args(args)
    columns = [x.strip() for v in args.column for x in v.split(",") if x.strip()]
    mix, res = mix_collection(c, columns, args.out, labels=args.labels, proxy=args.proxy, template=args.template,
                              pool=args.pool, steps=args.steps, scores=args.scores, name=args.name, seed=args.seed,
                              encoder=encoder_from_args(args, c), progress=show_progress(args))
    if args.json:
        print(json.dumps(res))
    else:
        _print_mix(args.name, mix, res)
    return EXIT_OK


def _print_mix(name: str, mix, res: dict) -> None:
    print(f"{name} = " + " ".join(f"{w:+.3f} x z({col})" for col, w in res["weights"].items()) + f" {mix.bias:+.3f}")
    cv, px = mix.cv, mix.proxy
    if px:
        print(f"  proxy task: {px['heldout']:,} held-out images of {px['classes']} classes, {px['pool_rows']:,} pool rows, "
              f"{px['steps']} steps")
        print(f"  zero-shot loss on the held-out check half ({px['check']:,} images) after one step: "
              f"uniform weights {px['check_loss_uniform']:.4f}, mix weights {px['check_loss_mix']:.4f} "
              f"(no step: {px['check_loss_reference']:.4f}); accuracy {100 * px['check_accuracy_uniform']:.1f}% vs "
              f"{100 * px['check_accuracy_mix']:.1f}%")
    if "auc_mean" in cv:
        print(f"  cross-validated AUC {cv['auc_mean']:.3f} +- {cv['auc_std']:.3f} ({cv['folds']} folds, "
              f"{cv['labelled']:,} labelled rows, {cv['positives']:,} positive)")
    print(f"  z(c) = (c - mean) / sd over the labelled rows; wrote row, {name} to {res['out']}")
