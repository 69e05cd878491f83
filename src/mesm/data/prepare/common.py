"""Bookkeeping shared by the preparers: the report, split lists, cutting and writing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mesm.data.errors import DataError, input_errors
from mesm.data.manifest import SPLITS, DatasetInfo, Record, read_id_list, write_dataset
from mesm.errors import TextEncodingError
from mesm.files import decode_text
from mesm.jobs.runner import Outcomes, run_jobs
from mesm.resources import split_file


@dataclass
class PrepareReport:
    """What a `prepare_*` run kept, dropped and why (also stored in dataset.json).

    Attributes:
        kept: utterances written to the manifest.
        dropped: reason -> number of utterances left out.
        splits: split -> utterances kept in it.
        absent_from_release: split -> listed ids not found in the release.
        failed: recording -> error for recordings whose media could not be cut (their
            utterances are left out and counted under "media error").
        reused: clips already present from an earlier run and not cut again.
    """

    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    splits: dict[str, int] = field(default_factory=dict)
    absent_from_release: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    reused: int = 0

    def drop(self, reason: str, count: int = 1) -> None:
        """Count `count` utterances left out for `reason`."""
        self.dropped[reason] = self.dropped.get(reason, 0) + count

    def summary(self) -> str:
        """One paragraph for the command line."""
        dropped = ", ".join(f"{n} {why}" for why, n in sorted(self.dropped.items())) or "none"
        absent = sum(self.absent_from_release.values())
        return (
            f"kept {self.kept} utterances {self.splits}; dropped: {dropped}; "
            f"{absent} split-list ids not in this release; {len(self.failed)} recording(s) "
            f"failed; {self.reused} clips reused"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "kept": self.kept,
            "dropped": dict(self.dropped),
            "splits": dict(self.splits),
            "absent_from_release": dict(self.absent_from_release),
            "failed": dict(self.failed),
            "reused": self.reused,
        }


def read_release_text(path: Path) -> str:
    """A release's text file (labels, transcripts), which must be UTF-8: other bytes are
    refused naming the file and line rather than replaced (they would alter a word or an id).

    Raises:
        DataError: not UTF-8 (naming file and line), or unreadable.
    """
    try:
        return decode_text(path.read_bytes(), path, fallback=False)
    except TextEncodingError as err:
        raise DataError(str(err)) from None
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err})") from None


def paper_split_lists(dataset: str) -> dict[str, set[str]]:
    """The paper's train/valid/test id lists shipped with mesm."""
    return {split: set(read_id_list(split_file(dataset, split))) for split in SPLITS}


def split_of(uid: str, lists: dict[str, set[str]]) -> str | None:
    """The split listing `uid`, or None."""
    for split, ids in lists.items():
        if uid in ids:
            return split
    return None


def count_absent(report: PrepareReport, lists: dict[str, set[str]], found: set[str]) -> None:
    """Record how many listed ids the release did not contain."""
    for split, ids in lists.items():
        missing = len(ids - found)
        if missing:
            report.absent_from_release[split] = missing


def collect(
    records: dict[str, list[Record]], outcomes: Outcomes, out: Path, report: PrepareReport
) -> list[Record]:
    """Keep the records whose recording was cut and whose clip has frames; count the rest."""
    final: list[Record] = []
    for name, kept in records.items():
        if name in outcomes.failed:
            report.failed[name] = outcomes.failed[name]
            report.drop("media error", len(kept))
            continue
        empty = set(outcomes.results.get(name) or [])
        for record in kept:
            if str(out / record.video) in empty:
                report.drop("no frames in span")
            else:
                final.append(record)
    return final


def release_info(
    source: str, task: str, label_names: tuple[str, ...] | list[str], keep_unlisted: bool, crf: int
) -> DatasetInfo:
    """The header of a dataset cut from an official release (its "prepare" records how)."""
    return DatasetInfo(
        name=source,
        task=task,
        label_names=label_names,
        prepare={"source": source, "keep_unlisted": keep_unlisted, "crf": crf},
    )


def cut_and_write(
    out: Path,
    records: dict[str, list[Record]],
    jobs: dict[str, tuple],
    worker: Callable[..., Any],
    report: PrepareReport,
    *,
    info: DatasetInfo,
    num_workers: int,
    progress: bool,
) -> PrepareReport:
    """Cut the clips (`worker(*job)` per recording), keep what was cut, write the dataset folder.

    Args:
        out: the dataset folder.
        records: recording -> its selected records.
        jobs: recording -> worker arguments, for recordings with clips still to cut (the job's
            third argument is the list of clips).
        worker: cuts one recording; returns the video paths of clips without frames.
        report: filled in (kept, reused, splits) and stored in the header's "prepare".
        info: the dataset header (its "prepare" gets the report added).
        num_workers: processes cutting in parallel (0: this process).
        progress: show a progress bar.

    Returns:
        The report.
    """
    outcomes = run_jobs(
        jobs.items(),
        worker,
        workers=num_workers,
        desc=info.name,
        unit="rec",
        progress=progress,
        item_errors=input_errors(),
    )
    final = sorted(collect(records, outcomes, out, report), key=lambda r: r.id)
    report.reused = sum(len(v) for v in records.values()) - sum(len(j[2]) for j in jobs.values())
    report.kept = len(final)
    report.splits = {s: sum(r.split == s for r in final) for s in ("train", "valid", "test")}
    info = replace(info, prepare={**info.prepare, **report.to_dict()})
    write_dataset(out, info, final)
    return report
