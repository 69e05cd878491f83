"""FLOPs of the visual/audio feature extractors (everything before the sequence transformers),
and of the sequence transformers on their own line.

Dense ops are counted by ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix
products; 1 multiply-add = 2 FLOPs). Sparse ops are counted from the sites actually processed
(:class:`mesm.sparse.SparseFlopCounter`); for the built-in torch engine these are GEMMs that
FlopCounterMode sees too, so both counts are available and must agree. The cross-modal attention
layers' own cost is reported separately, so MESM at p = 1 costs exactly FE2E's FLOPs plus
``attention``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from mesm.models.config import DEFAULT_P
from mesm.models.emotion import EmotionModel
from mesm.models.pathways import Pathway
from mesm.sparse import SparseFlopCounter
from mesm.sparse.engine import compiled_ops
from mesm.trained.precision import Precision, resolve_precision

_ATTENTION_KEY = re.compile(r"\.attention\.\d+$")


@dataclass
class PathwayFlops:
    """FLOPs of one pathway's feature extractor on a set of frames.

    Attributes:
        features: FLOPs of the extractor without the attention layers (the FE2E-comparable part).
        attention: FLOPs of the cross-modal attention layers (0 for FE2E).
        sparse: FLOPs of the sparse stages counted from processed sites (0 for FE2E); a conv
            the torch engine ran dense-masked (active fraction >= ``mesm.sparse.dense_fraction``)
            counts every site of its map, because every site was computed.
        sparse_counted: what FlopCounterMode saw of the sparse stages: equals ``sparse`` for the
            torch engine (GEMMs over each site's full 3x3 neighbourhood, or the dense-masked
            ``conv2d``); for spconv only the part its CPU path runs through torch (per-offset
            GEMMs over active pairs) or nothing.
        sites: per sparse layer name, (active sites of its first conv, sites of the dense map).
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


@torch.inference_mode()
def pathway_flops(pathway: Pathway, frames: Tensor, y_frames: Tensor | None = None) -> PathwayFlops:
    """Counts one pass of ``pathway.extract``.

    Args:
        pathway: a visual or audio pathway (dense or sparse), in eval mode for stable counts.
        frames: (F, C, H, W) frames/chunks.
        y_frames: (F, D) text feature per frame (sparse pathways only).

    Returns:
        The counts; divide by the number of utterances for a per-utterance figure.
    """
    # FlopCounterMode copies the FLOP formulas it knows when it is made: load the compiled
    # engine (which registers its ops' formulas) first.
    compiled_ops(frames.device)
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


@torch.inference_mode()
def model_feature_flops(model: EmotionModel, batch: dict[str, Tensor]) -> dict[str, PathwayFlops]:
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


def sequence_flops(pathway: Pathway, length: int) -> int:
    """FLOPs of `pathway`'s sequence transformer on one utterance of `length` frames/chunks.

    Counted by formula over the CLS token plus the frames (n = length + 1 tokens), each layer's
    matrix products: Q/K/V and output projections (2·n·d·3d + 2·n·d·d), the attention scores
    and the weighted sum (2 · 2·n²·d over all heads) and the feed-forward (2 · 2·n·d·f). Like
    ``FlopCounterMode``, element-wise work (softmax, LayerNorm, activations) is not counted. The
    formula is used because PyTorch's fused inference path for these layers is invisible to
    ``FlopCounterMode`` (a test checks the formula against it with the fused path off).

    Args:
        pathway: a visual or audio pathway.
        length: frames/chunks of the utterance (padding of a batch is not counted).
    """
    encoder = pathway.transformer.encoder
    n = length + 1
    total = 0
    for layer in encoder.layers:
        d = layer.self_attn.embed_dim
        ffn = layer.linear1.out_features
        total += 2 * n * d * 3 * d + 2 * n * d * d + 2 * 2 * n * n * d + 2 * 2 * n * d * ffn
    return total


# -- Per split and per preset (analysis entry points; built only on the two functions above) ----
_PATHWAY_NAMES = {"v": "visual", "a": "audio"}
_COUNTS = ("features", "attention", "sparse", "sparse_counted", "frames")  # PathwayFlops fields
_GIGA = 1e9


@torch.inference_mode()
def text_flops(model: EmotionModel, text_ids: Tensor, text_mask: Tensor) -> int:
    """FLOPs of the text encoder (``FlopCounterMode`` on ``model.text``), reported apart from the
    feature extractors.

    Each utterance is counted on its own tokens, without the padding its batch added, so the
    figure does not depend on how the split was batched.

    Args:
        model: a model with the text modality.
        text_ids: (B, L) token ids.
        text_mask: (B, L) bool, True = token.

    Returns:
        The FLOPs summed over the B utterances (0 for a model without text).
    """
    if "t" not in model.modalities:
        return 0
    total = 0
    for ids, mask in zip(text_ids, text_mask, strict=True):
        length = max(1, int(mask.sum()))
        with FlopCounterMode(display=False) as counter:
            model.text(ids[None, :length], mask[None, :length])
        total += counter.get_total_flops()
    return total


