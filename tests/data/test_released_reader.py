"""The authors' processed data through the restricted unpickler."""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from mesm.data.errors import DataError
from mesm.data.manifest import read_dataset
from mesm.data.media.cache import FeatureCache
from mesm.data.media.preprocess import preprocess_dataset
from mesm.data.pickles import load_restricted_pickle
from mesm.data.prepare.released import prepare_released


class _Exploit:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_refuses_a_pickle_that_would_run_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "meta.pkl"
    path.write_bytes(pickle.dumps({"a": _Exploit(str(marker))}))
    with pytest.raises(DataError, match=r"meta\.pkl: refusing to unpickle (posix|os|nt)\.system"):
        load_restricted_pickle(path)
    assert not marker.exists()


def test_refuses_arbitrary_classes(tmp_path):
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps(np.zeros(2)))
    with pytest.raises(DataError, match="refusing to unpickle numpy"):
        load_restricted_pickle(path)


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_accepts_plain_data(tmp_path, protocol):
    data = {"a": [1, 2.5, "x", None, True], "b": (1, {3, 4}), "c": OrderedDict(k=b"\x00")}
    path = tmp_path / "ok.pkl"
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    assert load_restricted_pickle(path) == data


def _images(folder, prefix, count, colour):
    for i in range(count):
        Image.fromarray(np.full((64, 64, 3), colour, np.uint8)).save(folder / f"{prefix}{i}.jpg")


def test_iemocap_processed_folder(tmp_path):
    processed = tmp_path / "IEMOCAP_RAW_PROCESSED"
    meta = {
        "Ses01F_impro01_F000": {"text": "Excuse me.", "label": "neu", "fps": 30.0, "sr": 16000},
        "Ses01F_impro01_M005": {"text": "Do you?", "label": "ang", "fps": 30.0, "sr": 16000},
        "Ses01F_impro01_M001": {"text": "Yeah.", "label": "xxx", "fps": 30.0, "sr": 16000},
    }
    for uid in meta:
        folder = processed / "Ses01F_impro01" / uid
        folder.mkdir(parents=True)
        _images(folder, "image_L_", 31, (220, 20, 20))
        _images(folder, "image_R_", 31, (20, 20, 220))
        t = np.arange(16000) / 16000
        sf.write(folder / "audio_L.wav", np.sin(2 * np.pi * 300 * t) * 0.3, 16000)
        sf.write(folder / "audio_R.wav", np.sin(2 * np.pi * 1000 * t) * 0.3, 16000)
    (processed / "meta.pkl").write_bytes(pickle.dumps(meta))
    out = tmp_path / "dataset"
    report = prepare_released(processed, "iemocap", out)
    assert report.kept == 2 and report.dropped == {"label xxx": 1}
    _, records = read_dataset(out)
    by_id = {r.id: r for r in records}
    assert by_id["Ses01F_impro01_F000"].frame_pattern == "image_L_*.jpg"
    assert by_id["Ses01F_impro01_M005"].audio.endswith("audio_R.wav")
    assert by_id["Ses01F_impro01_M005"].split == "valid"
    preprocess_dataset(out, progress=False)
    cache = FeatureCache(out)
    left = cache.load("Ses01F_impro01_F000")
    right = cache.load("Ses01F_impro01_M005")
    np.testing.assert_allclose(left["timestamps"].numpy(), [0.0, 0.5, 1.0])  # 31 frames at 30 fps
    assert left["faces"][:, 0].float().mean() > 200 and right["faces"][:, 2].float().mean() > 200


def test_mosei_processed_folder_in_place(tmp_path):
    processed = tmp_path / "MOSEI_RAW_PROCESSED"
    uid = "-3g5yACwYnA_10"
    folder = processed / uid
    folder.mkdir(parents=True)
    _images(folder, "image_", 4, (128, 128, 128))
    sf.write(folder / "audio.wav", np.zeros(8000), 16000)
    meta = {
        uid: {"text": "Key is part of it.", "label": [0, 1, 0, 0, 1, 0]},
        "nofolder_0": {"text": "x", "label": [0] * 6},
    }
    (processed / "meta.pkl").write_bytes(pickle.dumps(meta))
    report = prepare_released(processed, "mosei")
    assert report.kept == 1 and report.dropped == {"no media folder": 1}
    info, records = read_dataset(processed)
    assert info.task == "multi_label"
    assert records[0].labels == ("disgust", "sadness") and records[0].split == "train"
    assert records[0].fps == 2.0 and records[0].video == uid
