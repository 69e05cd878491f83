"""The baselines on literal feature batches: shapes, gradients, padding invariance, configs."""

from __future__ import annotations

import pytest
import torch

from mesm.models import BASELINE_ARCHS, TINY_TEXT, build_model, config_from_dict, create_model
from mesm.models.baselines import BaselineConfig, EmoEmbs, MulT, input_keys
from mesm.models.baselines.emoembs import emotion_word_embeddings

DIMS = {"audio_dim": 5, "visual_dim": 7, "text_dim": 9}
NAMES = {"t": "text", "a": "audio", "v": "visual"}


def tiny_baseline(arch: str, modalities: str = "tav", seed: int = 0, **overrides):
    torch.manual_seed(seed)
    extra = {**TINY_TEXT, "label_names": ("ang", "hap", "neu")} if arch == "emoembs" else {}
    fields = {"modalities": modalities, "num_classes": 3, **DIMS, **extra, **overrides}
    return create_model(arch, preset="tiny", **fields)


def feature_batch(lengths: dict[str, list[int]], seed: int = 0, pad_value: float = 0.0) -> dict:
    """Random padded sequences; padding filled with `pad_value` (the models must ignore it)."""
    g = torch.Generator().manual_seed(seed)
    batch = {}
    for m, lens in lengths.items():
        name = NAMES[m]
        width = DIMS[f"{name}_dim"]
        t_max = max(lens, default=0)
        feats = torch.randn(len(lens), t_max, width, generator=g)
        mask = torch.arange(t_max)[None, :] < torch.tensor(lens)[:, None]
        batch[f"{name}_feats"] = feats.masked_fill(~mask[..., None], pad_value)
        batch[f"{name}_mask"] = mask
    return batch


def _subsets(arch: str) -> list[str]:
    subsets = ["tav", "ta", "tv", "av", "t", "a", "v"]
    return [s for s in subsets if not (arch == "mult" and len(s) < 2)]


@pytest.mark.parametrize("arch", BASELINE_ARCHS)
def test_shapes_for_every_modality_subset(arch):
    for mods in _subsets(arch):
        model = tiny_baseline(arch, mods).eval()
        batch = feature_batch({m: [3, 1, 5] for m in mods})
        assert set(model.input_keys) == {k for k in batch}
        logits = model(**batch)
        assert logits.shape == (3, 3) and torch.isfinite(logits).all(), mods
        feats = model.forward_features(**batch)
        assert set(feats) == set(mods) and all(f.shape[0] == 3 for f in feats.values())


@pytest.mark.parametrize("arch", BASELINE_ARCHS)
def test_every_parameter_gets_a_gradient(arch):
    model = tiny_baseline(arch).train()
    batch = feature_batch({"t": [4, 2], "a": [6, 3], "v": [2, 5]})
    model(**batch).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []
    if arch == "emoembs":  # the emotion embeddings are fixed word vectors, not parameters
        assert "emotion_embeddings" in dict(model.named_buffers())


@pytest.mark.parametrize("arch", BASELINE_ARCHS)
def test_padding_never_changes_results(arch):
    model = tiny_baseline(arch).eval()
    lengths = {"t": [3, 7, 1, 0], "a": [9, 2, 4, 5], "v": [2, 4, 0, 3]}
    together = model(**feature_batch(lengths, seed=1, pad_value=123.0))
    full = feature_batch(lengths, seed=1)
    for i in range(4):
        alone = {}
        for m, lens in lengths.items():
            name = NAMES[m]
            alone[f"{name}_feats"] = full[f"{name}_feats"][i : i + 1, : lens[i]]
            alone[f"{name}_mask"] = full[f"{name}_mask"][i : i + 1, : lens[i]]
        torch.testing.assert_close(model(**alone)[0], together[i], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", BASELINE_ARCHS)
def test_empty_sequences_give_finite_logits(arch):
    model = tiny_baseline(arch).eval()
    logits = model(**feature_batch({"t": [0, 0], "a": [0, 0], "v": [0, 0]}))
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    # By value: with nothing to read, every utterance gets the same logits, alone or beside
    # one that has features (so nothing leaks from padding or from a neighbour).
    torch.testing.assert_close(logits[0], logits[1])
    mixed = model(**feature_batch({"t": [0, 3], "a": [0, 4], "v": [0, 2]}, seed=5))
    torch.testing.assert_close(mixed[0], logits[0], atol=1e-6, rtol=1e-5)
    assert not torch.allclose(mixed[1], logits[1])


def test_mult_has_one_crossmodal_stack_per_ordered_pair():
    model = tiny_baseline("mult")
    assert isinstance(model, MulT)
    assert sorted(model.cross) == ["a2t", "a2v", "t2a", "t2v", "v2a", "v2t"]
    with pytest.raises(ValueError, match="at least two"):
        tiny_baseline("mult", "t")


def test_emoembs_scores_against_the_emotion_names_word_vectors():
    torch.manual_seed(0)
    table = emotion_word_embeddings(("ang", "hap", "neu"), pretrained=True)
    assert table.shape == (3, 384)  # MiniLM-L6's input embedding width
    # Spelt-out abbreviation: "ang" is embedded as "anger".
    torch.testing.assert_close(table[0], emotion_word_embeddings(("anger",))[0])
    model = tiny_baseline("emoembs", text_pretrained=True, text_overrides={}).eval()
    assert isinstance(model, EmoEmbs)
    torch.testing.assert_close(model.emotion_embeddings, table)
    batch = feature_batch({"t": [2], "a": [3], "v": [1]})
    scores = model.forward_modalities(**batch)
    fused = model.fusion.weight[0]
    expected = sum(w * scores[m] for w, m in zip(fused, "tav", strict=True))
    torch.testing.assert_close(model(**batch), expected)


def test_config_validation_and_round_trip():
    config = config_from_dict({"arch": "lf_transformer", **DIMS}, preset="tiny")
    assert isinstance(config, BaselineConfig) and config.hidden_dim == 16
    assert config_from_dict(config.to_dict()) == config
    assert input_keys("av") == ("audio_feats", "audio_mask", "visual_feats", "visual_mask")
    with pytest.raises(ValueError, match=r"model: unknown keys"):
        config_from_dict({"arch": "lf_lstm", "p": 0.5})
    with pytest.raises(ValueError, match="label names"):
        BaselineConfig(arch="emoembs", num_classes=2, label_names=("a", "b", "c"))
    with pytest.raises(ValueError, match="expected"):
        model = build_model(config)
        model(
            **{**feature_batch({"t": [1], "a": [1], "v": [1]}), "audio_feats": torch.ones(1, 1, 3)}
        )
