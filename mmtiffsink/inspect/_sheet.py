"""The layout of a preview contact sheet: a title, then rows of labelled tiles."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import final

import numpy as np

from ._canvas import Canvas, Color
from ._font import GLYPH_H, fit, text_width

__all__ = ["Row", "Tile", "render"]

BACKGROUND: Color = (28, 28, 28)
TEXT: Color = (235, 235, 235)
MISSING: Color = (52, 52, 52)
HATCH: Color = (92, 92, 92)
PAD, GAP = 10, 6


@final
@dataclass
class Tile:
    """One tile: an RGB image (None when missing), its label, and a note drawn on it."""

    label: str
    color: Color
    rgb: np.ndarray | None
    note: str = ""
    missing: str = "missing"


@final
@dataclass
class Row:
    """A row of tiles under a header; a scale bar on its last tile when calibrated."""

    header: str
    tiles: list[Tile] = field(default_factory=list)
    um_per_px: float | None = None
    """Micrometres per tile pixel, or None (no scale bar)."""


def _wrap(text: str, width: int, scale: int) -> list[str]:
    """Break ``text`` at double spaces (its fields), then at spaces, to fit ``width``."""
    lines: list[str] = []
    current = ""
    for word in text.split("  "):
        candidate = f"{current}  {word}" if current else word
        if text_width(candidate, scale) <= width or not current:
            current = candidate
        else:
            lines.append(current)
            current = word
    if current:
        lines.append(current)
    return [fit(line, width, scale) for line in lines]


def render(title: Sequence[tuple[str, Color]], rows: Sequence[Row]) -> Canvas:
    """Draw the sheet: title lines (text, colour), then each row's header and tiles."""
    cols = max((len(r.tiles) for r in rows), default=1)
    tiles = [t for r in rows for t in r.tiles if t.rgb is not None]
    cell_w = max((t.rgb.shape[1] for t in tiles if t.rgb is not None), default=128)
    cell_h = max((t.rgb.shape[0] for t in tiles if t.rgb is not None), default=128)
    label_scale = 2 if cell_w >= 120 else 1
    line = (GLYPH_H + 3) * label_scale
    width = max(2 * PAD + cols * cell_w + (cols - 1) * GAP, 360)
    inner = width - 2 * PAD
    title_scale = 2 if inner >= 480 else 1
    title_lines = [
        (part, color) for text, color in title for part in _wrap(text, inner, title_scale)
    ]
    title_h = len(title_lines) * (GLYPH_H + 4) * title_scale
    row_h = line * 2 + cell_h
    height = PAD + title_h + PAD + len(rows) * (row_h + GAP) + PAD
    canvas = Canvas(height, width, BACKGROUND)

    y = PAD
    for text, color in title_lines:
        canvas.text(PAD, y, text, color, title_scale)
        y += (GLYPH_H + 4) * title_scale
    canvas.boxes["title"] = (PAD, PAD, inner, y - PAD)
    y += PAD
    for r, row in enumerate(rows):
        canvas.text(PAD, y, fit(row.header, inner, label_scale), TEXT, label_scale)
        canvas.boxes[f"header {r}"] = (PAD, y, inner, line)
        y += line
        for i, tile in enumerate(row.tiles):
            x = PAD + i * (cell_w + GAP)
            canvas.text(x, y, fit(tile.label, cell_w, label_scale), tile.color, label_scale)
            canvas.boxes[f"label {r} {i}"] = (x, y, cell_w, line)
            _draw_tile(canvas, x, y + line, cell_w, cell_h, tile, label_scale)
            if tile.rgb is not None:
                h, w = tile.rgb.shape[:2]
                canvas.boxes[f"tile {r} {i}"] = (x, y + line, w, h)
            else:
                canvas.boxes[f"tile {r} {i}"] = (x, y + line, cell_w, cell_h)
        if row.um_per_px and row.tiles and row.tiles[-1].rgb is not None:
            last = row.tiles[-1]
            assert last.rgb is not None
            x = PAD + (len(row.tiles) - 1) * (cell_w + GAP)
            h, w = last.rgb.shape[:2]
            canvas.scale_bar(x, y + line, w, h, um_per_px=row.um_per_px, scale=label_scale)
        y += line + cell_h + GAP
    return canvas


def _draw_tile(canvas: Canvas, x: int, y: int, w: int, h: int, tile: Tile, scale: int) -> None:
    if tile.rgb is None:
        canvas.fill(x, y, w, h, MISSING)
        canvas.hatch(x, y, w, h, HATCH)
        tw = text_width(tile.missing, scale)
        canvas.fill(
            x + (w - tw) // 2 - 4,
            y + (h - GLYPH_H * scale) // 2 - 4,
            tw + 8,
            GLYPH_H * scale + 8,
            MISSING,
        )
        canvas.text(x + (w - tw) // 2, y + (h - GLYPH_H * scale) // 2, tile.missing, TEXT, scale)
    else:
        canvas.paste(x, y, tile.rgb)
    if tile.note:
        note = fit(tile.note, w - 8, scale)
        canvas.outlined_text(x + 4, y + h - (GLYPH_H + 4) * scale, note, TEXT, scale)
