"""The one job runner of the data commands: bounded in-flight jobs, failures counted and named,
Ctrl-C stops cleanly, a dead worker fails only its items, serial and parallel agree."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest

import mesm.jobs.runner as jobs
from bad_inputs import CASES
from mesm.data.errors import DataError
from mesm.jobs.runner import WORKER_DIED, JobsInterrupted, run_jobs, worker_state

# ---- work functions (module level: spawned workers import them by name) ----------------------


def _square(marks: str, uid: str, value: int, seconds: float = 0.0) -> int:
    """Marks its start and end in `marks` (a folder), sleeps, returns value²; some ids fail."""
    folder = Path(marks)
    (folder / f"start-{uid}-{os.getpid()}").touch()
    time.sleep(seconds)
    if uid == "bad":
        raise DataError(f"clips/{uid}.mp4: no video stream (record {uid!r})")
    if uid == "gone":
        raise FileNotFoundError(2, "No such file or directory", f"clips/{uid}.mp4")
    if uid == "bug":
        raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")
    if uid == "keybug":
        return {}["faces"]
    if uid == "die":
        os._exit(3)  # a worker killed mid-job (out of memory, a segfault in a decoder)
    (folder / f"end-{uid}").touch()
    return value * value


def _count(folder: Path, prefix: str) -> int:
    return sum(1 for p in folder.iterdir() if p.name.startswith(prefix))


def _items(marks: Path, ids: list[str], seconds: float = 0.0, reads: list | None = None):
    """Yields (id, args); records for each read how many jobs had not yet ended."""
    for i, uid in enumerate(ids):
        if reads is not None:
            reads.append(i - _count(marks, "end-") - _count(marks, "fail-"))
        yield uid, (str(marks), uid, i, seconds)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("workers", [0, 2])
def test_jobs_in_flight_stay_bounded(tmp_path, workers):
    ids = [f"u{i}" for i in range(10)]
    reads: list[int] = []
    out = run_jobs(
        _items(tmp_path, ids, 0.1, reads),
        _square,
        workers=workers,
        total=len(ids),
        max_in_flight=3,
        progress=False,
    )
    assert out.results == {uid: i * i for i, uid in enumerate(ids)} and out.failed == {}
    # When an item is read, the jobs submitted before it and not ended number at most 3 - 1
    # (serial: none); "ended" is counted by the work itself, so it is never behind the runner.
    assert max(reads) <= (2 if workers else 0)
    if workers:  # the bound did not serialise the work: both workers ran jobs
        pids = {p.name.rsplit("-", 1)[1] for p in tmp_path.iterdir() if p.name.startswith("st")}
        assert len(pids) == 2


def test_failing_items_are_named_and_counted_and_the_rest_finish(tmp_path):
    ids = ["u0", "bad", "u2", "gone", "u4"]
    outcomes = {}
    for workers in (0, 2):
        marks = tmp_path / str(workers)
        marks.mkdir()
        outcomes[workers] = run_jobs(
            _items(marks, ids), _square, workers=workers, total=5, progress=False
        )
    serial, parallel = outcomes[0], outcomes[2]
    assert serial.results == {"u0": 0, "u2": 4, "u4": 16}
    assert serial.failed == {
        "bad": "clips/bad.mp4: no video stream (record 'bad')",
        "gone": "FileNotFoundError: [Errno 2] No such file or directory: 'clips/gone.mp4'",
    }
    assert (parallel.results, parallel.failed) == (serial.results, serial.failed)


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize(("bug", "error"), [("bug", TypeError), ("keybug", KeyError)])
def test_a_bug_in_the_work_stops_the_run_with_its_traceback_not_a_failed_item(
    tmp_path, workers, bug, error
):
    # A programming error is not a bad input: counting it as one failed item would hide it.
    pids: list[int] = []
    with pytest.raises(error) as caught:
        run_jobs(
            _items(tmp_path, ["u0", bug, "u2", "u3"]),
            _square,
            workers=workers,
            total=4,
            progress=False,
        )
    if workers:  # the worker's own traceback travels with it
        assert "in _square" in str(caught.value.__cause__)
        pids = [
            int(p.name.rsplit("-", 1)[1]) for p in tmp_path.iterdir() if p.name.startswith("st")
        ]
        deadline = time.monotonic() + 15
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in pids)  # no worker left behind
    else:
        assert caught.traceback[-1].name == "_square"
    assert CASES["bug-not-counted"].message  # the table's row for this test


def test_failures_are_reported_on_the_bar_as_they_happen(tmp_path, capsys):
    run_jobs(_items(tmp_path, ["u0", "bad"]), _square, desc="features", progress=True)
    err = capsys.readouterr().err
    assert "features: bad failed: clips/bad.mp4: no video stream" in err
    assert "failed=1" in err


def _interrupting(marks: Path, after: int):
    """Items whose reading raises KeyboardInterrupt in the parent (as Ctrl-C would) once
    `after` slow jobs have started in the workers."""
    for i in range(100):
        if i == after:
            deadline = time.monotonic() + 60
            while _count(marks, "start-") < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            raise KeyboardInterrupt
        yield f"u{i}", (str(marks), f"u{i}", i, 300.0 if i < 2 else 0.0)


def test_ctrl_c_stops_the_workers_and_says_what_finished(tmp_path):
    began = time.monotonic()
    message = CASES["ctrl-c"].message
    with pytest.raises(JobsInterrupted, match=rf"{message} 0 of 100 item\(s\)") as err:
        run_jobs(_interrupting(tmp_path, 2), _square, workers=2, total=100, progress=False)
    assert isinstance(err.value, KeyboardInterrupt)
    assert time.monotonic() - began < 60  # the 300 s jobs were abandoned, not awaited
    pids = [int(p.name.rsplit("-", 1)[1]) for p in tmp_path.glob("start-*")]
    assert len(pids) == 2 and not any(_alive(pid) for pid in pids)  # the workers are gone
    # multiprocessing's own bookkeeping agrees once it has polled the exits (the executor's
    # manager thread may reap a worker while stop_workers joins it, leaving the return code
    # to be read on the next poll).
    deadline = time.monotonic() + 10
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert multiprocessing.active_children() == []
    assert _count(tmp_path, "end-") == 0


def test_ctrl_c_in_the_serial_path(tmp_path):
    def items():
        yield "u0", (str(tmp_path), "u0", 1)
        raise KeyboardInterrupt

    with pytest.raises(JobsInterrupted, match=r"after 1 item\(s\) \(0 failed\)"):
        run_jobs(items(), _square, progress=False)


def test_a_dead_worker_fails_its_items_and_a_new_pool_runs_the_rest(tmp_path):
    ids = ["die", *(f"u{i}" for i in range(1, 6))]
    # Jobs of 0.5 s: the pool's death is seen long before u5 is read. With instant jobs a loaded
    # machine could let the surviving worker run u1-u4 and take u5 before the executor noticed
    # the death, failing u5 with the pool (seen once in CI).
    out = run_jobs(
        _items(tmp_path, ids, seconds=0.5),
        _square,
        workers=2,
        total=len(ids),
        max_in_flight=2,
        progress=False,
    )
    assert out.failed["die"] == WORKER_DIED and CASES["worker-dies"].message in WORKER_DIED
    assert set(out.results) | set(out.failed) == set(ids)
    assert out.results["u5"] == 25  # read after the pool died: run by the new pool
    assert multiprocessing.active_children() == []


def _failing_start() -> None:
    raise ImportError("no module named 'facenet_pytorch'")


def test_workers_that_cannot_start_stop_the_run_instead_of_restarting_forever(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(jobs, "MAX_SILENT_DEATHS", 1)  # one pool, not three: keeps the test short
    with pytest.raises(RuntimeError, match=r"died before finishing a job \(1 pool\(s\) in a row"):
        run_jobs(
            _items(tmp_path, [f"u{i}" for i in range(50)]),
            _square,
            workers=2,
            initializer=_failing_start,
            total=50,
            progress=False,
        )
    assert multiprocessing.active_children() == [] and _count(tmp_path, "start-") == 0


def _note_start(marks: str) -> None:
    (Path(marks) / f"init-{os.getpid()}").touch()
    worker_state()["marks"] = marks  # what the work of this process would read


def test_the_serial_initializer_runs_once_and_only_when_there_is_work(tmp_path):
    run_jobs([], _square, initializer=_note_start, initargs=(str(tmp_path),), progress=False)
    assert _count(tmp_path, "init-") == 0
    out = run_jobs(
        _items(tmp_path, ["u0", "u1"]),
        _square,
        initializer=_note_start,
        initargs=(str(tmp_path),),
        progress=False,
    )
    assert out.results == {"u0": 0, "u1": 1} and _count(tmp_path, "init-") == 1
    assert worker_state() == {}  # what the serial run built in this process ended with it
