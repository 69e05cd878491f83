"""Where MESM's cross-modal attention looks: captured probabilities and kept sites, as images.

:func:`capture_attention` records, with forward hooks on each
:class:`~mesm.models.attention.AttentionCapture` (the named place where attention probabilities
pass), the probabilities and the top-p selection of every sparse layer, as dense per-frame maps.
:func:`explain_batch` draws them over the face crops and mel chunks of one utterance;
:func:`explain` does the same from a checkpoint and a ready batch or a dataset folder + utterance
id.

Images (each site upsampled to the pixels it covers, nearest neighbour, so the site grid stays
visible; then magnified by ``scale``):

* ``*_attention.png``: the probabilities of the frame divided by the frame's largest one, as the
  "inferno" colour map, blended over the input (``HEAT_ALPHA``); sites not scored are 0.
* ``*_kept.png``: kept sites tinted ``KEPT_COLOUR`` with opacity ``KEPT_ALPHA``; every other
  pixel is the input darkened to ``DROPPED_DIM`` of its value. These constants are exact, so an
  image can be checked against the saved ``*_kept.npy`` mask.

Mel chunks are shown as log power, min-max scaled per chunk, grey, low frequencies at the bottom
(the arrays are flipped vertically for display; the ``.npy`` masks keep the model's row order).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mesm.data.media.faces import FACE_MEAN, FACE_STD
from mesm.errors import UsageError
from mesm.files import atomic_target, atomic_write_json
from mesm.inference.evaluate import open_split
from mesm.models import EmotionModel
from mesm.sparse import SparseMap
from mesm.trained.checkpoint import TrainedModel, load_model
from mesm.trained.inputs import model_inputs
from mesm.trained.precision import Precision, resolve_precision

KEPT_COLOUR = (0, 255, 0)
KEPT_ALPHA = 0.45
DROPPED_DIM = 0.35
HEAT_ALPHA = 0.6
_FRAME_WORD = {"visual": "frame", "audio": "chunk"}


# -- capture --------------------------------------------------------------------------------------


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_target(path) as tmp, open(tmp, "xb") as fh:
        np.save(fh, array)


def _dense_maps(probs: Tensor, keep: Tensor, sites: SparseMap) -> dict[str, Tensor]:
    """(N,) per-site values on the sites' coordinates → (F, H, W) maps on the CPU."""
    h, w = sites.spatial_shape
    c = sites.coords.long().cpu()
    where = (c[:, 0], c[:, 1], c[:, 2])
    prob_map = torch.zeros(sites.num_samples, h, w)
    prob_map[where] = probs.detach().float().cpu()
    kept = torch.zeros(sites.num_samples, h, w, dtype=torch.bool)
    kept[where] = keep.detach().cpu()
    scored = torch.zeros(sites.num_samples, h, w, dtype=torch.bool)
    scored[where] = True
    return {"probs": prob_map, "kept": kept, "scored": scored}


@contextmanager
def _recording(model: EmotionModel) -> Iterator[dict[str, dict[int, dict[str, Tensor]]]]:
    """Inside the block, every forward pass of `model` records its attention layers' dense maps
    into the yielded {"visual"|"audio": {layer index: {"probs", "kept", "scored"}}} (see
    :func:`capture_attention`); the hooks are removed on leaving."""
    layers = model.attention_layers()
    if not layers:
        raise UsageError("attention maps need a MESM model: FE2E has no cross-modal attention")
    store: dict[str, dict[int, dict[str, Tensor]]] = {name: {} for name in layers}
    handles = []
    for name, group in layers.items():
        for index, attention in enumerate(group):

            def hook(module, args, output, name=name, index=index):
                probs, keep, sites = args
                store[name][index] = _dense_maps(probs, keep, sites)

            handles.append(attention.capture.register_forward_hook(hook))
    try:
        yield store
    finally:
        for handle in handles:
            handle.remove()


@torch.inference_mode()
def forward_capture(model: EmotionModel, batch: Mapping[str, Any]) -> tuple[dict, Tensor]:
    """One forward pass of `batch`: (the maps :func:`capture_attention` returns, the logits)."""
    with _recording(model) as store:
        logits = model(**model_inputs(model, dict(batch)))
    return store, logits


