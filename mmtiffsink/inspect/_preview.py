"""A preview picture of a hyperstack TIFF: one PNG contact sheet per file, without Fiji.

:func:`preview` draws one tile per channel, in the file's own colours (the ImageJ LUTs), and a
composite tile (channels added, as in Fiji's composite mode), of the z maximum projection or
the middle slice at the first or last time point, or one row per time point (at most
:data:`MAX_ROWS`). A title names the file, its dimensions and calibration; a scale bar is drawn
when the pixel size is known. Files with several series (OME multi-position) get a row each.

Only the planes the picture needs are read, one page at a time (identical, de-duplicated
frames are decoded once), so a preview of a file of many gigabytes takes seconds and flat
memory. A file left unfinished by a killed mmtiffsink writer is previewed from the (c, z, t)
each of its frames carries (tag 65421). Planes never written, and the blank frames a finished
file holds in their place, are drawn as hatched "missing" tiles.
:func:`write_previews` previews many files and never raises for one bad file, for the end of
``mmtiffsink run`` / ``replay``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, final

import numpy as np
import tifffile

from mmtiffsink.errors import ConfigError, DatasetError, MMTiffSinkError
from mmtiffsink.limits import MAX_DECODE_BYTES

from ._canvas import Canvas, Color
from ._info import FileInfo, _cause, file_info
from ._planes import MAX_CHANNELS, READ_ERRORS, Stack
from ._planes import stacks as stacks_of
from ._sheet import Row, Tile, render

__all__ = ["MAX_ROWS", "preview", "preview_path", "sheet", "write_previews"]

Projection = Literal["max", "mid"]
TimeChoice = Literal["first", "last", "all"]

MAX_ROWS = 8
"""Time points shown at most with ``time="all"`` (evenly spread, first and last included)."""
MAX_SHEET_ROWS = 24
"""Rows a sheet holds at most, over all series (the first ones; the title says so)."""
MAX_PROJECTED = 1024
"""Planes a maximum projection reads at most (evenly spread over z; the tile notes it)."""
TILE = 256
"""Longest side of a tile in pixels; larger images are binned (averaged) down to it."""
MIN_TILE = 128
"""Smaller images are enlarged (nearest neighbour) by an integer factor to reach about this."""
PERCENTILES = (0.1, 99.9)
"""Auto-contrast: these percentiles of a channel's tiles map to black and full colour."""

_TEXT: Color = (235, 235, 235)
_DIM: Color = (160, 160, 160)
_WARN: Color = (255, 170, 60)
_TIF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".tf2")
_log = logging.getLogger("mmtiffsink")


# ------------------------------------------------------------------------------ the model
@final
@dataclass
class _Tile:
    data: np.ndarray | None  # float32 2-D, binned; None when every plane is missing
    planes: int
    expected: int
    unreadable: bool = False
    too_large: bool = False


@final
@dataclass
class _Row:
    header: str
    stack: Stack
    tiles: list[_Tile] = field(default_factory=list)


# ------------------------------------------------------------------------------ public API
def preview_path(path: str | os.PathLike[str]) -> Path:
    """Where :func:`preview` writes by default: ``cells.tif`` -> ``cells.preview.png``."""
    p = Path(path)
    name = p.name
    for suffix in _TIF_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    return p.with_name(f"{name}.preview.png")


def preview(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    projection: Projection = "max",
    time: TimeChoice = "first",
) -> Path:
    """Write a PNG contact sheet of a TIFF file: one tile per channel and a composite.

    Parameters
    ----------
    path
        A TIFF file: written by mmtiffsink (finished, or left by a killed writer), by
        tifffile, or any other TIFF, as far as its metadata allow.
    out
        The PNG to write (replaced if it exists); default :func:`preview_path` of ``path``,
        beside it.
    projection
        ``"max"``: the maximum projection over z; ``"mid"``: the middle slice.
    time
        ``"first"`` or ``"last"`` time point, or ``"all"``: one row per time point, thinned
        to at most :data:`MAX_ROWS` rows.

    Returns
    -------
    Path
        The PNG written.

    Raises
    ------
    ConfigError
        ``projection`` or ``time`` is not one of the values above.
    DatasetError
        The file is missing, not a TIFF, corrupt, or holds no image a preview can show.
    MMTiffSinkError
        The PNG cannot be written (the cause is chained).

    """
    if projection not in ("max", "mid"):
        msg = f"projection must be 'max' or 'mid', not {projection!r}"
        raise ConfigError(msg)
    if time not in ("first", "last", "all"):
        msg = f"time must be 'first', 'last' or 'all', not {time!r}"
        raise ConfigError(msg)
    src = Path(path)
    dest = Path(out) if out is not None else preview_path(src)
    canvas = sheet(src, projection=projection, time=time)
    try:
        canvas.save_png(dest)
    except OSError as exc:
        msg = f"cannot write the preview {dest}: {exc.strerror or exc}"
        raise MMTiffSinkError(msg) from exc
    return dest


