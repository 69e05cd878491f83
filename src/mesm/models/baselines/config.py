"""Typed configuration of the two-phase baselines (hand-crafted feature sequences → model)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from mesm.settings import DictSettings

BaselineArch = Literal["lf_lstm", "lf_transformer", "mult", "emoembs"]
BASELINE_ARCHS: tuple[str, ...] = ("lf_lstm", "lf_transformer", "mult", "emoembs")

# Feature widths of `mesm.data.handcrafted.features` with its default settings: eGeMAPS LLDs
# (25), the face descriptor (5 box + 10 landmark values + 900 HOG), the MiniLM-L6 input
# embeddings (384).
DEFAULT_FEATURE_DIMS = {"audio_dim": 25, "visual_dim": 915, "text_dim": 384}


@dataclass
class BaselineConfig(DictSettings):
    """Everything needed to build a baseline; validated on construction.

    Attributes:
        arch: "lf_lstm", "lf_transformer", "mult" or "emoembs".
        modalities: any non-empty subset of "tav" (MulT needs at least two).
        num_classes: K, number of emotions (one sigmoid output each).
        label_names: the K emotion names (EmoEmbs embeds them; empty: random emotion
            embeddings, used by config checks before a dataset is known).
        audio_dim: width of the audio feature vectors.
        visual_dim: width of the visual feature vectors.
        text_dim: width of the text feature vectors.
        hidden_dim: d, width of every sequence encoder (an LSTM's per-direction width).
        num_layers: LSTM layers, or transformer layers per encoder (MulT: per crossmodal and
            per self-attention stack).
        num_heads: attention heads.
        ffn_dim: feed-forward width of the transformer layers.
        dropout: dropout inside the encoders and before the output layers.
        bidirectional: LSTMs read both directions (LF-LSTM, EmoEmbs).
        text_model: where EmoEmbs takes the emotion words' embeddings (None: the offline
            MiniLM-L6 default); the other baselines ignore it.
        text_pretrained: use the text model's trained embedding table (False: random, for tests).
        text_overrides: config fields overriding the text model's (e.g. a tiny table).
    """

    section: ClassVar[str] = "model"

    arch: BaselineArch = "lf_lstm"
    modalities: str = "tav"
    num_classes: int = 6
    label_names: tuple[str, ...] = ()
    audio_dim: int = DEFAULT_FEATURE_DIMS["audio_dim"]
    visual_dim: int = DEFAULT_FEATURE_DIMS["visual_dim"]
    text_dim: int = DEFAULT_FEATURE_DIMS["text_dim"]
    hidden_dim: int = 64
    num_layers: int = 2
    num_heads: int = 4
    ffn_dim: int = 256
    dropout: float = 0.1
    bidirectional: bool = True
    text_model: str | None = None
    text_pretrained: bool = True
    text_overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.label_names = tuple(str(n) for n in self.label_names)
        if self.arch not in BASELINE_ARCHS:
            raise ValueError(f"arch must be one of {BASELINE_ARCHS}, got {self.arch!r}")
        mods = self.modalities
        if not mods or set(mods) - set("tav") or len(set(mods)) != len(mods):
            raise ValueError(f"modalities must be a non-empty subset of 'tav', got {mods!r}")
        if self.arch == "mult" and len(mods) < 2:
            raise ValueError("MulT's crossmodal attention needs at least two modalities")
        if self.label_names and len(self.label_names) != self.num_classes:
            raise ValueError(f"{len(self.label_names)} label names for {self.num_classes} classes")
        sizes = ("num_classes", "audio_dim", "visual_dim", "text_dim", "hidden_dim", "num_layers")
        bad = [n for n in (*sizes, "num_heads", "ffn_dim") if int(getattr(self, n)) < 1]
        if bad:
            raise ValueError(f"must be positive: {bad}")
        if self.hidden_dim % self.num_heads:
            raise ValueError(f"hidden_dim {self.hidden_dim} is not divisible by num_heads")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def feature_dims(self) -> dict[str, int]:
        """{"t"|"a"|"v": input width} for the model's modalities."""
        dims = {"t": self.text_dim, "a": self.audio_dim, "v": self.visual_dim}
        return {m: dims[m] for m in "tav" if m in self.modalities}


# Named presets: plain dicts of overrides on the defaults.
BASELINE_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "tiny": {"hidden_dim": 16, "num_layers": 1, "num_heads": 2, "ffn_dim": 32},
}
