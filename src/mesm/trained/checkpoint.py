"""Model checkpoints that load without unpickling anything.

A checkpoint is one safetensors file: the model's weights, plus a JSON header (in the safetensors
metadata) with the model config, label names, task, tuned thresholds, preprocessing settings and
the mesm version. ``predict`` and ``evaluate`` need nothing else. Saving writes a temporary file
and renames it, so a crash never leaves a half-written checkpoint under the final name.

The same model can be a Hugging Face-style folder (:meth:`TrainedModel.save_pretrained`): the
header as ``config.json``, the weights alone as ``model.safetensors``, and a ``README.md`` model
card; a hub repo id is fetched through ``huggingface_hub`` (untried: no hub was reachable).
Everything that reads a checkpoint (:func:`load_model`, ``mesm predict/evaluate/flops/sweep-p/
explain``) takes either form.

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
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mesm.data.media.cache import PreprocessSettings
from mesm.digest import tensors_digest
from mesm.errors import CheckpointError, MissingInputError, TextEncodingError
from mesm.files import atomic_target, atomic_write_text, decode_text
from mesm.models import BaselineModel, EmotionModel, build_model, config_from_dict

# 2: the header holds "weights_sha256", checked on load. Format 1 (mesm 0.1.0) had no checksum:
# still read, with everything but the checksum checked.
FORMAT_VERSION = 2
_READABLE_FORMATS = (1, 2)
_META_KEY = "mesm"
# A model folder, in the Hugging Face layout: the header as config.json, the weights alone.
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


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


def checkpoint_header(
    model: EmotionModel | BaselineModel,
    tensors: dict[str, torch.Tensor],
    *,
    label_names: list[str] | tuple[str, ...],
    task: str,
    thresholds: list[float] | None = None,
    preprocessing: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    where: str | os.PathLike = "",
) -> dict[str, Any]:
    """The JSON header written with `model`'s weights `tensors` (checked like a loaded one).

    A MESM model's recorded p is the one it runs at now (``model.p``), which is its trained p
    unless :meth:`~mesm.models.FE2E.set_p` changed it.
    """
    from mesm import __version__

    if len(label_names) != model.config.num_classes:
        raise ValueError(f"{len(label_names)} label names for {model.config.num_classes} outputs")
    if _repeated(label_names) is not None:
        raise ValueError(f"label names must differ; {_repeated(label_names)!r} appears twice")
    thresholds = None if thresholds is None else [float(t) for t in thresholds]
    problem = _threshold_problem(thresholds, len(label_names))
    if problem:
        raise CheckpointError(f"{where}: {problem}")
    config = model.config.to_dict()
    if getattr(model, "p", None) is not None:
        config["p"] = model.p
    return {
        "format": FORMAT_VERSION,
        "mesm_version": __version__,
        "model": config,
        "label_names": list(label_names),
        "task": task,
        "modalities": model.modalities,
        "thresholds": thresholds,
        "preprocessing": preprocessing or {},
        "extra": extra or {},
        "weights_sha256": tensors_digest(tensors),
    }


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def save_checkpoint(
    path: str | os.PathLike,
    model: EmotionModel | BaselineModel,
    *,
    label_names: list[str] | tuple[str, ...],
    task: str,
    thresholds: list[float] | None = None,
    preprocessing: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Atomically writes `model` and everything needed to use it to `path` (.safetensors)."""
    tensors = _weights(model)
    meta = checkpoint_header(
        model,
        tensors,
        label_names=label_names,
        task=task,
        thresholds=thresholds,
        preprocessing=preprocessing,
        extra=extra,
        where=path,
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_target(path) as tmp:
        save_file(tensors, str(tmp), metadata={_META_KEY: json.dumps(meta)})
    return path


def locate(source: str | os.PathLike, *, revision: str | None = None) -> Path:
    """The local checkpoint file or model folder that `source` names.

    Args:
        source: a ``.safetensors`` checkpoint, a model folder (``config.json`` +
            ``model.safetensors``, see :meth:`TrainedModel.save_pretrained`), or a Hugging Face
            Hub repo id ("owner/name"), downloaded (or taken from the local hub cache) through
            ``huggingface_hub``.
        revision: the hub revision (branch, tag or commit) of a repo id.

    Raises:
        FileNotFoundError: no such file or folder, and `source` is not a repo id.
        CheckpointError: a repo id that cannot be fetched (offline, unknown repo, ...).
    """
    path = Path(source)
    if path.exists():
        return path
    text = str(source)
    if _REPO_ID.fullmatch(text) and not text.endswith(".safetensors"):
        from huggingface_hub import snapshot_download

        try:
            folder = snapshot_download(
                text, revision=revision, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, "README.md"]
            )
        except Exception as err:  # network, auth, unknown repo: all one message for the user
            raise CheckpointError(
                f"no local checkpoint or folder {text!r}, and fetching it from the Hugging Face "
                f"Hub failed: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            ) from None
        return Path(folder)
    raise MissingInputError(f"no checkpoint at {path}")


def read_checkpoint_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON header of a checkpoint file or model folder (no weights loaded)."""
    return _read_meta(locate(path))


def _read_meta(path: Path) -> dict[str, Any]:
    """`read_checkpoint_meta` of a located checkpoint file or model folder."""
    if path.is_dir():
        config = path / CONFIG_NAME
        if not config.is_file():
            raise CheckpointError(f"{path}: a model folder needs {CONFIG_NAME} and {WEIGHTS_NAME}")
        try:
            raw = decode_text(config.read_bytes(), config, fallback=False)
        except TextEncodingError as err:
            raise CheckpointError(str(err)) from None
        path = config
    else:
        try:
            with safe_open(str(path), framework="pt") as f:
                raw = (f.metadata() or {}).get(_META_KEY)
        except Exception as err:  # safetensors raises its own error types for damaged files
            raise CheckpointError(
                f"{path}: not a readable safetensors checkpoint ({err})"
            ) from None
        if raw is None:
            raise CheckpointError(
                f"{path}: safetensors file without mesm metadata (a model folder's "
                f"{WEIGHTS_NAME} is read through its folder)"
            )
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
    twice = _repeated(names)
    if twice is not None:
        # Loading it would print one emotion's probability under another's name.
        return f"header field 'label_names' names {twice!r} twice"
    num_classes = meta["model"].get("num_classes")
    if num_classes is not None and num_classes != len(names):
        return f"{len(names)} label names but the model's num_classes is {num_classes}"
    for key in ("preprocessing", "extra"):
        if not isinstance(meta.setdefault(key, {}), dict):
            return f"header field {key!r} must be a JSON object"
    return _threshold_problem(meta.setdefault("thresholds", None), len(names))


def _repeated(names: list[str] | tuple[str, ...]) -> str | None:
    """The first name that appears twice, or None."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[EmotionModel | BaselineModel, dict[str, Any]]:
    """Rebuilds the model from a checkpoint file or model folder (weights only; no pickle) and
    returns it in eval mode.

    Returns:
        (model, meta) where meta is the checkpoint's header.
    """
    return _load_located(locate(path), map_location)


def _load_located(
    path: Path, map_location: str | torch.device
) -> tuple[EmotionModel | BaselineModel, dict[str, Any]]:
    """`load_checkpoint` of a located checkpoint file or model folder."""
    from safetensors.torch import load_file

    meta = _read_meta(path)
    weights = path / WEIGHTS_NAME if path.is_dir() else path
    if not weights.is_file():
        raise CheckpointError(f"{path}: a model folder needs {CONFIG_NAME} and {WEIGHTS_NAME}")
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
    try:
        state = load_file(str(weights), device="cpu")
    except Exception as err:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"{weights}: not a readable safetensors file ({err})") from None
    if meta["format"] >= 2 and tensors_digest(state) != meta["weights_sha256"]:
        raise CheckpointError(
            f"{weights}: weights checksum mismatch (the file was damaged or changed after "
            "saving, or does not belong to this header)"
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


@dataclass
class TrainedModel:
    """A model together with what it was trained for: label names, task, validation-tuned
    thresholds, the preprocessing of its inputs.

    Load one with :func:`load_model` (or ``mesm.from_pretrained``); share it as one
    ``.safetensors`` file (:meth:`save`) or as a Hugging Face-style folder
    (:meth:`save_pretrained`: ``config.json`` + ``model.safetensors`` + a ``README.md`` model
    card), which ``huggingface-cli upload`` publishes and :func:`load_model` reads back by repo id.

    Attributes:
        model: the network, in eval mode.
        meta: the checkpoint header (``{}`` for a model that was never saved).
        source: what it was loaded from (file, folder or repo id as given; None: in memory).
    """

    model: EmotionModel | BaselineModel
    meta: dict[str, Any] = field(default_factory=dict)
    source: str | None = None

    @property
    def label_names(self) -> list[str]:
        names = self.meta.get("label_names")
        return list(names) if names else [str(k) for k in range(self.model.config.num_classes)]

    @property
    def thresholds(self) -> list[float]:
        """Per-emotion decision thresholds (0.5 where none were tuned)."""
        return list(self.meta.get("thresholds") or [0.5] * len(self.label_names))

    @property
    def task(self) -> str:
        return self.meta.get("task", "multi_label")

    @property
    def settings(self) -> PreprocessSettings:
        """The raw-media preprocessing the model's inputs need."""
        return preprocessing_settings(self.meta) or PreprocessSettings()

    def _header_args(self) -> dict[str, Any]:
        return {
            "label_names": self.label_names,
            "task": self.task,
            "thresholds": self.meta.get("thresholds"),
            "preprocessing": self.meta.get("preprocessing"),
            "extra": self.meta.get("extra"),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """One self-contained ``.safetensors`` checkpoint (weights + header), written atomically."""
        return save_checkpoint(path, self.model, **self._header_args())

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """A model folder: ``config.json`` (the header), ``model.safetensors`` (the weights) and
        ``README.md`` (a model card). Each file is written atomically, the weights first; the
        header's weight checksum ties the two, so a folder left half-updated fails to load
        instead of mixing two models.
        """
        directory = Path(directory)
        if directory.exists() and not directory.is_dir():
            raise CheckpointError(f"{directory}: exists and is not a folder")
        directory.mkdir(parents=True, exist_ok=True)
        tensors = _weights(self.model)
        meta = checkpoint_header(self.model, tensors, where=directory, **self._header_args())
        with atomic_target(directory / WEIGHTS_NAME) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "pt"})
        atomic_write_text(directory / CONFIG_NAME, json.dumps(meta, indent=2) + "\n")
        atomic_write_text(directory / "README.md", model_card(meta))
        return directory


