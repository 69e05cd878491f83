"""A pytest plugin (loaded by tests/conftest.py): under ``CI=true`` a skipped test fails the run
unless its reason is on the allow-list below, so a CI log never ends with a silent skip.

On a developer's machine skips stay skips (a missing system package is `helpers.missing`'s
business: it already fails in CI, this catches any other skip, e.g. a ``skipif`` or an
``importorskip`` that does not go through it).
"""

from __future__ import annotations

import pytest

from ci_env import in_ci

# Skips that are right in CI too: hardware CI does not have.
ALLOWED_SKIPS = (
    "spconv 2.3's backward needs CUDA",  # CI runs on CPUs
)

_skipped: list[tuple[str, str]] = []


def unexpected(skips: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (test id, reason) pairs whose reason is not allowed."""
    return [(test, why) for test, why in skips if not any(ok in why for ok in ALLOWED_SKIPS)]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        _skipped.append((report.nodeid, reason))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if in_ci() and unexpected(_skipped) and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    bad = unexpected(_skipped) if in_ci() else []
    if bad:
        terminalreporter.section("unexpected skips fail a CI run", red=True)
        for test, why in bad:
            terminalreporter.line(f"{test}: {why}")
