"""`predict_clip`: a new video file (its own audio track, or a separate audio file) → emotions.

The clip goes through exactly the preprocessing the checkpoint was trained with (frame sampling,
MTCNN face crops with the counted centre-crop fallback, mel chunks, the text model's tokenizer),
then the model; each emotion's probability is compared with the threshold tuned on validation.
"""

from __future__ import annotations

import copy
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from mesm.data.errors import DataError
from mesm.data.manifest import Record
from mesm.data.media.audio import audio_duration, resample
from mesm.data.media.cache import FaceChoice
from mesm.data.media.dataset import Batch, Item, collate
from mesm.data.media.faces import FaceCropper, make_cropper
from mesm.data.media.speaker import FALLBACKS
from mesm.data.media.stream import SegmentMedia
from mesm.data.media.text import TextTokenizer
from mesm.data.media.utterance import compute_features, media_features
from mesm.data.media.video import video_duration
from mesm.errors import MissingInputError, OptionError
from mesm.evaluation import decide
from mesm.files import DecodedText, read_text
from mesm.trained.checkpoint import TrainedModel, load_model
from mesm.trained.inputs import model_inputs
from mesm.trained.precision import Precision, resolve_precision

_TEXT_SUFFIXES = (".txt", ".text", ".lab", ".srt", ".vtt", ".json")


