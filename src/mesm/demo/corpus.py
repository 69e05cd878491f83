"""A small synthetic emotion corpus in the on-disk format of a real dataset (for `mesm demo`).

Each utterance has one of four emotions and three cues, each of which separates only two groups
of emotions, so no single modality suffices:

=========  ==========================================  =====================================
modality   cue                                         emotions it separates
=========  ==========================================  =====================================
visual     expression of a real face (a photograph,   happiness | anger, neutral | sadness
           warped): smile + raised brows / flat
           mouth / frown + sad brows
audio      prosody: loud, high and fast syllables vs   anger, happiness | neutral, sadness
           soft, low and slow ones
text       wording: negative vs non-negative phrases   anger, sadness | happiness, neutral
=========  ==========================================  =====================================

Visual and audio together identify every emotion; text adds redundancy. With probability
``noise`` each cue of an utterance is drawn for a random other emotion instead (ambiguity), and
every clip varies in length, head pose and size, lighting, expression strength, pitch and wording.

The face is scikit-image's ``astronaut`` photograph (it ships with a dependency), so MTCNN finds
it (the tests ask for >= 95 % of frames; `mesm demo` reports the rate) and the attention maps sit
on a real face. The expression is a piecewise-affine warp
of the mouth and brow regions (`skimage.transform.PiecewiseAffineTransform` between landmark
positions), applied as a displacement field whose strength varies per clip; pose, scale and
lighting are jittered per clip and a little per frame. The face talks: its mouth opens with the
loudness of the clip's voice (as in real recordings, where the speaker's mouth moves). Speakers
0, 2 and 4 show this face, speakers 1 and 3 a second one made from it (mirrored, another skin,
hair and background): the two people of the two-person video.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from mesm.data.manifest import DatasetInfo, Record, write_dataset
from mesm.demo.synthetic import write_video, write_wav
from mesm.files import atomic_write_text

EMOTIONS = ("anger", "happiness", "neutral", "sadness")
_MOUTH = {"anger": 0.0, "happiness": 1.0, "neutral": 0.0, "sadness": -1.0}  # curvature sign
_AROUSED = {"anger": True, "happiness": True, "neutral": False, "sadness": False}
_NEGATIVE = {"anger": True, "happiness": False, "neutral": False, "sadness": True}
_SPEAKERS = tuple(f"speaker{k}" for k in range(5))  # utterance i: speaker i % 5
_NEGATIVE_PHRASES = (
    "I can't believe this happened again",
    "this is the worst day I have had",
    "nobody ever listens to what I say",
    "I am so tired of all of this",
    "why does everything go wrong for me",
    "that was a terrible thing to do",
    "I never wanted any of this",
    "it hurts every time I think about it",
)
_OTHER_PHRASES = (
    "we could meet at the station at noon",
    "that sounds like a lovely plan to me",
    "the report is on the desk by the window",
    "thank you for bringing the books back",
    "I think we should take the early train",
    "let us see what the weather is like",
    "my sister is visiting next weekend",
    "the new cafe on the corner is open",
)


# The photograph: scikit-image's `astronaut` (Eileen Collins, NASA; public domain), 512x512.
# Landmarks (x, y) in its pixels, measured once with MTCNN (eyes, nose, mouth corners) and by eye
# (lips, brows, chin); `tests/data/test_demo_corpus.py` checks the MTCNN ones.
_CROP = (124, 20, 200)  # left, top, side of the square around the face
_WORK = 160  # the crop is resampled to this side before warping
_LANDMARKS = {
    "mouth_left": (202, 139),
    "mouth_right": (245, 142),
    "upper_lip": (224, 137),
    "lower_lip": (224, 151),
    "brow_left_outer": (194, 91),
    "brow_left_inner": (215, 90),
    "brow_right_inner": (235, 91),
    "brow_right_outer": (257, 94),
    "eye_left": (205, 102),
    "eye_right": (247, 104),
    "nose": (225, 129),
    "chin": (224, 170),
}
# Displacement (dx, dy) in photo pixels of each moving landmark for expression +1 (more smile,
# raised brows) and -1 (frown, inner brows raised as in sadness); 0 flattens the photo's own
# smile. The face is ~87 px wide, so mouth corners move by up to ~10 % of it.
_EXPRESSION_MOVES = {
    1.0: {
        "mouth_left": (-2, -4),
        "mouth_right": (2, -4),
        "lower_lip": (0, 2),
        "brow_left_outer": (0, -3),
        "brow_left_inner": (0, -3),
        "brow_right_inner": (0, -3),
        "brow_right_outer": (0, -3),
    },
    0.0: {"mouth_left": (1, 4), "mouth_right": (-1, 4), "lower_lip": (0, -2)},
    -1.0: {
        "mouth_left": (2, 10),
        "mouth_right": (-2, 10),
        "upper_lip": (0, 1),
        "lower_lip": (0, -1),
        "brow_left_inner": (1, -4),
        "brow_right_inner": (-1, -4),
        "brow_left_outer": (0, 2),
        "brow_right_outer": (0, 2),
    },
}


# The mouth of a talking face at full loudness (photo pixels): jaw and lower lip down.
_OPEN_MOVES = {"lower_lip": (0, 18), "chin": (0, 14), "mouth_left": (1, 3), "mouth_right": (-1, 3)}


@functools.lru_cache(maxsize=1)
def _photo() -> np.ndarray:
    """The face crop of the photograph, (_WORK, _WORK, 3) float32 in 0..255."""
    from skimage import data
    from skimage.transform import resize

    left, top, side = _CROP
    crop = data.astronaut()[top : top + side, left : left + side].astype(np.float32)
    return resize(crop, (_WORK, _WORK), anti_aliasing=True, preserve_range=True).astype(np.float32)


def _to_work(points: np.ndarray) -> np.ndarray:
    left, top, side = _CROP
    return (points - (left, top)) * (_WORK / side)


@functools.lru_cache(maxsize=4)
def _expression_field(expression: float) -> np.ndarray:
    """Piecewise-affine warp of the crop for one expression, as a displacement field.

    Returns:
        (2, _WORK, _WORK) float32: for each output pixel (row, col), the offset to add to its own
        coordinates to find the source pixel. Scaling the field scales the expression.
    """
    return _warp_field(_EXPRESSION_MOVES[expression])


@functools.lru_cache(maxsize=1)
def _open_field() -> np.ndarray:
    """The displacement field of an open mouth (lower lip and chin down), as `_expression_field`:
    scaled per frame by the loudness of the speech, it makes a face talk."""
    return _warp_field(_OPEN_MOVES)


def _warp_field(moves: dict[str, tuple[float, float]]) -> np.ndarray:
    """The displacement field (2, _WORK, _WORK) moving the named landmarks by `moves`."""
    from skimage.transform import PiecewiseAffineTransform

    names = list(_LANDMARKS)
    src = _to_work(np.array([_LANDMARKS[n] for n in names], dtype=np.float64))
    dst = src + np.array([moves.get(n, (0, 0)) for n in names]) * (_WORK / _CROP[2])
    # Fixed anchors: the crop's border and a ring around the face keep the rest in place.
    edge = np.linspace(0, _WORK - 1, 6)
    border = [(x, y) for x in edge for y in edge if x in (0, _WORK - 1) or y in (0, _WORK - 1)]
    centre = _to_work(np.array([[225.0, 125.0]]))[0]
    ring = [centre + 52 * np.array([np.cos(t), 1.2 * np.sin(t)]) for t in np.linspace(0, 6.2, 10)]
    anchors = np.array(border + ring)
    # The map goes from output (warped) positions to source positions.
    moved, fixed = np.vstack([anchors, dst]), np.vstack([anchors, src])
    if hasattr(PiecewiseAffineTransform, "from_estimate"):  # scikit-image >= 0.26
        warp = PiecewiseAffineTransform.from_estimate(moved, fixed)
    else:  # pragma: no cover - older scikit-image
        warp = PiecewiseAffineTransform()
        warp.estimate(moved, fixed)
    rows, cols = np.mgrid[0:_WORK, 0:_WORK].astype(np.float64)
    source = warp(np.column_stack([cols.ravel(), rows.ravel()]))  # (x, y) per output pixel
    field = np.stack([source[:, 1] - rows.ravel(), source[:, 0] - cols.ravel()])
    return np.nan_to_num(field).reshape(2, _WORK, _WORK).astype(np.float32)


def _face(
    expression: float,
    count: int,
    rng: np.random.Generator,
    size: int = 96,
    *,
    photo: np.ndarray | None = None,
    openings: np.ndarray | None = None,
) -> np.ndarray:
    """(count, size, size, 3) uint8 frames of a photographed face with the given expression.

    The expression (+1 smile, 0 flat, -1 frown) is a piecewise-affine warp of the mouth and brow
    regions, its strength varied per clip (x 0.7-1.3); each clip gets its own pose (rotation
    +-12 degrees, scale 0.85-1.1, offset, mirror image), lighting and colour, and each frame a
    little head motion and sensor noise.

    Args:
        photo: the face (`_photo`, the default, or `_second_photo`).
        openings: (count,) mouth openings 0..1 per frame (`_openings` of the clip's voice: the
            face talks), rounded to tenths; None keeps the mouth closed.
    """
    photo = _photo() if photo is None else photo
    strength = rng.uniform(0.7, 1.3)
    mirror = rng.uniform() < 0.5
    gain = rng.uniform(0.75, 1.15) * rng.uniform(0.9, 1.1, 3)
    pose = (rng.uniform(-12, 12), rng.uniform(0.85, 1.1), rng.uniform(-0.08, 0.08, 2) * _WORK)
    warped: dict[float, np.ndarray] = {}  # per mouth opening: a clip holds at most 11
    frames = np.empty((count, size, size, 3), dtype=np.uint8)
    for i in range(count):
        opening = 0.0 if openings is None else round(float(openings[i]), 1)
        if opening not in warped:
            face = _talking_face(photo, expression, strength, opening)
            warped[opening] = face[:, ::-1] if mirror else face
        frames[i] = _posed(warped[opening], pose, gain, i, rng, size)
    return frames


def _posed(
    warped: np.ndarray,
    pose: tuple[float, float, np.ndarray],
    gain: np.ndarray,
    i: int,
    rng: np.random.Generator,
    size: int,
    sway: float = 2.0,
) -> np.ndarray:
    """Frame i of a face: the (warped) work image under its pose (angle in degrees, scale,
    shift) plus a little head motion (rotation up to `sway` degrees), lighting `gain` and sensor
    noise; (size, size, 3) uint8."""
    from scipy.ndimage import map_coordinates

    angle0, scale0, shift0 = pose
    out_r, out_c = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = np.deg2rad(angle0 + sway * np.sin(0.7 * i + rng.uniform(0, 0.5)))
    scale = scale0 * (1 + 0.02 * np.sin(0.5 * i))
    shift = shift0 + rng.uniform(-1.5, 1.5, 2)
    # Output pixel -> work-image pixel: undo the pose about the centres.
    y = (out_r - size / 2) * (_WORK / size) / scale
    x = (out_c - size / 2) * (_WORK / size) / scale
    src_r = np.cos(angle) * y - np.sin(angle) * x + _WORK / 2 + shift[0]
    src_c = np.sin(angle) * y + np.cos(angle) * x + _WORK / 2 + shift[1]
    img = np.stack(
        [
            map_coordinates(warped[..., c], [src_r, src_c], order=1, mode="nearest")
            for c in range(3)
        ],
        axis=-1,
    )
    img = img * gain + rng.normal(0, 3, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _voice(
    aroused: bool,
    seconds: float,
    rng: np.random.Generator,
    sr: int = 16000,
    *,
    irregular: bool = False,
) -> np.ndarray:
    """Harmonic "speech" whose pitch, loudness and syllable rate follow arousal; `irregular`
    syllables come at a wandering rate (±40 %), as in real speech, rather than like clockwork
    (a mouth that follows clockwork syllables looks still when sampled at a multiple of their
    period)."""
    n = round(seconds * sr)
    t = np.arange(n) / sr
    if aroused:
        f0, rate, amplitude = rng.uniform(210, 270), rng.uniform(5, 6.5), rng.uniform(0.45, 0.6)
    else:
        f0, rate, amplitude = rng.uniform(95, 135), rng.uniform(2, 3), rng.uniform(0.12, 0.2)
    pitch = f0 * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(0.4, 0.9) * t))
    phase = 2 * np.pi * np.cumsum(pitch) / sr
    voice = sum(np.sin(h * phase) / h for h in range(1, 9))
    syllables = 2 * np.pi * rate * t + rng.uniform(0, 6)
    if irregular:
        wander = 0.4 * np.sin(2 * np.pi * rng.uniform(0.3, 0.6) * t + rng.uniform(0, 6))
        syllables = 2 * np.pi * rate * np.cumsum(1 + wander) / sr + syllables[0]
    envelope = np.clip(np.sin(syllables), 0, None) ** 1.5
    signal = amplitude * voice * envelope / 2 + 0.01 * rng.standard_normal(n)
    return np.clip(signal, -1, 1).astype(np.float32)


def _cue(emotion: str, rng: np.random.Generator, noise: float) -> str:
    """The emotion one cue of an utterance shows: with probability `noise` another one."""
    if rng.uniform() < noise:
        return str(rng.choice([e for e in EMOTIONS if e != emotion]))
    return emotion


def _write_with_subtitles(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray,
    cues: list[tuple[float, float, str]],
) -> tuple[Path, Path]:
    """The video (with its audio track) and an SRT file beside it (same name) of the cues
    (start s, end s, text)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, frames, fps, audio.astype(np.float32))
    srt = path.with_suffix(".srt")
    atomic_write_text(
        srt,
        "".join(
            f"{i}\n{srt_time(a)} --> {srt_time(b)}\n{text}\n\n"
            for i, (a, b, text) in enumerate(cues, start=1)
        ),
    )
    return path, srt


