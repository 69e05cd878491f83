"""Manifest format: round trip, up-front validation collecting every problem, split lists."""

from __future__ import annotations

import json

import pytest

from mesm.data.errors import DataError, ManifestError
from mesm.data.manifest import (
    DatasetInfo,
    Record,
    apply_split_lists,
    read_dataset,
    resolve,
    write_dataset,
)


def test_round_trip(media_root, make_dataset):
    make_dataset(
        media_root, [{"audio": "a.wav", "speaker": "s1", "split": "train"}, {"start": 0.2}]
    )
    info, records = read_dataset(media_root)
    assert info.label_names == ("ang", "hap", "neu") and info.task == "single_label"
    assert records[0] == Record(
        id="u0", video="v.mp4", text="hello there", labels=("ang",), audio="a.wav", speaker="s1",
        split="train",
    )  # fmt: skip
    assert records[1].start == 0.2 and records[1].audio is None
    header = json.loads((media_root / "dataset.json").read_text())
    assert header["format"] == "mesm-dataset" and header["version"] == 1


def test_every_problem_is_reported_at_once_with_its_line(media_root, make_dataset):
    make_dataset(media_root, [{}])
    lines = [
        {"id": "ok", "video": "v.mp4", "text": "fine", "labels": ["ang"]},
        {"id": "a", "video": "v.mp4", "text": "  ", "labels": ["ang"]},
        {"id": "b", "video": "v.mp4", "text": "x", "labels": ["joy"]},
        {"id": "ok", "video": "v.mp4", "text": "dup", "labels": ["hap"]},
        {"id": "c", "video": "../outside.mp4", "text": "x", "labels": ["neu"]},
        {"id": "d", "video": "/etc/passwd", "text": "x", "labels": ["neu"]},
        {"id": "e", "video": "missing.mp4", "text": "x", "labels": ["neu"], "vidoe": 1},
        {"id": "f", "video": "v.mp4", "text": "x", "labels": ["neu", "hap"]},
        {"id": "g", "video": "v.mp4", "text": "x", "labels": ["neu"], "start": 2, "end": 1},
    ]
    text = "\n".join(json.dumps(x) for x in lines) + "\n{not json\n"
    (media_root / "manifest.jsonl").write_text(text)
    with pytest.raises(ManifestError) as info:
        read_dataset(media_root)
    problems = info.value.problems
    expected = [
        "manifest.jsonl:2 (a): empty transcript",
        "manifest.jsonl:3 (b): unknown label(s) ['joy']",
        "manifest.jsonl:4 (ok): duplicate id (first on line 1)",
        "manifest.jsonl:5 (c): 'video' '../outside.mp4': escapes the dataset folder",
        "manifest.jsonl:6 (d): 'video' '/etc/passwd': absolute paths are not allowed",
        "manifest.jsonl:7 (e): unknown key(s) ['vidoe']",
        "manifest.jsonl:7 (e): video file 'missing.mp4' does not exist",
        "manifest.jsonl:8 (f): a single-label dataset needs exactly one label",
        "manifest.jsonl:9 (g): empty time span: end 1 <= start 2",
        "manifest.jsonl:10: not valid JSON",
    ]
    assert len(problems) == len(expected)
    for got, want in zip(problems, expected, strict=True):
        assert got.startswith(want), (got, want)
    assert "10 problem(s)" in str(info.value)


def test_zero_length_audio_is_caught_before_decoding(media_root, make_dataset):
    (media_root / "empty.wav").write_bytes(b"")
    make_dataset(media_root, [{"audio": "empty.wav"}])
    with pytest.raises(
        ManifestError, match=r"manifest.jsonl:1 \(u0\): audio file 'empty.wav' is empty"
    ):
        read_dataset(media_root)


def test_frame_folder_needs_a_rate(media_root, make_dataset):
    (media_root / "frames").mkdir()
    make_dataset(media_root, [{"video": "frames", "audio": "a.wav"}])
    with pytest.raises(ManifestError, match=r"needs 'fps' or a timestamps\.txt"):
        read_dataset(media_root)


def test_multi_label_allows_any_number_of_labels(media_root, make_dataset):
    make_dataset(media_root, [{"labels": []}, {"labels": ["ang", "neu"]}], task="multi_label")
    _, records = read_dataset(media_root)
    assert [r.labels for r in records] == [(), ("ang", "neu")]


def test_missing_header_is_reported(tmp_path):
    with pytest.raises(ManifestError, match=r"dataset\.json: missing"):
        read_dataset(tmp_path)


def test_resolve_refuses_escaping_paths(tmp_path):
    assert resolve(tmp_path, "a/../b.mp4") == tmp_path / "a/../b.mp4"
    for bad in ("../x.mp4", "a/../../x.mp4", "/abs.mp4", "C:/x.mp4"):
        with pytest.raises(DataError):
            resolve(tmp_path, bad)


def _records(*ids: str) -> list[Record]:
    return [Record(id=i, video="v.mp4", text="t", labels=("a",)) for i in ids]


def test_split_lists_assign_and_count():
    records, report = apply_split_lists(
        _records("x", "y", "z"), {"train": ["x"], "test": ["z", "w"]}, strict=False
    )
    assert [r.split for r in records] == ["train", None, "test"]
    assert report.counts == {"train": 1, "valid": 0, "test": 1}
    assert report.unassigned == ["y"] and report.absent == {"test": ["w"]}


def test_split_ids_absent_from_the_manifest_are_an_error():
    with pytest.raises(
        ManifestError, match=r"1 id\(s\) of split 'valid' are not in the manifest: q"
    ):
        apply_split_lists(_records("x"), {"train": ["x"], "valid": ["q"]})
    with pytest.raises(ManifestError, match="listed in both 'train' and 'test'"):
        apply_split_lists(_records("x"), {"train": ["x"], "test": ["x"]})


def test_header_validation():
    with pytest.raises(ValueError, match="task"):
        DatasetInfo(name="x", task="regression", label_names=("a",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unique"):
        DatasetInfo(name="x", task="single_label", label_names=("a", "a"))


def test_write_is_atomic_and_leaves_no_temporaries(tmp_path):
    info = DatasetInfo(name="x", task="single_label", label_names=("a",))
    write_dataset(tmp_path, info, _records("x"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset.json", "manifest.jsonl"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"text": ""}, "empty transcript"),
        ({"labels": ["joy"]}, "unknown label(s) ['joy']"),
        ({"video": "../v.mp4"}, "escapes the dataset folder"),
        ({"video": "/tmp/v.mp4"}, "absolute paths are not allowed"),
        ({"audio": "nowhere.wav"}, "audio file 'nowhere.wav' does not exist"),
        ({"id": "../evil"}, "'id' must match"),
        ({"split": "dev"}, "'split' must be one of"),
        ({"start": -1.0}, "'start' must be a non-negative number"),
    ],
)
def test_each_bad_record_kind_is_named(media_root, make_dataset, fields, message):
    make_dataset(media_root, [{}, fields])
    with pytest.raises(ManifestError) as info:
        read_dataset(media_root)
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith("manifest.jsonl:2 ")
    assert message in info.value.problems[0]


def test_duplicate_ids_name_both_lines(media_root, make_dataset):
    make_dataset(media_root, [{"id": "same"}, {"id": "other"}, {"id": "same"}])
    with pytest.raises(ManifestError) as info:
        read_dataset(media_root)
    assert info.value.problems == ["manifest.jsonl:3 (same): duplicate id (first on line 1)"]
