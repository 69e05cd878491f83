"""Face tracks: the faces MTCNN found in the sampled frames of one utterance, linked across frames.

A pure function of a cache entry's ``detections`` (D, 15) and ``detection_frames`` (D,), so tracks
are never stored: any entry can be tracked again, and the same detections always give the same
tracks. Frames are taken in order; each live track predicts where its face is now and the
detections of the frame are assigned to tracks in one optimal assignment
(`scipy.optimize.linear_sum_assignment`, the Hungarian method). The rule:

* **Prediction**: a track's face is expected at its last box moved by its velocity (the change
  of box centre per frame between its last two detections; zero for a track seen once),
  scaled to its last box's size.
* **Gate**: a detection may join a track only if the distance between its centre and the
  predicted centre is below ``max_distance`` times the track's box width, and the two box widths
  differ by less than a factor ``max_size_ratio``. The cost of a pair is that normalised distance
  plus ``|log(width ratio)|``; pairs outside the gate are never made.
* **Missing frames**: a track not matched in a frame stays alive for ``max_gap`` frames (a face
  the detector missed once, or hidden for a moment) and continues when its face comes back near
  where it is predicted; after that it ends, and a face seen again later starts a new track.
* **Crossings**: two faces passing each other keep their identities as long as they keep their
  speed through the crossing (the prediction carries each one past the other); faces that meet
  and turn back within one sampled frame, or one face hiding the other for longer than
  ``max_gap`` frames, may swap or restart (a new track id), never merge: one detection joins at
  most one track and one track takes at most one detection per frame.
* **Cuts and faces leaving the shot**: a face that jumps further than the gate (a cut to another
  camera) or leaves the frame starts a new track when it is seen again.
* **Ties**: tracks are numbered in order of their first detection (frame, then MTCNN's order,
  largest face first); the assignment is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BOX = slice(0, 4)
SCORE = 4
EYES = slice(5, 9)  # x, y of the left and right eye in a detection row
MOUTH = slice(11, 15)  # x, y of the left and right mouth corners in a detection row


@dataclass(frozen=True)
class TrackRule:
    """How detections are linked (see the module docstring).

    Attributes:
        max_distance: the gate on centre distance, in widths of the track's last box.
        max_size_ratio: the gate on the ratio of box widths.
        max_gap: frames a track may go unmatched and still continue.
    """

    max_distance: float = 0.8
    max_size_ratio: float = 1.6
    max_gap: int = 1


@dataclass
class _Live:
    track: int
    frame: int
    box: np.ndarray
    velocity: np.ndarray


def link_tracks(
    detections: np.ndarray, detection_frames: np.ndarray, rule: TrackRule | None = None
) -> np.ndarray:
    """The track of every detection.

    Args:
        detections: (D, 15) box (x1, y1, x2, y2), score, five landmarks (x, y), in frame pixels.
        detection_frames: (D,) int, the frame of each detection (non-decreasing).
        rule: the linking rule (default: `TrackRule()`).

    Returns:
        (D,) int64 track ids 0, 1, … in order of first appearance.
    """
    from scipy.optimize import linear_sum_assignment

    rule = rule or TrackRule()
    detections = np.asarray(detections, dtype=np.float64).reshape(-1, 15)
    frames = np.asarray(detection_frames, dtype=np.int64).reshape(-1)
    if len(frames) != len(detections):
        raise ValueError(f"{len(detections)} detections but {len(frames)} detection frames")
    if np.any(np.diff(frames) < 0):
        raise ValueError("detection_frames must be in frame order")
    ids = np.full(len(frames), -1, dtype=np.int64)
    live: list[_Live] = []
    next_id = 0
    for frame in np.unique(frames):
        rows = np.flatnonzero(frames == frame)
        live = [t for t in live if frame - t.frame <= rule.max_gap + 1]
        cost = _costs(live, detections[rows, BOX], frame, rule)
        matched: set[int] = set()
        if live and len(rows):
            # Gate-failing pairs cost more than any set of allowed ones; dropped after solving.
            solvable = np.where(np.isfinite(cost), cost, 1e6)
            for a, b in zip(*linear_sum_assignment(solvable), strict=True):
                if np.isfinite(cost[a, b]):
                    _extend(live[a], detections[rows[b], BOX], frame)
                    ids[rows[b]] = live[a].track
                    matched.add(b)
        for b, row in enumerate(rows):
            if b not in matched:
                box = detections[row, BOX]
                live.append(_Live(next_id, int(frame), box, np.zeros(2)))
                ids[row] = next_id
                next_id += 1
    return ids


def _centre(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def _width(box: np.ndarray) -> float:
    return max(float(box[2] - box[0]), 1e-6)


def _costs(live: list[_Live], boxes: np.ndarray, frame: int, rule: TrackRule) -> np.ndarray:
    """(tracks, detections) cost; inf outside the gate."""
    cost = np.full((len(live), len(boxes)), np.inf)
    for a, track in enumerate(live):
        expected = _centre(track.box) + track.velocity * (frame - track.frame)
        width = _width(track.box)
        for b, box in enumerate(boxes):
            distance = float(np.linalg.norm(_centre(box) - expected)) / width
            size = abs(np.log(_width(box) / width))
            if distance < rule.max_distance and size < np.log(rule.max_size_ratio):
                cost[a, b] = distance + size
    return cost


def _extend(track: _Live, box: np.ndarray, frame: int) -> None:
    track.velocity = (_centre(box) - _centre(track.box)) / max(frame - track.frame, 1)
    track.box, track.frame = box, frame
