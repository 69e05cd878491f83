"""Facial regions from five landmarks, mel bands, FACS target regions, and per-frame shares.

The array-level half of ``mesm explain --regions`` (:mod:`mesm.analysis.region_report`
runs it over a dataset split). Everything here works on arrays on the CPU and has no model in it.

**Regions of a face.** MTCNN gives five points per face (both eyes, the nose tip, both mouth
corners). A face frame is built from them: the origin is the midpoint of the eyes, ``u`` runs
from one eye to the other, ``v`` is perpendicular to it and points to the mouth, and ``d`` (the
distance between the eyes) is the unit. Each region is one or two ellipses with axes along ``u``
and ``v`` (sizes in ``d``; see :data:`REGION_GEOMETRY`); a pixel belongs to the first region in
:data:`REGIONS` order whose ellipse holds its centre, and every pixel of the crop that no ellipse
holds is ``rest``. The regions follow the landmarks, so a flipped face has flipped regions and a
tilted face tilted ones. A frame whose landmarks are missing (no face found: the centre-crop
fallback) has no regions: it is excluded and counted, never assigned a guess.

**FACS targets.** Each emotion's prototypical action units (EMFACS prototypes as tabulated in
Ekman, Friesen & Hager, *Facial Action Coding System: Investigator's Guide*, 2002: happiness
6+12, sadness 1+4+15, anger 4+5+7+23, disgust 9+15+16, surprise 1+2+5+26, fear
1+2+4+5+7+20+26), each action unit assigned to the region whose muscles produce it
(:data:`ACTION_UNITS`; this assignment is ours). Labels without a prototype (neutral,
frustration, excitement, ...) have no target: their shares are reported, their IoU is not.

**Shares.** For one frame (chunk) of one sparse layer: the attention share of a region is the
attention mass on its sites, the kept share the fraction of kept sites in it, and the area share
the fraction of scored sites in it (a site of a coarser map covers several pixels: it counts for
each region by the fraction of its pixels in that region). Enrichment is share / area: 1 where
attention is spread as the area is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mesm.data.media.audio import mel_edges

REGIONS = ("mouth", "nose", "eyes", "brows", "cheeks", "jaw", "rest")
"""Region names in priority order (a pixel in two ellipses belongs to the earlier one)."""

REGION_GEOMETRY = {
    "mouth": "ellipse on the mouth corners' midpoint: half-width half the corners' distance "
    "+ 0.15 d, half-height 0.22 d",
    "nose": "ellipse from 0.2 d below the eye line to 0.08 d below the nose tip, half-width 0.2 d",
    "eyes": "ellipse on each eye: half-width 0.3 d, half-height 0.18 d",
    "brows": "ellipse 0.38 d above each eye: half-width 0.36 d, half-height 0.14 d",
    "cheeks": "ellipse on each side, midway between the eye and the mouth corner of that side "
    "and 0.22 d further out: half-width 0.25 d, half-height 0.3 d",
    "jaw": "ellipse 0.42 d below the mouth corners' midpoint: half-width 0.5 d, half-height 0.22 d",
    "rest": "every other pixel of the crop",
}

ACTION_UNITS: dict[int, tuple[str, str]] = {
    1: ("inner brow raiser", "brows"),
    2: ("outer brow raiser", "brows"),
    4: ("brow lowerer", "brows"),
    5: ("upper lid raiser", "eyes"),
    6: ("cheek raiser", "cheeks"),
    7: ("lid tightener", "eyes"),
    9: ("nose wrinkler", "nose"),
    12: ("lip corner puller", "mouth"),
    15: ("lip corner depressor", "mouth"),
    16: ("lower lip depressor", "mouth"),
    20: ("lip stretcher", "mouth"),
    23: ("lip tightener", "mouth"),
    26: ("jaw drop", "jaw"),
}
"""FACS action unit → (its name, the region it moves)."""

PROTOTYPES: dict[str, tuple[int, ...]] = {
    "happiness": (6, 12),
    "sadness": (1, 4, 15),
    "anger": (4, 5, 7, 23),
    "disgust": (9, 15, 16),
    "surprise": (1, 2, 5, 26),
    "fear": (1, 2, 4, 5, 7, 20, 26),
}
"""EMFACS prototype action units per basic emotion (Ekman, Friesen & Hager, 2002)."""

FACS_SOURCE = (
    "EMFACS prototypes, Ekman, Friesen & Hager, Facial Action Coding System: Investigator's "
    "Guide (2002); action unit to region assignment: mesm"
)

_SYNONYMS = {
    "happy": "happiness",
    "happiness": "happiness",
    "joy": "happiness",
    "sad": "sadness",
    "sadness": "sadness",
    "angry": "anger",
    "anger": "anger",
    "disgust": "disgust",
    "disgusted": "disgust",
    "surprise": "surprise",
    "surprised": "surprise",
    "fear": "fear",
    "fearful": "fear",
    "afraid": "fear",
}

BANDS: tuple[tuple[str, float, float], ...] = (
    ("0-300 Hz (voicing)", 0.0, 300.0),
    ("300-1000 Hz (first formant)", 300.0, 1000.0),
    ("1000-2500 Hz (second formant)", 1000.0, 2500.0),
    ("2500-4000 Hz (upper formants)", 2500.0, 4000.0),
    ("4000+ Hz (fricatives)", 4000.0, float("inf")),
)
"""Mel-spectrogram bands: a mel bin belongs to the band holding its centre frequency."""


def facs_regions(label: str) -> tuple[str, ...]:
    """The regions of a label's FACS prototype (empty for labels without one, e.g. neutral)."""
    emotion = _SYNONYMS.get(label.strip().lower())
    if emotion is None:
        return ()
    return tuple(r for r in REGIONS if r in {ACTION_UNITS[au][1] for au in PROTOTYPES[emotion]})


