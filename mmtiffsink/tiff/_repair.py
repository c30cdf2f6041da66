"""Finish a file left unfinished by a killed process or a failed writer."""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, final

import numpy as np

from ..errors import ConfigError, DatasetError
from ..limits import MAX_PLANES
from ._appender import pack, rows_per_strip
from ._codecs import Codec
from ._file import IJTiffFile
from ._io import FileIO
from ._profiles import Profile
from ._settings import Settings
from ._tags import PLANE_TAG, SETTINGS_TAG, Layout, decode_values

__all__ = ["RepairReport", "repair"]

_KINDS = {1: "u", 2: "i", 3: "f"}


@final
@dataclass(frozen=True)
class RepairReport:
    """What :func:`repair` found and did."""

    path: Path
    frames: int
    """Frames recovered from the file."""
    shape: tuple[int, int, int]
    """The (C, Z, T) of the finished hyperstack."""
    blank_planes: int
    """Planes that were never written and now hold a blank frame."""
    already_finished: bool
    """The file was already a finished hyperstack and was left unchanged."""


def _read(io: FileIO, offset: int, size: int) -> bytes:
    data = io.read(offset, size)
    if len(data) != size:
        msg = f"truncated TIFF: {size} bytes at offset {offset} run past the end of the file"
        raise DatasetError(msg)
    return data


def repair(path: str | os.PathLike[str]) -> RepairReport:
    """Turn a file left by a killed process into the finished hyperstack, in place.

    Every frame whose IFD was linked when the process died is kept, with its (c, z, t);
    planes never written are filled with a blank frame (with a warning) and the ImageJ
    description is written from the settings stored in the file. A finished file is left
    unchanged.

    Raises
    ------
    DatasetError
        The file is not a TIFF written by mmtiffsink, or holds no frame.

    """
    path = Path(path)
    try:
        io = FileIO(path, "read")
    except OSError as exc:
        msg = f"cannot open {path}: {exc.strerror or exc}"
        raise DatasetError(msg) from exc
    try:
        size = io.size()
        head = io.read(0, 16)
        if len(head) < 8 or head[:2] != b"II" or head[2:4] not in (b"*\0", b"+\0"):
            msg = f"{path} is not a little-endian TIFF written by mmtiffsink"
            raise DatasetError(msg)
        bigtiff = head[2:4] == b"+\0"
        lay = Layout(bigtiff=bigtiff)

        def read(off: int, n: int) -> bytes:
            return _read(io, off, n)

        (offset,) = struct.unpack_from("<Q" if bigtiff else "<I", head, lay.first_ifd_pointer)
        link_pos = lay.first_ifd_pointer
        planes: dict[tuple[int, int, int], tuple[int, int]] = {}
        arrival: list[tuple[int, int, int]] = []
        first: dict[int, tuple[int, bytes]] | None = None
        settings: dict[str, Any] = {}
        seen: set[int] = set()
        while offset and offset not in seen and offset < size:
            seen.add(offset)
            count_size = 8 if bigtiff else 2
            (n,) = struct.unpack("<Q" if bigtiff else "<H", read(offset, count_size))
            ifd_size = lay.ifd_size(n)
            entries, nxt = lay.parse_ifd(read(offset, ifd_size))
            values = {lay.entry_code(e): lay.entry_value(e, read) for e in entries}
            if first is None:
                first = values
                desc = values.get(270)
                if desc is not None and desc[1].startswith(b"ImageJ="):
                    plane_count = len(seen)
                    return RepairReport(path, plane_count, (0, 0, 0), 0, True)
            if PLANE_TAG not in values:
                msg = f"{path} has an IFD without mmtiffsink's plane tag; it was not written by us"
                raise DatasetError(msg)
            c, z, t = (int(v) for v in decode_values(*values[PLANE_TAG]))
            planes[(c, z, t)] = (offset, ifd_size)
            arrival.append((c, z, t))
            if SETTINGS_TAG in values:
                settings = json.loads(values[SETTINGS_TAG][1].rstrip(b"\0").decode())
            link_pos = offset + ifd_size - lay.offset_size
            offset = nxt
    finally:
        io.close()
    if first is None:
        msg = f"{path} holds no frame: nothing to repair"
        raise DatasetError(msg)
    width = int(decode_values(*first[256])[0])
    height = int(decode_values(*first[257])[0])
    bits = int(decode_values(*first[258])[0])
    kind = _KINDS[int(decode_values(*first[339])[0])] if 339 in first else "u"
    dtype = np.dtype(f"<{kind}{bits // 8}")
    compression = int(decode_values(*first[259])[0])
    try:
        codec = Codec.from_tiff(compression)
    except ConfigError:
        msg = f"{path}: unexpected compression {compression}"
        raise DatasetError(msg) from None
    profile = Profile.get("bigtiff" if bigtiff else "imagej")
    stored = Settings.from_json(settings)
    slots_at = _slots_start(first, planes, stored, codec, lay, height * width * dtype.itemsize)
    tif = _resume(
        path,
        profile=profile,
        frame_shape=(height, width),
        dtype=dtype,
        codec=codec,
        settings=stored,
        planes=planes,
        arrival=arrival,
        link_pos=link_pos,
        end=size,
        slots_at=slots_at,
    )
    tif.close()
    return RepairReport(path, len(planes), tif.shape, tif.blank_planes, False)


