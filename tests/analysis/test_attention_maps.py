"""Attention capture with hooks, and the explain images: files, masks, and overlay pixels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.image import imread

from mesm.analysis.attention_maps import (
    DROPPED_DIM,
    KEPT_ALPHA,
    KEPT_COLOUR,
    capture_attention,
    explain,
    explain_batch,
    kept_overlay,
)
from mesm.data.media.dataset import EmotionDataset
from mesm.inference.evaluate import open_split
from mesm.trained.checkpoint import load_checkpoint, load_model

UTTERANCE = "utt0003"  # a test-split clip


@pytest.fixture(scope="module")
def model(checkpoint):
    return load_checkpoint(checkpoint)[0]


@pytest.fixture(scope="module")
def item(model, checkpoint, dataset_dir):
    dataset = open_split(dataset_dir, None, load_model(checkpoint))
    it = dataset[dataset.ids.index(UTTERANCE)]
    return it, dataset.collate([it])


@pytest.fixture(scope="module")
def explained(checkpoint, dataset_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("explain")
    return explain(
        checkpoint, dataset_dir, out, utterance_id=UTTERANCE, scale=3, precision="32"
    ), out


def _png_uint8(path) -> np.ndarray:
    return (imread(path)[..., :3] * 255).round().astype(np.int64)


def test_capture_gives_consistent_dense_maps(model, dataset_dir):
    dataset = EmotionDataset(dataset_dir, "test")
    batch = dataset.collate([dataset[i] for i in range(len(dataset))])
    maps = capture_attention(model, batch)
    frames = {"visual": int(batch["face_lengths"].sum()), "audio": int(batch["spec_lengths"].sum())}
    first = {"visual": (24, 24), "audio": (64, 16)}
    assert set(maps) == {"visual", "audio"}
    for name, layers in maps.items():
        assert sorted(layers) == [0, 1, 2]
        for i, layer in layers.items():
            h, w = (s // 2**i for s in first[name])
            assert layer["probs"].shape == layer["kept"].shape == (frames[name], h, w)
            scored, kept = layer["scored"], layer["kept"]
            assert not (kept & ~scored).any() and (kept.flatten(1).sum(1) >= 1).all()
            assert (layer["probs"][~scored] == 0).all()
            sums = layer["probs"].flatten(1).sum(1)
            torch.testing.assert_close(sums, torch.ones_like(sums))
            if i + 1 in layers:  # the next layer scores exactly the pooled kept sites
                pooled = F.max_pool2d(kept[:, None].float(), 2)[:, 0].bool()
                assert torch.equal(layers[i + 1]["scored"], pooled)
    with pytest.raises(ValueError, match="MESM"):
        capture_attention(model.dense_twin(), batch)


def test_explain_writes_every_listed_file(explained):
    report, out = explained
    assert json.loads((out / "attention.json").read_text()) == report
    assert report["id"] == UTTERANCE and report["p"] == 0.7
    assert set(report["prediction"]) == {"ang", "hap", "neu", "sad"}
    overview = (out / report["overview"]).read_bytes()
    assert overview[:8] == b"\x89PNG\r\n\x1a\n" and len(overview) > 20_000
    assert set(report["pathways"]) == {"visual", "audio"}
    for name, pathway in report["pathways"].items():
        assert len(pathway["layers"]) == 3
        for layer in pathway["layers"]:
            kept = np.load(out / layer["kept_npy"])
            assert kept.dtype == bool and kept.shape == (pathway["frames"], *layer["map_shape"])
            assert layer["kept_fraction"] == pytest.approx(kept.mean())
            assert layer["kept_per_frame"] == kept.sum(axis=(1, 2)).tolist()
            assert 0 < layer["kept_fraction"] <= layer["kept_of_scored"] <= 1
            assert [im["index"] for im in layer["images"]] == list(range(pathway["frames"]))
            for image in layer["images"]:
                for key in ("attention", "kept"):
                    png = _png_uint8(out / image[key])
                    size = (48, 48) if name == "visual" else (128, 32)
                    assert png.shape == (3 * size[0], 3 * size[1], 3) and png.std() > 0


def test_saved_masks_are_the_hooked_selection(explained, model, item):
    report, out = explained
    maps = capture_attention(model, item[1])
    for name, pathway in report["pathways"].items():
        for layer in pathway["layers"]:
            hooked = maps[name][layer["layer"]]
            assert np.array_equal(np.load(out / layer["kept_npy"]), hooked["kept"].numpy())
            np.testing.assert_array_equal(
                np.load(out / layer["probs_npy"]), hooked["probs"].numpy()
            )


def test_face_overlay_tints_exactly_the_kept_sites(explained, item):
    report, out = explained
    faces = item[0]["faces"].permute(0, 2, 3, 1).numpy()  # (T, 48, 48, 3) uint8 from the cache
    colour = np.array(KEPT_COLOUR)
    for layer in report["pathways"]["visual"]["layers"]:
        kept = np.load(out / layer["kept_npy"])
        block = 48 // kept.shape[1]
        for image in layer["images"]:
            t = image["index"]
            png = _png_uint8(out / image["kept"])[::3, ::3]  # undo the 3x magnification
            mask = kept[t].repeat(block, 0).repeat(block, 1)
            base = faces[t].astype(np.float64)
            tinted = ((1 - KEPT_ALPHA) * base + KEPT_ALPHA * colour).round()
            assert np.abs(png[mask] - tinted[mask]).max() <= 1
            assert np.abs(png[~mask] - (DROPPED_DIM * base[~mask]).round()).max() <= 1
            assert np.array_equal(png, kept_overlay(faces[t], kept[t]))


def test_chunk_overlay_is_flipped_with_the_chunk(explained):
    report, out = explained
    for layer in report["pathways"]["audio"]["layers"]:
        kept = np.load(out / layer["kept_npy"])
        block = 128 // kept.shape[1]
        for image in layer["images"]:
            png = _png_uint8(out / image["kept"])[::3, ::3]
            # Low frequencies at the bottom: mel row 0 is the image's last row.
            mask = kept[image["index"]][::-1].repeat(block, 0).repeat(block, 1)
            green_excess = png[..., 1] - png[..., 0]  # grey input: tint adds green only
            assert green_excess[mask].min() >= KEPT_ALPHA * 255 - 1
            assert np.abs(green_excess[~mask]).max() <= 1


def test_explain_a_ready_batch_equals_the_dataset_path(explained, model, item, tmp_path):
    report, out = explained
    again = explain_batch(
        model, item[1], tmp_path, label_names=["ang", "hap", "neu", "sad"], scale=3, max_frames=2
    )
    assert again["prediction"] == report["prediction"]
    for name, pathway in again["pathways"].items():
        for layer, first in zip(pathway["layers"], report["pathways"][name]["layers"], strict=True):
            assert np.array_equal(
                np.load(tmp_path / layer["kept_npy"]), np.load(out / first["kept_npy"])
            )
            drawn = [im["index"] for im in layer["images"]]
            assert drawn == [0, pathway["frames"] - 1]  # at most 2, spread over the utterance
    # A de-normalised face equals the cached uint8 crop (so either source draws the same image).
    faces = item[0]["faces"]
    ours = _png_uint8(tmp_path / again["pathways"]["visual"]["layers"][0]["images"][0]["kept"])
    cached = _png_uint8(out / report["pathways"]["visual"]["layers"][0]["images"][0]["kept"])
    assert faces.shape[0] >= 1 and np.abs(ours - cached).max() <= 1


def test_explain_at_another_p_and_bad_inputs(checkpoint, model, item, dataset_dir, tmp_path):
    low = explain(model, item[1], tmp_path / "low", p=0.2)
    assert low["p"] == 0.2 and model.visual.attention[0].p == 0.7
    layer0 = low["pathways"]["visual"]["layers"][0]
    assert layer0["kept_of_scored"] < 0.7
    two = {**item[1], "text_ids": item[1]["text_ids"].repeat(2, 1)}
    with pytest.raises(ValueError, match="exactly one utterance"):
        explain_batch(model, two, tmp_path / "two")
    with pytest.raises(ValueError, match="utterance id"):
        explain(checkpoint, dataset_dir, tmp_path / "none")
    with pytest.raises(ValueError, match="no utterance"):
        explain(checkpoint, dataset_dir, tmp_path / "none", utterance_id="missing")