# -- faces ----------------------------------------------------------------------------------------


@dataclass
class _FaceFrame:
    centre: np.ndarray  # (T, 2) eye midpoint
    u: np.ndarray  # (T, 2) unit vector from eye to eye
    v: np.ndarray  # (T, 2) unit vector perpendicular to u, towards the mouth
    d: np.ndarray  # (T,) eye distance


def _face_frame(points: np.ndarray) -> _FaceFrame:
    eye_a, eye_b = points[:, 0], points[:, 1]
    centre = (eye_a + eye_b) / 2
    across = eye_b - eye_a
    d = np.linalg.norm(across, axis=1)
    u = across / np.maximum(d, 1e-9)[:, None]
    perp = np.stack([-u[:, 1], u[:, 0]], axis=1)
    mouth = (points[:, 3] + points[:, 4]) / 2
    side = np.sign(((mouth - centre) * perp).sum(axis=1))
    v = perp * np.where(side == 0, 1.0, side)[:, None]
    return _FaceFrame(centre, u, v, d)


def _ellipse(
    along: np.ndarray,
    across: np.ndarray,
    frame: _FaceFrame,
    centre: np.ndarray,
    half_u: np.ndarray,
    half_v: np.ndarray,
) -> np.ndarray:
    """(T, H, W) bool: pixel centres inside ellipses with axes along each frame's u and v.

    Args:
        along: (T, H, W) each pixel centre's coordinate along u (p · u).
        across: (T, H, W) the same along v.
        frame: the faces' frames.
        centre: (T, 2) the ellipses' centres.
        half_u: (T,) half-axis along u.
        half_v: (T,) half-axis along v.
    """
    cu = (centre * frame.u).sum(axis=1)[:, None, None]
    cv = (centre * frame.v).sum(axis=1)[:, None, None]
    du = (along - cu) / half_u[:, None, None]
    dv = (across - cv) / half_v[:, None, None]
    return du * du + dv * dv <= 1.0


