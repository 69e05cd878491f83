"""The bad-input table of docs/bad-inputs.md is generated from tests/bad_inputs.py, and every
case is tested."""

from __future__ import annotations

from pathlib import Path

from bad_inputs import CASES, PAGE, page_table, render

TESTS = Path(__file__).resolve().parent


def test_page_table_is_generated_from_the_cases():
    assert page_table(PAGE.read_text()) == render(), (
        f"{PAGE.name}: the bad-input table is stale: "
        "run `PYTHONPATH=src python tests/bad_inputs.py`"
    )


def test_every_case_is_used_by_a_test():
    # A case is used where a test names its key as a string (CASES["key"] or a parameter).
    sources = "".join(path.read_text() for path in TESTS.rglob("test_*.py"))
    unused = [key for key in CASES if f'"{key}"' not in sources and f"'{key}'" not in sources]
    assert unused == []
