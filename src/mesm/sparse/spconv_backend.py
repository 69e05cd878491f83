"""The optional spconv engine (``backend="spconv"``): submanifold conv and max-pool through
spconv 2.x, for comparison with mesm's own engines."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from mesm.sparse.tensor import SparseMap

Backend = Literal["torch", "spconv"]


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


def spconv_subm(x: SparseMap, weight: Tensor) -> Tensor:
    spconv = _spconv()
    c_out, c_in = weight.shape[:2]
    conv = spconv.SubMConv2d(c_in, c_out, 3, padding=1, bias=False).to(x.features.device)
    # spconv 2.x stores (C_out, kh, kw, C_in); functional_call keeps the autograd link to ours.
    params = {"weight": weight.permute(0, 2, 3, 1).contiguous()}
    out = torch.func.functional_call(conv, params, (_to_spconv(x),))
    if not torch.equal(out.indices, x.coords):  # submanifold: same sites, same order
        raise RuntimeError("spconv returned the submanifold sites in another order")
    return out.features


def spconv_max_pool(x: SparseMap, out_shape: tuple[int, int]) -> SparseMap:
    spconv = _spconv()
    out = spconv.SparseMaxPool2d(2, 2)(_to_spconv(x))
    coords = out.indices.to(torch.int32)
    ho, wo = out_shape
    c = coords.long()
    order = torch.argsort((c[:, 0] * ho + c[:, 1]) * wo + c[:, 2])
    return SparseMap(out.features[order], coords[order], out_shape, x.num_samples)
