"""Readers for pre-extracted CMU-MOSEI features, written into the hand-crafted feature cache.

Two formats users already have:

* CMU-MultimodalSDK computational sequences (``.csd``, HDF5): ``<name>/data/<video id>/features``
  (T, D) and ``<name>/data/<video id>/intervals`` (T, 2) seconds. `import_csd` cuts each record's
  span out of its video's sequences (rows whose interval overlaps [start, end)) into the feature
  cache of an existing dataset folder (e.g. one `prepare_mosei` wrote).
* The aligned/unaligned pickles of MulT and MMSA: {split: {"vision", "audio", "text": (N, T, D)
  arrays, "labels", "id", optional "{audio,vision}_lengths"}}. `import_pickle` writes a new
  dataset folder (header + manifest; the media are the features) and its feature cache (the
  "times" of these rows are their indices: the files carry none). Pickles are read with
  `mesm.data.pickles.NumpyUnpickler`: plain containers plus the few numpy globals that rebuild
  arrays; anything else (a callable smuggled in through ``__reduce__``) is refused.

Imported caches use ``FeatureSettings(source="imported", name=...)``; select them for training
with ``--set data.features={source: imported, name: NAME}``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mesm.data.errors import DataError
from mesm.data.handcrafted.features import FeatureSettings, FeatureStore, entry
from mesm.data.manifest import DatasetInfo, Record, read_dataset, write_dataset
from mesm.data.pickles import load_numpy_pickle

_SPLIT_NAMES = {"train": "train", "valid": "valid", "dev": "valid", "test": "test"}
_BAD_ID_CHARS = re.compile(r"[^A-Za-z0-9_.\-]")


def read_csd(path: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A computational sequence: {video id: (features (T, D) float32, intervals (T, 2))}.

    Raises:
        DataError: not an HDF5 file in the CMU-MultimodalSDK layout.
    """
    import h5py

    out = {}
    try:
        with h5py.File(path, "r") as fh:
            roots = [k for k in fh if isinstance(fh[k], h5py.Group) and "data" in fh[k]]
            if len(roots) != 1:
                raise DataError(f"{path}: expected one '<name>/data' group, found {roots}")
            data = fh[roots[0]]["data"]
            for vid in data:
                feats = np.asarray(data[vid]["features"], dtype=np.float32)
                intervals = np.asarray(data[vid]["intervals"], dtype=np.float64)
                if feats.ndim != 2 or intervals.shape != (feats.shape[0], 2):
                    raise DataError(
                        f"{path}: {vid}: features {feats.shape}, intervals {intervals.shape}"
                    )
                out[vid] = (np.nan_to_num(feats), intervals)
    except (OSError, KeyError) as err:
        raise DataError(f"{path}: not a readable computational sequence ({err})") from None
    return out


def import_csd(
    dataset_dir: str | os.PathLike,
    audio: str | os.PathLike,
    visual: str | os.PathLike,
    text: str | os.PathLike,
    name: str = "csd",
) -> FeatureStore:
    """Cut each record's span out of three computational sequences into a feature cache.

    A record's sequences are looked up by its id, then by its video file's stem; times in the
    cache are relative to the record's start.

    Args:
        dataset_dir: an existing dataset folder (e.g. from `prepare_mosei`).
        audio: COVAREP (or any) audio .csd.
        visual: FACET/OpenFace (or any) visual .csd.
        text: GloVe word-vector .csd.
        name: the imported feature set's name.

    Returns:
        The written feature store.

    Raises:
        DataError: a record has no sequence in one of the files (all such ids listed).
    """
    root = Path(dataset_dir)
    _, records = read_dataset(root, check_files=False)
    seqs = {"audio": read_csd(audio), "visual": read_csd(visual), "text": read_csd(text)}
    store = FeatureStore(root, FeatureSettings(source="imported", name=name))
    store.prepare()
    missing, dims = [], {}
    for record in records:
        parts = {}
        for modality, table in seqs.items():
            key = next((k for k in (record.id, Path(record.video).stem) if k in table), None)
            if key is None:
                missing.append(f"{record.id} ({modality})")
                continue
            feats, intervals = table[key]
            lo, hi = record.start or 0.0, record.end if record.end is not None else np.inf
            keep = (intervals[:, 1] > lo) & (intervals[:, 0] < hi)
            parts[modality] = (
                torch.from_numpy(feats[keep]),
                torch.from_numpy(intervals[keep, 0] - lo),
            )
            dims[f"{modality}_dim"] = feats.shape[1]
        if len(parts) == 3:
            store.save(
                record.id,
                entry(*parts["audio"], *parts["visual"], parts["text"][0]),
                {"id": record.id, "source": f"csd:{name}"},
            )
    if missing:
        raise DataError(f"no sequence in the .csd files for: {', '.join(missing[:20])}")
    store.write_dims(dims)
    return store


