"""The sparse ops under torch.autocast (bf16 on CPU) against their float32 results."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mesm.models.layers import VGGStage
from mesm.sparse import (
    SparseFlopCounter,
    SparseMap,
    dense_above,
    sparse_batch_norm,
    sparse_max_pool2x2,
    sparse_scale,
    submanifold_conv3x3,
)

# bf16 keeps 8 significant bits (relative rounding 2^-9); a GEMM over 9·C_in terms of rounded
# inputs stays within about 1% of its largest output. Errors are relative to the largest value.
BF16_RTOL = 2e-2
# Path → the dense_above threshold that forces it.
PATHS = {"gather": float("inf"), "dense": 0.0}


def _autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def _rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    return float(
        (got.detach().float() - want.detach().float()).abs().max()
        / want.detach().abs().max().clamp_min(1e-12)
    )


def _sites(density: float, frames=3, channels=8, h=10, w=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(frames, channels, h, w, generator=g, requires_grad=True)
    mask = torch.rand(frames, h, w, generator=g) < density
    mask[:, 0, 0] = True
    return x, mask


@pytest.mark.parametrize("density", [1.0, 0.4])
@pytest.mark.parametrize("path", sorted(PATHS))
def test_submanifold_conv_under_autocast_matches_fp32(path, density):
    x, mask = _sites(density)
    weight = nn.Parameter(torch.randn(16, 8, 3, 3, generator=torch.Generator().manual_seed(1)))
    bias = nn.Parameter(torch.randn(16, generator=torch.Generator().manual_seed(2)))
    results = {}
    for name, context in (("fp32", torch.autocast("cpu", enabled=False)), ("bf16", _autocast())):
        with dense_above(PATHS[path]), SparseFlopCounter() as counter, context:
            out = submanifold_conv3x3(SparseMap.from_dense(x, mask), weight, bias)
        upstream = torch.randn(out.features.shape, generator=torch.Generator().manual_seed(3))
        grads = torch.autograd.grad((out.features.float() * upstream).sum(), (x, weight, bias))
        assert [r.path for r in counter.records] == [path]
        results[name] = (out.features, *grads)
    out32, *grads32 = results["fp32"]
    out16, *grads16 = results["bf16"]
    assert out32.dtype == torch.float32 and out16.dtype == torch.bfloat16  # as F.conv2d does
    assert _rel_err(out16, out32) <= BF16_RTOL
    for g16, g32, leaf in zip(grads16, grads32, (x, weight, bias), strict=True):
        assert g16.dtype == leaf.dtype == torch.float32  # gradients in the parameters' dtype
        assert _rel_err(g16, g32) <= BF16_RTOL


def test_sparse_stage_under_autocast_equals_the_dense_stage_under_autocast():
    torch.manual_seed(0)
    stage = VGGStage(4, 8).train()
    x = torch.randn(3, 4, 8, 6)
    runs = {}
    for name in ("dense32", "dense16", "sparse16"):
        stage.zero_grad()
        for m in stage.modules():  # same BN state for every run
            if isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
        context = torch.autocast("cpu", enabled=False) if name == "dense32" else _autocast()
        with context, dense_above(float("inf")):
            if name.startswith("dense"):
                out = stage(x)
            else:
                out = stage.forward_sparse(SparseMap.from_dense(x)).to_dense()
        (out.float() ** 2).sum().backward()
        grads = {n: p.grad.clone() for n, p in stage.named_parameters()}
        stats = {n: b.clone() for n, b in stage.named_buffers() if "running" in n}
        runs[name] = (out, grads, stats)
    dense16, sparse16, dense32 = runs["dense16"], runs["sparse16"], runs["dense32"]
    assert sparse16[0].dtype == dense16[0].dtype == torch.bfloat16
    assert _rel_err(sparse16[0], dense16[0]) <= BF16_RTOL
    assert _rel_err(sparse16[0], dense32[0]) <= BF16_RTOL
    for n, p in stage.named_parameters():
        # Both bf16 runs round the same activations: their gradients agree far more closely
        # than either agrees with float32 (the reductions of BN's backward cancel).
        assert sparse16[1][n].dtype == p.dtype == torch.float32, n
        assert _rel_err(sparse16[1][n], dense16[1][n]) <= BF16_RTOL, n
    for n, value in sparse16[2].items():
        assert value.dtype == torch.float32, n
        assert _rel_err(value, dense32[2][n]) <= BF16_RTOL, n


def test_sparse_batch_norm_statistics_are_float32_on_bf16_features():
    # Values near 100 with unit spread: a bf16 running sum over 600 of them (~6e4, spacing
    # 256 there) could not hold the mean, nor the variance.
    g = torch.Generator().manual_seed(0)
    feats = (100 + torch.randn(600, 3, generator=g)).to(torch.bfloat16)
    sites = SparseMap.from_dense(feats.float().T.reshape(1, 3, 20, 30)).with_features(feats)
    bn = nn.BatchNorm2d(3, momentum=1.0).train()
    out = sparse_batch_norm(sites, bn)
    exact = feats.double()
    assert out.features.dtype == torch.bfloat16
    assert bn.running_mean.dtype == torch.float32
    assert torch.allclose(bn.running_mean.double(), exact.mean(0), rtol=1e-6)
    assert torch.allclose(bn.running_var.double(), exact.var(0), rtol=1e-4)
    normalised = (exact - exact.mean(0)) / (exact.var(0, unbiased=False) + bn.eps).sqrt()
    assert (out.features.double() - normalised).abs().max() <= 2e-2 * normalised.abs().max()


def test_max_pool_scale_and_dense_round_trip_keep_bf16():
    x, mask = _sites(0.5, channels=4)
    sites = SparseMap.from_dense(x, mask)
    low = sites.with_features(sites.features.to(torch.bfloat16))
    with _autocast():
        pooled = sparse_max_pool2x2(low)
        scaled = sparse_scale(low, torch.rand(low.num_active, dtype=torch.float32))
    assert pooled.features.dtype == scaled.features.dtype == torch.bfloat16
    # Max-pooling only picks values: exactly the pool of the bf16 maps (inactive = -inf).
    dense = low.to_dense().float().masked_fill(~mask[:, None], float("-inf"))
    reference = F.max_pool2d(dense, 2)
    assert torch.equal(pooled.to_dense().float(), reference.nan_to_num(0.0, neginf=0.0))
    assert low.to_dense().dtype == torch.bfloat16
    assert torch.equal(SparseMap.from_dense(low.to_dense(), mask).features, low.features)
    (grad,) = torch.autograd.grad(pooled.features.float().sum(), x)
    assert grad.dtype == torch.float32 and int((grad != 0).sum()) == pooled.num_active * 4