def _utterance(
    emotion: str,
    rng: np.random.Generator,
    noise: float,
    fps: float,
    duration: tuple[float, float],
    photo: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, str]:
    """One utterance: (frames (T, 96, 96, 3) uint8, 16 kHz audio (N,), transcript). The face
    (`photo`, default `_photo`) talks: its mouth opens with the loudness of the voice."""

    def cue(emotion: str) -> str:
        return _cue(emotion, rng, noise)

    seconds = float(np.round(rng.uniform(*duration), 2))
    count = max(1, round(seconds * fps))
    expression = _MOUTH[cue(emotion)]
    audio = _voice(_AROUSED[cue(emotion)], seconds, rng)
    frames = _face(expression, count, rng, photo=photo, openings=_openings(audio, count))
    phrases = _NEGATIVE_PHRASES if _NEGATIVE[cue(emotion)] else _OTHER_PHRASES
    return frames, audio, str(rng.choice(phrases))


def write_demo_corpus(
    out_dir: str | os.PathLike,
    num_utterances: int = 240,
    *,
    noise: float = 0.15,
    fps: float = 10,
    duration: tuple[float, float] = (1.6, 2.6),
    split_fractions: tuple[float, float] = (0.6, 0.2),
    seed: int = 0,
) -> tuple[DatasetInfo, list[Record]]:
    """Writes the corpus (mp4 clips, some with a separate WAV, transcripts, labels, splits).

    Args:
        out_dir: the dataset folder to create.
        num_utterances: number of clips (emotions balanced, order shuffled).
        noise: probability that each cue of an utterance follows a random other emotion.
        fps: video frame rate.
        duration: range of clip lengths in seconds.
        split_fractions: train and valid fractions (test gets the rest).
        seed: everything is reproducible from it.

    Returns:
        The header and the records (also written as dataset.json + manifest.jsonl).
    """
    if not 0 <= noise < 1:
        raise ValueError(f"noise must be in [0, 1), got {noise}")
    out = Path(out_dir)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    emotions = [EMOTIONS[i % len(EMOTIONS)] for i in range(num_utterances)]
    rng.shuffle(emotions)
    n_train = round(split_fractions[0] * num_utterances)
    n_valid = round(split_fractions[1] * num_utterances)

    records = []
    for i, emotion in enumerate(emotions):
        uid = f"demo{i:04d}"
        photo = _PHOTOS[i % len(_SPEAKERS) % 2]()  # speakers 0, 2, 4: the demo's face
        frames, audio, text = _utterance(emotion, rng, noise, fps, duration, photo)
        embedded = i % 2 == 0  # half the clips carry their audio track, half a separate WAV
        write_video(out / "clips" / f"{uid}.mp4", frames, fps, audio if embedded else None)
        if not embedded:
            write_wav(out / "clips" / f"{uid}.wav", audio)
        split = "train" if i < n_train else "valid" if i < n_train + n_valid else "test"
        records.append(
            Record(
                id=uid,
                video=f"clips/{uid}.mp4",
                audio=None if embedded else f"clips/{uid}.wav",
                text=text,
                labels=(emotion,),
                speaker=_SPEAKERS[i % len(_SPEAKERS)],
                split=split,
            )
        )
    info = DatasetInfo(
        name="mesm-demo",
        task="single_label",
        label_names=EMOTIONS,
        prepare={"generator": "mesm.demo.corpus", "seed": seed, "noise": noise, "fps": fps},
    )
    write_dataset(out, info, records)
    return info, records


