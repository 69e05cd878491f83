"""Where a model looks, in numbers: attention and kept sites per facial region and mel band.

:func:`region_report` runs a checkpoint over one split of a prepared dataset and measures, per
sparse layer (MESM's attention) or at the input (a gradient saliency, for FE2E or on request for
MESM), how the attention mass and the kept sites fall on the facial regions and mel bands of
:mod:`mesm.analysis.regions`:

* per utterance: the mean over its frames (chunks) of each frame's shares; a frame without a
  found face has no regions and is excluded (counted in ``frames_without_face``), and an
  utterance with no such frame is excluded from the visual rows (counted);
* per group of utterances (all of them; each emotion by true label; each emotion by the model's
  decision, the checkpoint's thresholds): the mean share, the mean area share and enrichment
  (share / area) with bootstrap 95 % intervals (percentiles of ``bootstrap`` resamples of the
  group's utterances);
* per emotion with a FACS prototype: the soft IoU of the kept sites with the prototype's regions
  and the pointing game (is the most attended site inside them), with intervals;
* per layer, region and quantity: a permutation test of the differences between emotions (the
  between-group sum of squares of the utterance shares by true label, against ``permutations``
  shuffles of the label rows; p = (1 + #{shuffled >= observed}) / (1 + permutations)).

Saliency (``source="saliency"``): input × gradient of the logit of the emotion the model
predicts, summed over colour channels, absolute, normalised per frame to sum 1; its "kept"
sites are the nucleus of that map at mass p (the checkpoint's p unless given), so an FE2E model
and a MESM model can be compared on the same clips.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mesm.analysis.attention_maps import forward_capture
from mesm.analysis.regions import (
    BANDS,
    FACS_SOURCE,
    REGION_GEOMETRY,
    REGIONS,
    SPEECH,
    band_labels,
    band_rows,
    face_region_labels,
    facs_regions,
    frame_shares,
    one_hot,
    pool_fractions,
    row_names,
    speech_frame_labels,
)
from mesm.data.errors import DataError
from mesm.data.media.audio import load_waveform
from mesm.data.media.dataset import EmotionDataset
from mesm.data.media.vad import VAD_RATE, VAD_STEP, batch_speech_probabilities, load_vad_model
from mesm.errors import UsageError
from mesm.evaluation.metrics import decide
from mesm.files import atomic_target, atomic_write_json, atomic_write_text
from mesm.inference.evaluate import open_split
from mesm.models import EmotionModel
from mesm.models.attention import top_p_mask
from mesm.trained.checkpoint import TrainedModel, load_model
from mesm.trained.inputs import model_inputs
from mesm.trained.precision import Precision, resolve_precision

QUANTITIES = ("attention", "kept")
CSV_COLUMNS = (
    "split",
    "source",
    "pathway",
    "layer",
    "map",
    "group_by",
    "emotion",
    "region",
    "facs",
    "utterances",
    "attention_share",
    "attention_share_lo",
    "attention_share_hi",
    "kept_share",
    "kept_share_lo",
    "kept_share_hi",
    "area_share",
    "attention_enrichment",
    "attention_enrichment_lo",
    "attention_enrichment_hi",
    "kept_enrichment",
    "kept_enrichment_lo",
    "kept_enrichment_hi",
)


# -- one batch: maps → per-frame shares -----------------------------------------------------------


def _attention_maps(
    model: EmotionModel, batch: dict[str, Any], precision: Precision
) -> tuple[dict[str, dict[str, dict[str, Tensor]]], Tensor]:
    """MESM's captured maps {pathway: {"0": {"probs", "kept", "scored"}}} and its logits."""
    with torch.inference_mode(), precision.autocast():
        store, logits = forward_capture(model, batch)
    maps = {name: {str(i): layer for i, layer in layers.items()} for name, layers in store.items()}
    return maps, logits.float()


@contextmanager
def _frozen(model: EmotionModel) -> Iterator[None]:
    """The model's parameters need no gradient inside the block (restored after it)."""
    needed = [p for p in model.parameters() if p.requires_grad]
    for p in needed:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in needed:
            p.requires_grad_(True)


