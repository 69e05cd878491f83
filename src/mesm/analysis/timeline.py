"""The files of an emotion timeline: CSV, JSON and a PNG with one probability lane per emotion.

The plot has a segment band on top (every segment a grey box, so gaps without speech show) and
below it one lane per emotion: each segment's probability as a bar spanning the segment, solid
where the emotion is decided present (probability >= its threshold), faint otherwise, with the
threshold as a dashed line. The time axis is in minutes:seconds with ticks every 1 s … 10 min,
chosen so there are at most ~20 of them, so a 10-minute video stays readable.

Every file is written atomically (temporary file in the same folder, fsync, rename).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from mesm.files import atomic_write_bytes
from mesm.inference.timeline import Timeline, prediction_rows_csv, timeline_json

_TICK_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600)
_COLOURS = ("#d62728", "#2ca02c", "#7f7f7f", "#1f77b4", "#9467bd", "#ff7f0e", "#8c564b")


def _mmss(seconds: float, _pos: object = None) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m}:{s:02d}"


def plot_timeline(timeline: Timeline, *, width: float = 14.0, dpi: int = 100) -> bytes:
    """Draw the timeline; returns the PNG bytes.

    Args:
        timeline: the result of `predict_video`.
        width: figure width in inches.
        dpi: resolution.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    names = timeline.label_names
    rows = timeline.rows
    heights = [0.5] + [1.0] * len(names)
    fig = Figure(figsize=(width, 0.9 + 0.75 * sum(heights)), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(heights), 1, sharex=True, gridspec_kw={"height_ratios": heights})
    end = max(timeline.duration, max((r["end"] for r in rows), default=0.0), 1.0)
    band = axes[0]
    for i, r in enumerate(rows):
        band.broken_barh(
            [(r["start"], r["end"] - r["start"])], (0, 1), facecolors="#555" if i % 2 else "#999"
        )
    band.set_yticks([])
    band.set_ylabel("segments", rotation=0, ha="right", va="center")
    title = f"{Path(timeline.video).name}: {len(rows)} segments ({timeline.segmentation.method}"
    band.set_title(title + f", text: {timeline.text_source})", loc="left", fontsize=10)
    for k, (ax, name) in enumerate(zip(axes[1:], names, strict=True)):
        colour = _COLOURS[k % len(_COLOURS)]
        threshold = timeline.thresholds[k]
        for r in rows:
            e = r["emotions"][name]
            ax.bar(
                r["start"],
                e["probability"],
                width=r["end"] - r["start"],
                align="edge",
                color=colour,
                alpha=0.9 if e["present"] else 0.3,
                linewidth=0,
            )
        ax.axhline(threshold, color="black", linestyle="--", linewidth=0.8)
        ax.set_ylim(0, 1)
        ax.set_yticks([0, 0.5, 1])
        ax.set_ylabel(name, rotation=0, ha="right", va="center")
        ax.grid(axis="x", alpha=0.3)
    step = next((s for s in _TICK_STEPS if end / s <= 20), _TICK_STEPS[-1])
    axes[-1].xaxis.set_major_locator(MultipleLocator(step))
    axes[-1].xaxis.set_major_formatter(FuncFormatter(_mmss))
    axes[-1].set_xlim(0, end)
    axes[-1].set_xlabel(
        "time (min:s); bars: probability per segment, solid = present; dashes: threshold"
    )
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def write_timeline(timeline: Timeline, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``timeline.csv``, ``timeline.json`` and ``timeline.png`` into `out_dir`.

    Returns:
        {"csv", "json", "png"}: the paths written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {kind: out / f"timeline.{kind}" for kind in ("csv", "json", "png")}
    csv_text = prediction_rows_csv(timeline.rows, timeline.label_names)
    atomic_write_bytes(paths["csv"], csv_text.encode("utf-8"))
    atomic_write_bytes(paths["json"], timeline_json(timeline).encode("utf-8"))
    atomic_write_bytes(paths["png"], plot_timeline(timeline))
    return paths
