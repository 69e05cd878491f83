"""p has one owner: the model's NucleusMass, read by every attention layer at forward time."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from helpers import make_batch, model_inputs
from mesm.models import TINY_TEXT, build_model, create_model


@pytest.fixture(scope="module")
def mesm_model():
    torch.manual_seed(1)
    return create_model("mesm", preset="tiny", num_classes=3, p=0.7, **TINY_TEXT).eval()


def test_every_attention_layer_reads_the_models_p(mesm_model):
    layers = [a for group in mesm_model.attention_layers().values() for a in group]
    assert len(layers) == 6  # 3 stages x (visual, audio)
    assert len({id(a.nucleus) for a in layers}) == 1  # one owner
    mesm_model.set_p(0.3)
    try:
        assert mesm_model.p == 0.3 and all(a.p == 0.3 for a in layers)
        assert mesm_model.config.p == 0.7  # the trained value stays recorded
    finally:
        mesm_model.set_p(0.7)


def test_set_p_equals_a_model_built_at_that_p(mesm_model):
    built = build_model(dataclasses.replace(mesm_model.config, p=0.4)).eval()
    built.load_state_dict(mesm_model.state_dict())
    inputs = model_inputs(make_batch([3, 2], [2, 3], seed=7))
    with torch.no_grad():
        default = mesm_model(**inputs)
        with mesm_model.using_p(0.4):
            at_04 = mesm_model(**inputs)
        assert torch.equal(at_04, built(**inputs))
        assert not torch.equal(at_04, default)  # p matters for these inputs
        assert torch.equal(mesm_model(**inputs), default)  # restored after the block


def test_using_p_restores_after_an_error_and_rejects_bad_values(mesm_model):
    with pytest.raises(RuntimeError), mesm_model.using_p(0.2):
        raise RuntimeError("boom")
    assert mesm_model.p == 0.7
    for bad in (0.0, -1.0, float("nan"), True, "0.5"):
        with pytest.raises(ValueError, match="p must be a finite number > 0"):
            mesm_model.set_p(bad)
    assert mesm_model.p == 0.7


def test_a_dense_model_has_no_p():
    fe2e = create_model("fe2e", preset="tiny", num_classes=3, **TINY_TEXT)
    assert fe2e.p is None and fe2e.attention_layers() == {}
    with fe2e.using_p(None):
        pass
    with pytest.raises(ValueError, match="only MESM has a nucleus mass"):
        fe2e.set_p(0.5)
