"""Modality dropout (which utterances leave which modality's logits out of the fusion) and the
per-modality losses."""

from __future__ import annotations

import pytest
import torch

from helpers import make_batch, model_inputs, tiny_model
from mesm.training.module import EmotionModule


def _module(model, dropout, modality_loss=0.0):
    return EmotionModule(
        model,
        label_names=[f"e{k}" for k in range(6)],
        task="multi_label",
        pos_weight=torch.linspace(0.5, 3.0, 6),
        modality_dropout=dropout,
        modality_loss=modality_loss,
    )


@pytest.mark.parametrize("arch", ["fe2e", "mesm"])
def test_a_kept_modality_set_equals_the_fusion_of_those_logits_alone(arch):
    model = tiny_model(arch).eval()
    batch = make_batch([3, 2, 4, 1], [2, 3, 1, 2])
    with torch.no_grad():
        per = model.forward_modalities(**model_inputs(batch))
        full = model(**model_inputs(batch))
        assert torch.equal(model.fuse(per), full)
        keep = torch.tensor([[1, 1, 1], [0, 1, 1], [1, 0, 0], [0, 0, 1]], dtype=torch.float32)
        dropped = model.fuse(per, keep)
    weights = model.fusion.weight.view(-1)
    for row, kept in enumerate(keep):
        expected = sum(weights[i] * per[m][row] for i, m in enumerate(model.modalities) if kept[i])
        torch.testing.assert_close(dropped[row], expected)
    assert torch.equal(dropped[0], full[0])


def test_the_draw_follows_the_rates_and_never_drops_every_modality():
    module = _module(tiny_model("fe2e"), {"t": 0.5, "a": 0.9, "v": 0.9})
    torch.manual_seed(0)
    keep = module.modality_keep(20000)
    assert keep.shape == (20000, 3)
    assert keep.sum(dim=1).min() == 1  # never empty
    # P(all three drawn dropped) = 0.405: those rows keep everything, so each rate is lowered.
    empty = 0.5 * 0.9 * 0.9
    for i, q in enumerate((0.5, 0.9, 0.9)):
        expected = 1 - q + empty
        assert abs(keep[:, i].mean().item() - expected) < 0.015


def test_without_dropout_or_modality_losses_the_training_loss_is_the_fused_one():
    module = _module(tiny_model("mesm"), {"t": 0.0}).eval()
    batch = make_batch([2, 3], [1, 2])
    assert module.modality_dropout == {}
    with torch.no_grad():
        fused = module._loss(module(batch), batch["labels"])
        assert torch.equal(module._training_loss(batch), fused)


@pytest.mark.parametrize("arch", ["fe2e", "mesm"])
def test_the_modality_losses_add_the_weighted_mean_of_each_modality_alone(arch):
    module = _module(tiny_model(arch), {}, modality_loss=0.7).eval()
    batch = make_batch([3, 2, 1], [2, 1, 3])
    with torch.no_grad():
        per = module.model.forward_modalities(**model_inputs(batch))
        labels = batch["labels"]
        fused = module._loss(module(batch), labels)
        alone = [module._loss(per[m], labels) for m in "tav"]
        want = fused + 0.7 * sum(alone) / 3
        torch.testing.assert_close(module._training_loss(batch), want)
    with pytest.raises(ValueError, match="only FE2E and MESM"):
        _module(torch.nn.Linear(2, 2), {}, modality_loss=0.5)


def test_dropped_text_rows_do_not_depend_on_the_text_head_and_every_parameter_trains():
    model = tiny_model("fe2e")
    module = _module(model, {"t": 0.5}).eval()  # no dropout layers: the forward draws nothing
    batch = make_batch([3, 2, 4, 1, 2, 2], [2, 3, 1, 2, 1, 1])
    torch.manual_seed(3)
    keep = module.modality_keep(6)
    assert 0 < keep[:, 0].sum() < 6  # this seed drops the text of some rows, not all
    torch.manual_seed(3)
    per = model.forward_modalities(**model_inputs(batch))
    logits = model.fuse(per, module.modality_keep(6))
    params = list(model.text_head.parameters())
    grads = torch.autograd.grad(
        logits[keep[:, 0] == 0].sum(), params, allow_unused=True, retain_graph=True
    )
    assert all(g is None or torch.count_nonzero(g) == 0 for g in grads)
    kept = torch.autograd.grad(logits[keep[:, 0] == 1].sum(), params, retain_graph=True)
    assert all(torch.count_nonzero(g) > 0 for g in kept)
    loss = module._loss(logits, batch["labels"])
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert no_grad == []


def test_modality_dropout_refuses_a_model_without_that_modality():
    with pytest.raises(ValueError, match=r"the model has no modality \['a'\]"):
        _module(tiny_model("fe2e", modalities="tv"), {"a": 0.5})