def _saliency_maps(
    model: EmotionModel, batch: dict[str, Any], precision: Precision, p: float
) -> tuple[dict[str, dict[str, dict[str, Tensor]]], Tensor]:
    """Input × gradient of the predicted emotion's logit, as one "input" layer per pathway."""
    inputs = model_inputs(model, batch)
    wanted = [k for k in ("faces", "specs") if k in inputs]
    for key in wanted:
        inputs[key] = inputs[key].detach().float().requires_grad_(True)
    with _frozen(model), torch.enable_grad(), precision.autocast():
        # Only the inputs need a gradient: the text encoder builds no graph, and the backward
        # pass computes no weight gradients.
        logits = model(**inputs)
        chosen = logits.float().gather(1, logits.float().argmax(dim=1, keepdim=True)).sum()
        grads = torch.autograd.grad(chosen, [inputs[k] for k in wanted], allow_unused=True)
    maps = {}
    for key, grad in zip(wanted, grads, strict=True):
        x = inputs[key].detach()
        grad = torch.zeros_like(x) if grad is None else grad
        sal = (x * grad).sum(dim=1).abs().cpu()  # (F, H, W)
        flat = sal.flatten(1).double()
        total = flat.sum(dim=1, keepdim=True)
        uniform = torch.full_like(flat, 1.0 / max(1, flat.shape[1]))
        probs = torch.where(total > 0, flat / total.clamp_min(1e-300), uniform)
        kept = top_p_mask(probs, p).view_as(sal)
        name = "visual" if key == "faces" else "audio"
        maps[name] = {
            "input": {
                "probs": probs.view_as(sal).float(),
                "kept": kept,
                "scored": torch.ones_like(kept),
            }
        }
    return maps, logits.detach().float()


def _pixel_labels(
    name: str, items: list[dict[str, Any]], n_mels_rows: np.ndarray | None
) -> tuple[np.ndarray, int]:
    """(F, H, W) region (visual) or band (audio) label per input pixel, and the label count."""
    if name == "visual":
        landmarks = torch.cat([it["landmarks"] for it in items]).numpy()
        size = int(items[0]["faces"].shape[-1])
        return face_region_labels(landmarks, size), len(REGIONS)
    frames = sum(int(it["specs"].shape[0]) for it in items)
    chunk = int(items[0]["specs"].shape[-1])
    return band_labels(n_mels_rows, frames, chunk), len(BANDS)


def _targets(label_names: list[str]) -> tuple[list[str], np.ndarray]:
    """The labels with a FACS prototype and their (E, R) 0/1 region targets."""
    names = [n for n in label_names if facs_regions(n)]
    targets = np.array(
        [[r in facs_regions(n) for r in REGIONS] for n in names], dtype=np.float64
    ).reshape(len(names), len(REGIONS))
    return names, targets


def batch_shares(
    maps: dict[str, dict[str, dict[str, Tensor]]],
    items: list[dict[str, Any]],
    label_names: list[str],
    n_mels_rows: np.ndarray | None = None,
    speech: np.ndarray | None = None,
) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """Per-utterance mean shares of every captured layer, for the utterances of one batch.

    Args:
        maps: {pathway: {layer: {"probs", "kept", "scored"} (F, h, w)}}, F the batch's frames.
        items: the batch's dataset items (faces, landmarks, specs), in batch order.
        label_names: the K labels (those with a FACS prototype get IoU/pointing targets).
        n_mels_rows: (n_mels,) band of each mel row (:func:`~mesm.analysis.regions.band_rows`).
        speech: (ΣS, n_mels, chunk_frames) speech labels of the batch's mel chunks
            (:func:`~mesm.analysis.regions.speech_frame_labels`), or None.

    Returns:
        {(pathway, layer): {"attention", "kept", "area": (B, R); "iou", "pointing": (B, E);
        "frames": (B,) frames used; "excluded": (B,) frames excluded; "map": "hxw"}}, pathway
        "visual" (facial regions), "audio" (mel bands) or "speech" (the audio maps by voice
        activity); NaN rows for an utterance without a usable frame.
    """
    targets = _targets(label_names)[1]
    out: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    for name, layers in maps.items():
        key = "faces" if name == "visual" else "specs"
        lengths = [int(it[key].shape[0]) for it in items]
        labellings = [(name, *_pixel_labels(name, items, n_mels_rows))]
        if name == "audio" and speech is not None:
            labellings.append(("speech", speech, len(SPEECH)))
        for label_set, labels, count in labellings:
            onehot = one_hot(labels, count)  # pooled to each layer's map
            valid = (labels != -1).reshape(labels.shape[0], -1).any(axis=1)
            for layer, m in layers.items():
                out[(label_set, layer)] = _layer_shares(
                    m, onehot, valid, lengths, targets if label_set == "visual" else None
                )
    return out


