"""The documentation site builds strictly, and every table of numbers in it (and in the README) is
a file a benchmark script wrote, stamped with the command, commit and machine it ran on."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import require_module

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
GENERATED = sorted((DOCS / "benchmarks").glob("*.md"))
PAGES = sorted(p for p in DOCS.rglob("*.md") if p.parent != DOCS / "benchmarks")
SNIPPET = re.compile(r'^--8<-- "([^"]+)"\s*$', re.M)
STAMP = re.compile(r"^_command: python (benchmarks/[\w/]+\.py)\b[^;]*; commit (\S+); (.*)_$")
# What the stamp says besides the command and the commit (benchmarks/stamp.py).
STAMP_FACTS = (r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", r"CPU .+, \d+ cores", r"\d+ threads", "torch ")
STAMP_FACTS += (r"load at start (\d+\.\d\d on \d+ cores|unknown)",)
# A measurement in a table cell: a bare number, with a unit or a percent sign at most. Numbers
# that are settings, not measurements, are written as code (`2048`) and do not count.
UNITS = r"%|x|×|µs|ms|s|min|h|[kKMG]B|[KMGT]?FLOPs?|[a-z]+/s"
MEASURED = re.compile(rf"^\**[-+−]?\d[\d,]*(\.\d+)?\s*({UNITS})?\**$")


def _tables(text: str) -> list[list[str]]:
    """The body rows of the markdown tables in `text`, as lists of cells."""
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("|") and not re.fullmatch(r"\|[-:| ]+\|", line):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def _measured_cells(text: str) -> list[str]:
    return [cell for row in _tables(text) for cell in row if MEASURED.match(cell)]


def _readme_without_embedded_tables() -> str:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from embed_tables import REGION

    return REGION.sub("", (ROOT / "README.md").read_text())


def test_site_builds_strictly(tmp_path):
    require_module("mkdocs", "mkdocs is missing (pip install -e '.[dev]')")
    require_module("mkdocstrings_handlers.python", "mkdocstrings[python] is missing")
    require_module("material", "mkdocs-material is missing")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=120,
    )
    log = built.stdout + built.stderr
    assert built.returncode == 0, log
    assert "WARNING" not in log, log
    home = (tmp_path / "index.html").read_text()
    assert "md-header" in home  # the Material theme
    api = (tmp_path / "api" / "inference" / "index.html").read_text()
    assert "predict_clip" in api  # the API reference comes from the docstrings
    # A page that includes a generated table shows it, stamp and all.
    engine = (tmp_path / "sparse-engine" / "index.html").read_text()
    first = (DOCS / "benchmarks" / "sparse_extractors.md").read_text().splitlines()[0]
    assert re.search(r"commit \w+; [^;]+ UTC", first).group(0) in engine


@pytest.mark.parametrize("path", GENERATED, ids=[p.name for p in GENERATED])
def test_generated_table_is_stamped_by_an_existing_script(path):
    first = path.read_text().splitlines()[0]
    stamp = STAMP.match(first)
    assert stamp, f"{path.name}: its first line is not a benchmark stamp (benchmarks/stamp.py)"
    assert (ROOT / stamp.group(1)).is_file(), f"{path.name}: no script {stamp.group(1)}"
    assert re.fullmatch(r"[0-9a-f]{7,40}(\+dirty)?", stamp.group(2)), stamp.group(2)
    for fact in STAMP_FACTS:
        assert re.search(fact, stamp.group(3)), f"{path.name}: the stamp lacks {fact!r}"
    assert _tables(path.read_text()), f"{path.name}: no table"


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_page_tables_of_numbers_are_included_from_generated_files(page):
    text = page.read_text()
    assert _measured_cells(text) == [], (
        f"{page.name}: a table of numbers written by hand; include the file its benchmark "
        'script writes instead (--8<-- "docs/benchmarks/NAME.md")'
    )
    for included in SNIPPET.findall(text):
        assert (ROOT / included).parent == DOCS / "benchmarks", included
        assert (ROOT / included).is_file(), included


def test_readme_tables_of_numbers_are_embedded_generated_files():
    assert _measured_cells(_readme_without_embedded_tables()) == [], (
        "README: a table of numbers written by hand; embed a generated file instead "
        "(<!-- table: docs/benchmarks/NAME.md --> ... <!-- end table -->)"
    )


def test_readme_embedded_tables_equal_their_files():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from embed_tables import REGION, embed

    text = (ROOT / "README.md").read_text()
    assert REGION.search(text), "the README embeds no generated table"
    for match in REGION.finditer(text):
        assert (ROOT / match.group(2)).parent == DOCS / "benchmarks", match.group(2)
    assert embed(text) == text, "README tables are stale: run python benchmarks/embed_tables.py"


def test_the_checks_catch_a_hand_written_table_and_a_missing_stamp():
    hand = "| model | ms |\n|---|---|\n| FE2E | 91.2 |\n| MESM | 12 % |\n| 0.8 GB | **no** |\n"
    assert _measured_cells(hand) == ["91.2", "12 %", "0.8 GB"]
    settings = "| option | paper |\n|---|---|\n| `ffn_dim` | `2048` |\n| p | 0.7 IEMOCAP |\n"
    assert _measured_cells(settings) == []
    assert not STAMP.match("_commit abc1234; 2026-01-01 00:00 UTC; CPU x, 2 cores_")
