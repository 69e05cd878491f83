"""The data package's folders are its pipelines: media/ (end-to-end) stands alone, handcrafted/
may reuse it, and neither needs the preparers (prepare/)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import mesm.data


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("media", ("mesm.data.handcrafted", "mesm.data.prepare")),
        ("handcrafted", ("mesm.data.prepare",)),
    ],
)
def test_each_pipeline_imports_only_what_comes_before_it(package, forbidden):
    """media (end-to-end) stands alone; handcrafted may reuse media; neither needs the preparers."""
    offenders = []
    for path in (Path(mesm.data.__file__).parent / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module.startswith(forbidden):
                    offenders.append(f"{path.name}: {node.module}")
    assert offenders == []
