"""Where sweep cells run: in this process (:class:`SerialExecutor`) or in a local process pool
(:class:`LocalExecutor`, the default for ``workers > 1``).

An executor maps a picklable top-level function over argument tuples and yields
``(index, result)`` as each call finishes, in completion order. It knows nothing of sweeps or
experiments. Randomness never depends on the executor: every cell derives its streams from its
own experiment seed (``SeedSequence.spawn``), so serial and parallel runs give the same numbers.

:class:`RayExecutor` runs cells as Ray tasks: on the cluster at ``RAY_ADDRESS`` when set, otherwise
on a local Ray instance it starts and stops (extra ``synthloop[ray]``).
"""

from __future__ import annotations

import multiprocessing
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from typing import Any

#: BLAS/OpenMP thread counts forced to 1 in pool workers: parallelism comes from the processes,
#: and N workers × N BLAS threads each would oversubscribe the cores.
SINGLE_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

StartCallback = Callable[[int], None]


class Executor(ABC):
    """Runs ``fn(*args)`` for every argument tuple; yields ``(index, result)`` as calls finish."""

    def __init__(self, workers: int | None = None):
        self.workers = max(1, int(workers or os.cpu_count() or 1))

    @abstractmethod
    def imap_unordered(self, fn: Callable[..., Any], jobs: Sequence[tuple], on_start: StartCallback | None = None) -> Iterator[tuple[int, Any]]:
        """``on_start(index)`` is called when a job is handed to a worker (approximately, for pools)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


class SerialExecutor(Executor):
    """Every job in this process, one after another (``workers=1``, and tests)."""

    def __init__(self):
        super().__init__(1)

    def imap_unordered(self, fn, jobs, on_start=None):
        for index, args in enumerate(jobs):
            if on_start is not None:
                on_start(index)
            yield index, fn(*args)


@contextmanager
def _environment(values: dict[str, str]):
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


@contextmanager
def _sigint_ignored():
    """Workers spawned meanwhile start with Ctrl-C ignored (an ignored signal survives exec): a
    Ctrl-C reaches the whole process group, and the parent, not each worker, decides what it means."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class LocalExecutor(Executor):
    """A ``ProcessPoolExecutor`` with the *spawn* start method and single-threaded BLAS in workers.

    Spawned workers start a fresh interpreter (no inherited locks or BLAS thread pools, same
    behaviour on Linux and macOS) and import numpy anew, so the thread limits must be in their
    environment when they start: they are set in ``os.environ`` while the pool starts workers
    (ProcessPoolExecutor starts them lazily, on submit) and restored afterwards.
    """

    def imap_unordered(self, fn, jobs, on_start=None):
        jobs = list(jobs)
        if not jobs:
            return
        context = multiprocessing.get_context("spawn")
        workers = min(self.workers, len(jobs))
        with _environment(SINGLE_THREAD_ENV):
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
        try:
            pending = {}
            next_job = 0

            def submit_one():
                nonlocal next_job
                index = next_job
                with _environment(SINGLE_THREAD_ENV), _sigint_ignored():
                    future = pool.submit(fn, *jobs[index])
                pending[future] = index
                next_job += 1
                if on_start is not None:
                    on_start(index)

            # Keep exactly `workers` jobs in flight, so "running" counts what really runs.
            while next_job < len(jobs) and len(pending) < workers:
                submit_one()
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    index = pending.pop(future)
                    result = future.result()
                    if next_job < len(jobs):
                        submit_one()
                    yield index, result
        except (KeyboardInterrupt, GeneratorExit):
            # Ctrl-C, or the caller stopped reading: end the running jobs now rather than wait for
            # them (a sweep cell's checkpoints keep its finished generations). The pool has no
            # public way to do this before Python 3.14's terminate_workers().
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                process.terminate()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


class RayExecutor(Executor):
    """Cells as Ray tasks (one CPU each, single-threaded BLAS), on the cluster at ``RAY_ADDRESS``
    or, when it is unset, on a local Ray instance of ``workers`` CPUs started for the sweep."""

    def imap_unordered(self, fn, jobs, on_start=None):
        import ray

        jobs = list(jobs)
        if not jobs:
            return
        started_here = not ray.is_initialized()
        if started_here:
            options = {"include_dashboard": False, "log_to_driver": False, "runtime_env": {"env_vars": SINGLE_THREAD_ENV}}
            if not os.environ.get("RAY_ADDRESS"):
                options["num_cpus"] = self.workers
            ray.init(**options)
        try:
            remote = ray.remote(num_cpus=1)(fn)
            pending = {}
            for index, args in enumerate(jobs):
                pending[remote.remote(*args)] = index
                if on_start is not None:
                    on_start(index)
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    yield pending.pop(ref), ray.get(ref)
        finally:
            if started_here:
                ray.shutdown()


EXECUTORS = {"local": LocalExecutor, "ray": RayExecutor}


def make_executor(workers: int | None, kind: str = "local") -> Executor:
    """:class:`SerialExecutor` for one local worker, else the ``kind`` executor (default: all cores)."""
    from .validation import ConfigError

    workers = workers if workers is not None else (os.cpu_count() or 1)
    if workers < 1:
        raise ConfigError(f"--workers must be an integer ≥ 1; got {workers}")
    if kind not in EXECUTORS:
        raise ConfigError(f"--executor must be one of {sorted(EXECUTORS)}; got {kind!r}")
    if kind == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ConfigError("--executor ray needs Ray: pip install 'synthloop[ray]'") from None
        return RayExecutor(workers)
    return SerialExecutor() if workers == 1 else LocalExecutor(workers)
