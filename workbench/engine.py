"""Where per-shard work runs: in this process, in a local process pool, or on a Ray cluster.

    with make_engine("local", workers=2) as engine:
        for i, result in engine.map(task_function, tasks):
            ...

An engine only decides *where* a task runs; what a task does, and what it writes, never depends
on the engine or the worker count, so every engine gives byte-identical outputs. ``map`` yields
``(index, result)`` pairs as tasks finish (any order); the first failing task stops the map and
its exception is raised here (a :class:`~workbench.errors.WorkbenchError` keeps its file and row).

Task functions are module-level functions and tasks are picklable values. A
:class:`~workbench.io.collection.Collection` pickles as its path and open options: a worker reopens
it (headers only) and checks its fingerprint, so a source that changed mid-run is an error.
"""
from __future__ import annotations

import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from typing import Callable, Iterable, Iterator

from workbench.errors import EngineError, WorkbenchError

ENGINES = ("local", "ray")


class Engine:
    kind = "base"

    def __init__(self, workers: int = 1):
        if workers < 1:
            raise EngineError(f"--workers must be >= 1, got {workers}")
        self.workers = int(workers)

    def map(self, fn: Callable, tasks: Iterable, gpus_per_task: float = 0) -> Iterator[tuple[int, object]]:
        """Run ``fn(task)`` for every task; `gpus_per_task` reserves GPUs per task where the engine
        schedules them (Ray: one task per GPU with 1); the local engine leaves devices to the task."""
        raise NotImplementedError

    def describe(self) -> dict:
        return {"engine": self.kind, "workers": self.workers}

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LocalEngine(Engine):
    """One worker: tasks run in this process, in order. More: a pool of fresh (spawned) processes."""

    kind = "local"

    def __init__(self, workers: int = 1):
        super().__init__(workers)
        self._pool: ProcessPoolExecutor | None = None

    def map(self, fn, tasks, gpus_per_task: float = 0):
        tasks = list(tasks)
        if self.workers == 1 or len(tasks) <= 1:
            for i, t in enumerate(tasks):
                yield i, fn(t)
            return
        if self._pool is None:
            # spawn, not fork: a forked copy of a process holding torch/OpenMP threads can hang
            threads = max(1, (os.cpu_count() or 1) // self.workers)
            self._pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"),
                                             initializer=_init_worker, initargs=(threads,))
        yield from _bounded(tasks, lambda t: self._pool.submit(fn, t), self.workers * 2, _pool_wait)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


def _init_worker(threads: int) -> None:
    """A pool worker's share of the cores for torch/BLAS/numba (unless the user set them): N
    workers with every core each would oversubscribe the machine."""
    for var in THREAD_VARS:
        os.environ.setdefault(var, str(threads))


def _pool_wait(pending: dict):
    done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
    out = []
    for f in done:
        try:
            out.append((f, f.result()))
        except WorkbenchError:
            raise
        except Exception as exc:  # noqa: BLE001 - a worker that died (BrokenProcessPool) or a bug in a task
            if type(exc).__name__ == "BrokenProcessPool":
                raise EngineError(f"a worker process died ({exc})") from None
            raise
    return out


def _bounded(tasks: list, submit, limit: int, wait_some) -> Iterator[tuple[int, object]]:
    """Keep at most `limit` tasks in flight (results of a shard can be large); yield as they finish."""
    pending: dict = {}
    nxt = 0
    try:
        while nxt < len(tasks) or pending:
            while nxt < len(tasks) and len(pending) < limit:
                pending[submit(tasks[nxt])] = nxt
                nxt += 1
            for handle, result in wait_some(pending):
                yield pending.pop(handle), result
    finally:
        for handle in pending:
            cancel = getattr(handle, "cancel", None)
            if cancel is not None:
                cancel()


class RayEngine(Engine):
    """Per-shard tasks on a Ray cluster: an existing one (`address`, e.g. ``"10.0.0.1:6379"`` or
    ``"auto"``), or a local one started here (a real head and raylet, not Ray's local mode).

    Every node must see the source and the destination at the same paths (a shared file system)."""

    kind = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None):
        try:
            import ray
        except ImportError:
            raise EngineError("the Ray engine needs Ray: pip install 'laion-workbench[ray]'") from None
        self._ray = ray
        self.address = address
        self._started = False
        if not ray.is_initialized():
            kwargs = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            if address:
                kwargs["address"] = address
            elif workers:
                kwargs["num_cpus"] = int(workers)
            try:
                ray.init(**kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = f"at {address}" if address else "locally"
                hint = ("; a cluster with token authentication (Ray's default for clusters started with `ray start` "
                        "since 2.59) needs RAY_AUTH_MODE=token in this environment" if address and not os.environ.get("RAY_AUTH_MODE") else "")
                raise EngineError(f"cannot start or reach a Ray cluster {where} ({str(exc).splitlines()[0]}){hint}") from None
            self._started = True
        cpus = int(ray.cluster_resources().get("CPU", 1))
        super().__init__(workers or cpus)

    def describe(self) -> dict:
        return {**super().describe(), "address": self.address or "local"}

    def map(self, fn, tasks, gpus_per_task: float = 0):
        ray = self._ray
        # with GPUs, one task per GPU at a time: Ray sets CUDA_VISIBLE_DEVICES, so "cuda" is the task's own
        # one core a task: torch, BLAS and numba each get one thread (Ray sets OMP_NUM_THREADS only;
        # numba's own threads on a busy node preempt the other tasks: measured 4x slower placement)
        env = {v: os.environ.get(v, "1") for v in THREAD_VARS}
        remote = ray.remote(num_cpus=1, num_gpus=gpus_per_task or 0, max_retries=0,
                            runtime_env={"env_vars": env})(fn)

        def wait_some(pending):
            ready, _ = ray.wait(list(pending), num_returns=1)
            out = []
            for ref in ready:
                try:
                    out.append((ref, ray.get(ref)))
                except ray.exceptions.RayTaskError as exc:
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, BaseException):
                        raise cause from None
                    raise EngineError(f"a Ray task failed: {str(exc).splitlines()[0]}") from None
                except ray.exceptions.RayError as exc:  # a worker or node died
                    raise EngineError(f"a Ray task was lost ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
            return out

        yield from _bounded(list(tasks), remote.remote, self.workers * 2, wait_some)

    def close(self) -> None:
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
            self._started = False


def make_engine(kind: str = "local", workers: int | None = None, address: str | None = None) -> Engine:
    """``local`` (default 1 worker; ``workers`` processes) or ``ray`` (`address` or a local cluster)."""
    if kind == "local":
        if address:
            raise EngineError("--address is for --engine ray")
        return LocalEngine(1 if workers is None else workers)
    if kind == "ray":
        return RayEngine(workers, address or os.environ.get("RAY_ADDRESS") or None)
    raise EngineError(f"unknown engine {kind!r} (choose from {', '.join(ENGINES)})")
