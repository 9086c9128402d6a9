"""``workbench heads fetch | list``: the published detector heads' files in the heads folder."""
from __future__ import annotations

import json

from workbench.cli.common import EXIT_OK


def cmd_heads_fetch(args) -> int:
    from workbench.models.headfiles import default_heads_dir, fetch_heads

    rows = fetch_heads(args.names, mirror=args.mirror)
    if args.json:
        print(json.dumps({"heads_dir": str(default_heads_dir()), "files": rows}))
    else:
        for r in rows:
            print(f"{r['status']:<8}  {r['name']:<17} {r['file']}")
        print(f"heads folder: {default_heads_dir()}")
    return EXIT_OK


def cmd_heads_list(args) -> int:
    from workbench.models.headfiles import default_heads_dir, heads_table

    rows = heads_table()
    if args.json:
        print(json.dumps({"heads_dir": str(default_heads_dir()), "heads": rows}))
    else:
        for r in rows:
            print(f"{r['name']:<17} {r['dim']:>4}  {'cached ' if r['cached'] else 'missing'}  {r['upstream']}")
        print(f"heads folder: {default_heads_dir()}")
    return EXIT_OK
