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
site into an (N, 9·C_in) matrix, block of rows by block of rows, and multiplies it by the weight:
vectorised over all frames of all utterances, no Python loop over samples or sites. Its backward
is a gather + GEMM too (the 3x3 rulebook is symmetric), never a scatter-add. When the active
fraction of the map is at least :func:`dense_fraction` (0.8 by default, where gather + GEMM stops
being cheaper on CPU; change it with :func:`dense_above`), the engine instead convolves the whole
zero-filled map with ``F.conv2d`` and reads the active sites: the same outputs and gradients, and
the FLOPs of the whole map.

Mixed precision: inside ``torch.autocast`` the ops follow autocast's rules for their dense
equivalents. The convolution runs its GEMMs in the autocast dtype (bf16 on CPU, bf16/fp16 on
CUDA) and returns that dtype, like ``F.conv2d``; batch norm computes its statistics in float32
and returns the features' dtype; max-pool, ReLU and scaling keep the features' dtype. Gradients
reach the parameters in the parameters' dtype.

FLOPs of every sparse op are recorded (2 · multiply-adds actually executed, so the whole map's for
a dense-masked conv; the record's ``path`` says which ran) in the active
:class:`SparseFlopCounter`; for the torch engine they equal what ``FlopCounterMode`` counts for its
GEMMs or its convolution.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from math import inf
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import register_flop_formula

from mesm.sparse.engine import compiled_ops
from mesm.sparse.tensor import SparseMap

Backend = Literal["torch", "spconv"]

_local = threading.local()


@dataclass
class SparseOpRecord:
    """One executed sparse op: its kind, a name set by the caller, sites and FLOPs.

    ``path`` says how it ran: "gather" (sparse: only the active sites were computed), "dense"
    (the torch engine chose the dense-masked convolution, so ``flops`` are the dense map's) or
    "spconv".
    """

    op: str
    name: str
    in_sites: int
    out_sites: int
    flops: int
    path: str = "gather"


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


def _record(op: str, in_sites: int, out_sites: int, flops: int, path: str = "gather") -> None:
    for c in getattr(_local, "counters", []):
        c.records.append(SparseOpRecord(op, ".".join(c._scope), in_sites, out_sites, flops, path))


# -- dense-masked threshold -----------------------------------------------------------------------
# Measured on CPU (2 threads, inference, the paper preset's stage shapes, 16 maps; gather + oneDNN
# GEMM time over the dense-masked conv's): at 80 % active sites 0.81-0.83 for the 24x24 stage and
# 1.05-1.06 for the 12x12 and 6x6 stages; at 90 % 0.86-1.20. Above roughly this active fraction,
# convolving the whole zero-filled map (and booking the whole map's FLOPs) is the cheaper way to
# the same outputs; a per-layer cost model could move the cut by a few per cent.
DEFAULT_DENSE_FRACTION = 0.8


def dense_fraction() -> float:
    """Active fraction at or above which the torch engine's conv runs dense-masked."""
    return getattr(_local, "dense_fraction", DEFAULT_DENSE_FRACTION)


@contextmanager
def dense_above(fraction: float) -> Iterator[None]:
    """Sets, in this thread, the active fraction at or above which ``submanifold_conv3x3``
    (torch engine) runs the dense-masked path; ``float("inf")`` = always gather, 0 = always dense.
    """
    previous = dense_fraction()
    _local.dense_fraction = fraction
    try:
        yield
    finally:
        _local.dense_fraction = previous


# -- convolution ----------------------------------------------------------------------------------
# Rows of the (rows, 9·C_in) gathered block: about 8 MiB, so that blocks come from the allocator's
# free lists and stay few (one GEMM call each), but at least 256 rows, so that the GEMM reads the
# deep layers' large weight matrices few times.
_BLOCK_BYTES = 8 << 20
_MIN_BLOCK_ROWS = 256


def _block_rows(channels: int, itemsize: int) -> int:
    return max(_MIN_BLOCK_ROWS, _BLOCK_BYTES // (9 * channels * itemsize))


# The GEMM. PyTorch's CPU matmul goes to MKL, whose sgemm runs its AVX2 code on AMD processors
# (about 95 GFLOP/s a core on the development machine), while oneDNN, which runs the dense
# convolutions, uses AVX-512 there too (about 210 GFLOP/s for the same product, measured). oneDNN's
# matrix product is reachable as the ``mkldnn::_linear_pointwise`` op (also used by torch.compile
# on CPU), which can fuse the ReLU; it is used on CPU when present, ``F.linear`` elsewhere.
def _onednn_linear_available() -> bool:
    try:
        return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._linear_pointwise)
    except (AttributeError, RuntimeError):
        return False


_ONEDNN_LINEAR = _onednn_linear_available()
_ONEDNN_DTYPES = (torch.float32, torch.bfloat16)
if _ONEDNN_LINEAR:

    @register_flop_formula(torch.ops.mkldnn._linear_pointwise)
    def _linear_pointwise_flop(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
        # FlopCounterMode knows aten's matrix products only: count this one like F.linear.
        return 2 * math.prod(x_shape[:-1]) * x_shape[-1] * w_shape[0]


def linear(rows: Tensor, weight: Tensor, bias: Tensor | None = None, relu: bool = False) -> Tensor:
    """``F.linear`` (then ReLU), through oneDNN on CPU where nothing needs a gradient; under
    ``torch.autocast`` in the autocast dtype, as ``F.linear``.

    Args:
        rows: (M, K).
        weight: (N, K).
        bias: (N,) or None.
        relu: apply a ReLU (fused into oneDNN's GEMM).

    Returns:
        (M, N).
    """
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (rows, weight, bias)
    )
    dtype = compute_dtype(rows, weight)
    if dtype != rows.dtype or dtype != weight.dtype:  # autocast's rule for a matmul
        rows, weight, bias = rows.to(dtype), weight.to(dtype), _cast(bias, dtype)
    if (
        _ONEDNN_LINEAR
        and not needs_grad
        and rows.device.type == "cpu"
        and rows.dtype in _ONEDNN_DTYPES
        and weight.dtype == rows.dtype
        and (bias is None or bias.dtype == rows.dtype)
        and rows.shape[0] > 0
    ):
        attr = "relu" if relu else "none"
        return torch.ops.mkldnn._linear_pointwise(rows, weight, bias, attr, [], "")
    out = F.linear(rows, weight, bias)
    return F.relu(out, inplace=True) if relu else out


def _gather_gemm(
    padded: Tensor,
    nbr: Tensor,
    wmat: Tensor,
    bias: Tensor | None = None,
    *,
    relu: bool = False,
    spare_row: bool = False,
) -> Tensor:
    """(N, C_out) = [padded[nbr[i, 0]], ..., padded[nbr[i, 8]]] @ wmatᵀ (+ bias) (ReLU).

    Args:
        padded: (M + 1, C) rows to gather (the last one zero).
        nbr: (N, 9) row of each site's neighbour at each offset.
        wmat: (C_out, 9·C) weight, columns ordered (offset, channel).
        bias: (C_out,) or None.
        relu: apply a ReLU (fused into the GEMM where the backend can).
        spare_row: return the first N rows of an (N + 1, C_out) buffer whose last row is zero,
            so that the next convolution finds its zero row in place (see :func:`_padded`).
    """
    n, c = nbr.shape[0], padded.shape[1]
    buffer = padded.new_empty(n + int(spare_row), wmat.shape[0])
    if spare_row:
        buffer[n].zero_()
    out = buffer[:n] if spare_row else buffer  # not a view: autograd may modify it in place
    step = _block_rows(c, padded.element_size())
    for i in range(0, n, step):
        j = min(n, i + step)
        out[i:j] = linear(_gather_block(padded, nbr[i:j]), wmat, bias, relu)
    return out


_workspaces = threading.local()


def _workspace(slot: str, like: Tensor, shape: tuple[int, ...]) -> Tensor:
    """A reused per-thread buffer of `shape` (dtype and device of `like`) for short-lived blocks.

    Blocks that one GEMM reads and then drops reuse one buffer per slot: a fresh multi-MiB block
    per GEMM came from newly mapped, page-faulting memory (a gather then cost several times its
    copy). Each buffer grows to the largest block seen.
    """
    numel = math.prod(shape)
    cache = getattr(_workspaces, "buffers", None)
    if cache is None:
        cache = _workspaces.buffers = {}
    key = (slot, like.device, like.dtype)
    buffer = cache.get(key)
    if buffer is None or buffer.numel() < numel or buffer.is_inference() != like.is_inference():
        floor = _BLOCK_BYTES // like.element_size()
        buffer = cache[key] = like.new_empty(max(numel, floor))
    return buffer[:numel].view(shape)


def _gather_block(padded: Tensor, nbr: Tensor) -> Tensor:
    """(rows, 9·C) neighbourhoods of `nbr`'s rows, in a reused buffer (see :func:`_workspace`)."""
    rows, c = nbr.shape[0], padded.shape[1]
    cols = _workspace("gather", padded, (rows * 9, c))
    torch.index_select(padded, 0, nbr.reshape(-1), out=cols)
    return cols.view(rows, 9 * c)


def _transposed(slot: str, x: Tensor) -> Tensor:
    """A contiguous copy of x.t() (2-D) in a reused buffer."""
    return _workspace(slot, x, (x.shape[1], x.shape[0])).copy_(x.t())


def _pad_zero_row(features: Tensor) -> Tensor:
    return torch.cat([features, features.new_zeros(1, features.shape[1])])


def _padded(features: Tensor) -> Tensor:
    """(N + 1, C): the features and a zero row, the target of every missing neighbour.

    Without autograd, a conv output made with ``spare_row`` already has a zero row right after
    its N rows in memory: that row is checked (C values) and used in place, which saves copying
    the whole (N, C) input once per convolution. Anything else is copied with a zero row added.
    """
    n, c = features.shape
    if not torch.is_grad_enabled() and features.is_contiguous() and n:
        storage = features.untyped_storage().nbytes() // features.element_size()
        if features.storage_offset() + (n + 1) * c <= storage:
            padded = features.as_strided((n + 1, c), (c, 1))
            if not bool(padded[n].any()):
                return padded
    return _pad_zero_row(features.contiguous())


def conv3x3_weight_matrix(weight: Tensor) -> Tensor:
    """(C_out, 9·C_in) GEMM operand of a (C_out, C_in, 3, 3) weight: columns are (offset, input
    channel). Pass it to :func:`submanifold_conv3x3` as ``weight_matrix`` to reuse it."""
    c_out, c_in = weight.shape[:2]
    # Batched small (C_in, 9) transposes: about 4x faster than permuting the 4-D weight.
    return weight.reshape(c_out, c_in, 9).transpose(1, 2).reshape(c_out, 9 * c_in)


class _GatherConv(torch.autograd.Function):
    """Submanifold 3x3 conv as gather + GEMM, with a backward that never scatters.

    The 3x3 rulebook is symmetric: site j is i's neighbour at offset k exactly when i is j's
    neighbour at the opposite offset 8 - k. So the input gradient is itself a gather + GEMM:
    the output gradient gathered through the rulebook with its offsets reversed, times the
    weight transposed to (C_in, 9·C_out) — instead of the scatter-add that autograd derives for
    ``padded[nbr]``. The weight gradient recomputes the gather block by block rather than
    keeping the (N, 9·C_in) matrix alive. Without autograd, :func:`submanifold_conv3x3` calls
    the forward GEMM directly.

    Mixed precision: the GEMMs run in ``dtype`` (the autocast dtype, see :func:`compute_dtype`);
    the casts happen inside the function, so the weight and bias gradients are summed over the
    rows in the parameters' own dtype (fp32), not rounded to bf16/fp16 block by block, and each
    gradient comes back in its input's dtype.
    """

    @staticmethod
    def forward(
        ctx, features: Tensor, weight: Tensor, bias: Tensor | None, nbr: Tensor, dtype: torch.dtype
    ) -> Tensor:
        padded = _pad_zero_row(features.to(dtype).contiguous())
        ctx.save_for_backward(padded, weight, nbr)
        ctx.bias_dtype = None if bias is None else bias.dtype
        low_bias = None if bias is None else bias.to(dtype)
        return _gather_gemm(padded, nbr, conv3x3_weight_matrix(weight.to(dtype)), low_bias)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(
        ctx, grad_out: Tensor
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None, None, None]:
        padded, weight, nbr = ctx.saved_tensors
        c_out, c_in = weight.shape[:2]
        dtype = padded.dtype
        grad_out = grad_out.to(dtype).contiguous()
        grad_features = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            # Row i, column (k, o) holds weight[o, i, k]: one plain 2-D transpose.
            low = weight.to(dtype)
            transposed = low.reshape(c_out, c_in * 9).t().contiguous().view(c_in, 9 * c_out)
            grad_features = _gather_gemm(_pad_zero_row(grad_out), nbr.flip(1), transposed)
        if ctx.needs_input_grad[1]:
            n = nbr.shape[0]
            gw = weight.new_zeros(c_out, 9 * c_in)
            step = _block_rows(c_in, padded.element_size())
            for i in range(0, n, step):
                j = min(n, i + step)
                cols = _gather_block(padded, nbr[i:j])
                # (C_out, rows) @ (rows, 9·C_in) as a product of contiguous operands for oneDNN,
                # in the compute dtype, summed in the weight's dtype.
                gw += linear(_transposed("grad_t", grad_out[i:j]), _transposed("cols_t", cols))
            grad_weight = gw.view(c_out, 9, c_in).transpose(1, 2).reshape(c_out, c_in, 3, 3)
        if ctx.needs_input_grad[2]:
            grad_bias = grad_out.sum(0, dtype=ctx.bias_dtype)
        return grad_features, grad_weight, grad_bias, None, None


def compute_dtype(features: Tensor, weight: Tensor) -> torch.dtype:
    """The dtype a conv of `features` with `weight` runs in: autocast's rule for a matmul.

    Inside ``torch.autocast`` (any device) the autocast dtype, unless an operand is float64
    (autocast leaves float64 alone); otherwise the promoted dtype of the two operands.
    """
    device = features.device.type
    promoted = torch.promote_types(features.dtype, weight.dtype)
    if promoted != torch.float64 and torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return promoted


def _cast(t: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    return None if t is None else t.to(dtype)


def _dense_masked_conv(
    x: SparseMap, weight: Tensor, bias: Tensor | None, dtype: torch.dtype, relu: bool
) -> Tensor:
    """The conv of the dense map (zeros at inactive sites) read at the active sites: equal to the
    submanifold conv, computed at every site of the map (in `dtype`)."""
    # Channels-last: the (F, H, W, C) rows are exactly SparseMap's (N, C) rows on a full map.
    dense = x.to_dense().to(dtype).contiguous(memory_format=torch.channels_last)
    out = F.conv2d(dense, weight.to(dtype), _cast(bias, dtype), padding=1).permute(0, 2, 3, 1)
    out = out.reshape(-1, weight.shape[0])
    out = out if x.is_full else out.index_select(0, x.keys())
    return F.relu(out, inplace=True) if relu else out


def _compiled_conv(
    ops,
    x: SparseMap,
    weight: Tensor,
    bias: Tensor | None,
    dtype: torch.dtype,
    relu: bool,
    weight_matrix: Tensor | None,
) -> Tensor:
    """The gather + GEMM convolution as one compiled op (and its backward as one more)."""
    nbr = x.neighbor_index()
    if torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x.features, weight, bias)
    ):
        out = ops.subm_conv3x3(x.features, nbr, weight, bias, False, dtype)
        return F.relu(out, inplace=True) if relu else out
    if weight_matrix is not None and weight_matrix.dtype == dtype:
        weight = weight_matrix  # the (C_out, 9·C_in) operand the caller keeps
    return ops.subm_conv3x3(x.features, nbr, weight, bias, relu, dtype)


