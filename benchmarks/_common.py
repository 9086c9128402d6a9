"""Shared helpers for the benchmark scripts: synthetic LAION-layout data, subprocess timing, output.

Nothing here is imported by the workbench itself. Data goes under ``benchmarks/_data/`` (git-ignored).
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
DATA_DIR = BENCH_DIR / "_data"
PYTHON = sys.executable
GIB = 1024**3
MB = 1_000_000

if str(REPO) not in sys.path:  # `import workbench` from a checkout that is not pip-installed
    sys.path.insert(0, str(REPO))


# -- environment -------------------------------------------------------------------------------
def child_env() -> dict[str, str]:
    """The environment for timed subprocesses: the checkout importable, nothing else changed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # let .pyc files be written once, as in a normal install
    return env


def machine() -> dict:
    model = platform.processor() or "?"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    try:
        import psutil

        mem = f"{psutil.virtual_memory().total / GIB:.1f} GiB"
    except ImportError:
        mem = f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / GIB:.1f} GiB"
    blas_env = {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS", "OMP_", "MKL_"))}
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory": mem,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas_env": blas_env or None,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def header(title: str) -> None:
    m = machine()
    print(f"== {title} ==")
    print(f"machine: {m['cpu']}, {m['cores']} cores, {m['memory']}; python {m['python']}, numpy {m['numpy']}; {m['date']}")
    print(f"load average at start: {load()}")
    if m["blas_env"]:
        print(f"BLAS/threading environment: {m['blas_env']}")


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _busy_seconds() -> float | None:
    """CPU seconds all processes have used since boot (from /proc/stat), or None off Linux."""
    try:
        fields = open("/proc/stat").readline().split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """How many cores *other* processes kept busy while this benchmark ran: the noise indicator."""

    def __init__(self):
        self.t0, self.busy0, self.own0 = time.perf_counter(), _busy_seconds(), self._own()

    @staticmethod
    def _own() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def cores(self) -> float | None:
        busy = _busy_seconds()
        if busy is None or self.busy0 is None:
            return None
        wall = time.perf_counter() - self.t0
        return max(busy - self.busy0 - (self._own() - self.own0), 0.0) / max(wall, 1e-9)

    def line(self) -> str:
        c = self.cores()
        return "other processes: unknown" if c is None else (
            f"other processes kept {c:.2f} of {os.cpu_count()} cores busy during this run"
            + ("  (NOISY: rerun for 2-thread and bandwidth numbers)" if c > 0.25 else "")
        )


def du(path: Path) -> tuple[int, int]:
    """(apparent bytes, allocated bytes) of everything under `path`."""
    apparent = allocated = 0
    for p in Path(path).rglob("*"):
        if p.is_file():
            st = p.stat()
            apparent += st.st_size
            allocated += st.st_blocks * 512
    return apparent, allocated


# -- timing ------------------------------------------------------------------------------------
# A small launcher process forks and execs the command and reports the child's wall time and
# ru_maxrss. Why not wait4 on a child of this process: Linux carries the parent's RSS high-water
# mark into a forked (or vforked) child across exec, so a benchmark process that has written
# gigabytes would see its own peak (~460 MB here) reported as every child's. Forked from a bare
# `python -S` (~9 MB) the inherited floor is below anything measured. The launcher's own start-up
# is outside the timed span.
_LAUNCHER = r"""
import os, sys, time
report, argv = sys.argv[1], sys.argv[2:]
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execv(argv[0], argv)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - t0
with open(report, "w") as f:
    f.write(f"{wall!r} {usage.ru_maxrss * 1024} {os.waitstatus_to_exitcode(status)}")
sys.exit(0)
"""


def run_child(cmd: list[str], cwd: Path | None = None) -> tuple[float, int, int, str]:
    """Run `cmd`; return (wall seconds, peak RSS bytes of the child, exit code, stdout).

    Peak RSS is the child's own ``ru_maxrss`` (exact, no polling), via a small launcher (above).
    """
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report"
        with open(Path(tmp) / "out", "w+b") as out, open(Path(tmp) / "err", "w+b") as err:
            subprocess.run([PYTHON, "-S", "-c", _LAUNCHER, str(report), *cmd], stdout=out, stderr=err,
                           cwd=cwd or REPO, env=child_env(), check=True)
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read().decode(), err.read().decode()
        wall_s, rss_s, code_s = report.read_text().split()
    wall, rss, code = float(wall_s), int(rss_s), int(code_s)
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {code}:\n{stderr[-2000:]}")
    return wall, rss, code, stdout


def best_of_child(cmd: list[str], repeat: int, cwd: Path | None = None) -> dict:
    walls, rss, out = [], [], ""
    for _ in range(repeat):
        w, r, _, out = run_child(cmd, cwd)
        walls.append(w)
        rss.append(r)
    return {"best_s": min(walls), "median_s": float(np.median(walls)), "all_s": walls, "peak_rss": max(rss), "stdout": out}


def best_of(fn, repeat: int) -> tuple[float, list[float], object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), times, result


def rss() -> int:
    """This process's resident memory now (bytes)."""
    import psutil

    return psutil.Process().memory_info().rss


def fmt_s(t: float) -> str:
    if t < 0.01:
        return f"{t * 1000:.2f} ms"
    return f"{t * 1000:.0f} ms" if t < 1 else f"{t:.2f} s"


def fmt_mb(b: float) -> str:
    return f"{b / MB:.0f} MB"


# -- synthetic LAION-layout collections ------------------------------------------------------------
def _unit_fp16(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
    return x.astype(np.float16)


def write_metadata(path: Path, start: int, rows: int) -> None:
    """A LAION-style metadata shard: url, caption, similarity (strings made by polars, not Python)."""
    import polars as pl

    i = pl.col("i")
    (
        pl.select(i=pl.int_range(start, start + rows, dtype=pl.Int64))
        .select(
            url=pl.format("https://img.synthetic.invalid/{}/{}.jpg", i % 997, i),
            caption=pl.format("a synthetic photo number {} of a thing", i),
            similarity=((i * 2654435761) % 1_000_003).cast(pl.Float64) / 1_000_003 * 0.2 + 0.25,
        )
        .write_parquet(path)
    )


def write_npy_header_only(path: Path, rows: int, dim: int, dtype=np.float16) -> None:
    """A valid .npy header, then a hole up to the full size: a sparse file that reads as zeros."""
    hdr = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": (rows, dim)}
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, hdr)
        f.truncate(f.tell() + rows * dim * np.dtype(dtype).itemsize)


def make_laion(
    root: Path,
    shards: int,
    rows: int,
    dim: int = 512,
    text: bool = True,
    sparse: bool = False,
    bad_rows: bool = False,
    chunk_rows: int = 65_536,
    seed: int = 0,
    quiet: bool = False,
) -> bool:
    """Write (or reuse) a LAION-layout collection at `root`; return True when it was written now.

    Embeddings are written chunk by chunk through ``open_memmap`` (never whole in RAM). With
    `sparse` the .npy files are headers plus holes (for header-only tests at sizes that would not
    fit on disk). With `bad_rows` shard 0 gets two NaN rows, one inf row and one zero row.
    """
    marker = root / ".complete.json"
    spec = {"shards": shards, "rows": rows, "dim": dim, "text": text, "sparse": sparse, "bad_rows": bad_rows, "seed": seed}
    if marker.exists() and json.loads(marker.read_text()) == spec:
        if not quiet:
            print(f"reusing {root} ({shards} x {rows:,} x {dim})")
        return False
    if root.exists():
        shutil.rmtree(root)
    kinds = ["img_emb"] + (["text_emb"] if text else [])
    for d in kinds + ["metadata"]:
        (root / d).mkdir(parents=True)
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    for s in range(shards):
        for kind in kinds:
            path = root / kind / f"{kind}_{s}.npy"
            if sparse:
                write_npy_header_only(path, rows, dim)
                continue
            arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(rows, dim))
            for start in range(0, rows, chunk_rows):
                n = min(chunk_rows, rows - start)
                arr[start : start + n] = _unit_fp16(rng, n, dim)
            if bad_rows and s == 0 and kind == "img_emb" and rows >= 8:
                arr[1, 3] = np.nan
                arr[rows // 2, :] = np.nan
                arr[rows // 3, 7] = np.inf
                arr[rows - 2, :] = 0
            arr.flush()
            del arr
        write_metadata(root / "metadata" / f"metadata_{s}.parquet", s * rows, rows)
        if not quiet:
            print(f"  wrote shard {s + 1}/{shards} ({time.perf_counter() - t0:.1f} s)", flush=True)
    marker.write_text(json.dumps(spec))
    return True


def reuse_or_reset(root: Path, spec: dict) -> bool:
    """True when `root` already holds data generated with `spec` (its ``.complete.json``); otherwise
    empty it (the caller generates, then writes the marker with :func:`mark_complete`)."""
    marker = root / ".complete.json"
    if marker.exists() and json.loads(marker.read_text()) == spec:
        print(f"reusing {root}")
        return True
    if root.exists():
        shutil.rmtree(root)
    return False


def warm_image_files(collection) -> None:
    """Read every image-embedding file once (page cache warm before timing)."""
    for s in collection.shards:
        with open(s.image.path, "rb", buffering=0) as f:
            while f.read(8 << 20):
                pass


def remove(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)
    try:
        DATA_DIR.rmdir()  # only when empty
    except OSError:
        pass


def finish(noise: "OtherLoad", results: dict, json_out: Path | None) -> None:
    """Print the other-process load of the run and write the JSON results if asked."""
    print("\n" + noise.line())
    results["other_process_cores"] = noise.cores()
    if json_out:
        json_out.write_text(json.dumps(results, indent=2, default=str))