def load_model(
    source: str | os.PathLike | TrainedModel | torch.nn.Module | Any,
    *,
    device: str | torch.device | None = None,
    revision: str | None = None,
) -> TrainedModel:
    """The one way every entry point turns what it was given into a :class:`TrainedModel`.

    Args:
        source: a ``.safetensors`` checkpoint, a model folder or a hub repo id (see
            :func:`locate`); a :class:`TrainedModel` (returned as is); anything holding one as
            ``.trained`` (a :class:`~mesm.inference.predict.Predictor`); or a model in memory
            (used as is, in eval mode, with no header).
        device: where the model goes (None: a loaded checkpoint on the CPU, a model in memory
            where it is).
        revision: the hub revision of a repo id.
    """
    trained = getattr(source, "trained", source)
    if isinstance(trained, TrainedModel):
        if device is not None:
            trained.model.to(device)
        return trained
    if isinstance(source, torch.nn.Module):
        model = source.eval() if device is None else source.to(device).eval()
        return TrainedModel(model, {})
    path = locate(source, revision=revision)
    model, meta = _load_located(path, "cpu" if device is None else device)
    return TrainedModel(model, meta, str(source))


def model_card(meta: dict[str, Any]) -> str:
    """A README.md for a model folder: hub metadata, what the model predicts, how to use it."""
    model = meta["model"]
    arch = str(model.get("arch", "?")).upper()
    p = f", p = {model['p']}" if model.get("arch") == "mesm" and "p" in model else ""
    thresholds = meta.get("thresholds") or [0.5] * len(meta["label_names"])
    rows = "\n".join(
        f"| {name} | {t:.2f} |" for name, t in zip(meta["label_names"], thresholds, strict=True)
    )
    return f"""---
library_name: mesm
tags:
- emotion-recognition
- multimodal
---
# {arch} emotion model{p}

Trained with [mesm](https://pypi.org/project/mesm/) {meta.get("mesm_version", "")}
(task: {meta["task"]}, modalities: {meta["modalities"]}).

| emotion | decision threshold (tuned on validation) |
|---|---|
{rows}

```bash
mesm predict --checkpoint THIS_FOLDER_OR_REPO_ID --clip clip.mp4 --text "what is said"
```

```python
import mesm
model = mesm.from_pretrained("THIS_FOLDER_OR_REPO_ID")
```
"""
