"""``workbench fetch SOURCE DST [--parts A-B] [--json]``: real shards of a public release (or of an
http(s) folder in the clip-retrieval layout) downloaded, resumably, into a folder that opens as a
collection. The work is :func:`workbench.io.fetch.fetch_release`."""
from __future__ import annotations

import json

from workbench.cli.common import EXIT_OK, show_progress


def cmd_fetch(args) -> int:
    from workbench.io.fetch import fetch_release

    r = fetch_release(args.source, args.dst, args.parts, progress=show_progress(args), retries=args.retries,
                      timeout=args.timeout)
    if args.json:
        print(json.dumps(r.to_json()))
        return EXIT_OK
    parts = f"{r.parts[0]}-{r.parts[-1]}" if len(r.parts) > 1 else str(r.parts[0]) if r.parts else "none"
    print(f"{r.source}: parts {parts}, {len(r.files)} files, {r.bytes / 1e6:,.1f} MB "
          f"({r.downloaded / 1e6:,.1f} MB downloaded now" + (f", {len(r.resumed)} resumed" if r.resumed else "") + ")")
    print(f"{r.dst} holds {r.rows:,} rows; manifest: {r.dst}/fetch.json")
    print(f"open it: workbench info {r.dst}   or in Python: workbench.open_collection({str(r.dst)!r})")
    return EXIT_OK
