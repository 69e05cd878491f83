"""Hand-crafted feature sequences for the two-phase baselines: settings, cache, dataset, batches.

`extract_features` fills a feature cache once (the extractors are described in
`mesm.data.handcrafted.extractors`); the readers in `mesm.data.handcrafted.importers` fill the
same format from pre-extracted CMU-MOSEI files. Layout inside the dataset folder (the entries,
checksums and lock of `mesm.data.media.cache`)::

    cache/features-<key>/settings.json           the FeatureSettings of this folder
    cache/features-<key>/items/<id>.safetensors  one entry per utterance
    cache/features-<key>/report.json             counts written by `extract_features`

=============  ==================  ===================================================
name           shape / dtype       meaning
=============  ==================  ===================================================
audio          (Ta, Da) float32    audio descriptors per frame
audio_times    (Ta,) float64       frame start times in seconds (from the span start)
visual         (Tv, Dv) float32    face descriptors per sampled frame
visual_times   (Tv,) float64       frame times in seconds on the source's clock
text           (Lt, Dt) float32    one static vector per token
=============  ==================  ===================================================

`FeatureDataset` + `collate_features` turn entries into padded batches
(``{audio,visual,text}_feats`` (B, T, D) float32 with ``..._mask`` (B, T) bool, True = valid).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch

from mesm.data.errors import DataError, input_errors
from mesm.data.manifest import Record, atomic_write_text, read_dataset
from mesm.data.media.cache import CACHE_DIR, FeatureCache
from mesm.errors import UsageError
from mesm.jobs.runner import run_jobs, worker_state
from mesm.settings import DictSettings, settings_key

FEATURES_VERSION = 1
_ENTRY_KEYS = ("audio", "audio_times", "visual", "visual_times", "text")


@dataclass(frozen=True)
class FeatureSettings(DictSettings):
    """Everything that changes the hand-crafted features (defaults: as documented).

    Attributes:
        source: "extracted" (by `extract_features`) or "imported" (by a reader of
            pre-extracted files; then only `name` selects the cache).
        name: the name of an imported feature set (e.g. "mosei_unaligned").
        audio_set: openSMILE LLD set, "egemaps" (25) or "compare" (65).
        sample_rate: audio rate the descriptors are computed at.
        img_interval_ms: one frame every this many milliseconds.
        face_size: side of the face crop the HOG reads.
        face_margin: MTCNN margin in crop pixels.
        min_face_size: smallest face MTCNN looks for.
        hog_cell: HOG pixels per cell side.
        hog_block: HOG cells per block side.
        hog_orientations: HOG orientation bins.
        glove: a GloVe text file for the text vectors (None: the text model's embeddings).
        text_model: tokenizer + embedding table (None: the offline MiniLM-L6 default).
        max_text_length: most tokens per transcript.
    """

    section: ClassVar[str] = "features"

    source: Literal["extracted", "imported"] = "extracted"
    name: str = ""
    audio_set: Literal["egemaps", "compare"] = "egemaps"
    sample_rate: int = 16000
    img_interval_ms: float = 500
    face_size: int = 48
    face_margin: int = 2
    min_face_size: int = 20
    hog_cell: int = 8
    hog_block: int = 2
    hog_orientations: int = 9
    glove: str | None = None
    text_model: str | None = None
    max_text_length: int = 100

    def __post_init__(self) -> None:
        if self.source not in ("extracted", "imported"):
            raise UsageError(f"source must be 'extracted' or 'imported', got {self.source!r}")
        if self.source == "imported" and not self.name:
            raise UsageError("imported features need a name")
        if self.audio_set not in ("egemaps", "compare"):
            raise UsageError(f"audio_set must be 'egemaps' or 'compare', got {self.audio_set!r}")
        numbers = ("sample_rate", "img_interval_ms", "face_size", "min_face_size", "hog_cell")
        bad = [n for n in (*numbers, "hog_block", "hog_orientations", "max_text_length")]
        bad = [n for n in bad if not getattr(self, n) > 0]
        if bad:
            raise UsageError(f"settings must be positive: {bad}")

    def key(self) -> str:
        """Short hash naming the cache folder (imported sets: of the source and name only)."""
        if self.source == "imported":
            values: dict[str, Any] = {"source": self.source, "name": self.name}
        else:
            values = self.to_dict()
        return settings_key(FEATURES_VERSION, values)


class FeatureStore(FeatureCache):
    """The hand-crafted feature cache of one dataset under one `FeatureSettings`.

    Reuses `FeatureCache`'s atomic saving, settings file and entry paths.

    Args:
        dataset_dir: the dataset folder.
        settings: the feature settings (default: the documented defaults).
    """

    entry_keys = _ENTRY_KEYS
    rebuild_hint = "run `mesm features` on the dataset"

    def __init__(self, dataset_dir: str | os.PathLike, settings: FeatureSettings | None = None):
        self.root = Path(dataset_dir)
        self.settings = settings or FeatureSettings()  # type: ignore[assignment]
        self.dir = self.root / CACHE_DIR / f"features-{self.settings.key()}"
        self.items = self.dir / "items"

    def dims(self) -> dict[str, int]:
        """{"audio_dim", "visual_dim", "text_dim"} recorded when the cache was filled."""
        path = self.dir / "dims.json"
        if not path.is_file():
            raise DataError(f"{self.dir}: no features extracted here (run `mesm features`)")
        return json.loads(path.read_text())

    def write_dims(self, dims: dict[str, int]) -> None:
        atomic_write_text(self.dir / "dims.json", json.dumps(dims, sort_keys=True) + "\n")


def entry(
    audio: torch.Tensor,
    audio_times: torch.Tensor,
    visual: torch.Tensor,
    visual_times: torch.Tensor,
    text: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """The tensors of one entry, with dtypes and shapes checked (see the module docstring)."""
    out = {
        "audio": audio.float().reshape(audio.shape[0], -1),
        "audio_times": audio_times.double().reshape(-1),
        "visual": visual.float().reshape(visual.shape[0], -1),
        "visual_times": visual_times.double().reshape(-1),
        "text": text.float().reshape(text.shape[0], -1),
    }
    for name in ("audio", "visual"):
        if out[name].shape[0] != out[f"{name}_times"].shape[0]:
            raise ValueError(f"{name}: {out[name].shape[0]} rows but {name}_times differs")
    return out


# ---- extraction ----------------------------------------------------------------------------


@dataclass
class FeatureReport:
    """What an `extract_features` run did.

    Attributes:
        cache_dir: the feature cache folder.
        dims: {"audio_dim", "visual_dim", "text_dim"}.
        computed: utterances computed by this run.
        reused: entries already present and up to date.
        failed: id -> reason.
        seconds: wall time.
    """

    cache_dir: str
    dims: dict[str, int] = field(default_factory=dict)
    computed: int = 0
    reused: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"features {self.cache_dir}: {self.computed} computed, {self.reused} reused, "
            f"{len(self.failed)} failed in {self.seconds:.1f} s; dims {self.dims}"
        )


def _init_worker(settings: dict[str, Any], root: str) -> None:
    from mesm.data.handcrafted.extractors import AudioDescriptors, FaceDescriptors

    s = FeatureSettings.from_dict(settings)
    state = worker_state()  # one store and the extractors per process
    state["store"] = FeatureStore(root, s)
    state["audio"] = AudioDescriptors(s.audio_set, s.sample_rate)
    state["visual"] = FaceDescriptors(
        image_size=s.face_size,
        margin=s.face_margin,
        min_face_size=s.min_face_size,
        hog_cell=s.hog_cell,
        hog_block=s.hog_block,
        hog_orientations=s.hog_orientations,
    )


def _extract_one(rec: Record, text: torch.Tensor, fingerprint: str) -> None:
    """Extract and save one utterance (raises DataError naming the record on bad media)."""
    from mesm.data.media.audio import load_waveform
    from mesm.data.media.video import record_frames

    state = worker_state()
    store: FeatureStore = state["store"]
    s: FeatureSettings = store.settings  # type: ignore[assignment]
    wave = load_waveform(store.root, rec, s.sample_rate)
    audio, audio_times = state["audio"](wave)
    frames = record_frames(store.root, rec, s.img_interval_ms)
    visual = state["visual"].describe(frames.images)
    tensors = entry(audio, audio_times, visual, torch.from_numpy(frames.timestamps), text)
    meta = {"id": rec.id, "source": fingerprint, "features_version": str(FEATURES_VERSION)}
    store.save(rec.id, tensors, meta)


def extract_features(
    dataset_dir: str | os.PathLike,
    settings: FeatureSettings | None = None,
    *,
    num_workers: int = 0,
    split: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> FeatureReport:
    """Extract hand-crafted audio, visual and text feature sequences for every utterance.

    Resumable: entries present with an unchanged source fingerprint are kept. Failures do not
    stop the other utterances; they are listed in one `PreprocessError` at the end.

    Args:
        dataset_dir: the dataset folder (see `mesm.data.manifest`).
        settings: feature settings (default: eGeMAPS LLDs, face descriptors every 500 ms,
            the MiniLM-L6 input embeddings).
        num_workers: worker processes for audio + visual extraction (0: in this process).
        split: only utterances of this split (None: all).
        overwrite: recompute entries that are already cached.
        progress: show a progress bar.

    Returns:
        The report (also written to ``report.json`` in the cache folder).

    Raises:
        ManifestError: the manifest is invalid.
        PreprocessError: some utterances failed; the others are cached.
    """
    from mesm.data.handcrafted.extractors import (
        GEOMETRY_DIM,
        LANDMARK_DIM,
        OPENSMILE_SETS,
        TextVectors,
    )
    from mesm.data.handcrafted.extractors import hog_dim as _hog_dim

    began = time.perf_counter()
    settings = settings or FeatureSettings()
    if settings.source != "extracted":
        raise ValueError("extract_features computes 'extracted' features; readers import others")
    root = Path(dataset_dir)
    _, records = read_dataset(root)
    records = [r for r in records if split is None or r.split == split]
    store = FeatureStore(root, settings)
    store.prepare()
    report = FeatureReport(cache_dir=str(store.dir))
    todo, report.reused = store.outdated(records, overwrite)
    vectors = TextVectors(
        settings.glove,
        settings.text_model,
        settings.max_text_length,
        vocabulary_texts=[r.text for r, _ in todo],
    )
    hog = _hog_dim(
        settings.face_size, settings.hog_cell, settings.hog_block, settings.hog_orientations
    )
    report.dims = {
        "audio_dim": OPENSMILE_SETS[settings.audio_set][1],
        "visual_dim": GEOMETRY_DIM + LANDMARK_DIM + hog,
        "text_dim": vectors.dim,
    }
    store.write_dims(report.dims)
    jobs = ((r.id, (r, vectors(r.text), fp)) for r, fp in todo)  # text vectors made lazily
    outcomes = run_jobs(
        jobs,
        _extract_one,
        workers=num_workers,
        initializer=_init_worker,
        initargs=(settings.to_dict(), str(root)),
        total=len(todo),
        desc="features",
        unit="utt",
        progress=progress,
        item_errors=input_errors(),
    )
    report.computed = len(outcomes.results)
    report.failed = outcomes.failed
    report.seconds = time.perf_counter() - began
    store.write_report(asdict(report))
    return report
