"""`mesm demo`: the whole pipeline on a synthetic corpus, on a laptop.

1. writes a small corpus in the on-disk format of a real dataset (mp4 clips of a real face,
   speech-like audio, transcripts; see :mod:`mesm.demo.corpus`: no single modality suffices);
2. preprocesses it through the real pipeline (video decoding, MTCNN with centre-crop fallback,
   mel-spectrograms, feature cache);
3. trains FE2E and MESM (``tiny`` preset, the offline MiniLM text encoder) with the paper's
   procedure (validation-tuned thresholds, best epoch by average F1);
4. reports each model's per-emotion test table, top-1 accuracy and feature-extraction FLOPs per
   utterance, draws MESM's attention maps for one test clip, and writes ``report.json``;
5. keeps of each training run its ``best.safetensors``, ``metrics.json``, ``config.yaml`` and
   logs (not Lightning's ``.ckpt`` files: the runs are finished and nothing reads them), and
   reports the folder's size;
6. measures MESM's kept sites (and FE2E's saliency) per facial region over the test split
   (:mod:`mesm.analysis.region_report`): the corpus's faces differ between emotions only at the
   mouth and the brows, and the report says whether MESM keeps more of them than their area;
7. writes ``video/talk.mp4`` + ``video/talk.srt``: a longer video of new utterances in blocks of
   one emotion each, with one subtitle cue per utterance, for ``mesm predict --out``;
8. writes ``video/two.mp4`` + ``two.srt``, two people speaking in turns, predicts its timeline
   with MESM cropping the speaker's face and the largest face (``two-person/speaker``,
   ``two-person/largest``) and reports in how many turns the speaker's face was chosen and the
   timeline's emotion was the speaker's (:mod:`mesm.demo.two_person`).
"""

from __future__ import annotations

import errno
import os
import shlex
import time
from pathlib import Path
from typing import Any

from mesm.analysis.attention_maps import explain
from mesm.analysis.flops import dataset_flops
from mesm.analysis.region_report import region_report
from mesm.data.manifest import read_dataset
from mesm.data.media.preprocess import preprocess_dataset
from mesm.demo.corpus import EMOTIONS, write_demo_corpus, write_demo_video
from mesm.demo.two_person import run_two_person
from mesm.errors import OutputPathError
from mesm.evaluation import json_safe
from mesm.files import atomic_write_json
from mesm.models.config import DEFAULT_P
from mesm.trained.checkpoint import TrainedModel, load_model
from mesm.trained.precision import Precision, resolve_precision
from mesm.training.config import RunConfig
from mesm.training.fit import train

# Sizes of the full demo and of --quick (the latter is what the tests run). "video": the long
# video for `mesm predict --out` has this many blocks of utterances of one emotion each.
# "two_person": turns of the two-person video.
FULL = {"utterances": 240, "epochs": 14, "patience": 5, "video": (8, 8), "two_person": 16}
QUICK = {"utterances": 96, "epochs": 6, "patience": 6, "video": (4, 3), "two_person": 10}
# The demo's training recipe beyond the paper's (docs/training.md, "Modality dropout"): the text
# is left out of half the training utterances' fusion and every modality also learns alone, so
# that the face and the voice must name the emotion without the words, as in the two-person
# video, whose subtitles only name the speaker.
MODALITY_DROPOUT = {"t": 0.5}
MODALITY_LOSS = 1.0
# The model whose timelines of the two-person video compare the two face choices: FE2E (in the
# runs behind issue 23 the demo's MESM mostly ignored the faces; docs/speaker-face.md).
TWO_PERSON_MODEL = "FE2E"


