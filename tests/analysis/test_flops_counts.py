"""FLOPs: hand-counted golden numbers on a constructed sparse input, MESM(p=1) = FE2E, and the
per-utterance averages over a dataset split and over a generated preset batch."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from mesm.analysis.flops import (
    dataset_flops,
    model_feature_flops,
    pathway_flops,
    preset_flops,
    sequence_flops,
    text_flops,
)
from mesm.inference.evaluate import open_split
from mesm.models import TINY_TEXT, create_model
from mesm.trained.checkpoint import load_checkpoint, load_model
from mesm.trained.inputs import model_inputs

# Tiny preset: low-level CNN at 8 channels, stages 8→16, 16→16, 16→32, MLP 288→64→32,
# additive attention width A = 16, text width D = 32 (TINY_TEXT).
LOW, STAGES, A, D = 8, ((8, 16), (16, 16), (16, 32)), 16, 32


def _uniform_mesm(p: float):
    """Tiny MESM whose attention scores are all 0: uniform probabilities, so top-p keeps the
    first ceil(p·M) sites of each frame in row-major order (ties go to the lower index)."""
    torch.manual_seed(0)
    model = create_model("mesm", preset="tiny", p=p, **TINY_TEXT).eval()
    for pathway in (model.visual, model.audio):
        for attention in pathway.attention:
            torch.nn.init.zeros_(attention.score.weight)
    return model


def _hand_count(
    frames: int,
    kept: list[int],
    scored: list[int],
    in_channels: int = 3,
    shape: tuple[int, int] = (48, 48),
) -> tuple[int, int]:
    """Features and attention FLOPs of a tiny extractor (2 FLOPs per multiply-add); with every
    site kept, the features are FE2E's."""
    h, w = shape
    low = 2 * LOW * in_channels * 25 * h * w + 4 * 2 * LOW * LOW * 9 * (h // 2) * (w // 2)
    sparse = sum(
        2 * 9 * frames * n * (c_in * c_out + c_out * c_out)
        for n, (c_in, c_out) in zip(kept, STAGES, strict=True)
    )
    mlp = 2 * (32 * (h // 16) * (w // 16) * 64 + 64 * 32)
    features = frames * (low + mlp) + sparse
    # proj_x on every scored site, proj_y on each frame's text feature, score on every site.
    attention = sum(
        2 * frames * m * c_in * A + 2 * frames * D * A + 2 * frames * m * A
        for m, (c_in, _) in zip(scored, STAGES, strict=True)
    )
    return features, attention


# FE2E's cost of one 48x48 face crop and of one 128x32 mel chunk: every site kept.
FACE = _hand_count(1, [576, 144, 36], [576, 144, 36])[0]
CHUNK = _hand_count(1, [1024, 256, 64], [1024, 256, 64], in_channels=1, shape=(128, 32))[0]


def test_constructed_sparse_input_matches_the_hand_count():
    # Per frame: layer 0 scores 24x24 = 576 sites and keeps ceil(0.3·576) = 173 (rows 0-6 and
    # 5 sites of row 7); pooled they cover rows 0-3 of 12x12 = 48 sites, of which layer 1 keeps
    # ceil(14.4) = 15 (row 0 and 3 of row 1) → pooled: 6 sites of row 0 on 6x6; layer 2 keeps
    # ceil(1.8) = 2.
    model = _uniform_mesm(0.3)
    frames = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    y = torch.randn(2, D)
    counts = pathway_flops(model.visual, frames, y)
    kept, scored = [173, 15, 2], [576, 48, 6]
    features, attention = _hand_count(2, kept, scored)
    assert counts.features == features
    assert counts.attention == attention > 0
    assert counts.sparse == sum(
        2 * 9 * 2 * n * (a * b + b * b) for n, (a, b) in zip(kept, STAGES, strict=True)
    )
    assert counts.sparse_counted == counts.sparse  # torch engine: FlopCounterMode agrees
    assert counts.sites == {
        "stages.0": (2 * 173, 2 * 576),
        "stages.1": (2 * 15, 2 * 144),
        "stages.2": (2 * 2, 2 * 36),
    }


@pytest.mark.parametrize("pathway", ["visual", "audio"])
def test_mesm_at_p_one_costs_exactly_fe2e_plus_attention(pathway):
    torch.manual_seed(0)
    model = create_model("mesm", preset="tiny", p=1.0, **TINY_TEXT).eval()
    twin = model.dense_twin()
    shape = (3, 3, 48, 48) if pathway == "visual" else (3, 1, 128, 32)
    frames = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    sparse = pathway_flops(getattr(model, pathway), frames, torch.randn(3, D))
    dense = pathway_flops(getattr(twin, pathway), frames)
    assert sparse.features == dense.features == 3 * (FACE if pathway == "visual" else CHUNK)
    # Nothing is pruned at p = 1, so the paper's (ungated) attention is not even computed ...
    assert dense.attention == sparse.attention == 0
    assert sparse.sparse_counted == sparse.sparse > 0
    assert all(active == total for active, total in sparse.sites.values())
    # ... while the gated mode needs its scores; they are reported apart from the features.
    for layer in getattr(model, pathway).attention:
        layer.gating = "gated"
    gated = pathway_flops(getattr(model, pathway), frames, torch.randn(3, D))
    assert gated.features == dense.features and gated.attention > 0


def test_text_flops_ignore_padding():
    torch.manual_seed(0)
    model = create_model("mesm", preset="tiny", **TINY_TEXT).eval()
    ids = torch.tensor([[101, 2000, 2001, 102, 0, 0], [101, 2002, 102, 0, 0, 0]])
    mask = ids != 0
    wider_ids = torch.cat([ids, torch.zeros(2, 5, dtype=torch.long)], dim=1)
    counted = text_flops(model, ids, mask)
    assert counted == text_flops(model, wider_ids, wider_ids != 0) > 0
    with FlopCounterMode(display=False) as one:
        model.text(ids[:1, :4], mask[:1, :4])
    with FlopCounterMode(display=False) as two:
        model.text(ids[1:, :3], mask[1:, :3])
    assert counted == one.get_total_flops() + two.get_total_flops()


def test_dataset_flops_average_per_utterance(checkpoint, dataset_dir):
    # float32, as the per-utterance sums below (bf16 could move a near-tie across the cut)
    report = dataset_flops(checkpoint, dataset_dir, "test", batch_size=2, precision="32")
    assert json.loads(json.dumps(report)) == report  # JSON-serialisable as is
    assert report["num_utterances"] == 3
    trained = load_model(checkpoint)
    model = trained.model
    assert report["model"]["arch"] == "mesm" and report["model"]["p"] == 0.7
    assert report["fe2e"]["arch"] == "fe2e" and report["fe2e"]["sites_kept"] == {}

    # The same sums from one utterance at a time (batching must not change the counts).
    dataset = open_split(dataset_dir, "test", trained)
    sums = {"visual": 0, "audio": 0}
    frames = {"visual": 0, "audio": 0}
    for i in range(len(dataset)):
        batch = model_inputs(model, dataset.collate([dataset[i]]))
        for m, counts in model_feature_flops(model, batch).items():
            name = {"v": "visual", "a": "audio"}[m]
            sums[name] += counts.features
            frames[name] += counts.frames
    for name in ("visual", "audio"):
        assert report["model"]["flops"][name]["features"] == sums[name]
        assert report["model"]["gflops_per_utterance"][name] == pytest.approx(sums[name] / 3e9)
        assert report["frames_per_utterance"][name] == frames[name] / 3
    g = report["model"]["gflops_per_utterance"]
    assert g["features"] == pytest.approx(g["visual"] + g["audio"])
    assert g["total"] == pytest.approx(g["features"] + g["attention"]) and g["attention"] > 0

    # FE2E: a fixed cost per face crop / mel chunk, times the frames of the split.
    assert report["fe2e"]["flops"]["visual"]["features"] == FACE * frames["visual"]
    assert report["fe2e"]["flops"]["audio"]["features"] == CHUNK * frames["audio"]

    assert 0 < report["ratio"] < 1 and report["ratio"] < report["ratio_with_attention"]
    kept = report["model"]["sites_kept"]
    assert sorted(kept) == [f"{m}.stages.{i}" for m in ("audio", "visual") for i in range(3)]
    assert all(0 < v <= 1 for v in kept.values())
    assert report["text_gflops_per_utterance"] > 0
    for name in ("visual", "audio"):
        counts = report["model"]["flops"][name]
        assert counts["sparse_counted"] == counts["sparse"] > 0

    # The sequence transformers: each utterance on its own frames, the same for FE2E.
    lengths = {"visual": [], "audio": []}
    for i in range(len(dataset)):
        batch = dataset.collate([dataset[i]])
        lengths["visual"] += batch["face_lengths"].tolist()
        lengths["audio"] += batch["spec_lengths"].tolist()
    seq = report["model"]["sequence_gflops_per_utterance"]
    for name in ("visual", "audio"):
        by_hand = sum(sequence_flops(getattr(model, name), t) for t in lengths[name])
        assert seq[name] == pytest.approx(by_hand / 3e9)
    assert seq["total"] == pytest.approx(seq["visual"] + seq["audio"])
    assert report["fe2e"]["sequence_gflops_per_utterance"] == seq


def test_dataset_flops_at_p_one_and_for_a_dense_model(checkpoint, dataset_dir):
    full = dataset_flops(checkpoint, dataset_dir, "test", p=1.0)
    assert full["model"]["p"] == 1.0 and full["ratio"] == 1.0
    assert all(v == 1.0 for v in full["model"]["sites_kept"].values())
    model, _ = load_checkpoint(checkpoint)
    assert model.visual.attention[0].p == 0.7  # the override does not stick
    dense = dataset_flops(model.dense_twin(), dataset_dir, "test")
    assert dense["source"] is None and dense["model"] == dense["fe2e"] and dense["ratio"] == 1.0
    assert dense["fe2e"]["gflops_per_utterance"] == full["fe2e"]["gflops_per_utterance"]


def test_preset_flops_on_generated_inputs():
    report = preset_flops("mesm", "tiny", p=0.5, frames=4, chunks=3, **TINY_TEXT)
    assert json.loads(json.dumps(report)) == report
    assert report["frames_per_utterance"] == {"audio": 3, "visual": 4}
    assert report["num_utterances"] == 2 and report["model"]["p"] == 0.5
    assert 0 < report["ratio"] < 1
    assert report["fe2e"]["flops"]["visual"]["features"] == 2 * 4 * FACE
    assert report["fe2e"]["flops"]["audio"]["features"] == 2 * 3 * CHUNK
    dense = preset_flops("fe2e", "tiny", frames=4, chunks=3, **TINY_TEXT)
    assert dense["ratio"] == 1.0 and dense["model"]["p"] is None
    assert dense["fe2e"]["flops"] == report["fe2e"]["flops"]


@pytest.mark.parametrize("variant", [{}, {"norm_first": True, "final_norm": True, "ffn_dim": 96}])
def test_sequence_flops_formula_matches_the_flop_counter(variant):
    # PyTorch's fused inference path hides these layers from FlopCounterMode: count them with
    # the fused path off and the math attention kernel, which FlopCounterMode sees as bmm.
    from torch.nn.attention import SDPBackend, sdpa_kernel

    torch.manual_seed(0)
    model = create_model("fe2e", preset="tiny", num_layers=2, **TINY_TEXT, **variant).eval()
    for length in (1, 5):
        frames = torch.randn(length, model.config.d_model)
        fastpath = torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            with (
                torch.no_grad(),
                sdpa_kernel(SDPBackend.MATH),
                FlopCounterMode(display=False) as counter,
            ):
                model.audio.transformer(frames, torch.tensor([length]))
        finally:
            torch.backends.mha.set_fastpath_enabled(fastpath)
        assert counter.get_total_flops() == sequence_flops(model.audio, length) > 0
