"""Top-p selection on literal tensors and the cross-modal attention layer."""

from __future__ import annotations

import pytest
import torch

from mesm.models.attention import CrossModalAttention, NucleusMass, top_p_mask
from mesm.sparse import SparseMap


def _kept(probs, p, valid=None):
    return top_p_mask(torch.tensor(probs), p, None if valid is None else torch.tensor(valid))


@pytest.mark.parametrize(
    ("probs", "p", "expected"),
    [
        ([[0.5, 0.3, 0.2]], 0.7, [[True, True, False]]),
        ([[0.5, 0.3, 0.2]], 0.5, [[True, False, False]]),  # exactly p: the first alone suffices
        ([[0.2, 0.5, 0.3]], 0.75, [[False, True, True]]),  # order by probability, not position
        ([[0.5, 0.3, 0.2]], 0.81, [[True, True, True]]),
        ([[0.9, 0.1]], 1e-6, [[True, False]]),  # at least one position
        ([[0.25, 0.25, 0.25, 0.25]], 0.5, [[True, True, False, False]]),  # ties: lower index first
        ([[0.1, 0.3, 0.3, 0.3]], 0.35, [[False, True, True, False]]),
        ([[0.6, 0.4], [0.1, 0.9]], 0.55, [[True, False], [False, True]]),  # rows independent
        ([[0.5, 0.3, 0.2]], 1.0, [[True, True, True]]),
        ([[0.5, 0.3, 0.2]], 1.5, [[True, True, True]]),
    ],
)
def test_top_p_literal(probs, p, expected):
    assert _kept(probs, p).tolist() == expected


def test_top_p_never_keeps_padding():
    kept = _kept([[0.0, 0.7, 0.3, 0.0]], 0.9, [[False, True, True, False]])
    assert kept.tolist() == [[False, True, True, False]]
    assert _kept([[0.0, 0.7, 0.3]], 1.0, [[False, True, True]]).tolist() == [[False, True, True]]


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.7, 0.9, 0.99])
def test_top_p_mass_and_minimality_on_random_rows(p):
    probs = torch.softmax(torch.randn(64, 37, generator=torch.Generator().manual_seed(7)) * 2, 1)
    keep = top_p_mask(probs, p)
    mass = (probs.double() * keep).sum(1)
    assert bool((mass >= p - 1e-7).all())
    assert bool((keep.sum(1) >= 1).all())
    # Minimal: dropping the smallest kept probability falls below p.
    smallest = probs.masked_fill(~keep, 2.0).min(1).values.double()
    assert bool((mass - smallest < p).all())
    # Every kept probability is at least every dropped one.
    assert bool(
        (
            probs.masked_fill(~keep, 2.0).min(1).values >= probs.masked_fill(keep, -1).max(1).values
        ).all()
    )


def test_attention_selects_fewer_sites_and_stays_in_each_frame():
    torch.manual_seed(0)
    x = torch.randn(3, 8, 6, 6)
    sites = SparseMap.from_dense(x)
    y = torch.randn(3, 5)
    full = CrossModalAttention(8, 5, 4, p=NucleusMass(1.0))
    part = CrossModalAttention(8, 5, 4, p=NucleusMass(0.5))
    part.load_state_dict(full.state_dict())
    assert full(sites, y).num_active == 3 * 36
    kept = part(sites, y)
    assert 3 <= kept.num_active < 3 * 36
    assert kept.counts().min() >= 1  # every frame keeps a site
    # The kept features are the originals (gating "none" passes them unscaled).
    dense = kept.to_dense()
    active = dense.abs().sum(1) > 0
    assert torch.equal(dense[active[:, None].expand_as(dense)], x[active[:, None].expand_as(x)])


def test_attention_capture_hook_sees_probabilities_per_frame():
    torch.manual_seed(0)
    sites = SparseMap.from_dense(torch.randn(2, 4, 4, 4))
    layer = CrossModalAttention(4, 3, 4, p=NucleusMass(0.6))
    seen = {}
    layer.capture.register_forward_hook(
        lambda mod, args, out: seen.update(probs=args[0], keep=args[1], sites=args[2])
    )
    kept = layer(sites, torch.randn(2, 3))
    per_frame = torch.zeros(2).index_add(0, seen["sites"].sample_index, seen["probs"])
    assert torch.allclose(per_frame, torch.ones(2))
    assert int(seen["keep"].sum()) == kept.num_active


def test_gated_attention_scales_by_relative_attention():
    torch.manual_seed(0)
    x = torch.rand(2, 4, 4, 4) + 0.1
    sites = SparseMap.from_dense(x)
    layer = CrossModalAttention(4, 3, 4, p=NucleusMass(1.0), gating="gated")
    out = layer(sites, torch.randn(2, 3))
    ratio = (out.features / sites.features).detach()
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), atol=1e-6)  # one scale per site
    assert float(ratio.max()) == pytest.approx(1.0) and float(ratio.min()) > 0


@pytest.mark.parametrize("use_bias", [True, False])
def test_attention_scores_equal_the_additive_formula(use_bias):
    torch.manual_seed(0)
    x = torch.randn(3, 8, 5, 4, dtype=torch.float64)
    keep = torch.rand(3, 5, 4) < 0.6
    keep[:, 0, 0] = True
    sites = SparseMap.from_dense(x, keep)
    y = torch.randn(3, 6, dtype=torch.float64)
    layer = CrossModalAttention(8, 6, 7, p=NucleusMass(0.5)).double()
    if not use_bias:
        layer.proj_x.bias = None
    seen = {}
    layer.capture.register_forward_hook(lambda mod, args, out: seen.update(probs=args[0]))
    layer(sites, y)
    sample = sites.sample_index
    scores = layer.score(torch.tanh(layer.proj_x(sites.features) + layer.proj_y(y)[sample]))[:, 0]
    expected = torch.cat([torch.softmax(scores[sample == f], 0) for f in range(3)])
    assert torch.allclose(seen["probs"], expected, atol=1e-12)
