"""Model checkpoints that load without unpickling anything.

A checkpoint is one safetensors file: the model's weights, plus a JSON header (in the safetensors
metadata) with the model config, label names, task, tuned thresholds, preprocessing settings and
the mesm version. ``predict`` and ``evaluate`` need nothing else. Saving writes a temporary file
and renames it, so a crash never leaves a half-written checkpoint under the final name.

The header carries a SHA-256 of the weights (every tensor's name, dtype, shape and bytes), checked
on load, so damaged weights are an error rather than confident nonsense; the header itself is
validated (thresholds finite and within [0, 1], one per label, label count = the model's outputs,
modalities = the model's) and a model config the weights do not fit is reported as one line naming
the first tensor that differs and the header field it depends on.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mesm.data.cache import PreprocessSettings, tensors_digest
from mesm.errors import CheckpointError, MissingInputError
from mesm.files import atomic_target
from mesm.models import FE2E, BaselineModel, build_model, config_from_dict

# 2: the header holds "weights_sha256", checked on load. Format 1 (mesm 0.1.0) had no checksum:
# still read, with everything but the checksum checked.
FORMAT_VERSION = 2
_READABLE_FORMATS = (1, 2)
_META_KEY = "mesm"


def _threshold_problem(thresholds: object, num_labels: int) -> str | None:
    if thresholds is None:
        return None
    if not isinstance(thresholds, list) or not all(
        isinstance(t, (int, float)) and not isinstance(t, bool) for t in thresholds
    ):
        return "thresholds must be a list of numbers or null"
    if len(thresholds) != num_labels:
        return f"{len(thresholds)} thresholds for {num_labels} label names"
    bad = [t for t in thresholds if not (math.isfinite(t) and 0.0 <= t <= 1.0)]
    if bad:
        return f"thresholds must be finite and within [0, 1], got {bad[:3]}"
    return None


def save_checkpoint(
    path: str | os.PathLike,
    model: FE2E | BaselineModel,
    *,
    label_names: list[str] | tuple[str, ...],
    task: str,
    thresholds: list[float] | None = None,
    preprocessing: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Atomically writes `model` and everything needed to use it to `path` (.safetensors)."""
    from mesm import __version__

    if len(label_names) != model.config.num_classes:
        raise ValueError(f"{len(label_names)} label names for {model.config.num_classes} outputs")
    thresholds = None if thresholds is None else [float(t) for t in thresholds]
    problem = _threshold_problem(thresholds, len(label_names))
    if problem:
        raise CheckpointError(f"{path}: {problem}")
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {
        "format": FORMAT_VERSION,
        "mesm_version": __version__,
        "model": model.config.to_dict(),
        "label_names": list(label_names),
        "task": task,
        "modalities": model.modalities,
        "thresholds": thresholds,
        "preprocessing": preprocessing or {},
        "extra": extra or {},
        "weights_sha256": tensors_digest(tensors),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_target(path) as tmp:
        save_file(tensors, str(tmp), metadata={_META_KEY: json.dumps(meta)})
    return path


def read_checkpoint_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON header of a checkpoint (no weights loaded)."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"no checkpoint at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(_META_KEY)
    except Exception as err:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({err})") from None
    if raw is None:
        raise CheckpointError(f"{path}: safetensors file without mesm metadata")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: the mesm header is not valid JSON ({err})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: the mesm header must be a JSON object")
    if meta.get("format") not in _READABLE_FORMATS:
        raise CheckpointError(
            f"{path}: checkpoint format {meta.get('format')!r} is not supported (this mesm reads "
            f"formats {', '.join(map(str, _READABLE_FORMATS))})"
        )
    problem = _header_problem(meta)
    if problem:
        raise CheckpointError(f"{path}: {problem}")
    return meta


def _header_problem(meta: dict[str, Any]) -> str | None:
    """The first thing wrong with a header's fields, or None."""
    kinds = {
        "model": dict,
        "label_names": list,
        "task": str,
        "modalities": str,
    }
    if meta["format"] >= 2:
        kinds["weights_sha256"] = str
    for key, kind in kinds.items():
        if key not in meta:
            return f"header lacks {key!r} (not a checkpoint written by `mesm train`?)"
        if not isinstance(meta[key], kind):
            return f"header field {key!r} must be a {kind.__name__}"
    names = meta["label_names"]
    if not names or not all(isinstance(n, str) and n for n in names):
        return "header field 'label_names' must be a non-empty list of names"
    num_classes = meta["model"].get("num_classes")
    if num_classes is not None and num_classes != len(names):
        return f"{len(names)} label names but the model's num_classes is {num_classes}"
    for key in ("preprocessing", "extra"):
        if not isinstance(meta.setdefault(key, {}), dict):
            return f"header field {key!r} must be a JSON object"
    return _threshold_problem(meta.setdefault("thresholds", None), len(names))


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[FE2E | BaselineModel, dict[str, Any]]:
    """Rebuilds the model from a checkpoint (weights only; no pickle) and returns it in eval mode.

    Returns:
        (model, meta) where meta is the checkpoint's header.
    """
    from safetensors.torch import load_file

    meta = read_checkpoint_meta(path)
    try:
        # The architecture comes from the config; the text weights come from the checkpoint.
        # (A baseline's "model" header is its BaselineConfig; `config_from_dict` tells them apart.
        # Fields an older mesm did not record take that version's values: the network it trained.)
        config = config_from_dict({**meta["model"], "text_pretrained": False}, saved=True)
        model = build_model(config)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: the header's model config is invalid: {err}") from None
    if meta["modalities"] != model.modalities:
        raise CheckpointError(
            f"{path}: header field 'modalities' is {meta['modalities']!r} but the model config "
            f"gives {model.modalities!r}"
        )
    state = load_file(str(path), device="cpu")
    if meta["format"] >= 2 and tensors_digest(state) != meta["weights_sha256"]:
        raise CheckpointError(
            f"{path}: weights checksum mismatch (the file was damaged or changed after saving)"
        )
    _check_fit(path, model, state, meta["model"])
    model.load_state_dict(state)
    return model.to(map_location).eval(), meta


def _check_fit(
    path: str | os.PathLike, model: torch.nn.Module, state: dict[str, torch.Tensor], fields: dict
) -> None:
    """One line naming the first tensor that does not fit the model the header describes."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not match the header's model config (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]})"
        )
    for name, tensor in expected.items():
        have = tuple(state[name].shape)
        want = tuple(tensor.shape)
        if have == want:
            continue
        # Name the header fields whose value is one of the sizes that differ: usually the culprit.
        sizes = {w for h, w in zip(have, want, strict=False) if h != w} or set(want)
        culprits = [
            f"{k}={v}" for k, v in fields.items() if isinstance(v, int) and v in sizes and v > 1
        ]
        hint = f" (header: {', '.join(culprits[:3])})" if culprits else ""
        raise CheckpointError(
            f"{path}: tensor {name!r} has shape {list(have)} in the file but the header's model "
            f"config needs {list(want)}{hint}"
        )


def preprocessing_settings(meta: dict[str, Any]) -> PreprocessSettings | None:
    """The raw-media preprocessing settings a checkpoint was trained with (None: the defaults)."""
    values = meta.get("preprocessing")
    return PreprocessSettings.from_dict(values) if values else None
