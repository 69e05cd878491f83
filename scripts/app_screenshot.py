"""The README's picture of `mesm serve`: the page after analysing one of the demo's test clips.

    python scripts/app_screenshot.py --demo mesm-demo --out docs/serve_demo.png

Runs the same browser flow as tests/app/test_browser.py (the server as a subprocess on a free
port, Debian's headless chromium through Selenium) on the demo's MESM checkpoint, with the demo's
clips as the page's examples; clicks the first example (a test clip and its transcript), runs it
and saves a screenshot of the result.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from png_palette import write_palette_png  # noqa: E402

from app.browser import (  # noqa: E402
    attention_image_width,
    browser_missing,
    choose_example,
    chrome,
    open_page,
    run,
    shown_emotions,
    start_server,
    stop_server,
)
from mesm.app.analyse import dataset_examples  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", default="mesm-demo", help="the output folder of `mesm demo`")
    parser.add_argument("--out", default="docs/serve_demo.png", help="the PNG to write")
    parser.add_argument("--width", type=int, default=1280, help="browser window width (px)")
    parser.add_argument("--height", type=int, default=1400, help="browser window height (px)")
    args = parser.parse_args()
    if browser_missing():
        sys.exit(f"app_screenshot.py: {browser_missing()}")
    demo = Path(args.demo)
    (video, transcript), *_ = dataset_examples(demo / "data", count=1)
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(
            demo / "runs" / "mesm" / "best.safetensors",
            Path(tmp) / "serve.log",
            examples=demo / "data",
        )
        driver = None
        try:
            driver = chrome(args.width, args.height)
            open_page(driver, server.url)
            name, text = choose_example(driver, 0)
            assert (name, text) == (Path(video).name, transcript), (name, text)
            print(run(driver))
            assert attention_image_width(driver) > 0, "the attention image did not load"
            print({name: e["text"] for name, e in shown_emotions(driver).items()})
            png = driver.get_screenshot_as_png()
        finally:
            if driver is not None:
                driver.quit()
            stop_server(server)
    write_palette_png(png, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
