"""Hostile checkpoints, configs and run folders: one clear error, never a silently wrong result."""

from __future__ import annotations

import json
import math
import struct

import pytest

from bad_inputs import CASES
from helpers import tiny_model, unwritable_folder
from mesm.cli import main
from mesm.errors import CheckpointError, ConfigError, TextEncodingError
from mesm.trained.checkpoint import load_checkpoint, save_checkpoint
from mesm.training.config import load_run_config

NAMES = ["a", "b", "c", "d", "e", "f"]


@pytest.fixture
def checkpoint(tmp_path):
    return save_checkpoint(
        tmp_path / "m.safetensors",
        tiny_model("fe2e"),
        label_names=NAMES,
        task="multi_label",
        thresholds=[0.5] * 6,
    )


def _edit_header(path, edit) -> None:
    """Rewrites the mesm JSON header of a safetensors file in place (weights untouched)."""
    blob = path.read_bytes()
    (length,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + length])
    meta = json.loads(header["__metadata__"]["mesm"])
    edit(meta)
    header["__metadata__"]["mesm"] = json.dumps(meta)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + blob[8 + length :])


def _one_line_error(path, case: str) -> str:
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    text = str(err.value)
    assert CASES[case].message in text and str(path) in text and "\n" not in text
    return text


def test_flipped_weight_bytes_are_detected(checkpoint):
    blob = bytearray(checkpoint.read_bytes())
    blob[-5] ^= 0xFF  # inside the last tensor's data
    checkpoint.write_bytes(bytes(blob))
    _one_line_error(checkpoint, "checkpoint-bytes-flipped")


@pytest.mark.parametrize("bad", [[math.nan] * 6, [1.5] * 6, [-0.1] + [0.5] * 5])
def test_thresholds_must_be_finite_and_within_0_1(tmp_path, bad):
    path = tmp_path / "m.safetensors"
    with pytest.raises(CheckpointError, match=CASES["checkpoint-nan-thresholds"].message):
        save_checkpoint(path, tiny_model(), label_names=NAMES, task="multi_label", thresholds=bad)
    good = save_checkpoint(path, tiny_model(), label_names=NAMES, task="multi_label")
    _edit_header(good, lambda m: m.update(thresholds=bad))
    _one_line_error(good, "checkpoint-nan-thresholds")


def test_threshold_count_must_match_the_labels(checkpoint):
    _edit_header(checkpoint, lambda m: m.update(thresholds=[0.5] * 7))
    _one_line_error(checkpoint, "checkpoint-threshold-count")


def test_header_without_model(checkpoint):
    _edit_header(checkpoint, lambda m: m.pop("model"))
    _one_line_error(checkpoint, "checkpoint-no-model")
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", "x"]) == 1


def test_weights_that_do_not_fit_the_config_name_the_tensor(checkpoint):
    _edit_header(checkpoint, lambda m: m["model"].update(d_model=48, num_heads=2))
    text = _one_line_error(checkpoint, "checkpoint-d-model")
    assert "d_model" in text  # the header's field the first mismatch depends on is named


def test_label_names_must_match_num_classes(checkpoint):
    _edit_header(checkpoint, lambda m: m.update(label_names=NAMES[:5], thresholds=[0.5] * 5))
    _one_line_error(checkpoint, "checkpoint-num-classes")


def test_a_label_named_twice_is_refused_naming_the_file_and_the_name(checkpoint, tmp_path):
    from mesm.trained.checkpoint import CONFIG_NAME, load_model

    twice = ["a", "b", "c", "a", "e", "f"]
    with pytest.raises(ValueError, match="'a' appears twice"):
        save_checkpoint(
            tmp_path / "x.safetensors", tiny_model(), label_names=twice, task="multi_label"
        )
    folder = load_model(checkpoint).save_pretrained(tmp_path / "folder")
    _edit_header(checkpoint, lambda m: m.update(label_names=twice))
    assert "'a' twice" in _one_line_error(checkpoint, "model-duplicate-labels")
    # The same in a model folder's config.json: the error names that file.
    config = folder / CONFIG_NAME
    config.write_text(config.read_text().replace('"d"', '"a"'))
    assert str(config) in _one_line_error(folder, "model-duplicate-labels")


def test_a_model_folder_config_that_is_not_utf8_names_file_and_line(checkpoint, tmp_path):
    from mesm.trained.checkpoint import CONFIG_NAME, load_model

    folder = load_model(checkpoint).save_pretrained(tmp_path / "folder")
    config = folder / CONFIG_NAME
    text = config.read_text()
    config.write_bytes(text.replace('"a"', '"\xe4"', 1).encode("latin-1"))  # no U+FFFD guess
    line = text[: text.index('"a"')].count("\n") + 1
    assert f"{config}:{line}: " in _one_line_error(folder, "release-not-utf8")


def test_modalities_must_match_the_model_config(checkpoint):
    _edit_header(checkpoint, lambda m: m.update(modalities="ta"))
    _one_line_error(checkpoint, "checkpoint-modalities")


