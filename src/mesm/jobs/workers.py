"""Worker processes for the data pipeline: never more than the machine, never outliving us.

`worker_pool` is the one place the data commands start worker processes (through
`mesm.jobs.runner.run_jobs`). Workers are spawned (forking a process whose torch/OpenMP threads run
can deadlock), run one torch thread each (the pool is the parallelism), ignore Ctrl-C (the parent
handles it and stops them with `stop_workers`), and each starts a watcher thread that ends the
worker as soon as its parent is gone: a ``kill -9`` of the command no longer leaves workers of
~800 MB each running for minutes. `cap_workers` bounds the count by the CPU count and by the
number of jobs (never one process per clip).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

POLL_SECONDS = 0.5


def cpu_count() -> int:
    """CPUs this process may use (the affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cap_workers(requested: int, jobs: int | None = None) -> int:
    """`requested` bounded by the CPU count and by `jobs` (0 stays 0: work in this process).

    Args:
        requested: the worker processes asked for.
        jobs: how many jobs there are (None: unknown).
    """
    if requested <= 0:
        return 0
    capped = min(requested, cpu_count())
    return min(capped, jobs) if jobs is not None else capped


def exit_with_parent(parent_pid: int, poll_seconds: float = POLL_SECONDS) -> None:
    """Starts a daemon thread that ends this process when `parent_pid` is no longer its parent.

    Portable (no prctl): when the parent dies the worker is re-parented, so `os.getppid` changes.
    The GIL is released inside torch/decoder calls, so the thread runs even while the worker
    computes.
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_seconds)
        os._exit(1)  # no cleanup: the parent that would collect our results is gone

    threading.Thread(target=watch, name="mesm-parent-watch", daemon=True).start()


def _start_worker(
    parent_pid: int, initializer: Callable[..., None] | None, initargs: tuple[Any, ...]
) -> None:
    exit_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops us
    import torch  # already loaded by mesm.data; nested threads per worker only contend

    torch.set_num_threads(1)
    if initializer is not None:
        initializer(*initargs)


def worker_pool(
    num_workers: int,
    initializer: Callable[..., None] | None = None,
    initargs: tuple[Any, ...] = (),
) -> ProcessPoolExecutor:
    """A spawned process pool whose workers exit when this process dies.

    Args:
        num_workers: processes (bound it with `cap_workers` first).
        initializer: called once in each worker (a module-level function: spawn pickles it).
        initargs: its arguments.
    """
    context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(
        num_workers,
        mp_context=context,
        initializer=_start_worker,
        initargs=(os.getpid(), initializer, initargs),
    )


def stop_workers(pool: ProcessPoolExecutor, grace_seconds: float = 5.0) -> None:
    """Cancels the jobs not started, ends the workers (running jobs are abandoned) and waits
    for them, so no worker process outlives the call."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(grace_seconds)
        if process.is_alive():
            process.kill()
            process.join()
