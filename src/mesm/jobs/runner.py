"""`run_jobs`: the one job loop of the data commands (prepare, preprocess, features).

Every caller gets the same behaviour, in worker processes (`mesm.jobs.workers`) or in this one:

* items are read lazily and at most ``max_in_flight`` jobs are submitted and unfinished at any
  time, so a 20k-utterance dataset never sits in the pool's queue;
* one tqdm progress bar, with the count of failures so far;
* an item whose work raises one of the caller's *input* errors (``item_errors``: by default
  the project's own errors and OS errors on the item's files) is reported (its id and the
  reason, on the bar's stream) and counted in `Outcomes.failed`; the other items go on. Any
  other exception is a bug, not a bad item: it stops the run with its traceback (from a worker
  process too), instead of being counted as data. A worker process that dies (out of memory, a
  crash inside a decoder) fails the items it may have held and a fresh pool runs the rest
  (workers that die before finishing any job, three pools in a row, stop the run instead);
* Ctrl-C cancels the jobs not started, ends the worker processes (none is left behind, nothing
  hangs on a long job) and raises `JobsInterrupted`, whose message says what finished.

The serial path (``workers`` 0 or 1, or a single item) runs the same initializer and work in
this process with the same outcomes. What an initializer builds (a face detector, a cache handle)
goes in `worker_state()`, the one per-process store: a worker keeps it for its lifetime, and the
serial path empties it when the run ends, so nothing built for a run outlives it in this process.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from mesm.errors import MesmError
from mesm.jobs.workers import cap_workers, stop_workers, worker_pool

Item = tuple[str, tuple[Any, ...]]
# What a bad item may raise by default; callers add their decoders' own errors.
ITEM_ERRORS: tuple[type[Exception], ...] = (MesmError, OSError)
WORKER_DIED = "its worker process died (out of memory, or a crash in native code)"
# Pools in a row that die before any job finishes: the workers cannot start; stop trying.
MAX_SILENT_DEATHS = 3


# Per-process state filled by the run's initializer (see `worker_state`).
_STATE: dict[str, Any] = {}


def worker_state() -> dict[str, Any]:
    """The per-process store an initializer fills and the work reads (e.g. a face detector):
    the worker's own in a worker process, this process's on the serial path (emptied when
    `run_jobs` returns)."""
    return _STATE


@dataclass
class Outcomes:
    """What `run_jobs` got back.

    Attributes:
        results: item id -> what the work returned, for the items that succeeded.
        failed: item id -> why it failed.
    """

    results: dict[str, Any] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def finished(self) -> int:
        """Items done, successfully or not."""
        return len(self.results) + len(self.failed)


class JobsInterrupted(KeyboardInterrupt):
    """Ctrl-C during `run_jobs`; the message says how many items finished (their output is
    kept). A KeyboardInterrupt, so it stops the command like any Ctrl-C."""


def failure_reason(err: BaseException) -> str:
    """The message of one of our errors (it names the file and record), else its type too."""
    return str(err) if isinstance(err, MesmError) else f"{type(err).__name__}: {err}"


def run_jobs(
    items: Iterable[Item],
    work: Callable[..., Any],
    *,
    workers: int = 0,
    initializer: Callable[..., None] | None = None,
    initargs: tuple[Any, ...] = (),
    total: int | None = None,
    max_in_flight: int | None = None,
    desc: str = "jobs",
    unit: str = "item",
    progress: bool = True,
    item_errors: tuple[type[Exception], ...] = ITEM_ERRORS,
) -> Outcomes:
    """Run ``work(*args)`` for every ``(id, args)`` item and collect results and failures.

    Args:
        items: ``(id, args)`` pairs, read lazily; ids are unique.
        work: a module-level function (spawned workers import it by name).
        workers: worker processes (capped by the CPUs and the item count; 0 or 1: this process).
        initializer: run once per process before its first job (in this process too when
            serial, and only if there is an item), e.g. to build a face detector; a module-level
            function.
        initargs: its arguments.
        total: the number of items, when `items` has no length (for the bar and the cap).
        max_in_flight: most jobs submitted and not finished (default: twice the workers).
        desc: the progress bar's label (also starts the failure and interruption messages).
        unit: what one item is called on the bar.
        progress: show the bar and report each failure as it happens.
        item_errors: the exceptions that mean "this item's input is bad" (counted as a failed
            item); anything else propagates.

    Returns:
        The outcomes; every item is in exactly one of ``results`` and ``failed``.

    Raises:
        JobsInterrupted: Ctrl-C (KeyboardInterrupt) during the run; no worker is left running.
        RuntimeError: the worker processes keep dying before finishing any job.
        Exception: whatever a job raised that is not one of `item_errors` (a bug).
    """
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    num_workers = cap_workers(workers, total)
    outcomes = Outcomes()
    bar = tqdm(total=total, desc=desc, unit=unit, disable=not progress)
    run = _Run(outcomes, bar, desc, progress, item_errors)
    try:
        if num_workers <= 1:
            try:
                _serial(iter(items), work, initializer, initargs, run)
            finally:
                _STATE.clear()  # what the initializer built here is the run's, not the process's
        else:
            limit = max(max_in_flight or 2 * num_workers, 1)
            pool_args = (num_workers, initializer, initargs)
            _parallel(iter(items), work, pool_args, limit, run)
    except KeyboardInterrupt:
        raise JobsInterrupted(
            f"{desc}: interrupted after {outcomes.finished}"
            + (f" of {total}" if total is not None else "")
            + f" item(s) ({len(outcomes.failed)} failed); what finished is kept, run the "
            "command again to continue"
        ) from None
    finally:
        bar.close()
    return outcomes


@dataclass
class _Run:
    outcomes: Outcomes
    bar: tqdm
    desc: str
    progress: bool
    item_errors: tuple[type[Exception], ...]

    def succeeded(self, uid: str, result: Any) -> None:
        self.outcomes.results[uid] = result
        self.bar.update()

    def failed(self, uid: str, reason: str) -> None:
        self.outcomes.failed[uid] = reason
        if self.progress:
            self.bar.write(f"{self.desc}: {uid} failed: {reason}", file=sys.stderr)
        self.bar.set_postfix(failed=len(self.outcomes.failed), refresh=False)
        self.bar.update()


def _serial(
    items: Iterator[Item],
    work: Callable[..., Any],
    initializer: Callable[..., None] | None,
    initargs: tuple[Any, ...],
    run: _Run,
) -> None:
    for i, (uid, args) in enumerate(items):
        if i == 0 and initializer is not None:  # nothing to do: no detector built
            initializer(*initargs)
        try:
            result = work(*args)
        except run.item_errors as err:
            run.failed(uid, failure_reason(err))
        else:
            run.succeeded(uid, result)


def _parallel(
    items: Iterator[Item],
    work: Callable[..., Any],
    pool_args: tuple[int, Callable[..., None] | None, tuple[Any, ...]],
    limit: int,
    run: _Run,
) -> None:
    pending: dict[Future, str] = {}
    pool: ProcessPoolExecutor = worker_pool(*pool_args)
    held: Item | None = None  # read from `items`, not yet submitted
    broken = False
    deaths = 0  # pools in a row that died before a job of theirs finished
    try:
        while True:
            if broken and not pending:  # every job of the dead pool is accounted for
                pool.shutdown(wait=True)
                if deaths >= MAX_SILENT_DEATHS:
                    raise RuntimeError(
                        f"{run.desc}: the worker processes died before finishing a job "
                        f"({deaths} pool(s) in a row; see the messages above; --workers 0 runs "
                        "the same work in this process)"
                    )
                pool, broken = worker_pool(*pool_args), False
            while not broken and len(pending) < limit:
                held = held or next(items, None)
                if held is None:
                    break
                try:
                    pending[pool.submit(work, *held[1])] = held[0]
                except BrokenProcessPool:
                    deaths, broken = deaths + (not broken), True
                    break
                held = None
            if not pending:
                if held is None:
                    break
                continue
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                uid = pending.pop(future)
                try:
                    result = future.result()
                except BrokenProcessPool:
                    deaths, broken = deaths + (not broken), True
                    run.failed(uid, WORKER_DIED)
                    continue
                except run.item_errors as err:
                    run.failed(uid, failure_reason(err))
                else:
                    run.succeeded(uid, result)
                deaths = 0
    except BaseException:
        stop_workers(pool)
        raise
    pool.shutdown(wait=True)
