"""FE2E and MESM: shapes, equivalence, padding invariance, gradients, configs, golden counts."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from helpers import make_batch, model_inputs, tiny_model
from mesm.models import EmotionModel, ModelConfig, create_model, make_config
from mesm.models.layers import ConvBNReLU
from mesm.sparse import SparseFlopCounter, dense_above

GATHER, DENSE = float("inf"), 0.0

SUBSETS = ["".join(c) for n in (1, 2, 3) for c in itertools.combinations("tav", n)]


@pytest.mark.parametrize("threshold", [GATHER, DENSE], ids=["gather", "dense-masked"])
def test_mesm_at_p1_equals_fe2e_with_the_same_weights(batch, threshold):
    fe2e = tiny_model("fe2e").eval()
    mesm = tiny_model("mesm", seed=1, p=1.0).eval()
    result = mesm.load_state_dict(fe2e.state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys
    assert all(k.startswith(("audio.attention.", "visual.attention.")) for k in result.missing_keys)
    inputs = model_inputs(batch)
    with dense_above(threshold), SparseFlopCounter() as counter:
        with torch.no_grad():
            expected = fe2e(**inputs)
            got = mesm(**inputs)
        assert torch.allclose(got, expected, atol=1e-4, rtol=1e-4)
        # Training mode (batch statistics) and the gradients of every shared parameter.
        fe2e.train()
        mesm.train()
        torch.manual_seed(0)
        dense_loss = fe2e(**inputs).square().sum()
        torch.manual_seed(0)  # the same dropout masks
        sparse_loss = mesm(**inputs).square().sum()
        assert torch.allclose(sparse_loss, dense_loss, rtol=1e-4)
        dense_loss.backward()
        sparse_loss.backward()
    assert {r.path for r in counter.records if r.op == "subm_conv3x3"} == {
        "gather" if threshold == GATHER else "dense"
    }
    params = dict(mesm.named_parameters())
    for name, p in fe2e.named_parameters():
        if name.startswith(("audio.", "visual.")):
            assert torch.allclose(params[name].grad, p.grad, atol=1e-5, rtol=1e-3), name


@pytest.mark.parametrize("arch", ["fe2e", "mesm"])
def test_folding_eval_batch_norm_changes_outputs_by_float_rounding_only(arch, batch, monkeypatch):
    model = tiny_model(arch, p=0.7)
    model.train()  # give the BN layers non-trivial running statistics and affine parameters
    with torch.no_grad():
        for _ in range(2):
            model(**model_inputs(make_batch([2, 3], [1, 2], seed=5)))
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    model.eval()
    inputs = model_inputs(batch)
    with torch.no_grad():
        folded = model(**inputs)
        again = model(**inputs)  # from the cached folded weights
        with monkeypatch.context() as m:
            m.setattr(ConvBNReLU, "folds", lambda self: False)
            unfolded = model(**inputs)
    assert torch.equal(folded, again)
    assert ((folded - unfolded).abs().max() / unfolded.abs().max()) <= 1e-5
    # The cache follows the parameters: a changed weight or statistic is folded anew.
    layer = model.visual.stages[0].block[0]
    with torch.no_grad():
        layer.bn.running_var.mul_(4)
        changed = model(**inputs)
        with monkeypatch.context() as m:
            m.setattr(ConvBNReLU, "folds", lambda self: False)
            reference = model(**inputs)
    assert not torch.allclose(changed, folded)
    assert ((changed - reference).abs().max() / reference.abs().max()) <= 1e-5


def test_mesm_below_p1_processes_fewer_sites(batch):
    counts = {}
    for p in (1.0, 0.5):
        model = tiny_model("mesm", p=p).eval()
        with torch.no_grad(), SparseFlopCounter() as counter:
            model(**model_inputs(batch))
        counts[p] = (
            sum(r.in_sites for r in counter.records if r.op == "subm_conv3x3"),
            counter.total_flops,
        )
    assert counts[0.5][0] < counts[1.0][0]
    assert counts[0.5][1] < counts[1.0][1]


@pytest.mark.parametrize("arch", ["fe2e", "mesm"])
def test_padding_never_changes_a_result(arch):
    batch = make_batch([3, 1, 4], [2, 5, 1], [6, 3, 9], seed=3)
    model = tiny_model(arch, p=0.6).eval()
    with torch.no_grad():
        together = model(**model_inputs(batch))
        for i in range(3):
            f0 = int(batch["face_lengths"][:i].sum())
            s0 = int(batch["spec_lengths"][:i].sum())
            fl, sl = int(batch["face_lengths"][i]), int(batch["spec_lengths"][i])
            tl = int(batch["text_mask"][i].sum())
            alone = model(
                text_ids=batch["text_ids"][i : i + 1, :tl],
                text_mask=batch["text_mask"][i : i + 1, :tl],
                faces=batch["faces"][f0 : f0 + fl],
                face_lengths=batch["face_lengths"][i : i + 1],
                specs=batch["specs"][s0 : s0 + sl],
                spec_lengths=batch["spec_lengths"][i : i + 1],
            )
            assert torch.allclose(alone[0], together[i], atol=1e-5), (arch, i)


@pytest.mark.parametrize("modalities", SUBSETS)
@pytest.mark.parametrize("arch", ["fe2e", "mesm"])
def test_every_modality_subset_builds_and_runs(arch, modalities, batch):
    if arch == "mesm" and "t" not in modalities:
        with pytest.raises(ValueError, match="text"):
            tiny_model(arch, modalities=modalities)
        return
    model = tiny_model(arch, modalities=modalities).eval()
    assert model.modalities == "".join(m for m in "tav" if m in modalities)
    for m, attr in zip("tav", ("text", "audio", "visual"), strict=True):
        assert hasattr(model, attr) == (m in modalities)
    inputs = model_inputs(batch)
    with torch.no_grad():
        logits = model(**inputs)
        per = model.forward_modalities(**inputs)
    assert logits.shape == (3, 6) and torch.isfinite(logits).all()
    assert sorted(per) == sorted(modalities)
    weights = model.fusion.weight[0]
    fused = sum(w * per[m] for w, m in zip(weights, model.modalities, strict=True))
    assert torch.allclose(logits, fused, atol=1e-6)


@pytest.mark.parametrize("arch", ["fe2e", "mesm"])
def test_a_batch_without_any_face_or_chunk_runs(arch):
    batch = make_batch([0, 0], [0, 0], [4, 6])
    model = tiny_model(arch)
    for mode in (model.eval, model.train):
        mode()
        logits = model(**model_inputs(batch))
        assert logits.shape == (2, 6) and torch.isfinite(logits).all()
    # By value: in eval mode an utterance without faces or chunks gets the same logits whether
    # its neighbours in the batch have faces and chunks or not (the same text, the same seed).
    mixed = make_batch([0, 3], [0, 2], [4, 6])
    assert torch.equal(mixed["text_ids"], batch["text_ids"])
    model.eval()
    with torch.no_grad():
        alone, beside = model(**model_inputs(batch)), model(**model_inputs(mixed))
    torch.testing.assert_close(beside[0], alone[0], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(beside[1], alone[1])  # the faces and chunks do count


def _grad_status(model, batch):
    model.train()
    logits = model(**model_inputs(batch))
    torch.nn.functional.binary_cross_entropy_with_logits(logits, batch["labels"]).backward()
    # "Has a gradient" = reached by backward (some, like a key bias, are mathematically 0).
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    return with_grad, {n for n, _ in model.named_parameters()}


def test_every_fe2e_parameter_gets_a_gradient(batch):
    with_grad, names = _grad_status(tiny_model("fe2e"), batch)
    assert names - with_grad == set()


def test_mesm_gradients_in_both_gating_modes(batch):
    with_grad, names = _grad_status(tiny_model("mesm", p=0.7, gating="none"), batch)
    attention = {n for n in names if n.startswith(("audio.attention.", "visual.attention."))}
    assert attention and with_grad == names - attention  # the paper: selection only
    with_grad, names = _grad_status(tiny_model("mesm", p=0.7, gating="gated"), batch)
    assert names - with_grad == set()


def test_missing_inputs_and_bad_configs_are_clear_errors(batch):
    model = tiny_model("fe2e")
    inputs = model_inputs(batch)
    inputs.pop("faces")
    with pytest.raises(ValueError, match="faces"):
        model(**inputs)
    with pytest.raises(ValueError, match="modalities"):
        ModelConfig(modalities="tx")
    with pytest.raises(ValueError, match="gating"):
        ModelConfig(gating="soft")
    with pytest.raises(ValueError, match="p must be"):
        ModelConfig(p=0.0)
    with pytest.raises(ValueError, match="multiple of 16"):
        ModelConfig(face_size=40)
    with pytest.raises(ValueError, match="preset"):
        create_model("fe2e", preset="huge")
    with pytest.raises(ValueError, match=r"model: unknown keys"):
        ModelConfig.from_dict({"colour": "red"})


def test_config_round_trip_and_classes():
    config = make_config("mesm", "tiny", p=0.3, modalities="tv")
    assert ModelConfig.from_dict(config.to_dict()) == config
    mesm, fe2e = tiny_model("mesm"), tiny_model("fe2e")
    assert isinstance(mesm, EmotionModel) and isinstance(fe2e, EmotionModel)
    assert mesm.config.mesm and mesm.attention_layers() and not fe2e.attention_layers()
