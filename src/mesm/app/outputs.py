"""What the page shows, as pure functions of a prediction: probability bars with each emotion's
threshold marked, the FLOPs line, and readable messages for bad uploads.

Nothing here runs a model or imports Gradio; :mod:`mesm.app.analyse` calls these with real
predictions, and the unit tests call them with literal ones.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping
from typing import Any

from mesm.errors import MesmError, PageError

# Bar colours: an emotion decided present (probability above its validation-tuned threshold) is
# drawn solid, one below it pale; the threshold is a black tick across the track.
PRESENT_COLOUR = "#2f7d32"
ABSENT_COLOUR = "#9fb8a0"


def check_request(video: str | None, transcript: str, subtitles: str | None) -> None:
    """Refuses a request before any work: no video, or a clip without a transcript.

    A subtitle file carries the text of a long video, so the transcript box may then be empty.

    Raises:
        PageError: saying what to add.
    """
    if not video:
        raise PageError("No video: upload a video file (or pick one of the examples).")
    if not subtitles and not transcript.strip():
        raise PageError(
            "The transcript is empty: type what is said in the clip (the model reads the words "
            "as well as the face and the voice), or upload a subtitle file for a long video."
        )


def user_message(err: BaseException, names: Mapping[str, str] | None = None) -> str:
    """The message the page shows for a failed request.

    Args:
        err: what the request raised.
        names: temporary upload path -> the name the user knows (the paths are replaced in the
            message, so it names the user's file, not the server's copy).

    Returns:
        One or two sentences; never a traceback. Errors that are not about the input (bugs) say
        only their type and point to the server log.
    """
    text = hide_paths(str(err), names)
    name = next(iter((names or {}).values()), "the video")
    if "has no audio track" in text:
        return (
            f"{name} has no audio track: mesm needs the speech as well as the face. Upload a "
            "video with sound."
        )
    if "cannot open video" in text or "Invalid data found" in text:
        return (
            f"{name} could not be read as a video: the file is damaged or not in a format "
            "ffmpeg can decode."
        )
    if isinstance(err, (MesmError, ValueError, OSError)):
        return text
    return f"Internal error ({type(err).__name__}); the server log has the details."


def hide_paths(text: str, names: Mapping[str, str] | None) -> str:
    """`text` with each server-side upload path replaced by the file name the user knows."""
    for path, name in (names or {}).items():
        text = text.replace(path, name)
    return text


def probability_html(emotions: Mapping[str, Mapping[str, Any]]) -> str:
    """One bar per emotion: its probability, the validation-tuned threshold marked on the track,
    and the decision in words.

    Args:
        emotions: {name: {"probability", "threshold", "present"}} (a prediction's "emotions").

    Returns:
        HTML; each emotion is a ``div.mesm-emotion`` whose ``data-emotion``, ``data-probability``,
        ``data-threshold`` and ``data-present`` attributes carry the values shown.
    """
    rows = []
    for name, e in emotions.items():
        p, t, present = float(e["probability"]), float(e["threshold"]), bool(e["present"])
        colour = PRESENT_COLOUR if present else ABSENT_COLOUR
        decision = "present" if present else "not present"
        label = html.escape(name)
        rows.append(
            f'<div class="mesm-emotion" data-emotion="{label}" data-probability="{p:.6f}" '
            f'data-threshold="{t:.6f}" data-present="{str(present).lower()}" '
            'style="display:flex;align-items:center;gap:0.6em;margin:0.3em 0">'
            f'<span style="width:8em;font-weight:600">{label}</span>'
            '<span style="position:relative;flex:1;height:1.1em;background:#eee;border-radius:3px">'
            f'<span class="mesm-bar" style="position:absolute;left:0;top:0;bottom:0;'
            f'width:{100 * p:.1f}%;background:{colour};border-radius:3px"></span>'
            f'<span class="mesm-threshold" title="threshold {t:.2f}" style="position:absolute;'
            f'left:{100 * t:.1f}%;top:-0.25em;bottom:-0.25em;width:2px;background:#000"></span>'
            "</span>"
            f'<span class="mesm-value" style="width:15em">{p:.3f} '
            f"(threshold {t:.2f}): {decision}</span></div>"
        )
    legend = (
        '<p style="font-size:0.85em;color:#555">Bar: the probability; black tick: the threshold '
        "tuned on the validation split; solid green: above it (decided present).</p>"
    )
    return '<div class="mesm-probabilities">' + "".join(rows) + legend + "</div>"


def prediction_summary(result: Mapping[str, Any], clip_name: str) -> str:
    """Markdown: the most likely emotion, the emotions decided present, what preprocessing found.

    Args:
        result: a :meth:`mesm.inference.predict.Predictor.predict` result.
        clip_name: the uploaded file's name.
    """
    info = result["preprocessing"]
    present = ", ".join(result["present"]) or "none"
    lines = [f"**{clip_name}**"]
    if "top" in result:
        lines.append(f"Most likely: **{result['top']}**.")
    lines.append(f"Decided present (above threshold): {present}.")
    lines.append(
        f"{info['frames']} frames ({info['faces_found']} with a detected face, the rest "
        f"centre-cropped), {info['chunks']} mel chunks; precision {result['precision']}."
    )
    return "  \n".join(lines)


def flops_markdown(model: Mapping[str, Any], fe2e: Mapping[str, Any]) -> str:
    """The FLOPs MESM spent on this clip against FE2E's with the same weights.

    Args:
        model: :func:`mesm.analysis.flops.average_feature_flops` of MESM on the clip.
        fe2e: the same for its dense FE2E twin.

    Returns:
        Markdown: feature-extraction GFLOPs of both, the ratio, and the fraction of sites kept
        per sparse layer.
    """
    ours, dense = model["gflops_per_utterance"], fe2e["gflops_per_utterance"]
    ratio = ours["features"] / dense["features"] if dense["features"] else float("nan")
    kept = ", ".join(f"{layer} {fraction:.0%}" for layer, fraction in model["sites_kept"].items())
    return (
        f"**FLOPs on this clip** (visual + audio feature extraction, p = {model['p']:g}): "
        f"MESM {ours['features']:.4f} GFLOPs (+ {ours['attention']:.4f} for the attention) vs "
        f"FE2E {dense['features']:.4f} GFLOPs with the same weights: **{ratio:.2f}x**.  \n"
        f"Sites kept per sparse layer: {kept or 'none'}."
    )


def regions_markdown(regions: Mapping[str, Any]) -> str:
    """One clip's kept sites per facial region, per sparse layer, against the region's area.

    Args:
        regions: the "regions" entry of :func:`mesm.analysis.attention_maps.explain_batch`.

    Returns:
        Markdown: a table (region × layer: share of kept sites, share of the area), and how many
        frames had no found face (they have no regions); "" when no frame had landmarks.
    """
    layers = [entry for entry in regions.get("visual", []) if entry["frames"]]
    if not layers:
        return ""
    head = " | ".join(f"layer {e['layer']} ({e['map']})" for e in layers)
    lines = [
        "_Where the kept sites fall on the face_ (share of kept sites / share of the area):",
        "",
        f"| region | {head} |",
        "|---|" + "---|" * len(layers),
    ]
    for name in layers[0]["shares"]:
        cells = []
        for entry in layers:
            v = entry["shares"][name]
            cells.append(f"{v['kept']:.0%} / {v['area']:.0%}" if v["kept"] is not None else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    excluded = layers[0]["excluded"]
    if excluded:
        lines.append("")
        lines.append(f"{excluded} frame(s) without a found face are not counted.")
    return "\n".join(lines)


def display_name(path: str | os.PathLike | None) -> str:
    """The file name a user recognises (Gradio keeps the uploaded name as the last component)."""
    return os.path.basename(os.fspath(path)) if path else ""
