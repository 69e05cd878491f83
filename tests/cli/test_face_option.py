"""`--face speaker|largest` on `mesm preprocess` and `mesm predict` (parsing and defaults)."""

from __future__ import annotations

import pytest

from mesm.cli import build_parser


def test_preprocess_defaults_to_the_largest_face():
    parser = build_parser()
    assert parser.parse_args(["preprocess", "ds"]).face == "largest"
    assert parser.parse_args(["preprocess", "ds", "--face", "speaker"]).face == "speaker"


def test_predict_leaves_the_default_to_the_input_kind():
    parser = build_parser()
    args = parser.parse_args(["predict", "v.mp4", "--checkpoint", "c.safetensors"])
    assert args.face is None  # whole videos: speaker; clips: the checkpoint's rule
    args = parser.parse_args(["predict", "v.mp4", "--checkpoint", "c", "--face", "largest"])
    assert args.face == "largest"


def test_an_unknown_face_choice_is_refused(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["preprocess", "ds", "--face", "loudest"])
    assert "invalid choice: 'loudest'" in capsys.readouterr().err
