"""The picture of the documentation site's home page: builds the site strictly into a temporary
folder and takes a headless-Chromium screenshot of its index page.

    python scripts/site_screenshot.py --out docs/site_home.png
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from png_palette import write_palette_png

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs/site_home.png")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("no chromium on PATH (scripts/install_system.sh installs it)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        site, shot = Path(tmp) / "site", Path(tmp) / "home.png"
        build = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)]
        subprocess.run(build, cwd=ROOT, check=True)
        command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
        command += [f"--screenshot={shot}", f"--window-size={args.width},{args.height}"]
        subprocess.run([*command, (site / "index.html").as_uri()], check=True, timeout=120)
        write_palette_png(shot.read_bytes(), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
