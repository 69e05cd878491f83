"""Bad media through `preprocess_dataset`: one clear error naming the file and the record."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from mesm.data.errors import ManifestError, PreprocessError
from mesm.data.media.cache import FeatureCache
from mesm.data.media.preprocess import preprocess_dataset


def _failure(root) -> dict[str, str]:
    with pytest.raises(PreprocessError) as info:
        preprocess_dataset(root, progress=False)
    return info.value.failures


def test_corrupt_video(media_root, make_dataset):
    (media_root / "bad.mp4").write_bytes((media_root / "v.mp4").read_bytes()[:3000])
    make_dataset(media_root, [{}, {"video": "bad.mp4", "audio": "a.wav"}])
    failures = _failure(media_root)
    assert list(failures) == ["u1"]
    assert "record 'u1'" in failures["u1"] and "bad.mp4: cannot open video" in failures["u1"]
    # The good utterance was cached anyway; the bad one left nothing behind.
    cache = FeatureCache(media_root)
    assert cache.has("u0") and not cache.has("u1")
    assert not list(cache.items.glob(".*"))


def test_nan_audio(media_root, make_dataset):
    wave = np.zeros(16000, np.float32)
    wave[100] = np.nan
    sf.write(media_root / "nan.wav", wave, 16000, subtype="FLOAT")
    make_dataset(media_root, [{"audio": "nan.wav"}])
    assert "nan.wav: the audio contains 1 NaN/infinite sample(s)" in _failure(media_root)["u0"]


def test_missing_audio_file(media_root, make_dataset):
    make_dataset(media_root, [{"audio": "gone.wav"}])
    with pytest.raises(ManifestError, match=r"audio file 'gone\.wav' does not exist"):
        preprocess_dataset(media_root, progress=False)


def test_video_without_audio_track_and_no_audio_file(media_root, make_dataset):
    make_dataset(media_root, [{"video": "mute.mp4"}])
    assert "mute.mp4: has no audio track" in _failure(media_root)["u0"]


def test_no_frames_in_the_time_span(media_root, make_dataset):
    make_dataset(media_root, [{"start": 3.0, "end": 4.0}])
    message = _failure(media_root)["u0"]
    assert (
        "record 'u0'" in message and "v.mp4: no video frames in the time span [3.0, 4.0)" in message
    )


def test_audio_span_beyond_the_wav(media_root, make_dataset):
    sf.write(media_root / "short.wav", np.zeros(4800, np.float32), 16000)  # 0.3 s
    make_dataset(media_root, [{"audio": "short.wav", "start": 0.5, "end": 0.9}])
    message = _failure(media_root)["u0"]
    assert "short.wav: no audio samples in the time span [0.5, 0.9)" in message


def test_errors_name_every_failed_record(media_root, make_dataset):
    (media_root / "junk.mp4").write_bytes(b"junk" * 100)
    make_dataset(media_root, [{"video": "junk.mp4", "audio": "a.wav"}, {"video": "mute.mp4"}])
    with pytest.raises(PreprocessError) as info:
        preprocess_dataset(media_root, progress=False)
    text = str(info.value)
    assert text.startswith("2 utterance(s) failed to preprocess")
    assert "- u0: record 'u0': " in text and "- u1: record 'u1': " in text
