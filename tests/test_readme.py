"""The README's first commands are the ones CI runs, and its Python blocks run as written."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", README, flags=re.S)


def test_readme_opens_with_the_demo_and_test_commands():
    first, second = BLOCKS[0], BLOCKS[1]
    assert README.index("```") < 200, "the commands must come first"
    assert first == ("bash", "bash scripts/install.sh && mesm demo --out mesm-demo\n")
    assert second == ("bash", "bash scripts/test.sh\n")
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in ci


def test_readme_python_blocks_run(capsys):
    python_blocks = [code for lang, code in BLOCKS if lang == "python"]
    assert python_blocks
    for code in python_blocks:
        exec(compile(code, "README.md", "exec"), {})
    assert "torch.Size([1, 6])" in capsys.readouterr().out
