"""Every YAML in configs/ loads, validates and builds its model."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesm.data.handcrafted.features import FeatureSettings
from mesm.data.media.cache import PreprocessSettings
from mesm.models import BASELINE_ARCHS, EmotionModel, build_model
from mesm.training.config import load_run_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_there_are_paper_presets_for_both_datasets():
    names = {p.stem for p in CONFIGS}
    assert {"iemocap_fe2e", "iemocap_mesm", "mosei_fe2e", "mosei_mesm"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_loads_and_builds(path):
    config = load_run_config(path)
    model_config = config.model_config(num_classes=6, text_pretrained=False)
    model = build_model(model_config)
    is_mesm = isinstance(model, EmotionModel) and bool(model.attention_layers())
    assert is_mesm == (model_config.arch == "mesm")
    PreprocessSettings(**config.data.preprocess)  # valid preprocessing fields
    if model_config.arch in BASELINE_ARCHS:
        FeatureSettings.from_dict(config.data.features)  # valid feature fields
        # The paper's two-phase baselines: lr 5e-4, batch 32, 60 epochs, early stop 8, clip 2.
        assert (config.optim.lr, config.data.batch_size, config.optim.grad_clip) == (5e-4, 32, 2)
        assert (config.trainer.max_epochs, config.trainer.patience) == (60, 8)
    elif path.stem.startswith(("iemocap", "mosei")):
        assert config.optim.lr == 5e-5 and config.optim.text_lr_factor == 10
        assert (model_config.d_model, model_config.num_layers, model_config.num_heads) == (64, 4, 4)
        # The reference's sequence transformer and attention widths (see test_golden).
        c = model_config
        assert (c.ffn_dim, c.norm_first, c.final_norm, c.sequence_positions) == (
            2048,
            False,
            False,
            "none",
        )
        assert c.attention_dims == (64, 128, 256)
        assert config.data.max_text_length == 100
        assert config.data.preprocess["img_interval_ms"] == 500
        if model_config.arch == "mesm":
            assert model_config.p == (0.7 if path.stem.startswith("iemocap") else 0.5)
