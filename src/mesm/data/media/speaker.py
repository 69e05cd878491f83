"""Active-speaker selection: of the face tracks of one utterance, the one whose mouth moves with
the speech.

With ``face="speaker"`` (`PreprocessSettings.face`), the faces MTCNN found in the utterance's
sampled frames are linked into tracks (`mesm.data.media.tracks`), each track is scored, and the
crops are taken from the best track instead of from the largest face of each frame.

**Score.** For each pair of consecutive detections of a track (at most ``max_gap + 1`` frames
apart), the *mouth motion* is how much the mouth region changed between the two frames beyond how
much the eye region did (`face_change`: both regions placed by MTCNN's landmarks, compared at the
head's own shift, in grey levels 0..255). The *speech activity* of the same span of audio is the
mean of Silero VAD's speech probability (`mesm.data.media.vad`, the whole-video path's detector)
and of the span's RMS energy relative to the loudest span of the utterance. A track's score is its
activity-weighted mean mouth motion, minus its mean mouth motion over spans of silence (activity
below ``silence``) when the utterance has at least two of them: a mouth that moves while someone
speaks and rests when nobody does scores high; a listener's still mouth, or one that moves as
much in silence, scores low.

**Candidates.** Tracks detected in at least ``max(2, min_presence · T)`` of the T frames with at
least one motion pair; a face seen once or twice in a long utterance (a passer-by, a false
detection) is not one.

**Choice and fallback.** The best-scoring candidate is chosen when its score exceeds the second's
by ``min_gap`` grey levels and by the factor ``min_ratio``. Otherwise the crops stay those of the
largest face of each frame (`face="largest"`), and `SpeakerChoice.fallback` says why: the scores
do not separate the tracks, there is no speech in the audio, or the utterance has one sampled frame
(no motion). One candidate (or none) needs no choice: the crops are the largest face's too. Every
fallback is counted in the preprocessing report and shown per segment in a timeline.

**Crops.** A frame where the chosen track was detected gets that face's crop (identical to the
largest-face crop where it is that face); a frame where it was not gets the crop of the track's box
in the nearest frame where it was (held in place, never the other person's face), flagged
``found = 0`` with NaN box and landmarks, as the centre-crop fallback is.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import torch

from mesm.data.media.faces import FaceCropper, FaceCrops
from mesm.data.media.tracks import BOX, EYES, MOUTH, TrackRule, link_tracks
from mesm.data.media.vad import VAD_RATE, VAD_WINDOW, load_vad_model, waveform_speech_probabilities

# Why the largest face was kept (index = the code stored in a cache entry's ``speaker_fallback``).
FALLBACKS = (
    "",  # chosen by its score
    "one face",  # a single candidate track: nothing to choose
    "not separated",  # the scores do not separate the tracks
    "no speech",  # the audio holds no speech to follow
    "too short",  # one sampled frame: no motion to score
    "no face",  # MTCNN found no face in any frame
)
# The fallbacks among several faces (counted and reported); the others need no choice.
CHOICE_FALLBACKS = ("not separated", "no speech", "too short")


@dataclass(frozen=True)
class SpeakerRule:
    """How the speaker's track is chosen (see the module docstring).

    Attributes:
        min_gap: the best score must exceed the second's by this many grey levels.
        min_ratio: … and be at least this many times the second's.
        silence: spans whose activity is below this count as silence.
        min_presence: a candidate track is detected in at least this fraction of the frames.
        min_speech: the utterance's highest speech probability must reach this.
        tracks: how detections are linked into tracks.
    """

    min_gap: float = 0.6
    min_ratio: float = 1.4
    silence: float = 0.2
    min_presence: float = 0.25
    min_speech: float = 0.3
    tracks: TrackRule = field(default_factory=TrackRule)


@dataclass
class SpeakerChoice:
    """The face chosen for one utterance.

    Attributes:
        track: the chosen track (the largest face's track on a fallback; -1: no face at all).
        tracks: (D,) int64 the track of every detection.
        candidates: the number of candidate tracks.
        scores: candidate track -> score (grey levels).
        fallback: "" when chosen by score, else one of `FALLBACKS`.
        found: frames where the chosen track's face was detected.
        frames: the utterance's sampled frames.
    """

    track: int
    tracks: np.ndarray
    candidates: int
    scores: dict[int, float]
    fallback: str
    found: int
    frames: int

    @property
    def counted_fallback(self) -> bool:
        """Several faces, and the largest kept because no choice could be made."""
        return self.fallback in CHOICE_FALLBACKS


@functools.lru_cache(maxsize=1)
def _vad() -> torch.jit.ScriptModule:
    return load_vad_model()  # one per process (each worker of preprocessing has its own)


def speech_activity(
    waveform: np.ndarray, sample_rate: int, times: np.ndarray
) -> tuple[np.ndarray, float]:
    """Speech activity of the spans between consecutive frames.

    Args:
        waveform: (N,) float32 mono samples at `sample_rate`, starting at the first frame.
        sample_rate: of `waveform` (resampled to 16 kHz for the VAD).
        times: (T,) frame times in seconds (on any clock: only differences count).

    Returns:
        (activity (T,) in [0, 1], entry i the span from frame i - 1 to frame i and entry 0 zero;
        the highest speech probability of the utterance).
    """
    wave = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))
    if sample_rate != VAD_RATE:
        from mesm.data.media.audio import resample

        wave = resample(wave, sample_rate, VAD_RATE)
    samples = wave.numpy()
    activity = np.zeros(len(times), dtype=np.float64)
    if len(times) < 2 or samples.size == 0:
        return activity, 0.0
    probs = waveform_speech_probabilities(samples, _vad())
    relative = np.asarray(times, dtype=np.float64) - float(times[0])
    edges = np.clip(np.round(relative * VAD_RATE).astype(np.int64), 0, samples.size)
    energy = np.zeros(len(times))
    speech = np.zeros(len(times))
    for i in range(1, len(times)):
        a, b = edges[i - 1], max(edges[i], edges[i - 1] + 1)
        part = samples[a:b]
        energy[i] = float(np.sqrt(np.mean(part.astype(np.float64) ** 2))) if part.size else 0.0
        window = probs[a // VAD_WINDOW : max(b // VAD_WINDOW, a // VAD_WINDOW + 1)]
        speech[i] = float(window.mean()) if window.size else 0.0
    loudest = max(float(energy.max()), 1e-4)
    activity[1:] = 0.5 * speech[1:] + 0.5 * energy[1:] / loudest
    return activity, float(probs.max())


def face_change(before: np.ndarray, after: np.ndarray, detection: np.ndarray) -> float:
    """How much a face's mouth changed between two frames, beyond how much its eyes did.

    The eye region (centred between the eyes, half the face box wide and a third of it high,
    placed by the `detection` in `before`) is compared with the same region of `after` shifted
    by up to 8 % of the box width either way; the best-matching shift is the head's motion
    (jittery landmarks and head motion do not count). The mouth region (same size, centred on
    the mouth corners) is compared at that shift (refined by one pixel): an opening mouth is not
    explained away by a shift. The eyes move with the head and blink but do not follow speech,
    so their remaining change (sensor noise, lighting, rotation) is subtracted.

    Args:
        before: (H, W, 3) uint8, the earlier frame.
        after: (H, W, 3) uint8, the later frame.
        detection: (15,) the face's row of `FaceCrops.detections` in `before`.

    Returns:
        Mean absolute change of the mouth region minus the eyes', in grey levels (0..255).
    """
    box = detection[BOX]
    height = box[3] - box[1]
    mouth = (detection[MOUTH][:2] + detection[MOUTH][2:]) / 2 + (0.0, 0.05 * height)
    eyes = (detection[EYES][:2] + detection[EYES][2:]) / 2
    reach = max(1, round(0.08 * (box[2] - box[0])))
    eyes_change, (dy, dx) = _region_change(before, after, box, eyes, range(-reach, reach + 1))
    near_y, near_x = range(dy - 1, dy + 2), range(dx - 1, dx + 2)
    mouth_change, _ = _region_change(before, after, box, mouth, near_y, near_x)
    return mouth_change - eyes_change


def _region_change(
    before: np.ndarray,
    after: np.ndarray,
    box: np.ndarray,
    centre: np.ndarray,
    shifts_y: range,
    shifts_x: range | None = None,
) -> tuple[float, tuple[int, int]]:
    """The smallest mean absolute difference (means removed) between the region around
    `centre` in `before` and a shifted copy in `after`, and that shift (dy, dx)."""
    shifts_x = shifts_y if shifts_x is None else shifts_x
    width, height = box[2] - box[0], box[3] - box[1]
    rows, cols = before.shape[:2]
    x1, x2 = int(max(centre[0] - 0.25 * width, 0)), int(min(centre[0] + 0.25 * width, cols))
    y1, y2 = int(max(centre[1] - 0.17 * height, 0)), int(min(centre[1] + 0.17 * height, rows))
    if x2 - x1 < 2 or y2 - y1 < 2:
        return 0.0, (0, 0)
    grey = np.array([0.299, 0.587, 0.114], np.float32)
    first = before[y1:y2, x1:x2].astype(np.float32) @ grey
    first -= first.mean()
    # The grey of every window the shifts reach, converted once.
    top, left = max(y1 + shifts_y[0], 0), max(x1 + shifts_x[0], 0)
    bottom, right = min(y2 + shifts_y[-1], rows), min(x2 + shifts_x[-1], cols)
    around = after[top:bottom, left:right].astype(np.float32) @ grey
    best, at = np.inf, (0, 0)
    for dy in shifts_y:
        for dx in shifts_x:
            if y1 + dy < top or x1 + dx < left or y2 + dy > bottom or x2 + dx > right:
                continue
            moved = around[y1 + dy - top : y2 + dy - top, x1 + dx - left : x2 + dx - left]
            change = float(np.abs(moved - moved.mean() - first).mean())
            if change < best:
                best, at = change, (dy, dx)
    return (0.0 if not np.isfinite(best) else best), at


def track_scores(
    images: list[np.ndarray],
    detections: np.ndarray,
    detection_frames: np.ndarray,
    tracks: np.ndarray,
    activity: np.ndarray,
    rule: SpeakerRule,
) -> dict[int, float]:
    """The score of every candidate track (see the module docstring).

    Args:
        images: T frames (H, W, 3) uint8.
        detections: (D, 15) every face found (`FaceCrops.detections`).
        detection_frames: (D,) the frame of each detection.
        tracks: (D,) the track of each detection (`link_tracks`).
        activity: (T,) from `speech_activity`.
        rule: the selection rule.

    Returns:
        candidate track -> score.
    """
    count = len(images)
    needed = max(2, int(np.ceil(rule.min_presence * count)))
    silent = (activity < rule.silence) & (np.arange(count) > 0)
    scores: dict[int, float] = {}
    for track in np.unique(tracks):
        rows = np.flatnonzero(tracks == track)
        if len(rows) < needed:
            continue
        motion, weight, quiet = [], [], []
        for k in range(1, len(rows)):
            a, b = int(detection_frames[rows[k - 1]]), int(detection_frames[rows[k]])
            if b - a > rule.tracks.max_gap + 1:
                continue
            motion.append(face_change(images[a], images[b], detections[rows[k - 1]]) / (b - a))
            weight.append(float(activity[a + 1 : b + 1].mean()))
            quiet.append(bool(silent[a + 1 : b + 1].all()))
        if not motion:
            continue
        m, w, q = np.asarray(motion), np.asarray(weight), np.asarray(quiet)
        score = float((m * w).sum() / max(w.sum(), 1e-6))
        if int(silent.sum()) >= 2 and q.any():
            score -= float(m[q].mean())
        scores[int(track)] = score
    return scores


def choose_speaker(
    images: list[np.ndarray],
    times: np.ndarray,
    crops: FaceCrops,
    waveform: np.ndarray,
    sample_rate: int,
    rule: SpeakerRule | None = None,
) -> SpeakerChoice:
    """The speaker's track of one utterance (or the fallback to the largest face, and why).

    Args:
        images: T frames (H, W, 3) uint8.
        times: (T,) their times in seconds.
        crops: the largest-face crops and every detection of the frames (`FaceCropper`).
        waveform: (N,) mono samples from the first frame on, at `sample_rate`.
        sample_rate: of `waveform`.
        rule: the selection rule (default: `SpeakerRule()`).
    """
    rule = rule or SpeakerRule()
    detections = crops.detections.numpy().astype(np.float64)
    frames = crops.detection_frames.numpy()
    tracks = link_tracks(detections, frames, rule.tracks)
    count = len(images)

    def choice(track: int, candidates: int, scores: dict[int, float], why: str) -> SpeakerChoice:
        found = len(np.unique(frames[tracks == track])) if track >= 0 else 0
        return SpeakerChoice(track, tracks, candidates, scores, why, found, count)

    if not len(tracks):
        return choice(-1, 0, {}, "no face")
    largest = _largest_track(tracks, frames)
    if count < 2:
        return choice(largest, 1, {}, "too short")
    present = max(2, int(np.ceil(rule.min_presence * count)))
    sizes = np.bincount(tracks)
    if int((sizes >= present).sum()) < 2:
        return choice(largest, int((sizes >= present).sum()), {}, "one face")
    activity, peak = speech_activity(waveform, sample_rate, times)
    scores = track_scores(images, detections, frames, tracks, activity, rule)
    if len(scores) < 2:
        return choice(largest, len(scores), scores, "one face")
    if peak < rule.min_speech:
        return choice(largest, len(scores), scores, "no speech")
    ranked = sorted(scores, key=lambda t: (-scores[t], t))
    best, second = scores[ranked[0]], scores[ranked[1]]
    if best - second < rule.min_gap or best < rule.min_ratio * max(second, 0.0):
        return choice(largest, len(scores), scores, "not separated")
    return choice(ranked[0], len(scores), scores, "")


def _largest_track(tracks: np.ndarray, frames: np.ndarray) -> int:
    """The track holding the largest face in most frames (ties: the lower id)."""
    first = np.ones(len(frames), dtype=bool)
    first[1:] = frames[1:] != frames[:-1]  # detections are largest first within a frame
    return int(np.bincount(tracks[first]).argmax())


def speaker_crops(
    images: list[np.ndarray], crops: FaceCrops, choice: SpeakerChoice, cropper: FaceCropper
) -> FaceCrops:
    """The crops of the chosen track (`crops` itself on a fallback or when there is no choice).

    Args:
        images: the T frames the crops were made from.
        crops: the largest-face crops (`FaceCropper.__call__`).
        choice: from `choose_speaker`.
        cropper: the cropper that made `crops` (same size and margin).

    Returns:
        FaceCrops with faces, found, boxes and landmarks of the chosen face (see the module
        docstring); detections and detection frames unchanged.
    """
    if choice.fallback:
        return crops
    detections = crops.detections.numpy()
    frames = crops.detection_frames.numpy()
    mine = np.flatnonzero(choice.tracks == choice.track)
    first = np.searchsorted(frames, np.arange(len(images)))  # each frame's largest detection
    faces, found = crops.faces.clone(), crops.found.clone()
    boxes, landmarks = crops.boxes.clone(), crops.landmarks.clone()
    for i, image in enumerate(images):
        at = mine[frames[mine] == i]
        held = at.size == 0
        row = int(mine[np.abs(frames[mine] - i).argmin()]) if held else int(at[0])
        if not held and row == first[i]:
            continue  # the largest face is the speaker's: the crop is already there
        box, points = detections[row, BOX], detections[row, 5:15].reshape(5, 2)
        crop = cropper.crop_face(torch.from_numpy(image), box, points)
        if crop is None:
            continue
        faces[i] = crop[0]
        found[i] = not held
        boxes[i] = float("nan") if held else torch.from_numpy(box.astype(np.float32))
        landmarks[i] = float("nan") if held else crop[1]
    return FaceCrops(faces, found, boxes, landmarks, crops.detections, crops.detection_frames)
