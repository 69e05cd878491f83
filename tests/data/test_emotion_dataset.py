"""Dataset + collate: the Batch contract, splits, DataLoader workers, lazy entries, tokenizer."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader
from transformers import AutoTokenizer

from mesm.data.media.cache import FeatureCache
from mesm.data.media.dataset import EmotionDataset, collate
from mesm.data.media.faces import normalize_faces
from mesm.data.media.text import TextTokenizer
from mesm.demo.synthetic import write_synthetic_dataset
from mesm.resources import default_text_model


def test_batch_contract(synthetic_root):
    ds = EmotionDataset(synthetic_root)
    items = [ds[i] for i in (3, 0, 5)]
    batch = ds.collate(items)
    cache = FeatureCache(synthetic_root)
    entries = [cache.load(uid) for uid in ("utt0003", "utt0000", "utt0005")]
    assert batch["ids"] == ["utt0003", "utt0000", "utt0005"]
    t = [e["faces"].shape[0] for e in entries]
    s = [e["specs"].shape[0] for e in entries]
    assert batch["face_lengths"].tolist() == t and batch["face_lengths"].dtype == torch.int64
    assert batch["spec_lengths"].tolist() == s and batch["spec_lengths"].dtype == torch.int64
    assert batch["faces"].shape == (sum(t), 3, 48, 48) and batch["faces"].dtype == torch.float32
    assert batch["specs"].shape == (sum(s), 1, 128, 32) and batch["specs"].dtype == torch.float32
    # Frames of an utterance are contiguous, utterances in batch order.
    torch.testing.assert_close(
        batch["faces"][t[0] : t[0] + t[1]], normalize_faces(entries[1]["faces"])
    )
    torch.testing.assert_close(batch["specs"][s[0] + s[1] :], entries[2]["specs"])
    # Labels cycle ang, hap, neu, sad: one-hot for a single-label dataset.
    assert ds.label_names == ("ang", "hap", "neu", "sad")
    expected = torch.tensor([[0, 0, 0, 1], [1, 0, 0, 0], [0, 1, 0, 0]], dtype=torch.float32)
    torch.testing.assert_close(batch["labels"], expected)
    # Text: padded to the longest, mask True on real tokens.
    assert batch["text_ids"].dtype == torch.int64 and batch["text_mask"].dtype == torch.bool
    lengths = [len(ds.token_ids[i]) for i in (3, 0, 5)]
    assert batch["text_mask"].sum(dim=1).tolist() == lengths
    assert batch["text_ids"].shape == (3, max(lengths))
    assert (batch["text_ids"][~batch["text_mask"]] == ds.pad_id).all()


def test_split_membership(synthetic_root):
    # write_synthetic_dataset cycles splits train, train, valid, test.
    assert EmotionDataset(synthetic_root, "train").ids == [
        "utt0000",
        "utt0001",
        "utt0004",
        "utt0005",
    ]
    assert EmotionDataset(synthetic_root, "valid").ids == ["utt0002"]
    assert EmotionDataset(synthetic_root, "test").ids == ["utt0003"]
    with pytest.raises(ValueError, match="no utterances in split 'dev'"):
        EmotionDataset(synthetic_root, "dev")


def test_dataloader_workers_give_the_same_batches(synthetic_root):
    ds = EmotionDataset(synthetic_root)
    serial = list(DataLoader(ds, batch_size=4, collate_fn=ds.collate))
    parallel = list(DataLoader(ds, batch_size=4, collate_fn=ds.collate, num_workers=2))
    assert len(serial) == len(parallel) == 2
    for a, b in zip(serial, parallel, strict=True):
        assert a["ids"] == b["ids"]
        for key in ("faces", "face_lengths", "specs", "spec_lengths", "text_ids", "labels"):
            torch.testing.assert_close(a[key], b[key])


def test_missing_entries_are_computed_once_through_the_cache(synthetic_root, synthetic_copy):
    cache = FeatureCache(synthetic_copy)
    cache.path("utt0002").unlink()
    ds = EmotionDataset(synthetic_copy)
    item = ds[2]
    assert cache.has("utt0002")
    reference = FeatureCache(synthetic_root).load("utt0002")
    torch.testing.assert_close(item["faces"], reference["faces"])
    torch.testing.assert_close(item["specs"], reference["specs"])
    cache.path("utt0002").unlink()
    strict = EmotionDataset(synthetic_copy, compute_missing=False)
    with pytest.raises(Exception, match="no cache entry for 'utt0002'"):
        strict[2]


def test_multi_label_batches_are_multi_hot(tmp_path):
    write_synthetic_dataset(tmp_path, 3, task="multi_label", label_names=("a", "b", "c"), seed=1)
    ds = EmotionDataset(tmp_path)
    assert ds.info.task == "multi_label"
    torch.testing.assert_close(ds.labels, torch.tensor([[1.0, 0, 0], [0, 1, 1], [0, 0, 1]]))
    torch.testing.assert_close(ds.pos_weight(), torch.tensor([2.0, 2.0, 0.5]))
    batch = ds.collate([ds[0], ds[1]])
    torch.testing.assert_close(batch["labels"], torch.tensor([[1.0, 0, 0], [0, 1, 1]]))


def test_tokenizer_matches_the_text_models_own():
    reference = AutoTokenizer.from_pretrained(default_text_model())
    texts = ["Excuse me.", "word " * 300]
    tok = TextTokenizer(max_length=100)
    ids, mask = tok(texts)
    assert ids.shape == (2, 100) and mask.dtype == torch.bool
    assert ids[0, : mask[0].sum()].tolist() == reference("Excuse me.")["input_ids"]
    assert mask[1].all() and ids[1, -1].item() == reference.sep_token_id  # truncated, closed
    assert mask[0].sum() == len(reference("Excuse me.")["input_ids"])


def test_collate_rejects_an_empty_batch():
    with pytest.raises(ValueError, match="empty"):
        collate([])