def submanifold_conv3x3(
    x: SparseMap,
    weight: Tensor,
    bias: Tensor | None = None,
    backend: Backend = "torch",
    *,
    relu: bool = False,
    weight_matrix: Tensor | None = None,
) -> SparseMap:
    """3x3 submanifold convolution (stride 1): outputs exactly at the active input sites.

    The torch engine computes the active sites only (gather + GEMM) unless the active fraction
    of the map is at least :func:`dense_fraction`; then it convolves the whole zero-filled map
    densely and reads the active sites (same result; the record books the dense FLOPs).

    Args:
        x: N active sites with C_in features.
        weight: (C_out, C_in, 3, 3), ``nn.Conv2d`` layout.
        bias: (C_out,) or None.
        backend: "torch" (gather + one GEMM, or dense-masked) or "spconv".
        relu: apply a ReLU to the output (fused into the GEMM where possible).
        weight_matrix: ``conv3x3_weight_matrix(weight)``, when the caller keeps it (inference
            with fixed weights); computed here otherwise.

    Returns:
        The same sites with (N, C_out) features, in the autocast dtype inside
        ``torch.autocast`` (as ``F.conv2d``), else in the features' and weight's dtype.
    """
    c_out, c_in = weight.shape[:2]
    if weight.shape[2:] != (3, 3):
        raise ValueError(f"only 3x3 kernels are supported, got {tuple(weight.shape)}")
    if x.features.shape[1] != c_in:
        raise ValueError(f"input has {x.features.shape[1]} channels, weight expects {c_in}")
    n = x.num_active
    sites, path = n, "gather"
    dtype = compute_dtype(x.features, weight)
    ops = compiled_ops(x.features.device) if backend == "torch" else None
    if backend == "torch":
        if n and n >= dense_fraction() * x.num_sites:
            out = _dense_masked_conv(x, weight, bias, dtype, relu)
            sites, path = x.num_sites, "dense"
        elif ops is not None:
            out = _compiled_conv(ops, x, weight, bias, dtype, relu, weight_matrix)
        elif torch.is_grad_enabled():
            out = _GatherConv.apply(x.features, weight, bias, x.neighbor_index(), dtype)
            out = F.relu(out, inplace=True) if relu else out
        else:  # inference: no autograd node, and the output keeps a zero row for the next conv
            if weight_matrix is None or weight_matrix.dtype != dtype:
                weight_matrix = conv3x3_weight_matrix(weight.to(dtype))
            padded = _padded(x.features.to(dtype))
            nbr = x.neighbor_index()
            out = _gather_gemm(
                padded, nbr, weight_matrix, _cast(bias, dtype), relu=relu, spare_row=True
            )
    elif backend == "spconv":
        out = _spconv_subm(x, weight)
        path = "spconv"
        if bias is not None:
            out = out + bias.to(out.dtype)
        if relu:
            out = F.relu(out, inplace=True)
    else:
        raise ValueError(f"unknown sparse backend {backend!r}")
    _record("subm_conv3x3", n, n, 2 * sites * 9 * c_in * c_out, path)
    return x.with_features(out)


