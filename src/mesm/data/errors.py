"""Exceptions raised by the data pipeline: one readable message, never a deep traceback."""

from __future__ import annotations


class DataError(Exception):
    """A problem with a dataset's files or records (bad media, missing file, bad cache entry).

    The message names the file and, where there is one, the record (utterance id) at fault.
    """


class ManifestError(DataError):
    """One or more invalid manifest records; `problems` lists every one, each with its line.

    Args:
        problems: one human-readable line per problem, e.g.
            ``"manifest.jsonl:12 (Ses01F_impro01_F000): unknown label 'xyz'"``.
        header: first line of the message.
    """

    def __init__(self, problems: list[str], header: str = "invalid dataset") -> None:
        self.problems = list(problems)
        shown = self.problems[:50]
        more = len(self.problems) - len(shown)
        lines = [f"{header}: {len(self.problems)} problem(s)", *(f"  - {p}" for p in shown)]
        if more:
            lines.append(f"  ... and {more} more")
        super().__init__("\n".join(lines))