def read_transcript_file(path: str | os.PathLike) -> DecodedText:
    """The transcript held in a text file (surrounding whitespace removed), in the encoding it
    was saved in (`mesm.files.decode_text`: a byte-order mark, else UTF-8, else Windows-1252);
    the result's ``encoding`` says which, so a face can report a guess.

    Raises:
        DataError: the file does not exist. TextEncodingError: its bytes are in none of those
            encodings (naming the file and the line).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no transcript file at {path}")
    text = read_text(path)
    return DecodedText(text.strip(), text.encoding)


def read_transcript(text_or_file: str | None) -> str:
    """`--transcript`'s old double meaning, made safe: an existing file is read; anything that
    looks like a file path (one word with a "/" or a text-file suffix) but is not a file is an
    error rather than being taken as the words spoken; the rest is the transcript itself.

    Prefer the explicit `read_transcript_file` (``--transcript-file``) or passing the text
    (``--text``).

    Raises:
        OptionError: a path-like word naming no file (its inputs named as the parameters
            ``transcript``, ``text``, ``transcript_file``; the CLI words them as its flags).
    """
    if not text_or_file:
        return ""
    path = Path(text_or_file)
    if len(text_or_file) < 4096 and path.is_file():
        return read_transcript_file(path)
    word = text_or_file.strip()
    if not any(c.isspace() for c in word) and (
        "/" in word or "\\" in word or word.lower().endswith(_TEXT_SUFFIXES)
    ):
        raise OptionError(
            "{0} {value!r} looks like a file path but no such file exists (use {1} for the "
            "words themselves, {2} for a file)",
            "transcript",
            "text",
            "transcript_file",
            value=text_or_file,
        )
    return text_or_file


def _clip_record(
    clip: str | os.PathLike,
    audio: str | os.PathLike | None,
    transcript: str,
    start: float | None = None,
    end: float | None = None,
) -> tuple[Path, Record]:
    """A one-record "dataset" rooted where the clip (and its audio) live."""
    clip = Path(clip).resolve()
    if not clip.exists():
        raise MissingInputError(f"no clip at {clip}")
    paths = [clip] if audio is None else [clip, Path(audio).resolve()]
    if audio is not None and not paths[1].is_file():
        raise MissingInputError(f"no audio file at {paths[1]}")
    root = Path(os.path.commonpath([p.parent for p in paths]))
    record = Record(
        id=clip.stem,
        video=str(clip.relative_to(root)),
        audio=None if audio is None else str(paths[1].relative_to(root)),
        text=transcript,
        labels=(),
        start=start,
        end=end,
    )
    return root, record


def check_audio_covers(clip: str | os.PathLike, audio: str | os.PathLike) -> None:
    """Refuse a separate audio file much shorter than its video clip: the model would hear a
    second of a twenty-second clip and say nothing about the rest. "Much" is more than 0.5 s and
    more than a tenth of the clip (a track cut a few frames early is fine). A frame folder has
    no duration to compare and is not checked.

    Raises:
        OptionError: naming the audio file (parameter ``audio``), the clip and both durations.
    """
    if Path(clip).is_dir():
        return
    video_s, audio_s = video_duration(clip), audio_duration(audio)
    if video_s - audio_s > max(0.5, 0.1 * video_s):
        raise OptionError(
            "{0} {audio} lasts {audio_s:.2f} s: it is shorter than the clip {clip} "
            "({video_s:.2f} s) by more than 0.5 s and a tenth; give the clip's whole audio",
            "audio",
            audio=audio,
            audio_s=audio_s,
            clip=clip,
            video_s=video_s,
        )


class Predictor:
    """A trained model loaded once, with its preprocessing, for many clips or segments.

    Args:
        checkpoint: a `.safetensors` checkpoint, a model folder or hub repo id (see
            :func:`~mesm.trained.checkpoint.load_model`), or a loaded :class:`TrainedModel`.
        device: where the model runs.
        precision: numeric precision of the model (see :mod:`mesm.trained.precision`).
        face: which face of a frame is cropped ("speaker" or "largest"; `PreprocessSettings`);
            None: the checkpoint's own rule.
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike | TrainedModel,
        device: str = "cpu",
        precision: str | Precision = "auto",
        *,
        face: FaceChoice | None = None,
    ) -> None:
        self.trained = load_model(checkpoint, device=device)
        self.checkpoint = self.trained.source  # what it was loaded from (None: in memory)
        self.device = device
        self.precision = resolve_precision(precision, device)
        self.model = self.trained.model
        self.settings = self.trained.settings  # parsed once: every clip and segment reads it
        if face is not None:
            self.settings = replace(self.settings, face=face)
        self.tokenizer = TextTokenizer(
            self.model.config.text_model,
            max_length=self.meta.get("extra", {}).get("max_text_length", 100),
        )
        self._cropper: FaceCropper | None = None

    def with_face(self, face: FaceChoice | None) -> Predictor:
        """This predictor (the same loaded model) cropping `face` (None: as it does)."""
        if face is None or face == self.settings.face:
            return self
        other = copy.copy(self)
        other.settings = replace(self.settings, face=face)
        other._cropper = self.cropper  # one detector for both (the face choice is not its)
        return other

    @property
    def meta(self) -> dict[str, Any]:
        """The checkpoint header (see :class:`TrainedModel`)."""
        return self.trained.meta

    @property
    def label_names(self) -> list[str]:
        return self.trained.label_names

    @property
    def thresholds(self) -> list[float]:
        return self.trained.thresholds

    @property
    def task(self) -> str:
        return self.trained.task

    @property
    def cropper(self) -> FaceCropper:
        """The face detector of the checkpoint's settings (built on first use)."""
        if self._cropper is None:
            self._cropper = make_cropper(self.settings)
        return self._cropper

    def clip_features(
        self,
        clip: str | os.PathLike,
        audio: str | os.PathLike | None = None,
        *,
        start: float | None = None,
        end: float | None = None,
    ) -> dict[str, torch.Tensor]:
        """Cache tensors of one clip, or of its span [start, end) s (`mesm.data.media.cache`)."""
        root, record = _clip_record(clip, audio, "", start, end)
        if audio is not None and start is None and end is None:
            check_audio_covers(clip, audio)
        try:
            return compute_features(root, record, self.settings, self.cropper)
        except DataError as err:
            raise DataError(str(err)) from err  # it names the record and the file

    def media_features(self, media: SegmentMedia) -> dict[str, torch.Tensor]:
        """Cache tensors of one segment of a long video (frames and audio already decoded)."""
        wave = resample(
            torch.from_numpy(media.waveform), media.sample_rate, self.settings.sample_rate
        )
        crops = self.cropper(media.frames.images)
        return media_features(media.frames, crops, wave, self.settings, self.cropper)

    def batch(self, tensors: dict[str, torch.Tensor], text: str, uid: str = "clip") -> Batch:
        """One utterance's cache tensors and transcript as a one-utterance Batch."""
        item = Item(
            id=uid,
            faces=tensors["faces"],
            found=tensors["found"],
            landmarks=tensors["landmarks"],
            specs=tensors["specs"],
            text_ids=torch.tensor(self.tokenizer.encode([text])[0], dtype=torch.int64),
            labels=torch.zeros(len(self.label_names)),
        )
        return collate([item], pad_id=self.tokenizer.pad_id)

    def clip_batch(
        self, clip: str | os.PathLike, transcript: str, *, audio: str | os.PathLike | None = None
    ) -> Batch:
        """One clip, preprocessed as the model was trained, as a one-utterance Batch."""
        return self.batch(self.clip_features(clip, audio), transcript, uid=Path(clip).stem)

    @torch.inference_mode()
    def predict(self, tensors: dict[str, torch.Tensor], text: str) -> dict[str, Any]:
        """Probabilities and decisions for one utterance's features and transcript.

        Returns:
            {"transcript", "preprocessing": {"frames", "faces_found", "chunks", "timestamps"},
            "emotions": {name: {"probability", "threshold", "present"}}, "present": [names],
            "top": name (single-label checkpoints)}.
        """
        inputs = model_inputs(self.model, self.batch(tensors, text), self.device)
        with self.precision.autocast():
            logits = self.model(**inputs)
        return self.result(tensors, text, torch.sigmoid(logits[0].float()).cpu().tolist())

    def result(
        self, tensors: dict[str, torch.Tensor], text: str, probabilities: list[float]
    ) -> dict[str, Any]:
        """:meth:`predict`'s result from the K probabilities of a forward pass run elsewhere
        (e.g. one that also recorded the attention): thresholds, decisions, preprocessing."""
        present = decide(probabilities, self.thresholds)  # float32, strictly above
        emotions = {
            name: {"probability": p, "threshold": t, "present": bool(yes)}
            for name, p, t, yes in zip(
                self.label_names, probabilities, self.thresholds, present, strict=True
            )
        }
        preprocessing: dict[str, Any] = {
            "frames": int(tensors["faces"].shape[0]),
            "faces_found": int(tensors["found"].sum()),
            "chunks": int(tensors["specs"].shape[0]),
            "timestamps": [round(float(t), 3) for t in tensors["timestamps"]],
        }
        if "speaker_track" in tensors:  # face="speaker": the face chosen and how
            preprocessing["face"] = speaker_summary(tensors)
        out: dict[str, Any] = {
            "transcript": text,
            "preprocessing": preprocessing,
            "emotions": emotions,
            "present": [n for n, e in emotions.items() if e["present"]],
            "precision": self.precision.lightning,
        }
        if self.task == "single_label":
            out["top"] = max(emotions, key=lambda n: emotions[n]["probability"])
        return out

    def predict_clip(
        self,
        clip: str | os.PathLike,
        transcript: str | None = None,
        *,
        audio: str | os.PathLike | None = None,
    ) -> dict[str, Any]:
        """`predict_clip` with this predictor's model (see there)."""
        text = transcript or ""
        return {"clip": str(clip), **self.predict(self.clip_features(clip, audio), text)}


