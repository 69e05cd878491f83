"""Model checkpoints that load without unpickling anything.

A checkpoint is one safetensors file: the model's weights, plus a JSON header (in the safetensors
metadata) with the model config, label names, task, tuned thresholds, preprocessing settings and
the mesm version. ``predict`` and ``evaluate`` need nothing else. Saving writes a temporary file
and renames it, so a crash never leaves a half-written checkpoint under the final name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mesm.data.cache import PreprocessSettings
from mesm.models import FE2E, BaselineModel, build_model, config_from_dict

FORMAT_VERSION = 1
_META_KEY = "mesm"


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
    meta = {
        "format": FORMAT_VERSION,
        "mesm_version": __version__,
        "model": model.config.to_dict(),
        "label_names": list(label_names),
        "task": task,
        "modalities": model.modalities,
        "thresholds": None if thresholds is None else [float(t) for t in thresholds],
        "preprocessing": preprocessing or {},
        "extra": extra or {},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        save_file(tensors, str(tmp), metadata={_META_KEY: json.dumps(meta)})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_checkpoint_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON header of a checkpoint (no weights loaded)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(_META_KEY)
    except Exception as err:  # safetensors raises its own error types for damaged files
        raise ValueError(f"{path}: not a readable safetensors checkpoint ({err})") from err
    if raw is None:
        raise ValueError(f"{path}: safetensors file without mesm metadata")
    meta = json.loads(raw)
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format {meta.get('format')} is not supported")
    return meta


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[FE2E | BaselineModel, dict[str, Any]]:
    """Rebuilds the model from a checkpoint (weights only; no pickle) and returns it in eval mode.

    Returns:
        (model, meta) where meta is the checkpoint's header.
    """
    from safetensors.torch import load_file

    meta = read_checkpoint_meta(path)
    # The architecture comes from the config; the text weights come from the checkpoint.
    # (A baseline's "model" header is its BaselineConfig; `config_from_dict` tells them apart.
    # Fields an older mesm did not record take that version's values: the network it trained.)
    config = config_from_dict({**meta["model"], "text_pretrained": False}, saved=True)
    model = build_model(config)
    state = load_file(str(path), device=str(map_location))
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"{path}: weights do not match the model config (missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]})"
        )
    return model.to(map_location).eval(), meta


def preprocessing_settings(meta: dict[str, Any]) -> PreprocessSettings | None:
    """The raw-media preprocessing settings a checkpoint was trained with (None: the defaults)."""
    values = meta.get("preprocessing")
    return PreprocessSettings.from_dict(values) if values else None
