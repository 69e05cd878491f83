"""MkDocs hook: the docstrings' Sphinx cross-reference roles (``:func:`x```) rendered as code.

mkdocstrings renders a role as its name followed by the code span (":func:``x``"); this drops the
role and, as Sphinx does for ``~a.b.c``, shows only the last part of a name written with ``~``.
"""

from __future__ import annotations

import re

ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|exc|obj):<code>(~?)([^<]*)</code>")


def _code(match: re.Match) -> str:
    name = match.group(2).rsplit(".", 1)[-1] if match.group(1) else match.group(2)
    return f"<code>{name}</code>"


def on_page_content(html: str, **kwargs) -> str:
    return ROLE.sub(_code, html)
