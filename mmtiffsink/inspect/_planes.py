"""Where the planes of a TIFF are, and how to read one: what a preview needs of a file.

:func:`stacks` describes each image series of a file as a :class:`Stack`: its (C, Z, T), the
page (and RGB sample) of each plane, channel names and colours (ImageJ LUTs, the mmtiffsink
writer's settings, OME-XML, or ImageJ's defaults) and the pixel size. Nothing is decoded here;
``Stack.read`` decodes one page when asked. A file left unfinished by a killed mmtiffsink
writer is described from the (c, z, t) each of its IFDs carries (tag 65421), one stack per
series when its frames belong to several (an OME-TIFF of several positions).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, final

import numpy as np
import tifffile

from mmtiffsink.errors import DatasetError
from mmtiffsink.tiff import OmeImageFacts, color_lut, colormap_lut, parse_ome
from mmtiffsink.tiff.format import frame_tags

from ._info import FileInfo
from ._info import _settings as settings_of

__all__ = ["READ_ERRORS", "Stack", "Where", "stacks"]

READ_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    RuntimeError,
    OSError,
    EOFError,
    IndexError,
    struct.error,
)
"""What tifffile and imagecodecs raise for a corrupt page."""
_DEFAULT_COLORS: tuple[tuple[int, int, int], ...] = (
    (255, 0, 0),
    (0, 255, 0),
    (0, 0, 255),
    (255, 255, 255),
    (0, 255, 255),
    (255, 0, 255),
    (255, 255, 0),
)  # ImageJ's composite defaults


@final
@dataclass(frozen=True)
class Where:
    """Where one 2-D plane is: a page of the stack and, for RGB pages, a sample."""

    page: int
    sample: int | None = None


@final
@dataclass
class Stack:
    """One series of a file: its (C, Z, T), where each plane is, names and colours."""

    name: str
    sizes: tuple[int, int, int]
    frame: tuple[int, int]
    dtype: np.dtype[Any]
    locate: Callable[[int, int, int], Where | None]
    key: Callable[[Where], object]
    """A plane's identity on disk, equal for identical (de-duplicated) frames; no decoding."""
    read: Callable[[Where], np.ndarray]
    """Decode one plane: a 2-D array."""
    names: list[str]
    luts: list[np.ndarray]
    last_t: int
    um_per_px: float | None
    z_axis: str = "Z"
    blank: set[object] = field(default_factory=set)
    """Keys of planes found blank (all zero), so each is decoded once."""


def stacks(tif: tifffile.TiffFile, info: FileInfo, *, tile: int) -> list[Stack]:
    """Every image series of ``tif`` as a :class:`Stack`; pyramids at the level nearest ``tile``."""
    first = tif.pages.first
    settings = settings_of(first)
    if settings is not None and not info.finished:
        return _unfinished_stacks(tif, info, settings)
    ome = parse_ome(tif.ome_metadata) if tif.is_ome and tif.ome_metadata else []
    found = []
    for index, series in enumerate(tif.series):
        meta = ome[index] if index < len(ome) else None
        found.append(_series_stack(tif, series, index, info, settings, meta, tile))
    if not found:
        msg = f"{info.path}: no image series a preview can show"
        raise DatasetError(msg)
    return found


def _luts(
    count: int,
    ij: dict[str, Any] | None,
    settings: dict[str, Any] | None,
    colors: Sequence[tuple[int, int, int] | None] = (),
) -> list[np.ndarray]:
    """One (3, 256) LUT per channel: ImageJ's, the writer's settings, OME's, or defaults."""
    luts = list(ij.get("LUTs") or []) if ij else []
    if len(luts) >= count:
        return [_lut8(np.asarray(lut)) for lut in luts[:count]]
    if settings is not None:
        try:
            if settings.get("colors"):
                return [color_lut(c) for c in settings["colors"][:count]] + _defaults(
                    count, start=len(settings["colors"])
                )
            if settings.get("colormap"):
                return [colormap_lut(str(settings["colormap"]))] * count
        except (ValueError, ImportError):
            pass
    if colors and any(c is not None for c in colors):
        defaults = _defaults(count)
        return [
            color_lut(c) if c is not None else defaults[i]
            for i, c in enumerate(list(colors)[:count] + [None] * (count - len(colors)))
        ]
    return _defaults(count)


def _defaults(count: int, start: int = 0) -> list[np.ndarray]:
    if count <= 0:
        return []
    if count == 1 and start == 0:
        return [color_lut((255, 255, 255))]
    return [color_lut(_DEFAULT_COLORS[(start + i) % 7]) for i in range(count)]


def _lut8(lut: np.ndarray) -> np.ndarray:
    """Any (3, n) LUT as (3, 256) uint8."""
    lut = np.asarray(lut)
    if lut.ndim != 2 or lut.shape[0] != 3:
        return color_lut((255, 255, 255))
    values = lut.astype(np.float64)
    if lut.dtype.itemsize > 1 or values.max(initial=0) > 255:
        values = values / 257.0
    if lut.shape[1] != 256:
        x = np.linspace(0, lut.shape[1] - 1, 256)
        values = np.stack([np.interp(x, np.arange(lut.shape[1]), v) for v in values])
    return np.clip(np.round(values), 0, 255).astype(np.uint8)


