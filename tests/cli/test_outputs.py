"""Issue 24, classes 1 and 2: what a command writes never replaces what it reads or an earlier
result (without --overwrite), and every output location is checked before any work.

The inputs here are mostly files that are not checkpoints or videos at all: a command that did
any work before checking its outputs would fail on them with another message.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from bad_inputs import CASES
from helpers import command_leaves, tiny_model, unwritable_folder
from mesm.cli import main
from mesm.trained.checkpoint import load_model, save_checkpoint

LEAVES = command_leaves()


def _error(capsys) -> str:
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err, (out, err)
    return err


@pytest.fixture
def inputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, text in (("ck.safetensors", "model"), ("a.mp4", "video a"), ("b.mp4", "video b")):
        (tmp_path / name).write_text(text)
    return tmp_path


# ---- class 1: an output is never an input -------------------------------------------------------


@pytest.mark.parametrize("how", ["same path", "symlink", "hard link"])
def test_json_naming_the_checkpoint_is_refused_before_any_work(inputs, capsys, how):
    target = {"same path": "ck.safetensors", "symlink": "link.json", "hard link": "hard.json"}[how]
    if how == "symlink":
        os.symlink(inputs / "ck.safetensors", inputs / target)
    if how == "hard link":
        os.link(inputs / "ck.safetensors", inputs / target)
    args = ["predict", "a.mp4", "--checkpoint", "ck.safetensors", "--json", target]
    assert main(args) == 1
    err = _error(capsys)
    assert err.startswith(f"mesm predict: error: {target}: ")
    assert CASES["output-is-input"].message in err and "(--checkpoint)" in err
    assert (inputs / "ck.safetensors").read_text() == "model"
    assert main([*args, "--overwrite"]) == 1  # --overwrite never replaces an input
    assert CASES["output-is-input"].message in _error(capsys)


def test_csv_naming_an_input_video_is_refused(inputs, capsys):
    args = ["predict", "a.mp4", "b.mp4", "--checkpoint", "ck.safetensors", "--csv", "a.mp4"]
    assert main(args) == 1
    err = _error(capsys)
    assert err == (
        f"mesm predict: error: a.mp4: {CASES['output-is-input'].message} (CLIP); "
        "--csv would replace it\n"
    )
    assert (inputs / "a.mp4").read_text() == "video a"


def test_json_naming_a_dataset_manifest_is_refused(inputs, capsys):
    dataset = inputs / "data"
    dataset.mkdir()
    (dataset / "manifest.jsonl").write_text("{}\n")
    args = ["evaluate", "--checkpoint", "ck.safetensors", "--data", "data"]
    assert main([*args, "--json", "data/manifest.jsonl", "--overwrite"]) == 1
    err = _error(capsys)
    assert CASES["output-in-input-folder"].message in err and "data/manifest.jsonl" in err
    assert (dataset / "manifest.jsonl").read_text() == "{}\n"


def test_nothing_is_written_inside_an_input_model_folder(inputs, capsys):
    (inputs / "model").mkdir()
    args = ["predict", "a.mp4", "--checkpoint", "model", "--json", "model/new.json"]
    assert main(args) == 1
    assert CASES["output-in-model-folder"].message in _error(capsys)
    assert not (inputs / "model" / "new.json").exists()


def test_two_outputs_naming_one_file_are_refused(inputs, capsys):
    args = ["predict", "a.mp4", "b.mp4", "--checkpoint", "ck.safetensors"]
    assert main([*args, "--csv", "rows", "--json", "rows"]) == 1
    assert "is named by both --json and --csv" in _error(capsys)


# ---- class 1: an earlier result is replaced only with --overwrite -----------------------------


def test_out_onto_an_earlier_timeline_needs_overwrite(inputs, capsys):
    out = inputs / "timeline"
    out.mkdir()
    (out / "timeline.csv").write_text("an earlier run\n")
    (inputs / "a.srt").write_text("")
    args = ["predict", "a.mp4", "--checkpoint", "ck.safetensors", "--subtitles", "a.srt"]
    assert main([*args, "--out", "timeline"]) == 1
    err = _error(capsys)
    assert err == (
        f"mesm predict: error: timeline: {CASES['out-holds-results'].message} (earlier "
        "results?); pass --overwrite to write over them (or choose another --out)\n"
    )
    assert (out / "timeline.csv").read_text() == "an earlier run\n"
    # With --overwrite the paths pass and the work starts (and fails on the fake checkpoint).
    assert main([*args, "--out", "timeline", "--overwrite"]) == 1
    assert "already holds" not in capsys.readouterr().err


def test_an_existing_json_needs_overwrite(inputs, capsys):
    (inputs / "flops.json").write_text("earlier\n")
    args = ["flops", "--preset", "tiny", "--frames", "1", "--chunks", "1", "--json", "flops.json"]
    assert main(args) == 1
    assert CASES["output-exists"].message in _error(capsys)
    assert (inputs / "flops.json").read_text() == "earlier\n"
    assert main([*args, "--overwrite"]) == 0
    assert '"ratio"' in (inputs / "flops.json").read_text()


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    model = tiny_model("fe2e", num_classes=2)
    path = tmp_path / "ck.safetensors"
    return save_checkpoint(path, model, label_names=["a", "b"], task="multi_label")


def test_export_onto_a_folder_or_a_model_needs_overwrite(checkpoint, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's\n")
    assert main(["export", "--checkpoint", str(checkpoint), str(mine)]) == 1
    assert CASES["out-holds-results"].message in _error(capsys)
    model = tmp_path / "model"
    assert main(["export", "--checkpoint", str(checkpoint), str(model)]) == 0
    before = (model / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert main(["export", "--checkpoint", str(checkpoint), str(model)]) == 1  # a model there
    assert CASES["out-holds-results"].message in _error(capsys)
    # Onto the input model folder itself: refused even with --overwrite.
    assert main(["export", "--checkpoint", str(model), str(model), "--overwrite"]) == 1
    assert CASES["output-is-input"].message in _error(capsys)
    # Into the folder holding the input file, where export would write model.safetensors.
    beside = model / "model.safetensors"
    assert main(["export", "--checkpoint", str(beside), str(model), "--overwrite"]) == 1
    assert f"{beside}: {CASES['output-is-input'].message}" in _error(capsys)
    assert (model / "model.safetensors").read_bytes() == before
    assert main(["export", "--checkpoint", str(checkpoint), str(mine), "--overwrite"]) == 0
    assert (mine / "notes.txt").read_text() == "the user's\n"  # only the model's files written
    assert load_model(mine).label_names == ["a", "b"]


# ---- class 2: every output location, before any work -------------------------------------------

# The least each command needs to parse; the inputs do not exist (nothing may be read first).
MINIMAL = {
    "prepare iemocap": ["--release", "rel", "--out", "ds"],
    "prepare mosei": ["--release", "rel", "--out", "ds"],
    "prepare released": ["--release", "rel"],
    "preprocess": ["ds"],
    "features": ["ds"],
    "train": ["--out", "run"],
    "evaluate": ["--checkpoint", "ck", "--data", "ds"],
    "export": ["--checkpoint", "ck", "OUT"],
    "compare": ["run"],
    "predict": ["a.mp4", "--checkpoint", "ck"],
    "flops": [],
    "sweep-p": ["--checkpoint", "ck", "--data", "ds"],
    "explain": ["a.mp4", "--checkpoint", "ck", "--out", "maps"],
    "demo": [],
}
FOLDER_OUTPUTS = {"--out", "OUT"}


def _output_options(words: tuple[str, ...], parser: argparse.ArgumentParser) -> list[str]:
    """The options of a command that name something it writes."""
    found = []
    for action in parser._actions:
        names = action.option_strings or [action.metavar]
        if action.dest in ("json", "csv", "out"):
            found.extend(n for n in names if n.startswith("--") or n == "OUT")
    return found


OUTPUTS = [
    (" ".join(words), option)
    for words, parser in LEAVES.items()
    for option in _output_options(words, parser)
]


def test_every_output_option_is_covered():
    assert {command for command, _ in OUTPUTS} <= set(MINIMAL)
    assert len(OUTPUTS) >= 20 and ("predict", "--csv") in OUTPUTS and ("export", "OUT") in OUTPUTS


def _with_output(command: str, option: str, value: str) -> list[str]:
    args = list(MINIMAL[command])
    if option == "OUT":
        return [*command.split(), *[value if a == "OUT" else a for a in args]]
    if option in args:
        args[args.index(option) + 1] = value
    else:
        args += [option, value]
    return [*command.split(), *args]


@pytest.mark.parametrize("where", ["under a file", "unwritable", "wrong kind"])
@pytest.mark.parametrize(("command", "option"), OUTPUTS)
def test_a_bad_output_location_is_one_line_before_any_work(
    command, option, where, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "afolder").mkdir()
    folder_output = option in FOLDER_OUTPUTS
    if where == "under a file":
        value, blamed, case = "afile/out", "afile", "output-under-file"
    elif where == "unwritable":
        blamed = str(unwritable_folder(tmp_path))
        value, case = f"{blamed}/out", "read-only-run-folder"
    else:
        value = blamed = "afile" if folder_output else "afolder"
        case = "out-is-file" if folder_output else "json-is-folder"
    assert main(_with_output(command, option, value)) == 1
    err = _error(capsys)
    assert err.startswith(f"mesm {command.split()[0]}: error: {blamed}: ")
    assert CASES[case].message in err


def test_missing_folders_of_an_output_file_are_made(tmp_path, capsys):
    out = tmp_path / "new" / "deeper" / "flops.json"
    args = ["flops", "--preset", "tiny", "--frames", "1", "--chunks", "1", "--json", str(out)]
    assert main(args) == 0
    assert CASES["missing-output-folder"].message in capsys.readouterr().out
    assert out.is_file()
