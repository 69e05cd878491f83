"""One utterance → the tensors of its cache entry, and `build_entry` saving them.

The end-to-end pipeline's per-utterance work, in one place for every caller (`preprocess_dataset`,
the dataset's lazy path, prediction): frames sampled from the video (`mesm.data.media.video`),
faces cropped by MTCNN (`mesm.data.media.faces`), the waveform turned into mel chunks
(`mesm.data.media.audio`). The entry's layout is documented in `mesm.data.media.cache`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from mesm.data.errors import DataError
from mesm.data.manifest import Record
from mesm.data.media.audio import load_waveform, mel_chunks
from mesm.data.media.cache import (
    CACHE_VERSION,
    FeatureCache,
    PreprocessSettings,
    source_files,
    source_fingerprint,
)
from mesm.data.media.faces import FaceCropper, FaceCrops
from mesm.data.media.speaker import FALLBACKS, choose_speaker, speaker_crops
from mesm.data.media.video import Frames, record_frames


def compute_features(
    root: Path, record: Record, settings: PreprocessSettings, cropper: FaceCropper
) -> dict[str, torch.Tensor]:
    """Decode, sample, detect and transform one utterance into cache tensors.

    Args:
        root: the dataset folder.
        record: the utterance.
        settings: the preprocessing settings.
        cropper: the face detector (built once per process by the caller).

    Returns:
        The tensors of a cache entry (see `mesm.data.media.cache`).

    Raises:
        DataError: naming the file and the record.
    """
    frames = record_frames(root, record, settings.img_interval_ms)
    try:
        crops = cropper(frames.images)
    except DataError as err:
        raise DataError(f"record {record.id!r}: {err}") from None
    wave = load_waveform(root, record, settings.sample_rate)
    return media_features(frames, crops, wave, settings, cropper)


def media_features(
    frames: Frames,
    crops: FaceCrops,
    waveform: torch.Tensor,
    settings: PreprocessSettings,
    cropper: FaceCropper | None = None,
) -> dict[str, torch.Tensor]:
    """Cache tensors from sampled frames, their face crops and the waveform.

    Args:
        frames: the sampled frames (their timestamps are stored).
        crops: `cropper(frames.images)` (the largest face of each frame).
        waveform: (N,) mono samples at ``settings.sample_rate``, from the first frame on.
        settings: the preprocessing settings; with ``face="speaker"`` the speaker's track is
            chosen (`mesm.data.media.speaker`) and its faces cropped by `cropper`.
        cropper: the cropper that made `crops` (needed with ``face="speaker"``).

    Returns:
        The tensors of a cache entry: faces (T, 3, 48, 48) uint8, found (T,) uint8, boxes (T, 4),
        landmarks (T, 5, 2), detections (D, 15), detection_frames (D,), timestamps (T,) float64,
        specs (S, 1, 128, 32) float32 (with the paper's settings); with ``face="speaker"`` also
        detection_tracks (D,) int64, speaker_track (1,) int64 and speaker_fallback (1,) uint8.
    """
    extra: dict[str, torch.Tensor] = {}
    if settings.face == "speaker":
        if cropper is None:
            raise ValueError('face="speaker" needs the cropper that made the crops')
        wave = waveform.numpy() if isinstance(waveform, torch.Tensor) else waveform
        choice = choose_speaker(frames.images, frames.timestamps, crops, wave, settings.sample_rate)
        crops = speaker_crops(frames.images, crops, choice, cropper)
        extra = {
            "detection_tracks": torch.from_numpy(choice.tracks.astype(np.int64)),
            "speaker_track": torch.tensor([choice.track], dtype=torch.int64),
            "speaker_fallback": torch.tensor([FALLBACKS.index(choice.fallback)], dtype=torch.uint8),
        }
    return {
        "faces": crops.faces,
        "found": crops.found.to(torch.uint8),
        "boxes": crops.boxes,
        "landmarks": crops.landmarks,
        "detections": crops.detections,
        "detection_frames": crops.detection_frames,
        "timestamps": torch.from_numpy(frames.timestamps),
        "specs": mel_chunks(waveform, settings),
        **extra,
    }


def build_entry(
    cache: FeatureCache, record: Record, cropper: FaceCropper, fingerprint: str | None = None
) -> dict[str, str]:
    """Compute one utterance's features and save them; returns the entry's metadata."""
    tensors = compute_features(cache.root, record, cache.settings, cropper)
    meta = {
        "id": record.id,
        "source": fingerprint or source_fingerprint(cache.root, record),
        "frames": str(tensors["faces"].shape[0]),
        "fallback_frames": str(int((tensors["found"] == 0).sum())),
        "chunks": str(tensors["specs"].shape[0]),
        "cache_version": str(CACHE_VERSION),
        "source_files": json.dumps(source_files(cache.root, record)),
    }
    if "speaker_fallback" in tensors:  # face="speaker": how the face was chosen
        meta["speaker"] = FALLBACKS[int(tensors["speaker_fallback"][0])] or "chosen"
    cache.save(record.id, tensors, meta)
    return meta
