"""Fixtures of the inference tests: a tiny MESM with a header, a small dataset of clips, an
untrained tiny FE2E checkpoint and a 60-second spoken video (with its subtitles)."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from helpers import missing
from mesm.data.media.audio import resample
from mesm.demo.corpus import srt_time
from mesm.demo.synthetic import face_frames, write_synthetic_dataset, write_video
from mesm.models import TINY_TEXT, create_model
from mesm.trained.checkpoint import TrainedModel, save_checkpoint

LABELS = ["ang", "hap", "neu", "sad"]


@pytest.fixture(scope="session")
def trained() -> TrainedModel:
    """An untrained tiny MESM (p = 0.7) with thresholds, as `mesm train` would save it."""
    torch.manual_seed(0)
    model = create_model("mesm", preset="tiny", num_classes=4, p=0.7, **TINY_TEXT).eval()
    meta = {
        "label_names": LABELS,
        "task": "single_label",
        "thresholds": [0.5, 0.4, 0.5, 0.6],
        "preprocessing": {},
        "extra": {"max_text_length": 40},
    }
    return TrainedModel(model, meta)


@pytest.fixture(scope="session")
def clips_dir(tmp_path_factory):
    """A dataset folder of 3 clips (one with a separate WAV), every one in the test split."""
    root = tmp_path_factory.mktemp("clips") / "data"
    write_synthetic_dataset(root, 3, duration=(1.0, 1.4), splits=("test",), seed=3)
    return root


EMOTIONS = ["anger", "happiness", "neutral", "sadness"]
SENTENCES = (
    "The quick brown fox jumps over the lazy dog",
    "I went to the market this morning",
    "Please close the window before you leave",
    "We will meet again next week",
    "The weather was lovely yesterday",
    "My brother plays the guitar very well",
    "Nobody knows where the keys are",
    "Thank you for your help today",
    "The train to the city leaves at noon",
    "She painted the kitchen door bright blue",
    "I would like a cup of tea please",
    "They walked along the river after dinner",
)
VIDEO_SECONDS = 60.0
SAMPLE_RATE = 16000


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """An untrained tiny FE2E (4 emotions, thresholds 0.5/0.4/0.5/0.6) as a checkpoint."""
    torch.manual_seed(0)
    model = create_model("fe2e", preset="tiny", num_classes=4, **TINY_TEXT)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    return save_checkpoint(
        path, model, label_names=EMOTIONS, task="single_label", thresholds=[0.5, 0.4, 0.5, 0.6]
    )


def _speak(sentence: str) -> np.ndarray:
    """espeak-ng's voice for `sentence` at 16 kHz, leading and trailing silence trimmed."""
    wav = subprocess.run(
        ["espeak-ng", "--stdout", "-s", "165", sentence], capture_output=True, check=True
    ).stdout
    samples, rate = sf.read(io.BytesIO(wav), dtype="float32")
    samples = resample(torch.from_numpy(samples), rate, SAMPLE_RATE).numpy()
    loud = np.nonzero(np.abs(samples) > 0.02)[0]
    return samples[loud[0] : loud[-1] + 1]


def _spoken(root: Path, sentences: tuple[str, ...], seconds: float, seed: int = 0):
    """Write root/talk.mp4 (a drawn face at 5 fps + the spoken sentences separated by
    1.4-2.2 s of silence) and root/talk.srt; returns (video, srt, spans)."""
    if shutil.which("espeak-ng") is None:
        missing("espeak-ng is not installed (scripts/install.sh installs it as root)")
    audio = np.zeros(round(seconds * SAMPLE_RATE), np.float32)
    rng = np.random.default_rng(seed)
    audio += 0.002 * rng.standard_normal(audio.size).astype(np.float32)  # a quiet room
    spans, t = [], 1.0
    for sentence in sentences:
        voice = _speak(sentence)
        first = round(t * SAMPLE_RATE)
        audio[first : first + voice.size] += 0.8 * voice
        spans.append((first / SAMPLE_RATE, (first + voice.size) / SAMPLE_RATE, sentence))
        t = spans[-1][1] + float(rng.uniform(1.4, 2.2))
    assert spans[-1][1] < seconds - 0.5, "the sentences must fit in the video"
    fps = 5
    root.mkdir(parents=True, exist_ok=True)
    video = write_video(root / "talk.mp4", face_frames(round(seconds * fps), fps), fps, audio)
    srt = root / "talk.srt"
    srt.write_text(
        "".join(
            f"{i}\n{srt_time(a)} --> {srt_time(b)}\n{text}\n\n"
            for i, (a, b, text) in enumerate(spans, start=1)
        ),
        encoding="utf-8",
    )
    return video, srt, spans


@pytest.fixture(scope="session")
def spoken_video(tmp_path_factory):
    """A 60 s video (a drawn face, 5 fps) whose audio is real speech from espeak-ng: twelve
    sentences separated by 1.4-2.2 s of silence. Returns (video, srt, spans) where spans are
    (start, end, sentence) of the speech itself, in seconds."""
    return _spoken(tmp_path_factory.mktemp("spoken"), SENTENCES, VIDEO_SECONDS)


@pytest.fixture(scope="session")
def short_spoken_video(tmp_path_factory):
    """Like `spoken_video`, 8 s with two sentences."""
    return _spoken(tmp_path_factory.mktemp("short"), SENTENCES[3:5], 8.0, seed=1)
