"""Utterance segments of a whole video: from a subtitle file, or from voice activity.

A `Segment` is a time span [start, end) in seconds on the video's clock plus its text. Two
sources:

* **Subtitles** (`read_subtitles`): SRT, WebVTT, ASS/SSA, MicroDVD … through `pysubs2`. Each cue
  is an utterance. Rules, all counted in the `SegmentationReport`:

  - the file is read in the encoding it was saved in (`mesm.files.decode_text`: a byte-order
    mark, else UTF-8, else Windows-1252, which the report's notes name); bytes in none of these:
    `DataError` naming the file and line;
  - a file pysubs2 cannot read, a timing line it could not parse (pysubs2 would silently glue
    it into the previous cue's text), a negative time (pysubs2 reads SRT's ``-00:00:01,000`` as
    +1 s), or a cue that ends before it starts: `DataError` naming the file and the cue;
  - a cue that starts at or after the video's end: skipped; one that runs past the end: cut at
    the end;
  - overlapping cues: `DataError` naming both (``overlaps="merge"``: merged into one segment);
  - a cue shorter than the model's frame interval (too short for one sampled frame):
    merged with its nearer neighbour when the gap to it is at most ``max_merge_gap`` seconds,
    otherwise skipped;
  - a cue without text is kept (its span is still an utterance); ASS comment lines are ignored.

* **Voice activity** (`speech_segments`): per-window speech probabilities (see
  `mesm.data.media.vad`) become segments by hysteresis (speech starts at ``threshold``, ends after
  ``min_silence`` seconds below ``threshold - 0.15``), too-short bursts are dropped, each
  segment is padded a little, and segments longer than ``max_segment`` are split at their
  least speech-like window.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from mesm.data.errors import DataError
from mesm.errors import OptionError, TextEncodingError
from mesm.files import decode_text


@dataclass(frozen=True)
class Segment:
    """One utterance of a whole video.

    Attributes:
        start: start in seconds on the video's clock.
        end: end in seconds (exclusive), > start.
        text: what is said ("" when unknown).
        source: where it came from ("cue 3", "cues 3+4", "speech").
    """

    start: float
    end: float
    text: str = ""
    source: str = ""

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class SegmentationReport:
    """What segmentation found and changed (every fallback counted).

    Attributes:
        method: "subtitles" or "vad".
        source: the subtitle file, or the VAD model's name.
        found: cues (or speech bursts) found before any rule was applied.
        segments: segments kept.
        merged_short: short cues merged into a neighbour.
        skipped_short: short cues (or speech bursts) dropped.
        skipped_outside: cues starting at or after the video's end.
        clipped: cues cut at the video's end.
        merged_overlap: overlapping cues merged (``overlaps="merge"``).
        split_long: extra segments made by splitting over-long speech.
        notes: one line per change, for the first few changes.
    """

    method: str
    source: str
    found: int = 0
    segments: int = 0
    merged_short: int = 0
    skipped_short: int = 0
    skipped_outside: int = 0
    clipped: int = 0
    merged_overlap: int = 0
    split_long: int = 0
    notes: list[str] = field(default_factory=list)

    def note(self, line: str) -> None:
        if len(self.notes) < 20:
            self.notes.append(line)

    def summary(self) -> str:
        """One line for the command line."""
        counts = {
            "merged (short)": self.merged_short,
            "skipped (short)": self.skipped_short,
            "skipped (after the video's end)": self.skipped_outside,
            "cut at the video's end": self.clipped,
            "merged (overlapping)": self.merged_overlap,
            "extra (long speech split)": self.split_long,
        }
        changes = ", ".join(f"{n} {what}" for what, n in counts.items() if n)
        what = "cues" if self.method == "subtitles" else "speech bursts"
        return f"{self.method} ({self.source}): {self.found} {what} -> {self.segments} segments" + (
            f"; {changes}" if changes else ""
        )


def read_subtitles(
    path: str | os.PathLike,
    *,
    duration: float | None = None,
    min_duration: float = 0.5,
    max_merge_gap: float = 1.0,
    overlaps: Literal["error", "merge"] = "error",
    encoding: str | None = None,
) -> tuple[list[Segment], SegmentationReport]:
    """Read a subtitle file into utterance segments (rules in the module docstring).

    Args:
        path: an SRT, WebVTT, ASS/SSA (or any pysubs2 format) file.
        duration: the video's duration in seconds (None: no end check).
        min_duration: shorter cues are merged or skipped (the model's frame interval).
        max_merge_gap: a short cue merges with a neighbour at most this far away (s).
        overlaps: "error" or "merge" for cues whose spans overlap.
        encoding: the file's text encoding (None: detected by `mesm.files.decode_text`, a
            byte-order mark, else UTF-8, else Windows-1252; the report notes a guess).

    Returns:
        The segments in time order and the report.

    Raises:
        DataError: unreadable file, corrupt cue, no cue left, overlapping cues (by default).
    """
    import pysubs2

    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"no subtitle file at {path}") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read subtitles ({err})") from None
    try:
        raw = decode_text(data, path) if encoding is None else data.decode(encoding)
    except TextEncodingError as err:
        raise DataError(str(err)) from None
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not {encoding} ({err.reason} at byte {err.start})") from None
    if not raw.strip():
        raise DataError(f"{path}: no subtitle cues in the file (it is empty)")
    try:
        subs = pysubs2.SSAFile.from_string(raw)
    except (pysubs2.exceptions.Pysubs2Error, ValueError, KeyError, IndexError) as err:
        raise DataError(
            f"{path}: not a subtitle file pysubs2 can read (SRT, WebVTT, ASS, ...): "
            f"{type(err).__name__}: {err}"
        ) from None
    report = SegmentationReport(method="subtitles", source=str(path))
    read_as = getattr(raw, "encoding", encoding)
    if read_as != "utf-8":
        report.note(f"read as {read_as}" + (" (not UTF-8)" if encoding is None else ""))
    cues: list[Segment] = []
    lines = raw.splitlines()
    _refuse_negative_times(path, lines)
    for number, event in enumerate((e for e in subs if not e.is_comment), start=1):
        text = " ".join(event.plaintext.split())
        if "-->" in event.plaintext:
            bad = next(ln for ln in event.plaintext.splitlines() if "-->" in ln)
            where = next((i + 1 for i, ln in enumerate(lines) if ln.strip() == bad.strip()), "?")
            raise DataError(f"{path}: line {where}: unreadable cue timing {bad.strip()!r}")
        start, end = event.start / 1000, event.end / 1000
        if start < 0:
            raise DataError(f"{path}: cue {number} starts at a negative time ({start:g} s)")
        if end <= start:
            raise DataError(
                f"{path}: cue {number} ({_hms(start)} --> {_hms(end)}) does not end after it starts"
            )
        cues.append(Segment(start, end, text, f"cue {number}"))
    report.found = len(cues)
    if not cues:
        raise DataError(f"{path}: no subtitle cues in the file")
    cues.sort(key=lambda c: (c.start, c.end))
    if duration is not None:
        cues = _within(cues, duration, report)
    cues = _resolve_overlaps(cues, overlaps, path, report)
    cues = _merge_short(cues, min_duration, max_merge_gap, report)
    if not cues:
        raise DataError(f"{path}: no cue left inside the video ({report.summary()})")
    report.segments = len(cues)
    return cues, report


# A timing line's time with a minus sign: pysubs2 reads SRT/WebVTT's "-00:00:01,000" as +1 s.
_NEGATIVE_TIME = re.compile(r"(?:^|[\s>])-\s*\d+:\d")


def _refuse_negative_times(path: Path, lines: list[str]) -> None:
    """Refuse an SRT/WebVTT timing line holding a negative time (naming the cue and line)."""
    timing_lines = ((i, ln) for i, ln in enumerate(lines, start=1) if "-->" in ln)
    for number, (where, line) in enumerate(timing_lines, start=1):
        if _NEGATIVE_TIME.search(line):
            raise DataError(
                f"{path}: line {where}: cue {number} has a negative time {line.strip()!r} "
                "(subtitle times count from 00:00:00)"
            )


def _hms(seconds: float) -> str:
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{int(h):02d}:{int(m):02d}:{s:06.3f}"


def _within(cues: list[Segment], duration: float, report: SegmentationReport) -> list[Segment]:
    kept = []
    for cue in cues:
        if cue.start >= duration:
            report.skipped_outside += 1
            report.note(f"{cue.source} starts at {_hms(cue.start)}, after the video's end")
        elif cue.end > duration:
            report.clipped += 1
            report.note(f"{cue.source} ends at {_hms(cue.end)}, cut at {_hms(duration)}")
            kept.append(Segment(cue.start, duration, cue.text, cue.source))
        else:
            kept.append(cue)
    return kept


def _join(a: Segment, b: Segment) -> Segment:
    text = " ".join(t for t in (a.text, b.text) if t)
    first = a.source.split(" ", 1)[-1].split("+")[0]
    last = b.source.split(" ", 1)[-1].split("+")[-1]
    return Segment(min(a.start, b.start), max(a.end, b.end), text, f"cues {first}+{last}")


def _resolve_overlaps(
    cues: list[Segment], overlaps: str, path: Path, report: SegmentationReport
) -> list[Segment]:
    out: list[Segment] = []
    for cue in cues:
        if out and cue.start < out[-1].end - 1e-6:
            prev = out[-1]
            if overlaps != "merge":
                raise DataError(
                    f"{path}: {prev.source} ({_hms(prev.start)} --> {_hms(prev.end)}) and "
                    f"{cue.source} ({_hms(cue.start)} --> {_hms(cue.end)}) overlap; fix the "
                    "file or merge them (--overlapping-cues merge)"
                )
            report.merged_overlap += 1
            report.note(f"{prev.source} and {cue.source} overlap: merged")
            out[-1] = _join(prev, cue)
        else:
            out.append(cue)
    return out


def _merge_short(
    cues: list[Segment], min_duration: float, max_gap: float, report: SegmentationReport
) -> list[Segment]:
    out = list(cues)
    i = 0
    while i < len(out):
        cue = out[i]
        if cue.duration >= min_duration:
            i += 1
            continue
        gap_prev = cue.start - out[i - 1].end if i > 0 else np.inf
        gap_next = out[i + 1].start - cue.end if i + 1 < len(out) else np.inf
        if min(gap_prev, gap_next) > max_gap:
            report.skipped_short += 1
            report.note(f"{cue.source} lasts {cue.duration:.3f} s (< {min_duration} s): skipped")
            del out[i]
            continue
        report.merged_short += 1
        report.note(f"{cue.source} lasts {cue.duration:.3f} s (< {min_duration} s): merged")
        if gap_prev <= gap_next:
            out[i - 1] = _join(out[i - 1], cue)
            del out[i]
            i -= 1  # the merged cue may still be short
        else:
            out[i + 1] = _join(cue, out[i + 1])
            del out[i]
    return out


@dataclass(frozen=True)
class VadSettings:
    """How speech probabilities become segments.

    Attributes:
        threshold: a window with probability >= this starts (or continues) speech.
        min_silence: speech ends after this many seconds below ``threshold - 0.15``.
        min_speech: shorter speech bursts are dropped (s).
        pad: seconds added on each side of a segment (never past a neighbour's midpoint).
        max_segment: longer segments are split at their least speech-like window (s).
    """

    threshold: float = 0.5
    min_silence: float = 0.4
    min_speech: float = 0.25
    pad: float = 0.05
    max_segment: float = 15.0

    def __post_init__(self) -> None:
        import math

        # Each value is named by its parameter (the CLI words it as its flag: --max-segment).
        for name in ("threshold", "min_silence", "min_speech", "pad", "max_segment"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise OptionError("{0} must be a finite number, got {value!r}", name, value=value)
        if not 0 < self.threshold < 1:
            raise OptionError(
                "{0} must be in (0, 1), got {value}", "threshold", value=self.threshold
            )
        for name in ("min_silence", "min_speech", "max_segment"):
            if getattr(self, name) <= 0:
                raise OptionError(
                    "{0} must be > 0 seconds, got {value}", name, value=getattr(self, name)
                )
        if self.pad < 0:
            raise OptionError("{0} must be >= 0 seconds, got {value}", "pad", value=self.pad)
        if self.max_segment <= 2 * self.min_speech:
            raise OptionError(
                "{0} must exceed twice the shortest speech kept ({min_speech} s), got {value}",
                "max_segment",
                value=self.max_segment,
                min_speech=self.min_speech,
            )


def speech_segments(
    probs: np.ndarray,
    step: float,
    *,
    offset: float = 0.0,
    duration: float | None = None,
    settings: VadSettings | None = None,
) -> tuple[list[Segment], SegmentationReport]:
    """Speech segments from per-window speech probabilities.

    Args:
        probs: (W,) probability that window i (covering [offset + i·step, offset + (i+1)·step))
            holds speech.
        step: window length in seconds.
        offset: time of the first window.
        duration: the media's duration (segments are cut there; None: the last window's end).
        settings: the segmentation rules (module docstring).

    Returns:
        The segments (empty text) in time order, and the report.
    """
    s = settings or VadSettings()
    probs = np.asarray(probs, dtype=np.float64)
    end_time = offset + len(probs) * step if duration is None else duration
    report = SegmentationReport(method="vad", source="silero-vad")
    low = s.threshold - 0.15
    silence_windows = max(1, round(s.min_silence / step))
    bursts: list[tuple[int, int]] = []  # window index ranges [a, b)
    start: int | None = None
    quiet = 0
    for i, p in enumerate(probs):
        if start is None:
            if p >= s.threshold:
                start, quiet = i, 0
            continue
        quiet = quiet + 1 if p < low else 0
        if quiet >= silence_windows:
            bursts.append((start, i - quiet + 1))
            start = None
    if start is not None:
        bursts.append((start, len(probs)))
    report.found = len(bursts)
    min_windows = s.min_speech / step
    kept = []
    for a, b in bursts:
        if b - a < min_windows:
            report.skipped_short += 1
            report.note(
                f"speech at {_hms(offset + a * step)} lasts {(b - a) * step:.2f} s: skipped"
            )
        else:
            kept.extend(_split_long(probs, a, b, s.max_segment / step, min_windows, report))
    segments = []
    for k, (a, b) in enumerate(kept):
        lo, hi = offset + a * step, offset + b * step
        prev_end = offset + kept[k - 1][1] * step if k else None
        next_start = offset + kept[k + 1][0] * step if k + 1 < len(kept) else None
        # Pad, but never into the neighbour's half of the gap (and never across a split).
        lo = max(lo - s.pad, offset if prev_end is None else (prev_end + lo) / 2, 0.0)
        hi = min(hi + s.pad, end_time if next_start is None else (hi + next_start) / 2, end_time)
        if hi > lo:
            segments.append(Segment(round(lo, 3), round(hi, 3), "", "speech"))
    report.segments = len(segments)
    return segments, report


def _split_long(
    probs: np.ndarray,
    a: int,
    b: int,
    max_windows: float,
    min_windows: float,
    report: SegmentationReport,
) -> list[tuple[int, int]]:
    """Split [a, b) at its least speech-like windows until no piece exceeds max_windows."""
    pieces = []
    while b - a > max_windows:
        # Cut in the second half of the allowed length, so pieces are neither tiny nor too long.
        lo = a + max(int(min_windows), int(max_windows // 2))
        hi = a + int(max_windows)
        cut = lo + int(np.argmin(probs[lo:hi]))
        pieces.append((a, cut))
        report.split_long += 1
        a = cut
    pieces.append((a, b))
    return pieces
