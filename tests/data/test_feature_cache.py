"""The feature cache: contents, settings keys, resumption, atomic entries, parallel workers."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

import mesm.data.media.preprocess as preprocess_module
from mesm.data.errors import DataError
from mesm.data.manifest import read_dataset
from mesm.data.media.cache import FeatureCache, PreprocessSettings
from mesm.data.media.preprocess import preprocess_dataset
from mesm.demo.synthetic import face_centre, write_video


def test_entries_hold_sampled_faces_and_mel_chunks(synthetic_root):
    _, records = read_dataset(synthetic_root)
    cache = FeatureCache(synthetic_root)
    for record in records:
        entry = cache.load(record.id)
        frames = len(entry["timestamps"])
        np.testing.assert_allclose(entry["timestamps"].numpy(), np.arange(frames) * 0.5)
        assert entry["faces"].shape == (frames, 3, 48, 48) and entry["faces"].dtype == torch.uint8
        assert entry["found"].shape == (frames,) and entry["boxes"].shape == (frames, 4)
        specs = entry["specs"]
        assert specs.shape[1:] == (1, 128, 32) and specs.dtype == torch.float32
    # utt0001 has a WAV: its chunk count follows from its sample count.
    import soundfile as sf

    samples = sf.info(str(synthetic_root / "clips" / "utt0001.wav")).frames
    spec_frames = 1 + samples // 200
    assert cache.load("utt0001")["specs"].shape[0] == -(-spec_frames // 32)


def test_drawn_faces_are_detected_and_tracked(synthetic_root):
    cache = FeatureCache(synthetic_root)
    for i in range(6):
        entry = cache.load(f"utt{i:04d}")
        assert entry["found"].all()
        phase = np.random.default_rng(3 + i).uniform(0, 2 * np.pi)  # as face_frames draws it
        for t, box in zip(entry["timestamps"].tolist(), entry["boxes"].tolist(), strict=True):
            cx, cy = face_centre(t, 96, 96, phase)
            assert abs((box[0] + box[2]) / 2 - cx) < 4 and abs((box[1] + box[3]) / 2 - cy) < 8


def test_report_counts_frames_chunks_and_fallbacks(media_root, make_dataset, solid_frames):
    write_video(media_root / "blank.mp4", solid_frames(10, 96, 96, (90, 90, 90), (90, 90, 90)), 10)
    make_dataset(media_root, [{}, {"video": "blank.mp4", "audio": "a.wav"}])
    report = preprocess_dataset(media_root, progress=False)
    assert report.computed == 2 and report.reused == 0 and not report.failed
    assert report.frames == 4 and report.chunks == 3 + 3  # 2 × (1 s: 81 mel frames -> 3 chunks)
    # The drawn face is found; the blank video's frames are counted centre crops.
    assert report.fallback_frames == {"u1": 2}
    cache = FeatureCache(media_root)
    saved = json.loads((cache.dir / "report.json").read_text())
    assert saved["fallback_frames"] == {"u1": 2}
    assert "no face found in 2 frames (50.0%) of 1 utterance(s)" in report.summary()
    again = preprocess_dataset(media_root, progress=False)
    assert (again.computed, again.reused, again.fallback_frames) == (0, 2, {"u1": 2})


def test_settings_key_selects_the_cache_folder():
    base = PreprocessSettings()
    assert base.key() == PreprocessSettings().key()
    assert PreprocessSettings(img_interval_ms=250).key() != base.key()
    assert PreprocessSettings(log_mel=True).key() != base.key()
    assert PreprocessSettings.from_dict(base.to_dict()) == base
    with pytest.raises(ValueError, match=r"preprocessing: unknown keys"):
        PreprocessSettings.from_dict({"n_mel": 64})


def test_other_settings_get_their_own_entries(synthetic_copy):
    settings = PreprocessSettings(img_interval_ms=250, n_mels=64, log_mel=True)
    report = preprocess_dataset(synthetic_copy, settings, ids=["utt0001"], progress=False)
    assert report.computed == 1
    entry = FeatureCache(synthetic_copy, settings).load("utt0001")
    assert entry["specs"].shape[1:] == (1, 64, 32)
    np.testing.assert_allclose(entry["timestamps"][:3].numpy(), [0.0, 0.3, 0.5])  # 10 fps grid
    assert (entry["specs"] < 0).any()  # log values
    paper = FeatureCache(synthetic_copy).load("utt0001")
    assert paper["specs"].shape[2] == 128


def test_rerun_resumes_and_recomputes_only_what_changed(synthetic_copy):
    cache = FeatureCache(synthetic_copy)
    cache.path("utt0002").unlink()
    wav = synthetic_copy / "clips" / "utt0003.wav"
    os.utime(wav, ns=(wav.stat().st_atime_ns, wav.stat().st_mtime_ns + 10**9))
    report = preprocess_dataset(synthetic_copy, progress=False)
    assert (report.computed, report.reused) == (2, 4)


def test_interrupted_run_leaves_only_complete_entries(synthetic_copy, monkeypatch):
    cache = FeatureCache(synthetic_copy)
    for path in cache.items.glob("*.safetensors"):
        path.unlink()
    calls = {"n": 0}
    real = preprocess_module.build_entry

    def flaky(cache_, record, cropper, fingerprint=None):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(cache_, record, cropper, fingerprint)

    monkeypatch.setattr(preprocess_module, "build_entry", flaky)
    with pytest.raises(KeyboardInterrupt):
        preprocess_dataset(synthetic_copy, progress=False)
    assert sorted(p.name for p in cache.items.iterdir()) == [
        "utt0000.safetensors",
        "utt0001.safetensors",
    ]
    monkeypatch.setattr(preprocess_module, "build_entry", real)
    report = preprocess_dataset(synthetic_copy, progress=False)
    assert (report.computed, report.reused) == (4, 2)


def test_half_written_entries_are_never_read_as_valid(synthetic_copy):
    cache = FeatureCache(synthetic_copy)
    good = cache.path("utt0000").read_bytes()
    before = cache.load("utt0000")
    # A temporary of a killed writer is not an entry, and the next run removes it.
    tmp = cache.items / ".utt0004.safetensors.999.tmp"
    tmp.write_bytes(good[: len(good) // 2])
    cache.path("utt0004").unlink()
    assert not cache.has("utt0004")
    # A truncated file under a valid name (disk trouble, manual copy) is refused and rebuilt.
    cache.path("utt0000").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match=r"utt0000\.safetensors: unreadable cache entry"):
        cache.load("utt0000")
    report = preprocess_dataset(synthetic_copy, progress=False)
    assert report.computed == 2 and not tmp.exists()
    after = cache.load("utt0000")
    assert after.keys() == before.keys()
    for name in before:
        torch.testing.assert_close(after[name], before[name], equal_nan=True)


def test_worker_processes_give_identical_entries(synthetic_copy):
    settings = PreprocessSettings(img_interval_ms=400)
    report = preprocess_dataset(synthetic_copy, settings, num_workers=2, progress=False)
    assert report.computed == 6 and not report.failed
    parallel = FeatureCache(synthetic_copy, settings)
    serial_root = synthetic_copy.parent / "serial"
    import shutil

    shutil.copytree(synthetic_copy, serial_root, ignore=shutil.ignore_patterns("cache"))
    preprocess_dataset(serial_root, settings, ids=["utt0000", "utt0001"], progress=False)
    serial = FeatureCache(serial_root, settings)
    for uid in ("utt0000", "utt0001"):
        a, b = parallel.load(uid), serial.load(uid)
        for name in a:
            torch.testing.assert_close(a[name], b[name], equal_nan=True)
