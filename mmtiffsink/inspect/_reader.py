"""``mmtiffsink.open``: a hyperstack file as a lazy, read-only (T, Z, C, Y, X) array.

Files of this writer, finished or still being written (or left by a killed writer), are read
from the (c, z, t) each IFD carries (:class:`~mmtiffsink.tiff.OwnFile`); other writers'
ImageJ, OME and plain TIFFs through tifffile's series, as far as their metadata go
(:class:`ForeignFile`). Both are :class:`~mmtiffsink.tiff.Hyperstack` views.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, final

import numpy as np
import tifffile

from mmtiffsink.errors import ConfigError, DatasetError
from mmtiffsink.limits import MAX_PLANES
from mmtiffsink.tiff import Hyperstack, OwnFile, is_own_file, parse_ome

from ._info import _calibration, _cause, _channel_names, _first_line
from ._tifflog import tifffile_log

__all__ = ["ForeignFile", "open_hyperstack"]

_MAX_FRAME_BYTES = 1 << 30  # one decoded plane of another writer's file
_READ_ERRORS = (ValueError, RuntimeError, OSError, EOFError, IndexError, KeyError, struct.error)


def open_hyperstack(path: str | os.PathLike[str], series: int = 0) -> Hyperstack:
    """Open a hyperstack TIFF as a lazy, read-only (T, Z, C, Y, X) array.

    Exported as ``mmtiffsink.open``.

    Parameters
    ----------
    path
        A TIFF file: one of this writer's (finished, still being written, or left by a killed
        writer) or another writer's ImageJ, OME or plain TIFF.
    series
        The image series (an OME Image, e.g. a position), from 0.

    Returns
    -------
    Hyperstack
        A context manager with ``shape`` (T, Z, C, Y, X) (plus S for RGB), ``dims``,
        ``dtype``, numpy indexing (``h[t, z, c]`` is a plane), ``written``,
        ``channel_names``, ``colors``, ``pixel_size_um``, ``z_step_um``, ``interval_s``,
        ``refresh()`` and ``to_dask()``.

    Raises
    ------
    DatasetError
        Missing, unreadable, not a TIFF, no such series, or dimensions too large to read.
    ConfigError
        ``series`` is not an integer from 0.

    Examples
    --------
    >>> with mmtiffsink.open("exp1_A1.tif") as h:
    ...     h.shape, h.channel_names
    ...     plane = h[0, 2, 1]          # t=0, z=2, c=1
    ...     h.refresh()                 # frames written since

    """
    p = Path(path)
    if isinstance(series, bool) or not isinstance(series, int) or series < 0:
        msg = f"series is an integer from 0, got {series!r}"
        raise ConfigError(msg)
    if p.is_dir():
        msg = f"{p}: is a directory, not a TIFF file"
        raise DatasetError(msg)
    if is_own_file(p):
        return OwnFile(p, series)
    return ForeignFile(p, series)


@final
@dataclass(frozen=True)
class _Loc:
    """Where a plane of another writer's file lies: equal for identical data."""

    key: Hashable
    page: int = field(compare=False)