@dataclass
class _Tally:
    """Running sums of :func:`model_feature_flops` over the batches of a split, for one model."""

    flops: dict[str, dict[str, int]] = field(default_factory=dict)
    sites: dict[str, list[int]] = field(default_factory=dict)
    sequence: dict[str, int] = field(default_factory=dict)
    utterances: int = 0

    def add(self, model: EmotionModel, batch: dict[str, Tensor]) -> None:
        self.utterances += _batch_size(batch)
        for m, lengths in (("a", "spec_lengths"), ("v", "face_lengths")):
            if m in model.modalities:
                pathway = getattr(model, _PATHWAY_NAMES[m])
                flops = sum(sequence_flops(pathway, int(t)) for t in batch[lengths])
                name = _PATHWAY_NAMES[m]
                self.sequence[name] = self.sequence.get(name, 0) + flops
        for m, counts in model_feature_flops(model, batch).items():
            name = _PATHWAY_NAMES[m]
            sums = self.flops.setdefault(name, dict.fromkeys(_COUNTS, 0))
            for key in _COUNTS:
                sums[key] += getattr(counts, key)
            for layer, (active, dense) in counts.sites.items():
                acc = self.sites.setdefault(f"{name}.{layer}", [0, 0])
                acc[0] += active
                acc[1] += dense

    def report(self, model: EmotionModel) -> dict[str, Any]:
        n = max(1, self.utterances)
        per = {name: sums["features"] / n / _GIGA for name, sums in self.flops.items()}
        features = sum(s["features"] for s in self.flops.values())
        attention = sum(s["attention"] for s in self.flops.values())
        c = model.config
        return {
            "arch": c.arch,
            "p": model.p,
            "gating": c.gating if c.mesm else None,
            "gflops_per_utterance": {
                **per,
                "features": features / n / _GIGA,
                "attention": attention / n / _GIGA,
                "total": (features + attention) / n / _GIGA,
            },
            # The sequence transformers over the frames/chunks (the same in FE2E and MESM).
            "sequence_gflops_per_utterance": {
                **{name: flops / n / _GIGA for name, flops in self.sequence.items()},
                "total": sum(self.sequence.values()) / n / _GIGA,
            },
            # Weighted over the split: kept sites / sites of the dense maps, per sparse layer.
            "sites_kept": {k: a / d if d else 0.0 for k, (a, d) in sorted(self.sites.items())},
            "flops": {name: dict(sums) for name, sums in self.flops.items()},
        }


def _batch_size(batch: dict[str, Tensor]) -> int:
    for key in ("text_ids", "face_lengths", "spec_lengths"):
        if key in batch:
            return int(batch[key].shape[0])
    raise ValueError("a batch needs text_ids or face/spec lengths to count its utterances")


def _compare(
    model_tally: _Tally, model: EmotionModel, twin_tally: _Tally, twin: EmotionModel
) -> dict[str, Any]:
    """The report shared by :func:`dataset_flops` and :func:`preset_flops`."""
    entry = model_tally.report(model)
    dense = twin_tally.report(twin)
    fe2e_features = dense["gflops_per_utterance"]["features"]
    g = entry["gflops_per_utterance"]
    frames = {
        name: sums["frames"] / max(1, model_tally.utterances)
        for name, sums in model_tally.flops.items()
    }
    return {
        "num_utterances": model_tally.utterances,
        "frames_per_utterance": frames,
        "model": entry,
        "fe2e": dense,
        # Feature extraction of the model over FE2E's; attention layers excluded, then included.
        "ratio": g["features"] / fe2e_features if fe2e_features else None,
        "ratio_with_attention": g["total"] / fe2e_features if fe2e_features else None,
    }


def average_feature_flops(
    model: EmotionModel, batches: Iterable[dict[str, Tensor]]
) -> dict[str, Any]:
    """Feature-extraction FLOPs of `model` averaged per utterance over `batches`.

    Args:
        model: FE2E or MESM in eval mode.
        batches: model inputs in the Batch contract (see :func:`model_feature_flops`).

    Returns:
        {"arch", "p", "gating", "gflops_per_utterance": {"visual", "audio", "features",
        "attention", "total"}, "sites_kept": {"visual.stages.0": fraction, ...}, "flops": raw
        integer sums per pathway, "num_utterances"}.
    """
    tally = _Tally()
    for batch in batches:
        tally.add(model, batch)
    return {**tally.report(model), "num_utterances": tally.utterances}


