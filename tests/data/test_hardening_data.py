"""Hostile datasets and caches: refused with the file, line or id, never used silently."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from bad_inputs import CASES
from mesm.cli import main
from mesm.data.errors import DataError, ManifestError
from mesm.data.manifest import read_dataset
from mesm.data.media.cache import FeatureCache
from mesm.data.media.dataset import EmotionDataset
from mesm.data.media.preprocess import preprocess_dataset


def _flip_bytes(cache: FeatureCache, uid: str, other: str) -> None:
    blob = bytearray(cache.path(uid).read_bytes())
    blob[-3] ^= 0x55  # inside a tensor's data: the file still loads
    cache.path(uid).write_bytes(bytes(blob))


def _swap(cache: FeatureCache, uid: str, other: str) -> None:
    shutil.copyfile(cache.path(other), cache.path(uid))


def _drop_key(cache: FeatureCache, uid: str, other: str) -> None:
    path = cache.path(uid)
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
    tensors = load_file(str(path))
    del tensors["boxes"]
    save_file(tensors, str(path), metadata=meta)


@pytest.mark.parametrize(
    ("case", "damage"),
    [
        ("cache-bytes-flipped", _flip_bytes),
        ("cache-entry-swapped", _swap),
        ("cache-entry-missing-key", _drop_key),
    ],
)
def test_damaged_cache_entries_are_refused_then_recomputed(synthetic_copy, case, damage):
    cache = FeatureCache(synthetic_copy)
    _, records = read_dataset(synthetic_copy)
    uid, other = records[0].id, records[1].id
    good = cache.load(uid)
    damage(cache, uid, other)
    for load in (lambda: cache.load(uid), lambda: EmotionDataset(synthetic_copy)[0]):
        with pytest.raises(DataError) as err:
            load()
        text = str(err.value)
        assert CASES[case].message in text and str(cache.path(uid)) in text and repr(uid) in text
    report = preprocess_dataset(synthetic_copy, progress=False)
    assert (report.computed, report.reused) == (1, len(records) - 1)
    repaired = cache.load(uid)
    assert torch.equal(repaired["specs"], good["specs"])
    assert repaired["faces"].shape == good["faces"].shape


def test_cache_entries_record_id_checksum_and_source_stat(synthetic_copy):
    cache = FeatureCache(synthetic_copy)
    _, records = read_dataset(synthetic_copy)
    record = records[1]
    with safe_open(str(cache.path(record.id)), framework="pt") as fh:
        meta = fh.metadata()
    assert meta["id"] == record.id and len(meta["sha256"]) == 64
    files = json.loads(meta["source_files"])
    video = synthetic_copy / record.video
    assert [record.video, video.stat().st_size, video.stat().st_mtime_ns] in files


def test_symlink_out_of_the_dataset_is_refused(media_root, make_dataset, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(media_root / "a.wav", outside / "secret.wav")
    os.symlink(outside / "secret.wav", media_root / "link.wav")
    os.symlink(outside, media_root / "elsewhere")
    make_dataset(media_root, [{"audio": "link.wav"}, {"audio": "elsewhere/secret.wav"}])
    with pytest.raises(ManifestError) as err:
        read_dataset(media_root)
    problems = err.value.problems
    assert len(problems) == 2
    assert problems[0].startswith("manifest.jsonl:1 (u0): ")
    assert all(CASES["symlink-escapes"].message in p for p in problems)
    # A top-level link the header declares may lead out (what `prepare released` writes).
    header = json.loads((media_root / "dataset.json").read_text())
    (media_root / "dataset.json").write_text(
        json.dumps({**header, "external_links": ["elsewhere"]})
    )
    with pytest.raises(ManifestError) as err:
        read_dataset(media_root)
    assert [p.split(":")[1].split(" ")[0] for p in err.value.problems] == ["1"]
    # A link that stays inside the folder is fine.
    os.symlink("a.wav", media_root / "inside.wav")
    make_dataset(media_root, [{"audio": "inside.wav"}])
    assert read_dataset(media_root)[1][0].audio == "inside.wav"


def test_unknown_and_empty_splits_are_errors(media_root, make_dataset, capsys):
    make_dataset(media_root, [{"split": "train"}])
    with pytest.raises(DataError, match=CASES["unknown-split"].message):
        preprocess_dataset(media_root, split="dev", progress=False)
    with pytest.raises(DataError, match=CASES["empty-split"].message):
        preprocess_dataset(media_root, split="test", progress=False)
    assert main(["preprocess", str(media_root), "--split", "dev", "--no-progress"]) == 1
    assert CASES["unknown-split"].message in capsys.readouterr().err
    assert not FeatureCache(media_root).dir.exists()  # nothing was started


def test_prepare_field_must_be_an_object(media_root, make_dataset):
    make_dataset(media_root, [{}])
    header = json.loads((media_root / "dataset.json").read_text())
    header["prepare"] = [1, 2]
    (media_root / "dataset.json").write_text(json.dumps(header))
    with pytest.raises(ManifestError, match=CASES["prepare-not-object"].message) as err:
        read_dataset(media_root)
    assert "dataset.json" in str(err.value)


def test_non_utf8_manifest_names_the_line(media_root, make_dataset):
    make_dataset(media_root, [{}, {}])
    manifest = media_root / "manifest.jsonl"
    lines = manifest.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b"hello", b"h\xffllo")
    manifest.write_bytes(b"".join(lines))
    with pytest.raises(ManifestError) as err:
        read_dataset(media_root)
    assert err.value.problems == [
        f"manifest.jsonl:2: {CASES['manifest-not-utf8'].message} (invalid start byte at byte 41)"
    ]


def test_nan_features_at_evaluation_name_the_utterance(synthetic_copy, tmp_path, capsys):
    from helpers import tiny_model
    from mesm.trained.checkpoint import save_checkpoint

    info, records = read_dataset(synthetic_copy)
    cache = FeatureCache(synthetic_copy)
    uid = next(r.id for r in records if r.split == "test")
    tensors = cache.load(uid)
    tensors["specs"][0, 0, 0, 0] = float("nan")  # e.g. a bad import: saved with a valid checksum
    with safe_open(str(cache.path(uid)), framework="pt") as fh:
        cache.save(uid, tensors, fh.metadata())
    names = list(info.label_names)
    checkpoint = save_checkpoint(
        tmp_path / "m.safetensors",
        tiny_model("fe2e", num_classes=len(names)),
        label_names=names,
        task=info.task,
    )
    args = ["evaluate", "--checkpoint", str(checkpoint), "--data", str(synthetic_copy)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert CASES["nan-features"].message in err and repr(uid) in err and err.count("\n") == 1


def test_too_many_workers_are_capped_with_a_message(media_root, make_dataset, monkeypatch, capsys):
    import mesm.jobs.runner as jobs
    import mesm.jobs.workers as workers

    make_dataset(media_root, [{}, {"audio": "a.wav"}])
    monkeypatch.setattr(workers, "cpu_count", lambda: 1)

    def no_pool(*args, **kwargs):
        raise AssertionError("one CPU: no worker pool should be started")

    monkeypatch.setattr(jobs, "worker_pool", no_pool)
    assert main(["preprocess", str(media_root), "--workers", "1000", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert f"--workers 1000 {CASES['too-many-workers'].message} 1" in captured.err
    assert "2 computed" in captured.out
    assert workers.cap_workers(8, jobs=3) == 1 and workers.cap_workers(0) == 0


def test_a_second_preprocess_on_a_busy_cache_stops_clearly(media_root, make_dataset):
    import subprocess
    import sys

    make_dataset(media_root, [{}])
    cache = FeatureCache(media_root)
    cache.prepare()
    # A temporary of a live process (another run's worker) and one of a process that is gone.
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], **_TEXT)
    live = cache.items / f".u0.safetensors.{os.getppid()}-00ab.tmp"
    dead = cache.items / f".u0.safetensors.{int(done.stdout)}-00cd.tmp"
    live.write_bytes(b"in flight")
    dead.write_bytes(b"left by a killed run")
    with cache.lock():
        with pytest.raises(DataError, match=CASES["concurrent-preprocess"].message) as err:
            preprocess_dataset(media_root, progress=False)
        assert f"pid {os.getpid()}" in str(err.value)
        assert live.exists() and dead.exists()  # the refused run touched nothing
    report = preprocess_dataset(media_root, progress=False)
    assert report.computed == 1
    assert live.exists() and not dead.exists()  # only the stale temporary was cleaned


_TEXT = {"capture_output": True, "text": True, "check": True}
