"""A small synthetic emotion corpus in the on-disk format of a real dataset (for `mesm demo`).

Each utterance has one of four emotions and three cues, each of which separates only two groups
of emotions, so no single modality suffices:

=========  ==========================================  =====================================
modality   cue                                         emotions it separates
=========  ==========================================  =====================================
visual     mouth shape of a drawn face: smile / flat   happiness | anger, neutral | sadness
           / frown
audio      prosody: loud, high and fast syllables vs   anger, happiness | neutral, sadness
           soft, low and slow ones
text       wording: negative vs non-negative phrases   anger, sadness | happiness, neutral
=========  ==========================================  =====================================

Visual and audio together identify every emotion; text adds redundancy. With probability
``noise`` each cue of an utterance is drawn for a random other emotion instead (ambiguity), and
every clip varies in length, face position and size, skin tone, pitch and wording.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from mesm.data.manifest import DatasetInfo, Record, write_dataset
from mesm.data.synthetic import write_video, write_wav

EMOTIONS = ("anger", "happiness", "neutral", "sadness")
_MOUTH = {"anger": 0.0, "happiness": 1.0, "neutral": 0.0, "sadness": -1.0}  # curvature sign
_AROUSED = {"anger": True, "happiness": True, "neutral": False, "sadness": False}
_NEGATIVE = {"anger": True, "happiness": False, "neutral": False, "sadness": True}
_NEGATIVE_PHRASES = (
    "I can't believe this happened again",
    "this is the worst day I have had",
    "nobody ever listens to what I say",
    "I am so tired of all of this",
    "why does everything go wrong for me",
    "that was a terrible thing to do",
    "I never wanted any of this",
    "it hurts every time I think about it",
)
_OTHER_PHRASES = (
    "we could meet at the station at noon",
    "that sounds like a lovely plan to me",
    "the report is on the desk by the window",
    "thank you for bringing the books back",
    "I think we should take the early train",
    "let us see what the weather is like",
    "my sister is visiting next weekend",
    "the new cafe on the corner is open",
)


def _face(expression: float, count: int, rng: np.random.Generator, size: int = 96) -> np.ndarray:
    """(count, size, size, 3) uint8 frames of a drawn face with a mouth of the given curvature."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    skin = np.array([224, 172, 140]) * rng.uniform(0.8, 1.1) + rng.normal(0, 8, 3)
    background = rng.integers(20, 120, 3)
    cx0, cy0 = size / 2 + rng.uniform(-4, 4), size / 2 + rng.uniform(-4, 4)
    rx, ry = size * rng.uniform(0.19, 0.23), size * rng.uniform(0.24, 0.28)
    frames = np.empty((count, size, size, 3), dtype=np.uint8)
    for i in range(count):
        cx = cx0 + 1.5 * math.sin(i + rng.uniform(0, 1))
        cy = cy0 + rng.uniform(-1, 1)
        img = np.empty((size, size, 3), dtype=np.float32)
        img[:] = background
        img[((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1] = skin
        for side in (-1, 1):
            eye = (xx - (cx + side * 0.4 * rx)) ** 2 + (yy - (cy - 0.25 * ry)) ** 2
            img[eye <= (0.13 * rx) ** 2] = (30, 30, 30)
        # The mouth: a thick parabola y = cy + 0.5 ry - k (x - cx)^2, k > 0 smiles.
        k = expression * 0.9 / rx
        centre_line = cy + 0.5 * ry - k * (xx - cx) ** 2 + expression * 0.15 * ry
        thickness = 0.06 * ry * (1 + 0.5 * rng.uniform())
        mouth = (np.abs(yy - centre_line) <= thickness) & (np.abs(xx - cx) <= 0.55 * rx)
        img[mouth] = (150, 40, 50)
        img += rng.normal(0, 4, img.shape)
        frames[i] = np.clip(img, 0, 255).astype(np.uint8)
    return frames


def _voice(aroused: bool, seconds: float, rng: np.random.Generator, sr: int = 16000) -> np.ndarray:
    """Harmonic "speech" whose pitch, loudness and syllable rate follow arousal."""
    n = round(seconds * sr)
    t = np.arange(n) / sr
    if aroused:
        f0, rate, amplitude = rng.uniform(210, 270), rng.uniform(5, 6.5), rng.uniform(0.45, 0.6)
    else:
        f0, rate, amplitude = rng.uniform(95, 135), rng.uniform(2, 3), rng.uniform(0.12, 0.2)
    pitch = f0 * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(0.4, 0.9) * t))
    phase = 2 * np.pi * np.cumsum(pitch) / sr
    voice = sum(np.sin(h * phase) / h for h in range(1, 9))
    envelope = np.clip(np.sin(2 * np.pi * rate * t + rng.uniform(0, 6)), 0, None) ** 1.5
    signal = amplitude * voice * envelope / 2 + 0.01 * rng.standard_normal(n)
    return np.clip(signal, -1, 1).astype(np.float32)


