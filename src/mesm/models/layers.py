"""Building blocks of the visual and audio pathways (dense and sparse twins share parameters)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mesm.sparse import (
    Backend,
    SparseMap,
    compute_dtype,
    conv3x3_weight_matrix,
    sparse_batch_norm,
    sparse_max_pool2x2,
    sparse_relu,
    submanifold_conv3x3,
)


class ConvBNReLU(nn.Module):
    """conv (no bias, "same" padding) → BatchNorm → ReLU; the 3x3 version also runs sparse.

    In eval mode (running statistics) the batch norm is folded into the convolution's weight and
    bias, dense and sparse alike: conv(x, w·s, b·s + β - μ·s) with s = γ / sqrt(σ² + ε) equals
    BN(conv(x, w, b)) up to float rounding, one pass over the output instead of two. Without
    autograd the folded pair is cached until a parameter or statistic changes.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels)
        # (key of the tensors folded, weight, bias, {dtype: GEMM matrix of the sparse engine})
        self._folded: list | None = None

    def folds(self) -> bool:
        """Whether this forward uses the folded conv (eval mode with running statistics)."""
        bn = self.bn
        return not self.training and bn.track_running_stats and bn.running_mean is not None

    def folded(self) -> tuple[Tensor, Tensor]:
        """The conv weight (C_out, C_in, k, k) and bias (C_out,) with the BN folded in."""
        tensors = [
            t
            for t in (self.conv.weight, self.conv.bias, self.bn.weight, self.bn.bias)
            if t is not None
        ] + [self.bn.running_mean, self.bn.running_var]
        key = None
        if not torch.is_grad_enabled():
            try:  # inference tensors (made under inference_mode) have no version counter
                key = tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in tensors)
            except RuntimeError:
                key = None
            if key is not None and self._folded is not None and self._folded[0] == key:
                return self._folded[1], self._folded[2]
        self._folded = None
        bn = self.bn
        scale = torch.rsqrt(bn.running_var + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight
        weight = self.conv.weight * scale.view(-1, 1, 1, 1)
        bias = -bn.running_mean * scale
        if bn.bias is not None:
            bias = bias + bn.bias
        if self.conv.bias is not None:
            bias = bias + self.conv.bias * scale
        if key is not None:
            self._folded = [key, weight, bias, None]
        return weight, bias

    def _folded_matrix(self, weight: Tensor, dtype: torch.dtype) -> Tensor | None:
        """The sparse engine's GEMM operand of the folded weight in the compute `dtype` (bf16
        under autocast), kept with the cached fold: one cast and transpose per weight change,
        not per forward."""
        if self._folded is None or self._folded[1] is not weight:
            return None
        if self._folded[3] is None:
            self._folded[3] = {}
        if dtype not in self._folded[3]:
            self._folded[3][dtype] = conv3x3_weight_matrix(weight.to(dtype))
        return self._folded[3][dtype]

    def forward(self, x: Tensor) -> Tensor:
        """(F, C_in, H, W) → (F, C_out, H, W)."""
        if self.folds():
            weight, bias = self.folded()
            out = F.conv2d(x, weight, bias, padding=self.conv.padding)
        else:
            out = self.bn(self.conv(x))
        return F.relu(out, inplace=True)  # a fresh tensor: conv and BN keep their inputs

    def forward_sparse(self, x: SparseMap, backend: Backend = "torch") -> SparseMap:
        """The same layer on active sites only (submanifold conv, BN over active sites)."""
        if self.folds():
            weight, bias = self.folded()
            matrix = self._folded_matrix(weight, compute_dtype(x.features, weight))
            return submanifold_conv3x3(x, weight, bias, backend, relu=True, weight_matrix=matrix)
        x = submanifold_conv3x3(x, self.conv.weight, self.conv.bias, backend)
        return sparse_relu(sparse_batch_norm(x, self.bn), inplace=True)


class VGGBlock(nn.Sequential):
    """conv3x3-BN-ReLU twice."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            ConvBNReLU(in_channels, out_channels), ConvBNReLU(out_channels, out_channels)
        )

    def forward_sparse(self, x: SparseMap, backend: Backend = "torch") -> SparseMap:
        for layer in self:
            x = layer.forward_sparse(x, backend)
        return x


class VGGStage(nn.Module):
    """A VGG block followed by a 2x2 max-pool; dense or sparse with the same weights."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.block = VGGBlock(in_channels, out_channels)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: Tensor) -> Tensor:
        """(F, C_in, H, W) → (F, C_out, H/2, W/2)."""
        return self.pool(self.block(x))

    def forward_sparse(self, x: SparseMap, backend: Backend = "torch") -> SparseMap:
        """Active sites on (H, W) → active sites on (H/2, W/2) with C_out features."""
        # The block ends with a ReLU: its features are >= 0.
        return sparse_max_pool2x2(self.block.forward_sparse(x, backend), backend, nonnegative=True)


class LowLevelCNN(nn.Sequential):
    """5x5 conv to C, BN, ReLU, 2x2 max-pool, two VGG blocks at C: (F,C_in,H,W) → (F,C,H/2,W/2).

    The maps after the first conv are channels-last (``channels_last=True``): the layout in which
    the CPU convolutions and max-pools run fastest (max-pool about 9x faster than on NCHW,
    measured), and the one a :class:`SparseMap` reads without a copy. A 1-channel input (mel
    chunks) is both NCHW and channels-last, so the layout is set on the first conv's output.
    """

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__(
            ConvBNReLU(in_channels, channels, kernel_size=5),
            nn.MaxPool2d(2),
            VGGBlock(channels, channels),
            VGGBlock(channels, channels),
        )
        self.channels_last = True

    def forward(self, x: Tensor) -> Tensor:
        """(F, C_in, H, W) → (F, C, H/2, W/2)."""
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        x = self[0](x.contiguous(memory_format=layout))
        x = x.contiguous(memory_format=layout)
        for layer in list(self)[1:]:
            x = layer(x)
        return x


class MLP(nn.Sequential):
    """Flattened CNN features → hidden → d: (F, C·H·W) → (F, d)."""

    def __init__(self, in_features: int, hidden: int, out_features: int, dropout: float) -> None:
        super().__init__(
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, out_features),
        )