def capture_attention(
    model: EmotionModel, batch: Mapping[str, Any]
) -> dict[str, dict[int, dict[str, Tensor]]]:
    """Attention probabilities and kept sites of every sparse layer, from one forward pass.

    Args:
        model: MESM in eval mode (its current p is used).
        batch: a Batch dict (faces, face_lengths, specs, spec_lengths, text_ids, text_mask).

    Returns:
        {"visual"|"audio": {layer index: {"probs": (F, H, W) float, 0 where not scored;
        "kept": (F, H, W) bool; "scored": (F, H, W) bool}}}, F the frames (chunks) of the whole
        batch, (H, W) the map size the layer scores (halved by each stage before it).
    """
    return forward_capture(model, batch)[0]


# -- images ---------------------------------------------------------------------------------------
def _upsample(grid: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(h, w) site map → (H, W) pixels, each site covering an (H/h, W/w) block."""
    fy, fx = shape[0] // grid.shape[0], shape[1] // grid.shape[1]
    return np.repeat(np.repeat(grid, fy, axis=0), fx, axis=1)


def _magnify(image: np.ndarray, scale: int) -> np.ndarray:
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)


def kept_overlay(base: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Kept sites tinted, the rest darkened.

    Args:
        base: (H, W, 3) uint8 input image.
        kept: (h, w) bool site map (h, w divide H, W).

    Returns:
        (H, W, 3) uint8.
    """
    mask = _upsample(kept, base.shape[:2])[..., None]
    image = base.astype(np.float64)
    tint = (1 - KEPT_ALPHA) * image + KEPT_ALPHA * np.array(KEPT_COLOUR, dtype=np.float64)
    return np.where(mask, tint, DROPPED_DIM * image).round().clip(0, 255).astype(np.uint8)


def heat_overlay(base: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """The frame's probabilities (scaled by their maximum) as a colour map over the input.

    Args:
        base: (H, W, 3) uint8 input image.
        probs: (h, w) probabilities, 0 where not scored.

    Returns:
        (H, W, 3) uint8.
    """
    from matplotlib import colormaps

    peak = float(probs.max())
    scaled = probs / peak if peak > 0 else probs
    heat = colormaps["inferno"](_upsample(scaled, base.shape[:2]))[..., :3] * 255
    image = (1 - HEAT_ALPHA) * base.astype(np.float64) + HEAT_ALPHA * heat
    return image.round().clip(0, 255).astype(np.uint8)


def _face_images(batch: Mapping[str, Any], faces_uint8: Tensor | None) -> np.ndarray:
    """(T, H, W, 3) uint8 face crops, from the cache's uint8 or by undoing the normalisation."""
    if faces_uint8 is None:
        mean = torch.tensor(FACE_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(FACE_STD).view(1, 3, 1, 1)
        faces_uint8 = (batch["faces"].float().cpu() * std + mean).round().clamp(0, 255)
    return faces_uint8.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def _chunk_images(batch: Mapping[str, Any]) -> np.ndarray:
    """(S, 128, 32, 3) uint8 grey mel chunks: log power, min-max per chunk (rows as stored)."""
    specs = batch["specs"].float().cpu()[:, 0]  # (S, n_mels, frames)
    if specs.numel() and bool((specs >= 0).all()):  # power mel: show it in log scale
        specs = torch.log(specs.clamp_min(1e-6))
    lo = specs.amin(dim=(1, 2), keepdim=True)
    hi = specs.amax(dim=(1, 2), keepdim=True)
    grey = ((specs - lo) / (hi - lo).clamp_min(1e-12) * 255).round().to(torch.uint8)
    return grey[..., None].expand(*grey.shape, 3).numpy()


def _save_png(path: Path, image: np.ndarray) -> None:
    from matplotlib.image import imsave

    path.parent.mkdir(parents=True, exist_ok=True)
    imsave(path, image)


def _frame_indices(count: int, limit: int | None) -> list[int]:
    """All frames, or `limit` of them spread evenly (first and last included)."""
    if limit is None or count <= limit:
        return list(range(count))
    return sorted({round(i * (count - 1) / max(1, limit - 1)) for i in range(limit)})


def _overview(
    panels: dict[str, list[tuple[str, list[np.ndarray]]]], path: Path, title: str
) -> None:
    """One grid per pathway, side by side: rows (input, then attention/kept per layer) x frames."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown = {k: v for k, v in panels.items() if v and v[0][1]}
    rows = max((len(v) for v in shown.values()), default=1)
    # Columns of equal row height (a 128x32 chunk is a quarter as wide as a square face), plus
    # room for the row labels and the title of each grid.
    widths = {
        k: max(1.4, 0.5 + len(v[0][1]) * v[0][1][0].shape[1] / v[0][1][0].shape[0])
        for k, v in shown.items()
    }
    fig = Figure(
        figsize=(0.4 + 1.05 * sum(widths.values()), 0.6 + 1.1 * rows),
        dpi=100,
        layout="constrained",
    )
    FigureCanvasAgg(fig)
    if shown:
        subfigs = fig.subfigures(1, len(shown), width_ratios=list(widths.values()), squeeze=False)
        for subfig, (name, grid) in zip(subfigs[0], shown.items(), strict=True):
            subfig.suptitle(name, fontsize="medium")
            cols = len(grid[0][1])
            axes = subfig.subplots(rows, cols, squeeze=False)
            for r, row_axes in enumerate(axes):
                for c, ax in enumerate(row_axes):
                    ax.set_xticks([])
                    ax.set_yticks([])
                    if r >= len(grid):
                        ax.set_axis_off()
                        continue
                    label, images = grid[r]
                    ax.imshow(images[c], interpolation="nearest")
                    if c == 0:
                        ax.set_ylabel(label, fontsize="x-small")
    fig.suptitle(title, fontsize="medium")
    with atomic_target(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png")


@torch.inference_mode()
def explain_batch(
    model: EmotionModel,
    batch: Mapping[str, Any],
    out_dir: str | os.PathLike,
    faces_uint8: Tensor | None = None,
    *,
    p: float | None = None,
    label_names: list[str] | tuple[str, ...] | None = None,
    scale: int = 4,
    max_frames: int | None = None,
    overview_columns: int = 8,
    sample_rate: int = 16000,
) -> dict[str, Any]:
    """Attention heat-maps and kept sites of one utterance, as PNGs plus ``attention.json``.

    Writes, for each pathway ("visual" faces, "audio" mel chunks) and sparse layer i:
    ``{pathway}/layer{i}/{frame|chunk}NNN_attention.png`` and ``..._kept.png`` (see the module
    docstring), ``{pathway}/layer{i}_kept.npy`` (F, h, w) bool and ``{pathway}/layer{i}_probs.npy``
    (F, h, w) float32; then ``overview.png`` (a grid of all of them) and ``attention.json``.

    Args:
        model: MESM in eval mode.
        batch: a Batch dict holding exactly one utterance (e.g. ``EmotionDataset.collate`` of one
            item, or whatever turns a raw clip into one).
        out_dir: output folder (created).
        faces_uint8: (T, 3, H, W) uint8 face crops to draw on; default: the batch's faces with the
            normalisation undone.
        p: run at this nucleus mass instead of the model's.
        label_names: K names for the prediction (default "0".."K-1").
        scale: each image pixel becomes a scale x scale block in the PNGs.
        max_frames: draw at most this many frames/chunks per pathway (spread evenly); the .npy
            masks always hold all of them.
        overview_columns: frames/chunks per pathway in ``overview.png``.
        sample_rate: the audio's sample rate (places the mel bands of "regions").

    Returns:
        The content of ``attention.json``: "id", "p", "gating", "prediction" {name: probability},
        "overlay" constants, "overview", and per pathway the frames and per layer "map_shape",
        "kept_fraction" (kept / all sites of the map), "kept_of_scored", "kept_per_frame",
        "kept_npy", "probs_npy" and "images" [{"index", "attention", "kept"}]; paths relative to
        `out_dir`; and "regions": each layer's attention, kept and area share per facial region
        (when the batch has the faces' landmarks) and mel band (see
        :func:`mesm.analysis.region_report.clip_regions`).
    """
    num = int(batch["text_ids"].shape[0]) if "text_ids" in batch else 0
    if num != 1:
        raise ValueError(f"explain needs a batch of exactly one utterance, got {num}")
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with model.using_p(p):
        maps, logits = forward_capture(model, batch)
        used_p = model.p
    names = list(label_names) if label_names else [str(k) for k in range(logits.shape[1])]
    probs = torch.sigmoid(logits[0].float()).tolist()
    bases = _base_images(maps, batch, faces_uint8)
    report: dict[str, Any] = {
        "id": (batch.get("ids") or [None])[0],
        "p": used_p,
        "gating": model.config.gating,
        "prediction": dict(zip(names, probs, strict=True)),
        "overlay": _overlay_constants(scale),
        "overview": "overview.png",
        "pathways": {},
    }
    panels: dict[str, list[tuple[str, list[np.ndarray]]]] = {}
    for name, layers in maps.items():
        images = bases[name]
        word = _FRAME_WORD[name]
        in_overview = _frame_indices(len(images), overview_columns)
        show = _flipped if name == "audio" else _as_is  # audio: low frequencies at the bottom
        rows = [("input", [show(images[t]) for t in in_overview])]
        entries = []
        for index in sorted(layers):
            entry, heat, keep = _draw_layer(
                out, name, index, layers[index], images, show, scale, max_frames
            )
            entries.append(entry)
            rows.append((f"layer {index}\nattention", [heat[t] for t in in_overview]))
            rows.append((f"layer {index}\nkept", [keep[t] for t in in_overview]))
        report["pathways"][name] = {"frames": len(images), "layers": entries}
        panels[f"{name} ({len(images)} {word}s)"] = rows
    top = max(range(len(names)), key=lambda k: probs[k])
    title = (
        f"{report['id'] or 'utterance'}: p = {used_p:g}, "
        f"top emotion {names[top]} ({probs[top]:.2f})"
    )
    _overview(panels, out / "overview.png", title)
    report["regions"] = _regions(maps, batch, names, sample_rate)
    atomic_write_json(out / "attention.json", report)
    return report


def _regions(
    maps: Mapping[str, Any], batch: Mapping[str, Any], names: list[str], sample_rate: int
) -> dict[str, Any]:
    """Region and band shares of the captured maps (faces only where landmarks are known)."""
    from mesm.analysis.region_report import clip_regions
    from mesm.analysis.regions import band_rows

    item = {"faces": batch["faces"], "specs": batch["specs"]}
    shown = dict(maps)
    if "landmarks" in batch:
        item["landmarks"] = batch["landmarks"]
    else:
        shown.pop("visual", None)
    rows = band_rows(int(batch["specs"].shape[2]), sample_rate)
    return clip_regions(shown, item, names, rows)


def _base_images(
    maps: Mapping[str, Any], batch: Mapping[str, Any], faces_uint8: Tensor | None
) -> dict[str, list[np.ndarray]]:
    """The images each captured pathway is drawn over: its faces, or its mel chunks."""
    bases = {}
    if "visual" in maps:
        bases["visual"] = _face_images(batch, faces_uint8)
    if "audio" in maps:
        bases["audio"] = _chunk_images(batch)
    return bases


def _overlay_constants(scale: int) -> dict[str, Any]:
    return {
        "kept_colour": list(KEPT_COLOUR),
        "kept_alpha": KEPT_ALPHA,
        "dropped_dim": DROPPED_DIM,
        "heat_alpha": HEAT_ALPHA,
        "scale": scale,
        "audio_flipped_vertically": True,
    }


def _flipped(a: np.ndarray) -> np.ndarray:
    return a[::-1]


def _as_is(a: np.ndarray) -> np.ndarray:
    return a


def _draw_layer(
    out: Path,
    name: str,
    index: int,
    layer: dict[str, Tensor],
    images: list[np.ndarray],
    show: Any,
    scale: int,
    max_frames: int | None,
) -> tuple[dict[str, Any], dict[int, np.ndarray], dict[int, np.ndarray]]:
    """One sparse layer of one pathway: its masks (.npy) and drawn frames (PNG) under `out`.

    Returns:
        (its ``attention.json`` entry, the heat overlay and the kept overlay of every frame).
    """
    word = _FRAME_WORD[name]
    kept = layer["kept"].numpy()
    prob = layer["probs"].numpy()
    kept_npy = f"{name}/layer{index}_kept.npy"
    probs_npy = f"{name}/layer{index}_probs.npy"
    (out / name).mkdir(parents=True, exist_ok=True)
    _save_npy(out / kept_npy, kept)
    _save_npy(out / probs_npy, prob.astype(np.float32))
    heat = {t: heat_overlay(show(images[t]), show(prob[t])) for t in range(len(images))}
    keep = {t: kept_overlay(show(images[t]), show(kept[t])) for t in range(len(images))}
    files = []
    for t in _frame_indices(len(images), max_frames):
        stem = f"{name}/layer{index}/{word}{t:03d}"
        _save_png(out / f"{stem}_attention.png", _magnify(heat[t], scale))
        _save_png(out / f"{stem}_kept.png", _magnify(keep[t], scale))
        files.append({"index": t, "attention": f"{stem}_attention.png", "kept": f"{stem}_kept.png"})
    scored = int(layer["scored"].sum())
    entry = {
        "layer": index,
        "map_shape": list(kept.shape[1:]),
        "kept_fraction": float(kept.mean()) if kept.size else 0.0,
        "kept_of_scored": int(kept.sum()) / scored if scored else 0.0,
        "kept_per_frame": [int(v) for v in kept.sum(axis=(1, 2))],
        "kept_npy": kept_npy,
        "probs_npy": probs_npy,
        "images": files,
    }
    return entry, heat, keep


def explain(
    checkpoint: str | os.PathLike | EmotionModel | TrainedModel,
    source: Mapping[str, Any] | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    utterance_id: str | None = None,
    p: float | None = None,
    scale: int = 4,
    max_frames: int | None = None,
    precision: str | Precision = "auto",
) -> dict[str, Any]:
    """:func:`explain_batch` for a checkpoint and one utterance.

    Args:
        checkpoint: a MESM checkpoint, model folder or repo id (see
            :func:`~mesm.trained.checkpoint.load_model`), or a MESM model already loaded.
        source: a one-utterance Batch dict (e.g. made from a raw clip), or a prepared dataset
            folder (then `utterance_id` picks the utterance, from any split).
        out_dir: output folder.
        utterance_id: the utterance of the dataset folder.
        p: run at this nucleus mass instead of the checkpoint's.
        scale: PNG magnification.
        max_frames: draw at most this many frames/chunks per pathway.
        precision: run the model at this precision ("auto", "32", "bf16"; the probabilities
            drawn are float32 either way).

    Returns:
        The ``attention.json`` content (see :func:`explain_batch`).
    """
    trained = load_model(checkpoint)
    model = trained.model
    resolved = resolve_precision(precision, next(model.parameters()).device)
    faces_uint8 = None
    if isinstance(source, Mapping):
        batch = source
    else:
        if utterance_id is None:
            raise UsageError("explain on a dataset folder needs the utterance id")
        dataset = open_split(source, None, trained)
        try:
            index = dataset.ids.index(utterance_id)
        except ValueError:
            raise UsageError(f"{source}: no utterance {utterance_id!r}") from None
        item = dataset[index]
        batch = dataset.collate([item])
        faces_uint8 = item["faces"]  # the cache's own pixels, not a de-normalised copy
    with resolved.autocast():
        return explain_batch(
            model,
            batch,
            out_dir,
            faces_uint8,
            p=p,
            label_names=trained.label_names,
            scale=scale,
            max_frames=max_frames,
            sample_rate=trained.settings.sample_rate,
        )
