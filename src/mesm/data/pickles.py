"""Pickles we are handed, read as plain data only: nothing in them can run code.

`RestrictedUnpickler` admits plain containers, numbers and strings (the authors' ``meta.pkl``,
read by `mesm.data.prepare.released`); `NumpyUnpickler` adds the few numpy globals that rebuild
arrays (the MulT/MMSA feature pickles, read by `mesm.data.handcrafted.importers`). A pickle naming
any other class or function is refused with a `DataError` naming the file before anything runs.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

from mesm.data.errors import DataError

_SAFE_BUILTINS = frozenset(
    {"dict", "list", "tuple", "set", "frozenset", "str", "int", "float", "bool", "complex"}
    | {"bytes", "bytearray"}
)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles plain data only: dict, list, tuple, set, str, bytes, numbers, OrderedDict.

    Any other global (a class to instantiate or a function to call, e.g. ``os.system`` smuggled
    in through ``__reduce__``) raises `pickle.UnpicklingError` before anything runs.
    """

    def find_class(self, module: str, name: str) -> Any:
        if module in ("builtins", "__builtin__") and name in _SAFE_BUILTINS:
            return getattr(__import__("builtins"), name)
        if module == "collections" and name == "OrderedDict":
            from collections import OrderedDict

            return OrderedDict
        if module == "_codecs" and name == "encode":
            # Protocols 0-2 store bytes as _codecs.encode(text, "latin1"): a pure conversion.
            import _codecs

            return _codecs.encode
        raise pickle.UnpicklingError(
            f"refusing to unpickle {module}.{name}: only plain containers, numbers and strings "
            "are allowed (the file may run code if loaded with pickle.load)"
        )


def load_restricted_pickle(path: str | os.PathLike) -> Any:
    """Read a pickle file with `RestrictedUnpickler`.

    Raises:
        DataError: the file is missing, corrupt or refers to anything but plain data.
    """
    return _load(path, RestrictedUnpickler)


# The globals numpy's own pickles need to rebuild arrays, dtypes and scalars (numpy 1 and 2).
_NUMPY_GLOBALS = frozenset(
    {(mod, "_reconstruct") for mod in ("numpy.core.multiarray", "numpy._core.multiarray")}
    | {(mod, "scalar") for mod in ("numpy.core.multiarray", "numpy._core.multiarray")}
    | {("numpy", "ndarray"), ("numpy", "dtype")}
)


class NumpyUnpickler(RestrictedUnpickler):
    """`RestrictedUnpickler` plus numpy array reconstruction (nothing else)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY_GLOBALS:
            target = __import__(module, fromlist=[name])
            return getattr(target, name)
        return super().find_class(module, name)


def load_numpy_pickle(path: str | os.PathLike) -> Any:
    """Read a pickle of plain containers and numpy arrays with `NumpyUnpickler`.

    Raises:
        DataError: missing, corrupt, or referring to anything else.
    """
    return _load(path, NumpyUnpickler)


def _load(path: str | os.PathLike, unpickler: type[pickle.Unpickler]) -> Any:
    try:
        return unpickler(io.BytesIO(Path(path).read_bytes())).load()
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError) as err:
        raise DataError(f"{path}: {err}") from None
