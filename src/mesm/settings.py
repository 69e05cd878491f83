"""One strict reader and writer for every settings dataclass (model, baseline, preprocessing,
hand-crafted features, run-config sections).

``settings_from_dict`` refuses what is not a mapping, names unknown keys, checks every value
against the field's type (floats finite, ints never bools, literals exact), then lets the
dataclass validate the combination in its ``__post_init__``. ``settings_to_dict`` is its inverse:
plain JSON/YAML values (tuples become lists). A settings class gets both as ``to_dict`` /
``from_dict`` from :class:`DictSettings`; a cache named by its settings uses :func:`settings_key`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, TypeVar

from mesm.errors import ConfigError

T = TypeVar("T")


class DictSettings:
    """``to_dict`` / ``from_dict`` for a settings dataclass; `section` names it in messages."""

    section: ClassVar[str] = "settings"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for JSON, YAML, checkpoints and `from_dict`)."""
        return settings_to_dict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> Any:
        """Inverse of `to_dict`, strictly checked (see :func:`settings_from_dict`)."""
        return settings_from_dict(cls, values, cls.section)

    def cache_dict(self) -> dict[str, Any]:
        """The settings a cache folder named by them records (all of them, unless a subclass
        leaves some out of the name)."""
        return self.to_dict()


def settings_key(version: int, values: Mapping[str, Any]) -> str:
    """Short hash naming a cache folder: the cache format's `version` and the settings `values`."""
    blob = json.dumps({"version": version, **values}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def settings_from_dict(cls: type[T], values: Mapping[str, Any] | None, what: str = "") -> T:
    """The `cls` instance `values` describes, checked strictly.

    Args:
        cls: a dataclass.
        values: its fields (missing ones take their defaults); None = all defaults.
        what: how messages name the settings (default: the class name), e.g. "model".

    Raises:
        ConfigError: not a mapping, unknown keys (listed), a value of the wrong type (naming
            ``what.field``, what it expects and what it got), or the dataclass's own check.
    """
    what = what or cls.__name__
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"{what}: expected a mapping of settings, got {values!r}")
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{what}: unknown keys {unknown} (known: {', '.join(sorted(known))})")
    check_types(what, cls, values)
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:  # the dataclass's own check, named by `what`
        raise ConfigError(f"{what}: {err}") from None


def settings_to_dict(settings: Any) -> dict[str, Any]:
    """A dataclass as plain values (tuples become lists), readable by `settings_from_dict`."""
    return _plain(dataclasses.asdict(settings))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def check_types(what: str, cls: type, values: Mapping[str, Any]) -> None:
    """Checks `values` against the field types of dataclass `cls` (unknown keys are skipped).

    Floats must be finite; ints are accepted where a float is expected, never bools.

    Raises:
        ConfigError: naming ``what.field``, what it expects and what it got.
    """
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        if key in hints and not _matches(value, hints[key]):
            raise ConfigError(f"{what}.{key}: expected {_describe(hints[key])}, got {value!r}")


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if origin is Literal:
        return any(value == arg and type(value) is type(arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return number and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        if origin is tuple and len(args) > 1 and Ellipsis not in typing.get_args(hint):
            return len(value) == len(args) and all(map(_matches, value, args))
        return not args or all(_matches(v, args[0]) for v in value)
    return True


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in typing.get_args(hint))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin in (list, tuple):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        if origin is tuple and len(args) > 1 and Ellipsis not in typing.get_args(hint):
            return f"a list of {len(args)} ({', '.join(_describe(a) for a in args)})"
        return f"a list of {_describe(args[0])}s" if args else "a list"
    if hint is float:
        return "a finite number"
    if hint is type(None):
        return "null"
    return {int: "an integer", bool: "true or false", str: "a string"}.get(
        hint, getattr(origin or hint, "__name__", str(hint))
    )
