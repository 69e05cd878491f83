"""Blocks shared by the baselines: masked sequence encoders, attention, pooling.

Every block takes padded sequences (B, T, D) with a bool mask (B, T), True = valid, and its
output at valid positions depends only on the valid positions of the same sequence, so padding
never changes a result. An empty sequence (no valid position) is encoded as one zero vector and
its pooled representation is zero (see `ensure_nonempty`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from mesm.models.layers import sinusoidal_positions


def ensure_nonempty(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Zero the padding and give every sequence at least one valid position.

    Attention over a sequence without valid keys is undefined (softmax of -inf only) and
    `pack_padded_sequence` refuses length 0, so an empty sequence gets one zero vector at
    position 0; the same rule applies alone or inside a batch, so results stay padding-free.

    Args:
        x: (B, T, D) features; T may be 0.
        mask: (B, T) bool, True = valid.

    Returns:
        x (B, max(T, 1), D) with zeros at padding, and the mask with position 0 valid for
        empty sequences.
    """
    if x.shape[1] == 0:
        x = x.new_zeros(x.shape[0], 1, x.shape[2])
        mask = mask.new_zeros(mask.shape[0], 1)
    x = x.masked_fill(~mask[..., None], 0.0)
    mask = mask.clone()
    mask[:, 0] |= ~mask.any(dim=1)
    return x, mask


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """(B, T, D) → (B, D) mean over valid positions (zero for a sequence without any)."""
    weights = mask.to(x.dtype)[..., None]
    return (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def last_valid(x: Tensor, mask: Tensor) -> Tensor:
    """(B, T, D) → (B, D) the state at each sequence's last valid position (masks are prefixes)."""
    index = (mask.long().sum(1) - 1).clamp(min=0)
    return x[torch.arange(x.shape[0], device=x.device), index]


class AttentionLayer(nn.Module):
    """Pre-norm transformer layer; self-attention (``source=None``) or crossmodal attention.

    Crossmodal (MulT): queries from the target sequence, keys/values from the source sequence,
    each layer-normalised first. The attention probabilities pass through ``self.attn`` (an
    ``nn.MultiheadAttention``), the one named place to hook.

    Args:
        dim: width d of both sequences.
        num_heads: attention heads.
        ffn_dim: feed-forward width.
        dropout: dropout on attention weights and residual branches.
        crossmodal: attend to a separate source sequence (with its own LayerNorm).
    """

    def __init__(
        self, dim: int, num_heads: int, ffn_dim: int, dropout: float, crossmodal: bool = False
    ) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim) if crossmodal else None
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        mask: Tensor,
        source: Tensor | None = None,
        source_mask: Tensor | None = None,
    ) -> Tensor:
        """(B, T, d) target + (B, S, d) source (default: the target) → (B, T, d).

        Args:
            x: (B, T, d) queries.
            mask: (B, T) bool, True = valid (padding rows are zeroed on output).
            source: (B, S, d) keys/values; None = self-attention.
            source_mask: (B, S) bool, at least one True per row.
        """
        q = self.norm_q(x)
        if (source is None) != (self.norm_kv is None):
            raise ValueError("a crossmodal layer needs a source; a self-attention layer none")
        if source is None or self.norm_kv is None:
            kv, kv_mask = q, mask
        else:
            kv, kv_mask = self.norm_kv(source), source_mask
        out, _ = self.attn(q, kv, kv, key_padding_mask=~kv_mask, need_weights=False)
        x = x + self.dropout(out)
        x = x + self.dropout(self.ffn(self.norm_ffn(x)))
        return x.masked_fill(~mask[..., None], 0.0)


class TransformerStack(nn.Module):
    """`num_layers` AttentionLayers (self or crossmodal) and a final LayerNorm.

    Args:
        dim: width d.
        num_layers: layers.
        num_heads: attention heads.
        ffn_dim: feed-forward width.
        dropout: dropout rate.
        crossmodal: every layer attends to a source sequence (MulT's crossmodal transformer).
    """

    def __init__(
        self,
        dim: int,
        num_layers: int,
        num_heads: int,
        ffn_dim: int,
        dropout: float,
        crossmodal: bool = False,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            AttentionLayer(dim, num_heads, ffn_dim, dropout, crossmodal) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(
        self,
        x: Tensor,
        mask: Tensor,
        source: Tensor | None = None,
        source_mask: Tensor | None = None,
    ) -> Tensor:
        """(B, T, d) → (B, T, d); see `AttentionLayer.forward`."""
        for layer in self.layers:
            x = layer(x, mask, source, source_mask)
        return self.norm(x)


class InputProjection(nn.Module):
    """Per-position LayerNorm of raw features (their scales differ wildly), then a linear map to
    d and, optionally, sinusoidal positions: (B, T, D_in) → (B, T, d).

    Args:
        in_features: D_in.
        dim: d.
        use_positions: add sinusoidal position encodings.
        dropout: dropout on the result.
    """

    def __init__(
        self, in_features: int, dim: int, use_positions: bool = True, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_features)
        self.proj = nn.Linear(in_features, dim)
        self.use_positions = use_positions
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(self.norm(x))
        if self.use_positions:
            x = x + sinusoidal_positions(x.shape[1], x.shape[2], x.device)
        return self.dropout(x)


class LSTMEncoder(nn.Module):
    """A (bi)LSTM over the valid positions; the final states summarise the sequence.

    Args:
        in_features: D_in.
        hidden: per-direction width.
        num_layers: stacked layers.
        bidirectional: read both directions.
        dropout: between layers.

    Attributes:
        out_features: hidden × directions.
    """

    def __init__(
        self, in_features: int, hidden: int, num_layers: int, bidirectional: bool, dropout: float
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_features)
        self.lstm = nn.LSTM(
            in_features,
            hidden,
            num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.directions = 2 if bidirectional else 1
        self.out_features = hidden * self.directions

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """(B, T, D_in) + (B, T) mask → (B, hidden × directions) last-layer final states."""
        empty = ~mask.any(dim=1)
        x, mask = ensure_nonempty(x, mask)
        lengths = mask.long().sum(1).cpu()
        packed = pack_padded_sequence(self.norm(x), lengths, batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(packed)  # (layers × directions, B, hidden), batch order restored
        last = h[-self.directions :].transpose(0, 1).reshape(x.shape[0], -1)
        return last.masked_fill(empty[:, None], 0.0)


class TransformerEncoder(nn.Module):
    """Input projection + self-attention stack + masked mean pooling.

    Args:
        in_features: D_in.
        dim: d.
        num_layers: layers.
        num_heads: heads.
        ffn_dim: feed-forward width.
        dropout: dropout rate.
    """

    def __init__(
        self,
        in_features: int,
        dim: int,
        num_layers: int,
        num_heads: int,
        ffn_dim: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.input = InputProjection(in_features, dim, dropout=dropout)
        self.stack = TransformerStack(dim, num_layers, num_heads, ffn_dim, dropout)
        self.out_features = dim

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """(B, T, D_in) + (B, T) mask → (B, d)."""
        empty = ~mask.any(dim=1)
        x, mask = ensure_nonempty(x, mask)
        h = self.stack(self.input(x), mask)
        return masked_mean(h, mask).masked_fill(empty[:, None], 0.0)


class LateFusionHead(nn.Sequential):
    """Concatenated modality representations → hidden → K logits: (B, ΣD) → (B, K)."""

    def __init__(self, in_features: int, hidden: int, num_classes: int, dropout: float) -> None:
        super().__init__(
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
