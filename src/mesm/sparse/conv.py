"""Sparse operations on :class:`~mesm.sparse.tensor.SparseMap` and their dense equivalents.

=============================  ====================================  ===========================
sparse op                      dense equivalent on a full grid       spconv equivalent
=============================  ====================================  ===========================
``submanifold_conv3x3``        ``F.conv2d(x, w, padding=1)``         ``SubMConv2d(k=3)``
``sparse_max_pool2x2``         ``F.max_pool2d(x, 2)``                ``SparseMaxPool2d(2, 2)``
``sparse_batch_norm``          ``nn.BatchNorm2d`` (same module)      BN1d on ``.features``
``sparse_relu``                ``F.relu``                            ReLU on ``.features``
=============================  ====================================  ===========================

Semantics on a sparse input:

* Submanifold convolution computes outputs only at the active sites, from active neighbours
  only (inactive neighbours count as zero, exactly like zero padding at the border).
* Max pooling activates an output site when any input site in its 2x2 window is active and takes
  the maximum over the active inputs only. Odd trailing rows/columns are dropped, as in
  ``F.max_pool2d``.
* Batch norm normalises over the active sites (the same statistics the dense layer computes on a
  full grid) and updates the same running statistics.

Weights use ``nn.Conv2d``'s layout (C_out, C_in, 3, 3) so that a dense VGG block and its sparse
twin share one set of parameters. The "torch" engine gathers the 3x3 neighbourhood of every active
site into one (N, 9·C_in) matrix and runs a single GEMM: vectorised over all frames of all
utterances, no Python loop over samples or sites.

FLOPs of every sparse op are recorded (2 · multiply-adds actually executed) in the active
:class:`SparseFlopCounter`; for the torch engine they equal what ``FlopCounterMode`` counts for its
GEMM.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mesm.sparse.tensor import SparseMap

Backend = Literal["torch", "spconv"]

_local = threading.local()


@dataclass
class SparseOpRecord:
    """One executed sparse op: its kind, a name set by the caller, sites and FLOPs."""

    op: str
    name: str
    in_sites: int
    out_sites: int
    flops: int


@dataclass
class SparseFlopCounter:
    """Collects :class:`SparseOpRecord` of sparse ops run inside ``with counter:``."""

    records: list[SparseOpRecord] = field(default_factory=list)
    _scope: list[str] = field(default_factory=list)

    def __enter__(self) -> SparseFlopCounter:
        stack = getattr(_local, "counters", [])
        stack.append(self)
        _local.counters = stack
        return self

    def __exit__(self, *exc: object) -> None:
        _local.counters.remove(self)

    @property
    def total_flops(self) -> int:
        return sum(r.flops for r in self.records)


@contextmanager
def op_scope(name: str) -> Iterator[None]:
    """Names the sparse ops run inside it (e.g. ``visual.stages.0``) in every active counter."""
    counters = getattr(_local, "counters", [])
    for c in counters:
        c._scope.append(name)
    try:
        yield
    finally:
        for c in counters:
            c._scope.pop()


def _record(op: str, in_sites: int, out_sites: int, flops: int) -> None:
    for c in getattr(_local, "counters", []):
        c.records.append(SparseOpRecord(op, ".".join(c._scope), in_sites, out_sites, flops))


# -- convolution ----------------------------------------------------------------------------------
def submanifold_conv3x3(
    x: SparseMap, weight: Tensor, bias: Tensor | None = None, backend: Backend = "torch"
) -> SparseMap:
    """3x3 submanifold convolution (stride 1): outputs exactly at the active input sites.

    Args:
        x: N active sites with C_in features.
        weight: (C_out, C_in, 3, 3), ``nn.Conv2d`` layout.
        bias: (C_out,) or None.
        backend: "torch" (gather + one GEMM) or "spconv".

    Returns:
        The same sites with (N, C_out) features.
    """
    c_out, c_in = weight.shape[:2]
    if weight.shape[2:] != (3, 3):
        raise ValueError(f"only 3x3 kernels are supported, got {tuple(weight.shape)}")
    if x.features.shape[1] != c_in:
        raise ValueError(f"input has {x.features.shape[1]} channels, weight expects {c_in}")
    n = x.num_active
    if backend == "torch":
        nbr = x.neighbor_index()  # (N, 9), N = "no neighbour"
        padded = torch.cat([x.features, x.features.new_zeros(1, c_in)])
        cols = padded[nbr].reshape(n, 9 * c_in)
        # (C_out, C_in, kh, kw) -> (kh, kw, C_in, C_out) matches the (offset, channel) columns.
        out = cols @ weight.permute(2, 3, 1, 0).reshape(9 * c_in, c_out)
    elif backend == "spconv":
        out = _spconv_subm(x, weight)
    else:
        raise ValueError(f"unknown sparse backend {backend!r}")
    if bias is not None:
        out = out + bias
    _record("subm_conv3x3", n, n, 2 * n * 9 * c_in * c_out)
    return x.with_features(out)


def sparse_max_pool2x2(x: SparseMap, backend: Backend = "torch") -> SparseMap:
    """2x2 max pooling with stride 2 over active sites.

    Args:
        x: N active sites on (H, W) maps.
        backend: "torch" or "spconv".

    Returns:
        The active output sites on (H // 2, W // 2) maps, with their (N_out, C) maxima.
    """
    h, w = x.spatial_shape
    ho, wo = h // 2, w // 2
    c = x.coords.long()
    inside = (c[:, 1] < 2 * ho) & (c[:, 2] < 2 * wo)  # floor semantics of F.max_pool2d
    if backend == "spconv":
        out = _spconv_max_pool(x.select(inside) if not bool(inside.all()) else x, (ho, wo))
    elif backend == "torch":
        key = (c[:, 0] * ho + c[:, 1] // 2) * wo + c[:, 2] // 2
        out_key = torch.unique(key[inside])  # sorted: canonical order for free
        coords = torch.stack([out_key // (ho * wo), (out_key // wo) % ho, out_key % wo], dim=1).to(
            torch.int32
        )
        n = x.num_active
        table = torch.full((x.num_samples * h * w,), n, dtype=torch.long, device=c.device)
        table[x.keys()] = torch.arange(n, device=c.device)
        oc = coords.long()
        top_left = (oc[:, 0] * h + 2 * oc[:, 1]) * w + 2 * oc[:, 2]
        window = top_left[:, None] + torch.tensor([0, 1, w, w + 1], device=c.device)
        neg_inf = x.features.new_full((1, x.features.shape[1]), float("-inf"))
        feats = torch.cat([x.features, neg_inf])[table[window]].amax(dim=1)
        out = SparseMap(feats, coords, (ho, wo), x.num_samples, check=False)
    else:
        raise ValueError(f"unknown sparse backend {backend!r}")
    _record("max_pool2x2", x.num_active, out.num_active, 0)
    return out


def sparse_batch_norm(x: SparseMap, bn: nn.BatchNorm2d) -> SparseMap:
    """Applies ``bn`` (a dense BatchNorm2d module) to the active sites, sharing its state."""
    momentum = 0.0 if bn.momentum is None else bn.momentum
    use_batch_stats = bn.training or not bn.track_running_stats
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:
            momentum = 1.0 / float(bn.num_batches_tracked)
    feats = F.batch_norm(
        x.features,
        bn.running_mean if not bn.training or bn.track_running_stats else None,
        bn.running_var if not bn.training or bn.track_running_stats else None,
        bn.weight,
        bn.bias,
        use_batch_stats,
        momentum,
        bn.eps,
    )
    return x.with_features(feats)


def sparse_relu(x: SparseMap) -> SparseMap:
    return x.with_features(F.relu(x.features))


def sparse_scale(x: SparseMap, scale: Tensor) -> SparseMap:
    """Multiplies each site's features by its (N,) scale."""
    return x.with_features(x.features * scale[:, None])


# -- spconv backend -------------------------------------------------------------------------------
def _spconv():
    try:
        import spconv.pytorch as spconv
    except ImportError as err:
        raise RuntimeError(
            "sparse backend 'spconv' needs the spconv package (`pip install spconv` for CPU, "
            "`spconv-cu1xx` for CUDA); use backend 'torch' otherwise"
        ) from err
    return spconv


def spconv_available() -> bool:
    try:
        _spconv()
    except RuntimeError:
        return False
    return True


def _to_spconv(x: SparseMap):
    return _spconv().SparseConvTensor(
        x.features.contiguous(), x.coords.contiguous(), list(x.spatial_shape), x.num_samples
    )


def _spconv_subm(x: SparseMap, weight: Tensor) -> Tensor:
    spconv = _spconv()
    c_out, c_in = weight.shape[:2]
    conv = spconv.SubMConv2d(c_in, c_out, 3, padding=1, bias=False).to(x.features.device)
    # spconv 2.x stores (C_out, kh, kw, C_in); functional_call keeps the autograd link to ours.
    params = {"weight": weight.permute(0, 2, 3, 1).contiguous()}
    out = torch.func.functional_call(conv, params, (_to_spconv(x),))
    if not torch.equal(out.indices, x.coords):  # submanifold: same sites, same order
        raise RuntimeError("spconv returned the submanifold sites in another order")
    return out.features


def _spconv_max_pool(x: SparseMap, out_shape: tuple[int, int]) -> SparseMap:
    spconv = _spconv()
    out = spconv.SparseMaxPool2d(2, 2)(_to_spconv(x))
    coords = out.indices.to(torch.int32)
    ho, wo = out_shape
    c = coords.long()
    order = torch.argsort((c[:, 0] * ho + c[:, 1]) * wo + c[:, 2])
    return SparseMap(out.features[order], coords[order], out_shape, x.num_samples)
