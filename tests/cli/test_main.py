"""The `mesm` command: every help, one meaning per option, which errors become one line."""

from __future__ import annotations

import argparse
import json

import pytest

from helpers import command_leaves
from mesm.cli import build_parser, main
from mesm.cli import train as cli_train
from mesm.errors import UsageError

# Options that mean one thing wherever they appear: same help and default on every subcommand.
SHARED = (
    "--batch-size",
    "--checkpoint",
    "--data",
    "--device",
    "--json",
    "--no-progress",
    "--overwrite",
    "--p",
    "--workers",
)


LEAVES = command_leaves()


@pytest.mark.parametrize("command", [" ".join(words) for words in LEAVES])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command.split(), "--help"])
    assert exit_info.value.code == 0
    assert "usage: mesm " + command in capsys.readouterr().out


def test_prepare_has_one_subcommand_per_source():
    assert sorted(w[1] for w in LEAVES if w[0] == "prepare") == ["iemocap", "mosei", "released"]
    options = {w[1]: _options(p) for w, p in LEAVES.items() if w[0] == "prepare"}
    # Only the sources that cut clips take the cutting options: nothing is silently ignored.
    # (--overwrite is on every command that writes a file: there it replaces an existing --json.)
    cutting = {"--workers", "--crf", "--no-progress"}
    assert cutting | {"--overwrite"} <= options["iemocap"] and cutting <= options["mosei"]
    assert not cutting & options["released"] and "--kind" in options["released"]


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


def test_shared_options_have_one_help_and_one_default():
    seen: dict[str, dict[tuple, list[str]]] = {}
    for words, parser in LEAVES.items():
        for action in parser._actions:
            for option in set(action.option_strings) & set(SHARED):
                key = (action.help, action.default, action.type, action.nargs, action.metavar)
                seen.setdefault(option, {}).setdefault(key, []).append(" ".join(words))
    assert set(seen) == set(SHARED)
    differing = {option: list(kinds.values()) for option, kinds in seen.items() if len(kinds) > 1}
    assert differing == {}


def test_every_command_that_prints_results_has_json_out():
    # `serve` prints no results: it serves a page until stopped.
    assert [" ".join(w) for w, p in LEAVES.items() if "--json" not in _options(p)] == ["serve"]


def test_sweep_takes_a_list_of_ps_and_p_is_one_number():
    parser = build_parser()
    args = parser.parse_args(["sweep-p", "--checkpoint", "c", "--data", "d", "--ps", "0.3", "1"])
    assert args.ps == [0.3, 1.0]
    assert parser.parse_args(["flops", "--p", "0.5"]).p == 0.5
    with pytest.raises(SystemExit):
        parser.parse_args(["sweep-p", "--checkpoint", "c", "--data", "d", "--p", "0.5"])
    for bad in ("-1", "0", "nan", "x"):
        with pytest.raises(SystemExit):
            parser.parse_args(["flops", "--p", bad])
        with pytest.raises(SystemExit):
            parser.parse_args(["sweep-p", "--checkpoint", "c", "--data", "d", "--ps", "0.5", bad])


def test_the_projects_errors_are_one_line_with_status_1(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    assert main(["demo", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err == f"mesm demo: error: {tmp_path}: already holds a demo run; choose another --out\n"


def test_other_exceptions_keep_their_traceback(monkeypatch, capsys):
    def bug(args):
        raise KeyError("a bug, not bad input")

    def ours(args):
        raise UsageError("bad input")

    monkeypatch.setattr(cli_train, "_cmd_compare", bug)
    with pytest.raises(KeyError, match="a bug"):
        main(["compare", "run"])
    monkeypatch.setattr(cli_train, "_cmd_compare", ours)
    assert main(["compare", "run"]) == 1
    assert capsys.readouterr().err == "mesm compare: error: bad input\n"


def test_json_out_is_checked_before_any_work_and_written_atomically(tmp_path, capsys):
    blocked = tmp_path / "afile"
    blocked.write_text("x")
    args = ["flops", "--preset", "tiny", "--frames", "2", "--chunks", "2", "--json"]
    assert main([*args, str(blocked / "flops.json")]) == 1
    assert capsys.readouterr() == (
        "",
        f"mesm flops: error: {blocked}: Not a directory (where --json goes)\n",
    )
    out = tmp_path / "new" / "flops.json"  # missing folders on an output's path are made
    assert main([*args, str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert f"ratio to FE2E: {report['ratio']:.3f}" in printed
    assert printed.endswith(f"written to {out}\n")
    assert [p.name for p in out.parent.iterdir()] == ["flops.json"]  # no temporary left


def test_no_option_parses_a_bare_float():
    # `float` accepts nan, inf and negatives; every number option goes through a checked type.
    bare = [
        (" ".join(words), action.option_strings)
        for words, parser in LEAVES.items()
        for action in parser._actions
        if action.type is float
    ]
    assert bare == []


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["predict", "c.mp4", "--max-segment", "nan"], "argument --max-segment: must be a finite"),
        (["predict", "c.mp4", "--max-segment", "-3"], "argument --max-segment: must be a finite"),
        (["predict", "c.mp4", "--min-silence", "0"], "argument --min-silence: must be a finite"),
        (["preprocess", "d", "--img-interval", "inf"], "argument --img-interval: must be a fin"),
        (["flops", "--p", "nan"], "argument --p: p must be a finite number > 0"),
        (["flops", "--p", "inf"], "argument --p: p must be a finite number > 0"),
        (["flops", "--batch-size", "0"], "argument --batch-size: must be >= 1"),
        (["predict", "c.mp4", "--device", "banana"], "argument --device: unknown device 'bana"),
        (["serve", "--port", "99999"], "argument --port: a port is 1 to 65535, got '99999'"),
        (["serve", "--port", "0"], "argument --port: must be >= 1"),
    ],
)
def test_a_bad_number_or_device_is_a_usage_error_naming_the_option(argv, words, capsys):
    from bad_inputs import CASES

    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--checkpoint", "none.safetensors"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    if "must be a finite" in words:
        assert CASES["option-not-finite"].message in err
    if "--port" in words and "99999" in words:
        assert CASES["port-out-of-range"].message in err


def test_cuda_without_a_gpu_is_a_usage_error(monkeypatch, capsys):
    from bad_inputs import CASES

    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    for device in ("cuda", "cuda:1"):
        with pytest.raises(SystemExit) as exit_:
            main(["predict", "c.mp4", "--checkpoint", "x", "--device", device])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert f"{CASES['device-unavailable'].message}: '{device}': no CUDA GPU" in err
