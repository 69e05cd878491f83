"""Checkpoints that load without unpickling, with their header and weight digest checked."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from helpers import make_batch, model_inputs, tiny_model
from mesm.errors import MissingInputError
from mesm.trained.checkpoint import load_checkpoint, read_checkpoint_meta, save_checkpoint


def test_checkpoint_round_trip_without_pickle(tmp_path):
    model = tiny_model("mesm", p=0.6).eval()
    names = ["a", "b", "c", "d", "e", "f"]
    path = save_checkpoint(
        tmp_path / "m.safetensors",
        model,
        label_names=names,
        task="multi_label",
        thresholds=[0.5] * 6,
        preprocessing={"img_interval_ms": 500},
    )
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary left
    with path.open("rb") as f:  # safetensors: u64 header length, then a JSON header
        header_length = int.from_bytes(f.read(8), "little")
        assert f.read(1) == b"{" and header_length < path.stat().st_size
    loaded, meta = load_checkpoint(path)
    assert meta["label_names"] == names and meta["model"]["p"] == 0.6
    batch = model_inputs(make_batch([2, 1], [1, 2]))
    with torch.no_grad():
        assert torch.equal(loaded(**batch), model(**batch))


def test_bad_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(MissingInputError, match="no checkpoint"):
        read_checkpoint_meta(tmp_path / "missing.safetensors")
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(ValueError, match="without mesm metadata"):
        load_checkpoint(plain)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x80\x04not a safetensors file")
    with pytest.raises(ValueError, match="not a readable"):
        load_checkpoint(junk)
    with pytest.raises(ValueError, match="label names"):
        save_checkpoint(
            tmp_path / "x.safetensors", tiny_model(), label_names=["a"], task="single_label"
        )


def test_checkpoint_of_an_older_mesm_builds_the_network_it_was_trained_as(tmp_path):
    # mesm 0.1.0 wrote no norm_first / final_norm / sequence_positions: its transformer was
    # pre-norm with a final LayerNorm and sinusoidal positions, whatever today's defaults are.
    old = tiny_model(
        "mesm", p=0.6, norm_first=True, final_norm=True, sequence_positions="sinusoidal"
    )
    old.eval()
    path = save_checkpoint(tmp_path / "old.safetensors", old, label_names=list("abcdef"), task="t")
    meta = read_checkpoint_meta(path)
    for key in ("norm_first", "final_norm", "sequence_positions"):
        del meta["model"][key]
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    save_file(tensors, str(path), metadata={"mesm": json.dumps(meta)})
    loaded, _ = load_checkpoint(path)
    c = loaded.config
    assert (c.norm_first, c.final_norm, c.sequence_positions) == (True, True, "sinusoidal")
    batch = model_inputs(make_batch([2, 1], [1, 2]))
    with torch.no_grad():
        assert torch.equal(loaded(**batch), old(**batch))
    # A new checkpoint records every field, so it never depends on defaults when loaded.
    new = tiny_model("fe2e")
    fresh = save_checkpoint(tmp_path / "new.safetensors", new, label_names=list("abcdef"), task="t")
    recorded = read_checkpoint_meta(fresh)["model"]
    assert {"norm_first", "final_norm", "sequence_positions", "attention_dim"} <= set(recorded)
    assert load_checkpoint(fresh)[0].config == new.config.__class__.from_dict(
        {**recorded, "text_pretrained": False}
    )
