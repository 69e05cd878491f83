"""The README's first commands are the ones CI runs, its tour runs on the demo's output, and the
documentation's Python and whole-video blocks run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", README, flags=re.S)
PAGES = sorted((ROOT / "docs").glob("*.md"))
DOC_BLOCKS = [
    block
    for page in PAGES
    for block in re.findall(r"^```(\w*)\n(.*?)^```", page.read_text(), flags=re.S | re.M)
]


def test_readme_opens_with_the_demo_and_test_commands():
    first, second = BLOCKS[0], BLOCKS[1]
    # What mesm is (a few lines and the picture), then the commands, before any section.
    assert README.index("```") < min(1000, README.index("\n## ")), "the commands must come first"
    assert first == ("bash", "bash scripts/install.sh && mesm demo --out mesm-demo\n")
    assert second == ("bash", "bash scripts/test.sh\n")
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in ci


def test_readme_is_short():
    assert len(README.splitlines()) <= 220


def test_docs_python_blocks_run(capsys):
    python_blocks = [code for lang, code in BLOCKS + DOC_BLOCKS if lang == "python"]
    assert python_blocks
    for code in python_blocks:
        exec(compile(code, "docs", "exec"), {})
    assert "torch.Size([1, 6])" in capsys.readouterr().out


def test_readme_tour_runs_on_the_demo_output(quick_demo, monkeypatch, capsys):
    import shlex

    from mesm.cli import main

    root, _ = quick_demo
    monkeypatch.chdir(root)
    tour = next(code for lang, code in BLOCKS if lang == "bash" and "mesm predict" in code)
    started = (ROOT / "docs" / "getting-started.md").read_text()
    assert f"```bash\n{tour}```" in started, "the tour of docs/getting-started.md differs"
    commands = [shlex.split(line) for line in tour.splitlines() if line.strip()]
    assert [c[1] for c in commands] == [
        "predict",
        "evaluate",
        "flops",
        "sweep-p",
        "explain",
        "explain",
    ]
    for command in commands:
        assert command[0] == "mesm"
        assert main(command[1:]) == 0, command
    printed = capsys.readouterr().out
    assert "most likely" in printed and "ratio to FE2E" in printed
    assert (root / "mesm-demo" / "sweep" / "sweep.png").is_file()
    assert (root / "mesm-demo" / "explain" / "overview.png").is_file()
    assert (root / "mesm-demo" / "regions-test" / "regions.csv").is_file()


@pytest.mark.usefixtures("one_thread")
def test_docs_whole_video_block_runs_on_the_demo_output(quick_demo, monkeypatch, capsys):
    import csv
    import shlex

    from mesm.cli import main

    root, _ = quick_demo
    monkeypatch.chdir(root)
    block = next(code for lang, code in DOC_BLOCKS if lang == "bash" and "--subtitles" in code)
    commands = [shlex.split(line) for line in block.splitlines() if line.strip()]
    for command in commands:
        assert command[:2] == ["mesm", "predict"]
        assert main(command[1:]) == 0, command
    demo = root / "mesm-demo"
    with open(demo / "timeline" / "timeline.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    cues = (demo / "video" / "talk.srt").read_text().strip().split("\n\n")
    assert len(rows) == len(cues) and [r["text"] for r in rows] == [c.split("\n")[2] for c in cues]
    for name in ("timeline", "timeline-vad"):
        assert (demo / name / "timeline.png").stat().st_size > 10_000
    assert "blank" in capsys.readouterr().err  # VAD without --transcribe: the text is empty
    assert len((demo / "clips.csv").read_text().splitlines()) == 3
    assert (ROOT / "docs" / "timeline_demo.png").stat().st_size < 200_000