def _along(frame: _FaceFrame, point: np.ndarray) -> np.ndarray:
    """(T,) coordinate of points along u, from the eye midpoint."""
    return ((point - frame.centre) * frame.u).sum(axis=1)


def face_region_labels(landmarks: np.ndarray, size: int = 48) -> np.ndarray:
    """Each pixel's region, from the five landmarks of each face.

    Args:
        landmarks: (T, 5, 2) (x, y) in crop pixels: two eyes, nose tip, two mouth corners (in
            MTCNN's order; which eye or corner comes first does not matter); NaN where no face
            was found.
        size: the crop's side in pixels (pixel (i, j) covers [j, j+1) x [i, i+1)).

    Returns:
        (T, size, size) int8: the index in :data:`REGIONS` of each pixel, -1 for every pixel of
        a frame without landmarks (or with both eyes on one point).
    """
    points = np.asarray(landmarks, dtype=np.float64).reshape(-1, 5, 2)
    out = np.full((points.shape[0], size, size), -1, dtype=np.int8)
    valid = np.isfinite(points).all(axis=(1, 2))
    valid &= np.linalg.norm(np.nan_to_num(points[:, 1] - points[:, 0]), axis=1) > 1e-6
    if not valid.any():
        return out
    pts = points[valid]
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    f = _face_frame(pts)
    d = f.d
    ones = np.ones_like(d)
    # Every pixel centre in each face's frame, once: an ellipse test is then two subtractions.
    along = xs[None] * f.u[:, 0, None, None] + ys[None] * f.u[:, 1, None, None]
    across = xs[None] * f.v[:, 0, None, None] + ys[None] * f.v[:, 1, None, None]

    def at(centre, half_u, half_v):
        return _ellipse(along, across, f, centre, half_u * ones, half_v * ones)

    eyes_sorted = np.where((_along(f, pts[:, 0]) <= _along(f, pts[:, 1]))[:, None], 0, 1)
    mouth_sorted = np.where((_along(f, pts[:, 3]) <= _along(f, pts[:, 4]))[:, None], 3, 4)
    rows = np.arange(len(pts))
    first_eye, second_eye = pts[rows, eyes_sorted[:, 0]], pts[rows, 1 - eyes_sorted[:, 0]]
    first_corner = pts[rows, mouth_sorted[:, 0]]
    second_corner = pts[rows, 7 - mouth_sorted[:, 0]]
    mouth_centre = (pts[:, 3] + pts[:, 4]) / 2
    corner_gap = np.abs(_along(f, pts[:, 4]) - _along(f, pts[:, 3]))
    nose_top = f.centre + 0.2 * d[:, None] * f.v
    nose_tip = pts[:, 2] + 0.08 * d[:, None] * f.v
    nose_half = np.maximum(np.abs(((nose_tip - nose_top) * f.v).sum(axis=1)) / 2, 0.1 * d)
    up = -0.38 * d[:, None] * f.v
    out_u = 0.22 * d[:, None] * f.u
    masks = {
        "mouth": at(mouth_centre, corner_gap / 2 + 0.15 * d, 0.22 * d),
        "nose": at((nose_top + nose_tip) / 2, 0.2 * d, nose_half),
        "eyes": at(pts[:, 0], 0.3 * d, 0.18 * d) | at(pts[:, 1], 0.3 * d, 0.18 * d),
        "brows": at(pts[:, 0] + up, 0.36 * d, 0.14 * d) | at(pts[:, 1] + up, 0.36 * d, 0.14 * d),
        "cheeks": at((first_eye + first_corner) / 2 - out_u, 0.25 * d, 0.3 * d)
        | at((second_eye + second_corner) / 2 + out_u, 0.25 * d, 0.3 * d),
        "jaw": at(mouth_centre + 0.42 * d[:, None] * f.v, 0.5 * d, 0.22 * d),
    }
    labels = np.full((len(pts), size, size), REGIONS.index("rest"), dtype=np.int8)
    for name in reversed(REGIONS[:-1]):  # earlier regions are written last: they win
        labels[masks[name]] = REGIONS.index(name)
    out[valid] = labels
    return out


