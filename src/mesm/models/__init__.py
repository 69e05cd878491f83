"""FE2E, MESM and the two-phase baselines as plain ``nn.Module``s built from typed configs.

FE2E and MESM are one class, :class:`EmotionModel`, whose config says which it is
(``arch="fe2e"``: dense pathways; ``arch="mesm"``: cross-modal sparse blocks).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mesm.models.baselines import BaselineConfig, BaselineModel
    from mesm.models.config import ModelConfig
    from mesm.models.emotion import EmotionModel

# Names re-exported from submodules, imported on first use so that reading a config (the CLI's
# parser, `mesm.models.config`) does not import torch.
_EXPORTS = {
    "BASELINE_ARCHS": "mesm.models.baselines",
    "BASELINE_PRESETS": "mesm.models.baselines",
    "BaselineConfig": "mesm.models.baselines",
    "BaselineModel": "mesm.models.baselines",
    "build_baseline": "mesm.models.baselines",
    "make_baseline_config": "mesm.models.baselines",
    "MODERN_TRANSFORMER": "mesm.models.config",
    "PRESETS": "mesm.models.config",
    "TINY_TEXT": "mesm.models.config",
    "ModelConfig": "mesm.models.config",
    "make_config": "mesm.models.config",
    "EmotionModel": "mesm.models.emotion",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mesm.models' has no attribute {name!r}")


def build_model(config: ModelConfig | BaselineConfig) -> EmotionModel | BaselineModel:
    """The model a config describes (FE2E or MESM; a baseline for a `BaselineConfig`)."""
    from mesm.models.baselines import BaselineConfig, build_baseline
    from mesm.models.emotion import EmotionModel

    if isinstance(config, BaselineConfig):
        return build_baseline(config)
    return EmotionModel(config)


def create_model(
    arch: str = "fe2e", preset: str = "paper", **overrides: Any
) -> EmotionModel | BaselineModel:
    """Builds "fe2e", "mesm" or a baseline ("lf_lstm", "lf_transformer", "mult", "emoembs")
    from a named preset ("paper", "tiny") plus config overrides.

    Example:
        >>> model = create_model("mesm", preset="tiny", modalities="tav", p=0.7)  # doctest: +SKIP
    """
    from mesm.models.baselines import BASELINE_ARCHS, build_baseline, make_baseline_config
    from mesm.models.config import make_config

    if arch in BASELINE_ARCHS:
        return build_baseline(make_baseline_config(arch, preset, **overrides))
    return build_model(make_config(arch, preset, **overrides))


def config_from_dict(
    d: dict[str, Any], preset: str | None = None, *, saved: bool = False
) -> ModelConfig | BaselineConfig:
    """The config a dict describes: a `BaselineConfig` when its arch is a baseline's.

    Args:
        d: config fields (as `to_dict` writes them, or a run config's model section).
        preset: named preset applied first ("paper", "tiny"); None = none.
        saved: `d` was written with a saved model (a checkpoint header): fields it lacks take
            the values of the mesm version that wrote it (`ModelConfig.from_saved`).
    """
    from mesm.models.baselines import BASELINE_ARCHS, BASELINE_PRESETS, BaselineConfig
    from mesm.models.config import PRESETS, ModelConfig

    baseline = d.get("arch") in BASELINE_ARCHS
    presets = BASELINE_PRESETS if baseline else PRESETS
    if preset is not None and preset not in presets:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(presets)}")
    fields = {**(presets[preset] if preset is not None else {}), **d}
    if baseline:
        return BaselineConfig.from_dict(fields)
    return ModelConfig.from_saved(fields) if saved else ModelConfig.from_dict(fields)


__all__ = [
    "BASELINE_ARCHS",
    "MODERN_TRANSFORMER",
    "PRESETS",
    "TINY_TEXT",
    "BaselineConfig",
    "BaselineModel",
    "EmotionModel",
    "ModelConfig",
    "build_model",
    "config_from_dict",
    "create_model",
    "make_config",
]