def _layer_shares(
    m: dict[str, Tensor],
    onehot: np.ndarray,
    valid: np.ndarray,
    lengths: list[int],
    targets: np.ndarray | None,
) -> dict[str, Any]:
    """One layer's per-frame shares, averaged per utterance over its labelled frames.

    Args:
        m: the layer's "probs", "kept", "scored" (F, h, w).
        onehot: (F, R, H, W) each input pixel's region.
        valid: (F,) frames with regions.
        lengths: frames per utterance.
        targets: (E, R) FACS targets, or None.
    """
    probs = m["probs"].float().numpy()
    fractions = pool_fractions(onehot, probs.shape[1:])
    shares = frame_shares(probs, m["kept"].numpy(), m["scored"].numpy(), fractions, targets)
    # Frame -> utterance membership (B, F): per-utterance sums are one matrix product.
    owner = np.repeat(np.arange(len(lengths)), lengths)
    member = (owner[None, :] == np.arange(len(lengths))[:, None]).astype(np.float64)
    used = member @ valid.astype(np.float64)
    entry: dict[str, Any] = {}
    for q in ("attention", "kept", "area", "iou", "pointing"):
        values = shares[q]
        counted = valid[:, None] & np.isfinite(values)
        totals = member @ np.where(counted, values, 0.0)
        counts = member @ counted.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            entry[q] = np.where(counts > 0, totals / counts, np.nan)
    entry["frames"] = used.astype(np.int64)
    entry["excluded"] = np.asarray(lengths, dtype=np.int64) - entry["frames"]
    entry["map"] = "x".join(str(s) for s in probs.shape[1:])
    return entry


# -- statistics -----------------------------------------------------------------------------------


