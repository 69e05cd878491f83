"""Shared fixtures (helpers live in tests/helpers.py)."""

from __future__ import annotations

import pytest
import torch

from helpers import make_batch

# Under CI=true a skip outside tests/ci_skips.py's allow-list fails the run.
pytest_plugins = ["ci_skips"]


@pytest.fixture(scope="session")
def quick_demo(tmp_path_factory):
    """`mesm demo --quick` run once: (folder holding mesm-demo/, its printed output)."""
    import contextlib
    import io

    from mesm.cli import main

    root = tmp_path_factory.mktemp("demo")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["demo", "--out", str(root / "mesm-demo"), "--quick", "--no-progress"]) == 0
    return root, printed.getvalue()


@pytest.fixture
def one_thread():
    """Run torch on one thread: these workloads are tiny, and on a busy 2-core machine a second
    thread made MTCNN and the tiny model ~50x slower (measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def batch() -> dict[str, torch.Tensor]:
    return make_batch([2, 0, 3], [1, 2, 3], [4, 7, 5])