@pytest.mark.parametrize(
    ("override", "case"),
    [
        ("trainer.max_epochs=[1]", "override-wrong-type"),
        ("trainer.max_epochs=2.5", "override-wrong-type"),
        ("model.p=nan", "override-nan"),
        ("model.p=.nan", "override-nan"),
        ("model.p=[0.5]", "override-nan"),
    ],
)
def test_overrides_are_type_checked(override, case, capsys):
    with pytest.raises(ConfigError, match=CASES[case].message.replace(".", r"\.")):
        load_run_config(None, [override])
    assert main(["train", "--out", "unused-run", "--set", override]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and CASES[case].message in err


def test_overrides_of_the_right_type_still_work():
    config = load_run_config(None, ["trainer.max_epochs=3", "optim.lr=1e-4", "model.p=0.5"])
    assert config.trainer.max_epochs == 3 and config.optim.lr == 1e-4
    assert config.model_config().p == 0.5
    # Ints where a float is expected, and either where both are allowed, are fine.
    config = load_run_config(None, ["optim.lr=1", "trainer.limit_train_batches=2"])
    assert config.optim.lr == 1.0 and config.trainer.limit_train_batches == 2


def test_output_under_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert main(["train", "--out", str(tmp_path / "afile" / "run")]) == 1
    err = capsys.readouterr().err
    assert CASES["output-under-file"].message in err and str(tmp_path / "afile") in err
    assert err.count("\n") == 1


def test_permission_errors_name_the_path(tmp_path, capsys):
    # A real folder the file system refuses (helpers.unwritable_folder: a chmod'ed one for a
    # normal user, /sys for root), checked before anything is read or trained.
    folder = unwritable_folder(tmp_path)
    target = folder / "mesm-run"
    assert main(["train", "--out", str(target)]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"mesm train: error: {folder}: {CASES['read-only-run-folder'].message} (where --out goes)\n"
    )
    assert not target.exists()


def test_json_output_that_is_a_folder_fails_before_any_work(tmp_path, checkpoint, capsys):
    folder = tmp_path / "out"
    folder.mkdir()
    # The checkpoint and data are never opened: the output is checked first.
    args = ["--checkpoint", str(checkpoint), "--data", str(tmp_path / "nowhere")]
    assert main(["evaluate", *args, "--json", str(folder)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and CASES["json-is-folder"].message in captured.err
    assert str(folder) in captured.err


def test_transcript_text_and_file_are_explicit(tmp_path, capsys):
    from mesm.inference.predict import read_transcript, read_transcript_file

    # The transcript is resolved before the checkpoint is opened (which does not exist here).
    base = ["predict", "clip.mp4", "--checkpoint", str(tmp_path / "none.safetensors")]
    missing = tmp_path / "notes" / "t.txt"
    assert main([*base, "--transcript-file", str(missing)]) == 1
    err = capsys.readouterr().err
    assert CASES["transcript-file-missing"].message in err and str(missing) in err
    assert main([*base, "--transcript", "notes/t.txt"]) == 1
    assert CASES["transcript-looks-like-path"].message in capsys.readouterr().err
    # --text is always the words; --transcript still reads an existing file.
    path = tmp_path / "t.txt"
    path.write_text("  I am fine \n", encoding="utf-8")
    assert read_transcript_file(path) == "I am fine" == read_transcript(str(path))
    assert read_transcript("I am so tired of all of this") == "I am so tired of all of this"
    assert read_transcript("fine") == "fine"


def test_undecodable_transcript_names_the_file_line_and_encodings(tmp_path, capsys):
    from mesm.inference.predict import read_transcript_file

    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"line one\n" + b"bad \x81 byte\n")  # 0x81: neither UTF-8 nor cp1252
    with pytest.raises(TextEncodingError, match=CASES["text-not-decodable"].message) as err:
        read_transcript_file(bad)
    assert str(err.value).startswith(f"{bad}:2: ")
    base = ["predict", "clip.mp4", "--checkpoint", str(tmp_path / "none.safetensors")]
    assert main([*base, "--transcript-file", str(bad)]) == 1
    assert f"{bad}:2: not UTF-8, UTF-16 or cp1252" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("encoding", "bom", "reported"),
    [("latin-1", b"", "cp1252"), ("utf-16-le", b"\xff\xfe", "utf-16-le")],
)
def test_a_transcript_in_another_encoding_is_read_and_the_encoding_reported(
    tmp_path, capsys, encoding, bom, reported
):
    from mesm.inference.predict import read_transcript_file

    path = tmp_path / "t.txt"
    path.write_bytes(bom + "déjà vu\n".encode(encoding))
    text = read_transcript_file(path)
    assert text == "déjà vu" and text.encoding == reported
    # The command says how it read the file (then fails on the missing checkpoint).
    base = ["predict", "clip.mp4", "--checkpoint", str(tmp_path / "none.safetensors")]
    assert main([*base, "--transcript-file", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"mesm: read {path} as {reported} {CASES['subtitles-other-encoding'].message}" in err


def test_format_1_checkpoints_still_load_and_format_2_needs_its_checksum(checkpoint):
    # mesm 0.1.0 wrote format 1 without a checksum: still read (everything else is checked).
    _edit_header(checkpoint, lambda m: (m.update(format=1), m.pop("weights_sha256")))
    _, meta = load_checkpoint(checkpoint)
    assert meta["format"] == 1 and meta["label_names"] == NAMES
    _edit_header(checkpoint, lambda m: m.update(format=2))
    with pytest.raises(CheckpointError, match="header lacks 'weights_sha256'"):
        load_checkpoint(checkpoint)
