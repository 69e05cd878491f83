"""Issue 24, class 5: a real `mesm serve` limits the size of uploads and deletes them when it
stops (SIGTERM here, as a service manager sends; Ctrl-C takes the same path)."""

from __future__ import annotations

import signal
import socket
import time

from bad_inputs import CASES
from helpers import require_module, signal_midway


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_serve_limits_uploads_and_deletes_them_when_it_stops(mesm_checkpoint, tmp_path):
    require_module("gradio", "the app extra (gradio) is not installed")
    httpx = require_module("httpx", "httpx (a dependency of gradio) is not installed")
    port = _free_port()
    scratch = tmp_path / "tmp"  # the server's temporary folder: its upload folder goes here
    scratch.mkdir()
    answers: dict[str, httpx.Response] = {}

    def upload_when_up(printed: str) -> bool:
        if "on http://" not in printed:
            return False
        url = f"http://127.0.0.1:{port}/gradio_api/upload"
        for _ in range(100):  # the page may take a moment after the line
            try:
                small = httpx.post(url, files={"files": ("small.mp4", b"0" * 1000)}, timeout=30)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        big = httpx.post(url, files={"files": ("big.mp4", b"0" * 3_000_000)}, timeout=30)
        answers.update(small=small, big=big, during=sorted(scratch.rglob("*.mp4")))
        return True

    args = ["serve", "--checkpoint", str(mesm_checkpoint), "--port", str(port)]
    run = signal_midway(
        [*args, "--max-upload", "2", "--precision", "32"],
        upload_when_up,
        signal.SIGTERM,
        cwd=tmp_path,
        env={"TMPDIR": str(scratch)},
    )
    assert answers["small"].status_code == 200, answers["small"].text
    assert answers["during"], "the small upload is kept while the server runs"
    assert answers["big"].status_code == 413
    assert CASES["serve-upload-limit"].message in answers["big"].text
    assert "2000000 bytes" in answers["big"].text
    assert run.returncode == 0 and CASES["serve-uploads-deleted"].message in run.stdout
    assert list(scratch.rglob("*.mp4")) == [], "uploads left behind"
    assert run.left == set()
