"""The outputs of `mesm predict` for one clip and one whole video stay what they were.

The golden files under ``golden/`` were written by the code before the refactoring of issue 20
(`python tests/inference/test_outputs_unchanged.py OUT_DIR`, run with that code on the path) on
inputs this test builds on the fly: an untrained tiny FE2E (seeded), a 2-second synthetic clip and
a 6-second synthetic video with two subtitle cues, at fp32. The comparison is of the printed
text, the CSV and the JSON, with the temporary folder replaced by ``ROOT`` and numbers rounded to
4 decimals (so that another CPU's last bits do not count).

Whole videos crop the speaker's face by default since issue 23 (``--face speaker``); on this
one-face video that must give exactly the outputs of before plus the face fields issue 23 added
(the "faces:" line, the face columns of the CSV, the "face" entries of the JSON), which
`without_face_fields` removes before comparing and checks for.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
from pathlib import Path

import torch

GOLDEN = Path(__file__).parent / "golden"
LABELS = ["anger", "happiness", "neutral", "sadness"]
SRT = (
    "1\n00:00:00,500 --> 00:00:02,500\nI am fine\n\n"
    "2\n00:00:03,000 --> 00:00:05,500\nso happy today\n"
)
FILES = ("clip.out", "clip.csv", "clip.json", "video.out", "timeline.csv", "timeline.json")


def build_inputs(root: Path) -> tuple[Path, Path, Path, Path]:
    """(checkpoint, clip, video, subtitles) under `root`."""
    try:
        from mesm.demo.synthetic import face_frames, speech_like, write_video
    except ImportError:  # the code before issue 20 (how the golden files were made)
        from mesm.data.synthetic import face_frames, speech_like, write_video
    try:
        from mesm.trained.checkpoint import save_checkpoint
    except ImportError:
        from mesm.inference.checkpoint import save_checkpoint
    from mesm.models import TINY_TEXT, create_model

    torch.manual_seed(0)
    model = create_model("fe2e", preset="tiny", num_classes=4, **TINY_TEXT)
    checkpoint = save_checkpoint(
        root / "tiny.safetensors",
        model,
        label_names=LABELS,
        task="single_label",
        thresholds=[0.5, 0.4, 0.5, 0.6],
    )
    clip = write_video(root / "clip.mp4", face_frames(20, 10, seed=1), 10, speech_like(2.0))
    video = write_video(
        root / "talk.mp4", face_frames(60, 10, seed=2), 10, speech_like(6.0, seed=2)
    )
    subtitles = root / "talk.srt"
    subtitles.write_text(SRT, encoding="utf-8")
    return checkpoint, clip, video, subtitles


def run_outputs(root: Path, out: Path) -> None:
    """Runs `mesm predict` on the clip and the video; writes the files of `FILES` into `out`."""
    from mesm.cli import main

    checkpoint, clip, video, subtitles = build_inputs(root)
    common = ["--checkpoint", str(checkpoint), "--precision", "32", "--no-progress"]
    out.mkdir(parents=True, exist_ok=True)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        files = ["--csv", str(out / "clip.csv"), "--json", str(out / "clip.json")]
        code = main(["predict", str(clip), *common[:4], "--text", "I am fine", *files])
    assert code == 0
    (out / "clip.out").write_text(printed.getvalue())
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        where = ["--subtitles", str(subtitles), "--out", str(root / "video")]
        code = main(["predict", str(video), *common, *where])
    assert code == 0
    (out / "video.out").write_text(printed.getvalue())
    for name in ("timeline.csv", "timeline.json"):
        (out / name).write_bytes((root / "video" / name).read_bytes())


def normalised(text: str, root: Path) -> str:
    """`text` with `root` as ROOT and every number with more than 4 decimals rounded to 4."""
    text = text.replace(str(root), "ROOT")
    return re.sub(r"-?\d+\.\d{5,}(?:e-?\d+)?", lambda m: f"{float(m.group()):.4f}", text)


def without_face_fields(name: str, text: str) -> str:
    """`text` of output `name` without what ``--face speaker`` added to a whole video's outputs
    (asserted present: one face, so nothing to choose, found in every frame)."""
    if name == "video.out":
        lines = text.splitlines(keepends=True)
        faces = [line for line in lines if line.startswith("  faces: ")]
        assert faces == [
            "  faces: 0 of 2 segment(s) show several faces; the speaker's face chosen in 0, the "
            "largest kept in 0; the chosen face found in 100% of the frames\n"
        ]
        return "".join(line for line in lines if line not in faces)
    if name == "timeline.csv":
        lines = text.splitlines(keepends=True)
        assert lines[0].rstrip("\n").endswith(",face_track,face_fallback,speaker_face_found")
        assert all(line.rstrip("\n").endswith(",0,one face,1.000") for line in lines[1:])
        return "".join(line.rsplit(",", 3)[0] + "\n" for line in lines)
    if name == "timeline.json":
        payload = json.loads(text)
        assert payload.pop("face")["choice"] == "speaker"
        for row in payload["segments"]:
            face = row.pop("face")
            assert (face["fallback"], face["speaker_found"], face["tracks"]) == ("one face", 1, 1)
        return json.dumps(payload, indent=2) + "\n"
    return text


def test_one_clip_and_one_video_give_the_outputs_they_gave(tmp_path):
    root = tmp_path / "inputs"
    root.mkdir()
    run_outputs(root, root / "out")
    for name in FILES:
        got = (root / "out" / name).read_text(encoding="utf-8")
        got = normalised(without_face_fields(name, got), root)
        want = (GOLDEN / name).read_text(encoding="utf-8")
        assert got == want, name


if __name__ == "__main__":  # writes the golden files: python <this file> OUT_DIR
    target = Path(sys.argv[1])
    work = target / "work"
    (work / "inputs").mkdir(parents=True)
    run_outputs(work / "inputs", work / "inputs" / "out")
    for name in FILES:
        text = (work / "inputs" / "out" / name).read_text(encoding="utf-8")
        (target / name).write_text(normalised(text, work / "inputs"), encoding="utf-8")
