"""Where the planes of a TIFF are, and how to read one: what a preview needs of a file.

:func:`stacks` describes each image series of a file as a :class:`Stack`: its (C, Z, T), the
page (and RGB sample) of each plane, channel names and colours (ImageJ LUTs, the mmtiffsink
writer's settings, OME-XML, or ImageJ's defaults) and the pixel size. Nothing is decoded here;
``Stack.read`` decodes one page when asked. A file left unfinished by a killed mmtiffsink
writer is described from the (c, z, t) each of its IFDs carries (tag 65421), one stack per
series when its frames belong to several (an OME-TIFF of several positions).
"""

from __future__ import annotations

import itertools
import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, final

import numpy as np
import tifffile

from mmtiffsink.errors import DatasetError
from mmtiffsink.limits import MAX_PLANES
from mmtiffsink.tiff import OmeImageFacts, color_lut, colormap_lut, parse_ome
from mmtiffsink.tiff.format import IfdWalk, frame_tags

from ._info import FileInfo
from ._info import _settings as settings_of

__all__ = ["MAX_CHANNELS", "READ_ERRORS", "Stack", "Where", "stacks"]

MAX_CHANNELS = 16
"""Channels a preview shows at most (the first ones): names and colours are made for these
only, so a file declaring 100,000 channels costs what 16 cost."""

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
    """Decode one plane: a 2-D array ((Y, X, 3) for an RGB stack)."""
    names: list[str]
    luts: list[np.ndarray]
    last_t: int
    um_per_px: float | None
    z_axis: str = "Z"
    blank: set[object] = field(default_factory=set)
    """Keys of planes found blank (all zero), so each is decoded once."""
    rgb: bool = False
    """Colour images (Photometric RGB): ``read`` gives (Y, X, 3), a channel is one RGB image."""
    page_bytes: int = 0
    """Bytes one page decodes to (all its samples), known before decoding it."""
    zs: Callable[[int, int], list[int]] | None = None
    """The z of the planes stored for (c, t), when fewer than ``sizes[1]`` (an unfinished file);
    None: every z."""

    @property
    def shown(self) -> int:
        """Channels drawn: the first :data:`MAX_CHANNELS`."""
        return min(self.sizes[0], MAX_CHANNELS)


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
    if settings is not None:  # the file's own settings: checked, as anything read from a file
        try:
            wanted = settings.get("colors")
            if isinstance(wanted, list) and wanted:
                given = [color_lut(c) for c in wanted[:count]]
                return given + _defaults(count, start=len(given))[: count - len(given)]
            if isinstance(settings.get("colormap"), str) and settings["colormap"]:
                return [colormap_lut(settings["colormap"])] * count
        except (ValueError, TypeError, ImportError):
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
    rgb = _is_rgb(key, page_axes)
    if rgb:  # a channel is one colour image, not three planes
        samples = 1

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
        if rgb:
            return _colour_plane(page_of(where).asarray(), page_axes)
        return _plane(page_of(where).asarray(), page_axes, where.sample)

    single = len(tif.series) == 1
    shown = min(channels, MAX_CHANNELS)
    names = list(info.channel_names) if single and len(info.channel_names) == channels else []
    if not names and ome is not None and len(ome.channel_names) == channels:
        names = list(ome.channel_names)
    if not names and samples == 3 and c_pages == 1:
        names = ["R", "G", "B"]
    names = [n or f"C{i}" for i, n in enumerate(names[:shown])] or [f"C{i}" for i in range(shown)]
    ij = tif.imagej_metadata if tif.is_imagej and single else None
    if rgb:  # the pixels carry their colours: a white label, no LUT applied
        luts = [color_lut((255, 255, 255))] * shown
    elif samples == 3 and c_pages == 1 and not (ij and ij.get("LUTs")):
        luts = [color_lut(c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    else:
        luts = _luts(shown, ij, settings, ome.colors[:shown] if ome else ())
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
        rgb=rgb,
        page_bytes=_page_bytes(key),
    )


def _page_bytes(page: tifffile.TiffPage) -> int:
    """Bytes a page decodes to, from its tags alone (no pixel read)."""
    return math.prod(int(n) for n in page.shape) * np.dtype(page.dtype or "uint8").itemsize


def _is_rgb(page: tifffile.TiffPage, page_axes: str) -> bool:
    """Whether a page is a colour image of three samples (Photometric RGB)."""
    if "S" not in page_axes or int(page.shape[page_axes.index("S")]) != 3:
        return False
    return bool(page.photometric == tifffile.PHOTOMETRIC.RGB)


def _colour_plane(array: np.ndarray, page_axes: str) -> np.ndarray:
    """A decoded RGB page as (Y, X, 3), whatever its sample layout (contiguous or planar)."""
    arr = np.asarray(array)
    if arr.ndim > len(page_axes):
        arr = arr.reshape(arr.shape[-len(page_axes) :])
    order = [page_axes.index("Y"), page_axes.index("X"), page_axes.index("S")]
    rest = [i for i in range(arr.ndim) if i not in order]
    arr = np.transpose(arr, [*rest, *order])
    for _ in rest:
        arr = arr[0]  # other page axes (e.g. tiled depth): first
    return arr


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
    with open(info.path, "rb") as fh:  # the frames info found linked, not those linked since
        walk = IfdWalk.growing(fh)
        tags = [frame_tags(walk, ifd) for ifd in itertools.islice(walk, info.planes)]
    for index, (key, name) in enumerate(tags):
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
    seen = tuple(max(k[i] for k in where) + 1 for i in range(3))
    declared = _declared_shape(settings.get("shape"))
    sizes = seen if declared is None else tuple(map(max, declared, seen))
    key = pages.first
    shown = min(sizes[0], MAX_CHANNELS)
    names = list(info.channel_names)[:shown]
    names += [f"C{i}" for i in range(len(names), shown)]
    by_ct: dict[tuple[int, int], list[int]] = {}
    for c, z, t in sorted(where):
        by_ct.setdefault((c, t), []).append(z)

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

    rgb = _is_rgb(key, str(key.axes))

    def read(w: Where) -> np.ndarray:
        if rgb:
            return _colour_plane(page_of(w).asarray(), str(key.axes))
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
        luts=[color_lut((255, 255, 255))] * shown if rgb else _luts(shown, None, settings),
        last_t=max(k[2] for k in where),
        um_per_px=info.pixel_size_um,
        rgb=rgb,
        page_bytes=_page_bytes(key),
        zs=lambda c, t: by_ct.get((c, t), []),
    )


def _declared_shape(value: object) -> tuple[int, int, int] | None:
    """An unfinished file's declared (C, Z, T), if it is three sizes within MAX_PLANES."""
    if not isinstance(value, list) or len(value) != 3:
        return None
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in value):
        return None
    if math.prod(value) > MAX_PLANES:
        return None
    return value[0], value[1], value[2]