def sinusoidal_positions(length: int, dim: int, device: torch.device) -> Tensor:
    """(length, dim) fixed sinusoidal position encodings (no maximum length)."""
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(
        torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim)
    )
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq)[:, : dim // 2]
    return table


def pad_sequences(flat: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """Flat per-frame rows → a padded batch, without a Python loop over utterances.

    Args:
        flat: (ΣT, d) rows of all utterances, utterance after utterance.
        lengths: (B,) int64 rows per utterance (zeros allowed).

    Returns:
        padded (B, T_max, d) with zeros at padding, and mask (B, T_max) bool, True = valid.
    """
    batch = lengths.numel()
    if int(lengths.sum()) != flat.shape[0]:
        raise ValueError(f"lengths sum to {int(lengths.sum())} but there are {flat.shape[0]} rows")
    t_max = int(lengths.max()) if batch else 0
    owner = torch.repeat_interleave(torch.arange(batch, device=flat.device), lengths)
    position = (
        torch.arange(flat.shape[0], device=flat.device)
        - (torch.cumsum(lengths, 0) - lengths)[owner]
    )
    padded = flat.new_zeros(batch, t_max, flat.shape[1])
    padded[owner, position] = flat
    mask = torch.arange(t_max, device=flat.device)[None, :] < lengths[:, None]
    return padded, mask


class SequenceTransformer(nn.Module):
    """Transformer encoder over each utterance's frames with a learned CLS token.

    The defaults are the paper's: ``nn.TransformerEncoderLayer`` post-norm layers, no norm after
    the last one and no positions (the frames/chunks of an utterance are treated as a set). The
    CLS token is prepended to every utterance and padding is masked out of the attention, so
    an utterance's output does not depend on the batch it is in.

    Args:
        d_model: width d.
        num_layers: encoder layers.
        num_heads: attention heads.
        ffn_dim: feed-forward width.
        dropout: dropout rate.
        norm_first: pre-norm layers instead of post-norm.
        final_norm: a LayerNorm after the last layer.
        positions: "none" or "sinusoidal" (added to the frame features, not to CLS).
    """

    def __init__(
        self,
        d_model: int,
        num_layers: int,
        num_heads: int,
        ffn_dim: int,
        dropout: float,
        *,
        norm_first: bool = False,
        final_norm: bool = False,
        positions: str = "none",
    ) -> None:
        super().__init__()
        if positions not in ("none", "sinusoidal"):
            raise ValueError(f"positions must be 'none' or 'sinusoidal', got {positions!r}")
        self.positions = positions
        self.cls = nn.Parameter(torch.randn(1, 1, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d_model, num_heads, ffn_dim, dropout, batch_first=True, norm_first=norm_first
        )
        # No nested-tensor fast path: it changes numerics with padding, and padding must not.
        self.encoder = nn.TransformerEncoder(
            layer,
            num_layers,
            norm=nn.LayerNorm(d_model) if final_norm else None,
            enable_nested_tensor=False,
        )

    def forward(self, flat: Tensor, lengths: Tensor) -> Tensor:
        """(ΣT, d) frame features + (B,) lengths → (B, d) CLS outputs."""
        padded, mask = pad_sequences(flat, lengths)
        batch, t_max, dim = padded.shape
        if self.positions == "sinusoidal":
            padded = padded + sinusoidal_positions(t_max, dim, padded.device)
        tokens = torch.cat([self.cls.expand(batch, 1, dim), padded], dim=1)
        valid = torch.cat([mask.new_ones(batch, 1), mask], dim=1)
        out = self.encoder(tokens, src_key_padding_mask=~valid)  # PyTorch: True = ignore
        return out[:, 0]
