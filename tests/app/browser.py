"""The browser flow of `mesm serve`, shared by the end-to-end test and the README screenshot script
(scripts/app_screenshot.py): start the server in its own process group, drive Debian's chromium
through Selenium and Debian's matching chromedriver, stop the server and check nothing is left.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

_RUNNING = re.compile(r"^(processing|queue|[\d.]+\s*s\b|[\d.]+/[\d.]+\s*s\b)")
SRC = Path(__file__).resolve().parents[2] / "src"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVER = "chromedriver"


def browser_missing() -> str | None:
    """Why no browser test can run here (None when Selenium, chromium and chromedriver exist)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (scripts/install.sh installs it with the app extra)"
    if not any(shutil.which(b) for b in BROWSERS) or shutil.which(DRIVER) is None:
        return (
            "no chromium + chromedriver (scripts/install.sh installs Debian's chromium and "
            "chromium-driver as root where apt-get exists)"
        )
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


def start_server(
    checkpoint: Path, log: Path, *, examples: Path | None = None, timeout: float = 120.0
) -> Server:
    """`mesm serve` in a new session (its own process group) on a free port, once it answers."""
    port = free_port()
    command = [sys.executable, "-m", "mesm", "serve", "--checkpoint", str(checkpoint)]
    command += ["--port", str(port), "--precision", "32"]
    if examples is not None:
        command += ["--examples", str(examples)]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    server = Server(process, port, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mesm serve exited ({process.returncode}):\n{log.read_text()}")
        try:
            with urllib.request.urlopen(server.url, timeout=2) as response:
                if response.status == 200:
                    return server
        except OSError:
            time.sleep(0.5)
    stop_server(server)
    raise TimeoutError(f"mesm serve did not answer within {timeout} s:\n{log.read_text()}")


def stop_server(server: Server, timeout: float = 30.0) -> int:
    """SIGTERM (the server closes cleanly), wait; on failure kill the whole process group.

    Returns:
        The exit status; raises AssertionError if it had to be killed or left the port open.
    """
    process = server.process
    killed = False
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
            killed = True
    try:
        os.killpg(process.pid, 0)
        group_alive = True
    except ProcessLookupError:
        group_alive = False
    if group_alive:  # a child left behind (none is expected): never leave an orphan
        os.killpg(process.pid, signal.SIGKILL)
    assert not killed, f"mesm serve ignored SIGTERM for {timeout} s"
    assert not group_alive, "mesm serve left a process behind"
    assert not port_open(server.port), f"port {server.port} still open after the server stopped"
    return process.returncode


def chrome(width: int = 1400, height: int = 1600):
    """Headless Debian chromium driven by Debian's chromedriver (the same version by
    construction; Selenium Manager is bypassed, so nothing is downloaded)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = next(shutil.which(b) for b in BROWSERS if shutil.which(b))
    for arg in (
        "--headless=new",
        "--no-sandbox",  # the tests may run as root (CI containers)
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(shutil.which(DRIVER)))


def _wait(driver, condition, timeout: float, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition, message=what)


def open_page(driver, url: str, timeout: float = 30.0) -> None:
    from selenium.webdriver.common.by import By

    driver.get(url)
    _wait(driver, lambda d: d.find_elements(By.ID, "mesm-run"), timeout, "the page's Run button")


def submit(driver, video: Path, transcript: str, timeout: float = 90.0) -> str:
    """Upload `video`, type `transcript`, press the button; returns the message shown."""
    from selenium.webdriver.common.by import By

    clear = driver.find_elements(By.CSS_SELECTOR, "#mesm-video button[aria-label='Clear']")
    if clear:  # a video from the previous request
        clear[0].click()
    upload = driver.find_element(By.CSS_SELECTOR, "#mesm-video input[type=file]")
    upload.send_keys(str(video))
    # The upload is done when the file input has gone (the player replaced it).
    _wait(
        driver,
        lambda d: not d.find_elements(By.CSS_SELECTOR, "#mesm-video input[type=file]"),
        timeout,
        f"the upload of {video.name}",
    )
    box = driver.find_element(By.CSS_SELECTOR, "#mesm-transcript textarea")
    box.clear()
    box.send_keys(transcript)
    return run(driver, timeout)


def choose_example(driver, index: int = 0, timeout: float = 30.0) -> tuple[str, str]:
    """Click the `index`-th example; returns (the video's file name, the transcript) once both
    inputs show it (they must have held another video and another transcript before)."""
    from selenium.webdriver.common.by import By

    def state(d):
        players = d.find_elements(By.CSS_SELECTOR, "#mesm-video video")
        src = (players[0].get_attribute("src") or "") if players else ""
        text = d.find_element(By.CSS_SELECTOR, "#mesm-transcript textarea").get_attribute("value")
        return src.rsplit("/", 1)[-1], text

    before = state(driver)
    driver.find_elements(By.CSS_SELECTOR, "table tbody tr")[index].click()

    def changed(d):
        now = state(d)
        return now if now[0] and now[0] != before[0] and now[1] != before[1] else False

    return _wait(driver, changed, timeout, f"example {index} in the inputs")


def run(driver, timeout: float = 90.0) -> str:
    """Press the button and wait for the page's answer (a new message, not a progress line)."""
    from selenium.webdriver.common.by import By

    old = driver.find_element(By.ID, "mesm-message").text.strip()
    driver.find_element(By.ID, "mesm-run").click()

    def answered(d):
        text = d.find_element(By.ID, "mesm-message").text.strip()
        # While the request runs, Gradio puts its timer/queue line over the old message.
        busy = d.find_elements(By.CSS_SELECTOR, "#mesm-message .progress-text, .eta-bar")
        if busy or _RUNNING.match(text):
            return False
        return text if text and text != old else False

    return _wait(driver, answered, timeout, "the page's answer")


def shown_emotions(driver) -> dict[str, dict[str, str]]:
    """The probability bars on the page: {emotion: {"probability", "threshold", "present",
    "text"}} (the values as the page carries them)."""
    from selenium.webdriver.common.by import By

    shown = {}
    for row in driver.find_elements(By.CSS_SELECTOR, "#mesm-probabilities .mesm-emotion"):
        shown[row.get_attribute("data-emotion")] = {
            "probability": row.get_attribute("data-probability"),
            "threshold": row.get_attribute("data-threshold"),
            "present": row.get_attribute("data-present"),
            "text": row.text,
        }
    return shown


def attention_image_width(driver, timeout: float = 30.0) -> int:
    """naturalWidth of the attention image once it has loaded (0 if it never does)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By

    script = "return arguments[0].complete ? arguments[0].naturalWidth : 0;"

    def loaded(d):
        images = d.find_elements(By.CSS_SELECTOR, "#mesm-attention img")
        return images and d.execute_script(script, images[0])

    try:
        return int(_wait(driver, loaded, timeout, "the attention image"))
    except TimeoutException:
        return 0