def bootstrap_means(values: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of `resamples` bootstrap resamples of the rows of `values`.

    Args:
        values: (n, C) one row per utterance (no NaN).
        resamples: how many resamples.
        rng: the random generator.

    Returns:
        (resamples, C) column means of each resample.
    """
    n = values.shape[0]
    picks = rng.integers(0, n, size=(resamples, n))
    flat = (picks + (np.arange(resamples) * n)[:, None]).ravel()
    weights = np.bincount(flat, minlength=resamples * n).reshape(resamples, n)
    return weights @ values / n


def _interval(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 2.5th and 97.5th percentiles of each column (ignoring NaN, e.g. 0 / 0 ratios)."""
    if np.isfinite(samples).all():
        lo, hi = np.percentile(samples, [2.5, 97.5], axis=0)
        return lo, hi
    with np.errstate(invalid="ignore"):
        return np.nanpercentile(samples, 2.5, axis=0), np.nanpercentile(samples, 97.5, axis=0)


def permutation_p(
    values: np.ndarray, labels: np.ndarray, permutations: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Between-emotion differences of utterance shares against shuffled labels.

    The statistic of each column is Σ_k n_k (mean_k − mean)², over the K emotions (by true label;
    an utterance with several labels counts in each group).

    Args:
        values: (n, C) per-utterance values.
        labels: (n, K) 0/1 labels.
        permutations: how many shuffles of the label rows.
        rng: the random generator.

    Returns:
        (C,) observed statistics and (C,) p-values.
    """
    lab = labels.astype(np.float64)
    overall = values.mean(axis=0)

    def statistic(lab_sets: np.ndarray) -> np.ndarray:  # (..., n, K) -> (..., C)
        counts = lab_sets.sum(axis=-2)  # (..., K)
        sums = np.swapaxes(lab_sets, -1, -2) @ values  # (..., K, C)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(counts[..., None] > 0, sums / counts[..., None], overall)
        return (counts[..., None] * (means - overall) ** 2).sum(axis=-2)

    observed = statistic(lab)
    exceed = np.zeros_like(observed)
    step = max(1, 4_000_000 // max(1, lab.size))
    for start in range(0, permutations, step):
        block = min(step, permutations - start)
        order = np.argsort(rng.random((block, lab.shape[0])), axis=1)
        exceed += (statistic(lab[order]) >= observed - 1e-12).sum(axis=0)
    return observed, (1.0 + exceed) / (1.0 + permutations)


def _groups(
    labels: np.ndarray, decisions: np.ndarray, label_names: list[str]
) -> Iterator[tuple[str, str, np.ndarray]]:
    yield "all", "all", np.ones(labels.shape[0], dtype=bool)
    for by, matrix in (("true", labels), ("predicted", decisions)):
        for k, name in enumerate(label_names):
            yield by, name, matrix[:, k].astype(bool)


def summarise(
    shares: dict[tuple[str, str], dict[str, np.ndarray]],
    labels: np.ndarray,
    decisions: np.ndarray,
    label_names: list[str],
    *,
    bootstrap: int = 1000,
    permutations: int = 1000,
    seed: int = 0,
) -> dict[str, list[dict[str, Any]]]:
    """The region rows, the IoU/pointing rows and the permutation rows of every layer.

    Args:
        shares: :func:`batch_shares` of the whole split, concatenated over batches.
        labels: (n, K) true labels.
        decisions: (n, K) the model's decisions.
        label_names: the K labels.
        bootstrap: resamples per interval.
        permutations: label shuffles per test.
        seed: the random generator's seed (the report is reproducible).

    Returns:
        {"regions": [...], "targets": [...], "permutation": [...]} (see :func:`region_report`).
    """
    rng = np.random.default_rng(seed)
    facs_names, _ = _targets(label_names)
    rows, target_rows, perm_rows = [], [], []
    for (pathway, layer), entry in shares.items():
        names = row_names(pathway)
        usable = np.isfinite(entry["attention"]).all(axis=1) & np.isfinite(entry["area"]).all(
            axis=1
        )
        r = len(names)
        for by, emotion, members in _groups(labels, decisions, label_names):
            chosen = members & usable
            n = int(chosen.sum())
            base = {"pathway": pathway, "layer": layer, "map": entry["map"]}
            if n == 0:
                continue
            att, kept, area = (entry[q][chosen] for q in ("attention", "kept", "area"))
            stacked = np.concatenate([att, kept, area], axis=1)
            samples = bootstrap_means(stacked, bootstrap, rng)
            s_att, s_kept, s_area = samples[:, :r], samples[:, r : 2 * r], samples[:, 2 * r :]
            with np.errstate(invalid="ignore", divide="ignore"):
                e_att, e_kept = s_att / s_area, s_kept / s_area
            mean_att, mean_kept, mean_area = att.mean(0), kept.mean(0), area.mean(0)
            intervals = {"a": _interval(s_att), "k": _interval(s_kept)}
            lo = {k: v[0] for k, v in intervals.items()}
            hi = {k: v[1] for k, v in intervals.items()}
            ea_lo, ea_hi = _interval(e_att)
            ek_lo, ek_hi = _interval(e_kept)
            target = set(facs_regions(emotion)) if pathway == "visual" else set()
            for j, region in enumerate(names):
                with np.errstate(invalid="ignore", divide="ignore"):
                    enrich_att = mean_att[j] / mean_area[j]
                    enrich_kept = mean_kept[j] / mean_area[j]
                rows.append(
                    {
                        **base,
                        "group_by": by,
                        "emotion": emotion,
                        "region": region,
                        "facs": region in target,
                        "utterances": n,
                        "attention_share": mean_att[j],
                        "attention_share_lo": lo["a"][j],
                        "attention_share_hi": hi["a"][j],
                        "kept_share": mean_kept[j],
                        "kept_share_lo": lo["k"][j],
                        "kept_share_hi": hi["k"][j],
                        "area_share": mean_area[j],
                        "attention_enrichment": enrich_att,
                        "attention_enrichment_lo": ea_lo[j],
                        "attention_enrichment_hi": ea_hi[j],
                        "kept_enrichment": enrich_kept,
                        "kept_enrichment_lo": ek_lo[j],
                        "kept_enrichment_hi": ek_hi[j],
                    }
                )
            if pathway == "visual" and emotion in facs_names:
                e = facs_names.index(emotion)
                pair = np.stack([entry["iou"][chosen, e], entry["pointing"][chosen, e]], axis=1)
                pair = pair[np.isfinite(pair).all(axis=1)]
                if len(pair):
                    lo2, hi2 = _interval(bootstrap_means(pair, bootstrap, rng))
                    target_rows.append(
                        {
                            **base,
                            "group_by": by,
                            "emotion": emotion,
                            "regions": list(facs_regions(emotion)),
                            "utterances": len(pair),
                            "iou": pair[:, 0].mean(),
                            "iou_lo": lo2[0],
                            "iou_hi": hi2[0],
                            "pointing": pair[:, 1].mean(),
                            "pointing_lo": lo2[1],
                            "pointing_hi": hi2[1],
                        }
                    )
        if usable.sum() > 1 and labels.shape[1] > 1:
            values = np.concatenate([entry["attention"][usable], entry["kept"][usable]], axis=1)
            stat, p = permutation_p(values, labels[usable], permutations, rng)
            for qi, quantity in enumerate(QUANTITIES):
                for j, region in enumerate(names):
                    perm_rows.append(
                        {
                            "pathway": pathway,
                            "layer": layer,
                            "quantity": quantity,
                            "region": region,
                            "statistic": stat[qi * r + j],
                            "p_value": p[qi * r + j],
                            "permutations": permutations,
                        }
                    )
    return {"regions": rows, "targets": target_rows, "permutation": perm_rows}


def combined_enrichment(
    shares: dict[tuple[str, str], dict[str, np.ndarray]],
    regions: tuple[str, ...],
    *,
    quantity: str = "kept",
    bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Enrichment of several facial regions taken together, per visual layer, all utterances.

    Returns:
        {layer: {"enrichment", "lo", "hi", "share", "area", "utterances"}}.
    """
    rng = np.random.default_rng(seed)
    cols = [REGIONS.index(r) for r in regions]
    out = {}
    for (pathway, layer), entry in shares.items():
        if pathway != "visual":
            continue
        usable = np.isfinite(entry[quantity]).all(axis=1) & np.isfinite(entry["area"]).all(axis=1)
        if not usable.any():
            continue
        pair = np.stack(
            [entry[quantity][usable][:, cols].sum(1), entry["area"][usable][:, cols].sum(1)],
            axis=1,
        )
        samples = bootstrap_means(pair, bootstrap, rng)
        lo, hi = _interval(samples[:, 0] / samples[:, 1])
        mean = pair.mean(axis=0)
        out[layer] = {
            "enrichment": float(mean[0] / mean[1]),
            "lo": float(lo),
            "hi": float(hi),
            "share": float(mean[0]),
            "area": float(mean[1]),
            "utterances": int(usable.sum()),
        }
    return out


# -- the whole split ------------------------------------------------------------------------------


def collect_shares(
    trained: TrainedModel,
    dataset: EmotionDataset,
    *,
    source: str,
    precision: Precision,
    batch_size: int = 8,
    p: float | None = None,
    speech: bool = False,
) -> dict[str, Any]:
    """One pass over the split: per-utterance shares, probabilities, labels, the mean face.

    Returns:
        {"shares": {(pathway, layer): arrays}, "probs": (n, K), "labels": (n, K),
        "mean_face": (3, H, W) float or None, "mean_landmarks": (5, 2) or None, "p", "speech":
        counts of mel frames by voice activity (None when `speech` is False)}.
    """
    model = trained.model.eval()
    vad = load_vad_model() if speech and "a" in model.config.modalities else None
    voice = {"speech_frames": 0, "non_speech_frames": 0, "utterances_without_audio": []}
    heard: dict[int, tuple[np.ndarray, int]] = {}
    rows = band_rows(dataset.cache.settings.n_mels, dataset.cache.settings.sample_rate)
    nucleus = float(p if p is not None else model.config.p)
    parts: dict[tuple[str, str], list[dict[str, np.ndarray]]] = {}
    probs, labels = [], []
    face_sum, face_count, lm_sum, lm_count = None, 0, np.zeros((5, 2)), 0
    names = list(trained.label_names)
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(len(dataset), start + batch_size))]
        batch = dataset.collate(items)
        if source == "attention":
            with model.using_p(p):
                maps, logits = _attention_maps(model, batch, precision)
        else:
            maps, logits = _saliency_maps(model, batch, precision, nucleus)
        voiced = None
        if vad is not None:
            indices = range(start, start + len(items))
            unheard = [i for i in indices if i not in heard]
            if unheard:  # the VAD runs on blocks of utterances: fewer, wider calls
                first = unheard[0]
                block = range(first, min(len(dataset), first + max(batch_size, VAD_BLOCK)))
                heard.update(_listen(dataset, block, vad, voice))
            voiced = _speech_labels(dataset, [heard.pop(i) for i in indices], items, voice)
        for key, entry in batch_shares(maps, items, names, rows, voiced).items():
            parts.setdefault(key, []).append(entry)
        probs.append(torch.sigmoid(logits).cpu().numpy())
        labels.append(batch["labels"].numpy())
        for it in items:
            ok = it["found"].bool()
            if ok.any():
                faces = it["faces"][ok].double().sum(dim=0).numpy()
                face_sum = faces if face_sum is None else face_sum + faces
                face_count += int(ok.sum())
                lm = it["landmarks"][ok].double().numpy()
                lm_sum += lm.sum(axis=0)
                lm_count += len(lm)
    shares = {}
    for key, chunks in parts.items():
        merged = {
            q: np.concatenate([c[q] for c in chunks])
            for q in ("attention", "kept", "area", "iou", "pointing", "frames", "excluded")
        }
        merged["map"] = chunks[0]["map"]
        shares[key] = merged
    return {
        "shares": shares,
        "probs": np.concatenate(probs),
        "labels": np.concatenate(labels).round(),
        "mean_face": None if face_sum is None else face_sum / face_count,
        "mean_landmarks": None if lm_count == 0 else lm_sum / lm_count,
        "p": nucleus if source == "saliency" else (p if p is not None else model.p),
        "speech": voice if vad is not None else None,
    }


