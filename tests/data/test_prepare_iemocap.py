"""prepare_iemocap on a tiny fake release in the real file formats."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from mesm.data.manifest import read_dataset
from mesm.data.media.dataset import EmotionDataset
from mesm.data.media.preprocess import preprocess_dataset
from mesm.data.media.video import sample_frames
from mesm.data.prepare.iemocap import prepare_iemocap, speaker_half
from mesm.demo.synthetic import write_video

RED, BLUE = (200, 30, 30), (30, 30, 200)

# (start, end, id, label, transcript or None); ids are in the paper's split lists unless noted.
DIALOGS = {
    ("Session1", "Ses01F_impro01"): [
        (0.0, 1.0, "Ses01F_impro01_F000", "neu", "Excuse me."),  # train, left
        (0.5, 1.5, "Ses01F_impro01_M001", "xxx", "Yeah."),  # no agreed label: dropped
        (1.2, 2.2, "Ses01F_impro01_M005", "ang", "Do you have your forms?"),  # valid, right
        (2.0, 2.8, "Ses01F_impro01_F014", "sad", "I'm sorry: I didn't."),  # test, overlaps
        (2.9, 3.4, "Ses01F_impro01_F003", "hap", "Okay."),  # in no split list: dropped
        (3.0, 3.5, "Ses01F_impro01_M000", "exc", None),  # no transcript: dropped
    ],
    ("Session2", "Ses02M_impro02"): [
        (0.2, 1.2, "Ses02M_impro02_F000", "fru", "Why now?"),  # test, right (F != M)
        (1.0, 2.0, "Ses02M_impro02_M000", "exc", "Because!"),  # train, left
    ],
}


def _frames(count: int) -> np.ndarray:
    frames = np.empty((count, 96, 160, 3), np.uint8)
    frames[:, :, :80] = RED
    frames[:, :, 80:] = BLUE
    frames[:, :8] = (np.arange(count, dtype=np.uint8) * 6)[:, None, None, None]  # index tag
    return frames


@pytest.fixture
def release(tmp_path):
    root = tmp_path / "IEMOCAP_full_release"
    t = np.arange(4 * 16000) / 16000
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 300 * t), 0.5 * np.sin(2 * np.pi * 1000 * t)], 1)
    for (session, dialog), utterances in DIALOGS.items():
        base = root / session / "dialog"
        for sub in ("avi/DivX", "wav", "EmoEvaluation", "transcriptions"):
            (base / sub).mkdir(parents=True)
        write_video(base / "avi" / "DivX" / f"{dialog}.avi", _frames(40), 10)
        sf.write(base / "wav" / f"{dialog}.wav", stereo, 16000, subtype="PCM_16")
        evaluation = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
        transcript = []
        for start, end, uid, label, text in utterances:
            evaluation += [
                f"[{start:.4f} - {end:.4f}]\t{uid}\t{label}\t[2.5000, 2.5000, 2.5000]",
                f"C-E1:\t{label.capitalize()};\t()",
                "",
            ]
            if text is not None:
                transcript.append(f"{uid} [{start:07.4f}-{end:07.4f}]: {text}")
        transcript.append("M: [BREATHING]")
        (base / "EmoEvaluation" / f"{dialog}.txt").write_text("\n".join(evaluation) + "\n")
        (base / "transcriptions" / f"{dialog}.txt").write_text("\n".join(transcript) + "\n")
    return root


def _dominant_hz(wave: np.ndarray, sr: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(wave))
    return float(np.argmax(spectrum) * sr / len(wave))


def test_speaker_half_follows_the_session_letter():
    assert speaker_half("Ses01F_impro01_F000") == "left"
    assert speaker_half("Ses01F_impro01_M000") == "right"
    assert speaker_half("Ses05M_script02_2_M035") == "left"
    assert speaker_half("Ses05M_script02_2_F001") == "right"


def test_prepare_cuts_clips_halves_labels_and_splits(release, tmp_path):
    out = tmp_path / "iemocap"
    report = prepare_iemocap(release, out, progress=False)
    assert report.kept == 5
    assert report.dropped == {"label xxx": 1, "not in a split": 1, "no transcript": 1}
    assert report.splits == {"train": 2, "valid": 1, "test": 2}
    # Listed ids present in the release (kept or not) are not "absent".
    assert report.absent_from_release == {"train": 5162 - 4, "valid": 737 - 1, "test": 1481 - 2}
    info, records = read_dataset(out)
    assert info.task == "single_label" and info.label_names == (
        "ang",
        "exc",
        "fru",
        "hap",
        "neu",
        "sad",
    )
    by_id = {r.id: r for r in records}
    assert sorted(by_id) == [
        "Ses01F_impro01_F000",
        "Ses01F_impro01_F014",
        "Ses01F_impro01_M005",
        "Ses02M_impro02_F000",
        "Ses02M_impro02_M000",
    ]
    assert by_id["Ses01F_impro01_F014"].text == "I'm sorry: I didn't."
    assert by_id["Ses01F_impro01_M005"].labels == ("ang",)
    assert by_id["Ses01F_impro01_M005"].speaker == "Ses01_M"
    assert {uid: r.split for uid, r in by_id.items()} == {
        "Ses01F_impro01_F000": "train",
        "Ses01F_impro01_F014": "test",
        "Ses01F_impro01_M005": "valid",
        "Ses02M_impro02_F000": "test",
        "Ses02M_impro02_M000": "train",
    }
    expected_colour = {
        "Ses01F_impro01_F000": RED,
        "Ses01F_impro01_M005": BLUE,
        "Ses01F_impro01_F014": RED,
        "Ses02M_impro02_F000": BLUE,
        "Ses02M_impro02_M000": RED,
    }
    spans = {uid: (s, e) for utts in DIALOGS.values() for s, e, uid, *_ in utts}
    for uid, record in by_id.items():
        frames = sample_frames(out / record.video, interval_ms=100)
        start, end = spans[uid]
        assert frames.images[0].shape == (96, 80, 3)  # one half of 160 pixels
        assert len(frames.images) == round((end - start) * 10)
        np.testing.assert_allclose(frames.timestamps[0], 0.0, atol=1e-3)
        body = frames.images[0][20:, 8:72].reshape(-1, 3).mean(axis=0)
        assert np.abs(body - expected_colour[uid]).max() < 8, uid
        tag = frames.images[0][:6, 10:70].mean() / 6
        assert round(tag) == round(start * 10), uid  # the clip starts at its span's frame
        wave, sr = sf.read(out / record.audio)
        assert sr == 16000 and wave.ndim == 1 and len(wave) == round((end - start) * 16000)
        left = expected_colour[uid] == RED
        assert abs(_dominant_hz(wave) - (300 if left else 1000)) < 5, uid


def test_prepared_dataset_goes_through_preprocess_and_batches(release, tmp_path):
    out = tmp_path / "iemocap"
    prepare_iemocap(release, out, progress=False)
    report = preprocess_dataset(out, progress=False)
    assert report.computed == 5 and report.frames == 2 + 2 + 2 + 2 + 2
    ds = EmotionDataset(out, "train")
    batch = ds.collate([ds[0], ds[1]])
    assert batch["ids"] == ["Ses01F_impro01_F000", "Ses02M_impro02_M000"]
    assert batch["face_lengths"].tolist() == [2, 2]
    assert batch["spec_lengths"].tolist() == [3, 3]  # 1 s: 81 mel frames -> 3 chunks of 32
    assert batch["labels"].argmax(dim=1).tolist() == [4, 1]  # neu, exc


def test_rerun_reuses_clips(release, tmp_path):
    out = tmp_path / "iemocap"
    prepare_iemocap(release, out, progress=False)
    clip = out / "clips" / "Ses01F_impro01" / "Ses01F_impro01_F000.mp4"
    stamp = clip.stat().st_mtime_ns
    report = prepare_iemocap(release, out, progress=False)
    assert report.reused == 5 and report.kept == 5
    assert clip.stat().st_mtime_ns == stamp


def test_missing_dialog_media_is_reported_not_silent(release, tmp_path):
    (release / "Session2" / "dialog" / "avi" / "DivX" / "Ses02M_impro02.avi").unlink()
    report = prepare_iemocap(release, tmp_path / "out", progress=False)
    assert report.kept == 3 and report.dropped["media error"] == 2
    assert "Ses02M_impro02.avi: missing" in report.failed["Ses02M_impro02"]


def test_cli_prepare_then_preprocess(release, tmp_path, capsys):
    from mesm.cli import main

    out = tmp_path / "iemocap"
    assert (
        main(["prepare", "iemocap", "--release", str(release), "--out", str(out), "--no-progress"])
        == 0
    )
    assert "kept 5 utterances {'train': 2, 'valid': 1, 'test': 2}" in capsys.readouterr().out
    _, records = read_dataset(out)
    assert {r.id for r in records} == {
        "Ses01F_impro01_F000",
        "Ses01F_impro01_M005",
        "Ses01F_impro01_F014",
        "Ses02M_impro02_F000",
        "Ses02M_impro02_M000",
    }
    assert main(["preprocess", str(out), "--no-progress"]) == 0
    assert "0 failed" in capsys.readouterr().out
    # `prepare iemocap` requires --out (argparse: usage line, status 2); `prepare released`
    # takes no --workers (no flag is silently ignored); a missing release is one clear line.
    with pytest.raises(SystemExit) as exit_info:
        main(["prepare", "iemocap", "--release", str(release)])
    assert exit_info.value.code == 2 and "--out" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["prepare", "released", "--release", str(release), "--workers", "2"])
    assert "unrecognized arguments: --workers" in capsys.readouterr().err
    assert (
        main(
            ["prepare", "mosei", "--release", str(tmp_path / "nope"), "--out", str(tmp_path / "m")]
        )
        == 1
    )
    assert "nope" in capsys.readouterr().err


@pytest.mark.parametrize("parse", ["parse_evaluation", "parse_transcription"])
def test_a_release_file_that_is_not_utf8_is_refused_naming_file_and_line(tmp_path, parse):
    # Before, undecodable bytes were replaced by U+FFFD: a changed word or id, without a word.
    from bad_inputs import CASES
    from mesm.data.errors import DataError
    from mesm.data.prepare import iemocap

    path = tmp_path / "Ses01F_impro01.txt"
    path.write_bytes(
        b"[0.0 - 1.0]\tSes01F_impro01_F000\tneu\t[2.5, 2.5, 2.5]\n"
        b"Ses01F_impro01_F000 [0.0-1.0]: Caf\xe9.\n"
    )
    with pytest.raises(DataError, match=CASES["release-not-utf8"].message) as err:
        getattr(iemocap, parse)(path)
    assert str(err.value).startswith(f"{path}:2: ")