def write_demo_corpus(
    out_dir: str | os.PathLike,
    num_utterances: int = 240,
    *,
    noise: float = 0.15,
    fps: float = 10,
    duration: tuple[float, float] = (1.6, 2.6),
    split_fractions: tuple[float, float] = (0.6, 0.2),
    seed: int = 0,
) -> tuple[DatasetInfo, list[Record]]:
    """Writes the corpus (mp4 clips, some with a separate WAV, transcripts, labels, splits).

    Args:
        out_dir: the dataset folder to create.
        num_utterances: number of clips (emotions balanced, order shuffled).
        noise: probability that each cue of an utterance follows a random other emotion.
        fps: video frame rate.
        duration: range of clip lengths in seconds.
        split_fractions: train and valid fractions (test gets the rest).
        seed: everything is reproducible from it.

    Returns:
        The header and the records (also written as dataset.json + manifest.jsonl).
    """
    if not 0 <= noise < 1:
        raise ValueError(f"noise must be in [0, 1), got {noise}")
    out = Path(out_dir)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    emotions = [EMOTIONS[i % len(EMOTIONS)] for i in range(num_utterances)]
    rng.shuffle(emotions)
    n_train = round(split_fractions[0] * num_utterances)
    n_valid = round(split_fractions[1] * num_utterances)

    def cue(emotion: str) -> str:
        if rng.uniform() < noise:
            return str(rng.choice([e for e in EMOTIONS if e != emotion]))
        return emotion

    records = []
    for i, emotion in enumerate(emotions):
        uid = f"demo{i:04d}"
        seconds = float(np.round(rng.uniform(*duration), 2))
        frames = _face(_MOUTH[cue(emotion)], max(1, round(seconds * fps)), rng)
        audio = _voice(_AROUSED[cue(emotion)], seconds, rng)
        phrases = _NEGATIVE_PHRASES if _NEGATIVE[cue(emotion)] else _OTHER_PHRASES
        text = str(rng.choice(phrases))
        embedded = i % 2 == 0  # half the clips carry their audio track, half a separate WAV
        write_video(out / "clips" / f"{uid}.mp4", frames, fps, audio if embedded else None)
        if not embedded:
            write_wav(out / "clips" / f"{uid}.wav", audio)
        split = "train" if i < n_train else "valid" if i < n_train + n_valid else "test"
        records.append(
            Record(
                id=uid,
                video=f"clips/{uid}.mp4",
                audio=None if embedded else f"clips/{uid}.wav",
                text=text,
                labels=(emotion,),
                speaker=f"speaker{i % 5}",
                split=split,
            )
        )
    info = DatasetInfo(
        name="mesm-demo",
        task="single_label",
        label_names=EMOTIONS,
        prepare={"generator": "mesm.data.demo_corpus", "seed": seed, "noise": noise, "fps": fps},
    )
    write_dataset(out, info, records)
    return info, records