@torch.inference_mode()
def dataset_flops(
    checkpoint_or_model: str | os.PathLike | EmotionModel,
    data_dir: str | os.PathLike,
    split: str = "test",
    *,
    batch_size: int = 8,
    p: float | None = None,
    precision: str | Precision = "auto",
) -> dict[str, Any]:
    """Feature-extraction FLOPs per utterance of a model and its dense twin over a dataset split.

    The "fe2e" entry is FE2E with the model's weights (for an FE2E model, the model itself). The
    feature extractor is the visual and audio pathways up to their sequence transformers; the
    cross-modal attention layers and the text encoder are reported separately.

    Args:
        checkpoint_or_model: a checkpoint, model folder or repo id, or a model in memory.
        data_dir: the prepared dataset folder.
        split: the split to average over.
        batch_size: utterances per forward pass (does not change the counts).
        p: measure a MESM model at this nucleus mass instead of its own.
        precision: run at this precision ("auto", "32", "bf16"; the counts are the same, but
            MESM's selection follows the scores computed at this precision).

    Returns:
        A JSON-serialisable dict: "source", "data", "split", "precision", "num_utterances",
        "frames_per_utterance", "model" and "fe2e" (see :func:`average_feature_flops`),
        "ratio" (model features / FE2E features), "ratio_with_attention",
        "text_gflops_per_utterance".
    """
    from mesm.inference.evaluate import open_split, split_batches
    from mesm.trained.checkpoint import load_model
    from mesm.trained.inputs import model_inputs

    trained = load_model(checkpoint_or_model)
    model = trained.model
    twin = model.dense_twin()
    dataset = open_split(data_dir, split, trained)
    ours, dense = _Tally(), _Tally()
    text = 0
    resolved = resolve_precision(precision, next(model.parameters()).device)
    with model.using_p(p), resolved.autocast():
        for batch in split_batches(dataset, batch_size):
            inputs = model_inputs(model, batch)
            ours.add(model, inputs)
            if twin is not model:
                dense.add(twin, inputs)
            if "t" in model.modalities:
                text += text_flops(model, inputs["text_ids"], inputs["text_mask"])
        report = _compare(ours, model, dense if twin is not model else ours, twin)
    return {
        "source": trained.source,
        "data": str(data_dir),
        "split": split,
        "precision": resolved.lightning,
        **report,
        "text_gflops_per_utterance": text / max(1, ours.utterances) / _GIGA,
    }


@torch.inference_mode()
def preset_flops(
    arch: str = "mesm",
    preset: str = "paper",
    p: float = DEFAULT_P,
    frames: int = 8,
    chunks: int = 8,
    *,
    num_utterances: int = 2,
    text_length: int = 16,
    seed: int = 0,
    precision: str | Precision = "auto",
    **overrides: Any,
) -> dict[str, Any]:
    """Feature-extraction FLOPs of an untrained preset on generated inputs (no dataset needed).

    Every utterance gets `frames` random face crops, `chunks` random mel chunks and
    `text_length` random tokens. Untrained attention scores decide MESM's selection, so the
    figures show the cost at p, not a trained model's.

    Args:
        arch: "fe2e" or "mesm".
        preset: model preset ("paper", "tiny").
        p: MESM's nucleus mass.
        frames: face crops per utterance.
        chunks: mel chunks per utterance.
        num_utterances: utterances generated.
        text_length: tokens per transcript.
        seed: seeds the weights and the inputs.
        precision: run at this precision ("auto", "32", "bf16").
        **overrides: model config overrides (e.g. ``text_pretrained=False``).

    Returns:
        The :func:`dataset_flops` layout with "preset", "frames", "chunks" instead of the data
        fields.
    """
    from mesm.models import create_model

    torch.manual_seed(seed)
    model = create_model(arch, preset, **({"p": p} if arch == "mesm" else {}), **overrides).eval()
    twin = model.dense_twin()
    c = model.config
    g = torch.Generator().manual_seed(seed)
    vocab = model.text.vocab_size if "t" in model.modalities else 2
    ids = torch.randint(1, vocab, (num_utterances, text_length), generator=g)
    batch = {
        "text_ids": ids,
        "text_mask": torch.ones_like(ids, dtype=torch.bool),
        "faces": torch.randn(
            num_utterances * frames, c.face_channels, c.face_size, c.face_size, generator=g
        ),
        "face_lengths": torch.full((num_utterances,), frames, dtype=torch.long),
        "specs": torch.rand(num_utterances * chunks, 1, *c.spec_shape, generator=g),
        "spec_lengths": torch.full((num_utterances,), chunks, dtype=torch.long),
    }
    ours, dense = _Tally(), _Tally()
    resolved = resolve_precision(precision, "cpu")
    with resolved.autocast():
        ours.add(model, batch)
        if twin is not model:
            dense.add(twin, batch)
        text = text_flops(model, batch["text_ids"], batch["text_mask"])
    report = _compare(ours, model, dense if twin is not model else ours, twin)
    return {
        "preset": preset,
        "precision": resolved.lightning,
        "frames": frames,
        "chunks": chunks,
        **report,
        "text_gflops_per_utterance": text / num_utterances / _GIGA,
    }
