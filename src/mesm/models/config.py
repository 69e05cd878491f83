"""Typed configuration of FE2E / MESM and the named presets."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from mesm.errors import ConfigError
from mesm.settings import DictSettings

Arch = Literal["fe2e", "mesm"]
Gating = Literal["none", "gated"]
SparseBackend = Literal["torch", "spconv"]
Positions = Literal["none", "sinusoidal"]

_CHOICES = {
    "arch": ("fe2e", "mesm"),
    "gating": ("none", "gated"),
    "sparse_backend": ("torch", "spconv"),
    "sequence_positions": ("none", "sinusoidal"),
}


# MESM's nucleus mass unless a config, a checkpoint or the user says otherwise (the paper's).
DEFAULT_P = 0.7


def check_p(p: float) -> float:
    """`p` as a float, or a ConfigError (a ValueError) when it is not a nucleus mass: a number
    > 0, where >= 1 keeps every site. Every place that takes a p (config, ``set_p``, the sweep,
    the command line) checks it here."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p < math.inf:
        raise ConfigError(f"p must be a finite number > 0 (>= 1 keeps every site), got {p!r}")
    return float(p)


@dataclass
class ModelConfig(DictSettings):
    """Everything needed to build a model; validated on construction.

    Attributes:
        arch: "fe2e" (dense) or "mesm" (cross-modal attention + top-p + sparse CNN stages).
        modalities: any non-empty subset of "tav" (text, audio, visual), in any order.
        num_classes: K, number of emotions (one sigmoid output each).
        text_model: Hugging Face model name or folder; None = the offline MiniLM-L6 default.
        text_pretrained: load the text weights (False: random init from the model's config,
            used by tests and for ablations).
        text_overrides: config fields overriding the text model's (e.g. a tiny random encoder).
        face_size: H = W of the face crops.
        face_channels: channels of the face crops (3, RGB).
        spec_shape: (H, W) of a mel chunk (mels, frames).
        low_channels: channels of the low-level CNN.
        stage_channels: channels of the VGG stages (each ends with a 2x2 max-pool).
        mlp_hidden: hidden width of the MLP between the CNN and the sequence transformer.
        d_model: width of the sequence transformer.
        num_layers: layers of the sequence transformer.
        num_heads: heads of the sequence transformer.
        ffn_dim: feed-forward width of the sequence transformer (the paper: 2048, PyTorch's
            ``TransformerEncoderLayer`` default).
        norm_first: pre-norm layers (True) instead of the paper's post-norm (False).
        final_norm: a LayerNorm after the last layer (the paper has none).
        sequence_positions: "none" (the paper: the frames/chunks are a set) or "sinusoidal"
            positions added to the frame features.
        dropout: dropout in the MLP, the transformer and before the heads.
        p: nucleus mass kept by each cross-modal attention layer (MESM); >= 1 keeps all sites.
        gating: "none" = the paper (kept features pass unscaled; the attention layers get no
            gradient), "gated" = kept features scaled by attention / max attention of the frame.
        attention_dim: hidden width of the additive attention of each MESM layer: "channels"
            (the paper: the channels of the map it scores, e.g. 64, 128, 256), one int for all
            layers, or one int per layer.
        sparse_backend: "torch" (built in) or "spconv".
    """

    section: ClassVar[str] = "model"

    arch: Arch = "fe2e"
    modalities: str = "tav"
    num_classes: int = 6
    text_model: str | None = None
    text_pretrained: bool = True
    text_overrides: dict[str, Any] = field(default_factory=dict)
    face_size: int = 48
    face_channels: int = 3
    spec_shape: tuple[int, int] = (128, 32)
    low_channels: int = 64
    stage_channels: tuple[int, ...] = (128, 256, 512)
    mlp_hidden: int = 1024
    d_model: int = 64
    num_layers: int = 4
    num_heads: int = 4
    ffn_dim: int = 2048
    norm_first: bool = False
    final_norm: bool = False
    sequence_positions: Positions = "none"
    dropout: float = 0.1
    p: float = DEFAULT_P
    gating: Gating = "none"
    attention_dim: int | str | tuple[int, ...] = "channels"
    sparse_backend: SparseBackend = "torch"

    def __post_init__(self) -> None:
        self.spec_shape = tuple(int(v) for v in self.spec_shape)
        self.stage_channels = tuple(int(v) for v in self.stage_channels)
        if isinstance(self.attention_dim, list | tuple):
            self.attention_dim = tuple(int(v) for v in self.attention_dim)
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        mods = self.modalities
        if not mods or set(mods) - set("tav") or len(set(mods)) != len(mods):
            raise ValueError(f"modalities must be a non-empty subset of 'tav', got {mods!r}")
        if self.arch == "mesm" and "t" not in mods:
            raise ValueError(
                "MESM needs the text modality: its cross-modal attention is driven by the text "
                f"feature (modalities={mods!r}); use arch='fe2e' without text"
            )
        check_p(self.p)
        if not self.stage_channels:
            raise ValueError("stage_channels must name at least one stage")
        factor = 2 ** (1 + len(self.stage_channels))
        for name, shape in (("face_size", (self.face_size,) * 2), ("spec_shape", self.spec_shape)):
            if len(shape) != 2 or any(s < factor or s % factor for s in shape):
                raise ValueError(
                    f"{name} {shape} must be a multiple of {factor} (one low-level pool and "
                    f"{len(self.stage_channels)} stage pools of 2)"
                )
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by num_heads")
        for name in ("norm_first", "final_norm"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        self.attention_dims  # noqa: B018 - validates attention_dim

    @property
    def attention_dims(self) -> tuple[int, ...]:
        """Hidden width of each cross-modal attention layer (one per stage, in order)."""
        scored = (self.low_channels, *self.stage_channels[:-1])  # the map before each stage
        a = self.attention_dim
        if a == "channels":
            return scored
        if isinstance(a, int) and not isinstance(a, bool) and a > 0:
            return (a,) * len(scored)
        if isinstance(a, tuple) and len(a) == len(scored) and all(v > 0 for v in a):
            return a
        raise ValueError(
            f"attention_dim must be 'channels', a positive int or {len(scored)} positive ints "
            f"(one per stage), got {a!r}"
        )

    @property
    def mesm(self) -> bool:
        return self.arch == "mesm"

    @classmethod
    def from_saved(cls, d: dict[str, Any]) -> ModelConfig:
        """The config of a saved model: fields it lacks take the values that the version which
        wrote it used, not today's defaults, so an old checkpoint builds the network it was
        trained as (see :data:`LEGACY_FIELDS`)."""
        return cls.from_dict({**LEGACY_FIELDS, **d})


# The sequence transformer of mesm <= 0.1.0 checkpoints, which do not record these fields
# (`ffn_dim` and `attention_dim` were always recorded).
LEGACY_FIELDS: dict[str, Any] = {
    "norm_first": True,
    "final_norm": True,
    "sequence_positions": "sinusoidal",
}

# The sequence transformer that mesm used before it followed the paper: pre-norm, a final
# LayerNorm, sinusoidal positions, a narrower feed-forward (4 x d_model for the paper's d = 64).
MODERN_TRANSFORMER: dict[str, Any] = {
    "norm_first": True,
    "final_norm": True,
    "sequence_positions": "sinusoidal",
    "ffn_dim": 256,
}

# Named presets: plain dicts of overrides on the defaults (which are the paper's network).
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "tiny": {
        "low_channels": 8,
        "stage_channels": (16, 16, 32),
        "mlp_hidden": 64,
        "d_model": 32,
        "num_layers": 1,
        "num_heads": 2,
        "ffn_dim": 64,
        "attention_dim": 16,
    },
}

# A random-init text encoder small enough for unit tests (with the default MiniLM tokenizer).
TINY_TEXT = {
    "text_pretrained": False,
    "text_overrides": {
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 64,
    },
}


def make_config(arch: Arch = "fe2e", preset: str = "paper", **overrides: Any) -> ModelConfig:
    """Config of `arch` from a named preset plus keyword overrides."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    return ModelConfig.from_dict({**PRESETS[preset], **overrides, "arch": arch})
