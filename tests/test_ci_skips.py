"""Under CI=true an unexpected skip fails the pytest run (tests/ci_skips.py); locally not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


def _pytest(folder: Path, ci: bool) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("CI", None)
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "ci_skips",
            "--rootdir",
            str(folder),
            str(folder),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("body", "ci", "code"),
    [
        ('pytest.skip("espeak-ng is not installed")', True, 1),  # unexpected in CI: fails
        ('pytest.skip("espeak-ng is not installed")', False, 0),  # a developer's machine
        ('pytest.skip("spconv 2.3\'s backward needs CUDA")', True, 0),  # allowed: hardware
        ("pass", True, 0),
    ],
)
def test_an_unexpected_skip_fails_the_run_only_in_ci(tmp_path, body, ci, code):
    (tmp_path / "test_planted.py").write_text(
        f"import pytest\n\n\ndef test_planted():\n    {body}\n\n\ndef test_other():\n    pass\n"
    )
    run = _pytest(tmp_path, ci)
    assert run.returncode == code, run.stdout + run.stderr
    if code:
        assert "unexpected skips fail a CI run" in run.stdout
        assert "test_planted.py::test_planted: espeak-ng is not installed" in run.stdout


@pytest.mark.parametrize(
    ("body", "ci", "outcome"),
    [
        ('missing("espeak-ng is not installed")', False, "1 skipped"),
        ('missing("espeak-ng is not installed")', True, "1 failed"),
        ('require_module("no_such_module", "espeak-ng is not installed")', True, "1 failed"),
    ],
)
def test_a_missing_system_package_skips_locally_and_fails_in_ci(tmp_path, body, ci, outcome):
    """`helpers.missing` (and `require_module`, which goes through it) fail under CI=true, where
    scripts/install.sh installs everything, instead of skipping."""
    (tmp_path / "test_planted.py").write_text(
        f"from helpers import missing, require_module\n\n\ndef test_planted():\n    {body}\n"
    )
    run = _pytest(tmp_path, ci)
    assert outcome in run.stdout, run.stdout + run.stderr
    assert run.returncode == (1 if ci else 0)
    if ci:
        assert "espeak-ng is not installed, but CI installs it" in run.stdout
