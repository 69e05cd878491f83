"""MulT: the Multimodal Transformer (Tsai et al. 2019, "Multimodal Transformer for Unaligned
Multimodal Language Sequences", ACL).

Each modality's feature sequence is projected to width d (a 1-D convolution of kernel 1 in the
paper: a per-position linear map) and given sinusoidal positions. For every target modality m and
every other modality n, a crossmodal transformer lets m's sequence attend to n's (queries from m,
keys/values from n, `num_layers` layers); the crossmodal outputs for m are concatenated along the
features (width (M-1)·d) and pass a self-attention transformer; its state at the last valid step
summarises m. The summaries of all targets are concatenated and go through the paper's output
layer (a residual two-layer MLP) and a linear classifier.

Differences from the reference code: no embedding/attention dropout variants per modality (one
`dropout`), pre-norm layers with a key-padding mask instead of zero-padded keys, and the raw
features are LayerNorm-ed per position before the projection.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mesm.models.baselines.base import BaselineModel
from mesm.models.baselines.blocks import (
    InputProjection,
    TransformerStack,
    ensure_nonempty,
    last_valid,
)
from mesm.models.baselines.config import BaselineConfig


class MulT(BaselineModel):
    """Crossmodal transformers into every modality, self-attention, concatenation, output layer.

    Args:
        config: a :class:`BaselineConfig` with arch "mult" and at least two modalities.

    Module names: ``inputs[m]`` projections, ``cross["{n}2{m}"]`` crossmodal stacks (source n
    into target m), ``self_attn[m]``, then ``out_proj1``, ``out_proj2``, ``classifier``.
    """

    def __init__(self, config: BaselineConfig) -> None:
        super().__init__(config)
        c = config
        d = c.hidden_dim
        mods = self.modalities
        self.inputs = nn.ModuleDict(
            {
                m: InputProjection(dim_in, d, dropout=c.dropout)
                for m, dim_in in c.feature_dims.items()
            }
        )
        self.cross = nn.ModuleDict(
            {
                f"{n}2{m}": TransformerStack(
                    d, c.num_layers, c.num_heads, c.ffn_dim, c.dropout, crossmodal=True
                )
                for m in mods
                for n in mods
                if n != m
            }
        )
        width = (len(mods) - 1) * d
        self.self_attn = nn.ModuleDict(
            {
                m: TransformerStack(
                    width, c.num_layers, _heads(width, c.num_heads), 2 * c.ffn_dim, c.dropout
                )
                for m in mods
            }
        )
        fused = len(mods) * width
        self.out_proj1 = nn.Linear(fused, fused)
        self.out_proj2 = nn.Linear(fused, fused)
        self.out_dropout = nn.Dropout(c.dropout)
        self.classifier = nn.Linear(fused, c.num_classes)

    def forward_features(self, **inputs: Tensor | None) -> dict[str, Tensor]:
        """Per-target summaries {"t"|"a"|"v": (B, (M-1)·d)}.

        Args:
            **inputs: ``{text,audio,visual}_feats`` (B, T, D) and ``..._mask`` (B, T) bool.
        """
        gathered = self.gather(**inputs)
        empty = {m: ~mask.any(dim=1) for m, (_, mask) in gathered.items()}
        seqs = {m: ensure_nonempty(x, mask) for m, (x, mask) in gathered.items()}
        proj = {m: (self.inputs[m](x), mask) for m, (x, mask) in seqs.items()}
        out = {}
        for m in self.modalities:
            target, mask = proj[m]
            crossed = [
                self.cross[f"{n}2{m}"](target, mask, *proj[n]) for n in self.modalities if n != m
            ]
            h = self.self_attn[m](torch.cat(crossed, dim=-1), mask)
            out[m] = last_valid(h, mask).masked_fill(empty[m][:, None], 0.0)
        return out

    def forward(self, **inputs: Tensor | None) -> Tensor:
        """Logits (B, K) from padded feature sequences (keys as in `forward_features`)."""
        feats = self.forward_features(**inputs)
        h = torch.cat([feats[m] for m in self.modalities], dim=-1)
        residual = self.out_proj2(self.out_dropout(torch.relu(self.out_proj1(h))))
        return self.classifier(h + residual)


def _heads(width: int, wanted: int) -> int:
    """The most heads <= wanted that divide `width`."""
    return max(h for h in range(1, wanted + 1) if width % h == 0)