def sheet(path: Path, *, projection: Projection, time: TimeChoice) -> Canvas:
    """The contact sheet of ``path``, drawn but not written (its ``boxes`` name what is where)."""
    info = file_info(path)  # the one-line errors for missing, non-TIFF or truncated files
    try:
        with tifffile.TiffFile(path) as tif:
            stacks = stacks_of(tif, info, tile=TILE)
            rows: list[_Row] = []
            for stack in stacks:
                if len(rows) >= MAX_SHEET_ROWS:
                    break
                rows += _rows(stack, projection, time, info.interval_s)[
                    : MAX_SHEET_ROWS - len(rows)
                ]
    except DatasetError:
        raise
    except READ_ERRORS as exc:
        msg = (
            f"{path}: cannot read it for a preview ({_cause(exc)})"
        )
        raise DatasetError(msg) from exc
    return _render(info, stacks, rows, projection, time)


def write_previews(
    paths: Iterable[str | os.PathLike[str]],
    *,
    projection: Projection = "max",
    time: TimeChoice = "first",
    on_error: Callable[[Path, Exception], None] | None = None,
) -> list[Path]:
    """Preview every file beside it; one bad file never stops the others.

    For the end of a run or a replay: a failure is passed to ``on_error(path, error)``, or
    logged as a warning on the ``mmtiffsink`` logger when ``on_error`` is None, and the next
    file is previewed.

    Parameters
    ----------
    paths
        TIFF files.
    projection, time
        As for :func:`preview`.
    on_error
        Called with the file and the exception for each file that could not be previewed.

    Returns
    -------
    list of Path
        The PNGs written, in the order of ``paths`` (failed files left out).

    """
    written = []
    for item in paths:
        path = Path(item)
        try:
            written.append(preview(path, projection=projection, time=time))
        except Exception as exc:  # a preview must never fail the job that made the file
            if on_error is not None:
                on_error(path, exc)
            else:
                _log.warning("no preview of %s: %s", path, exc)
    return written


# ------------------------------------------------------------------------------ projecting
def _time_points(stack: Stack, time: TimeChoice) -> list[int]:
    t_size = stack.sizes[2]
    if time == "first":
        return [0]
    if time == "last":
        return [max(0, stack.last_t)]
    if t_size <= MAX_ROWS:
        return list(range(t_size))
    return sorted({round(x) for x in np.linspace(0, t_size - 1, MAX_ROWS)})


def _rows(
    stack: Stack, projection: Projection, time: TimeChoice, interval: float | None
) -> list[_Row]:
    rows = []
    for t in _time_points(stack, time):
        header = f"t={t}" + (f" ({_duration(t * interval)})" if interval else "")
        if stack.name:
            header = f"{stack.name}, {header}"
        row = _Row(header, stack)
        for c in range(stack.shown):
            row.tiles.append(_project(stack, c, t, projection))
        rows.append(row)
    return rows


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"


