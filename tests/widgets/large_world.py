"""A large collection made fast for the panel's scale test: score columns and small embeddings only.

``make_large_world(root, rows)`` writes the LAION layout in 1M-row shards: ``img_emb`` of 8-d fp16
unit rows (clusters, so the map and its k-means have structure) and ``metadata`` with the three
columns the panel's default sliders read (similarity, punsafe, pwatermark). No captions, no
images: 10M rows are written in about half a minute.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SHARD_ROWS = 1_000_000
DIM = 8


def make_large_world(root: Path, rows: int = 10_000_000, seed: int = 0) -> Path:
    root = Path(root)
    if (root / "READY").exists():
        return root
    (root / "img_emb").mkdir(parents=True, exist_ok=True)
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, DIM))
    for i, start in enumerate(range(0, rows, SHARD_ROWS)):
        n = min(SHARD_ROWS, rows - start)
        x = centres[rng.integers(0, len(centres), n)] + 0.4 * rng.standard_normal((n, DIM))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        np.save(root / "img_emb" / f"img_emb_{i}.npy", x.astype(np.float16))
        pq.write_table(pa.table({
            "similarity": rng.normal(0.3, 0.05, n).astype(np.float32),
            "punsafe": rng.beta(0.3, 8, n).astype(np.float32),
            "pwatermark": rng.beta(0.5, 5, n).astype(np.float32),
        }), root / "metadata" / f"metadata_{i}.parquet")
    (root / "READY").write_text("")
    return root
