"""The bad-input table of docs/bad-inputs.md is generated from tests/bad_inputs.py, and every
case is tested."""

from __future__ import annotations

import ast
from pathlib import Path

from bad_inputs import CASES, PAGE, page_table, render

TESTS = Path(__file__).resolve().parent


def test_page_table_is_generated_from_the_cases():
    assert page_table(PAGE.read_text()) == render(), (
        f"{PAGE.name}: the bad-input table is stale: "
        "run `PYTHONPATH=src python tests/bad_inputs.py`"
    )


def string_literals(source: str) -> set[str]:
    """The string constants of Python source that are values in its code: not comments (the
    parser drops them) and not docstrings or other bare string statements."""
    tree = ast.parse(source)
    bare = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in bare
    }


def test_every_case_is_used_by_a_test():
    # A case is used where a test's code names its key as a string (CASES["key"] or a
    # parameter); a key that only appears in a comment or a docstring does not count.
    used = set().union(*(string_literals(p.read_text()) for p in TESTS.rglob("test_*.py")))
    unused = [key for key in CASES if key not in used]
    assert unused == []


def test_a_key_in_a_comment_or_docstring_is_not_a_use():
    source = '''
def test_x():
    """Covers "in-docstring"."""
    # CASES["in-comment"]
    "bare-string"
    assert CASES["in-code"].message
'''
    assert string_literals(source) == {"in-code"}
