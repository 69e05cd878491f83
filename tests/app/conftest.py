"""Fixtures of the page tests: tiny checkpoints (MESM and FE2E) and media written on the fly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mesm.demo.corpus import write_demo_corpus
from mesm.demo.synthetic import face_frames, speech_like, write_video
from mesm.models import TINY_TEXT, create_model
from mesm.trained.checkpoint import save_checkpoint

EMOTIONS = ["anger", "happiness", "neutral", "sadness"]
THRESHOLDS = [0.5, 0.4, 0.5, 0.6]


def _checkpoint(path: Path, arch: str) -> Path:
    torch.manual_seed(0)
    extra = {"p": 0.7} if arch == "mesm" else {}
    model = create_model(arch, preset="tiny", num_classes=4, **extra, **TINY_TEXT)
    return save_checkpoint(
        path, model, label_names=EMOTIONS, task="single_label", thresholds=THRESHOLDS
    )


@pytest.fixture(scope="session")
def mesm_checkpoint(tmp_path_factory) -> Path:
    """An untrained tiny MESM (p = 0.7; 4 emotions, thresholds 0.5/0.4/0.5/0.6)."""
    return _checkpoint(tmp_path_factory.mktemp("app_ckpt") / "mesm.safetensors", "mesm")


@pytest.fixture(scope="session")
def fe2e_checkpoint(tmp_path_factory) -> Path:
    """The FE2E of `mesm_checkpoint`'s kind (no attention, so no attention image)."""
    return _checkpoint(tmp_path_factory.mktemp("app_ckpt") / "fe2e.safetensors", "fe2e")


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    """Six utterances of the demo corpus (real face, speech-like audio, transcripts)."""
    root = tmp_path_factory.mktemp("app_demo") / "data"
    write_demo_corpus(root, 6, seed=0)
    return root


@pytest.fixture(scope="session")
def bad_videos(tmp_path_factory) -> dict[str, Path]:
    """{"corrupt": bytes that are no video, "silent": a video without an audio track}."""
    root = tmp_path_factory.mktemp("app_bad")
    corrupt = root / "corrupt.mp4"
    corrupt.write_bytes(b"this is not a video\n" * 64)
    silent = write_video(root / "silent.mp4", face_frames(20, 10), 10)
    return {"corrupt": corrupt, "silent": silent}


@pytest.fixture(scope="session")
def subtitled_video(tmp_path_factory) -> tuple[Path, Path]:
    """A 6 s video with speech-like audio and a two-cue SRT file."""
    root = tmp_path_factory.mktemp("app_long")
    video = write_video(root / "talk.mp4", face_frames(30, 5), 5, speech_like(6.0, seed=3))
    srt = root / "talk.srt"
    srt.write_text(
        "1\n00:00:00,500 --> 00:00:02,500\nI am so happy today\n\n"
        "2\n00:00:03,000 --> 00:00:05,500\nthis is the worst day\n\n",
        encoding="utf-8",
    )
    return video, srt
