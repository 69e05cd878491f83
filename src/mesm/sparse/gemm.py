"""The matrix products of the sparse engine's pure-PyTorch path: oneDNN's GEMM, gathered blocks
of 3x3 neighbourhoods in reused buffers, and the dtype rule (autocast's) every sparse op follows."""

from __future__ import annotations

import math
import threading

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.flop_counter import register_flop_formula


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


def cast(t: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    return None if t is None else t.to(dtype)


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
        rows, weight, bias = rows.to(dtype), weight.to(dtype), cast(bias, dtype)
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
