"""What a frame of an unfinished mmtiffsink file says of itself: its plane and its series.

Read from the IFD's raw entries through tifffile's file handle (tifffile's light
``TiffFrame`` does not parse private tags): tag 65421 holds the frame's (c, z, t), or
(c, z, t, s) in series s > 0 of an OME-TIFF of several images; tag 65425 its series' name
and stage label as JSON (see ``tiff/_series.py``).
"""

from __future__ import annotations

import json
import struct

import tifffile

__all__ = ["PLANE_TAG", "SERIES_TAG", "frame_tags"]

PLANE_TAG = 65421
SERIES_TAG = 65425
_FORMATS = {4: "I", 9: "i", 2: "s"}  # LONG, SLONG, ASCII
_MAX_LABEL = 1 << 20


def frame_tags(tif: tifffile.TiffFile, offset: int) -> tuple[tuple[int, ...] | None, str | None]:
    """The plane key and series name of the IFD at ``offset`` (None for what it lacks)."""
    fmt = tif.tiff
    fh = tif.filehandle
    order = fmt.byteorder
    fh.seek(offset)
    (count,) = struct.unpack(fmt.tagnoformat, fh.read(fmt.tagnosize))
    entries = fh.read(count * fmt.tagsize)
    key: tuple[int, ...] | None = None
    name: str | None = None
    for i in range(len(entries) // fmt.tagsize):
        entry = entries[i * fmt.tagsize : (i + 1) * fmt.tagsize]
        code, dtype = struct.unpack(order + "HH", entry[:4])
        if code not in (PLANE_TAG, SERIES_TAG) or dtype not in _FORMATS:
            continue
        size = fmt.offsetsize
        (n,) = struct.unpack(order + fmt.offsetformat[-1], entry[4 : 4 + size])
        nbytes = n if dtype == 2 else 4 * n
        if (code == PLANE_TAG and n not in (3, 4)) or nbytes > _MAX_LABEL:
            continue
        value = entry[4 + size :]
        if nbytes > size:
            (pointer,) = struct.unpack(order + fmt.offsetformat[-1], value)
            fh.seek(pointer)
            value = fh.read(nbytes)
        value = value[:nbytes]
        if len(value) != nbytes:
            continue
        if code == PLANE_TAG:
            key = tuple(int(v) for v in struct.unpack(f"{order}{n}{_FORMATS[dtype]}", value))
        elif dtype == 2:
            try:
                label = json.loads(value.rstrip(b"\0").decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                continue
            if isinstance(label, dict) and isinstance(label.get("name"), str):
                name = label["name"]
    return key, name
