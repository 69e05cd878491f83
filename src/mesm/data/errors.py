"""Exceptions raised by the data pipeline: one readable message, never a deep traceback."""

from __future__ import annotations

from mesm.errors import MesmError


class DataError(MesmError):
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


class PreprocessError(DataError):
    """Some utterances could not be preprocessed; `failures` maps each id to its reason.

    Entries computed before the failure stay in the cache, so a rerun after fixing the files only
    computes what is missing.
    """

    def __init__(self, failures: dict[str, str], cache_dir: str) -> None:
        self.failures = dict(failures)
        shown = list(self.failures.items())[:50]
        lines = [f"{len(self.failures)} utterance(s) failed to preprocess (cache: {cache_dir}):"]
        lines += [f"  - {rid}: {why}" for rid, why in shown]
        if len(self.failures) > len(shown):
            lines.append(f"  ... and {len(self.failures) - len(shown)} more")
        super().__init__("\n".join(lines))


def input_errors() -> tuple[type[Exception], ...]:
    """What one utterance's bad input may raise in the data jobs (counted as a failed item by
    `mesm.jobs.runner.run_jobs`): our errors, OS errors on its files, and the decoders' own
    errors (PyAV, libsndfile) where they escape unwrapped. Anything else is a bug and stops the
    run with its traceback."""
    import av
    import soundfile

    return (MesmError, OSError, av.FFmpegError, soundfile.LibsndfileError)
