"""One strict `from_dict` for every settings dataclass: unknown keys, types, round trips."""

from __future__ import annotations

import pytest

from mesm.data.handcrafted.features import FeatureSettings
from mesm.data.media.cache import PreprocessSettings
from mesm.errors import ConfigError
from mesm.models import BaselineConfig, ModelConfig
from mesm.settings import settings_from_dict, settings_to_dict
from mesm.training.config import DataConfig, OptimConfig, RunConfig, TrainerConfig

KINDS = [ModelConfig, BaselineConfig, PreprocessSettings, FeatureSettings]
# how each class's own from_dict names its settings in messages
NAMES = {ModelConfig: "model", PreprocessSettings: "preprocessing", FeatureSettings: "features"}


@pytest.mark.parametrize("kind", [*KINDS, DataConfig, OptimConfig, TrainerConfig])
def test_every_settings_class_round_trips_and_refuses_unknown_keys(kind):
    plain = settings_to_dict(kind())
    assert settings_from_dict(kind, plain) == kind()
    with pytest.raises(ConfigError, match=r"unknown keys \['colour'\] \(known: "):
        settings_from_dict(kind, {**plain, "colour": "red"})


@pytest.mark.parametrize("kind", KINDS)
def test_the_classes_own_from_dict_is_the_strict_one(kind):
    assert kind.from_dict(kind().to_dict()) == kind()
    with pytest.raises(ConfigError, match="unknown keys"):
        kind.from_dict({"colour": "red"})


@pytest.mark.parametrize(
    ("kind", "values", "message"),
    [
        (ModelConfig, {"p": "0.5"}, r"model\.p: expected a finite number, got '0\.5'"),
        (ModelConfig, {"p": float("nan")}, r"model\.p: expected a finite number"),
        (ModelConfig, {"num_classes": True}, r"model\.num_classes: expected an integer"),
        (ModelConfig, {"gating": "soft"}, r"model\.gating: expected one of 'none', 'gated'"),
        (ModelConfig, {"spec_shape": [128]}, r"model\.spec_shape: expected a list of 2"),
        (ModelConfig, {"stage_channels": [8, "x"]}, r"model\.stage_channels: expected a list"),
        (PreprocessSettings, {"log_mel": 1}, r"preprocessing\.log_mel: expected true or false"),
        (PreprocessSettings, {"n_mels": 0}, r"preprocessing: settings must be positive"),
        (FeatureSettings, {"audio_set": "x"}, r"features\.audio_set: expected one of"),
        (FeatureSettings, {"source": "imported"}, r"features: imported features need a name"),
    ],
)
def test_wrong_values_are_named(kind, values, message):
    with pytest.raises(ConfigError, match=message):
        settings_from_dict(kind, values, NAMES[kind])
    with pytest.raises(ConfigError, match=message):
        kind.from_dict(values)


def test_not_a_mapping_is_an_error():
    with pytest.raises(ConfigError, match="expected a mapping of settings, got"):
        settings_from_dict(PreprocessSettings, [1, 2], "preprocessing")
    assert issubclass(ConfigError, ValueError)  # callers that catch ValueError still do


def test_run_config_to_dict_is_plain_yaml():
    plain = RunConfig().to_dict()
    assert RunConfig.from_dict(plain) == RunConfig()
    assert isinstance(plain["trainer"], dict) and plain["model"]["preset"] == "paper"
