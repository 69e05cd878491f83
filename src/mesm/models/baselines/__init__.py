"""Two-phase baselines over hand-crafted feature sequences (Dai et al. 2021, Table 2/3).

LF-LSTM, LF-Transformer (late fusion), MulT (Tsai et al. 2019) and EmoEmbs (Dai et al. 2020),
each a plain ``nn.Module`` built from a :class:`BaselineConfig`. Inputs: padded sequences
``{text,audio,visual}_feats`` (B, T, D) with bool masks ``..._mask`` (B, T), True = valid;
output: logits (B, K).
"""

from __future__ import annotations

from typing import Any

from mesm.models.baselines.base import BaselineModel, input_keys
from mesm.models.baselines.config import (
    BASELINE_ARCHS,
    BASELINE_PRESETS,
    DEFAULT_FEATURE_DIMS,
    BaselineConfig,
)
from mesm.models.baselines.emoembs import EMOTION_WORDS, EmoEmbs
from mesm.models.baselines.late_fusion import LFLSTM, LFTransformer
from mesm.models.baselines.mult import MulT

_CLASSES: dict[str, type[BaselineModel]] = {
    "lf_lstm": LFLSTM,
    "lf_transformer": LFTransformer,
    "mult": MulT,
    "emoembs": EmoEmbs,
}


def build_baseline(config: BaselineConfig) -> BaselineModel:
    """The baseline a config describes."""
    return _CLASSES[config.arch](config)


def make_baseline_config(
    arch: str = "lf_lstm", preset: str = "paper", **overrides: Any
) -> BaselineConfig:
    """Config of a baseline `arch` from a named preset ("paper", "tiny") plus overrides."""
    if preset not in BASELINE_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(BASELINE_PRESETS)}")
    return BaselineConfig.from_dict({**BASELINE_PRESETS[preset], **overrides, "arch": arch})


__all__ = [
    "BASELINE_ARCHS",
    "BASELINE_PRESETS",
    "DEFAULT_FEATURE_DIMS",
    "EMOTION_WORDS",
    "LFLSTM",
    "BaselineConfig",
    "BaselineModel",
    "EmoEmbs",
    "LFTransformer",
    "MulT",
    "build_baseline",
    "input_keys",
    "make_baseline_config",
]
