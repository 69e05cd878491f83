"""Issue 24: real signals to a real `mesm preprocess --workers 2` (no mocks): Ctrl-C (SIGINT) and
SIGTERM stop it with one line and status 130 / 143, ending every worker, keeping every finished
entry and leaving no temporary file; `kill -9` of it leaves no worker behind."""

from __future__ import annotations

import re
import shutil
import signal
from pathlib import Path

import pytest

from bad_inputs import CASES
from helpers import signal_midway, temporaries
from mesm.data.media.cache import CACHE_DIR, ENTRY_SUFFIX
from mesm.demo.synthetic import write_synthetic_dataset

UTTERANCES = 40


@pytest.fixture(scope="module")
def many_clips(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("busy") / "data"
    write_synthetic_dataset(root, UTTERANCES, fps=10, duration=(1.5, 2.5), seed=5)
    return root


@pytest.fixture
def dataset(many_clips, tmp_path) -> Path:
    return Path(shutil.copytree(many_clips, tmp_path / "data"))


def _entries(root: Path) -> list[Path]:
    return list((root / CACHE_DIR).glob(f"*/items/*{ENTRY_SUFFIX}"))


PREPROCESS = ["preprocess", "data", "--workers", "2", "--no-progress"]


@pytest.mark.parametrize(
    ("signum", "case", "said"),
    [
        (signal.SIGINT, "ctrl-c", "mesm preprocess: interrupted: "),
        (signal.SIGTERM, "sigterm", "mesm preprocess: stopped by SIGTERM: "),
    ],
)
def test_a_signal_stops_preprocess_and_its_workers(dataset, signum, case, said):
    run = signal_midway(PREPROCESS, lambda err: bool(_entries(dataset)), signum, cwd=dataset.parent)
    assert run.returncode == 128 + signum, run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith(said) and CASES[case].message in last, run.stderr
    done, total, failed = map(
        int, re.search(r"after (\d+) of (\d+) item\(s\) \((\d+) failed\)", last).groups()
    )
    assert total == UTTERANCES and 1 <= done < total and failed == 0
    # Every finished entry is kept (a worker may have finished one more while being stopped).
    assert done <= len(_entries(dataset)) <= done + 2
    assert len(run.seen) >= 3, "the command and its two workers were running"
    assert run.left == set(), f"orphan processes: {run.left}"
    assert temporaries(dataset) == []


def test_workers_exit_when_preprocess_is_killed(dataset):
    run = signal_midway(
        PREPROCESS,
        lambda err: bool(_entries(dataset)),
        signal.SIGKILL,
        cwd=dataset.parent,
        settle=15,  # the case's "gone within 15 s"
    )
    assert run.returncode == -signal.SIGKILL
    assert len(run.seen) >= 3
    assert run.left == set(), f"not {CASES['kill-parent'].message}: {run.left} still run"
