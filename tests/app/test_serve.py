"""`mesm serve` without a browser: the extra is optional, and the page is built from the
analyser's components."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import require_module
from mesm.app.page import serve
from mesm.errors import ServeError

SRC = Path(__file__).resolve().parents[2] / "src"


def _python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )


def test_mesm_works_without_gradio_and_serve_names_the_extra(mesm_checkpoint):
    # sys.modules["gradio"] = None makes `import gradio` fail as if it were not installed; the
    # modules of mesm, the app's included, import without it.
    code = (
        "import sys; sys.modules['gradio'] = None\n"
        "import mesm.cli, mesm.app.page, mesm.app.analyse, mesm.app.outputs, mesm.demo.pipeline\n"
        "assert not [m for m in sys.modules if m.startswith('gradio.')], 'gradio imported'\n"
        "from mesm.cli import main\n"
        f"sys.exit(main(['serve', '--checkpoint', {str(mesm_checkpoint)!r}]))\n"
    )
    done = _python(code)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [
        'mesm serve: error: the web page needs the app extra: pip install "mesm[app]" '
        "(import of gradio halted; None in sys.modules)"
    ]


def test_a_taken_port_is_one_line_before_the_model_loads(tmp_path):
    require_module("gradio", "the app extra (gradio) is not installed")
    from mesm.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # The checkpoint does not exist: the port is checked first, so that is never noticed.
        with pytest.raises(ServeError, match=f"cannot listen on 127.0.0.1:{port}"):
            serve(tmp_path / "missing.safetensors", port=port)
        assert main(["serve", "--checkpoint", "x.safetensors", "--port", str(port)]) == 1


def test_serve_defaults_to_localhost_without_share_link():
    from mesm.cli import build_parser

    args = build_parser().parse_args(["serve", "--checkpoint", "m.safetensors"])
    assert (args.host, args.port, args.share, args.examples) == ("127.0.0.1", 7860, False, None)


def test_the_page_wires_the_inputs_to_the_outputs(mesm_checkpoint, demo_data, tmp_path):
    require_module("gradio", "the app extra (gradio) is not installed")
    from mesm.app.analyse import ClipAnalyser, dataset_examples
    from mesm.app.page import build_page

    analyser = ClipAnalyser(mesm_checkpoint, precision="32", work_dir=tmp_path)
    page = build_page(analyser, dataset_examples(demo_data))
    ids = {getattr(block, "elem_id", None) for block in page.blocks.values()}
    assert {"mesm-video", "mesm-transcript", "mesm-subtitles", "mesm-run"} <= ids
    assert {"mesm-message", "mesm-probabilities", "mesm-attention", "mesm-csv"} <= ids
    (run,) = [d for d in page.fns.values() if d.api_name == "analyse"]
    assert [b.elem_id for b in run.inputs] == [
        "mesm-video",
        "mesm-transcript",
        "mesm-subtitles",
        "mesm-face",
    ]
    assert [b.elem_id for b in run.outputs] == [
        "mesm-message",
        "mesm-probabilities",
        "mesm-flops",
        "mesm-attention",
        "mesm-timeline",
        "mesm-csv",
        "mesm-faces",
    ]
    # One request at a time: one model, and the attention capture hooks into it.
    assert run.concurrency_limit == "default" and page._queue.default_concurrency_limit == 1
