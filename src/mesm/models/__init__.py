"""FE2E and MESM as plain ``nn.Module``s built from a typed config."""

from __future__ import annotations

from typing import Any

from mesm.models.config import PRESETS, TINY_TEXT, ModelConfig, make_config
from mesm.models.fe2e import FE2E
from mesm.models.mesm import MESM


def build_model(config: ModelConfig) -> FE2E:
    """The model a config describes (FE2E or MESM)."""
    return MESM(config) if config.mesm else FE2E(config)


def create_model(arch: str = "fe2e", preset: str = "paper", **overrides: Any) -> FE2E:
    """Builds "fe2e" or "mesm" from a named preset ("paper", "tiny") plus config overrides.

    Example:
        >>> model = create_model("mesm", preset="tiny", modalities="tav", p=0.7)  # doctest: +SKIP
    """
    return build_model(make_config(arch, preset, **overrides))


__all__ = [
    "FE2E",
    "MESM",
    "PRESETS",
    "TINY_TEXT",
    "ModelConfig",
    "build_model",
    "create_model",
    "make_config",
]
