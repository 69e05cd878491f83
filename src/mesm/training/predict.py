"""`predict_clip`: a new video file (its own audio track, or a separate audio file) → emotions.

The clip goes through exactly the preprocessing the checkpoint was trained with (frame sampling,
MTCNN face crops with the counted centre-crop fallback, mel chunks, the text model's tokenizer),
then the model; each emotion's probability is compared with the threshold tuned on validation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from mesm.data.cache import PreprocessSettings, compute_features, make_cropper
from mesm.data.dataset import Batch, Item, collate
from mesm.data.errors import DataError
from mesm.data.manifest import Record
from mesm.data.text import TextTokenizer
from mesm.training.checkpoint import load_checkpoint, preprocessing_settings
from mesm.training.module import model_inputs
from mesm.training.precision import Precision, resolve_precision

_TEXT_SUFFIXES = (".txt", ".text", ".lab", ".srt", ".vtt", ".json")


def read_transcript_file(path: str | os.PathLike) -> str:
    """The transcript held in a UTF-8 text file (surrounding whitespace removed).

    Raises:
        DataError: the file does not exist, or is not UTF-8 (naming the file and the line).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no transcript file at {path}")
    data = path.read_bytes()
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 ({err.reason})") from None


def read_transcript(text_or_file: str | None) -> str:
    """`--transcript`'s old double meaning, made safe: an existing file is read; anything that
    looks like a file path (one word with a "/" or a text-file suffix) but is not a file is an
    error rather than being taken as the words spoken; the rest is the transcript itself.

    Prefer the explicit `read_transcript_file` (``--transcript-file``) or passing the text
    (``--text``).
    """
    if not text_or_file:
        return ""
    path = Path(text_or_file)
    if len(text_or_file) < 4096 and path.is_file():
        return read_transcript_file(path)
    word = text_or_file.strip()
    if not any(c.isspace() for c in word) and (
        "/" in word or "\\" in word or word.lower().endswith(_TEXT_SUFFIXES)
    ):
        raise DataError(
            f"--transcript {text_or_file!r} looks like a file path but no such file exists "
            "(use --text for the words themselves, --transcript-file for a file)"
        )
    return text_or_file


def clip_batch(
    clip: str | os.PathLike,
    transcript: str,
    *,
    audio: str | os.PathLike | None = None,
    settings: PreprocessSettings | None = None,
    text_model: str | None = None,
    max_text_length: int = 100,
    num_classes: int = 1,
) -> tuple[Batch, dict[str, Any]]:
    """One clip as a one-utterance Batch, plus what preprocessing found.

    Args:
        clip: a video file (any container ffmpeg reads) or a folder of frames.
        transcript: what is said in the clip ("" when unknown).
        audio: a separate audio file (default: the video's own track).
        settings: preprocessing settings (default: the paper's).
        text_model: tokenizer name/folder (None: the offline default).
        max_text_length: most tokens kept.
        num_classes: K, for the (unused) label row of the batch.

    Returns:
        (batch, info) with info = {"frames", "faces_found", "chunks", "timestamps"}.
    """
    clip = Path(clip).resolve()
    if not clip.exists():
        raise FileNotFoundError(f"no clip at {clip}")
    paths = [clip] if audio is None else [clip, Path(audio).resolve()]
    if audio is not None and not paths[1].is_file():
        raise FileNotFoundError(f"no audio file at {paths[1]}")
    # A one-record "dataset" rooted where both files live.
    root = Path(os.path.commonpath([p.parent for p in paths]))
    record = Record(
        id=clip.stem,
        video=str(clip.relative_to(root)),
        audio=None if audio is None else str(paths[1].relative_to(root)),
        text=transcript,
        labels=(),
    )
    settings = settings or PreprocessSettings()
    try:
        tensors = compute_features(root, record, settings, make_cropper(settings))
    except DataError as err:
        raise ValueError(f"{clip}: {err}") from err
    tokenizer = TextTokenizer(text_model, max_length=max_text_length)
    item = Item(
        id=record.id,
        faces=tensors["faces"],
        specs=tensors["specs"],
        text_ids=torch.tensor(tokenizer.encode([transcript])[0], dtype=torch.int64),
        labels=torch.zeros(num_classes),
    )
    info = {
        "frames": int(tensors["faces"].shape[0]),
        "faces_found": int(tensors["found"].sum()),
        "chunks": int(tensors["specs"].shape[0]),
        "timestamps": [round(float(t), 3) for t in tensors["timestamps"]],
    }
    return collate([item], pad_id=tokenizer.pad_id), info


@torch.inference_mode()
def predict_clip(
    checkpoint: str | os.PathLike,
    clip: str | os.PathLike,
    transcript: str | None = None,
    *,
    audio: str | os.PathLike | None = None,
    device: str = "cpu",
    precision: str | Precision = "auto",
) -> dict[str, Any]:
    """Per-emotion probabilities and decisions for one clip.

    Args:
        checkpoint: a `.safetensors` checkpoint written by `mesm train`.
        clip: the video file (or frame folder).
        transcript: the words spoken (None: empty); see `read_transcript_file` for files.
        audio: a separate audio file (default: the video's own track).
        device: where the model runs.
        precision: what it runs at ("auto", "32", "bf16", ...; :mod:`mesm.training.precision`).

    Returns:
        {"clip", "transcript", "preprocessing": {...}, "emotions": {name: {"probability",
        "threshold", "present"}}, "present": [names], "top": name (single-label checkpoints),
        "precision": "32-true" | "bf16-mixed" | "16-mixed"}.
    """
    resolved = resolve_precision(precision, device)
    model, meta = load_checkpoint(checkpoint, map_location=device)
    settings = preprocessing_settings(meta)
    text = transcript or ""
    batch, info = clip_batch(
        clip,
        text,
        audio=audio,
        settings=settings,
        text_model=meta["model"].get("text_model"),
        max_text_length=meta["extra"].get("max_text_length", 100),
        num_classes=len(meta["label_names"]),
    )
    inputs = {k: v.to(device) for k, v in model_inputs(batch, model.modalities).items()}
    with resolved.autocast():
        logits = model(**inputs)
    probs = torch.sigmoid(logits.float())[0].cpu().tolist()
    thresholds = meta["thresholds"] or [0.5] * len(probs)
    emotions = {
        name: {"probability": p, "threshold": t, "present": p > t}
        for name, p, t in zip(meta["label_names"], probs, thresholds, strict=True)
    }
    out: dict[str, Any] = {
        "clip": str(clip),
        "transcript": text,
        "preprocessing": info,
        "emotions": emotions,
        "present": [n for n, e in emotions.items() if e["present"]],
        "precision": resolved.lightning,
    }
    if meta["task"] == "single_label":
        out["top"] = max(emotions, key=lambda n: emotions[n]["probability"])
    return out
