"""An RGB canvas for preview contact sheets: tiles, text, hatching, scale bars, PNG output."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import final

import imagecodecs
import numpy as np

from ._font import GLYPH_H, text_mask, text_width

__all__ = ["Canvas", "Color"]

Color = tuple[int, int, int]


@final
class Canvas:
    """A ``(height, width, 3)`` uint8 image drawn on with integer pixel coordinates."""

    def __init__(self, height: int, width: int, background: Color) -> None:
        self.pixels = np.empty((height, width, 3), dtype=np.uint8)
        self.pixels[:] = background
        self.boxes: dict[str, tuple[int, int, int, int]] = {}
        """Named rectangles ``(x, y, w, h)`` of what was drawn (``"title"``, ``"tile 0 1"``)."""

    @property
    def width(self) -> int:
        """Width in pixels."""
        return int(self.pixels.shape[1])

    def fill(self, x: int, y: int, w: int, h: int, color: Color) -> None:
        """Fill the rectangle of top-left ``(x, y)`` and size ``w`` x ``h`` (clipped)."""
        self.pixels[max(0, y) : max(0, y + h), max(0, x) : max(0, x + w)] = color

    def paste(self, x: int, y: int, rgb: np.ndarray) -> None:
        """Copy an ``(h, w, 3)`` uint8 image with its top-left corner at ``(x, y)``."""
        h, w = rgb.shape[:2]
        self.pixels[y : y + h, x : x + w] = rgb

    def text(self, x: int, y: int, text: str, color: Color, scale: int = 1) -> int:
        """Draw ``text`` with its top-left at ``(x, y)``; returns the width drawn."""
        mask = text_mask(text, scale)
        h, w = (int(n) for n in mask.shape)
        region = self.pixels[y : y + h, x : x + w]
        region[mask[: region.shape[0], : region.shape[1]]] = color
        return w

    def outlined_text(self, x: int, y: int, text: str, color: Color, scale: int = 1) -> int:
        """Draw ``text`` with a one-pixel black outline, readable on any image."""
        for dx, dy in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            self.text(x + dx, y + dy, text, (0, 0, 0), scale)
        return self.text(x, y, text, color, scale)

    def hatch(self, x: int, y: int, w: int, h: int, color: Color, spacing: int = 12) -> None:
        """Diagonal lines over the rectangle: the mark of a missing image."""
        yy, xx = np.mgrid[0:h, 0:w]
        lines = (xx + yy) % spacing < max(1, spacing // 6)
        self.pixels[y : y + h, x : x + w][lines] = color

    def scale_bar(
        self, x: int, y: int, w: int, h: int, *, um_per_px: float, scale: int = 1
    ) -> None:
        """A white scale bar with its length in µm, in the bottom-right corner of a tile."""
        target = w * um_per_px / 5  # about a fifth of the tile
        length_um = _nice(target)
        bar = round(length_um / um_per_px)
        if bar < 4 or bar > w - 8:
            return
        label = f"{_number(length_um)} µm"
        thick = max(2, 2 * scale)
        margin = 4 * scale
        bx, by = x + w - margin - bar, y + h - margin - thick
        self.fill(bx - 1, by - 1, bar + 2, thick + 2, (0, 0, 0))
        self.fill(bx, by, bar, thick, (255, 255, 255))
        tw = text_width(label, scale)
        ty = by - 3 * scale - GLYPH_H * scale
        if ty > y:
            self.outlined_text(bx + bar - tw, ty, label, (255, 255, 255), scale)

    def save_png(self, path: Path) -> None:
        """Encode as PNG and write ``path`` atomically (a temporary file, then a rename)."""
        data = imagecodecs.png_encode(self.pixels, level=6)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(tmp, 0o644)  # mkstemp makes it private
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _nice(value: float) -> float:
    """The largest of 1, 2, 5 x 10**k not above ``value`` (``value`` > 0)."""
    exponent = np.floor(np.log10(value))
    base = 10.0**exponent
    for step in (5.0, 2.0, 1.0):
        if step * base <= value:
            return float(step * base)
    return float(base)  # pragma: no cover


def _number(value: float) -> str:
    return f"{value:g}"
