"""Late-fusion baselines: one sequence encoder per modality, representations concatenated.

LF-LSTM and LF-Transformer are the late-fusion baselines of Tsai et al. 2019 ("Multimodal
Transformer for Unaligned Multimodal Language Sequences", ACL) that Dai et al. 2021 compare
against on hand-crafted features: each modality's feature sequence is summarised on its own
(a (bi)LSTM's final states, or a transformer encoder's mean over valid positions) and the
summaries are fused only at the end, by an MLP over their concatenation.

Differences from the MulT code base: raw features are LayerNorm-ed per position first (openSMILE
descriptors, HOG and word vectors live on very different scales), and padding is masked rather
than relying on zero-padded inputs.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mesm.models.baselines.base import BaselineModel
from mesm.models.baselines.blocks import LateFusionHead, LSTMEncoder, TransformerEncoder
from mesm.models.baselines.config import BaselineConfig


class _LateFusion(BaselineModel):
    encoders: nn.ModuleDict

    def _build_head(self) -> None:
        c = self.config
        width = sum(enc.out_features for enc in self.encoders.values())
        self.head = LateFusionHead(width, c.hidden_dim, c.num_classes, c.dropout)

    def forward_features(self, **inputs: Tensor | None) -> dict[str, Tensor]:
        """Per-modality utterance representations {"t"|"a"|"v": (B, D_m)}.

        Args:
            **inputs: ``{text,audio,visual}_feats`` (B, T, D) and ``..._mask`` (B, T) bool.
        """
        seqs = self.gather(**inputs)
        return {m: self.encoders[m](*seqs[m]) for m in self.modalities}

    def forward(self, **inputs: Tensor | None) -> Tensor:
        """Logits (B, K) from padded feature sequences (keys as in `forward_features`)."""
        feats = self.forward_features(**inputs)
        return self.head(torch.cat([feats[m] for m in self.modalities], dim=-1))


class LFLSTM(_LateFusion):
    """Late-fusion (bi)LSTM: a (bi)LSTM per modality, concatenated final states, MLP.

    Args:
        config: a :class:`BaselineConfig` with arch "lf_lstm".
    """

    def __init__(self, config: BaselineConfig) -> None:
        super().__init__(config)
        c = config
        self.encoders = nn.ModuleDict(
            {
                m: LSTMEncoder(d, c.hidden_dim, c.num_layers, c.bidirectional, c.dropout)
                for m, d in c.feature_dims.items()
            }
        )
        self._build_head()


class LFTransformer(_LateFusion):
    """Late-fusion transformer: a transformer encoder per modality, mean-pooled, concatenated, MLP.

    Args:
        config: a :class:`BaselineConfig` with arch "lf_transformer".
    """

    def __init__(self, config: BaselineConfig) -> None:
        super().__init__(config)
        c = config
        self.encoders = nn.ModuleDict(
            {
                m: TransformerEncoder(
                    d, c.hidden_dim, c.num_layers, c.num_heads, c.ffn_dim, c.dropout
                )
                for m, d in c.feature_dims.items()
            }
        )
        self._build_head()
