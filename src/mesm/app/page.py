"""The Gradio page around :class:`mesm.app.analyse.ClipAnalyser`, and `serve` (``mesm serve``).

Gradio is imported inside :func:`build_page` / :func:`serve` only, so importing this module (or
any of mesm) works without the ``app`` extra. Requests are queued and run one at a time: there is
one model, and drawing the attention registers hooks on it.

Uploads: `serve` gives Gradio a folder of its own for them (``GRADIO_TEMP_DIR``), limits their size
(``max_upload_mb``: a larger file is refused by the server with a message naming the limit),
deletes those older than `UPLOAD_MAX_AGE` seconds as it runs (Gradio's ``delete_cache``: an upload
is kept that long so the same video can be analysed again with another transcript), and deletes
the folder when it stops.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mesm.app.analyse import ClipAnalyser, dataset_examples
from mesm.errors import MissingExtraError, ServeError
from mesm.trained.precision import Precision

INSTALL_HINT = 'the web page needs the app extra: pip install "mesm[app]"'
SUBTITLE_TYPES = [".srt", ".vtt", ".ass", ".ssa", ".sub"]
DEFAULT_MAX_UPLOAD_MB = 1024
UPLOAD_MAX_AGE = 3600  # seconds an upload is kept while the server runs
UPLOAD_SWEEP_EVERY = 600  # seconds between two deletions of the old uploads

_INTRO = """# mesm: emotions in a video
Upload a short clip and type what is said in it, then **Recognise emotions**: each emotion's
probability, with the threshold tuned on the validation split marked. For a long video, upload its
subtitle file (each cue is an utterance with its text) or leave it out (utterances are found by
voice activity, without text): the page draws the emotion timeline and offers it as CSV."""


def import_gradio() -> Any:
    """The ``gradio`` module, or a one-line error naming the extra to install."""
    try:
        import gradio
    except ImportError as err:
        raise MissingExtraError(f"{INSTALL_HINT} ({err})") from None
    return gradio


def build_page(analyser: ClipAnalyser, examples: Sequence[tuple[str, str]] = ()) -> Any:
    """The page: a video, a transcript box and a subtitle file in; the analyser's outputs out.

    Args:
        analyser: the loaded checkpoint.
        examples: (video, transcript) pairs offered under the inputs.

    Returns:
        A ``gradio.Blocks`` with its queue set (one request at a time); not launched.
    """
    gr = import_gradio()
    with gr.Blocks(
        title="mesm",
        analytics_enabled=False,
        delete_cache=(UPLOAD_SWEEP_EVERY, UPLOAD_MAX_AGE),
    ) as page:
        gr.Markdown(_INTRO)
        with gr.Row():
            with gr.Column(scale=2):
                video = gr.Video(label="Video", sources=["upload"], elem_id="mesm-video")
                transcript = gr.Textbox(
                    label="Transcript (what is said in the clip)",
                    lines=2,
                    elem_id="mesm-transcript",
                )
                subtitles = gr.File(
                    label="Subtitle file for a long video (SRT, WebVTT, ASS); optional",
                    file_types=SUBTITLE_TYPES,
                    elem_id="mesm-subtitles",
                )
                face = gr.Radio(
                    choices=[
                        ("the speaker's (whole videos) / the model's rule (clips)", "auto"),
                        ("the speaker's", "speaker"),
                        ("the largest", "largest"),
                    ],
                    value="auto",
                    label="Face read when several people are on screen",
                    elem_id="mesm-face",
                )
                run = gr.Button("Recognise emotions", variant="primary", elem_id="mesm-run")
                if examples:
                    gr.Examples(
                        examples=[[clip, text] for clip, text in examples],
                        inputs=[video, transcript],
                        label="Examples (the demo's test clips)",
                    )
            with gr.Column(scale=3):
                message = gr.Markdown(elem_id="mesm-message")
                probabilities = gr.HTML(elem_id="mesm-probabilities")
                flops = gr.Markdown(elem_id="mesm-flops", visible=analyser.is_mesm)
                attention = gr.Image(
                    label="MESM's attention: faces and mel chunks, heat-map and kept positions "
                    "(green) per sparse layer",
                    type="filepath",
                    interactive=False,
                    elem_id="mesm-attention",
                    visible=analyser.is_mesm,
                )
        with gr.Row():
            timeline_plot = gr.Image(
                label="Timeline (long videos)",
                type="filepath",
                interactive=False,
                elem_id="mesm-timeline",
            )
        timeline_csv = gr.File(label="Timeline CSV", interactive=False, elem_id="mesm-csv")
        faces = gr.Image(
            label="The face read in some segments (green: the speaker's; orange: the largest, "
            "kept where the speaker could not be told apart)",
            type="filepath",
            interactive=False,
            elem_id="mesm-faces",
        )

        def respond(video_path, text, subtitle_path, face_choice):
            choice = None if face_choice == "auto" else face_choice
            return analyser.analyse(video_path, text or "", subtitle_path, choice).values()

        run.click(
            respond,
            inputs=[video, transcript, subtitles, face],
            outputs=[message, probabilities, flops, attention, timeline_plot, timeline_csv, faces],
            api_name="analyse",
        )
    page.queue(default_concurrency_limit=1)
    return page


def serve(
    checkpoint: str | os.PathLike,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    examples: str | os.PathLike | None = None,
    device: str = "cpu",
    precision: str | Precision = "auto",
    share: bool = False,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
) -> None:
    """Load `checkpoint` once and serve the page until interrupted (Ctrl+C or SIGTERM); the
    uploads are deleted when it stops (see the module docstring).

    Args:
        checkpoint: a ``.safetensors`` checkpoint, a model folder or a hub repo id.
        host: the address to bind (default: this machine only).
        port: the TCP port.
        examples: a dataset folder whose test clips are offered as examples (e.g. the demo's).
        device: where the model runs.
        precision: numeric precision.
        share: also open a public Gradio share link (off by default; needs the internet).
        max_upload_mb: the largest upload accepted, in MB (10^6 bytes).
    """
    if not 0 < max_upload_mb < math.inf:
        raise ServeError(f"the upload limit must be a number of MB > 0, got {max_upload_mb}")
    import_gradio()  # before the slow checkpoint load: a missing extra fails at once
    check_port(host, port)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    analyser = ClipAnalyser(checkpoint, device=device, precision=precision)
    pairs = dataset_examples(examples) if examples is not None else []
    uploads = Path(tempfile.mkdtemp(prefix="mesm-serve-uploads-"))
    previous_dir = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(uploads)  # read by Gradio when the page is built
    page = build_page(analyser, pairs)
    allowed = sorted({str(Path(clip).parent) for clip, _ in pairs})
    # SIGTERM (a service manager, a test) stops the server like Ctrl+C: Gradio closes its
    # server on KeyboardInterrupt, then the request folder is removed.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    print(f"mesm serve: {checkpoint} on http://{host}:{port} (Ctrl+C stops)", flush=True)
    try:
        page.launch(
            server_name=host,
            server_port=port,
            share=share,
            allowed_paths=allowed,
            ssr_mode=False,
            show_error=False,
            quiet=True,
            max_file_size=int(max_upload_mb * 1_000_000),
        )
    except OSError as err:  # taken since check_port looked
        raise ServeError(f"cannot listen on {host}:{port}: {err}") from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(analyser.work_dir, ignore_errors=True)
        shutil.rmtree(uploads, ignore_errors=True)
        if previous_dir is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = previous_dir
        print("mesm serve: stopped", flush=True)


def check_port(host: str, port: int) -> None:
    """Fails at once, with one line, when `host`:`port` cannot be bound (taken, or no such
    address), rather than after the checkpoint has loaded."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
            probe.bind(address)
    except OSError as err:
        raise ServeError(
            f"cannot listen on {host}:{port} ({err.strerror or err}); choose another --port"
        ) from None


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
