"""The project's own error types: the CLI prints these as one line, never as a traceback.

Every error the library raises on purpose (bad input, bad files, bad settings) derives from
`MesmError`; its message names the file and, where there is one, the line, record or field at
fault. Library code catches nothing broader than the errors it expects.
"""

from __future__ import annotations


class MesmError(Exception):
    """A problem with what the user handed us (files, records, settings): one readable message."""


class ConfigError(MesmError, ValueError):
    """An invalid run config or override (names the file or the override and the field)."""


class CheckpointError(MesmError, ValueError):
    """A checkpoint that is damaged, inconsistent, or not one of ours (names the file)."""