@final
class ForeignFile(Hyperstack):
    """Another writer's TIFF, read through tifffile's series (``refresh`` re-opens it).

    Leading axes other than T, Z and C (a plain stack's ``I``, ``Q``, ...) are counted as Z,
    as ImageJ shows a plain stack as slices.
    """

    def __init__(self, path: str | os.PathLike[str], series: int = 0) -> None:
        super().__init__(path)
        self._series = series
        self._tif: tifffile.TiffFile | None = None
        self._stamp: tuple[int, int] | None = None
        self._pages: Any = None
        self._stacked: tuple[str, tuple[int, ...]] = ("", ())
        self._page_axes = "YX"
        self._contiguous: tuple[int, int] | None = None  # data offset, planes
        try:
            self._load()
        except BaseException:
            self.close()
            raise

    def _release(self) -> None:
        if self._tif is not None:
            self._tif.close()
            self._tif = None

    def _load(self) -> bool:
        try:
            stat = self.path.stat()
        except OSError as exc:
            msg = f"{self.path}: cannot read it ({exc.strerror or exc})"
            raise DatasetError(msg) from None
        stamp = (stat.st_size, stat.st_mtime_ns)
        if stamp == self._stamp:
            return False
        self._release()
        self._cache.clear()
        with tifffile_log():
            try:
                tif = tifffile.TiffFile(self.path)
            except tifffile.TiffFileError as exc:
                msg = f"{self.path}: not a TIFF file tifffile can read ({_first_line(str(exc))})"
                raise DatasetError(msg) from None
            except _READ_ERRORS as exc:
                msg = f"{self.path}: corrupt or truncated TIFF ({_cause(exc)})"
                raise DatasetError(msg) from None
            self._tif = tif
            try:
                self._describe(tif)
            except DatasetError:
                raise
            except _READ_ERRORS as exc:
                msg = f"{self.path}: corrupt or truncated TIFF ({_cause(exc)})"
                raise DatasetError(msg) from None
        self._stamp = stamp
        self._finished = True
        return True

    def _describe(self, tif: tifffile.TiffFile) -> None:
        all_series = tif.series
        if self._series >= len(all_series):
            msg = f"{self.path} has {len(all_series)} series; there is no series {self._series}"
            raise DatasetError(msg)
        series = all_series[self._series]
        key = series.keyframe
        if key is None:
            msg = f"{self.path}: series {self._series} has no readable image"
            raise DatasetError(msg)
        page_axes = str(key.axes)
        if page_axes not in ("YX", "YXS", "SYX"):
            msg = f"{self.path}: pages of axes {page_axes} are not 2-D images"
            raise DatasetError(msg)
        axes = str(series.axes)
        shape = tuple(int(n) for n in series.shape)
        stacked = axes[: len(axes) - len(page_axes)] if axes.endswith(page_axes) else ""
        stacked_shape = shape[: len(stacked)]
        planes = math.prod(stacked_shape)
        if planes > MAX_PLANES:
            msg = f"{self.path} declares {planes} planes, more than {MAX_PLANES} can be read"
            raise DatasetError(msg)
        page_shape = tuple(int(n) for n in key.shape)
        frame = (page_shape[1], page_shape[2], page_shape[0]) if page_axes == "SYX" else page_shape
        dtype = np.dtype(key.dtype)
        if math.prod(frame) * dtype.itemsize > _MAX_FRAME_BYTES:
            msg = f"{self.path}: planes of {frame} {dtype} are too large to read"
            raise DatasetError(msg)
        sizes = {"T": 1, "Z": 1, "C": 1}
        for ax, n in zip(stacked, stacked_shape, strict=True):
            if ax in ("T", "C"):
                sizes[ax] = n
            else:
                sizes["Z"] *= n
        pages = series.pages
        self._contiguous = None
        if len(pages) < planes and series.dataoffset is not None and key.is_contiguous:
            self._contiguous = (int(series.dataoffset), planes)
        self._pages = pages
        self._stacked = (stacked, stacked_shape)
        self._page_axes = page_axes
        self._dtype = dtype.newbyteorder("=")
        self._frame = frame
        self._sizes = (sizes["T"], sizes["Z"], sizes["C"])
        self._written = self._written_planes(len(pages), planes)

        ij = tif.imagej_metadata if tif.is_imagej else None
        first = tif.pages.first
        pixel, z_step, interval = _calibration(first, ij, None, True)
        names = _channel_names(ij, None, sizes["C"], True)
        colors: list[tuple[int, int, int]] | None = None
        luts = list(ij.get("LUTs") or []) if ij else []
        if len(luts) >= sizes["C"]:
            colors = [_lut_color(np.asarray(lut)) for lut in luts[: sizes["C"]]]
        if tif.is_ome and tif.ome_metadata:
            images = parse_ome(tif.ome_metadata)
            image = images[self._series] if self._series < len(images) else None
            if image is not None:
                names = list(image.channel_names) if any(image.channel_names) else names
                if image.colors and all(c is not None for c in image.colors):
                    colors = [c for c in image.colors if c is not None]
                pixel = image.pixel_size_um or pixel
        self._channel_names = names
        self._colors = colors
        self._pixel_size_um, self._z_step_um, self._interval_s = pixel, z_step, interval

    def _written_planes(self, stored: int, planes: int) -> np.ndarray:
        """(T, Z, C) booleans: the planes whose page (or contiguous block) is in the file."""
        present = np.zeros(planes, dtype=bool)
        present[: stored if self._contiguous is None else planes] = True
        if self._contiguous is not None:
            offset, _ = self._contiguous
            plane_bytes = math.prod(self._frame) * self._dtype.itemsize
            room = max(0, ((self._stamp or (0, 0))[0] or self.path.stat().st_size) - offset)
            present[room // max(plane_bytes, 1) :] = False
        t, z, c = self._sizes
        order = [self._index(ti, zi, ci) for ti in range(t) for zi in range(z) for ci in range(c)]
        return present[np.asarray(order, dtype=np.int64)].reshape(t, z, c)

    def _index(self, t: int, z: int, c: int) -> int:
        """The page index of plane (t, z, c) in the series' stacked axes."""
        stacked, shape = self._stacked
        if not stacked:
            return 0
        coords = [0] * len(stacked)
        pairs = enumerate(zip(stacked, shape, strict=True))
        others = [(i, n) for i, (a, n) in pairs if a not in "TC"]
        for i, a in enumerate(stacked):
            if a == "T":
                coords[i] = t
            elif a == "C":
                coords[i] = c
        if others:
            rest = np.unravel_index(z, [n for _, n in others])
            for (i, _), v in zip(others, rest, strict=True):
                coords[i] = int(v)
        return int(np.ravel_multi_index(coords, shape))

    def _where(self, t: int, z: int, c: int) -> Hashable | None:
        if not self._written[t, z, c]:
            return None
        index = self._index(t, z, c)
        if self._contiguous is not None and index >= len(self._pages):
            return _Loc(("contiguous", index), index)
        page = self._pages[index]
        if page is None:
            return None
        return _Loc(tuple(int(o) for o in page.dataoffsets), index)

    def _decode(self, where: Hashable) -> np.ndarray:
        assert isinstance(where, _Loc) and self._tif is not None
        try:
            if self._contiguous is not None and where.page >= len(self._pages):
                return self._read_contiguous(where.page)
            with tifffile_log():
                data = np.asarray(self._pages[where.page].asarray())
        except _READ_ERRORS as exc:
            msg = f"{self.path}: plane {where.page} cannot be read ({_cause(exc)})"
            raise DatasetError(msg) from None
        data = data.reshape(data.shape[-len(self._page_axes) :])
        if self._page_axes == "SYX":
            data = np.moveaxis(data, 0, -1)
        return np.ascontiguousarray(data, dtype=self._dtype)

    def _read_contiguous(self, index: int) -> np.ndarray:
        assert self._tif is not None and self._contiguous is not None
        dtype = self._dtype.newbyteorder(self._tif.byteorder)
        count = math.prod(self._frame)
        offset = self._contiguous[0] + index * count * dtype.itemsize
        fh = self._tif.filehandle
        fh.seek(offset)
        raw = fh.read(count * dtype.itemsize)
        if len(raw) != count * dtype.itemsize:
            msg = f"{self.path}: plane {index} lies past the end of the file"
            raise DatasetError(msg)
        data = np.frombuffer(raw, dtype=dtype).reshape(
            (self._frame[2], *self._frame[:2]) if self._page_axes == "SYX" else self._frame
        )
        if self._page_axes == "SYX":
            data = np.moveaxis(data, 0, -1)
        return np.ascontiguousarray(data, dtype=self._dtype)


def _lut_color(lut: np.ndarray) -> tuple[int, int, int]:
    """The colour an ImageJ LUT ends at, 0-255."""
    if lut.ndim != 2 or lut.shape[0] != 3 or lut.shape[1] == 0:
        return (255, 255, 255)
    end = lut[:, -1].astype(np.float64)
    if lut.dtype.itemsize > 1 or end.max(initial=0) > 255:
        end = end / 257.0
    r, g, b = (round(min(max(float(v), 0.0), 255.0)) for v in end)
    return r, g, b
