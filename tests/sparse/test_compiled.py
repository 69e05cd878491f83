"""The compiled sparse engine against the pure-PyTorch engine and against the dense ops.

Every op of the compiled engine (rulebook, convolution and its backward, pooling, attention
scores, softmax + top-p) must give what the pure-PyTorch engine gives, outputs and every gradient,
in fp32 and under bf16 autocast, on odd shapes: one frame, one site, frames without sites,
frames of unequal sizes, no site at all.
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import nullcontext

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from helpers import missing
from mesm.models import create_model
from mesm.models.attention import CrossModalAttention, NucleusMass, top_p_mask
from mesm.sparse import (
    SparseMap,
    dense_above,
    engine_info,
    sparse_max_pool2x2,
    submanifold_conv3x3,
    use_engine,
)
from mesm.sparse.engine import compiled_ops, compiler_available

FORCED_TORCH = os.environ.get("MESM_SPARSE_ENGINE", "auto").strip().lower() == "torch"


@pytest.fixture
def engine_built():
    """The compiled engine is the one under test: skipped only when the fallback was asked for;
    a missing compiler skips on a developer's machine and fails in CI."""
    if FORCED_TORCH:
        missing(
            "MESM_SPARSE_ENGINE=torch asks for the fallback", "but CI tests the compiled engine"
        )
    if not compiler_available():
        missing("no C++ compiler or ninja: the compiled engine cannot be built")


needs_engine = pytest.mark.usefixtures("engine_built")


