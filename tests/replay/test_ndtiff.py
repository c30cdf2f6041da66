"""The NDTiff source on its own: datasets written by ndstorage, read back entry by entry."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest

from mmtiffsink.errors import DatasetError
from mmtiffsink.ndtiff import (
    INDEX_NAME,
    IndexEntry,
    NDTiffSource,
    index_path,
    is_ndtiff_dataset,
)
from mmtiffsink.ndtiff._format import Images, TiffHeader


def _write(root: Path, images: dict[tuple[int, str], np.ndarray]) -> Path:
    """An NDTiff dataset of ``(time, channel) -> image``, in the order given."""
    from ndstorage import NDTiffDataset

    dataset = NDTiffDataset(str(root), name="ds", writable=True)
    dataset.initialize({"PixelType": "GRAY16"})
    for (t, channel), image in images.items():
        dataset.put_image({"time": t, "channel": channel}, image, {"Frame": [t, channel]})
    writer = dataset.current_writer
    dataset.finish()
    dataset.close()
    writer.reader.close()  # ndstorage 0.1.18's writer never closes the reader it opens
    return Path(dataset.path)


@pytest.fixture
def written(tmp_path: Path) -> tuple[Path, dict[tuple[int, str], np.ndarray]]:
    rng = np.random.default_rng(0)
    images = {
        (t, c): rng.integers(0, 60000, (5, 7), dtype=np.uint16) for t in range(2) for c in "BA"
    }
    return _write(tmp_path, images), images


def test_round_trip(written: tuple[Path, dict[tuple[int, str], np.ndarray]]) -> None:
    path, images = written
    assert is_ndtiff_dataset(path) and index_path(path) == path / INDEX_NAME
    assert index_path(path / INDEX_NAME) == path / INDEX_NAME
    source = NDTiffSource(path)
    scan = source.scan()
    assert (scan.entries, scan.frames, scan.channel_names) == (4, 4, ["B", "A"])
    assert not scan.problems and source.summary["PixelType"] == "GRAY16"
    assert source.name == path.name and all(f.parent == path for f in source.files)
    got = list(source.images(scan))
    assert [e.number for e, _, _ in got] == [0, 1, 2, 3]
    for entry, image, metadata in got:
        key = (int(entry.axes["time"]), str(entry.axes["channel"]))
        np.testing.assert_array_equal(image, images[key])
        assert metadata is not None and metadata["Frame"] == list(key)
        assert entry.pixel_bytes == 5 * 7 * 2


def test_check_and_truncated_index(
    written: tuple[Path, dict[tuple[int, str], np.ndarray]],
) -> None:
    path, _ = written

    def no_a(entry: IndexEntry) -> str | None:
        return "no A" if entry.axes["channel"] == "A" else None

    scan = NDTiffSource(path).scan(check=no_a)
    assert (scan.frames, scan.bad_entries, scan.problems.count) == (2, {1, 3}, 2)
    index = path / INDEX_NAME
    index.write_bytes(index.read_bytes()[:-5])  # the last entry is cut off
    source = NDTiffSource(path)
    scan = source.scan()
    assert (scan.entries, scan.frames) == (3, 3)
    assert scan.problems.truncated is not None and "truncated in entry 3" in scan.problems.truncated
    assert len(list(source.images(scan))) == 3


def test_not_a_dataset(tmp_path: Path) -> None:
    assert not is_ndtiff_dataset(tmp_path) and index_path(tmp_path) is None
    with pytest.raises(DatasetError, match="is not an NDTiff dataset"):
        NDTiffSource(tmp_path)
    with pytest.raises(DatasetError, match="no such file"):
        NDTiffSource(tmp_path / "nothing")


@pytest.mark.parametrize("name", ["ds\0.tif", "ds\n.tif", "../ds.tif"])
def test_garbled_file_name_breaks_the_index(
    written: tuple[Path, dict[tuple[int, str], np.ndarray]], name: str
) -> None:
    """A file name no real tif can have ends the index there, with no OS-level exception."""
    import json
    import struct

    import tifffile

    path, _ = written
    index = path / INDEX_NAME
    entries = list(tifffile.read_ndtiff_index(index))
    with index.open("wb") as fh:
        for number, (axes, filename, *fields) in enumerate(entries):
            raw = json.dumps(axes).encode()
            fname = (name if number == 2 else filename).encode()
            fh.write(struct.pack("<I", len(raw)) + raw + struct.pack("<I", len(fname)) + fname)
            fh.write(struct.pack("<8I", *fields))
    scan = NDTiffSource(path).scan()
    assert scan.entries == 2 and scan.problems
    assert scan.problems.truncated is not None and "corrupted in entry 2" in scan.problems.truncated


def _image_chain(ifds: list[tuple[int, list[int], int]], size: int) -> bytes:
    """A classic TIFF of IFDs (offset, tag codes of one LONG each, next link) of ``size`` bytes."""
    buf = bytearray(size)
    buf[:8] = b"II*\0" + struct.pack("<I", ifds[0][0])
    for offset, codes, nxt in ifds:
        entries = b"".join(struct.pack("<HHII", code, 4, 1, 100 + code) for code in codes)
        block = struct.pack("<H", len(codes)) + entries + struct.pack("<I", nxt)
        buf[offset : offset + len(block)] = block[: size - offset]
    return bytes(buf)


@pytest.mark.parametrize(
    ("ifds", "size", "found", "broken_at"),
    [
        ([(8, [273, 279], 64), (64, [273, 279], 0)], 128, 2, None),
        ([(8, [273, 279], 10_000)], 128, 1, None),  # a link past the end: its writer died
        ([(8, [273, 279], 64), (64, [273, 279], 0)], 80, 1, 64),  # an IFD cut short
        ([(8, [273, 279], 64), (64, [273], 0)], 128, 1, 64),  # no StripByteCounts
        ([(8, [273, 279], 64), (64, [273, 279], 8)], 128, 2, 64),  # a link backwards
    ],
)
def test_images_walks_the_chain_and_tells_where_it_breaks(
    ifds: list[tuple[int, list[int], int]], size: int, found: int, broken_at: int | None
) -> None:
    data = _image_chain(ifds, size)
    images = Images(io.BytesIO(data), TiffHeader(len(data), "<", (3, 0), {}))
    assert len(images.pixels) == found and images.broken_at == broken_at
    assert images.pixels[0] == 100 + 273 and images.nbytes[0] == 100 + 279
