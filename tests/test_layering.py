"""The import rules of docs/architecture.md, read from its layer table: who may import whom.

The table is the one between the ``<!-- layers:begin -->`` and ``<!-- layers:end -->`` markers:
one row per top-level package or module of ``src/mesm``, its layer ("leaf" rows may be imported
by every other row) and the names it may import. Change the imports and the document together;
these tests fail when they disagree.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "mesm"
DOC = ROOT / "docs" / "architecture.md"


@dataclass(frozen=True)
class Row:
    name: str
    layer: str
    may_import: frozenset[str]


def read_layer_table(text: str) -> dict[str, Row]:
    """The rows of the layer table: {name: Row}.

    Raises:
        ValueError: no table between the markers, a malformed row, or a name given twice.
    """
    match = re.search(r"<!-- layers:begin -->(.*?)<!-- layers:end -->", text, re.S)
    if match is None:
        raise ValueError("no layer table between <!-- layers:begin --> and <!-- layers:end -->")
    rows: dict[str, Row] = {}
    for line in match.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or set(cells[0]) <= {"-", ":", " "} or cells[0] == "layer":
            continue
        layer, name_cell, may_cell = cells[0], cells[1], cells[-1]
        names = re.findall(r"`([\w.]+)`", name_cell)
        if len(names) != 1:
            raise ValueError(f"a row names one package or module, got {name_cell!r}")
        if names[0] in rows:
            raise ValueError(f"{names[0]!r} has two rows")
        rows[names[0]] = Row(names[0], layer, frozenset(re.findall(r"`([\w.]+)`", may_cell)))
    if not rows:
        raise ValueError("the layer table has no rows")
    return rows


def top_level_names() -> set[str]:
    """The top-level packages and modules of src/mesm."""
    names = {p.stem for p in SRC.glob("*.py")}
    names |= {p.name for p in SRC.iterdir() if (p / "__init__.py").is_file()}
    return names


def owner(path: Path, src: Path = SRC) -> str:
    """The top-level package or module a source file belongs to."""
    parts = path.relative_to(src).parts
    return parts[0] if len(parts) > 1 else path.stem


def mesm_imports(path: Path) -> set[str]:
    """The top-level mesm names a file imports (absolute imports; relative ones stay inside)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
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


def violations(rows: dict[str, Row], src: Path = SRC) -> list[str]:
    """Every import the table does not allow, as "file imports mesm.X (allowed: ...)"."""
    leaves = {n for n, r in rows.items() if r.layer == "leaf"}
    out = []
    for path in sorted(src.rglob("*.py")):
        name = owner(path, src)
        row = rows.get(name)
        if row is None:
            out.append(f"{path.relative_to(src)}: {name!r} has no row in the layer table")
            continue
        allowed = row.may_import | {name} | (set() if row.layer == "leaf" else leaves)
        for bad in sorted(mesm_imports(path) - allowed):
            out.append(
                f"{path.relative_to(src)} imports mesm.{bad}, which the layer table does not "
                f"allow {name!r} (may import: {', '.join(sorted(row.may_import)) or 'nothing'})"
            )
    return out


@pytest.fixture(scope="module")
def rows() -> dict[str, Row]:
    return read_layer_table(DOC.read_text(encoding="utf-8"))


def test_the_table_has_one_row_per_package_and_no_other(rows):
    assert set(rows) == top_level_names()


def test_the_table_names_only_its_own_rows(rows):
    for row in rows.values():
        assert row.may_import <= set(rows), f"{row.name}: {sorted(row.may_import - set(rows))}"


def test_the_layers_have_an_order(rows):
    """No cycle: each row may import only rows that come before it in some order."""
    placed: set[str] = set()
    remaining = dict(rows)
    while remaining:
        ready = [n for n, r in remaining.items() if r.may_import <= placed | {n}]
        assert ready, f"the layer table has a cycle among {sorted(remaining)}"
        placed.update(ready)
        for n in ready:
            del remaining[n]


def test_the_imports_follow_the_table(rows):
    assert violations(rows) == []


def test_nothing_imports_the_faces(rows):
    """The cli, the page and the demo are faces: nothing but the command line imports them."""
    for face in ("cli", "app", "demo"):
        users = sorted(n for n, r in rows.items() if face in r.may_import)
        assert set(users) <= {"cli", "__main__"}, (face, users)


def test_a_planted_upward_import_fails(rows, tmp_path):
    """The check itself: a data module that imports the models is reported."""
    planted = tmp_path / "mesm"
    (planted / "data").mkdir(parents=True)
    (planted / "data" / "bad.py").write_text("from mesm.models import build_model\n")
    found = violations(rows, planted)
    assert len(found) == 1 and "data/bad.py imports mesm.models" in found[0]


def test_inference_does_not_import_lightning():
    # A fresh interpreter: this test process has imported Lightning already.
    code = (
        "import sys, mesm.inference.predict, mesm.inference.evaluate, mesm.inference.batch, "
        "mesm.inference.video, mesm.inference.outputs; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'mesm') "
        "and (m.startswith('lightning') or m.startswith('mesm.training'))); "
        "assert not bad, bad"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC.parent)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
