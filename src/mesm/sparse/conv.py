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

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mesm.sparse.engine import compiled_ops
from mesm.sparse.gemm import (
    _block_rows,
    _gather_block,
    _gather_gemm,
    _pad_zero_row,
    _padded,
    _transposed,
    cast,
    compute_dtype,
    conv3x3_weight_matrix,
    linear,
)
from mesm.sparse.records import record
from mesm.sparse.spconv_backend import Backend, spconv_subm
from mesm.sparse.tensor import SparseMap

_local = threading.local()

# -- dense-masked threshold -----------------------------------------------------------------------
# Measured on CPU (2 threads, inference, the paper preset's stage shapes, 16 maps; gather + oneDNN
# GEMM time over the dense-masked conv's): at 80 % active sites 0.81-0.83 for the 24x24 stage and
# 1.05-1.06 for the 12x12 and 6x6 stages; at 90 % 0.86-1.20 (the pure-torch engine; the compiled
# one keeps the cut: its GEMMs are the same). Above roughly this active fraction, both engines
# convolve the whole zero-filled map (and book the whole map's FLOPs): the cheaper way to
# the same outputs; a per-layer cost model could move the cut by a few per cent.
DEFAULT_DENSE_FRACTION = 0.8


def dense_fraction() -> float:
    """Active fraction at or above which the conv runs dense-masked (both built-in engines)."""
    return getattr(_local, "dense_fraction", DEFAULT_DENSE_FRACTION)


@contextmanager
def dense_above(fraction: float) -> Iterator[None]:
    """Sets, in this thread, the active fraction at or above which ``submanifold_conv3x3``
    (both built-in engines) runs the dense-masked path; ``float("inf")`` = always gather, 0 = always
    dense.
    """
    previous = dense_fraction()
    _local.dense_fraction = fraction
    try:
        yield
    finally:
        _local.dense_fraction = previous


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


def _dense_masked_conv(
    x: SparseMap, weight: Tensor, bias: Tensor | None, dtype: torch.dtype, relu: bool
) -> Tensor:
    """The conv of the dense map (zeros at inactive sites) read at the active sites: equal to the
    submanifold conv, computed at every site of the map (in `dtype`)."""
    # Channels-last: the (F, H, W, C) rows are exactly SparseMap's (N, C) rows on a full map.
    dense = x.to_dense().to(dtype).contiguous(memory_format=torch.channels_last)
    out = F.conv2d(dense, weight.to(dtype), cast(bias, dtype), padding=1).permute(0, 2, 3, 1)
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


def _torch_conv(
    x: SparseMap,
    weight: Tensor,
    bias: Tensor | None,
    dtype: torch.dtype,
    relu: bool,
    weight_matrix: Tensor | None,
) -> Tensor:
    """The pure-PyTorch engine's gather + GEMM convolution."""
    if torch.is_grad_enabled():
        out = _GatherConv.apply(x.features, weight, bias, x.neighbor_index(), dtype)
        return F.relu(out, inplace=True) if relu else out
    # Inference: no autograd node, and the output keeps a zero row for the next conv.
    if weight_matrix is None or weight_matrix.dtype != dtype:
        weight_matrix = conv3x3_weight_matrix(weight.to(dtype))
    padded = _padded(x.features.to(dtype))
    return _gather_gemm(
        padded, x.neighbor_index(), weight_matrix, cast(bias, dtype), relu=relu, spare_row=True
    )


def _spconv_conv(x: SparseMap, weight: Tensor, bias: Tensor | None, relu: bool) -> Tensor:
    out = spconv_subm(x, weight)
    if bias is not None:
        out = out + bias.to(out.dtype)
    return F.relu(out, inplace=True) if relu else out


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

    The built-in engines (compiled C++ ops, or pure PyTorch; see :mod:`mesm.sparse.engine`)
    compute the active sites only (gather + GEMM) unless the active fraction of the map is at
    least :func:`dense_fraction`; then the whole zero-filled map is convolved densely and read at
    the active sites (same result; the record books the dense FLOPs).

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
        else:
            out = _torch_conv(x, weight, bias, dtype, relu, weight_matrix)
    elif backend == "spconv":
        out, path = _spconv_conv(x, weight, bias, relu), "spconv"
    else:
        raise ValueError(f"unknown sparse backend {backend!r}")
    record("subm_conv3x3", n, n, 2 * sites * 9 * c_in * c_out, path)
    return x.with_features(out)


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