VAD_BLOCK = 256  # utterances scored by one batched VAD pass


def _listen(
    dataset: EmotionDataset, indices: range, vad: torch.jit.ScriptModule, counts: dict[str, Any]
) -> dict[int, tuple[np.ndarray, int]]:
    """Speech probabilities of utterances from their own audio (Silero VAD at 16 kHz, scored
    together): {index: (probabilities, samples at 16 kHz)}; an utterance whose audio cannot be
    read gets none (and is named in `counts`)."""
    waves = []
    for index in indices:
        record = dataset.records[index]
        try:
            waves.append(load_waveform(dataset.root, record, VAD_RATE).numpy())
        except DataError:
            counts["utterances_without_audio"].append(record.id)
            waves.append(np.zeros(0, dtype=np.float32))
    scored = batch_speech_probabilities(waves, vad)
    return {
        index: (probs, len(wave)) for index, wave, probs in zip(indices, waves, scored, strict=True)
    }


def _speech_labels(
    dataset: EmotionDataset,
    heard: list[tuple[np.ndarray, int]],
    items: list[dict[str, Any]],
    counts: dict[str, Any],
) -> np.ndarray:
    """Speech / non-speech / padding labels of a batch's mel chunks (all -1 for an utterance
    without probabilities).

    Returns:
        (ΣS, n_mels, chunk_frames) int8.
    """
    settings = dataset.cache.settings
    out = []
    for (probs, samples), item in zip(heard, items, strict=True):
        specs = item["specs"]
        labels = speech_frame_labels(
            probs,
            VAD_STEP,
            samples=round(samples * settings.sample_rate / VAD_RATE),
            sample_rate=settings.sample_rate,
            hop_length=settings.hop_length,
            chunks=int(specs.shape[0]),
            chunk_frames=int(specs.shape[-1]),
            n_mels=int(specs.shape[-2]),
        )
        frames = labels[:, 0, :]
        counts["speech_frames"] += int((frames == 0).sum())
        counts["non_speech_frames"] += int((frames == 1).sum())
        out.append(labels)
    return np.concatenate(out)


