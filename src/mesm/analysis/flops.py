"""FLOPs of the visual/audio feature extractors (everything before the sequence transformers).

Dense ops are counted by ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix
products; 1 multiply-add = 2 FLOPs). Sparse ops are counted from the sites actually processed
(:class:`mesm.sparse.SparseFlopCounter`); for the built-in torch engine these are GEMMs that
FlopCounterMode sees too, so both counts are available and must agree. The cross-modal attention
layers' own cost is reported separately, so MESM at p = 1 costs exactly FE2E's FLOPs plus
``attention``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from mesm.models.fe2e import FE2E
from mesm.models.pathways import Pathway
from mesm.sparse import SparseFlopCounter

_ATTENTION_KEY = re.compile(r"\.attention\.\d+$")


@dataclass
class PathwayFlops:
    """FLOPs of one pathway's feature extractor on a set of frames.

    Attributes:
        features: FLOPs of the extractor without the attention layers (the FE2E-comparable part).
        attention: FLOPs of the cross-modal attention layers (0 for FE2E).
        sparse: FLOPs of the sparse stages counted from processed sites (0 for FE2E).
        sparse_counted: what FlopCounterMode saw of the sparse stages: equals ``sparse`` for the
            torch engine (one GEMM over each site's full 3x3 neighbourhood); for spconv only the
            part its CPU path runs through torch (per-offset GEMMs over active pairs) or nothing.
        sites: per sparse layer name, (active sites processed, sites of the dense map).
        frames: number of frames/chunks measured.
    """

    features: int
    attention: int
    sparse: int
    sparse_counted: int
    frames: int
    sites: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.features + self.attention


class _Extract(nn.Module):
    # A root module, so FlopCounterMode names the attention layers "…pathway.attention.i".
    def __init__(self, pathway: Pathway) -> None:
        super().__init__()
        self.pathway = pathway

    def forward(self, frames: Tensor, y_frames: Tensor | None) -> Tensor:
        return self.pathway.extract(frames, y_frames)


@torch.no_grad()
def pathway_flops(pathway: Pathway, frames: Tensor, y_frames: Tensor | None = None) -> PathwayFlops:
    """Counts one pass of ``pathway.extract``.

    Args:
        pathway: a visual or audio pathway (dense or sparse), in eval mode for stable counts.
        frames: (F, C, H, W) frames/chunks.
        y_frames: (F, D) text feature per frame (sparse pathways only).

    Returns:
        The counts; divide by the number of utterances for a per-utterance figure.
    """
    with FlopCounterMode(display=False) as dense, SparseFlopCounter() as sparse:
        _Extract(pathway)(frames, y_frames)
    counts = dense.get_flop_counts()
    attention = sum(sum(ops.values()) for k, ops in counts.items() if _ATTENTION_KEY.search(k))
    total_seen = dense.get_total_flops()
    sparse_flops = sparse.total_flops
    # The sparse stages are not module calls, so FlopCounterMode books their GEMMs on the root
    # only: what no direct child (low_level, stages, mlp) or attention layer holds is theirs.
    children = sum(
        sum(ops.values()) for k, ops in counts.items() if re.fullmatch(r"_Extract\.pathway\.\w+", k)
    )
    sparse_counted = total_seen - children - attention if pathway.sparse else 0
    unseen = sparse_flops - sparse_counted
    sites: dict[str, tuple[int, int]] = {}
    shape = frames.shape[-2:]
    for record in sparse.records:
        if record.op == "subm_conv3x3" and record.name not in sites:
            stage = int(record.name.rsplit(".", 1)[-1])
            h, w = (s // 2 ** (1 + stage) for s in shape)
            sites[record.name] = (record.in_sites, frames.shape[0] * h * w)
    return PathwayFlops(
        features=total_seen - attention + unseen,
        attention=attention,
        sparse=sparse_flops,
        sparse_counted=sparse_counted,
        frames=frames.shape[0],
        sites=sites,
    )


@torch.no_grad()
def model_feature_flops(model: FE2E, batch: dict[str, Tensor]) -> dict[str, PathwayFlops]:
    """FLOPs of each visual/audio feature extractor of `model` on one batch.

    Args:
        model: FE2E or MESM (put it in eval mode first).
        batch: model inputs in the Batch contract (faces, face_lengths, specs, spec_lengths and,
            for MESM, text_ids and text_mask).

    Returns:
        {"a": ..., "v": ...} for the model's audio/visual modalities (the text encoder is not a
        feature extractor here and is not counted).
    """
    y = model.text(batch["text_ids"], batch["text_mask"]) if model.config.mesm else None
    out = {}
    for m, frames, lengths, pathway in (
        ("a", "specs", "spec_lengths", "audio"),
        ("v", "faces", "face_lengths", "visual"),
    ):
        if m in model.modalities:
            y_frames = None if y is None else y.repeat_interleave(batch[lengths], dim=0)
            out[m] = pathway_flops(getattr(model, pathway), batch[frames], y_frames)
    return out
