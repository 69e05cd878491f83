"""`preprocess_dataset`: fill a dataset's feature cache once, in parallel, resumably.

Each utterance is decoded, sampled, face-detected and turned into mel chunks by
`mesm.data.media.utterance.compute_features`, in worker processes (`mesm.jobs.runner.run_jobs`:
spawned, one MTCNN and one torch thread each), and saved atomically. Entries already present with an
unchanged source fingerprint are kept, so an interrupted run continues where it stopped.
Failures do not stop the other utterances; they are all listed in one `PreprocessError` at the
end.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mesm.data.errors import DataError, input_errors
from mesm.data.manifest import SPLITS, Record, read_dataset
from mesm.data.media.cache import FeatureCache, PreprocessSettings
from mesm.data.media.faces import make_cropper
from mesm.data.media.speaker import CHOICE_FALLBACKS
from mesm.data.media.utterance import build_entry
from mesm.jobs.runner import run_jobs, worker_state


@dataclass
class PreprocessReport:
    """What a `preprocess_dataset` run did and what the cache now holds.

    Attributes:
        cache_dir: the cache folder of these settings.
        computed: utterances computed by this run.
        reused: utterances whose entry was already there and up to date.
        failed: id -> reason for utterances that failed (also raised as `PreprocessError`).
        frames: total sampled frames over the selected utterances.
        chunks: total spectrogram chunks over the selected utterances.
        fallback_frames: id -> frames without a detected face (centre crop), where > 0.
        seconds: wall time of the run.
        older_caches: cache folders of the same settings in an older format version: never
            read (their entries were computed again here); they may be deleted.
        face: the face choice of the settings ("largest" or "speaker").
        speaker_chosen: with ``face="speaker"``, utterances whose face was chosen by the
            speaker score among several faces.
        speaker_fallbacks: with ``face="speaker"``, id -> why the largest face was kept
            although several faces were seen ("not separated", "no speech", "too short").
    """

    cache_dir: str
    computed: int = 0
    reused: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    frames: int = 0
    chunks: int = 0
    fallback_frames: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    older_caches: list[str] = field(default_factory=list)
    face: str = "largest"
    speaker_chosen: int = 0
    speaker_fallbacks: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        """One paragraph for the command line."""
        fallback = sum(self.fallback_frames.values())
        share = f"{100 * fallback / self.frames:.1f}%" if self.frames else "n/a"
        rate = f"{100 * self.face_found_rate:.1f}%" if self.frames else "n/a"
        older = "".join(
            f"; {folder} holds an older cache format of these settings: not read (its entries "
            "were computed again here), delete it to free its space"
            for folder in self.older_caches
        )
        speaker = ""
        if self.face == "speaker":
            speaker = (
                f"; speaker's face chosen in {self.speaker_chosen} utterance(s) with several "
                f"faces, largest face kept in {len(self.speaker_fallbacks)} where the speaker "
                "could not be told apart"
            )
        return (
            f"cache {self.cache_dir}: {self.computed} computed, {self.reused} reused, "
            f"{len(self.failed)} failed in {self.seconds:.1f} s; {self.frames} frames, "
            f"{self.chunks} spectrogram chunks; faces found by MTCNN in "
            f"{self.frames - fallback} of {self.frames} frames ({rate}); no face found in "
            f"{fallback} frames ({share}) of {len(self.fallback_frames)} utterance(s) "
            f"(centre crop used){speaker}{older}"
        )

    @property
    def face_found_rate(self) -> float:
        """Share of the sampled frames in which MTCNN found a face (0 when there are none)."""
        if not self.frames:
            return 0.0
        return 1 - sum(self.fallback_frames.values()) / self.frames


def preprocess_dataset(
    dataset_dir: str | os.PathLike,
    settings: PreprocessSettings | None = None,
    *,
    num_workers: int = 0,
    device: str = "cpu",
    face_batch_size: int = 32,
    split: str | None = None,
    ids: Iterable[str] | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> PreprocessReport:
    """Compute and cache faces and mel chunks for every (selected) utterance of a dataset.

    Args:
        dataset_dir: the dataset folder (see `mesm.data.manifest`).
        settings: preprocessing settings (default: the paper's).
        num_workers: worker processes (0: in this process).
        device: where MTCNN runs ("cpu" by default; "cuda" works with num_workers 0).
        face_batch_size: frames per MTCNN call.
        split: only utterances of this split (None: all).
        ids: only these utterance ids (None: all).
        overwrite: recompute entries that are already cached.
        progress: show a tqdm progress bar.

    Returns:
        The report (also written to ``report.json`` in the cache folder).

    Raises:
        ManifestError: the manifest is invalid (nothing is computed then).
        PreprocessError: some utterances failed; the others are cached.
    """
    root = Path(dataset_dir)
    settings = settings or PreprocessSettings()
    _, records = read_dataset(root)
    records = _select(records, split, ids)
    if not records:
        raise DataError(f"{root}: no utterances to preprocess")
    cache = FeatureCache(root, settings)
    with cache.lock():  # a second run on this cache stops here with a clear message
        return _fill(cache, records, overwrite, num_workers, device, face_batch_size, progress)


def _fill(
    cache: FeatureCache,
    records: list[Record],
    overwrite: bool,
    num_workers: int,
    device: str,
    face_batch_size: int,
    progress: bool,
) -> PreprocessReport:
    began = time.perf_counter()
    root = cache.root
    cache.prepare()
    report = PreprocessReport(
        cache_dir=str(cache.dir),
        older_caches=[str(f) for f in cache.older_folders()],
        face=cache.settings.face,
    )

    todo, report.reused = cache.outdated(records, overwrite)

    init = (str(root), cache.settings.to_dict(), device, face_batch_size)
    jobs = ((record.id, (record, fingerprint)) for record, fingerprint in todo)
    try:
        outcomes = run_jobs(
            jobs,
            _work,
            workers=num_workers,
            initializer=_init_worker,
            initargs=init,
            total=len(todo),
            desc="preprocess",
            unit="utt",
            progress=progress,
            item_errors=input_errors(),
        )
    finally:  # an interrupted run's workers are ended: what they were writing is removed
        cache.remove_stale()
    report.computed = len(outcomes.results)
    report.failed = outcomes.failed

    _tally(cache, records, report)
    report.seconds = time.perf_counter() - began
    cache.write_report(asdict(report))
    return report


def _select(records: list[Record], split: str | None, ids: Iterable[str] | None) -> list[Record]:
    if split is not None:
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r} (the splits are {', '.join(SPLITS)})")
        records = [r for r in records if r.split == split]
        if not records:
            raise DataError(f"the dataset has no utterances in split {split!r}")
    if ids is not None:
        wanted = set(ids)
        unknown = wanted - {r.id for r in records}
        if unknown:
            raise DataError(
                f"ids not in the dataset (or not in split {split!r}): {sorted(unknown)}"
            )
        records = [r for r in records if r.id in wanted]
    return records


def _init_worker(root: str, settings: dict, device: str, batch_size: int) -> None:
    parsed = PreprocessSettings.from_dict(settings)
    state = worker_state()  # one cache and one cropper per process
    state["cache"] = FeatureCache(root, parsed)
    state["cropper"] = make_cropper(parsed, device, batch_size)


def _work(record: Record, fingerprint: str) -> None:
    """Build and save one entry (raises DataError naming the record on bad media)."""
    state = worker_state()
    build_entry(state["cache"], record, state["cropper"], fingerprint)


def _tally(cache: FeatureCache, records: list[Record], report: PreprocessReport) -> None:
    """Counts over the whole selection, including entries reused from earlier runs."""
    for record in records:
        meta = cache.metadata(record.id)
        if meta is None:
            continue
        report.frames += int(meta.get("frames", 0))
        report.chunks += int(meta.get("chunks", 0))
        fallback = int(meta.get("fallback_frames", 0))
        if fallback:
            report.fallback_frames[record.id] = fallback
        speaker = meta.get("speaker")
        if speaker == "chosen":
            report.speaker_chosen += 1
        elif speaker in CHOICE_FALLBACKS:
            report.speaker_fallbacks[record.id] = speaker