def demo_config(
    arch: str,
    data_dir: str | os.PathLike,
    epochs: int,
    patience: int,
    seed: int,
    precision: str = "auto",
):
    """The run config the demo trains each model with."""
    model: dict[str, Any] = {"preset": "tiny", "arch": arch, "dropout": 0.1}
    if arch == "mesm":
        model.update(p=DEFAULT_P, gating="none")
    return RunConfig.from_dict(
        {
            "model": model,
            "data": {"path": str(data_dir), "batch_size": 16},
            "optim": {
                "lr": 2e-3,
                "text_lr_factor": 20,
                "grad_clip": 2.0,
                "modality_dropout": dict(MODALITY_DROPOUT),
                "modality_loss": MODALITY_LOSS,
            },
            "trainer": {
                "max_epochs": epochs,
                "patience": patience,
                "seed": seed,
                "accelerator": "cpu",
                "precision": precision,
                "log_every_n_steps": 5,
            },
        }
    )


def _gflops(trained: TrainedModel, data: Path, precision: Precision) -> dict[str, float]:
    """Mean feature-extraction GFLOPs per test utterance (visual, audio, their sum, attention)."""
    g = dataset_flops(trained, data, "test", precision=precision)["model"]
    g = g["gflops_per_utterance"]
    return {"v": g["visual"], "a": g["audio"], "total": g["features"], "attention": g["attention"]}


def serve_command(out_dir: str | os.PathLike) -> str:
    """The command that serves the demo's MESM checkpoint on a web page, its clips as examples."""
    out = Path(out_dir)
    checkpoint = shlex.quote(str(out / "runs" / "mesm" / "best.safetensors"))
    return f"mesm serve --checkpoint {checkpoint} --examples {shlex.quote(str(out / 'data'))}"


def _train_one(
    arch: str,
    out: Path,
    sizes: dict[str, Any],
    seed: int,
    progress: bool,
    precision: Precision,
) -> tuple[dict[str, Any], TrainedModel]:
    """Trains one model on the demo's data: its report entry (test metrics, FLOPs, time) and
    the trained model, loaded once for every later step."""
    data = out / "data"
    config = demo_config(arch, data, sizes["epochs"], sizes["patience"], seed, precision.lightning)
    started = time.perf_counter()
    result = train(config, out / "runs" / arch, enable_progress_bar=progress, precision=precision)
    removed = _drop_lightning_checkpoints(result.run_dir)
    test = result.metrics["test"]
    trained = load_model(result.checkpoint)
    entry = {
        "checkpoint": str(result.checkpoint),
        "test": test,
        "top1_accuracy": test.get("top1_accuracy"),
        "gflops_per_utterance": _gflops(trained, data, precision),
        "train_seconds": time.perf_counter() - started,
        "removed_checkpoints": removed,
    }
    return entry, trained


def _drop_lightning_checkpoints(run_dir: Path) -> list[str]:
    """Deletes a finished demo run's Lightning checkpoints; their names.

    ``checkpoints/best.ckpt`` and ``last.ckpt`` hold the optimiser state of the whole model (the
    text encoder's included): four times the size of ``best.safetensors``, which holds the
    trained model. The demo's runs end (early stopping or the last epoch) before this runs, so
    there is nothing to resume and nothing in the tour reads them; `mesm train` keeps them.
    """
    removed = []
    for ckpt in sorted((run_dir / "checkpoints").glob("*.ckpt")):
        ckpt.unlink()
        removed.append(ckpt.name)
    return removed


def folder_size(folder: Path) -> int:
    """Bytes of the files under `folder` (links not followed)."""
    return sum(f.lstat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink())


def _attention_maps(out: Path, mesm: TrainedModel, precision: Precision) -> dict[str, str]:
    """Attention maps of MESM on the first test utterance (the paper's case study, on our
    data), under ``out/attention``."""
    data, maps = out / "data", out / "attention"
    test_id = next(r.id for r in read_dataset(data, check_files=False)[1] if r.split == "test")
    explain(mesm, data, maps, utterance_id=test_id, precision=precision)
    return {"utterance": test_id, "overview": str(maps / "overview.png")}


