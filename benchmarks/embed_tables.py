"""Copies the generated benchmark tables into the README, so that no number there is a hand copy.

Each region of README.md between ``<!-- table: PATH -->`` and ``<!-- end table -->`` is replaced
by the file PATH (relative to the repository root) as a benchmark script wrote it, stamp included.

Example:
    python benchmarks/embed_tables.py
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stamp import write_atomic

ROOT = Path(__file__).resolve().parent.parent
REGION = re.compile(r"(<!-- table: (\S+) -->\n)(.*?)(<!-- end table -->)", re.S)


def embed(text: str) -> str:
    def replace(match: re.Match) -> str:
        table = (ROOT / match.group(2)).read_text()
        return match.group(1) + table.rstrip("\n") + "\n" + match.group(4)

    return REGION.sub(replace, text)


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    new = embed(text)
    if new != text:
        write_atomic(str(readme), new)
    print(f"{len(REGION.findall(text))} tables embedded in {readme}")


if __name__ == "__main__":
    main()
