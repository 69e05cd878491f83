"""Hand-crafted feature extraction on generated clips, and the readers of pre-extracted files."""

from __future__ import annotations

import math
import pickle

import h5py
import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from mesm.data.errors import DataError
from mesm.data.handcrafted.dataset import FeatureDataset
from mesm.data.handcrafted.extractors import (
    AudioDescriptors,
    TextVectors,
    hog_dim,
    read_glove,
)
from mesm.data.handcrafted.features import FeatureSettings, FeatureStore, extract_features
from mesm.data.handcrafted.importers import import_csd, import_pickle
from mesm.data.manifest import read_dataset
from mesm.data.media.audio import load_waveform
from mesm.data.media.text import TextTokenizer
from mesm.data.media.video import video_duration
from mesm.data.pickles import load_numpy_pickle
from mesm.demo.synthetic import speech_like, write_synthetic_dataset


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    root = tmp_path_factory.mktemp("handcrafted")
    _, records = write_synthetic_dataset(root, 3, fps=10, duration=(1.0, 1.6), seed=4)
    report = extract_features(root, progress=False)
    return root, records, report


def test_extracted_sequences_have_the_documented_widths_and_rates(extracted):
    root, records, report = extracted
    assert report.dims == {"audio_dim": 25, "visual_dim": 5 + 10 + 900, "text_dim": 384}
    assert hog_dim(48, 8, 2, 9) == 900
    store = FeatureStore(root)
    tokenizer = AutoTokenizer.from_pretrained(TextTokenizer().model, local_files_only=True)
    table = TextVectors()._table
    for record in records:
        e = store.load(record.id)
        duration = len(load_waveform(root, record)) / 16000
        # Audio: eGeMAPS LLDs every 10 ms.
        assert e["audio"].shape[1] == 25 and abs(e["audio"].shape[0] - 100 * duration) <= 6
        torch.testing.assert_close(
            e["audio_times"].diff(), torch.full_like(e["audio_times"][1:], 0.01)
        )
        # Visual: one descriptor per 500 ms frame; drawn faces are found, landmarks in the box.
        frames = math.ceil(video_duration(root / record.video) / 0.5 - 1e-6)
        assert e["visual"].shape == (frames, 915)
        assert torch.allclose(e["visual_times"].diff(), torch.tensor(0.5, dtype=torch.float64))
        assert (e["visual"][:, 0] == 1).all()
        landmarks = e["visual"][:, 5:15]
        assert ((landmarks > -0.2) & (landmarks < 1.2)).all()
        # Text: the embedding rows of the tokenizer's ids (no special tokens).
        ids = tokenizer(record.text, add_special_tokens=False)["input_ids"]
        torch.testing.assert_close(e["text"], table[torch.tensor(ids)])
    assert extract_features(root, progress=False).reused == 3  # resumable: nothing recomputed


def test_compare_set_and_glove_vectors(tmp_path):
    lld, times = AudioDescriptors("compare")(torch.from_numpy(speech_like(1.0, 16000)))
    assert lld.shape[1] == 65 and abs(lld.shape[0] - 100) <= 6 and times[1] == pytest.approx(0.01)
    glove = tmp_path / "glove.txt"
    glove.write_text("hello 1 2 3\nworld 4 5 6\nunused 7 8 9\n")
    assert set(read_glove(glove, {"hello"})) == {"hello", ""}
    vectors = TextVectors(glove, vocabulary_texts=["Hello, World"])
    out = vectors("Hello, brave world")
    assert out.shape == (4, 3)  # hello , brave world
    torch.testing.assert_close(
        out[[0, 1, 2, 3]], torch.tensor([[1.0, 2, 3], [0, 0, 0], [0, 0, 0], [4, 5, 6]])
    )


def test_csd_files_are_cut_to_each_records_span(tmp_path):
    write_synthetic_dataset(tmp_path, 2, duration=(1.0, 1.2))
    _, records = read_dataset(tmp_path)
    files = {}
    for modality, width in (("audio", 4), ("visual", 3), ("text", 2)):
        path = files[modality] = tmp_path / f"{modality}.csd"
        with h5py.File(path, "w") as fh:
            for r in records:
                group = fh.create_group(f"{modality.upper()}/data/{r.id}")
                steps = 10
                group["features"] = np.arange(steps * width, dtype=np.float32).reshape(steps, width)
                starts = np.arange(steps) * 0.2
                group["intervals"] = np.stack([starts, starts + 0.2], axis=1)
    store = import_csd(tmp_path, files["audio"], files["visual"], files["text"], name="csd")
    assert store.dims() == {"audio_dim": 4, "visual_dim": 3, "text_dim": 2}
    ds = FeatureDataset(tmp_path, settings=FeatureSettings(source="imported", name="csd"))
    item = ds[0]
    assert item["audio"].shape == (10, 4) and item["text"].shape == (10, 2)


def _mult_pickle() -> dict:
    rng = np.random.default_rng(0)
    split = {
        "vision": rng.normal(size=(3, 5, 4)).astype(np.float32),
        "audio": rng.normal(size=(3, 5, 6)).astype(np.float32),
        "text": rng.normal(size=(3, 5, 7)).astype(np.float32),
        "labels": np.array([[[1.0, 0, 0]], [[0, 2.0, 0.5]], [[0, 0, 0]]]),
        "id": np.array([["vid1", "0"], ["vid1", "1"], ["vid/2", "0"]]),
    }
    split["audio"][1, :2] = 0  # leading zero rows are the files' padding
    return {"train": split, "valid": dict(split), "test": dict(split)}


def test_mult_style_pickle_becomes_a_dataset_with_features(tmp_path):
    path = tmp_path / "mosei.pkl"
    path.write_bytes(pickle.dumps(_mult_pickle(), protocol=4))
    out = tmp_path / "ds"
    import_pickle(path, out, ("hap", "sad", "ang"), name="mosei_aligned")
    info, records = read_dataset(out, check_files=False)
    assert info.task == "multi_label" and len(records) == 9
    assert records[0].id == "vid1_0" and records[2].id == "vid_2_0"
    assert [r.labels for r in records[:3]] == [("hap",), ("sad", "ang"), ()]
    ds = FeatureDataset(
        out, "train", settings=FeatureSettings(source="imported", name="mosei_aligned")
    )
    assert ds.dims == {"audio_dim": 6, "visual_dim": 4, "text_dim": 7}
    assert ds[1]["audio"].shape == (3, 6) and ds[0]["visual"].shape == (5, 4)
    np.testing.assert_allclose(ds[0]["text"].numpy(), _mult_pickle()["train"]["text"][0])


class _Exploit:
    def __reduce__(self):
        return (print, ("owned",))


def test_a_malicious_pickle_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"train": {"labels": np.zeros(2), "x": _Exploit()}}))
    with pytest.raises(DataError, match=r"refusing to unpickle builtins\.print"):
        load_numpy_pickle(path)
    assert "owned" not in capsys.readouterr().out
    path.write_bytes(pickle.dumps(np.zeros(3)))
    np.testing.assert_array_equal(load_numpy_pickle(path), np.zeros(3))
