"""A trained model as one .safetensors file or as a Hugging Face-style folder: the same model."""

from __future__ import annotations

import json

import pytest
import torch

import mesm
from helpers import make_batch, model_inputs
from mesm.cli import main
from mesm.demo.synthetic import face_frames, speech_like, write_video
from mesm.errors import CheckpointError
from mesm.models import TINY_TEXT, create_model
from mesm.trained.checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    TrainedModel,
    load_model,
    read_checkpoint_meta,
)


@pytest.fixture(scope="module")
def saved(trained, tmp_path_factory):
    root = tmp_path_factory.mktemp("saved")
    return trained.save(root / "model.safetensors"), trained.save_pretrained(root / "folder")


def test_folder_holds_config_weights_and_card(trained, saved):
    file, folder = saved
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", CONFIG_NAME, WEIGHTS_NAME]
    config = json.loads((folder / CONFIG_NAME).read_text())
    # config.json is the file checkpoint's header, field for field.
    assert config == read_checkpoint_meta(file)
    assert config["label_names"] == trained.label_names and config["model"]["p"] == 0.7
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: mesm\n") and "| hap | 0.40 |" in card


def test_folder_and_file_load_the_same_model(trained, saved):
    file, folder = saved
    a, b = load_model(file), mesm.from_pretrained(folder)
    assert isinstance(b, TrainedModel) and a.meta == b.meta
    assert a.thresholds == [0.5, 0.4, 0.5, 0.6] and b.task == "single_label"
    state_a, state_b = a.model.state_dict(), b.model.state_dict()
    assert state_a.keys() == trained.model.state_dict().keys() == state_b.keys()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    inputs = model_inputs(make_batch([2, 1], [1, 2], seed=4))
    with torch.no_grad():
        assert torch.equal(a.model(**inputs), b.model(**inputs))
        assert torch.equal(a.model(**inputs), trained.model(**inputs))
    # A loaded folder saves back to an identical folder.
    again = b.save_pretrained(folder.parent / "again")
    assert (again / CONFIG_NAME).read_text() == (folder / CONFIG_NAME).read_text()


def test_predict_gives_identical_output_on_folder_and_file(saved, tmp_path, capsys):
    file, folder = saved
    clip = write_video(tmp_path / "clip.mp4", face_frames(12, 10, seed=2), 10, speech_like(1.2))
    outputs = []
    for source in (file, folder):
        out = tmp_path / f"{source.name}.json"
        args = ["predict", str(clip), "--checkpoint", str(source), "--text", "so happy today"]
        assert main([*args, "--json", str(out), "--precision", "32"]) == 0
        outputs.append(json.loads(out.read_text()))
    printed = capsys.readouterr().out.split("written to")
    assert outputs[0] == outputs[1] and set(outputs[0]["emotions"]) == {"ang", "hap", "neu", "sad"}
    assert printed[0] == printed[1].split("\n", 1)[1]  # the same table printed twice


def test_a_broken_folder_is_named(trained, saved, tmp_path):
    _, folder = saved
    half = tmp_path / "half"
    half.mkdir()
    (half / WEIGHTS_NAME).write_bytes((folder / WEIGHTS_NAME).read_bytes())
    with pytest.raises(CheckpointError, match=r"half: a model folder needs config\.json"):
        load_model(half)
    (half / CONFIG_NAME).write_text("{not json")
    with pytest.raises(CheckpointError, match=r"half/config\.json: the mesm header is not valid"):
        load_model(half)
    # Weights of another model under this header: the checksum ties them, so it is an error.
    other = TrainedModel(create_model("mesm", preset="tiny", num_classes=4, **TINY_TEXT))
    other.meta = dict(trained.meta)
    other.save_pretrained(tmp_path / "other")
    (half / CONFIG_NAME).write_text((folder / CONFIG_NAME).read_text())
    (half / WEIGHTS_NAME).write_bytes((tmp_path / "other" / WEIGHTS_NAME).read_bytes())
    with pytest.raises(CheckpointError, match=r"model\.safetensors: weights checksum mismatch"):
        load_model(half)
    # The folder's weights alone are not a checkpoint: the error says to use the folder.
    with pytest.raises(CheckpointError, match="read through its folder"):
        load_model(folder / WEIGHTS_NAME)


def test_a_repo_id_goes_to_the_hub_and_fails_in_one_line(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match=r"'someone/mesm-iemocap'.*Hugging Face Hub"):
        load_model("someone/mesm-iemocap")
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_model("runs/missing.safetensors")


def test_save_records_the_p_the_model_runs_at(trained, tmp_path):
    with trained.model.using_p(0.4):
        path = trained.save(tmp_path / "p04.safetensors")
    assert trained.model.p == 0.7
    reloaded = load_model(path)
    assert reloaded.model.p == 0.4 and reloaded.model.config.p == 0.4


def test_export_turns_a_file_into_a_folder_and_back(saved, tmp_path, capsys):
    file, folder = saved
    out = tmp_path / "exported"
    assert main(["export", "--checkpoint", str(file), str(out)]) == 0
    assert (out / CONFIG_NAME).read_text() == (folder / CONFIG_NAME).read_text()
    assert (out / WEIGHTS_NAME).read_bytes() == (folder / WEIGHTS_NAME).read_bytes()
    back = tmp_path / "back.safetensors"
    assert main(["export", "--checkpoint", str(out), str(back), "--file"]) == 0
    assert read_checkpoint_meta(back) == read_checkpoint_meta(file)
    assert "written: " in capsys.readouterr().out
    missing = tmp_path / "none.safetensors"
    assert main(["export", "--checkpoint", str(missing), str(tmp_path / "new")]) == 1
    assert "no checkpoint at" in capsys.readouterr().err
