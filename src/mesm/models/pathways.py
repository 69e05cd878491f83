"""Visual and audio pathways: frame/chunk CNN → MLP → sequence transformer → embedding, and the
`head` the model applies to that embedding for the pathway's logits.

One class serves both modalities (they differ only in input channels and map size). In MESM mode
a :class:`~mesm.models.attention.CrossModalAttention` layer precedes each VGG stage and the stages
run sparse; parameters keep FE2E's names, so a trained FE2E state dict loads into MESM.
"""

from __future__ import annotations

import itertools
from typing import Any

from torch import Tensor, nn

from mesm.models.attention import CrossModalAttention, NucleusMass
from mesm.models.layers import MLP, LowLevelCNN, SequenceTransformer, VGGStage
from mesm.sparse import Backend, SparseMap, op_scope


class Pathway(nn.Module):
    """CNN feature extractor over frames plus a transformer over each utterance's sequence.

    Args:
        in_channels: channels of each frame (3 for faces, 1 for mel chunks).
        input_shape: (H, W) of each frame.
        num_classes: K.
        low_channels: low-level CNN channels.
        stage_channels: channels of the VGG stages.
        mlp_hidden: MLP hidden width.
        d_model: transformer width d (also the MLP's output).
        dropout: dropout rate (MLP, transformer, head).
        transformer: the other arguments of :class:`SequenceTransformer` (layers, heads,
            feed-forward width, norm placement, positions).
        text_dim: D, width of the text feature (MESM only).
        attention_dims: additive-attention width of each stage's attention layer (MESM only).
        nucleus: the model's shared :class:`NucleusMass` (MESM only; p is checked where the
            model is configured, not here).
        gating: "none" or "gated" (MESM only).
        sparse: build the cross-modal attention and run the stages sparse (MESM).
        backend: sparse engine.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        input_shape: tuple[int, int],
        num_classes: int,
        low_channels: int,
        stage_channels: tuple[int, ...],
        mlp_hidden: int,
        d_model: int,
        dropout: float,
        transformer: dict[str, Any],
        text_dim: int = 0,
        attention_dims: tuple[int, ...] = (),
        nucleus: NucleusMass | None = None,
        gating: str = "none",
        sparse: bool = False,
        backend: Backend = "torch",
    ) -> None:
        super().__init__()
        self.sparse = sparse
        self.backend = backend
        self.low_level = LowLevelCNN(in_channels, low_channels)
        widths = (low_channels, *stage_channels)
        self.stages = nn.ModuleList(VGGStage(a, b) for a, b in itertools.pairwise(widths))
        if sparse:
            nucleus = nucleus if nucleus is not None else NucleusMass(1.0)
            self.attention = nn.ModuleList(
                CrossModalAttention(c, text_dim, a, nucleus, gating)
                for c, a in zip(widths[:-1], attention_dims, strict=True)
            )
        scale = 2 ** (1 + len(stage_channels))
        self.out_shape = (input_shape[0] // scale, input_shape[1] // scale)
        flat = stage_channels[-1] * self.out_shape[0] * self.out_shape[1]
        self.mlp = MLP(flat, mlp_hidden, d_model, dropout)
        self.transformer = SequenceTransformer(d_model, dropout=dropout, **transformer)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(d_model, num_classes))

    def extract(self, frames: Tensor, y_frames: Tensor | None = None) -> Tensor:
        """The feature extractor (the part whose FLOPs MESM saves).

        Args:
            frames: (F, C, H, W) all frames/chunks of the batch.
            y_frames: (F, D) text feature of each frame's utterance (MESM only).

        Returns:
            (F, d) one feature vector per frame/chunk.
        """
        if frames.shape[0] == 0:  # a batch whose utterances have no frames: only CLS tokens
            return frames.new_zeros(0, self.mlp[-1].out_features)
        h = self.low_level(frames)
        if not self.sparse:
            for stage in self.stages:
                h = stage(h)
            return self.mlp(h.flatten(1))
        if y_frames is None:
            raise ValueError("the sparse pathway needs the text feature of every frame")
        sites = SparseMap.from_dense(h)
        for i, (attention, stage) in enumerate(zip(self.attention, self.stages, strict=True)):
            sites = attention(sites, y_frames)
            with op_scope(f"stages.{i}"):
                sites = stage.forward_sparse(sites, self.backend)
        return self.mlp(sites.to_dense().flatten(1))

    def forward_features(self, frames: Tensor, lengths: Tensor, y: Tensor | None = None) -> Tensor:
        """(F, C, H, W) frames + (B,) lengths [+ (B, D) text feature] → (B, d) embedding."""
        y_frames = None if y is None else y.repeat_interleave(lengths, dim=0)
        return self.transformer(self.extract(frames, y_frames), lengths)
