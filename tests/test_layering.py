"""The import rules of DESIGN.md: who may import whom inside mesm."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "mesm"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SRC.parent)}


# package -> mesm packages it may import (the LEAVES are modules anyone may use)
ALLOWED = {
    "sparse": set(),
    "models": {"sparse"},
    "data": set(),
    "evaluation": set(),
    "inference": {"models", "data", "evaluation", "sparse"},
    "training": {"models", "data", "evaluation", "sparse", "inference"},
    "analysis": {"models", "sparse", "data", "evaluation", "inference"},
    "app": {"inference", "analysis", "models", "data", "evaluation", "sparse"},
}


# leaf module -> the leaves it may import
LEAVES = {"errors": set(), "files": {"errors"}, "resources": {"errors"}, "settings": {"errors"}}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "mesm" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_follow_the_design(package):
    for path in sorted((SRC / package).rglob("*.py")):
        bad = _imports(path) - ALLOWED[package] - {package, *LEAVES}
        assert not bad, f"{path.relative_to(SRC)} imports mesm.{sorted(bad)}"


def test_nothing_imports_the_cli():
    for path in sorted(SRC.rglob("*.py")):
        if path.parent.name != "cli" and path.name != "__main__.py":
            assert "cli" not in _imports(path), path


@pytest.mark.parametrize("leaf", sorted(LEAVES))
def test_leaves_import_only_leaves_below_them(leaf):
    assert _imports(SRC / f"{leaf}.py") <= LEAVES[leaf]


def test_inference_does_not_import_lightning():
    # A fresh interpreter: this test process has imported Lightning already.
    code = (
        "import sys, mesm.inference.predict, mesm.inference.evaluate, mesm.inference.batch, "
        "mesm.inference.video, mesm.inference.outputs; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'mesm') "
        "and (m.startswith('lightning') or m.startswith('mesm.training'))); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=_env())