class _WindowMax(torch.autograd.Function):
    """Maximum over each output's 2x2 window of input rows (N = "inactive", never the maximum).

    Every input site lies in exactly one window, so the backward routes each output gradient to
    its argmax with a plain scatter (no accumulation). On ties the first site of the window in
    row-major order wins, as in ``F.max_pool2d``.
    """

    @staticmethod
    def forward(ctx, features: Tensor, window: Tensor) -> Tensor:
        n, c = features.shape
        padded = torch.cat([features, features.new_full((1, c), float("-inf"))])
        values, arg = padded.index_select(0, window.reshape(-1)).view(-1, 4, c).max(dim=1)
        ctx.source = window.gather(1, arg)  # (N_out, C) input row of each output value
        ctx.num_rows = n
        return values

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, None]:
        grad = grad_out.new_zeros(ctx.num_rows, grad_out.shape[1])
        return grad.scatter_(0, ctx.source, grad_out), None


def _window_max_values(features: Tensor, window: Tensor, nonnegative: bool) -> Tensor:
    """The maxima of :class:`_WindowMax` without their positions (no backward needed)."""
    if nonnegative:  # features >= 0: a zero row stands for "inactive" (reused in place)
        padded = _padded(features)
    else:
        padded = torch.cat([features, features.new_full((1, features.shape[1]), -inf)])
    return padded.index_select(0, window.reshape(-1)).view(-1, 4, padded.shape[1]).amax(dim=1)