def site_fractions(labels: np.ndarray, shape: tuple[int, int], count: int) -> np.ndarray:
    """Per site of a coarser map, the fraction of its pixels in each of `count` labels.

    Args:
        labels: (T, H, W) int label per pixel, -1 where none (those pixels count for no label).
        shape: (h, w), dividing (H, W).
        count: the number of labels.

    Returns:
        (T, count, h, w) float32, summing to 1 over labels where every pixel has one.
    """
    return pool_fractions(one_hot(labels, count), shape)


def one_hot(labels: np.ndarray, count: int) -> np.ndarray:
    """(T, H, W) int labels (-1: none) → (T, count, H, W) float32 0/1."""
    return (labels[:, None] == np.arange(count)[None, :, None, None]).astype(np.float32)


def pool_fractions(onehot: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(T, R, H, W) per-pixel membership → (T, R, h, w) fraction of each site's pixels."""
    t, count, big_h, big_w = onehot.shape
    h, w = shape
    if big_h % h or big_w % w:
        raise ValueError(f"map {shape} does not divide the {big_h}x{big_w} pixels")
    if (h, w) == (big_h, big_w):
        return onehot
    # Average pooling in C++: numpy's strided mean is ~10x slower here.
    pixels = torch.from_numpy(np.ascontiguousarray(onehot, dtype=np.float32))
    pooled = torch.nn.functional.avg_pool2d(
        pixels.view(t * count, 1, big_h, big_w), (big_h // h, big_w // w)
    )
    return pooled.view(t, count, h, w).numpy()


# -- mel bands ------------------------------------------------------------------------------------


def mel_centres(n_mels: int, sample_rate: int, f_min: float = 0.0) -> np.ndarray:
    """(n_mels,) centre frequency in Hz of each mel filter of `mesm.data.media.audio` (HTK
    scale, f_max = sample_rate / 2)."""
    return mel_edges(n_mels, sample_rate, f_min)[1:-1].numpy()


def band_rows(n_mels: int, sample_rate: int) -> np.ndarray:
    """(n_mels,) int8: the index in :data:`BANDS` of each mel row (row 0 = lowest frequency)."""
    centres = mel_centres(n_mels, sample_rate)
    out = np.zeros(n_mels, dtype=np.int8)
    for i, (_, lo, hi) in enumerate(BANDS):
        out[(centres >= lo) & (centres < hi)] = i
    return out


def band_labels(rows: np.ndarray, frames: int, chunk_frames: int) -> np.ndarray:
    """(frames, n_mels, chunk_frames) int8 band label of every mel-chunk pixel."""
    return np.broadcast_to(rows[None, :, None], (frames, rows.shape[0], chunk_frames)).copy()


# -- speech and non-speech frames -----------------------------------------------------------------

SPEECH = ("speech", "non-speech", "padding")
"""Labels of mel frames by voice activity (Silero VAD, as the whole-video path); "padding" is
the zero-padded tail of an utterance's last chunk."""


def speech_frame_labels(
    window_probs: np.ndarray,
    window_seconds: float,
    *,
    samples: int,
    sample_rate: int,
    hop_length: int,
    chunks: int,
    chunk_frames: int,
    n_mels: int,
    threshold: float = 0.5,
) -> np.ndarray:
    """Speech (0), non-speech (1) or padding (2) for every pixel of an utterance's mel chunks.

    A mel frame (centred on sample ``j * hop_length``) takes the label of the VAD window holding
    its centre: speech where that window's probability is >= `threshold` (the whole-video path's
    default). Frames past the end of the audio (the last chunk's zero padding) are padding.
    Without probabilities (audio that could not be read) every frame is -1: no label.

    Args:
        window_probs: (W,) speech probability of each VAD window from the first sample.
        window_seconds: the VAD window's length.
        samples: the utterance's samples at `sample_rate` (the mel's rate).
        sample_rate: the mel-spectrogram's sample rate.
        hop_length: the mel-spectrogram's hop in samples.
        chunks: S, the cached chunks (S, 1, n_mels, chunk_frames).
        chunk_frames: mel frames per chunk.
        n_mels: mel rows per chunk.
        threshold: speech probability threshold.

    Returns:
        (chunks, n_mels, chunk_frames) int8.
    """
    total = chunks * chunk_frames
    frames = np.arange(total)
    labels = np.full(total, -1, dtype=np.int8)
    if len(window_probs):
        seconds = frames * hop_length / sample_rate
        window = np.minimum((seconds / window_seconds).astype(np.int64), len(window_probs) - 1)
        labels = np.where(window_probs[window] >= threshold, 0, 1).astype(np.int8)
        labels[frames >= 1 + samples // hop_length] = 2
    per_chunk = labels.reshape(chunks, 1, chunk_frames)
    return np.broadcast_to(per_chunk, (chunks, n_mels, chunk_frames)).copy()


def row_names(pathway: str) -> list[str]:
    """The region names of a pathway's rows: facial regions, mel bands, or speech labels."""
    if pathway == "visual":
        return list(REGIONS)
    if pathway == "speech":
        return list(SPEECH)
    return [b[0] for b in BANDS]


# -- shares of one frame --------------------------------------------------------------------------


def frame_shares(
    probs: np.ndarray,
    kept: np.ndarray,
    scored: np.ndarray,
    fractions: np.ndarray,
    targets: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Attention, kept and area share of each region, per frame; IoU and pointing per target.

    Args:
        probs: (F, h, w) attention probabilities (0 where not scored); each frame sums to 1.
        kept: (F, h, w) bool kept sites.
        scored: (F, h, w) bool sites the layer scored (kept ⊆ scored).
        fractions: (F, R, h, w) fraction of each site in each region.
        targets: (E, R) 0/1, the regions of each of E targets (FACS emotions); None: none.

    Returns:
        "attention", "kept", "area": (F, R) shares (NaN for a frame with no mass, kept or
        scored site); "iou": (F, E) soft IoU of the kept sites with each target's sites (the
        sites weighted by their fraction inside the target, among scored sites); "pointing":
        (F, E) 1 where the frame's most attended site lies mostly (>= half) inside the target.
    """
    p = probs.astype(np.float64)
    k = kept.astype(np.float64)
    s = scored.astype(np.float64)
    fr = fractions.astype(np.float64)

    def share(weights):
        total = weights.sum(axis=(1, 2))
        part = np.einsum("fhw,frhw->fr", weights, fr)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total[:, None] > 0, part / total[:, None], np.nan)

    out = {"attention": share(p), "kept": share(k), "area": share(s)}
    if targets is None:
        targets = np.zeros((0, fr.shape[1]))
    inside = np.einsum("er,frhw->fehw", targets.astype(np.float64), fr) * s[:, None]
    both = (inside * k[:, None]).sum(axis=(2, 3))
    union = k.sum(axis=(1, 2))[:, None] + inside.sum(axis=(2, 3)) - both
    with np.errstate(invalid="ignore", divide="ignore"):
        out["iou"] = np.where(union > 0, both / union, np.nan)
    flat = p.reshape(p.shape[0], -1).argmax(axis=1)
    sites = inside.reshape(inside.shape[0], inside.shape[1], probs[0].size)
    top = sites[np.arange(len(flat))[:, None], np.arange(sites.shape[1])[None, :], flat[:, None]]
    out["pointing"] = (top >= 0.5).astype(np.float64)
    return out
