"""The demo corpus: a valid dataset folder whose cues follow the documented design."""

from __future__ import annotations

import numpy as np
import pytest

from mesm.data.manifest import read_dataset
from mesm.demo.corpus import (
    EMOTIONS,
    _face,
    _openings,
    _second_photo,
    _voice,
    write_demo_corpus,
)


def test_corpus_is_a_valid_balanced_dataset(tmp_path):
    _, records = write_demo_corpus(tmp_path, 12, seed=1)
    header, read = read_dataset(tmp_path)
    assert header.label_names == EMOTIONS and header.task == "single_label"
    assert [r.id for r in read] == [r.id for r in records]
    counts = {e: sum(r.labels == (e,) for r in records) for e in EMOTIONS}
    assert counts == dict.fromkeys(EMOTIONS, 3)
    assert [r.split for r in records].count("train") == 7  # 60 % of 12, rounded
    assert sum(r.audio is None for r in records) == 6  # half carry their own audio track
    with pytest.raises(ValueError, match="noise"):
        write_demo_corpus(tmp_path / "x", 4, noise=1.0)


def _mouth_drop(landmarks: np.ndarray) -> float:
    """Mouth corners' distance below the eye line, in inter-ocular distances (pose-free)."""
    eye_l, eye_r, _, mouth_l, mouth_r = landmarks
    axis = (eye_r - eye_l) / np.linalg.norm(eye_r - eye_l)
    down = np.array([-axis[1], axis[0]])  # perpendicular to the eye line, pointing to the chin
    corners = (mouth_l + mouth_r) / 2 - (eye_l + eye_r) / 2
    return float(corners @ down / np.linalg.norm(eye_r - eye_l))


@pytest.mark.usefixtures("one_thread")
def test_mtcnn_finds_the_real_face_and_the_expression_moves_the_mouth():
    import torch

    from mesm.data.media.mtcnn import MTCNN

    rng = np.random.default_rng(0)
    detector = MTCNN(min_face_size=20)
    found, frames = 0, 0
    drop: dict[float, list[float]] = {1.0: [], 0.0: [], -1.0: []}
    for k in range(8):
        for expression in drop:
            # Both faces of the corpus, closed (k even) or talking (k odd, mouth open 0..1).
            photo = _second_photo() if k % 4 >= 2 else None
            openings = np.linspace(0, 1, 4) if k % 2 else None
            clip = _face(expression, 4, rng, photo=photo, openings=openings)
            faces = detector.detect(torch.from_numpy(clip))
            frames += len(clip)
            found += sum(len(f.boxes) > 0 for f in faces)
            drop[expression] += [_mouth_drop(f.landmarks[0]) for f in faces if len(f.boxes)]
    assert found / frames >= 0.95, (found, frames)
    mean = {e: float(np.mean(v)) for e, v in drop.items()}
    # Smile: corners highest; frown: lowest (the photo itself smiles, "flat" lowers it).
    assert mean[1.0] < mean[0.0] < mean[-1.0], mean


def test_a_talking_face_opens_its_mouth_with_the_voice_and_closed_is_the_still_face():
    rng = np.random.default_rng(5)
    loud_then_silent = np.concatenate([_voice(True, 0.5, rng), np.zeros(8000, np.float32)])
    openings = _openings(loud_then_silent, 10)
    assert openings[:5].mean() > 0.5 and openings[6:].max() < 0.05  # syllables, silence
    still = _face(1.0, 3, np.random.default_rng(2))
    closed = _face(1.0, 3, np.random.default_rng(2), openings=np.zeros(3))
    np.testing.assert_array_equal(still, closed)
    talking = _face(1.0, 3, np.random.default_rng(2), openings=np.array([0.0, 1.0, 0.0]))
    np.testing.assert_array_equal(talking[[0, 2]], still[[0, 2]])
    moved = np.abs(talking[1].astype(int) - still[1].astype(int)).sum(axis=-1)
    rows = np.nonzero(moved > 40)[0]
    assert rows.size and rows.min() > 40  # only below the eyes (at row ~39): mouth and chin


def test_the_face_alone_cannot_tell_anger_from_neutral():
    """The visual cue is one of three expressions; anger and neutral share one."""
    from mesm.demo.corpus import _MOUTH

    assert _MOUTH["anger"] == _MOUTH["neutral"] != _MOUTH["happiness"] != _MOUTH["sadness"]
    a = _face(_MOUTH["anger"], 2, np.random.default_rng(3))
    n = _face(_MOUTH["neutral"], 2, np.random.default_rng(3))
    np.testing.assert_array_equal(a, n)  # same draw of pose and lighting: the same pixels


def test_voice_prosody_follows_arousal():
    rng = np.random.default_rng(0)
    loud = _voice(True, 1.0, rng)
    soft = _voice(False, 1.0, rng)
    assert np.sqrt((loud**2).mean()) > 2 * np.sqrt((soft**2).mean())
