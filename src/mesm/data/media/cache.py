"""Feature cache: per-utterance face crops and mel chunks, stored once, keyed by settings.

Layout inside a dataset folder::

    cache/<key>/settings.json           the PreprocessSettings that produced this folder
    cache/<key>/items/<id>.safetensors  one entry per utterance
    cache/<key>/report.json             counts written by `preprocess_dataset`

``<key>`` is a hash of the settings (and of the cache format version), so changing any setting
that changes the features uses a fresh folder and never mixes entries. A folder of an older
format version (version 1 had no landmarks and kept only the largest face) is never read: its
entries are computed again in the new folder, and `FeatureCache.older_folders` names it so that
`preprocess_dataset` can say so (and that it may be deleted). An entry (computed by
`mesm.data.media.utterance`; this module only keys, stores, checks and locks) holds

=============  =======================  ==================================================
name           shape / dtype            meaning
=============  =======================  ==================================================
faces          (T, 3, 48, 48) uint8     RGB face crops (normalised only when batching)
found          (T,) uint8               1 = MTCNN found a face, 0 = centre-crop fallback
boxes          (T, 4) float32           detected box (x1, y1, x2, y2), NaN for fallbacks
landmarks      (T, 5, 2) float32        the cropped face's five MTCNN points (eyes, nose, mouth
                                        corners; x, y) in crop pixels, NaN for fallbacks
detections     (D, 15) float32          every face found in every frame, largest first within
                                        a frame: box, score, five points (x, y) in frame pixels
detection_fr…  (D,) int64               ``detection_frames``: the frame of each detection
timestamps     (T,) float64             frame times in seconds on the source's clock
specs          (S, 1, 128, 32) float32  mel-spectrogram chunks, the last zero-padded
detection_tr…  (D,) int64               ``detection_tracks``: the face track of each detection
                                        (`mesm.data.media.tracks`) — ``face="speaker"`` only
speaker_track  (1,) int64               the chosen track (-1: no face) — ``face="speaker"``
speaker_fall…  (1,) uint8               ``speaker_fallback``: 0 = chosen by its score, else why
                                        the largest face was kept (`speaker.FALLBACKS`) —
                                        ``face="speaker"`` only
=============  =======================  ==================================================

With ``face="speaker"`` the faces, found flags, boxes and landmarks are those of the chosen track
(`mesm.data.media.speaker`: ``found`` is 0 where the crop is the chosen face's box held from a
nearby frame, as for the centre-crop fallback); with ``face="largest"`` (the default) an entry
holds exactly the tensors above the last three, as before the choice existed.

and string metadata (id, source fingerprint, counts, ``sha256`` of the tensors, the size and
mtime of each source file). Entries are safetensors files (no pickle), written to a temporary name
and renamed into place, so a crash never leaves a half-written file under a valid name. The source
fingerprint (record fields + size and mtime of its media) lets a rerun of `preprocess_dataset`
recompute entries whose media changed.

Every load checks the entry (all tensors present, the utterance id is the one asked for, the
tensors hash to the stored ``sha256``: one pass over the bytes read), so a damaged or misplaced
entry is an error naming the file and the id, and `preprocess_dataset` recomputes any entry that
fails the same check.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load, save_file

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

from mesm.data.errors import DataError, PreprocessError
from mesm.data.manifest import Record, resolve
from mesm.digest import tensors_digest
from mesm.errors import UsageError
from mesm.files import atomic_target, atomic_write_text, stale_temporaries
from mesm.settings import DictSettings, settings_key


def _header_metadata(blob: bytes) -> dict[str, str]:
    """The string metadata of a safetensors file held in memory."""
    length = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + length])
    return dict(header.get("__metadata__") or {})


FaceChoice = Literal["largest", "speaker"]
CACHE_VERSION = 2  # 2: landmarks and every detected face (1: the largest face's box only)
CACHE_DIR = "cache"
ENTRY_SUFFIX = ".safetensors"


@dataclass(frozen=True)
class PreprocessSettings(DictSettings):
    """Everything that changes the cached features (defaults: the paper's settings).

    Attributes:
        img_interval_ms: one frame every this many milliseconds.
        face_size: side of the square face crops.
        face_margin: MTCNN margin, in pixels of the crop.
        min_face_size: smallest face MTCNN looks for, in frame pixels.
        sample_rate: audio is resampled to this rate before the mel-spectrogram.
        n_fft: FFT size.
        win_length: window length in samples.
        hop_length: hop between frames in samples.
        n_mels: mel bands.
        chunk_frames: spectrogram frames per chunk.
        log_mel: store log(mel + log_eps) instead of the power mel-spectrogram.
        log_eps: the floor added before the log.
        face: which face of a frame is cropped: "largest" (the paper's rule: the largest face
            MTCNN finds in each frame) or "speaker" (the face track whose mouth moves with the
            speech, `mesm.data.media.speaker`). "largest" is left out of the cache key and of
            ``settings.json``, so its folders and entries are those made before the choice
            existed.
    """

    section: ClassVar[str] = "preprocessing"

    img_interval_ms: float = 500
    face_size: int = 48
    face_margin: int = 2
    min_face_size: int = 20
    sample_rate: int = 16000
    n_fft: int = 400
    win_length: int = 400
    hop_length: int = 200
    n_mels: int = 128
    chunk_frames: int = 32
    log_mel: bool = False
    log_eps: float = 1e-6
    face: FaceChoice = "largest"

    def __post_init__(self) -> None:
        if self.face not in ("largest", "speaker"):
            raise UsageError(f"face must be 'largest' or 'speaker', got {self.face!r}")
        positive = [f.name for f in fields(self) if f.name not in ("log_mel", "face")]
        bad = [name for name in positive if not getattr(self, name) > 0]
        if bad:
            raise UsageError(f"settings must be positive: {bad}")
        if self.win_length > self.n_fft:
            raise UsageError(f"win_length {self.win_length} > n_fft {self.n_fft}")
        if self.face_margin >= self.face_size:
            raise UsageError("face_margin must be smaller than face_size")

    def key(self) -> str:
        """Short hash naming the cache folder of these settings."""
        return settings_key(CACHE_VERSION, self.cache_dict())

    def cache_dict(self) -> dict[str, Any]:
        """The settings that name a cache folder: `to_dict` without ``face`` when it is
        "largest" (the default rule, older than the choice)."""
        values = self.to_dict()
        if values["face"] == "largest":
            del values["face"]
        return values


class FeatureCache:
    """The cache folder of one dataset under one set of settings.

    Args:
        dataset_dir: the dataset folder.
        settings: the preprocessing settings (default: the paper's).
    """

    def __init__(self, dataset_dir: str | os.PathLike, settings: PreprocessSettings | None = None):
        self.root = Path(dataset_dir)
        self.settings = settings or PreprocessSettings()
        self.dir = self.root / CACHE_DIR / self.settings.key()
        self.items = self.dir / "items"

    def path(self, uid: str) -> Path:
        """Where the entry of utterance `uid` lives."""
        return self.items / f"{uid}{ENTRY_SUFFIX}"

    def has(self, uid: str) -> bool:
        """Whether a complete entry exists (temporary files never count)."""
        return self.path(uid).is_file()

    def prepare(self) -> None:
        """Create the folders and record the settings; remove temporaries of killed runs."""
        self.items.mkdir(parents=True, exist_ok=True)
        settings_file = self.dir / "settings.json"
        if not settings_file.is_file():
            text = json.dumps({"version": CACHE_VERSION, **self.settings.cache_dict()}, indent=2)
            atomic_write_text(settings_file, text + "\n")
        self.remove_stale()

    def older_folders(self) -> list[Path]:
        """Cache folders of these same settings in an older format version (their
        ``settings.json`` says so). They are never read: their entries are computed again in
        this folder."""
        want = self.settings.cache_dict()
        older = []
        for settings_file in sorted((self.root / CACHE_DIR).glob("*/settings.json")):
            if settings_file.parent == self.dir:
                continue
            try:
                saved = json.loads(settings_file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # not one of ours, or damaged: nothing to say about its version
            if not isinstance(saved, dict):
                continue
            version = saved.pop("version", None)
            if isinstance(version, int) and version < CACHE_VERSION and saved == want:
                older.append(settings_file.parent)
        return older

    def remove_stale(self) -> None:
        """Removes the temporaries of processes that are gone (a killed run; the workers of an
        interrupted one): another run may be writing the others."""
        for stale in stale_temporaries(self.items):
            stale.unlink(missing_ok=True)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Holds this cache's lock file (``<cache>/.lock``) for one writing run.

        Raises:
            DataError: another process holds it (its pid is named); nothing was touched.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / ".lock"
        with open(path, "a+", encoding="utf-8") as fh:
            if fcntl is not None:  # POSIX; elsewhere runs are not serialised
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    fh.seek(0)
                    owner = fh.read().strip() or "?"
                    raise DataError(
                        f"{self.dir} is in use by another run (pid {owner}); wait for it to "
                        "finish, then run again (finished entries are kept)"
                    ) from None
            fh.seek(0)
            fh.truncate()
            fh.write(f"{os.getpid()}\n")
            fh.flush()
            try:
                yield
            finally:
                fh.seek(0)
                fh.truncate()  # the lock itself is released when the file closes (or we die)

    def save(self, uid: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
        """Write an entry atomically (temporary file in the same folder, fsync, rename), with
        the id and the tensors' checksum in its metadata."""
        self.items.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.contiguous() for k, v in tensors.items()}
        metadata = {**metadata, "id": uid, "sha256": tensors_digest(tensors)}
        with atomic_target(self.path(uid)) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)

    # What an entry must hold, and how the user rebuilds a missing one (subclasses differ).
    entry_keys: tuple[str, ...] = (
        "faces",
        "found",
        "boxes",
        "landmarks",
        "detections",
        "detection_frames",
        "timestamps",
        "specs",
    )
    rebuild_hint: str = "run preprocess_dataset"

    def load(self, uid: str) -> dict[str, torch.Tensor]:
        """Read an entry.

        Raises:
            DataError: missing or unreadable entry (the message says how to rebuild it).
        """
        path = self.path(uid)
        try:
            # Read into memory rather than mmap: a file changed under a mapping kills the reader.
            blob = path.read_bytes()
        except FileNotFoundError:
            raise DataError(f"{path}: no cache entry for {uid!r} ({self.rebuild_hint})") from None
        tensors, problem = self._check(uid, blob)
        if problem:
            raise DataError(f"{path}: {problem} (entry of {uid!r}); {self.rebuild_hint}")
        return tensors  # type: ignore[return-value]

    def problem(self, uid: str) -> str | None:
        """Why the entry of `uid` cannot be used (missing, unreadable, damaged), or None."""
        try:
            blob = self.path(uid).read_bytes()
        except OSError as err:
            return f"cannot read the cache entry ({err.strerror or err})"
        return self._check(uid, blob)[1]

    def _check(self, uid: str, blob: bytes) -> tuple[dict[str, torch.Tensor] | None, str | None]:
        try:
            metadata = _header_metadata(blob)
            tensors = load(blob)
        except (SafetensorError, ValueError, UnicodeDecodeError) as err:
            return None, f"unreadable cache entry ({err}); delete it"
        missing = set(self.entry_keys) - set(tensors)
        if missing:
            return None, f"cache entry lacks {sorted(missing)}"
        if metadata.get("id") != uid:
            return None, f"cache entry holds utterance {metadata.get('id')!r}, not {uid!r}"
        if metadata.get("sha256") != tensors_digest(tensors):
            return None, "checksum mismatch: the cache entry was damaged or changed after saving"
        return tensors, None

    def outdated(
        self, records: list[Record], overwrite: bool = False
    ) -> tuple[list[tuple[Record, str]], int]:
        """The records whose entry must be computed, each with its source fingerprint, and how
        many entries are up to date. A missing, damaged, misplaced or stale entry is outdated.

        Args:
            records: the utterances asked for.
            overwrite: every entry is outdated.
        """
        todo: list[tuple[Record, str]] = []
        for record in records:
            fingerprint = source_fingerprint(self.root, record)
            meta = None if overwrite else self.metadata(record.id)
            if meta is None or meta.get("source") != fingerprint or self.problem(record.id):
                todo.append((record, fingerprint))
        return todo, len(records) - len(todo)

    def write_report(self, report: dict[str, Any]) -> None:
        """Write a run's ``report.json``; its ``failed`` (id -> reason) are raised together.

        Raises:
            PreprocessError: some utterances failed (the other entries are kept).
        """
        atomic_write_text(self.dir / "report.json", json.dumps(report, indent=2) + "\n")
        if report.get("failed"):
            raise PreprocessError(report["failed"], str(self.dir))

    def metadata(self, uid: str) -> dict[str, str] | None:
        """An entry's metadata (reads only the header), or None if missing or unreadable."""
        try:
            with safe_open(str(self.path(uid)), framework="pt") as fh:
                return dict(fh.metadata() or {})
        except (SafetensorError, OSError, ValueError):
            return None


def source_files(root: Path, record: Record) -> list[list[Any]]:
    """[relative path, size, mtime_ns] of each media file of `record` (None when unreadable)."""
    out: list[list[Any]] = []
    for rel in (record.video, record.audio):
        if rel is None:
            continue
        try:
            st = resolve(root, rel).stat()
            out.append([rel, st.st_size, st.st_mtime_ns])
        except (OSError, DataError):
            out.append([rel, None, None])
    return out


def source_fingerprint(root: Path, record: Record) -> str:
    """Hash of a record and the size/mtime of its media: changes when the inputs change."""
    parts: list[Any] = [record.to_json()]
    for rel in (record.video, record.audio):
        if rel is None:
            continue
        path = resolve(root, rel)
        try:
            st = path.stat()
            parts.append([rel, st.st_size, st.st_mtime_ns])
        except OSError:
            parts.append([rel, None])
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
