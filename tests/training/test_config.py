"""Run configs: YAML + ``--set`` overrides, strict reading, errors that name the file."""

from __future__ import annotations

import pytest

from mesm.training.config import apply_overrides, load_run_config


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  preset: tiny\n  arch: mesm\ndata:\n  batch_size: 4\n")
    config = load_run_config(path, ["optim.lr=1e-3", "model.p=0.5", "trainer.devices=[0, 1]"])
    assert config.data.batch_size == 4 and config.optim.lr == 1e-3
    assert config.trainer.devices == [0, 1]
    model_config = config.model_config()
    assert model_config.p == 0.5 and model_config.d_model == 32  # the tiny preset, then fields
    assert apply_overrides({"a": {"b": 1}}, ["a.c=x"]) == {"a": {"b": 1, "c": "x"}}


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        ("optim:\n  learning_rate: 1\n", [], r"optim: unknown keys \['learning_rate'\]"),
        ("extra: {}\n", [], "unknown config sections"),
        ("model:\n  arch: mesm\n  modalities: av\n", [], "MESM needs the text modality"),
        ("model:\n  preset: huge\n", [], "unknown preset"),
        ("model: [\n", [], "not valid YAML"),
        ("", ["optim.lr"], "key.sub=value"),
        ("optim:\n  modality_dropout: {t: 1.0}\n", [], r"modality_dropout.t must be in \[0, 1\)"),
        ("optim:\n  modality_dropout: {x: 0.5}\n", [], "unknown modality 'x'"),
        (
            "model:\n  modalities: tv\noptim:\n  modality_dropout: {a: 0.5}\n",
            [],
            r"no modality \['a'\]",
        ),
        (
            "model:\n  arch: mult\noptim:\n  modality_dropout: {t: 0.5}\n",
            [],
            "only FE2E and MESM",
        ),
        ("", ["optim.modality_loss=-1"], "modality_loss must be >= 0"),
        ("model:\n  arch: lf_lstm\n", ["optim.modality_loss=1"], "only FE2E and MESM"),
    ],
)
def test_bad_configs_name_the_file_and_the_problem(tmp_path, text, overrides, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as err:
        load_run_config(path, overrides)
    assert str(path) in str(err.value)