def predict_clip(
    checkpoint: str | os.PathLike,
    clip: str | os.PathLike,
    transcript: str | None = None,
    *,
    audio: str | os.PathLike | None = None,
    device: str = "cpu",
    precision: str | Precision = "auto",
    face: FaceChoice | None = None,
) -> dict[str, Any]:
    """Per-emotion probabilities and decisions for one clip.

    Args:
        checkpoint: a `.safetensors` checkpoint, a model folder or a hub repo id.
        clip: the video file (or frame folder).
        transcript: the words spoken (None: empty); see `read_transcript_file` for files.
        audio: a separate audio file (default: the video's own track).
        device: where the model runs.
        precision: what it runs at ("auto", "32", "bf16", ...; :mod:`mesm.trained.precision`).
        face: "speaker" or "largest" (None: the checkpoint's rule, "largest" unless it was
            trained on speaker crops).

    Returns:
        {"clip", "transcript", "preprocessing": {...; "face" with face="speaker"},
        "emotions": {name: {"probability", "threshold", "present"}}, "present": [names],
        "top": name (single-label checkpoints), "precision": "32-true" | "bf16-mixed" | "16-mixed"}.
    """
    predictor = Predictor(checkpoint, device, precision, face=face)
    return predictor.predict_clip(clip, transcript, audio=audio)


def speaker_summary(tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """How the face of a ``face="speaker"`` utterance was chosen, from its tensors.

    Returns:
        {"choice": "speaker", "track": the chosen track (-1: no face), "tracks": tracks seen,
        "fallback": why the largest face was kept ("" when the speaker's was chosen),
        "speaker_found": fraction of the frames where the chosen face was detected,
        "box": its box [x1, y1, x2, y2] in the frame nearest the middle (None: no face),
        "box_time": that frame's time in seconds (None: no face)}.
    """
    tracks, frames = tensors["detection_tracks"], tensors["detection_frames"]
    track = int(tensors["speaker_track"][0])
    count = max(int(tensors["faces"].shape[0]), 1)
    mine = torch.nonzero(tracks == track)[:, 0]
    out: dict[str, Any] = {
        "choice": "speaker",
        "track": track,
        "tracks": int(tracks.unique().numel()),
        "fallback": FALLBACKS[int(tensors["speaker_fallback"][0])],
        "speaker_found": len(frames[mine].unique()) / count,
        "box": None,
        "box_time": None,
    }
    if len(mine):
        middle = mine[(frames[mine] - (count - 1) / 2).abs().argmin()]
        box = tensors["detections"][middle, :4]
        out["box"] = [round(float(v), 1) for v in box]
        out["box_time"] = round(float(tensors["timestamps"][frames[middle]]), 3)
    return out
