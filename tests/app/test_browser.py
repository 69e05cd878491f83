"""`mesm serve` end to end in a real headless browser (Debian's chromium through Selenium).

The server runs as a subprocess on a free port with a tiny MESM checkpoint built by the fixture;
the test uploads a demo clip, types its transcript, submits, and checks what the page shows; then
uploads a corrupt file and checks the message, runs one of the page's examples, stops the server
and checks that nothing is left.
A screenshot of the result goes to $MESM_SCREENSHOT_DIR (default: the test's tmp folder).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from helpers import missing, require_module
from mesm.data.manifest import read_dataset

from .browser import (
    attention_image_width,
    browser_missing,
    choose_example,
    chrome,
    open_page,
    run,
    shown_emotions,
    start_server,
    stop_server,
    submit,
)
from .conftest import EMOTIONS, THRESHOLDS


@pytest.fixture(autouse=True)
def _browser():
    if browser_missing() is not None:
        missing(str(browser_missing()))


def test_page_in_a_browser_shows_emotions_attention_and_errors(
    mesm_checkpoint, demo_data, bad_videos, tmp_path
):
    require_module("gradio", "the app extra (gradio) is not installed")
    began = time.monotonic()
    shots = Path(os.environ.get("MESM_SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    records = read_dataset(demo_data)[1]
    record = next(r for r in records if r.audio is None)
    server = start_server(mesm_checkpoint, tmp_path / "serve.log", examples=demo_data)
    driver = None
    try:
        driver = chrome()
        open_page(driver, server.url)
        assert "Examples" in driver.page_source and record.text in driver.page_source

        message = submit(driver, demo_data / record.video, record.text)
        assert "Most likely" in message, message
        shown = shown_emotions(driver)
        assert list(shown) == EMOTIONS
        for name, threshold in zip(EMOTIONS, THRESHOLDS, strict=True):
            probability = float(shown[name]["probability"])
            assert 0 <= probability <= 1
            assert float(shown[name]["threshold"]) == threshold
            assert shown[name]["present"] == str(probability > threshold).lower()
            assert f"{probability:.3f} (threshold {threshold:.2f})" in shown[name]["text"]
        assert attention_image_width(driver) > 0
        assert "FE2E" in driver.find_element("id", "mesm-flops").text
        driver.save_screenshot(str(shots / "serve_result.png"))

        message = submit(driver, bad_videos["corrupt"], "hello there")
        assert message.startswith("Error: corrupt.mp4 could not be read as a video"), message
        assert "Traceback" not in driver.page_source
        assert shown_emotions(driver) == {}
        driver.save_screenshot(str(shots / "serve_error.png"))

        # An example (the server may only serve files from the examples' folder) runs too.
        name, text = choose_example(driver, 0)
        assert text in {r.text for r in records} and (demo_data / "clips" / name).is_file()
        message = run(driver)
        assert message.startswith(name) and "Most likely" in message, message
    finally:
        if driver is not None:
            driver.quit()
        status = stop_server(server)
    assert status == 0, server.log.read_text()
    assert "mesm serve: stopped" in server.log.read_text()
    assert (shots / "serve_result.png").stat().st_size > 10_000
    print(f"browser test: {time.monotonic() - began:.1f} s")
