"""The page's work without the page: a checkpoint loaded once, run on an uploaded video.

:class:`ClipAnalyser` turns (video, transcript, subtitle file) into :class:`PageOutputs`, the
values of the page's output components. A short clip gets the probability bars, and for MESM the
attention overview (:func:`mesm.analysis.attention_maps.explain_batch`) and its FLOPs against FE2E
with the same weights (:func:`mesm.analysis.flops.average_feature_flops`); a long video (a subtitle
file, or longer than ``long_video_seconds``) gets the emotion timeline
(:func:`mesm.inference.video.predict_video`) as a plot and a CSV. Failures become a readable
message (:func:`mesm.app.outputs.user_message`), never an exception.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesm.analysis.attention_maps import explain_batch
from mesm.analysis.flops import average_feature_flops
from mesm.app.outputs import (
    check_request,
    display_name,
    flops_markdown,
    hide_paths,
    prediction_summary,
    probability_html,
    regions_markdown,
    user_message,
)
from mesm.data.manifest import read_dataset
from mesm.data.media.cache import FaceChoice
from mesm.data.media.video import video_duration
from mesm.errors import MesmError
from mesm.files import atomic_write_bytes
from mesm.inference.outputs import chosen_faces_png, write_timeline
from mesm.inference.predict import Predictor
from mesm.inference.video import BLANK_TEXT_WARNING, predict_video
from mesm.trained.inputs import model_inputs
from mesm.trained.precision import Precision

log = logging.getLogger(__name__)

# The page's words for warnings whose library text names command-line flags.
_PAGE_WORDING = {
    BLANK_TEXT_WARNING: "no subtitle file: the transcripts are empty, so the text modality is "
    "blank (upload a subtitle file to give each utterance its text)",
}

# Attention images drawn per pathway on the page (the overview spreads them over the clip).
OVERVIEW_FRAMES = 8


@dataclass
class PageOutputs:
    """The values of the page's outputs for one request.

    Attributes:
        ok: False when the request failed (then `message` says why and the rest is empty).
        message: Markdown: the prediction's summary, warnings, or the error.
        probabilities: HTML probability bars (clips; "" for a timeline).
        attention: the attention overview PNG (MESM clips).
        flops: Markdown line of MESM's FLOPs vs FE2E (MESM clips; "" otherwise).
        timeline_plot: the timeline PNG (long videos).
        timeline_csv: the timeline CSV (long videos).
        faces: a frame of some segments with the box of the face read (long videos, with the
            speaker's face chosen).
    """

    ok: bool
    message: str
    probabilities: str = ""
    attention: Path | None = None
    flops: str = ""
    timeline_plot: Path | None = None
    timeline_csv: Path | None = None
    faces: Path | None = None

    def values(self) -> tuple[str, str, str, str | None, str | None, str | None, str | None]:
        """(message, probabilities, flops, attention, timeline_plot, timeline_csv, faces): the
        page's output components in order, files as path strings or None."""
        files = (self.attention, self.timeline_plot, self.timeline_csv, self.faces)
        return (self.message, self.probabilities, self.flops, *(_str(f) for f in files))


class ClipAnalyser:
    """A checkpoint loaded once (with MESM's dense twin for the FLOPs comparison).

    Args:
        checkpoint: a ``.safetensors`` checkpoint, a model folder or a hub repo id.
        device: where the model runs.
        precision: numeric precision (see :mod:`mesm.trained.precision`).
        long_video_seconds: a video longer than this (without subtitles) is cut into utterances
            by voice activity and shown as a timeline.
        work_dir: where each request's images and CSV go (default: a new temporary folder).
        keep_requests: request folders kept; older ones are removed (the page has served them).
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike,
        *,
        device: str = "cpu",
        precision: str | Precision = "auto",
        long_video_seconds: float = 30.0,
        work_dir: str | os.PathLike | None = None,
        keep_requests: int = 8,
    ) -> None:
        self.predictor = Predictor(checkpoint, device, precision)
        model = self.predictor.model
        self.is_mesm = bool(model.attention_layers())
        self.dense = model.dense_twin() if self.is_mesm else None
        self.long_video_seconds = long_video_seconds
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="mesm-serve-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.keep_requests = keep_requests
        self._requests = 0

    @property
    def label_names(self) -> list[str]:
        return self.predictor.label_names

    def analyse(
        self,
        video: str | None,
        transcript: str = "",
        subtitles: str | None = None,
        face: FaceChoice | None = None,
    ) -> PageOutputs:
        """Everything the page shows for one upload; a failure becomes its message.

        Args:
            video: the uploaded video file.
            transcript: what is said (clips; required unless `subtitles` is given).
            subtitles: an SRT/WebVTT/ASS file; its cues are the utterances of a timeline.
            face: which face is read where several are seen: "speaker" or "largest" (None: the
                speaker's for a timeline, the checkpoint's rule for a clip).
        """
        transcript = transcript or ""
        names = {str(p): display_name(p) for p in (video, subtitles) if p}
        try:
            check_request(video, transcript, subtitles)
            out = self._new_request_dir()
            duration = None if subtitles else video_duration(video)
            if duration is None or duration > self.long_video_seconds:
                outputs = self._timeline(video, transcript, subtitles, out, duration, face)
            else:
                outputs = self._clip(video, transcript, out, face)
            outputs.message = hide_paths(outputs.message, names)
            return outputs
        except Exception as err:  # the page shows a message; the log keeps the traceback
            log.warning("request failed: %s", err, exc_info=not _expected(err))
            return PageOutputs(ok=False, message=f"**Error:** {user_message(err, names)}")

    def _clip(self, video: str, transcript: str, out: Path, face: FaceChoice | None) -> PageOutputs:
        p = self.predictor.with_face(face)
        tensors = p.clip_features(video)
        attention, flops = None, ""
        if self.is_mesm:
            # One forward pass gives both the attention maps and the prediction.
            batch = p.batch(tensors, transcript)
            with p.precision.autocast():
                report = explain_batch(
                    p.model,
                    batch,
                    out / "attention",
                    tensors["faces"],
                    label_names=self.label_names,
                    max_frames=OVERVIEW_FRAMES,
                    overview_columns=OVERVIEW_FRAMES,
                    sample_rate=p.settings.sample_rate,
                )
                attention = out / "attention" / "overview.png"
                flops = self._flops(batch)
                shares = regions_markdown(report["regions"])
                flops = f"{flops}\n\n{shares}" if shares else flops
            probabilities = [report["prediction"][n] for n in self.label_names]
            result = p.result(tensors, transcript, probabilities)
        else:
            result = p.predict(tensors, transcript)
        return PageOutputs(
            ok=True,
            message=prediction_summary(result, display_name(video)),
            probabilities=probability_html(result["emotions"]),
            attention=attention,
            flops=flops,
        )

    def _flops(self, batch: dict[str, Any]) -> str:
        assert self.dense is not None
        model = self.predictor.model
        ours = average_feature_flops(model, [model_inputs(model, batch)])
        dense = average_feature_flops(self.dense, [model_inputs(self.dense, batch)])
        return flops_markdown(ours, dense)

    def _timeline(
        self,
        video: str,
        transcript: str,
        subtitles: str | None,
        out: Path,
        duration: float | None = None,
        face: FaceChoice | None = None,
    ) -> PageOutputs:
        timeline = predict_video(
            self.predictor,
            video,
            subtitles=subtitles,
            progress=False,
            duration=duration,
            face=face or "speaker",
        )
        files = write_timeline(timeline, out / "timeline")
        faces = None
        picture = chosen_faces_png(timeline)
        if picture:
            faces = out / "timeline" / "faces.png"
            atomic_write_bytes(faces, picture)
        lines = [
            f"**{display_name(video)}**: {len(timeline.rows)} segments "
            f"({timeline.segmentation.summary()}); text: {timeline.text_source}."
        ]
        if transcript.strip() and not subtitles:
            lines.append(
                "The transcript box is not used for a long video: upload a subtitle file to "
                "give each utterance its text."
            )
        if timeline.face_summary:
            lines.append(timeline.face_summary[0].upper() + timeline.face_summary[1:] + ".")
        lines += [f"Warning: {_PAGE_WORDING.get(w, w)}" for w in timeline.warnings]
        return PageOutputs(
            ok=True,
            message="  \n".join(lines),
            timeline_plot=files["png"],
            timeline_csv=files["csv"],
            faces=faces,
        )

    def _new_request_dir(self) -> Path:
        self._requests += 1
        out = self.work_dir / f"request{self._requests:06d}"
        out.mkdir()
        old = self._requests - self.keep_requests
        if old > 0:
            shutil.rmtree(self.work_dir / f"request{old:06d}", ignore_errors=True)
        return out


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def dataset_examples(data_dir: str | os.PathLike, count: int = 4) -> list[tuple[str, str]]:
    """Example clips for the page: (video, transcript) of a prepared dataset's test utterances.

    Only whole video files with their own audio track are taken (the page reads the video's
    track); the test split first, then the others.

    Args:
        data_dir: a dataset folder (``dataset.json`` + ``manifest.jsonl``, e.g. the demo's data).
        count: most examples returned.
    """
    root = Path(data_dir)
    _, records = read_dataset(root, check_files=False)
    usable = [
        r
        for r in records
        if r.audio is None and r.start is None and r.text and (root / r.video).is_file()
    ]
    usable.sort(key=lambda r: r.split != "test")  # stable: manifest order within each group
    return [(str((root / r.video).resolve()), r.text) for r in usable[:count]]


def _expected(err: BaseException) -> bool:
    return isinstance(err, (MesmError, ValueError, OSError))
