"""The text encoder equals plain transformers on the same weights (outputs and gradients), and a
local BERT runs without importing transformers' model classes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer

from mesm.models.bert import BertEncoder, bert_settings, read_config
from mesm.models.text import TextEncoder
from mesm.resources import default_text_model

TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}
TEXTS = ["I am so happy today", "no", "Über-long, ACCENTED words: naïve café — 東京!"]


def _plain_twin(ours: TextEncoder, overrides: dict) -> torch.nn.Module:
    config = AutoConfig.from_pretrained(default_text_model(), **overrides)
    plain = AutoModel.from_config(config, add_pooling_layer=False)
    missing, unexpected = plain.load_state_dict(ours.model.state_dict(), strict=False)
    assert missing == [] and unexpected == []
    return plain


def _tokens():
    return AutoTokenizer.from_pretrained(default_text_model())(
        TEXTS, padding=True, return_tensors="pt"
    )


@pytest.mark.parametrize("pretrained", [False, True], ids=["random-tiny", "minilm"])
def test_text_encoder_equals_plain_transformers_outputs_and_gradients(pretrained):
    torch.manual_seed(0)
    overrides = {} if pretrained else TINY
    ours = TextEncoder(pretrained=pretrained, overrides=overrides).eval()
    assert isinstance(ours.model, BertEncoder)
    plain = _plain_twin(ours, overrides).eval()
    tokens = _tokens()
    assert not tokens["attention_mask"].all()  # padding is in play
    got = ours(tokens["input_ids"], tokens["attention_mask"].bool())
    want = plain(**tokens).last_hidden_state[:, 0]
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)
    weights = torch.randn_like(got)
    (got * weights).sum().backward()
    (want * weights).sum().backward()
    grads = dict(plain.named_parameters())
    for name, param in ours.model.named_parameters():
        assert param.grad is not None, name
        torch.testing.assert_close(param.grad, grads[name].grad, atol=1e-5, rtol=1e-3)


def test_padding_never_changes_a_transcripts_feature():
    torch.manual_seed(0)
    ours = TextEncoder(pretrained=False, overrides=TINY).eval()
    tokens = _tokens()
    ids, mask = tokens["input_ids"], tokens["attention_mask"].bool()
    alone = ours(ids[1:2, : int(mask[1].sum())], mask[1:2, : int(mask[1].sum())])
    batched = ours(ids, mask)[1:2]
    torch.testing.assert_close(alone, batched, atol=1e-6, rtol=1e-5)
    # An integer 0/1 mask (as tokenizers return it) means the same as a bool one.
    torch.testing.assert_close(ours(ids, mask.long())[1:2], batched, atol=0, rtol=0)


def test_a_pretrained_encoder_starts_in_train_mode_like_the_rest_of_the_model():
    encoder = TextEncoder(pretrained=True)  # the offline MiniLM weights
    assert all(m.training for m in encoder.modules())
    assert not any(m.training for m in encoder.eval().modules())


def test_other_architectures_and_variants_are_left_to_transformers():
    base = read_config(default_text_model())
    assert bert_settings(base) is not None
    for change in (
        {"model_type": "roberta"},
        {"hidden_act": "gelu_new"},
        {"position_embedding_type": "relative_key"},
        {"is_decoder": True},
    ):
        assert bert_settings({**base, **change}) is None, change
    encoder = TextEncoder(pretrained=False, overrides={**TINY, "hidden_act": "relu"})
    assert not isinstance(encoder.model, BertEncoder)
    assert encoder(*_ids_and_mask()).shape == (2, 32)


def _ids_and_mask():
    tokens = _tokens()
    return tokens["input_ids"][:2], tokens["attention_mask"][:2].bool()


def test_a_local_bert_loads_without_importing_transformers_model_classes():
    code = (
        "import sys; from mesm.models.text import TextEncoder; TextEncoder(pretrained=True); "
        "print(sorted(m for m in sys.modules if m.startswith('transformers')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_checkpoint_missing_a_bert_tensor_is_refused_naming_it(tmp_path):
    from safetensors.torch import save_file

    ours = TextEncoder(pretrained=False, overrides=TINY)
    state = {k: v.contiguous() for k, v in ours.model.state_dict().items()}
    del state["encoder.layer.1.output.dense.bias"]
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({**read_config(default_text_model()), **TINY}))
    with pytest.raises(ValueError, match=r"lacks 1 BERT tensor\(s\), e\.g\. 'encoder\.layer\.1"):
        TextEncoder(str(tmp_path), pretrained=True)
