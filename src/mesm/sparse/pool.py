"""Sparse 2x2 max pooling (stride 2) over the active sites of a :class:`SparseMap`."""

from __future__ import annotations

from math import inf

import torch
import torch.nn.functional as F
from torch import Tensor

from mesm.sparse.engine import compiled_ops
from mesm.sparse.gemm import _padded
from mesm.sparse.records import record
from mesm.sparse.spconv_backend import Backend, spconv_max_pool
from mesm.sparse.tensor import SparseMap


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
        record("max_pool2x2", x.num_active, out.num_active, 0, "dense")
        return out
    ops = compiled_ops(x.coords.device) if backend == "torch" else None
    if ops is not None:  # rulebook and maxima: one compiled op each
        coords, window = ops.pool2x2_rulebook(x.coords, x.index_table(), x.num_samples, h, w)
        grad = torch.is_grad_enabled() and x.features.requires_grad
        feats = ops.window_max(x.features, window, grad)[0]
        out = SparseMap(feats, coords, (ho, wo), x.num_samples, check=False)
        record("max_pool2x2", x.num_active, out.num_active, 0, "gather")
        return out
    c = x.coords.long()
    inside = (c[:, 1] < 2 * ho) & (c[:, 2] < 2 * wo)  # floor semantics of F.max_pool2d
    if backend == "spconv":
        out = spconv_max_pool(x.select(inside) if not bool(inside.all()) else x, (ho, wo))
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
    record(
        "max_pool2x2", x.num_active, out.num_active, 0, backend if backend == "spconv" else "gather"
    )
    return out
