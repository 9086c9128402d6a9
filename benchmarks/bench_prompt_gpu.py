"""GPU check: prompt scoring of resident fp16 embeddings against the memory-bandwidth roofline.

Needs CUDA (run it on an H100/H200). Allocates --rows x --dim fp16 embeddings on the device
(default 20M x 768 = 30.7 GB), then times, median of --repeat with CUDA events:
- the roofline: the bytes of the embeddings divided by the bandwidth a device-to-device copy
  reaches in the same run (`torch.Tensor.copy_` of the same array);
- a bare `x @ q` (torch matmul, fp16);
- `workbench.scoring.scorers.resident_scores(x, q)` (one prompt) and with 8 prompts;
- the CPU-path function `dots(chunk, q, device="cuda")` on host memory-mapped chunks, for contrast
  (host-to-device transfer bound).
Target: resident scoring at >= 80% of the roofline.

    python benchmarks/bench_prompt_gpu.py                 # on a GPU machine
    python benchmarks/bench_prompt_gpu.py --rows 2000000  # smaller cards
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    import torch

    from workbench.scoring.scorers import resident_scores

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=20_000_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("bench_prompt_gpu: no CUDA device here; nothing measured")
        return
    dev = torch.device("cuda")
    print(f"== bench_prompt_gpu == {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    x = torch.randn(args.rows, args.dim, device=dev, dtype=torch.float16)
    x /= x.float().norm(dim=1, keepdim=True).half()
    q = np.random.default_rng(0).standard_normal(args.dim).astype(np.float32)
    q /= np.linalg.norm(q)
    q8 = np.random.default_rng(1).standard_normal((8, args.dim)).astype(np.float32)
    qt = torch.from_numpy(q).to(dev, torch.float16)
    nbytes = x.numel() * 2

    def timed(fn):
        fn()
        torch.cuda.synchronize()
        ts = []
        for _ in range(args.repeat):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize()
            ts.append(a.elapsed_time(b) / 1000)
        return float(np.median(ts))

    half = x[: args.rows // 2]
    dst = torch.empty_like(half)
    t_copy = timed(lambda: dst.copy_(half))
    bw = 2 * half.numel() * 2 / t_copy  # a copy reads and writes
    dst = None  # free the copy before the measurements
    roof = nbytes / bw
    res = {"device": torch.cuda.get_device_name(0), "rows": args.rows, "dim": args.dim, "copy_GBps": bw / 1e9,
           "roofline_s": roof}
    rows = [("bare x @ q (torch fp16 matmul)", timed(lambda: x @ qt)),
            ("resident_scores(x, q), 1 prompt", timed(lambda: resident_scores(x, q))),
            ("resident_scores(x, q8), 8 prompts", timed(lambda: resident_scores(x, q8)))]
    print(f"device copy bandwidth {bw / 1e9:.0f} GB/s -> roofline for {nbytes / 1e9:.1f} GB: {roof * 1000:.2f} ms")
    for name, t in rows:
        print(f"{name:<40} {t * 1000:8.2f} ms  {nbytes / t / 1e9:7.0f} GB/s  {roof / t:5.2f} of roofline")
        res[name] = t
    ok = roof / rows[1][1] >= 0.80
    print(f"target >= 0.80 of roofline (1 prompt): {'OK' if ok else 'MISSED'}")
    res["ok"] = ok
    if args.json_out:
        args.json_out.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