def _resume(
    path: Path,
    *,
    profile: Profile,
    frame_shape: tuple[int, int],
    dtype: np.dtype[Any],
    codec: Codec,
    settings: Settings,
    planes: dict[tuple[int, int, int], tuple[int, int]],
    arrival: list[tuple[int, int, int]],
    link_pos: int,
    end: int,
    slots_at: int | None,
) -> IJTiffFile:
    """Re-open a file left unfinished so that its ``close`` finishes it."""
    tif = IJTiffFile.__new__(IJTiffFile)
    tif._profile = profile
    tif._layout = Layout(bigtiff=profile.bigtiff)
    tif._codec = codec
    tif._dtype = dtype
    tif._cast = "exact"
    tif._max_planes = MAX_PLANES
    tif._negative = any(min(coord) < 0 for coord in planes)
    tif._settings = settings
    tif._extratags = ()
    tif._max_inflight = None
    tif.path = Path(path)
    slots = settings.shape if slots_at is not None else None
    tif._setup(FileIO(tif.path, "update"), end=end, link_pos=link_pos, slots=slots)
    app = tif._app
    app.slots_at = slots_at
    app.frame_shape = frame_shape
    app.rows_per_strip = rows_per_strip(
        frame_shape[0], compressed=codec.compressed, slots=slots is not None
    )
    app.planes = {coord: pack(*where) for coord, where in planes.items()}
    app.arrival = list(arrival)
    for coord in planes:
        tif._extend(coord)
    return tif


def _slots_start(
    first: dict[int, tuple[int, bytes]],
    planes: dict[tuple[int, int, int], tuple[int, int]],
    settings: Settings,
    codec: Codec,
    lay: Layout,
    frame_bytes: int,
) -> int | None:
    """Where the plane slots of an uncompressed imagej-profile file start (None: no slots).

    Such files keep one slot per plane, in plane order, laid out at the first frame; the
    first IFD's single strip and its (c, z, t) give the start.
    """
    shape = settings.shape
    if lay.bigtiff or codec.compressed or shape is None or 273 not in first:
        return None
    offsets = decode_values(*first[273])
    if len(offsets) != 1:
        return None
    c, z, t = (int(v) for v in decode_values(*first[PLANE_TAG]))
    index = c + shape[0] * (z + shape[1] * t)
    start = int(offsets[0]) - index * frame_bytes
    if start < lay.header_size or any(
        not (0 <= p[0] < shape[0] and 0 <= p[1] < shape[1] and 0 <= p[2] < shape[2]) for p in planes
    ):
        return None
    return start
