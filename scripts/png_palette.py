"""Writing a screenshot small: a 256-colour palette PNG (our pages have few colours)."""

from __future__ import annotations

import io
from pathlib import Path


def write_palette_png(png: bytes, out: str | Path) -> int:
    """Writes the PNG `png` to `out` atomically as a 256-colour palette image; returns its bytes."""
    from PIL import Image

    from mesm.files import atomic_write_bytes

    buffer = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").quantize(256).save(
        buffer, format="PNG", optimize=True
    )
    atomic_write_bytes(out, buffer.getvalue())
    print(f"written {out} ({len(buffer.getvalue()) // 1024} KiB)")
    return len(buffer.getvalue())
