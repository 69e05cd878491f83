"""The `mesm` command: help of every subcommand, the demo's report, clear errors."""

from __future__ import annotations

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


def test_bad_argument_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    assert main(["demo", "--out", str(tmp_path)]) == 1
    assert "already holds a demo run" in capsys.readouterr().err
