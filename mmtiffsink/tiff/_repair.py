"""Finish a file left unfinished by a killed process or a failed writer."""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, final

import numpy as np

from ..errors import DatasetError
from ._codecs import parse_compression
from ._file import IJTiffFile
from ._tags import PLANE_TAG, SETTINGS_TAG, Layout, decode_values

__all__ = ["RepairReport", "repair"]

_CODECS = {1: None, 8: "deflate", 50000: "zstd"}
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


def _read(fd: int, offset: int, size: int) -> bytes:
    data = os.pread(fd, size, offset)
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
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        head = os.pread(fd, 16, 0)
        if len(head) < 8 or head[:2] != b"II" or head[2:4] not in (b"*\0", b"+\0"):
            msg = f"{path} is not a little-endian TIFF written by mmtiffsink"
            raise DatasetError(msg)
        bigtiff = head[2:4] == b"+\0"
        lay = Layout(bigtiff=bigtiff)

        def read(off: int, n: int) -> bytes:
            return _read(fd, off, n)

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
        os.close(fd)
    if first is None:
        msg = f"{path} holds no frame: nothing to repair"
        raise DatasetError(msg)
    width = int(decode_values(*first[256])[0])
    height = int(decode_values(*first[257])[0])
    bits = int(decode_values(*first[258])[0])
    kind = _KINDS[int(decode_values(*first[339])[0])] if 339 in first else "u"
    dtype = np.dtype(f"<{kind}{bits // 8}")
    compression = int(decode_values(*first[259])[0])
    if compression not in _CODECS:
        msg = f"{path}: unexpected compression {compression}"
        raise DatasetError(msg)
    tif = IJTiffFile._resume(
        path,
        bigtiff=bigtiff,
        frame_shape=(height, width),
        dtype=dtype,
        codec=parse_compression(_CODECS[compression]),
        settings=settings,
        planes=planes,
        arrival=arrival,
        link_pos=link_pos,
        end=size,
    )
    tif.close()
    return RepairReport(path, len(planes), tif.shape, tif._blank_planes, False)