def sparse_max_pool2x2(
    x: SparseMap, backend: Backend = "torch", *, nonnegative: bool = False
) -> SparseMap:
    """2x2 max pooling with stride 2 over active sites.

    Args:
        x: N active sites on (H, W) maps.
        backend: "torch" or "spconv".
        nonnegative: the features are >= 0 (e.g. after a ReLU); lets inference use a zero row
            instead of copying the features next to a -inf row. Results are the same.

    Returns:
        The active output sites on (H // 2, W // 2) maps, with their (N_out, C) maxima.
    """
    h, w = x.spatial_shape
    ho, wo = h // 2, w // 2
    if backend == "torch" and x.is_full:
        # Every site active: the dense max-pool of the (channels-last) map is the same and faster.
        out = SparseMap.from_dense(F.max_pool2d(x.to_dense(), 2))
        _record("max_pool2x2", x.num_active, out.num_active, 0, "dense")
        return out
    ops = compiled_ops(x.coords.device) if backend == "torch" else None
    if ops is not None:  # rulebook and maxima: one compiled op each
        coords, window = ops.pool2x2_rulebook(x.coords, x.index_table(), x.num_samples, h, w)
        grad = torch.is_grad_enabled() and x.features.requires_grad
        feats = ops.window_max(x.features, window, grad)[0]
        out = SparseMap(feats, coords, (ho, wo), x.num_samples, check=False)
        _record("max_pool2x2", x.num_active, out.num_active, 0, "gather")
        return out
    c = x.coords.long()
    inside = (c[:, 1] < 2 * ho) & (c[:, 2] < 2 * wo)  # floor semantics of F.max_pool2d
    if backend == "spconv":
        out = _spconv_max_pool(x.select(inside) if not bool(inside.all()) else x, (ho, wo))
    elif backend == "torch":
        key = (c[:, 0] * ho + c[:, 1] // 2) * wo + c[:, 2] // 2
        # An occupancy grid instead of torch.unique: nonzero lists it sorted, no sort needed.
        occupied = torch.zeros(x.num_samples * ho * wo, dtype=torch.bool, device=c.device)
        occupied[key[inside]] = True
        out_key = occupied.nonzero().squeeze(1)
        coords = torch.stack([out_key // (ho * wo), (out_key // wo) % ho, out_key % wo], dim=1)
        # The conv's padded index table (cached on the site set) holds each site's row or N.
        table = x.index_table().view(-1)
        top_left = (coords[:, 0] * (h + 2) + 2 * coords[:, 1] + 1) * (w + 2) + 2 * coords[:, 2] + 1
        window = table[top_left[:, None] + torch.tensor([0, 1, w + 2, w + 3], device=c.device)]
        if torch.is_grad_enabled() and x.features.requires_grad:
            feats = _WindowMax.apply(x.features, window)
        else:
            feats = _window_max_values(x.features, window, nonnegative)
        out = SparseMap(feats, coords.to(torch.int32), (ho, wo), x.num_samples, check=False)
    else:
        raise ValueError(f"unknown sparse backend {backend!r}")
    _record(
        "max_pool2x2", x.num_active, out.num_active, 0, backend if backend == "spconv" else "gather"
    )
    return out


def sparse_batch_norm(x: SparseMap, bn: nn.BatchNorm2d) -> SparseMap:
    """Applies ``bn`` (a dense BatchNorm2d module) to the active sites, sharing its state.

    The statistics are always computed in float32 or wider (bf16/fp16 features are upcast, as
    autocast's batch-norm kernels do internally); the output keeps the features' dtype.
    """
    momentum = 0.0 if bn.momentum is None else bn.momentum
    use_batch_stats = bn.training or not bn.track_running_stats
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:
            momentum = 1.0 / float(bn.num_batches_tracked)
    features = x.features
    wide = torch.promote_types(features.dtype, torch.float32)
    feats = F.batch_norm(
        features.to(wide),
        bn.running_mean if not bn.training or bn.track_running_stats else None,
        bn.running_var if not bn.training or bn.track_running_stats else None,
        bn.weight,
        bn.bias,
        use_batch_stats,
        momentum,
        bn.eps,
    )
    return x.with_features(feats.to(features.dtype))


def sparse_relu(x: SparseMap, inplace: bool = False) -> SparseMap:
    """ReLU of the features; ``inplace`` overwrites them (only for features nobody else reads:
    a fresh conv or batch-norm output)."""
    return x.with_features(F.relu(x.features, inplace=inplace))


def sparse_scale(x: SparseMap, scale: Tensor) -> SparseMap:
    """Multiplies each site's features by its (N,) scale (the features' dtype is kept)."""
    return x.with_features(x.features * scale.to(x.features.dtype)[:, None])


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