def _labels_to_multi_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    labels = np.asarray(labels, dtype=np.float64)
    if labels.ndim == 3 and labels.shape[1:] == (num_classes, 2):
        return labels.argmax(-1).astype(np.float32)  # MulT IEMOCAP: (neg, pos) per emotion
    flat = labels.reshape(labels.shape[0], -1)
    if flat.shape[1] != num_classes:
        raise DataError(f"labels of shape {labels.shape} do not give {num_classes} emotions")
    return (flat > 0).astype(np.float32)  # CMU-MOSEI: an emotion is present if its intensity > 0


def _trim(seq: np.ndarray, length: Any) -> np.ndarray:
    seq = np.nan_to_num(np.asarray(seq, dtype=np.float32))
    if length is not None:
        return seq[: int(length)]
    return seq[np.abs(seq).sum(axis=-1) > 0]  # zero rows are the files' padding


def _unique_id(raw: object, fallback: str, seen: set[str]) -> str:
    """A valid record id from a pickle's id (or `fallback`), made unique with "_" (added to
    `seen`)."""
    raw = "_".join(str(x) for x in np.ravel(raw)) if not isinstance(raw, str) else raw
    uid = _BAD_ID_CHARS.sub("_", raw).lstrip(".") or fallback
    while uid in seen:
        uid += "_"
    seen.add(uid)
    return uid


def _entry(seqs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """A feature-cache entry of imported sequences (times: the frame index)."""
    times = {m: torch.arange(len(seqs[m]), dtype=torch.float64) for m in ("audio", "visual")}
    return entry(
        torch.from_numpy(seqs["audio"]),
        times["audio"],
        torch.from_numpy(seqs["visual"]),
        times["visual"],
        torch.from_numpy(seqs["text"]),
    )


def import_pickle(
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    label_names: tuple[str, ...] | list[str],
    *,
    task: str = "multi_label",
    name: str = "pickle",
) -> FeatureStore:
    """Convert a MulT/MMSA-style pickle into a dataset folder with an imported feature cache.

    Args:
        path: the pickle ({split: {"vision", "audio", "text", "labels", "id", ...}}).
        out_dir: the dataset folder to write.
        label_names: the K emotions, in the order of the label arrays.
        task: "multi_label" (CMU-MOSEI) or "single_label".
        name: the imported feature set's name.

    Returns:
        The written feature store.
    """
    data = load_numpy_pickle(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a dict of splits, got {type(data).__name__}")
    root = Path(out_dir)
    info = DatasetInfo(
        name=name, task=task, label_names=tuple(label_names), prepare={"from": str(path)}
    )  # type: ignore[arg-type]
    store = FeatureStore(root, FeatureSettings(source="imported", name=name))
    store.prepare()
    records, seen, dims = [], set(), {}
    for split_key, split in data.items():
        if split_key not in _SPLIT_NAMES:
            continue
        labels = _labels_to_multi_hot(split["labels"], len(label_names))
        ids = split.get("id")
        for i in range(labels.shape[0]):
            fallback = f"{split_key}_{i}"
            uid = _unique_id(ids[i] if ids is not None else fallback, fallback, seen)
            seqs = {
                m: _trim(split[key][i], split.get(f"{key}_lengths", [None] * (i + 1))[i])
                for m, key in (("audio", "audio"), ("visual", "vision"), ("text", "text"))
            }
            dims.update({f"{m}_dim": s.shape[1] for m, s in seqs.items()})
            store.save(uid, _entry(seqs), {"id": uid, "source": f"pickle:{name}"})
            names = tuple(n for n, v in zip(label_names, labels[i], strict=True) if v)
            records.append(
                Record(
                    id=uid,
                    video=f"features/{uid}",  # no media: the features are the data
                    text="(pre-extracted features)",
                    labels=names,
                    split=_SPLIT_NAMES[split_key],
                )
            )
    if not records:
        raise DataError(f"{path}: no train/valid/dev/test splits")
    write_dataset(root, info, records)
    store.write_dims(dims)
    return store
