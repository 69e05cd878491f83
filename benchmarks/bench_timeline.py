"""Whole-video prediction: time and peak memory against the video's length.

For each length, writes a video (scikit-image's astronaut photograph drifting across a 320x240
frame at 25 fps, speech-like audio in 2-3.5 s bursts separated by 1 s pauses) and a subtitle
file with one cue per burst, then runs `predict_video` (subtitles, an untrained `tiny` FE2E
checkpoint) in a fresh process and reports its wall time and peak resident memory. The decoded
video itself would need ``length x 25 x 320 x 240 x 3`` bytes (3.5 GB for 10 minutes): flat peak
memory shows the streaming decode holds one segment at a time.

    python benchmarks/bench_timeline.py [--minutes 1 4 10] [--threads 2] \
        [--out docs/benchmarks/timeline.md]

The stamp names ``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` when it is set (it bounds the kernel cache
whose growth is the main change of peak memory with the video's length).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FPS, WIDTH, HEIGHT, RATE = 25, 320, 240, 16000


def write_long_video(path: Path, seconds: float, seed: int = 0) -> Path:
    """The video (streamed to the encoder frame by frame) and its .srt; returns the .srt."""
    import av
    from PIL import Image
    from skimage.data import astronaut

    from mesm.data.media.video import h264_or_fallback
    from mesm.demo.synthetic import speech_like

    rng = np.random.default_rng(seed)
    photo = np.asarray(Image.fromarray(astronaut()).resize((200, 200)))
    cues, t = [], 0.5
    while t + 3.5 < seconds:
        length = float(rng.uniform(2.0, 3.5))
        cues.append((t, t + length))
        t += length + 1.0
    audio = 0.003 * rng.standard_normal(round(seconds * RATE)).astype(np.float32)
    for a, b in cues:
        first = round(a * RATE)
        burst = speech_like(b - a, RATE, seed=int(rng.integers(1 << 30)))
        audio[first : first + burst.size] += burst
    with av.open(str(path), mode="w") as container:
        video = container.add_stream(h264_or_fallback(), rate=FPS)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        if video.name == "libx264":
            video.options = {"preset": "ultrafast", "crf": "23"}
        sound = container.add_stream("aac", rate=RATE)
        sound.layout = "mono"
        frame_rgb = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)
        for i in range(round(seconds * FPS)):
            x = int(60 + 40 * np.sin(i / 50))
            frame_rgb[:] = 90
            frame_rgb[20:220, x : x + 200] = photo
            frame = av.VideoFrame.from_ndarray(frame_rgb, format="rgb24")
            frame.pts = i
            container.mux(video.encode(frame))
        container.mux(video.encode())
        step = sound.codec_context.frame_size or 1024
        for first in range(0, audio.size, step):
            chunk = audio[None, first : first + step].copy()
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = RATE, first
            container.mux(sound.encode(frame))
        container.mux(sound.encode())
    srt = path.with_suffix(".srt")
    lines = []
    for i, (a, b) in enumerate(cues, start=1):
        stamp = [f"{int(x // 3600):02d}:{int(x % 3600 // 60):02d}:{x % 60:06.3f}" for x in (a, b)]
        lines.append(f"{i}\n{stamp[0].replace('.', ',')} --> {stamp[1].replace('.', ',')}\nhi\n")
    srt.write_text("\n".join(lines))
    return srt


def _child(video: str, srt: str, checkpoint: str, threads: int) -> None:
    import torch

    from mesm.inference.video import predict_video

    torch.set_num_threads(threads)
    began = time.perf_counter()
    timeline = predict_video(checkpoint, video, subtitles=srt, progress=False)
    seconds = time.perf_counter() - began
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"segments": len(timeline.rows), "seconds": seconds, "peak_mb": peak_mb}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 4, 10])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", help="also write the stamped table (markdown) to this file")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child, args.threads)
        return
    import torch

    from mesm.models import TINY_TEXT, create_model
    from mesm.trained.checkpoint import save_checkpoint

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from stamp import stamp, table, write_atomic

    cache = os.environ.get("ONEDNN_PRIMITIVE_CACHE_CAPACITY")
    facts = [
        f"each length in a fresh process with {args.threads} thread(s)",
        f"ONEDNN_PRIMITIVE_CACHE_CAPACITY={cache}" if cache else "oneDNN kernel cache: default",
        "untrained tiny FE2E; subtitles; 320x240 at 25 fps",
    ]
    head = stamp("; ".join(facts))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        torch.manual_seed(0)
        model = create_model("fe2e", preset="tiny", num_classes=4, **TINY_TEXT)
        checkpoint = save_checkpoint(
            root / "tiny.safetensors", model, label_names=["a", "b", "c", "d"], task="single_label"
        )
        for minutes in args.minutes:
            video = root / f"video_{minutes:g}min.mp4"
            srt = write_long_video(video, minutes * 60)
            command = [sys.executable, __file__, "--threads", str(args.threads), "--child"]
            out = subprocess.run(
                [*command, str(video), str(srt), str(checkpoint)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            result = json.loads(out.strip().splitlines()[-1])
            raw_gb = minutes * 60 * FPS * WIDTH * HEIGHT * 3 / 1e9
            rows.append(
                [
                    f"{minutes:g} min",
                    result["segments"],
                    f"{raw_gb:.1f} GB",
                    f"{result['seconds']:.1f} s",
                    f"{result['seconds'] / minutes:.1f}",
                    f"{result['peak_mb']:.0f} MB",
                ]
            )
            print(rows[-1], flush=True)
    columns = ["video", "segments", "decoded video would be", "wall time", "s per minute"]
    text = table(head, [*columns, "peak RSS"], rows)
    print(text)
    if args.out:
        write_atomic(args.out, text)


if __name__ == "__main__":
    main()
