"""Whether the tests run in CI (``CI=true``): read once here, by `helpers` and the `ci_skips`
plugin. A plain module, not a plugin, so that both may import it without pytest's assertion
rewriting warning that a plugin was imported too early."""

from __future__ import annotations

import os


def in_ci() -> bool:
    """True under ``CI`` = 1 / true / yes (any case)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