def _project(stack: Stack, c: int, t: int, projection: Projection) -> _Tile:
    """The max projection (or middle slice) of channel ``c`` at time ``t``, binned."""
    z_size = stack.sizes[1]
    if projection == "mid":
        zs: Sequence[int] = [z_size // 2]
    else:
        zs = stack.zs(c, t) if stack.zs is not None else range(z_size)
        if len(zs) > MAX_PROJECTED:  # evenly spread, first and last included
            zs = [zs[round(i)] for i in np.linspace(0, len(zs) - 1, MAX_PROJECTED)]
    expected = z_size if projection == "max" else 1
    if stack.page_bytes > MAX_DECODE_BYTES:  # decoding it would cost more than it shows
        return _Tile(None, 0, expected, too_large=True)
    acc: np.ndarray | None = None
    seen: set[object] = set()
    planes = 0
    unreadable = False
    for z in zs:
        where = stack.locate(c, z, t)
        if where is None:
            continue
        try:
            key = stack.key(where)
            if key in stack.blank:
                continue
            if key in seen:  # the same stored frame again: nothing new for a maximum
                planes += 1
                continue
            plane = stack.read(where)
        except READ_ERRORS as exc:
            _log.debug("unreadable plane c=%d z=%d t=%d: %s", c, z, t, exc)
            unreadable = True
            continue
        if not plane.any():  # a blank frame: what a finished file holds for a gap
            stack.blank.add(key)
            continue
        planes += 1
        seen.add(key)
        if plane.dtype.kind == "f":
            plane = np.nan_to_num(plane, nan=0.0, posinf=0.0, neginf=0.0)
        acc = plane.copy() if acc is None else np.maximum(acc, plane, out=acc)
    data = None if acc is None else _bin(acc)
    return _Tile(data, planes, expected, unreadable)


def _bin(plane: np.ndarray) -> np.ndarray:
    """Average down to at most :data:`TILE` pixels, or enlarge small images; float32.

    ``plane`` is (Y, X), or (Y, X, 3) for a colour image (each sample binned alike).
    """
    h, w = plane.shape[:2]
    samples = plane.shape[2:]
    factor = math.ceil(max(h, w) / TILE)
    if factor > 1:  # in bands of about 4 M values: a float copy of a band, not of the plane
        hh, ww = (h // factor) * factor, (w // factor) * factor
        binned = np.empty((hh // factor, ww // factor, *samples), dtype=np.float32)
        band = max(1, (1 << 22) // (ww * factor * math.prod(samples)))
        for i in range(0, hh // factor, band):
            rows = plane[i * factor : (i + band) * factor, :ww].astype(np.float32)
            blocks = rows.reshape(-1, factor, ww // factor, factor, *samples)
            binned[i : i + band] = blocks.mean(axis=(1, 3), dtype=np.float32)
        return binned
    out = plane.astype(np.float32)
    up = max(1, MIN_TILE // max(h, w))
    if up > 1:
        out = np.repeat(np.repeat(out, up, axis=0), up, axis=1)
    return out


def _scale(stack: Stack) -> float:
    """Tile pixels per image pixel."""
    h, w = stack.frame
    factor = math.ceil(max(h, w) / TILE)
    return 1 / factor if factor > 1 else float(max(1, MIN_TILE // max(h, w)))


# ------------------------------------------------------------------------------ drawing
def _contrast(tiles: Sequence[_Tile]) -> tuple[float, float]:
    """Robust display range of one channel over all its tiles (percentiles)."""
    data = [t.data.ravel() for t in tiles if t.data is not None]
    if not data:
        return 0.0, 1.0
    values = np.concatenate(data)
    lo, hi = (float(v) for v in np.percentile(values, PERCENTILES))
    if hi <= lo:
        hi = float(values.max())
    if hi <= lo:  # a flat image: show it mid-grey rather than black
        return lo - 1.0, lo + 1.0
    return lo, hi


def _colorize(data: np.ndarray, lut: np.ndarray, lo: float, hi: float) -> np.ndarray:
    index = np.clip((data - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    rgb: np.ndarray = lut.T[index]  # (h, w, 3)
    return rgb


def _colour(data: np.ndarray, dtype: np.dtype[Any], lo: float, hi: float) -> np.ndarray:
    """A colour tile (Y, X, 3): 8-bit samples as they are, wider ones scaled by one range."""
    if dtype.itemsize == 1:
        lo, hi = 0.0, 255.0  # true colour: an 8-bit RGB image is made to be shown as it is
    scaled = np.clip((data - lo) * (255.0 / (hi - lo)), 0, 255)
    out: np.ndarray = scaled.astype(np.uint8)
    return out


def _label_color(lut: np.ndarray) -> Color:
    """The LUT's brightest colour, lightened so that dark blue stays readable."""
    r, g, b = (int(v) for v in lut[:, -1])
    return min(255, r + 80), min(255, g + 80), min(255, b + 80)


def _sheet_rows(rows: Sequence[_Row]) -> list[Row]:
    ranges: dict[tuple[int, int], tuple[float, float]] = {}
    for row in rows:
        for c in range(len(row.tiles)):
            key = (id(row.stack), c)
            if key not in ranges:
                ranges[key] = _contrast(
                    [r.tiles[c] for r in rows if r.stack is row.stack and c < len(r.tiles)]
                )
    out = []
    for row in rows:
        stack = row.stack
        tiles = []
        composite: np.ndarray | None = None
        for c, tile in enumerate(row.tiles):
            lut = stack.luts[c]
            rgb = None
            if tile.data is not None and stack.rgb:  # its own colours, one range for R, G, B
                rgb = _colour(tile.data, stack.dtype, *ranges[(id(stack), c)])
            elif tile.data is not None:
                rgb = _colorize(tile.data, lut, *ranges[(id(stack), c)])
                layer = rgb.astype(np.uint16)
                composite = layer if composite is None else composite + layer
            tiles.append(
                Tile(
                    label=stack.names[c],
                    color=_label_color(lut),
                    rgb=rgb,
                    note=_note(tile, stack),
                    missing=_missing(tile),
                )
            )
        if len(row.tiles) > 1 and not stack.rgb:  # colour images are not blended
            merged = None if composite is None else np.minimum(composite, 255).astype(np.uint8)
            tiles.append(Tile(label="composite", color=_TEXT, rgb=merged))
        scale = _scale(stack)
        um = stack.um_per_px / scale if stack.um_per_px else None
        out.append(Row(header=row.header, tiles=tiles, um_per_px=um))
    return out


def _missing(tile: _Tile) -> str:
    if tile.too_large:
        return "too large"
    return "unreadable" if tile.unreadable and not tile.planes else "missing"


def _note(tile: _Tile, stack: Stack) -> str:
    if tile.data is None or tile.planes >= tile.expected:
        return ""
    return f"{tile.planes}/{tile.expected} {'slices' if stack.z_axis == 'Z' else 'planes'}"


def _title(
    info: FileInfo, stacks: Sequence[Stack], projection: Projection, time: TimeChoice
) -> list[tuple[str, Color]]:
    stack = stacks[0]
    c, z, t = stack.sizes
    h, w = stack.frame
    name = info.path.name
    lines: list[tuple[str, Color]] = [(name, _TEXT)]
    if info.in_use:
        lines.append((f"BEING WRITTEN: {info.planes} frames so far", _WARN))
    elif not info.finished:
        lines.append(("UNFINISHED: its writer stopped (mmtiffsink repair finishes it)", _WARN))
    dims = f"C={c}  Z={z}  T={t}  {w}x{h} px  {stack.dtype.name}"
    if c > MAX_CHANNELS:
        dims += f"  (first {MAX_CHANNELS} channels shown)"
    if stack.page_bytes > MAX_DECODE_BYTES:
        dims += f"  (planes of {stack.page_bytes / 1e9:.3g} GB not decoded)"
    if stack.rgb:
        dims += " RGB"
    if len(stacks) > 1:
        dims += f"  {len(stacks)} series"
    if sum(len(_time_points(s, time)) for s in stacks) > MAX_SHEET_ROWS:
        dims += f"  (first {MAX_SHEET_ROWS} rows shown)"
    cal = []
    if info.pixel_size_um:
        cal.append(f"pixel {info.pixel_size_um:.4g} µm")
    if info.z_step_um:
        cal.append(f"z step {info.z_step_um:.4g} µm")
    if info.interval_s:
        cal.append(f"interval {info.interval_s:.4g} s")
    lines.append(("  ".join([dims, *cal]) if cal else dims + "  uncalibrated", _DIM))
    planes = "slices" if stack.z_axis == "Z" else "planes"
    if z <= 1:
        shown = "single slice"
    elif projection == "max":
        shown = f"max projection of {z} {planes}"
    else:
        shown = f"middle slice z={z // 2} of {z}"
    if t > 1:
        when = {"first": "first time point", "last": "last time point"}.get(time)
        if when is None:
            rows = len(_time_points(stack, time))
            when = f"{rows} of {t} time points" if rows < t else f"all {t} time points"
        shown += f", {when}"
    lines.append((shown, _DIM))
    return lines


def _render(
    info: FileInfo,
    stacks: list[Stack],
    rows: list[_Row],
    projection: Projection,
    time: TimeChoice,
) -> Canvas:
    return render(_title(info, stacks, projection, time), _sheet_rows(rows))