def region_report(
    checkpoint: str | os.PathLike | TrainedModel,
    data: str | os.PathLike,
    split: str | None = "test",
    out_dir: str | os.PathLike | None = None,
    *,
    source: str = "auto",
    p: float | None = None,
    batch_size: int = 8,
    bootstrap: int = 1000,
    permutations: int = 1000,
    seed: int = 0,
    precision: str | Precision = "auto",
    figures: bool = True,
    speech: bool = False,
) -> dict[str, Any]:
    """Attention and kept sites per facial region and mel band, per emotion, over a split.

    Args:
        checkpoint: a checkpoint, model folder or loaded `TrainedModel` (FE2E or MESM).
        data: the prepared dataset folder (its feature cache is read, or computed).
        split: "train", "valid", "test", or None for every utterance.
        out_dir: where ``regions.csv``, ``regions.json``, ``enrichment.png`` and
            ``region_masks.png`` go (None: nothing is written).
        source: "attention" (MESM's sparse layers), "saliency" (input × gradient), or "auto"
            (attention for MESM, saliency for FE2E).
        p: nucleus mass (MESM: run at this p; saliency: the mass of its kept sites).
        batch_size: utterances per forward pass.
        bootstrap: resamples per 95 % interval.
        permutations: shuffles per permutation test.
        seed: seed of the resampling (the same inputs give the same report).
        precision: what the model runs at ("auto", "32", "bf16").
        figures: draw the PNGs.
        speech: also split the audio maps into speech and non-speech mel frames (Silero VAD on
            each utterance's audio, the whole-video path's detector and threshold; it decodes
            every utterance's audio again, so it is not done by default).

    Returns:
        The ``regions.json`` content: "checkpoint", "data", "split", "arch", "source", "p",
        "utterances", "frames" {"used", "without_face"}, "utterances_without_face", "regions"
        (names and geometry), "facs" (per label: its regions, and the source), "bands",
        "rows" (one per layer × group × region: see ``CSV_COLUMNS``), "targets" (IoU and pointing
        per layer × group × FACS emotion), "permutation" (per layer × quantity × region), and
        "mouth_brows" (the kept-site enrichment of mouth and brows together per visual layer).
    """
    trained = checkpoint if isinstance(checkpoint, TrainedModel) else load_model(checkpoint)
    model = trained.model
    if not isinstance(model, EmotionModel):
        raise UsageError("region analysis needs FE2E or MESM (a baseline reads no faces)")
    is_mesm = model.config.mesm
    if source == "auto":
        source = "attention" if is_mesm else "saliency"
    if source not in ("attention", "saliency"):
        raise UsageError(f"source must be attention, saliency or auto, got {source!r}")
    if source == "attention" and not is_mesm:
        raise UsageError("FE2E has no cross-modal attention: use --saliency (source saliency)")
    if batch_size < 1 or bootstrap < 1 or permutations < 1:
        raise UsageError("batch size, bootstrap resamples and permutations must be >= 1")
    resolved = resolve_precision(precision, next(model.parameters()).device)
    dataset = open_split(data, split, trained)
    collected = collect_shares(
        trained,
        dataset,
        source=source,
        precision=resolved,
        batch_size=batch_size,
        p=p,
        speech=speech,
    )
    names = list(trained.label_names)
    probs, labels = collected["probs"], collected["labels"]
    if trained.task == "single_label":
        decisions = np.zeros_like(labels, dtype=bool)
        decisions[np.arange(len(probs)), probs.argmax(axis=1)] = True
    else:
        decisions = decide(probs, np.asarray(trained.thresholds))
    stats = summarise(
        collected["shares"],
        labels,
        decisions,
        names,
        bootstrap=bootstrap,
        permutations=permutations,
        seed=seed,
    )
    shares = collected["shares"]
    visual = [e for (pw, _), e in shares.items() if pw == "visual"]
    report: dict[str, Any] = {
        "checkpoint": str(trained.source or "a model in memory"),
        "data": str(data),
        "split": split,
        "arch": model.config.arch,
        "source": source,
        "p": collected["p"],
        "utterances": len(dataset),
        "frames": {
            "used": int(visual[0]["frames"].sum()) if visual else 0,
            "without_face": int(visual[0]["excluded"].sum()) if visual else 0,
        },
        "utterances_without_face": int((visual[0]["frames"] == 0).sum()) if visual else 0,
        "bootstrap": bootstrap,
        "permutations": permutations,
        "seed": seed,
        "regions": {"names": list(REGIONS), "geometry": REGION_GEOMETRY},
        "facs": {"source": FACS_SOURCE, "labels": {n: list(facs_regions(n)) for n in names}},
        "bands": [{"name": n, "low_hz": lo, "high_hz": hi} for n, lo, hi in BANDS],
        "speech": collected["speech"],
        "rows": stats["regions"],
        "targets": stats["targets"],
        "permutation": stats["permutation"],
        "mouth_brows": combined_enrichment(shares, ("mouth", "brows"), bootstrap=bootstrap),
    }
    report = _json_ready(report)  # plain floats (NaN as None), ints and bools
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        files = {"csv": "regions.csv", "json": "regions.json"}
        if figures:
            draw_enrichment(report, out / "enrichment.png")
            files["enrichment"] = "enrichment.png"
            if collected["mean_face"] is not None:
                draw_region_masks(
                    collected["mean_face"], collected["mean_landmarks"], out / "region_masks.png"
                )
                files["region_masks"] = "region_masks.png"
        report["files"] = files
        atomic_write_text(out / "regions.csv", rows_csv(report["rows"]))
        atomic_write_json(out / "regions.json", report)
    return report