def _regions(out: Path, models: dict[str, TrainedModel], precision: Precision) -> dict[str, Any]:
    """Attention per facial region on the test split: MESM's kept sites and FE2E's saliency,
    under ``out/regions/{mesm,fe2e}``; and whether MESM keeps more of the mouth and brows (where
    the corpus's faces differ between emotions) than their area."""
    result: dict[str, Any] = {}
    for name in ("MESM", "FE2E"):
        folder = out / "regions" / name.lower()
        report = region_report(
            models[name],
            out / "data",
            "test",
            folder,
            precision=precision,
            speech=True,
        )
        result[name] = {
            "folder": str(folder),
            "source": report["source"],
            "mouth_brows": report["mouth_brows"],
            "frames_without_face": report["frames"]["without_face"],
        }
    layers = result["MESM"]["mouth_brows"]
    result["mesm_mouth_brows_enriched"] = {
        layer: (v["lo"] or 0.0) > 1.0 for layer, v in layers.items()
    }  # the whole 95 % interval above 1
    return result


def run_demo(
    out_dir: str | os.PathLike,
    *,
    quick: bool = False,
    seed: int = 0,
    progress: bool = True,
    precision: str | Precision = "auto",
) -> dict[str, Any]:
    """Runs the demo into `out_dir` (data/, runs/fe2e, runs/mesm, report.json).

    `precision` ("auto", "32", "bf16"; :mod:`mesm.trained.precision`) is what both models train
    and run at; `seed` seeds the corpus and the training.

    Returns:
        The report: per model the test metrics (per emotion and average), top-1 accuracy and
        feature-extraction GFLOPs per utterance; the MESM/FE2E FLOPs ratio; timings; the
        folder's size in bytes.
    """
    sizes = QUICK if quick else FULL
    resolved = resolve_precision(precision, "cpu")
    out = Path(out_dir)
    data = out / "data"
    began = time.perf_counter()
    if (out / "runs").exists():
        raise OutputPathError(
            errno.EEXIST, "already holds a demo run; choose another --out", str(out)
        )
    write_demo_corpus(data, sizes["utterances"], seed=seed)
    blocks, per_block = sizes["video"]
    sequence = [
        EMOTIONS[(b + seed) % len(EMOTIONS)] for b in range(blocks) for _ in range(per_block)
    ]
    video, subtitles = write_demo_video(out / "video" / "talk.mp4", sequence, seed=seed + 1)
    workers = min(2, os.cpu_count() or 1)
    prep = preprocess_dataset(data, num_workers=workers, progress=progress)
    report: dict[str, Any] = {
        "corpus": {"utterances": sizes["utterances"], "path": str(data)},
        "preprocess": {
            "summary": prep.summary(),
            "seconds": prep.seconds,
            "frames": prep.frames,
            "face_found_rate": prep.face_found_rate,
        },
        "precision": resolved.lightning,
        "models": {},
        "video": {"video": str(video), "subtitles": str(subtitles), "emotions": sequence},
    }
    trained: dict[str, TrainedModel] = {}
    for arch in ("fe2e", "mesm"):
        name = arch.upper()
        report["models"][name], trained[name] = _train_one(
            arch, out, sizes, seed, progress, resolved
        )
    report["attention_maps"] = _attention_maps(out, trained["MESM"], resolved)
    report["regions"] = _regions(out, trained, resolved)
    report["two_person"] = run_two_person(
        out,
        trained[TWO_PERSON_MODEL],
        sizes["two_person"],
        seed=seed,
        precision=resolved,
        model=TWO_PERSON_MODEL,
    )
    report["serve_command"] = serve_command(out)
    gf = {name: m["gflops_per_utterance"]["total"] for name, m in report["models"].items()}
    report["flops_ratio"] = gf["MESM"] / gf["FE2E"]
    report["seconds"] = time.perf_counter() - began
    report["folder_bytes"] = folder_size(out)  # report.json itself not included
    atomic_write_json(out / "report.json", json_safe(report))
    return report