def write_demo_video(
    path: str | os.PathLike,
    emotions: list[str],
    *,
    noise: float = 0.15,
    fps: float = 10,
    duration: tuple[float, float] = (1.6, 2.6),
    pause: tuple[float, float] = (0.8, 1.6),
    seed: int = 1,
) -> tuple[Path, Path]:
    """A longer video of the demo's utterances one after the other, and its subtitles.

    Utterance i expresses ``emotions[i]`` with the corpus's cues (and noise); between utterances
    the last frame is held and the audio is near-silent for a pause drawn from `pause` seconds.
    The subtitle file (same name, ``.srt``) has one cue per utterance: its span and transcript.

    Returns:
        (the video, the subtitle file).
    """
    rng = np.random.default_rng(seed)
    sample_rate = 16000
    frames, audio, cues = [], [], []
    t = 0.0
    for emotion in emotions:
        gap = float(rng.uniform(*pause))
        held = frames[-1][-1:] if frames else _face(0.0, 1, rng)
        frames.append(np.repeat(held, round(gap * fps), axis=0))
        audio.append(0.005 * rng.standard_normal(round(gap * fps) * sample_rate // round(fps)))
        t += round(gap * fps) / fps
        clip, voice, text = _utterance(emotion, rng, noise, fps, duration)
        length = clip.shape[0] / fps  # whole frames, so audio and video stay in step
        voice = np.pad(voice, (0, max(0, round(length * sample_rate) - voice.size)))
        frames.append(clip)
        audio.append(voice[: round(length * sample_rate)])
        cues.append((t, t + length, text))
        t += length
    return _write_with_subtitles(path, np.concatenate(frames), fps, np.concatenate(audio), cues)


def srt_time(seconds: float) -> str:
    """An SRT timestamp, HH:MM:SS,mmm."""
    ms = round(seconds * 1000)
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


# The two-person video: the demo's face on the left (larger), a second face on the right.
_TILES = (160, 128)  # face tile sides (pixels); the frame is 160 x 300
_FRAME = (160, 300)
_LEFT = (0, 168)  # x of each tile; the smaller tile is centred vertically
# What a turn's subtitle says: who speaks (as subtitles for the hard of hearing do). No words, so
# the text modality carries no emotion and the face the model reads matters.
_SPEAKER_TAGS = ("[left]", "[right]")


@functools.lru_cache(maxsize=1)
def _second_photo() -> np.ndarray:
    """A second, distinct face built from the same photograph: mirrored, with a darker and
    warmer skin, darker hair and a greener background (the expression warps still fit its
    landmarks: the face is symmetric enough about the crop's centre line). (_WORK, _WORK, 3)
    float32."""
    photo = _photo()[:, ::-1]
    tone = np.array([0.78, 0.62, 0.52], np.float32)
    shifted = photo * tone + np.array([18, 8, 2], np.float32)
    # Lighter pixels (the background, the highlights) lean green, the dark hair darker still.
    light = np.clip((photo.mean(axis=-1, keepdims=True) - 150) / 100, 0, 1)
    shifted = shifted * (1 - light) + light * np.array([150, 190, 140], np.float32)
    return np.clip(shifted, 0, 255).astype(np.float32)


# The corpus's speaker k shows face k % 2 (the demo's, the second): both people of the two-person
# video are faces the models have seen.
_PHOTOS = (_photo, _second_photo)


def _talking_face(
    photo: np.ndarray, expression: float, strength: float, opening: float
) -> np.ndarray:
    """`photo` with an expression (strength-scaled) and the mouth `opening` (0..1) applied."""
    from scipy.ndimage import map_coordinates

    rows, cols = np.mgrid[0:_WORK, 0:_WORK].astype(np.float32)
    field = _expression_field(float(expression)) * strength + _open_field() * opening
    return np.stack(
        [
            map_coordinates(
                photo[..., c], [rows + field[0], cols + field[1]], order=1, mode="nearest"
            )
            for c in range(3)
        ],
        axis=-1,
    )


def _openings(voice: np.ndarray, count: int, sample_rate: int = 16000) -> np.ndarray:
    """(count,) mouth openings 0..1 following the loudness of `voice`: its RMS over the 50 ms
    around the start of each of `count` video frames (a syllable is shorter than a frame),
    relative to the turn's loud moments (its 90th percentile)."""
    width = round(0.05 * sample_rate)
    starts = np.linspace(0, voice.size, count, endpoint=False).astype(int)
    rms = np.array(
        [np.sqrt(np.mean(voice[max(a - width // 2, 0) : a + width] ** 2)) for a in starts]
    )
    # The square root: soft syllables part the lips too (a calm voice is not a closed mouth).
    return np.sqrt(np.clip(rms / max(float(np.percentile(rms, 90)), 1e-6), 0, 1))


def write_two_person_video(
    path: str | os.PathLike,
    turns: list[tuple[int, str]],
    *,
    noise: float = 0.15,
    fps: float = 10,
    duration: tuple[float, float] = (1.6, 2.6),
    pause: tuple[float, float] = (0.5, 1.0),
    seed: int = 2,
) -> tuple[Path, Path, list[dict]]:
    """Two people side by side speaking in turns, and the turns' subtitles.

    The left person is the demo's face (`_photo`), larger; the right one a second face built
    from the same photograph (`_second_photo`). In each turn one person speaks (the corpus's
    voice for the turn's emotion, the mouth opening with its loudness) and shows that emotion;
    the other listens, silent, mouth still, keeping the expression of their own last turn
    (neutral before it). Turns are separated by a near-silent pause. The face and voice cues
    follow the corpus (with `noise`); each turn's subtitle names the speaker and holds no words
    (the text modality carries no emotion). The largest face is the listener's in every turn of
    the right person.

    Args:
        path: the video to write (its subtitles: the same name with ``.srt``).
        turns: (person 0 = left or 1 = right, emotion) per turn.

    Returns:
        (the video, the subtitle file, per turn {"start", "end", "speaker", "emotion", "text"}).
    """
    rng = np.random.default_rng(seed)
    sample_rate = 16000
    photos = (_photo(), _second_photo())
    poses = [
        (rng.uniform(-6, 6), rng.uniform(0.9, 1.05), rng.uniform(-0.04, 0.04, 2) * _WORK)
        for _ in photos
    ]
    gains = [rng.uniform(0.9, 1.1) * rng.uniform(0.95, 1.05, 3) for _ in photos]
    state = [(0.0, 1.0), (0.0, 1.0)]  # each person's (expression, strength)
    frames: list[np.ndarray] = []
    audio: list[np.ndarray] = []
    out: list[dict] = []

    faces: dict[tuple, np.ndarray] = {}  # a still face is warped once

    def shoot(openings: list[np.ndarray]) -> None:
        for k in range(len(openings[0])):
            frame = np.full((*_FRAME, 3), 96, dtype=np.uint8)
            for person, side in enumerate(_TILES):
                key = (person, *state[person], float(openings[person][k]))
                if key not in faces:
                    if len(faces) > 8:
                        faces.clear()
                    faces[key] = _talking_face(photos[person], *key[1:])
                face = faces[key]
                # A calmer head than a clip's (people sit still in a conversation).
                tile = _posed(face, poses[person], gains[person], len(frames), rng, side, 1.0)
                top = (_FRAME[0] - side) // 2
                frame[top : top + side, _LEFT[person] : _LEFT[person] + side] = tile
            frames.append(frame)

    t = 0.0
    for speaker, emotion in turns:
        gap = round(float(rng.uniform(*pause)) * fps)
        shoot([np.zeros(gap), np.zeros(gap)])
        audio.append(0.005 * rng.standard_normal(gap * sample_rate // round(fps)))
        t += gap / fps

        seconds = float(np.round(rng.uniform(*duration), 2))
        count = max(1, round(seconds * fps))
        state[speaker] = (_MOUTH[_cue(emotion, rng, noise)], float(rng.uniform(0.7, 1.3)))
        # Exactly count / fps seconds of voice: audio and video stay in step.
        voice = _voice(_AROUSED[_cue(emotion, rng, noise)], count / fps, rng, irregular=True)
        _cue(emotion, rng, noise)  # the corpus draws the wording's cue here; the subtitle only
        # names the speaker
        openings = [np.zeros(count), np.zeros(count)]
        openings[speaker] = _openings(voice, count, sample_rate)
        shoot(openings)
        audio.append(voice)
        out.append(
            {
                "start": t,
                "end": t + count / fps,
                "speaker": speaker,
                "emotion": emotion,
                "text": _SPEAKER_TAGS[speaker],
            }
        )
        t += count / fps
    cues = [(turn["start"], turn["end"], turn["text"]) for turn in out]
    video, srt = _write_with_subtitles(path, np.stack(frames), fps, np.concatenate(audio), cues)
    return video, srt, out


def person_at(x: float) -> int:
    """Which person of the two-person video a box centred at x (pixels) belongs to."""
    return 0 if x < (_LEFT[0] + _TILES[0] + _LEFT[1]) / 2 else 1