def rows_csv(rows: list[dict[str, Any]]) -> str:
    """The region rows as CSV text (``CSV_COLUMNS``; numbers to 6 significant digits)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k, "")) for k in CSV_COLUMNS})
    return buf.getvalue()


def _cell(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return "" if not np.isfinite(value) else f"{float(value):.6g}"
    return value


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    return value


# -- figures --------------------------------------------------------------------------------------

REGION_COLOURS = {
    "mouth": (0.89, 0.10, 0.11),
    "nose": (1.00, 0.50, 0.00),
    "eyes": (0.22, 0.49, 0.72),
    "brows": (0.60, 0.31, 0.64),
    "cheeks": (0.30, 0.69, 0.29),
    "jaw": (0.65, 0.34, 0.16),
    "rest": (0.6, 0.6, 0.6),
}


def draw_region_masks(
    mean_face: np.ndarray, mean_landmarks: np.ndarray, path: str | os.PathLike
) -> None:
    """The mean face of the split, and the regions of its mean landmarks drawn over it.

    Args:
        mean_face: (3, H, W) mean of the found faces' uint8 crops.
        mean_landmarks: (5, 2) mean landmarks in crop pixels.
        path: the PNG.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    face = np.clip(mean_face.transpose(1, 2, 0) / 255.0, 0, 1)
    labels = face_region_labels(mean_landmarks[None], face.shape[0])[0]
    colours = np.array([REGION_COLOURS[r] for r in REGIONS])
    overlay = 0.45 * face + 0.55 * colours[labels]
    overlay[labels == REGIONS.index("rest")] = face[labels == REGIONS.index("rest")]
    fig = Figure(figsize=(6.4, 3.2), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    for ax, image, title in ((axes[0], face, "mean face"), (axes[1], overlay, "regions")):
        ax.imshow(image, interpolation="nearest")
        ax.set_title(title, fontsize="small")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[1].plot(mean_landmarks[:, 0] - 0.5, mean_landmarks[:, 1] - 0.5, "w+", markersize=6)
    handles = [Patch(color=REGION_COLOURS[r], label=r) for r in REGIONS[:-1]]
    fig.legend(handles=handles, loc="outside right center", fontsize="small")
    with atomic_target(path) as tmp:
        fig.savefig(tmp, format="png")


def draw_enrichment(report: dict[str, Any], path: str | os.PathLike) -> None:
    """Kept-site enrichment per emotion (true label) × region, one panel per layer, with the
    bootstrap 95 % intervals; a dashed line at 1 (attention spread as the area)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [r for r in report["rows"] if r["group_by"] == "true"]
    panels = sorted({(r["pathway"], r["layer"]) for r in rows}, key=lambda k: (k[0] != "visual", k))
    emotions = list(dict.fromkeys(r["emotion"] for r in rows))
    fig = Figure(
        figsize=(4.2 * max(1, min(3, len(panels))), 3.0 * max(1, -(-len(panels) // 3))),
        dpi=100,
        layout="constrained",
    )
    FigureCanvasAgg(fig)
    columns = max(1, min(3, len(panels)))
    grid = fig.subplots(max(1, -(-len(panels) // columns)), columns, squeeze=False)
    for ax in grid.ravel()[len(panels) :]:
        ax.set_axis_off()
    width = 0.8 / max(1, len(emotions))
    for ax, (pathway, layer) in zip(grid.ravel(), panels, strict=False):
        mine = [r for r in rows if r["pathway"] == pathway and r["layer"] == layer]
        regions = list(dict.fromkeys(r["region"] for r in mine))
        for i, emotion in enumerate(emotions):
            sel = {r["region"]: r for r in mine if r["emotion"] == emotion}
            x = np.arange(len(regions)) + (i - (len(emotions) - 1) / 2) * width
            y = np.array(
                [_finite(sel[g]["kept_enrichment"]) if g in sel else np.nan for g in regions]
            )
            lo = np.array(
                [_finite(sel[g]["kept_enrichment_lo"]) if g in sel else np.nan for g in regions]
            )
            hi = np.array(
                [_finite(sel[g]["kept_enrichment_hi"]) if g in sel else np.nan for g in regions]
            )
            err = np.vstack([np.clip(y - lo, 0, None), np.clip(hi - y, 0, None)])
            ax.bar(x, y, width, yerr=np.nan_to_num(err), capsize=2, label=emotion)
        ax.axhline(1.0, color="k", linestyle="--", linewidth=0.8)
        ax.set_xticks(np.arange(len(regions)))
        short = [g.split(" (")[0] for g in regions]
        ax.set_xticklabels(short, rotation=30, ha="right", fontsize="x-small")
        ax.set_title(f"{pathway}, layer {layer} ({mine[0]['map']})", fontsize="small")
        ax.set_ylabel("kept share / area", fontsize="x-small")
    if emotions and panels:
        grid.ravel()[0].legend(fontsize="x-small")
    fig.suptitle(
        f"{report['arch'].upper()} {report['source']}, split {report['split']}: "
        "kept-site enrichment by true emotion (95 % bootstrap intervals)",
        fontsize="small",
    )
    with atomic_target(path) as tmp:
        fig.savefig(tmp, format="png")


def _finite(value: Any) -> float:
    return float("nan") if value is None else float(value)


def clip_regions(
    maps: dict[str, dict[Any, dict[str, Tensor]]],
    item: dict[str, Tensor],
    label_names: list[str] | tuple[str, ...],
    n_mels_rows: np.ndarray,
) -> dict[str, list[dict[str, Any]]]:
    """One utterance's region (band) shares per layer, for ``mesm explain`` and the page.

    Args:
        maps: :func:`~mesm.analysis.attention_maps.capture_attention` of the utterance.
        item: its "faces" (T, 3, H, W), "landmarks" (T, 5, 2) and "specs" (S, 1, M, C).
        label_names: the model's labels.
        n_mels_rows: (M,) band of each mel row.

    Returns:
        {pathway: [{"layer", "map", "frames", "excluded", "shares": {region: {"attention",
        "kept", "area"}}}]}.
    """
    named = {name: {str(k): v for k, v in layers.items()} for name, layers in maps.items()}
    shares = batch_shares(named, [item], list(label_names), n_mels_rows)
    out: dict[str, list[dict[str, Any]]] = {}
    for (pathway, layer), entry in shares.items():
        names = row_names(pathway)
        out.setdefault(pathway, []).append(
            {
                "layer": layer,
                "map": entry["map"],
                "frames": int(entry["frames"][0]),
                "excluded": int(entry["excluded"][0]),
                "shares": {
                    g: {q: _json_ready(entry[q][0, j]) for q in ("attention", "kept", "area")}
                    for j, g in enumerate(names)
                },
            }
        )
    return out
