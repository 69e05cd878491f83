"""The demo corpus: a valid dataset folder whose cues follow the documented design."""

from __future__ import annotations

import numpy as np
import pytest

from mesm.data.demo_corpus import EMOTIONS, _face, _voice, write_demo_corpus
from mesm.data.manifest import read_dataset


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


def test_cues_separate_what_the_design_says():
    rng = np.random.default_rng(0)
    mouth_row = {}
    for expression in (1.0, 0.0, -1.0):
        frame = _face(expression, 1, rng)[0].astype(float)
        red = (frame[..., 0] > 120) & (frame[..., 1] < 80)  # the mouth's colour
        rows = np.nonzero(red)[0]
        # Centre column minus corners: a smile's middle sits below its corners.
        centre = rows[np.abs(np.nonzero(red)[1] - 48) < 3].mean()
        corners = rows[np.abs(np.nonzero(red)[1] - 48) > 8].mean()
        mouth_row[expression] = centre - corners
    assert mouth_row[1.0] > 2 and abs(mouth_row[0.0]) < 2 and mouth_row[-1.0] < -2
    loud = _voice(True, 1.0, rng)
    soft = _voice(False, 1.0, rng)
    assert np.sqrt((loud**2).mean()) > 2 * np.sqrt((soft**2).mean())
