"""Small hostile TIFFs: absurd counts and sizes in files of a few kB (DESIGN.md section 9).

Each maker writes one file and returns its path. They are shared by ``test_hostile_files.py``
and by whoever measures the tools by hand (``python -m tests.hostile_support DIR`` writes them
all into DIR).
"""

from __future__ import annotations

import json
import struct
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tifffile

from mmtiffsink.tiff.format import PLANE_TAG, SETTINGS_TAG

__all__ = [
    "HOSTILE",
    "imagej_channels",
    "ome_sizes",
    "settings_file",
    "zstd_bomb",
]


def ome_sizes(path: Path, c: int, z: int, t: int) -> Path:
    """A one-pixel OME-TIFF whose OME-XML declares C x Z x T planes (one TiffData)."""
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">'
        '<Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint8" '
        f'SizeX="1" SizeY="1" SizeC="{c}" SizeZ="{z}" SizeT="{t}">'
        '<Channel ID="Channel:0:0" SamplesPerPixel="1"/>'
        '<TiffData IFD="0" PlaneCount="1"/></Pixels></Image></OME>'
    )
    tifffile.imwrite(path, np.zeros((1, 1), np.uint8), description=xml, metadata=None)
    return path


def imagej_channels(path: Path, channels: int) -> Path:
    """A contiguous ImageJ stack of ``channels`` 2x2 uint8 channels: one IFD, the pixels of
    the other planes right after the first's (as ImageJ writes a stack of ``images=N``)."""
    desc = f"ImageJ=1.11a\nimages={channels}\nchannels={channels}\nhyperstack=true\n"
    tifffile.imwrite(path, np.ones((2, 2), np.uint8), description=desc, metadata=None)
    rest = np.arange(4 * (channels - 1), dtype=np.uint32).astype(np.uint8)
    with path.open("ab") as fh:  # tifffile writes the first plane's pixels last
        fh.write(rest.tobytes())
    return path


def _raw_tiff(path: Path, tags: list[tuple[int, int, int, bytes | int]], data: bytes) -> Path:
    """A classic little-endian TIFF of one IFD: ``tags`` as (code, type, count, value), the
    pixel block ``data`` right after the header (StripOffsets points there)."""
    sizes = {2: 1, 3: 2, 4: 4, 7: 1}
    start = 8
    ifd_at = start + len(data) + (len(data) & 1)
    entries = sorted([*tags, (273, 4, 1, start), (279, 4, 1, len(data))])
    extra = bytearray()
    extra_at = ifd_at + 2 + 12 * len(entries) + 4
    packed = bytearray(struct.pack("<H", len(entries)))
    for code, dtype, count, value in entries:
        if isinstance(value, int):
            fmt = {3: "<HH", 4: "<I"}[dtype]
            field = struct.pack(fmt, value, 0) if dtype == 3 else struct.pack(fmt, value)
        elif len(value) <= 4:
            field = value.ljust(4, b"\0")
        else:
            field = struct.pack("<I", extra_at + len(extra))
            extra += value + (b"\0" if len(value) & 1 else b"")
        assert isinstance(value, int) or len(value) == count * sizes[dtype]
        packed += struct.pack("<HHI", code, dtype, count) + field
    packed += struct.pack("<I", 0)
    body = b"II*\0" + struct.pack("<I", ifd_at) + data + b"\0" * (ifd_at - start - len(data))
    path.write_bytes(body + bytes(packed) + bytes(extra))
    return path


def zstd_bomb(path: Path, side: int) -> Path:
    """A ``side`` x ``side`` uint16 TIFF of one zstd strip of RLE blocks: a few hundred kB
    that decode to ``2 * side**2`` bytes."""
    total = 2 * side * side
    block = 1 << 17  # zstd's largest block
    frame = bytearray(struct.pack("<IB", 0xFD2FB528, 0xE0) + struct.pack("<Q", total))
    left = total
    while left:
        n = min(block, left)
        left -= n
        header = (1 if not left else 0) | (1 << 1) | (n << 3)  # last?, RLE, size
        frame += struct.pack("<I", header)[:3] + b"\0"
    tags: list[tuple[int, int, int, bytes | int]] = [
        (256, 4, 1, side),
        (257, 4, 1, side),
        (258, 3, 1, 16),
        (259, 3, 1, 50000),
        (262, 3, 1, 1),
        (277, 3, 1, 1),
        (278, 4, 1, side),
    ]
    return _raw_tiff(path, tags, bytes(frame))


def settings_file(path: Path, settings: str, *, frames: int = 1) -> Path:
    """An unfinished mmtiffsink file (plane tags, no ImageJ/OME description) whose settings tag
    holds ``settings`` verbatim."""
    with tifffile.TiffWriter(path) as tif:
        for i in range(frames):
            extratags = [(PLANE_TAG, 4, 3, (0, 0, i), True)]
            if i == 0:
                extratags.append((SETTINGS_TAG, 2, 0, settings, True))
            tif.write(np.full((4, 4), i + 1, np.uint16), metadata=None, extratags=extratags)
    return path


HOSTILE: dict[str, Callable[[Path], Path]] = {
    "ome-1e8": lambda d: ome_sizes(d / "ome-1e8.tif", 100, 1000, 1000),
    "ome-1e9": lambda d: ome_sizes(d / "ome-1e9.tif", 1000, 1000, 1000),
    "imagej-c20000": lambda d: imagej_channels(d / "imagej-c20000.tif", 20_000),
    "imagej-c100000": lambda d: imagej_channels(d / "imagej-c100000.tif", 100_000),
    "zstd-60000": lambda d: zstd_bomb(d / "zstd-60000.tif", 60_000),
    "zstd-30000": lambda d: zstd_bomb(d / "zstd-30000.tif", 30_000),
    "json-deep": lambda d: settings_file(d / "json-deep.tif", "[" * 100_000 + "]" * 100_000),
    "shape-1e6": lambda d: settings_file(
        d / "shape-1e6.tif", json.dumps({"shape": [1e6, 1e6, 1e6]})
    ),
    "colors-dict": lambda d: settings_file(d / "colors-dict.tif", json.dumps({"colors": {"a": 1}})),
}
"""Name -> maker of each hostile file (given a folder, returns the file it wrote)."""


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    folder.mkdir(parents=True, exist_ok=True)
    for name, make in HOSTILE.items():
        made = make(folder)
        print(f"{name}: {made} ({made.stat().st_size} bytes)")
