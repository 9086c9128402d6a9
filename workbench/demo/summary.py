"""A human-readable summary of a synthetic demo world (``workbench demo`` prints it)."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import polars as pl

from workbench.demo.textencoder import TRUTH_DIR, WORLD_JSON
from workbench.errors import LayoutError
from workbench.io.layouts import numbered_files


def _numbered(folder: Path, prefix: str, suffix: str) -> list[Path]:
    if not folder.is_dir():
        return []
    found = numbered_files(folder, re.escape(prefix) + r"(\d+)" + re.escape(suffix))
    return [found[k] for k in sorted(found)]



def summarize_world(world: str | Path) -> list[str]:
    """Human-readable lines about the synthetic world: what it holds, and how its columns track the truth.

    Reads the world shard by shard (a few columns at a time): memory does not grow with its size.
    """
    from collections import Counter

    world = Path(world)
    try:
        meta = json.loads((world / WORLD_JSON).read_text())
    except (OSError, ValueError) as exc:
        raise LayoutError(f"not a synthetic demo world (cannot read {WORLD_JSON}: {exc})", world) from None
    truth_files = _numbered(world / TRUTH_DIR, "truth_", ".parquet")
    meta_files = _numbered(world / "metadata", "metadata_", ".parquet")
    if not truth_files or len(truth_files) != len(meta_files):
        raise LayoutError("ground_truth/ and metadata/ do not pair up: not a complete synthetic demo world", world)
    c: Counter = Counter()
    objects, scenes, styles, tags = Counter(), Counter(), Counter(), Counter()
    groups: set[int] = set()
    sim_sum = sim_sq = 0.0
    kinds = ("matched", "partial", "mismatched", "junk")
    for tf, mf in zip(truth_files, meta_files):
        t = pl.read_parquet(tf, columns=["objects", "scene", "style", "is_unsafe", "unsafe_kind", "has_watermark",
                                         "has_text_overlay", "has_person", "has_child", "caption_kind",
                                         "html_caption", "dup_group", "dup_of", "exact_dup"])
        m = pl.read_parquet(mf, columns=["caption", "similarity", "punsafe", "pwatermark", "NSFW"])
        if len(t) != len(m):
            raise LayoutError(f"{tf.name} and {mf.name} differ in rows", world)
        objects.update(t["objects"].explode().drop_nulls().to_list())
        scenes.update(t["scene"].to_list())
        styles.update(t["style"].to_list())
        c["rows"] += len(t)
        for col in ("is_unsafe", "has_watermark", "has_text_overlay", "has_person", "has_child", "html_caption",
                    "exact_dup"):
            c[col] += int(t[col].sum())
        uk = t["unsafe_kind"].fill_null("").to_numpy()
        c["explicit"] += int((uk == "explicit").sum())
        c["gore"] += int((uk == "gore").sum())
        ck = t["caption_kind"].to_numpy()
        sim = m["similarity"].to_numpy()
        for k in kinds:
            c[k] += int((ck == k).sum())
            c["sim_" + k] += float(sim[ck == k].sum())
        sim_sum += float(sim.sum())
        sim_sq += float((sim * sim).sum())
        c["sim30"] += int((sim >= 0.30).sum())
        c["sim28"] += int((sim >= 0.28).sum())
        c["short"] += int((m["caption"].str.len_chars() < 5).sum())
        dg = t["dup_group"].to_numpy()
        groups.update(dg[dg >= 0].tolist())
        c["near"] += int(((t["dup_of"] >= 0) & ~t["exact_dup"]).sum())
        for col, cut, tcol in (("punsafe", 0.5, "is_unsafe"), ("pwatermark", 0.8, "has_watermark")):
            flag, true = m[col].to_numpy() > cut, t[tcol].to_numpy()
            c[col + "_flag"] += int(flag.sum())
            c[col + "_hit"] += int((flag & true).sum())
        tag = m["NSFW"].to_numpy()
        tags.update(tag.tolist())
        c["explicit_nsfw"] += int((tag[uk == "explicit"] == "NSFW").sum())
        c["safe_unlikely"] += int((tag[uk == ""] == "UNLIKELY").sum())
    n = c["rows"]
    p = meta["parameters"]

    def pct(k: float) -> str:
        return f"{100.0 * k / max(n, 1):.1f}%"

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}" if b else "n/a"

    def share(a: float, b: float) -> str:
        return f"{a / b:.0%}" if b else "n/a"

    def top(counter: Counter) -> str:
        return ", ".join(f"{k} {v:,}" for k, v in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))

    mean = sim_sum / max(n, 1)
    std = math.sqrt(max(sim_sq / max(n, 1) - mean * mean, 0.0))
    by_kind = ", ".join(f"{k} {c['sim_' + k] / c[k]:.3f}" for k in kinds if c[k])
    return [
        f"synthetic demo world: {n:,} rows, dim {p['dim']}, seed {p['seed']}, {p['rows_per_shard']:,} rows per shard "
        "(generated, not real images; the truth of every row is in ground_truth/)",
        "synthetic objects: " + top(objects),
        "synthetic scenes: " + top(scenes),
        "synthetic styles: " + top(styles),
        f"synthetic unsafe stand-ins: {c['is_unsafe']:,} rows ({pct(c['is_unsafe'])}): explicit {c['explicit']:,}, "
        f"gore {c['gore']:,}; people {c['has_person']:,}, children {c['has_child']:,} (never unsafe)",
        f"synthetic watermarks: {c['has_watermark']:,} rows ({pct(c['has_watermark'])}); text overlays / logos "
        f"{c['has_text_overlay']:,} ({pct(c['has_text_overlay'])})",
        "synthetic captions: " + ", ".join(f"{k} {pct(c[k])}" for k in kinds)
        + f"; html-ish {c['html_caption']:,}; shorter than 5 chars {c['short']:,}",
        f"synthetic duplicates: {len(groups):,} groups; near-duplicate rows {c['near']:,} ({pct(c['near'])}), "
        f"exact duplicates (same url + caption) {c['exact_dup']:,} ({pct(c['exact_dup'])})",
        f"synthetic similarity: mean {mean:.3f}, std {std:.3f}; >= 0.30 {pct(c['sim30'])}, >= 0.28 {pct(c['sim28'])}; "
        f"mean by caption: {by_kind}",
        f"synthetic punsafe > 0.5: {pct(c['punsafe_flag'])} of rows; precision "
        f"{ratio(c['punsafe_hit'], c['punsafe_flag'])}, recall {ratio(c['punsafe_hit'], c['is_unsafe'])} against is_unsafe",
        f"synthetic pwatermark > 0.8: {pct(c['pwatermark_flag'])} of rows; precision "
        f"{ratio(c['pwatermark_hit'], c['pwatermark_flag'])}, recall {ratio(c['pwatermark_hit'], c['has_watermark'])} "
        "against has_watermark",
        "synthetic NSFW tag (LAION-400M zero-shot rule on the demo encoder): "
        + ", ".join(f"{k} {pct(tags.get(k, 0))}" for k in ("UNLIKELY", "UNSURE", "NSFW"))
        + f"; explicit stand-ins tagged NSFW {share(c['explicit_nsfw'], c['explicit'])}, safe rows tagged UNLIKELY "
        f"{share(c['safe_unlikely'], n - c['is_unsafe'])}",
    ]
