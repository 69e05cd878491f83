"""Fixtures for the data pipeline: tiny media written on the fly with PyAV and soundfile."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from mesm.data.manifest import DatasetInfo, Record, write_dataset
from mesm.data.media.preprocess import preprocess_dataset
from mesm.demo.synthetic import (
    face_frames,
    speech_like,
    write_synthetic_dataset,
    write_video,
    write_wav,
)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A 6-utterance synthetic dataset (odd ones with a WAV, even ones with the mp4's track),
    preprocessed once for the session. Tests that modify it must copy it first."""
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_dataset(root, 6, fps=10, duration=(1.0, 2.0), seed=3)
    preprocess_dataset(root, progress=False)
    return root


@pytest.fixture
def synthetic_copy(synthetic_root, tmp_path) -> Path:
    """A private copy of the preprocessed synthetic dataset."""
    dst = tmp_path / "ds"
    shutil.copytree(synthetic_root, dst)
    return dst


@pytest.fixture
def clip_10fps(tmp_path) -> Path:
    """2.0 s at exactly 10 fps (20 frames) with a 16 kHz speech-like audio track."""
    path = tmp_path / "clip.mp4"
    write_video(path, face_frames(20, 10), 10, speech_like(2.0, 16000))
    return path


def _make_dataset(
    root: Path,
    records: list[dict],
    *,
    labels: tuple[str, ...] = ("ang", "hap", "neu"),
    task: str = "single_label",
) -> Path:
    """Write a dataset folder from partial record dicts; media named in them must exist."""
    info = DatasetInfo(name="t", task=task, label_names=labels)  # type: ignore[arg-type]
    full = []
    for i, fields in enumerate(records):
        base = {"id": f"u{i}", "video": "v.mp4", "text": "hello there", "labels": (labels[0],)}
        base.update(fields)
        base["labels"] = tuple(base["labels"])
        full.append(Record(**base))
    write_dataset(root, info, full)
    return root


@pytest.fixture
def media_root(tmp_path) -> Path:
    """A folder with a 1.0 s 10 fps mp4 with audio (v.mp4), a silent one (mute.mp4) and a
    1.0 s WAV (a.wav)."""
    root = tmp_path / "media"
    root.mkdir()
    write_video(root / "v.mp4", face_frames(10, 10, seed=1), 10, speech_like(1.0, 16000))
    write_video(root / "mute.mp4", face_frames(10, 10, seed=2), 10)
    write_wav(root / "a.wav", speech_like(1.0, 16000, seed=5), 16000)
    return root


def _solid_frames(count: int, height: int, width: int, left: tuple, right: tuple) -> np.ndarray:
    """Frames whose left and right halves have different solid colours."""
    frames = np.empty((count, height, width, 3), dtype=np.uint8)
    frames[:, :, : width // 2] = left
    frames[:, :, width // 2 :] = right
    return frames


@pytest.fixture
def make_dataset():
    """`make_dataset(root, records, labels=..., task=...)`: write a dataset folder from partial
    record dicts (defaults: id u<i>, video v.mp4, text "hello there", the first label)."""
    return _make_dataset


@pytest.fixture
def solid_frames():
    """`solid_frames(count, height, width, left_rgb, right_rgb)` -> (T, H, W, 3) uint8."""
    return _solid_frames
