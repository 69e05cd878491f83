"""Degenerate clips through `mesm predict`: each predicts with its documented fallback, or fails
with one line naming the file (docs/bad-inputs.md, "Clips that are odd but not wrong")."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mesm.cli import main
from mesm.demo.synthetic import face_frames, speech_like, write_video, write_wav

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("degenerate")
    write_video(root / "silent.mp4", face_frames(10, 10, seed=1), 10, np.zeros(16000, np.float32))
    write_video(root / "one_frame.mp4", face_frames(1, 10, seed=2), 10, speech_like(1.0))
    write_video(root / "no_audio.mp4", face_frames(10, 10, seed=3), 10, None)
    write_wav(root / "blip.wav", speech_like(1.0)[:800])  # 50 ms: shorter than one mel chunk
    write_wav(root / "empty.wav", np.zeros(0, np.float32))
    return root


def _predict(tiny_checkpoint, clip, *extra, out=None) -> int:
    argv = ["predict", str(clip), "--checkpoint", str(tiny_checkpoint), "--precision", "32"]
    return main([*argv, *extra, *(["--json", str(out)] if out else [])])


def _valid(result: dict) -> bool:
    probabilities = [e["probability"] for e in result["emotions"].values()]
    return len(probabilities) == 4 and all(0 < p < 1 and math.isfinite(p) for p in probabilities)


@pytest.mark.parametrize(
    ("clip", "extra", "frames", "chunks", "text"),
    [
        ("silent.mp4", ["--text", "hello"], 2, 3, "hello"),  # 1 s of zeros: 3 chunks of silence
        ("one_frame.mp4", ["--text", "hello"], 1, 3, "hello"),  # a single face
        ("silent.mp4", ["--text", ""], 2, 3, ""),  # empty transcript: the encoder's [CLS] [SEP]
        ("one_frame.mp4", [], 1, 3, ""),  # no transcript option at all: empty
        ("one_frame.mp4", ["--audio", "blip.wav"], 1, 1, ""),  # 50 ms: one zero-padded chunk
    ],
)
def test_degenerate_clips_predict_with_their_fallback(
    media, tiny_checkpoint, tmp_path, capsys, clip, extra, frames, chunks, text
):
    extra = [str(media / e) if e.endswith(".wav") else e for e in extra]
    out = tmp_path / "result.json"
    assert _predict(tiny_checkpoint, media / clip, *extra, out=out) == 0
    result = json.loads(out.read_text())
    info = result["preprocessing"]
    assert (info["frames"], info["chunks"], result["transcript"]) == (frames, chunks, text)
    assert _valid(result) and result["top"] in result["emotions"]
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("clip", "extra", "named", "reason"),
    [
        ("no_audio.mp4", [], "no_audio.mp4", "has no audio track"),
        ("one_frame.mp4", ["--audio", "empty.wav"], "empty.wav", "no audio samples"),
    ],
)
def test_clips_without_audio_fail_with_one_line_naming_the_file(
    media, tiny_checkpoint, tmp_path, capsys, clip, extra, named, reason
):
    extra = [str(media / e) if e.endswith(".wav") else e for e in extra]
    out = tmp_path / "result.json"
    assert _predict(tiny_checkpoint, media / clip, *extra, out=out) == 1
    err = capsys.readouterr().err
    assert err.startswith("mesm predict: error: ") and err.count("\n") == 1
    assert str(media / named) in err and reason in err
    assert not out.exists()
