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
    write_video(root / "twenty.mp4", face_frames(20, 1, seed=4), 1, None)  # 20 s, 1 fps
    write_wav(root / "second.wav", speech_like(1.0))
    write_wav(root / "voice.mp4", speech_like(1.0))  # a WAV named .mp4: no video stream
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


def test_audio_much_shorter_than_the_clip_is_refused_naming_both_durations(
    media, tiny_checkpoint, tmp_path, capsys
):
    from bad_inputs import CASES

    out = tmp_path / "result.json"
    assert (
        _predict(tiny_checkpoint, media / "twenty.mp4", "--audio", str(media / "second.wav")) == 1
    )
    err = capsys.readouterr().err
    assert err.startswith("mesm predict: error: --audio ") and err.count("\n") == 1
    assert f"{media / 'second.wav'} lasts 1.00 s" in err and "(20.00 s)" in err
    assert CASES["audio-shorter-than-clip"].message in err and str(media / "twenty.mp4") in err
    assert not out.exists()


def test_a_file_without_a_video_stream_has_one_wording_on_every_path(
    media, tiny_checkpoint, tmp_path, capsys
):
    from bad_inputs import CASES
    from mesm.data.errors import DataError
    from mesm.data.media.video import sample_frames, video_duration

    voice = media / "voice.mp4"
    expected = f"{voice}: {CASES['no-video-stream'].message}"
    for read in (video_duration, sample_frames):
        with pytest.raises(DataError) as err:
            read(voice)
        assert str(err.value).startswith(expected)
    assert _predict(tiny_checkpoint, voice) == 1  # one clip: an error
    assert expected in capsys.readouterr().err
    srt = tmp_path / "s.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:01,000\nhi\n", encoding="utf-8")
    # A whole video (it reads the duration first: was "tuple index out of range"): a failure.
    out = tmp_path / "timeline"
    assert _predict(tiny_checkpoint, voice, "--subtitles", str(srt), "--out", str(out)) == 1
    assert expected in capsys.readouterr().err


def test_nan_in_a_separate_audio_names_the_audio_file_not_the_video(media, tmp_path):
    import soundfile as sf

    from bad_inputs import CASES
    from mesm.data.errors import DataError
    from mesm.data.media.segments import Segment
    from mesm.data.media.stream import iter_segment_media

    wave = speech_like(20.0)
    wave[16000 * 3] = np.nan
    audio = tmp_path / "nan.wav"
    sf.write(str(audio), wave, 16000, subtype="FLOAT")
    segments = [Segment(0.0, 2.0), Segment(2.5, 4.0)]
    media_iter = iter_segment_media(media / "twenty.mp4", segments, audio=audio)
    assert next(media_iter).waveform.size > 0  # the first segment is clean
    with pytest.raises(DataError, match=CASES["nan-audio"].message) as err:
        next(media_iter)
    assert str(err.value).startswith(f"{audio}: segment 2.50-4.00 s")


@pytest.mark.parametrize("offline", [True, False])
def test_an_unreachable_transcribe_model_fails_at_once_in_one_line(
    media, tiny_checkpoint, tmp_path, capsys, monkeypatch, offline
):
    import time

    from bad_inputs import CASES

    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:  # whatever the network: a name no one has is neither cached nor on the Hub
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    model = "mesm-tests/no-such-speech-model"
    began = time.monotonic()
    code = _predict(
        tiny_checkpoint, media / "silent.mp4", "--transcribe", model, "--out", str(tmp_path)
    )
    took = time.monotonic() - began
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "Retrying" not in err
    assert f"{model!r} {CASES['transcribe-offline'].message}" in err
    assert took < 15  # was ~30 s of huggingface_hub retries before the error


def test_a_transcribe_folder_that_is_not_there_is_named(tmp_path):
    from mesm.data.media.transcribe import Transcriber
    from mesm.errors import UsageError

    with pytest.raises(UsageError, match=f"no speech-recognition model folder at {tmp_path}/asr"):
        Transcriber(str(tmp_path / "asr"))
