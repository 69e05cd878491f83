"""The project's own error types: the CLI prints these as one line, never as a traceback.

Every error the library raises on purpose (bad input, bad files, bad settings) derives from
`MesmError`; its message names the file and, where there is one, the line, record or field at
fault. Library code catches nothing broader than the errors it expects. `mesm <command>` prints a
`MesmError` as one line (exit status 1); any other exception is a bug and keeps its traceback.

The types also derive from the built-in error they refine (`ValueError`, `FileNotFoundError`,
`OSError`, `RuntimeError`), so code that caught those still catches them::

    MesmError
    ├── ConfigError, CheckpointError, UsageError   (ValueError)
    │                                ├── OptionError (names the inputs as data)
    │                                └── TextEncodingError (names the file and line)
    ├── MissingInputError                           (FileNotFoundError)
    ├── OutputPathError                             (OSError)
    ├── MissingDependencyError                      (RuntimeError)
    ├── MissingExtraError, ServeError, PageError    (the page: no Gradio, cannot serve, bad request)
    └── mesm.data.errors.DataError → ManifestError, PreprocessError
"""

from __future__ import annotations

from collections.abc import Callable


class MesmError(Exception):
    """A problem with what the user handed us (files, records, settings): one readable message."""


class ConfigError(MesmError, ValueError):
    """An invalid run config or override (names the file or the override and the field)."""


class CheckpointError(MesmError, ValueError):
    """A checkpoint that is damaged, inconsistent, or not one of ours (names the file)."""


class UsageError(MesmError, ValueError):
    """An argument, option, setting or input record that cannot work as given (names it)."""


class OptionError(UsageError):
    """A usage error about named inputs of a library call, carried as data so that each face
    words it in its own terms (the CLI names its flags, the page its fields).

    Args:
        template: the message, with ``{0}``, ``{1}``, ... where the inputs are named and
            ``{value}``-style fields for the values.
        options: the parameter names of the inputs at fault, in template order (e.g.
            "subtitles", "transcribe").
        values: the values at fault (e.g. ``count=2``).

    ``str(err)`` names the inputs by their parameter names; :meth:`words` by any names.
    """

    def __init__(self, template: str, *options: str, **values: object) -> None:
        self.template = template
        self.options = options
        self.values = values
        super().__init__(self.words(str))

    def words(self, name: Callable[[str], str]) -> str:
        """The message with each input called `name(option)`."""
        return self.template.format(*(name(o) for o in self.options), **self.values)


class TextEncodingError(UsageError):
    """A user's text file whose bytes are in no encoding we read (names the file and line)."""


class MissingInputError(MesmError, FileNotFoundError):
    """A file or folder the user pointed us at does not exist (names the path)."""


class OutputPathError(MesmError, OSError):
    """An output that cannot be written where asked: the path is a folder, lies under a file or
    in a missing or read-only folder, or already holds a run. Raised with ``(errno, strerror,
    path)`` so ``filename`` names the path."""


class MissingDependencyError(MesmError, RuntimeError):
    """An optional package a feature needs is not installed (names the install command)."""


class MissingExtraError(MesmError):
    """Gradio (the ``app`` extra of `mesm serve`) is not installed."""


class ServeError(MesmError):
    """The page's server cannot start (e.g. the port is taken)."""


class PageError(MesmError):
    """A request the page cannot run (no video, empty transcript, …): shown as is."""
