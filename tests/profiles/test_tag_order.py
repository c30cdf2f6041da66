"""Every IFD of every file we write lists its entries in ascending tag order (TIFF 6.0, p. 15).

libtiff (``tiffinfo``, ``tiffcp``) and GDAL warn "tags are not sorted in ascending order"
otherwise. The case that broke: per-frame metadata, the first frame saved not plane (0, 0, 0).
That frame's IFD keeps its metadata in tag 65423 (see ``FIRST_METADATA_TAG``); at close its copy
in the canonical chain gets 51123 back, which must move the entry, not just rename it. Checked
on the chain a reader follows, in every profile, while written (flushed), finished, and after
``repair`` of a killed writer's file; with a raw walker here and, when installed, libtiff.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import warnings
from pathlib import Path
from typing import Any

import pytest

from mmtiffsink import IJTiffFile, MissingFramesWarning, repair
from tests.writer_support import coded_frame

CASES = [
    ("bigtiff", "zstd"),
    ("bigtiff", None),
    ("imagej", "deflate"),
    ("imagej", None),
    ("ome", "zstd"),
]
ORDER = [(1, 0, 1), (0, 1, 0), (1, 1, 0), (0, 0, 1), (0, 0, 0), (1, 0, 0), (0, 1, 1), (1, 1, 1)]


def chain_tag_codes(path: Path) -> list[list[int]]:
    """The tag codes of each IFD in the chain from the header, in file order (a raw walker)."""
    data = path.read_bytes()
    assert data[:2] == b"II"
    bigtiff = struct.unpack_from("<H", data, 2)[0] == 43
    offset = struct.unpack_from("<Q" if bigtiff else "<I", data, 8 if bigtiff else 4)[0]
    ifds: list[list[int]] = []
    seen: set[int] = set()
    while offset:
        assert offset not in seen and offset < len(data), f"bad chain at {offset}"
        seen.add(offset)
        if bigtiff:
            (n,) = struct.unpack_from("<Q", data, offset)
            codes = [struct.unpack_from("<H", data, offset + 8 + 20 * i)[0] for i in range(n)]
            (offset,) = struct.unpack_from("<Q", data, offset + 8 + 20 * n)
        else:
            (n,) = struct.unpack_from("<H", data, offset)
            codes = [struct.unpack_from("<H", data, offset + 2 + 12 * i)[0] for i in range(n)]
            (offset,) = struct.unpack_from("<I", data, offset + 2 + 12 * n)
        ifds.append(codes)
    return ifds


def assert_sorted(path: Path, frames: int) -> None:
    ifds = chain_tag_codes(path)
    assert len(ifds) == frames
    for i, codes in enumerate(ifds):
        assert codes == sorted(set(codes)), f"IFD {i} of {path.name}: tags {codes}"
    tiffinfo = shutil.which("tiffinfo")
    if tiffinfo is not None:  # libtiff itself, where installed (scripts/test.sh installs it)
        proc = subprocess.run([tiffinfo, str(path)], capture_output=True, text=True, check=False)
        assert "not sorted" not in proc.stdout + proc.stderr, proc.stderr


def write(path: Path, profile: str, compression: Any, *, close: bool = True) -> IJTiffFile:
    tif = IJTiffFile(path, shape=(2, 2, 2), profile=profile, compression=compression, pxsize=0.5)
    for c, z, t in ORDER[: 8 if close else 5]:
        tif.save(coded_frame(c, z, t), c, z, t, metadata={"plane": [c, z, t]})
    if close:
        tif.close()
    return tif


@pytest.mark.parametrize(("profile", "compression"), CASES)
def test_finished_files_list_tags_in_ascending_order(
    tmp_path: Path, profile: str, compression: Any
) -> None:
    path = tmp_path / ("f.ome.tif" if profile == "ome" else "f.tif")
    write(path, profile, compression)
    assert_sorted(path, 8)


@pytest.mark.parametrize(("profile", "compression"), CASES)
def test_growing_and_repaired_files_list_tags_in_ascending_order(
    tmp_path: Path, profile: str, compression: Any
) -> None:
    path = tmp_path / ("g.ome.tif" if profile == "ome" else "g.tif")
    tif = write(path, profile, compression, close=False)
    tif.flush()
    assert_sorted(path, 5)  # what a reader sees while the file is written
    killed = tmp_path / ("k.ome.tif" if profile == "ome" else "k.tif")
    shutil.copyfile(path, killed)  # the writer's file as a kill would leave it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingFramesWarning)
        report = repair(killed)
        tif.close()
    assert report.frames == 5 and not report.already_finished
    assert_sorted(killed, 8)  # 5 frames and 3 blank planes


def test_private_tags_are_none_a_reader_treats_specially() -> None:
    """tifffile reads a tag of its ``TAG_READERS`` as an offset whatever its type: a private tag
    there (65426, NDPI's McuStarts, once held the blank-plane marker) makes it log an error for
    every IFD that carries it. Each private tag is in TIFF's reusable range and distinct."""
    import tifffile

    from mmtiffsink.tiff._tags import PRIVATE_TAGS

    assert len(set(PRIVATE_TAGS)) == len(PRIVATE_TAGS)
    assert all(65000 <= code <= 65535 for code in PRIVATE_TAGS)
    special = set(tifffile.TIFF.TAG_READERS) | set(tifffile.TIFF.TAG_LOAD)
    assert not special & set(PRIVATE_TAGS), sorted(special & set(PRIVATE_TAGS))
