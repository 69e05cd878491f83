"""`mesm.data` imports nothing of ours but the leaves `mesm.resources`, `mesm.errors` and
`mesm.files` (DESIGN.md layer table)."""

from __future__ import annotations

import ast
from pathlib import Path

import mesm.data

ALLOWED = ("mesm.data", "mesm.resources", "mesm.errors", "mesm.files")


def test_data_imports_only_itself_and_resources():
    offenders = []
    for path in Path(mesm.data.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                if (name == "mesm" or name.startswith("mesm.")) and not name.startswith(ALLOWED):
                    offenders.append(f"{path.name}: {name}")
    assert offenders == []