def _series_stack(
    tif: tifffile.TiffFile,
    series: tifffile.TiffPageSeries,
    index: int,
    info: FileInfo,
    settings: dict[str, Any] | None,
    ome: OmeImageFacts | None,
    tile: int,
) -> Stack:
    level, factor = _level(series, tile)
    key = level.keyframe
    if key is None:
        msg = f"{info.path}: series {index} has no readable image"
        raise DatasetError(msg)
    page_axes = str(key.axes)
    axes = str(level.axes)
    stacked_axes = axes[: len(axes) - len(page_axes)] if axes.endswith(page_axes) else ""
    stacked_shape = tuple(int(n) for n in level.shape[: len(stacked_axes)])
    if "Y" not in page_axes or "X" not in page_axes:
        msg = f"{info.path}: series {index} has no 2-D images (axes {axes})"
        raise DatasetError(msg)
    dtype = np.dtype(key.dtype)
    if dtype.kind == "c":
        msg = f"{info.path}: complex pixels ({dtype}) cannot be previewed"
        raise DatasetError(msg)
    samples = int(key.shape[page_axes.index("S")]) if "S" in page_axes else 1
    frame = (int(key.shape[page_axes.index("Y")]), int(key.shape[page_axes.index("X")]))

    c_pages = stacked_shape[stacked_axes.index("C")] if "C" in stacked_axes else 1
    t_size = stacked_shape[stacked_axes.index("T")] if "T" in stacked_axes else 1
    z_axes = [
        (i, n)
        for i, (a, n) in enumerate(zip(stacked_axes, stacked_shape, strict=True))
        if a not in "CT"
    ]
    z_size = math.prod(n for _, n in z_axes)
    channels = c_pages * samples
    pages = level.pages
    nplanes = math.prod(stacked_shape)
    contiguous = len(pages) < nplanes and level.dataoffset is not None and key.is_contiguous

    def locate(c: int, z: int, t: int) -> Where | None:
        coords = [0] * len(stacked_axes)
        if "C" in stacked_axes:
            coords[stacked_axes.index("C")] = c // samples
        if "T" in stacked_axes:
            coords[stacked_axes.index("T")] = t
        if z_axes:
            for (i, _), zi in zip(z_axes, np.unravel_index(z, [n for _, n in z_axes]), strict=True):
                coords[i] = int(zi)
        page = int(np.ravel_multi_index(coords, stacked_shape)) if stacked_axes else 0
        if page >= nplanes or (page >= len(pages) and not contiguous):
            return None
        return Where(page, c % samples if samples > 1 else None)

    def page_of(where: Where) -> tifffile.TiffPage | tifffile.TiffFrame:
        page = pages[where.page]
        if page is None:
            raise ValueError(f"page {where.page} cannot be read")
        return page

    def data_key(where: Where) -> object:
        if contiguous and where.page >= len(pages):
            return (where.page, where.sample)
        return (tuple(page_of(where).dataoffsets), where.sample)

    def read(where: Where) -> np.ndarray:
        if contiguous and where.page >= len(pages):
            return _read_contiguous(tif, level, key, where, page_axes)
        return _plane(page_of(where).asarray(), page_axes, where.sample)

    single = len(tif.series) == 1
    names = list(info.channel_names) if single and len(info.channel_names) == channels else []
    if not names and ome is not None and len(ome.channel_names) == channels:
        names = list(ome.channel_names)
    if not names and samples == 3 and c_pages == 1:
        names = ["R", "G", "B"]
    names = [n or f"C{i}" for i, n in enumerate(names)] or [f"C{i}" for i in range(channels)]
    ij = tif.imagej_metadata if tif.is_imagej and single else None
    if samples == 3 and c_pages == 1 and not (ij and ij.get("LUTs")):
        luts = [color_lut(c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    else:
        luts = _luts(channels, ij, settings, ome.colors if ome else ())
    pixel = (ome.pixel_size_um if ome else None) or info.pixel_size_um
    name = (ome.name if ome and ome.name else str(series.name or "")) if not single else ""
    return Stack(
        name=name or (f"series {index}" if not single else ""),
        sizes=(channels, z_size, t_size),
        frame=frame,
        dtype=dtype,
        locate=locate,
        key=data_key,
        read=read,
        names=names,
        luts=luts,
        last_t=t_size - 1,
        um_per_px=pixel * factor if pixel else None,
        z_axis="Z" if set(stacked_axes) - set("CT") <= {"Z"} else "plane",
    )


def _level(series: tifffile.TiffPageSeries, tile: int) -> tuple[tifffile.TiffPageSeries, float]:
    """The smallest pyramid level still at least ``tile`` wide, and its downsampling."""
    levels = list(series.levels) or [series]
    base = max(levels[0].shape[-2:]) if levels[0].shape else 1
    chosen = levels[0]
    for lvl in levels[1:]:
        if lvl.shape and min(lvl.shape[-2:]) >= tile and lvl.axes == levels[0].axes:
            chosen = lvl
    size = max(chosen.shape[-2:]) if chosen.shape else 1
    return chosen, base / size if size else 1.0


def _plane(array: np.ndarray, page_axes: str, sample: int | None) -> np.ndarray:
    """A decoded page reduced to its 2-D (Y, X) plane (one sample of an RGB page)."""
    arr = np.asarray(array)
    if arr.ndim != len(page_axes):
        arr = arr.reshape(arr.shape[-len(page_axes) :]) if arr.ndim > len(page_axes) else arr
    keep = [page_axes.index("Y"), page_axes.index("X")]
    if "S" in page_axes:
        arr = np.take(arr, sample or 0, axis=page_axes.index("S"))
        keep = [k - (k > page_axes.index("S")) for k in keep]
        page_axes = page_axes.replace("S", "")
    for ax in sorted((i for i in range(arr.ndim) if i not in keep), reverse=True):
        arr = np.take(arr, 0, axis=ax)  # other page axes (e.g. tiled depth): first
    return arr


def _read_contiguous(
    tif: tifffile.TiffFile,
    level: tifffile.TiffPageSeries,
    key: tifffile.TiffPage,
    where: Where,
    page_axes: str,
) -> np.ndarray:
    """One plane of an uncompressed contiguous ImageJ stack (one IFD, ``images=N``)."""
    dtype = np.dtype(key.dtype).newbyteorder(tif.byteorder)
    count = math.prod(key.shape)
    start = level.dataoffset
    if start is None:
        raise ValueError("not a contiguous stack")
    offset = int(start) + where.page * count * dtype.itemsize
    fh = tif.filehandle
    fh.seek(offset)
    data = np.frombuffer(fh.read(count * dtype.itemsize), dtype=dtype)
    if data.size != count:
        raise EOFError("plane past the end of the file")
    return _plane(data.reshape(key.shape), page_axes, where.sample)


def _unfinished_stacks(
    tif: tifffile.TiffFile, info: FileInfo, settings: dict[str, Any]
) -> list[Stack]:
    """A killed mmtiffsink writer's file: per series, its pages by the (c, z, t) each carries."""
    pages = tif.pages
    pages.useframes = True
    pages.set_keyframe(0)
    where: dict[int, dict[tuple[int, int, int], int]] = {}
    names: dict[int, str] = {}
    for index in range(len(pages)):
        page = pages[index]
        key, name = frame_tags(tif, page.offset) if page is not None else (None, None)
        if key is None:
            continue
        s = key[3] if len(key) > 3 else 0
        where.setdefault(s, {}).setdefault((key[0], key[1], key[2]), index)
        if name is not None:
            names[s] = name
    if not where:
        msg = f"{info.path}: an unfinished mmtiffsink file without any frame coordinate"
        raise DatasetError(msg)
    several = len(where) > 1
    return [
        _unfinished_stack(
            tif, info, settings, found, names.get(s) or (f"series {s}" if several else "")
        )
        for s, found in sorted(where.items())
    ]


def _unfinished_stack(
    tif: tifffile.TiffFile,
    info: FileInfo,
    settings: dict[str, Any],
    where: dict[tuple[int, int, int], int],
    name: str,
) -> Stack:
    """One series of an unfinished file: ``where`` maps each (c, z, t) to its page."""
    pages = tif.pages
    declared = settings.get("shape")
    seen = tuple(max(k[i] for k in where) + 1 for i in range(3))
    if isinstance(declared, list) and len(declared) == 3:
        sizes = tuple(max(int(d), s) for d, s in zip(declared, seen, strict=True))
    else:
        sizes = seen
    key = pages.first
    names = list(info.channel_names)[: sizes[0]]
    names += [f"C{i}" for i in range(len(names), sizes[0])]

    def locate(c: int, z: int, t: int) -> Where | None:
        index = where.get((c, z, t))
        return None if index is None else Where(index)

    def page_of(w: Where) -> tifffile.TiffPage | tifffile.TiffFrame:
        page = pages[w.page]
        if page is None:
            raise ValueError(f"page {w.page} cannot be read")
        return page

    def data_key(w: Where) -> object:
        return tuple(page_of(w).dataoffsets)

    def read(w: Where) -> np.ndarray:
        return _plane(page_of(w).asarray(), str(key.axes), None)

    return Stack(
        name=name,
        sizes=(sizes[0], sizes[1], sizes[2]),
        frame=(int(key.shape[0]), int(key.shape[1])),
        dtype=np.dtype(key.dtype),
        locate=locate,
        key=data_key,
        read=read,
        names=names,
        luts=_luts(sizes[0], None, settings),
        last_t=max(k[2] for k in where),
        um_per_px=info.pixel_size_um,
    )
