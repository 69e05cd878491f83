"""Preprocessing time per clip with face tracks and the speaker's face (``face="speaker"``) against
the largest face (``face="largest"``, the paper's rule), on one-person and two-person clips.

Writes synthetic clips (drawn faces at 10 fps with speech-like audio: one face; or two faces side
by side, the smaller one talking), then times `preprocess_dataset` (decode, sample every 500 ms,
MTCNN, mel; with ``speaker`` also the tracks, the VAD and the mouth scores) over each corpus with
each rule, alternating the rules, one torch thread (as a preprocessing worker). Reports the median
seconds per clip over the repeats, their ratio, and in how many two-person clips the talking face
was chosen. Prints a markdown table, stamped (``--out`` also writes it).

    python benchmarks/bench_face_tracking.py [--clips 8] [--seconds 3] [--repeats 3] \
        [--out docs/benchmarks/face_tracking.md]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from mesm.data import PreprocessSettings, preprocess_dataset
from mesm.data.manifest import DatasetInfo, Record, write_dataset
from mesm.data.media.cache import FeatureCache
from mesm.demo.synthetic import face_frames, speech_like, two_face_frames, write_video

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stamp import stamp, table, write_atomic

FPS = 10
SIZES = (160, 128)  # two-person clips: the larger (silent) face and the smaller (talking) one


def make_corpus(root: Path, clips: int, seconds: float, people: int) -> None:
    """`clips` clips of one drawn face (160 x 160) or of two side by side (160 x 288)."""
    (root / "clips").mkdir(parents=True)
    records = []
    count = round(seconds * FPS)
    for i in range(clips):
        if people == 1:
            frames = face_frames(count, FPS, height=SIZES[0], width=SIZES[0], seed=i)
        else:
            frames = two_face_frames(count, talking=1, sizes=SIZES, seed=i)
        write_video(root / "clips" / f"c{i}.mp4", frames, FPS, speech_like(seconds, seed=i))
        records.append(
            Record(id=f"c{i}", video=f"clips/c{i}.mp4", text="a benchmark sentence", labels=("x",))
        )
    write_dataset(root, DatasetInfo("bench", "single_label", ("x", "y")), records)


def time_rule(root: Path, face: str) -> tuple[float, dict]:
    """Seconds of one `preprocess_dataset` run with `face` (its cache removed first)."""
    settings = PreprocessSettings(face=face)  # type: ignore[arg-type]
    shutil.rmtree(FeatureCache(root, settings).dir, ignore_errors=True)
    began = time.perf_counter()
    report = preprocess_dataset(root, settings, progress=False)
    return time.perf_counter() - began, {
        "chosen": report.speaker_chosen,
        "fallbacks": len(report.speaker_fallbacks),
        "frames": report.frames,
    }


def _row(people: int, seconds: dict[str, list[float]], counts: dict, clips: int) -> list[str]:
    """One table row: the median seconds per clip of each rule, their ratio, the choices."""
    largest, speaker = (statistics.median(seconds[face]) for face in ("largest", "speaker"))
    notes = f"{counts['largest']['frames']} frames; "
    if people == 2:
        notes += (
            f"talking face chosen in {counts['speaker']['chosen']} of {clips} clips, "
            f"{counts['speaker']['fallbacks']} fallback(s)"
        )
    else:
        notes += "one face: nothing to choose"
    label = "1 person" if people == 1 else f"{people} persons"
    times = [f"{1000 * largest:.0f} ms", f"{1000 * speaker:.0f} ms", f"{speaker / largest:.2f}"]
    return [label, *times, notes]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", help="also write the stamped table (markdown) to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    head = stamp()  # the load before this benchmark adds its own

    work = Path(tempfile.mkdtemp(prefix="mesm-bench-faces-"))
    rows = []
    try:
        for people in (1, 2):
            root = work / f"p{people}"
            make_corpus(root, args.clips, args.seconds, people)
            time_rule(root, "largest")  # warm-up: MTCNN, the VAD model, the codecs
            time_rule(root, "speaker")
            seconds: dict[str, list[float]] = {"largest": [], "speaker": []}
            counts: dict = {}
            for _ in range(args.repeats):
                for face in ("largest", "speaker"):
                    took, counts[face] = time_rule(root, face)
                    seconds[face].append(took / args.clips)
            rows.append(_row(people, seconds, counts, args.clips))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    corpus = (
        f"{args.clips} clips x {args.seconds:g} s per corpus, {FPS} fps, drawn faces "
        f"({SIZES[0]} px; two-person: {SIZES[0]} + {SIZES[1]} px side by side, the smaller "
        f"talking), speech-like audio; median of {args.repeats} runs per rule, rules "
        "alternated; one torch thread"
    )
    head = head[:-1] + f"; {corpus}_"
    columns = ["clips", "largest (per clip)", "speaker (per clip)", "ratio", "notes"]
    text = table(head, columns, rows)
    print(text)
    if args.out:
        write_atomic(args.out, text)


if __name__ == "__main__":
    main()
