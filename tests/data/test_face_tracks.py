"""Face tracks (`mesm.data.media.tracks`): detections linked across frames by the documented
rule, on hand-made detections."""

from __future__ import annotations

import numpy as np
import pytest

from mesm.data.media.tracks import TrackRule, link_tracks


def _detections(faces: list[list[tuple[float, float, float]]]) -> tuple[np.ndarray, np.ndarray]:
    """Rows of (D, 15) from per-frame lists of (centre x, centre y, width), largest first."""
    rows, frames = [], []
    for frame, seen in enumerate(faces):
        for cx, cy, w in sorted(seen, key=lambda f: -f[2]):
            row = np.zeros(15)
            row[:4] = (cx - w / 2, cy - w / 2, cx + w / 2, cy + w / 2)
            row[4] = 0.99
            row[5:] = np.tile((cx, cy), 5)
            rows.append(row)
            frames.append(frame)
    return np.asarray(rows).reshape(-1, 15), np.asarray(frames, dtype=np.int64)


def _track_of(ids: np.ndarray, frames: np.ndarray, detections: np.ndarray, x: float) -> list:
    """The track id of the detection centred nearest x in each frame."""
    centres = (detections[:, 0] + detections[:, 2]) / 2
    out = []
    for frame in np.unique(frames):
        rows = np.flatnonzero(frames == frame)
        out.append(int(ids[rows[np.abs(centres[rows] - x).argmin()]]))
    return out


def test_two_still_faces_give_two_tracks_numbered_by_first_appearance():
    det, frames = _detections([[(50, 50, 40), (150, 50, 30)]] * 5)
    ids = link_tracks(det, frames)
    assert ids.tolist() == [0, 1] * 5  # the larger face came first in frame 0


def test_a_face_missing_for_one_frame_keeps_its_track():
    seen = [[(50, 50, 40), (150 + 3 * i, 50, 30)] for i in range(6)]
    seen[2] = [(50, 50, 40)]  # the right face is not detected in frame 2
    det, frames = _detections(seen)
    ids = link_tracks(det, frames)
    right = [ids[r] for r in range(len(ids)) if det[r, 0] > 100]
    left = [ids[r] for r in range(len(ids)) if det[r, 0] < 100]
    assert set(right) == {1} and set(left) == {0}
    assert len(right) == 5


def test_a_face_gone_longer_than_the_gap_starts_a_new_track():
    seen = [[(50, 50, 40), (150, 50, 30)] for _ in range(6)]
    seen[2] = seen[3] = [(50, 50, 40)]  # gone for two frames (max_gap is 1)
    det, frames = _detections(seen)
    ids = link_tracks(det, frames)
    right = [int(ids[r]) for r in range(len(ids)) if det[r, 0] > 100]
    assert right == [1, 1, 2, 2]
    # With a longer allowed gap it continues.
    ids = link_tracks(det, frames, TrackRule(max_gap=2))
    assert {int(ids[r]) for r in range(len(ids)) if det[r, 0] > 100} == {1}


@pytest.mark.parametrize("sizes", [(40, 40), (44, 36)])
def test_two_faces_crossing_keep_their_identities(sizes):
    # A moves right and B left at 20 px per frame; they pass each other between frames 2 and 3
    # (and are 4 px apart in frame 2 and 3): the prediction carries each past the other.
    seen = []
    for i in range(7):
        a, b = 38 + 20 * i, 142 - 20 * i
        seen.append([(a, 60, sizes[0]), (b, 62, sizes[1])])
    det, frames = _detections(seen)
    ids = link_tracks(det, frames)
    centres = (det[:, 0] + det[:, 2]) / 2
    a_track = {int(ids[r]) for r in range(len(ids)) if np.isclose(centres[r], 38 + 20 * frames[r])}
    b_track = {int(ids[r]) for r in range(len(ids)) if np.isclose(centres[r], 142 - 20 * frames[r])}
    assert len(a_track) == 1 and len(b_track) == 1 and a_track != b_track


def test_a_cut_starts_new_tracks():
    seen = [[(50, 50, 40)]] * 3 + [[(250, 150, 40)]] * 3  # the camera cuts to another shot
    det, frames = _detections(seen)
    assert link_tracks(det, frames).tolist() == [0, 0, 0, 1, 1, 1]


def test_a_face_that_jumps_in_size_is_another_face():
    det, frames = _detections([[(50, 50, 40)], [(52, 50, 90)]])
    assert link_tracks(det, frames).tolist() == [0, 1]


def test_no_detections_and_bad_input():
    assert link_tracks(np.zeros((0, 15)), np.zeros(0, np.int64)).tolist() == []
    with pytest.raises(ValueError, match="frame order"):
        link_tracks(np.zeros((2, 15)), np.array([1, 0]))
