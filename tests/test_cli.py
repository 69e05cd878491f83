"""The `mesm` command: help of every subcommand, the demo's report, clear errors."""

from __future__ import annotations

import json

import pytest

from mesm.cli import build_parser, main


def _subcommands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)


@pytest.mark.parametrize("command", _subcommands())
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: mesm " + command in capsys.readouterr().out


def test_demo_reports_probabilities_and_flops(tmp_path, capsys):
    out = tmp_path / "report.json"
    assert (
        main(
            [
                "demo",
                "--preset",
                "tiny",
                "--p",
                "0.5",
                "--frames",
                "3",
                "--chunks",
                "2",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert "MESM / FE2E feature-extraction FLOPs" in printed
    fe2e, sparse = report["models"]["FE2E"], report["models"]["MESM"]
    assert len(fe2e["probabilities"]) == 2 and len(fe2e["probabilities"][0]) == 6
    assert all(0 < v < 1 for row in sparse["probabilities"] for v in row)
    assert 0 < report["flops_ratio"] < 1
    assert (
        sparse["gflops_per_utterance"]["attention"] > 0 == fe2e["gflops_per_utterance"]["attention"]
    )
    assert set(sparse["sites_kept"]) == {f"{m}.stages.{i}" for m in "av" for i in range(3)}
    assert all(0 < v <= 1 for v in sparse["sites_kept"].values())


def test_bad_argument_is_a_clear_error(capsys):
    assert main(["demo", "--preset", "tiny", "--p", "-1"]) == 2
    assert "p must be > 0" in capsys.readouterr().err
