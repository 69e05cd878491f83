"""FE2E, MESM and top-p selection under torch.autocast (bf16 on CPU) against float32."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from helpers import make_batch, model_inputs, tiny_model
from mesm.models.attention import CrossModalAttention, NucleusMass, top_p_mask
from mesm.sparse import SparseFlopCounter, SparseMap, dense_above

# Logits through a dozen bf16 layers: within 2% of the largest logit (measured: ~0.5%).
LOGIT_RTOL = 2e-2


def _autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16)


# bf16 gradients against float32, by value: the whole gradient within 4% (relative L2) and,
# where the selection cannot differ (p = 1), each parameter's within 10% (its L2 against its
# own norm plus 1% of the whole gradient's, so a parameter with a near-zero gradient is not
# judged by its rounding noise). Measured: 0.5-2.3% whole, <= 6% per parameter at p = 1; at
# p = 0.7 bf16 rounding moves a few sites across the top-p cut, so single parameters of the
# selected pathway differ by up to ~50% while the whole gradient stays within 2.3%.
GRAD_RTOL = 4e-2
PARAM_RTOL = 1e-1


def _grads(model, batch, context) -> dict[str, torch.Tensor]:
    model.zero_grad()
    with context:
        logits = model(**model_inputs(batch))
    F.binary_cross_entropy_with_logits(logits.float(), batch["labels"]).backward()
    return logits, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize(
    ("arch", "p", "gating"),
    [
        ("fe2e", None, "none"),
        ("mesm", 1.0, "none"),
        ("mesm", 1.0, "gated"),
        ("mesm", 0.7, "none"),
        ("mesm", 0.7, "gated"),
    ],
)
def test_autocast_gradients_equal_float32_gradients_within_bf16_tolerance(arch, p, gating, seed):
    batch = make_batch([3, 1, 2], [2, 3, 1], seed=seed)
    options = {} if arch == "fe2e" else {"p": p, "gating": gating}
    # Eval mode: no dropout, and batch norm from its running statistics. In train mode, batch
    # norm's backward on these few random frames cancels most of the incoming gradient, and
    # the conv weights before it then differ by ~30-50% in bf16 (measured), which would test
    # the conditioning of a tiny random batch, not autocast.
    model = tiny_model(arch, **options).eval()
    _, grads32 = _grads(model, batch, torch.autocast("cpu", enabled=False))
    logits, grads16 = _grads(model, batch, _autocast())
    assert logits.dtype == torch.bfloat16 and logits.shape == (3, 6)
    # The same parameters learn (gated: the attention layers too), in their own dtype.
    assert set(grads16) == set(grads32)
    cross_modal = ("audio.attention.", "visual.attention.")
    assert any(n.startswith(cross_modal) for n in grads16) == (gating == "gated")
    params = dict(model.named_parameters())
    assert all(g.dtype == params[n].dtype == torch.float32 for n, g in grads16.items())
    flat32 = torch.cat([g.flatten() for g in grads32.values()])
    flat16 = torch.cat([grads16[n].flatten() for n in grads32])
    assert float((flat16 - flat32).norm()) <= GRAD_RTOL * float(flat32.norm())
    if p == 0.7:
        return
    floor = 1e-2 * flat32.norm()
    errors = {n: float((grads16[n] - g).norm() / (g.norm() + floor)) for n, g in grads32.items()}
    assert max(errors.values()) <= PARAM_RTOL, max(errors.items(), key=lambda kv: kv[1])


@pytest.mark.parametrize("path", ["gather", "dense"])
def test_mesm_at_p1_equals_fe2e_under_autocast(path):
    batch = make_batch([3, 2, 4], [2, 3, 1], seed=1)
    fe2e = tiny_model("fe2e").eval()
    mesm = tiny_model("mesm", seed=1, p=1.0).eval()
    mesm.load_state_dict(fe2e.state_dict(), strict=False)
    with torch.no_grad():
        reference = fe2e(**model_inputs(batch))
        with _autocast():
            dense16 = fe2e(**model_inputs(batch))
            with dense_above(float("inf") if path == "gather" else 0.0), SparseFlopCounter() as c:
                sparse16 = mesm(**model_inputs(batch))
    assert {r.path for r in c.records if r.op == "subm_conv3x3"} == {path}
    assert sparse16.dtype == dense16.dtype == torch.bfloat16
    scale = reference.abs().max()
    assert (sparse16.float() - dense16.float()).abs().max() <= LOGIT_RTOL * scale
    assert (sparse16.float() - reference).abs().max() <= LOGIT_RTOL * scale


def _capture(layer: CrossModalAttention, x: SparseMap, y: torch.Tensor, context):
    seen = {}
    handle = layer.capture.register_forward_hook(
        lambda module, args, out: seen.update(probs=args[0], keep=args[1])
    )
    with torch.no_grad(), context:
        layer(x, y)
    handle.remove()
    return seen["probs"], seen["keep"]


def test_kept_sites_at_p_below_1_equal_fp32_where_rounding_cannot_reach_the_cut():
    frames, side, p = 64, 6, 0.6
    torch.manual_seed(0)
    layer = CrossModalAttention(16, 32, 16, p=NucleusMass(p))
    x = SparseMap.from_dense(torch.randn(frames, 16, side, side))
    y = torch.randn(frames, 32)
    probs32, keep32 = _capture(layer, x, y, torch.autocast("cpu", enabled=False))
    probs16, keep16 = _capture(layer, x, y, _autocast())
    assert probs16.dtype == torch.float32  # softmax in float32 although the scores are bf16
    p32, p16 = probs32.view(frames, -1).double(), probs16.view(frames, -1).double()
    keep32, keep16 = keep32.view(frames, -1), keep16.view(frames, -1)
    # Frames the bf16 rounding of the scores cannot move across the cut: every cumulative mass
    # of the fp32 order is farther from p than the total change of the probabilities (L1), and
    # the last kept probability exceeds the first dropped one by more than twice the largest
    # change (so the kept set cannot swap members).
    ordered, _ = p32.sort(1, descending=True)
    mass = torch.cat([ordered.new_zeros(frames, 1), ordered.cumsum(1)], 1)
    change = (p16 - p32).abs()
    count = (mass[:, :-1] < p).sum(1)
    rows = torch.arange(frames)
    following = torch.cat([ordered, ordered.new_zeros(frames, 1)], 1)[rows, count]
    stable = ((mass - p).abs().min(1).values > change.sum(1)) & (
        ordered[rows, count - 1] - following > 2 * change.max(1).values
    )
    assert int(stable.sum()) >= frames // 2  # the construction leaves most frames in
    assert torch.equal(keep16[stable], keep32[stable])
    assert torch.equal(keep32.sum(1), count)
    # Everywhere, bf16's own selection is a valid nucleus of its own probabilities.
    assert bool(((p16 * keep16).sum(1) >= p - 1e-9).all())


def test_top_p_on_bf16_probabilities_sums_in_float64():
    # 1000 equal bf16 probabilities: a bf16 (or fp16) running sum stalls long before 0.5
    # (its spacing there exceeds the increment), which would keep far too many sites.
    probs = torch.full((1, 1000), 1e-3, dtype=torch.bfloat16)
    value = float(probs[0, 0])
    keep = top_p_mask(probs, 0.5)
    assert int(keep.sum()) == math.ceil(0.5 / value)
    assert torch.equal(keep[0, : int(keep.sum())], torch.ones(int(keep.sum()), dtype=torch.bool))
