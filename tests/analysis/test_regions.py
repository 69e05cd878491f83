"""Facial regions, shares on planted maps, the statistics, and `mesm explain --regions`."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from mesm.analysis.region_report import (
    CSV_COLUMNS,
    batch_shares,
    bootstrap_means,
    permutation_p,
    region_report,
    summarise,
)
from mesm.analysis.regions import (
    BANDS,
    REGIONS,
    band_rows,
    face_region_labels,
    facs_regions,
    frame_shares,
    mel_centres,
    site_fractions,
    speech_frame_labels,
)
from mesm.cli import main
from mesm.trained.checkpoint import TrainedModel, load_model

# A frontal face in a 48x48 crop: eyes, nose tip, mouth corners (x, y).
FACE = np.array([[14.0, 16.0], [34.0, 16.0], [24.0, 27.0], [16.0, 35.0], [32.0, 35.0]])
R = len(REGIONS)
MOUTH = REGIONS.index("mouth")


def _labels(points=FACE, size=48):
    return face_region_labels(points[None], size)[0]


def test_regions_are_where_the_landmarks_are():
    labels = _labels()
    assert labels[16, 14] == REGIONS.index("eyes") and labels[16, 34] == REGIONS.index("eyes")
    assert labels[35, 24] == MOUTH  # between the mouth corners
    assert labels[9, 14] == REGIONS.index("brows")  # above the eye
    assert labels[24, 24] == REGIONS.index("nose")
    assert labels[44, 24] == REGIONS.index("jaw")
    assert labels[1, 1] == REGIONS.index("rest")
    assert set(np.unique(labels)) == set(range(R))  # every region has pixels


def test_flipped_face_flips_the_regions():
    flipped = FACE.copy()
    flipped[:, 0] = 48 - flipped[:, 0]
    mirror = _labels()[:, ::-1]
    assert np.array_equal(_labels(flipped), mirror)
    # MTCNN lists the points as seen: after a flip the "left" eye is the other one.
    assert np.array_equal(_labels(flipped[[1, 0, 2, 4, 3]]), mirror)


def test_upside_down_face_turns_the_regions():
    turned = 48 - FACE  # rotated by 180 degrees about the crop's centre
    assert np.array_equal(_labels(turned), _labels()[::-1, ::-1])


def test_missing_landmarks_give_no_regions():
    points = np.stack([FACE, np.full((5, 2), np.nan), np.zeros((5, 2))])
    labels = face_region_labels(points, 48)
    assert (labels[0] >= 0).all()
    assert (labels[1] == -1).all() and (labels[2] == -1).all()  # no face; degenerate points


def test_site_fractions_sum_to_one_and_pool_pixels():
    labels = _labels()[None]
    for shape in ((48, 48), (24, 24), (6, 6)):
        fr = site_fractions(labels, shape, R)
        assert fr.shape == (1, R, *shape)
        np.testing.assert_allclose(fr.sum(axis=1), 1.0, atol=1e-6)
        area = fr.mean(axis=(2, 3))[0]
        np.testing.assert_allclose(area, [(labels == i).mean() for i in range(R)], atol=1e-6)
    with pytest.raises(ValueError, match="divide"):
        site_fractions(labels, (7, 7), R)


def _planted(mask: np.ndarray):
    """A frame whose attention is spread evenly over `mask`, which is also what it keeps."""
    probs = mask / mask.sum()
    return probs[None], mask[None].astype(bool), np.ones((1, *mask.shape), dtype=bool)


def test_attention_on_the_mouth_gives_mouth_share_one_and_iou_one():
    labels = _labels()[None]
    mouth = (labels[0] == MOUTH).astype(np.float64)
    probs, kept, scored = _planted(mouth)
    fr = site_fractions(labels, (48, 48), R)
    target = np.eye(R)[[MOUTH]]  # a mouth-only region
    shares = frame_shares(probs, kept, scored, fr, target)
    assert shares["attention"][0, MOUTH] == pytest.approx(1.0)
    assert shares["kept"][0, MOUTH] == pytest.approx(1.0)
    assert shares["iou"][0, 0] == pytest.approx(1.0)
    assert shares["pointing"][0, 0] == 1.0
    # Against the eyes the same attention has IoU 0 and misses.
    eyes = frame_shares(probs, kept, scored, fr, np.eye(R)[[REGIONS.index("eyes")]])
    assert eyes["iou"][0, 0] == 0.0 and eyes["pointing"][0, 0] == 0.0


def test_attention_on_whole_mouth_sites_of_a_coarse_layer():
    labels = _labels()[None]
    fr = site_fractions(labels, (12, 12), R)
    inside = fr[0, MOUTH] == 1.0  # sites wholly inside the mouth
    assert inside.sum() >= 4
    probs, kept, scored = _planted(inside.astype(np.float64))
    shares = frame_shares(probs, kept, scored, fr, np.eye(R)[[MOUTH]])
    assert shares["attention"][0, MOUTH] == pytest.approx(1.0)
    assert shares["kept"][0, MOUTH] == pytest.approx(1.0)
    # The mouth's partial sites count for it too, so the kept sites are part of it: IoU < 1.
    partial = fr[0, MOUTH].sum()
    assert shares["iou"][0, 0] == pytest.approx(inside.sum() / partial)


def test_uniform_attention_gives_shares_equal_to_areas():
    labels = _labels()[None]
    for shape in ((48, 48), (24, 24), (6, 6)):
        fr = site_fractions(labels, shape, R)
        probs, kept, scored = _planted(np.ones(shape))
        shares = frame_shares(probs, kept, scored, fr)
        np.testing.assert_allclose(shares["attention"], shares["area"], atol=1e-12)
        np.testing.assert_allclose(shares["kept"], shares["area"], atol=1e-12)


def test_area_counts_only_scored_sites():
    labels = _labels()[None]
    fr = site_fractions(labels, (48, 48), R)
    scored = (labels == MOUTH) | (labels == REGIONS.index("eyes"))
    probs = scored / scored.sum()
    shares = frame_shares(probs, scored, scored, fr)
    mouth, eyes = (labels == MOUTH).sum(), (labels == REGIONS.index("eyes")).sum()
    assert shares["area"][0, MOUTH] == pytest.approx(mouth / (mouth + eyes))
    assert shares["area"][0, REGIONS.index("rest")] == 0.0


def _maps(probs, kept):
    t = torch.from_numpy
    return {
        "visual": {
            "0": {
                "probs": t(probs).float(),
                "kept": t(kept),
                "scored": torch.ones(kept.shape, dtype=torch.bool),
            }
        }
    }


def test_frame_without_a_face_is_excluded_and_counted():
    labels = _labels()
    mouth = (labels == MOUTH).astype(np.float64)
    eyes = (labels == REGIONS.index("eyes")).astype(np.float64)
    # Utterance 0: a mouth frame and a frame with no face whose attention is on the "eyes";
    # utterance 1: no face at all.
    probs = np.stack([mouth / mouth.sum(), eyes / eyes.sum(), eyes / eyes.sum()])
    kept = probs > 0
    nan = np.full((5, 2), np.nan)
    items = [
        {"faces": torch.zeros(2, 3, 48, 48), "landmarks": torch.tensor(np.stack([FACE, nan]))},
        {"faces": torch.zeros(1, 3, 48, 48), "landmarks": torch.tensor(nan[None])},
    ]
    out = batch_shares(_maps(probs, kept), items, ["happiness", "neutral"])[("visual", "0")]
    assert out["frames"].tolist() == [1, 0] and out["excluded"].tolist() == [1, 1]
    assert out["attention"][0, MOUTH] == pytest.approx(1.0)  # the excluded frame adds nothing
    assert np.isnan(out["attention"][1]).all()  # never assigned regions
    labels_ = np.array([[1, 0], [0, 1]])
    stats = summarise(
        {("visual", "0"): out}, labels_, labels_.astype(bool), ["happiness", "neutral"]
    )
    groups = {(r["group_by"], r["emotion"], r["utterances"]) for r in stats["regions"]}
    assert ("all", "all", 1) in groups and ("true", "happiness", 1) in groups
    assert not any(r["emotion"] == "neutral" for r in stats["regions"])  # its one has no face


def test_facs_regions_of_labels():
    assert facs_regions("Happy") == ("mouth", "cheeks")
    assert facs_regions("sadness") == ("mouth", "brows")
    assert facs_regions("anger") == ("mouth", "eyes", "brows")
    assert set(facs_regions("surprise")) == {"eyes", "brows", "jaw"}
    assert facs_regions("neutral") == () and facs_regions("frustrated") == ()


def test_mel_bands_follow_the_htk_scale():
    centres = mel_centres(128, 16000)
    assert np.all(np.diff(centres) > 0) and 0 < centres[0] < 40 and 7700 < centres[-1] < 8000
    rows = band_rows(128, 16000)
    assert rows[0] == 0 and rows[-1] == len(BANDS) - 1 and np.all(np.diff(rows) >= 0)
    for i, (_, lo, hi) in enumerate(BANDS):
        assert np.all((centres[rows == i] >= lo) & (centres[rows == i] < hi))


def test_speech_labels_follow_the_vad_windows():
    # 1 s at 16 kHz (hop 200: 81 mel frames) in 3 chunks of 32; speech in the first 16 windows.
    probs = np.array([0.9] * 16 + [0.1] * 16)
    args = dict(samples=16000, sample_rate=16000, hop_length=200, chunks=3, chunk_frames=32)
    labels = speech_frame_labels(probs, 0.032, n_mels=4, **args)
    assert labels.shape == (3, 4, 32) and (labels == labels[:, :1, :]).all()
    seconds = np.arange(96) * 200 / 16000
    expected = np.where(seconds < 16 * 0.032, 0, 1)
    expected[81:] = 2  # the last chunk's zero padding
    assert np.array_equal(labels[:, 0, :].reshape(-1), expected)
    # Audio that could not be read: no frame is labelled (the chunks are excluded).
    assert (speech_frame_labels(np.zeros(0), 0.032, n_mels=4, **args) == -1).all()


def test_bootstrap_and_permutation():
    rng = np.random.default_rng(1)
    values = rng.normal(size=(200, 2))
    samples = bootstrap_means(values, 500, np.random.default_rng(0))
    assert samples.shape == (500, 2)
    np.testing.assert_allclose(samples.mean(axis=0), values.mean(axis=0), atol=0.03)
    assert samples.std(axis=0) == pytest.approx(values.std(axis=0) / np.sqrt(200), rel=0.2)
    again = bootstrap_means(values, 500, np.random.default_rng(0))
    assert np.array_equal(samples, again)

    labels = np.zeros((200, 2))
    labels[:100, 0] = labels[100:, 1] = 1
    tied = np.stack([labels[:, 0] * 2.0 + rng.normal(0, 0.1, 200), rng.normal(size=200)], 1)
    _, p = permutation_p(tied, labels, 200, np.random.default_rng(0))
    assert p[0] == pytest.approx(1 / 201)  # far beyond chance
    assert p[1] > 0.01  # labels unrelated to the values


@pytest.fixture(scope="module")
def fe2e(checkpoint):
    trained = load_model(checkpoint)
    return TrainedModel(trained.model.dense_twin(), trained.meta)


def test_region_report_of_mesm_and_fe2e(dataset_dir, checkpoint, fe2e, tmp_path):
    out = tmp_path / "regions"
    report = region_report(
        checkpoint, dataset_dir, None, out, bootstrap=50, permutations=20, speech=True
    )
    assert report["source"] == "attention" and report["utterances"] == 12
    assert report["frames"]["used"] + report["frames"]["without_face"] > 0
    layers = {(r["pathway"], r["layer"]) for r in report["rows"]}
    assert layers == {(pw, str(i)) for pw in ("visual", "audio", "speech") for i in range(3)}
    voice = report["speech"]
    assert voice["speech_frames"] + voice["non_speech_frames"] > 0
    assert voice["utterances_without_audio"] == []
    with open(out / "regions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == len(report["rows"])
    on_disk = json.loads((out / "regions.json").read_text())
    assert on_disk["facs"]["source"].startswith("EMFACS")
    for name in ("enrichment.png", "region_masks.png"):
        assert (out / name).stat().st_size > 5_000
    every = [r for r in report["rows"] if r["group_by"] == "all"]
    for pathway in ("visual", "audio", "speech"):
        for layer in "012":
            mine = [r for r in every if r["pathway"] == pathway and r["layer"] == layer]
            for q in ("attention_share", "kept_share", "area_share"):
                assert sum(r[q] for r in mine) == pytest.approx(1.0, abs=1e-6)
            for r in mine:
                assert r["kept_share_lo"] <= r["kept_share"] + 1e-9 <= r["kept_share_hi"] + 2e-9
    # The same seed gives the same report.
    again = region_report(
        checkpoint, dataset_dir, None, None, bootstrap=50, permutations=20, speech=True
    )
    assert again["rows"] == report["rows"]

    saliency = region_report(fe2e, dataset_dir, None, None, bootstrap=20, permutations=10)
    assert saliency["source"] == "saliency" and saliency["arch"] == "fe2e"
    assert {(r["pathway"], r["layer"]) for r in saliency["rows"]} == {
        ("visual", "input"),
        ("audio", "input"),
    }
    assert saliency["speech"] is None  # not asked for
    with pytest.raises(Exception, match="FE2E has no cross-modal attention"):
        region_report(fe2e, dataset_dir, None, None, source="attention")


def test_explain_regions_command(dataset_dir, checkpoint, tmp_path, capsys):
    out = tmp_path / "cli_regions"
    args = ["explain", "--regions", "--checkpoint", str(checkpoint), "--data", str(dataset_dir)]
    assert main([*args, "--split", "test", "--out", str(out), "--bootstrap", "20",
                 "--permutations", "10", "--speech"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "mouth + brows" in printed and "face frames used" in printed
    assert "voice activity (Silero VAD)" in printed
    assert json.loads((out / "regions.json").read_text())["speech"]["speech_frames"] >= 0
    assert (out / "regions.csv").is_file() and (out / "regions.json").is_file()
    assert main([*args, "--out", str(tmp_path / "sal"), "--saliency", "--bootstrap", "10",
                 "--permutations", "5"]) == 0  # fmt: skip
    saliency = json.loads((tmp_path / "sal" / "regions.json").read_text())
    assert saliency["source"] == "saliency" and saliency["speech"] is None
    assert not any(r["pathway"] == "speech" for r in saliency["rows"])
    # Without --data, or with a clip as well: a one-line error before any work.
    assert main(["explain", "--regions", "--checkpoint", str(checkpoint), "--out", "x"]) == 1
    assert "--regions needs --data" in capsys.readouterr().err
    assert main([*args, "a.mp4", "--out", str(tmp_path / "y")]) == 1
    assert "give no CLIP" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()


def test_speech_labels_do_not_depend_on_how_batches_meet_the_vad_blocks(
    dataset_dir, checkpoint, monkeypatch
):
    """Batches of 3 against VAD blocks of 5 (a batch straddles two blocks) give the counts of
    the default blocks (it once raised KeyError when the batch size did not divide the block)."""
    import mesm.analysis.region_report as rr

    kwargs = {"bootstrap": 10, "permutations": 5, "figures": False, "speech": True}
    whole = region_report(checkpoint, dataset_dir, None, None, batch_size=4, **kwargs)
    monkeypatch.setattr(rr, "VAD_BLOCK", 5)
    straddled = region_report(checkpoint, dataset_dir, None, None, batch_size=3, **kwargs)
    assert straddled["speech"] == whole["speech"]
    pairs = zip(straddled["rows"], whole["rows"], strict=True)
    for a, b in ((a, b) for a, b in pairs if a["pathway"] == "speech"):
        assert (a["region"], a["group_by"], a["emotion"]) == (
            b["region"],
            b["group_by"],
            b["emotion"],
        )
        assert a["area_share"] == pytest.approx(b["area_share"], rel=1e-5)


def test_explain_places_the_mel_bands_at_the_checkpoints_sample_rate(checkpoint, monkeypatch):
    import mesm.analysis.attention_maps as am

    trained = load_model(checkpoint)
    meta = {**trained.meta, "preprocessing": {**trained.settings.to_dict(), "sample_rate": 8000}}
    seen = {}
    monkeypatch.setattr(am, "explain_batch", lambda *a, **k: seen.update(k) or {})
    am.explain(TrainedModel(trained.model, meta), {"faces": None}, "unused")
    assert seen["sample_rate"] == 8000