class _Ops(TorchDispatchMode):
    """Names of the ops dispatched inside the block."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


@needs_engine
def test_compiled_engine_runs_where_a_compiler_exists():
    """Fails if a compiler is present but the fallback ran (a silent build failure)."""
    info = engine_info()
    assert info.name == "compiled", info.reason
    x = _case("unequal", channels=4)
    with _Ops() as seen:
        submanifold_conv3x3(x, torch.randn(5, 4, 3, 3))
    assert "mesm.subm_conv3x3" in seen.names
    assert not {"aten.index_select", "aten.mm"} & set(seen.names)


def _case(name: str, channels: int = 6) -> SparseMap:
    """A sparse map with one of the odd shapes the engines must agree on."""
    g = torch.Generator().manual_seed(len(name))
    shapes = {"one frame": (1, 5, 7), "one site": (2, 4, 4), "empty frames": (4, 6, 5)}
    frames, h, w = shapes.get(name, (3, 6, 6))
    x = torch.randn(frames, channels, h, w, generator=g)
    mask = torch.rand(frames, h, w, generator=g) < 0.6
    if name == "one site":
        mask = torch.zeros(frames, h, w, dtype=torch.bool)
        mask[1, 2, 3] = True
    elif name == "empty frames":
        mask[1] = False
        mask[3] = False
    elif name == "unequal":
        mask[0] = True
        mask[1, :2] = False
        mask[2] = torch.rand(h, w, generator=g) < 0.2
    elif name == "no site":
        mask[:] = False
    elif name == "full":
        mask[:] = True
    return SparseMap.from_dense(x, mask)


CASES = ["one frame", "one site", "empty frames", "unequal", "no site", "full"]
PRECISIONS = ["fp32", "bf16"]


def _autocast(precision: str):
    return torch.autocast("cpu", torch.bfloat16) if precision == "bf16" else nullcontext()


def _tolerance(precision: str) -> dict:
    return {"atol": 1e-5, "rtol": 1e-5} if precision == "fp32" else {"atol": 3e-2, "rtol": 3e-2}


def _conv_run(engine: str, x: SparseMap, weight, bias, precision: str, path: str):
    feats = x.features.clone().requires_grad_(True)
    w = weight.clone().requires_grad_(True)
    b = bias.clone().requires_grad_(True)
    sites = x.with_features(feats)
    threshold = float("inf") if path == "gather" else 0.0
    with use_engine(engine), dense_above(threshold), _autocast(precision):
        out = submanifold_conv3x3(sites, w, b).features
    (out.float() * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    return out.detach().float(), feats.grad, w.grad, b.grad


@needs_engine
@pytest.mark.parametrize("path", ["gather", "dense-masked"])
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("case", CASES)
def test_conv_matches_the_torch_engine(case, precision, path):
    x = _case(case)
    weight, bias = torch.randn(5, 6, 3, 3), torch.randn(5)
    ours = _conv_run("compiled", x, weight, bias, precision, path)
    theirs = _conv_run("torch", x, weight, bias, precision, path)
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        torch.testing.assert_close(a.float(), b.float(), **_tolerance(precision))


@needs_engine
@pytest.mark.parametrize("case", CASES)
def test_conv_matches_the_dense_conv_at_the_active_sites(case):
    x = _case(case)
    weight, bias = torch.randn(5, 6, 3, 3), torch.randn(5)
    with use_engine("compiled"), dense_above(float("inf")), torch.no_grad():
        out = submanifold_conv3x3(x, weight, bias, relu=True)
    dense = F.relu(F.conv2d(x.to_dense(), weight, bias, padding=1))
    expected = dense.permute(0, 2, 3, 1).reshape(-1, 5)[x.keys()]
    torch.testing.assert_close(out.features, expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(out.coords, x.coords)


@needs_engine
@pytest.mark.parametrize("case", CASES)
def test_rulebook_is_the_torch_engines(case):
    x = _case(case)
    with use_engine("compiled"):
        nbr, table = x.neighbor_index(), x.index_table()
    again = SparseMap(x.features, x.coords, x.spatial_shape, x.num_samples)
    with use_engine("torch"):
        assert torch.equal(nbr, again.neighbor_index())
        assert torch.equal(table, again.index_table())


@needs_engine
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("case", CASES)
def test_max_pool_matches_the_torch_engine_and_the_dense_pool(case, dtype):
    x = _case(case)
    results = {}
    for engine in ("compiled", "torch"):
        feats = x.features.to(dtype).requires_grad_(True)
        sites = SparseMap(feats, x.coords, x.spatial_shape, x.num_samples)
        with use_engine(engine):
            out = sparse_max_pool2x2(sites)
        weights = torch.arange(out.features.numel(), dtype=torch.float32).view_as(out.features)
        (out.features.float() * weights).sum().backward()
        results[engine] = (out.coords, out.features.detach(), feats.grad)
    for a, b in zip(results["compiled"], results["torch"], strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b)
    if case == "full" and dtype == torch.float32:
        dense = F.max_pool2d(x.to_dense(), 2).permute(0, 2, 3, 1).reshape(-1, x.features.shape[1])
        torch.testing.assert_close(results["compiled"][1], dense)


def _reference_nucleus(scores, sites: SparseMap, p: float):
    probs = torch.zeros_like(scores, dtype=torch.float32)
    keep = torch.zeros_like(scores, dtype=torch.bool)
    for f in range(sites.num_samples):
        rows = (sites.sample_index == f).nonzero().squeeze(1)
        if rows.numel():
            probs[rows] = torch.softmax(scores[rows].float(), 0)
            keep[rows] = top_p_mask(probs[rows][None], p)[0]
    return probs, keep


@needs_engine
@pytest.mark.parametrize("p", [0.3, 0.7, 1.0])
@pytest.mark.parametrize("case", CASES)
def test_nucleus_is_softmax_then_top_p_per_frame(case, p):
    x = _case(case)
    scores = torch.randn(x.num_active, generator=torch.Generator().manual_seed(3))
    probs, keep, index = compiled_ops().nucleus(scores, x.coords, x.num_samples, p)
    ref_probs, ref_keep = _reference_nucleus(scores, x, p)
    torch.testing.assert_close(probs, ref_probs)
    assert torch.equal(keep, ref_keep)
    assert torch.equal(index, keep.nonzero().squeeze(1))


@needs_engine
def test_nucleus_breaks_ties_by_position():
    x = _case("full")
    scores = torch.zeros(x.num_active)  # uniform: the first ceil(p·M) sites of each frame
    _, keep, _ = compiled_ops().nucleus(scores, x.coords, x.num_samples, 0.3)
    per_frame = keep.view(x.num_samples, -1)
    assert torch.equal(per_frame[:, :11], torch.ones(x.num_samples, 11, dtype=torch.bool))
    assert not per_frame[:, 11:].any()


@needs_engine
@pytest.mark.parametrize("gating", ["none", "gated"])
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("case", ["one frame", "empty frames", "unequal"])
def test_attention_layer_matches_the_torch_engine(case, precision, gating):
    x = _case(case)
    torch.manual_seed(0)
    layer = CrossModalAttention(6, 8, 5, p=NucleusMass(0.6), gating=gating)
    y = torch.randn(x.num_samples, 8)
    results = {}
    for engine in ("compiled", "torch"):
        layer.zero_grad(set_to_none=True)
        feats = x.features.clone().requires_grad_(True)
        with use_engine(engine), _autocast(precision):
            kept = layer(x.with_features(feats), y)
        kept.features.float().square().sum().backward()
        grads = [p.grad for p in layer.parameters()]
        results[engine] = (kept.coords, kept.features.detach().float(), feats.grad, grads)
    ours, theirs = results["compiled"], results["torch"]
    assert torch.equal(ours[0], theirs[0])
    torch.testing.assert_close(ours[1], theirs[1], **_tolerance(precision))
    torch.testing.assert_close(ours[2], theirs[2], **_tolerance(precision))
    for a, b in zip(ours[3], theirs[3], strict=True):
        assert (a is None) == (b is None) == (gating == "none")
        if a is not None:
            torch.testing.assert_close(a, b, **_tolerance(precision))


@needs_engine
@pytest.mark.parametrize("modality", ["visual", "audio"])
def test_mesm_at_p_one_is_fe2e_on_the_compiled_gather_path(modality):
    """Outputs and every gradient of the shared parameters, with every conv gathered."""
    torch.manual_seed(0)
    fe2e = create_model("fe2e", preset="tiny", text_pretrained=False).train()
    mesm = create_model("mesm", preset="tiny", text_pretrained=False, p=1.0).train()
    mesm.load_state_dict(fe2e.state_dict(), strict=False)
    frames = torch.randn(5, *({"visual": (3, 48, 48), "audio": (1, 128, 32)}[modality]))
    y = torch.randn(5, mesm.text.hidden_size)
    outs = []
    for model, text in ((fe2e, None), (mesm, y)):
        pathway = getattr(model, modality)
        torch.manual_seed(1)  # the same dropout masks
        with use_engine("compiled"), dense_above(float("inf")), _Ops() as seen:
            out = pathway.extract(frames, text)
            out.square().sum().backward()
        outs.append((out.detach(), {n: p.grad for n, p in pathway.named_parameters()}))
        if model is mesm:
            assert "mesm.subm_conv3x3_backward" in seen.names
    torch.testing.assert_close(outs[1][0], outs[0][0], atol=1e-5, rtol=1e-5)
    for name, grad in outs[0][1].items():
        torch.testing.assert_close(outs[1][1][name], grad, atol=1e-4, rtol=1e-4)


@needs_engine
@pytest.mark.parametrize("precision", PRECISIONS)
def test_mesm_logits_match_the_torch_engine(precision):
    torch.manual_seed(0)
    model = create_model("mesm", preset="tiny", text_pretrained=False, p=0.7).eval()
    faces, specs = torch.randn(6, 3, 48, 48), torch.rand(5, 1, 128, 32)
    inputs = dict(
        text_ids=torch.randint(1000, 2000, (2, 7)),
        text_mask=torch.tensor([[1] * 7, [1] * 4 + [0] * 3]),
        faces=faces,
        face_lengths=torch.tensor([4, 2]),
        specs=specs,
        spec_lengths=torch.tensor([1, 4]),
    )
    logits = {}
    for engine in ("compiled", "torch"):
        with use_engine(engine), torch.no_grad(), _autocast(precision):
            logits[engine] = model(**inputs).float()
    torch.testing.assert_close(logits["compiled"], logits["torch"], **_tolerance(precision))


@needs_engine
def test_flop_counter_counts_the_compiled_conv_from_its_sites():
    x = _case("unequal")
    weight = torch.randn(5, 6, 3, 3)
    compiled_ops()  # FlopCounterMode copies the formulas it knows when it is made
    with use_engine("compiled"), dense_above(float("inf")), FlopCounterMode(display=False) as fc:
        submanifold_conv3x3(x, weight)
    assert fc.get_total_flops() == 2 * x.num_active * 9 * 6 * 5


def _engine_in_subprocess(env: dict) -> subprocess.CompletedProcess:
    code = "from mesm.sparse import engine_info; print(engine_info().line())"
    return subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True
    )


def test_without_a_compiler_auto_falls_back_and_says_why(tmp_path):
    env = {"CXX": "no-such-compiler", "MESM_CACHE_DIR": str(tmp_path), "MESM_SPARSE_ENGINE": "auto"}
    result = _engine_in_subprocess(env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "sparse engine: torch (fallback: no C++ compiler or ninja on this machine)"
    )


def test_without_a_compiler_a_required_engine_is_a_clear_error(tmp_path):
    env = {"CXX": "no-such-compiler", "MESM_CACHE_DIR": str(tmp_path)}
    code = (
        "import torch\n"
        "from mesm.sparse import SparseMap, submanifold_conv3x3\n"
        "x = SparseMap.from_dense(torch.randn(1, 2, 3, 3))\n"
        "submanifold_conv3x3(x, torch.randn(2, 2, 3, 3))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env, "MESM_SPARSE_ENGINE": "compiled"},
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "the compiled sparse engine is unavailable: no C++ compiler" in result.stderr


def test_an_unknown_engine_name_is_refused():
    result = _engine_in_subprocess({"MESM_SPARSE_ENGINE": "fast"})
    assert result.returncode != 0
    assert "MESM_SPARSE_ENGINE must be one of auto, compiled, torch, got 'fast'" in result.stderr
