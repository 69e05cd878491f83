"""Shared fixtures (helpers live in tests/helpers.py)."""

from __future__ import annotations

import pytest
import torch

from helpers import make_batch


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
def batch() -> dict[str, torch.Tensor]:
    return make_batch([2, 0, 3], [1, 2, 3], [4, 7, 5])
