"""Data pipeline throughput: preprocessing (clips/s) and cached-epoch loading (utterances/s).

Generates clips of a real face photograph (scikit-image's astronaut, moved a little per frame;
a drawn face if scikit-image is missing) at 25 fps and 360×360 with speech-like audio, then
times `preprocess_dataset` (decode, sample every 500 ms, MTCNN, mel) and full passes of a
DataLoader over the cached dataset. Prints a markdown table, stamped with the machine and the
command (``--out`` also writes it).

    python benchmarks/bench_data.py [--clips 32] [--seconds 3] [--workers 0 2] \
        [--out docs/benchmarks/data_pipeline.md]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from mesm.data import EmotionDataset, PreprocessSettings, preprocess_dataset
from mesm.data.manifest import DatasetInfo, Record, write_dataset
from mesm.demo.synthetic import face_frames, speech_like, write_video

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stamp import stamp, table, write_atomic


def _photo_frames(count: int, size: int, seed: int) -> tuple[np.ndarray, str]:
    try:
        from PIL import Image
        from skimage.data import astronaut
    except ImportError:
        return face_frames(count, 25, height=size, width=size, seed=seed), "drawn face"
    big = np.asarray(Image.fromarray(astronaut()).resize((size + 40, size + 40)))
    rng = np.random.default_rng(seed)
    out = np.empty((count, size, size, 3), np.uint8)
    for i in range(count):
        dx, dy = (20 + 15 * np.sin(i / 10 + rng.uniform(0, 6), np.array([1.0, 0.7]))).astype(int)
        out[i] = big[dy : dy + size, dx : dx + size]
    return out, "photograph (skimage astronaut)"


def make_corpus(root: Path, clips: int, seconds: float, size: int) -> str:
    (root / "clips").mkdir(parents=True)
    records = []
    kind = ""
    for i in range(clips):
        frames, kind = _photo_frames(round(seconds * 25), size, i)
        write_video(root / "clips" / f"c{i}.mp4", frames, 25, speech_like(seconds, 16000, seed=i))
        records.append(
            Record(id=f"c{i}", video=f"clips/c{i}.mp4", text="a benchmark sentence", labels=("x",))
        )
    write_dataset(root, DatasetInfo("bench", "single_label", ("x", "y")), records)
    return kind


def startup_seconds() -> float:
    """Time for a spawned preprocessing worker to import everything and build MTCNN."""
    from mesm.data.media.preprocess import _init_worker
    from mesm.jobs.workers import worker_pool

    began = time.perf_counter()
    init = (".", PreprocessSettings().to_dict(), "cpu", 32)
    with worker_pool(1, _init_worker, init) as pool:
        pool.submit(int).result()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--size", type=int, default=360)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", help="also write the stamped table (markdown) to this file")
    args = parser.parse_args()
    head = stamp()  # the load before this benchmark adds its own

    work = Path(tempfile.mkdtemp(prefix="mesm-bench-"))
    rows = []
    try:
        source = work / "source"
        kind = make_corpus(source, args.clips, args.seconds, args.size)
        for workers in args.workers:
            root = work / f"w{workers}"
            shutil.copytree(source, root)
            began = time.perf_counter()
            report = preprocess_dataset(root, num_workers=workers, progress=False)
            elapsed = time.perf_counter() - began
            found = report.frames - sum(report.fallback_frames.values())
            rows.append(
                (
                    f"preprocess, {workers} worker process(es)",
                    f"{args.clips / elapsed:.2f} clips/s",
                    f"{report.frames / elapsed:.1f} frames/s incl. start-up; "
                    f"faces found in {found}/{report.frames} frames",
                )
            )
        if any(w > 0 for w in args.workers):
            rows.append(
                ("worker start-up (spawn, imports, MTCNN)", f"{startup_seconds():.1f} s", "")
            )
        root = work / f"w{args.workers[0]}"
        for workers in args.workers:
            ds = EmotionDataset(root, settings=PreprocessSettings())
            loader = DataLoader(
                ds,
                batch_size=8,
                shuffle=True,
                collate_fn=ds.collate,
                num_workers=workers,
                persistent_workers=workers > 0,
            )
            for _ in loader:  # warm-up epoch: worker start-up is paid once per run, not per epoch
                pass
            began = time.perf_counter()
            seen = 0
            for _ in range(args.epochs):
                for batch in loader:
                    seen += len(batch["ids"])
            elapsed = time.perf_counter() - began
            rows.append(
                (
                    f"cached epoch, DataLoader workers={workers}, batch 8",
                    f"{seen / elapsed:.0f} utterances/s",
                    f"mean of {args.epochs} epochs after a warm-up epoch",
                )
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    corpus = (
        f"{args.clips} clips x {args.seconds:g} s, 25 fps, {args.size}x{args.size}, {kind}; "
        "paper settings (500 ms frames, 48x48 MTCNN crops, 128-mel 32-frame chunks)"
    )
    head = head[:-1] + f"; {corpus}_"
    text = table(head, ["stage", "throughput", "notes"], rows)
    print(text)
    if args.out:
        write_atomic(args.out, text)


if __name__ == "__main__":
    main()
