"""NDTiff replay of Micro-Manager's own test datasets (NDStorage's ``test_data``).

The datasets in ``tests/data/ndstorage`` are NDStorage's own (see its README): NDTiff 2 and 3,
multi-resolution and tiled layouts, 11-bit, integer and absent channel axes, 8-bit RGB. Every
one is replayed, and every plane written is compared with the image ``ndstorage``'s own reader
returns for the same axes (each page's metadata carries the image's ``Axes``), the index read
by tifffile's independent NDTiff index parser.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from mmtiffsink.cli import main
from mmtiffsink.errors import DatasetError, SupersededImagesWarning
from mmtiffsink.ndtiff import NDTiffSource, index_path, replay

DATA = Path(__file__).parents[1] / "data" / "ndstorage"
MONOCHROME = {
    "v2/ndtiffv2.0_test": 10,
    "v2/ndtiffv2.0_stitched_test": 2,
    "v3/ndtiffv3.0_test": 10,
    "v3/ndtiffv3.0_stitched_test": 2,
    "v3/ndtiff3.2_11bit_1": 10,
}
RGB = "v3/ndtiff3.2_magellan_explore_rgb"


def _ndstorage_images(dataset: Path) -> dict[str, np.ndarray]:
    """Every image of a dataset as ndstorage reads it (by its axes as JSON), for the axes
    tifffile's independent index parser lists."""
    from ndstorage import Dataset

    index = index_path(dataset)
    assert index is not None
    with open(os.devnull, "w") as quiet, redirect_stdout(quiet):  # ndstorage prints progress
        reader = Dataset(str(dataset))
    images = {}
    try:
        for axes, *_ in tifffile.read_ndtiff_index(index):
            images[_key(axes)] = np.array(reader.read_image(**axes))
    finally:
        for level in getattr(reader, "res_levels", {}).values():
            if hasattr(level, "close"):  # ndstorage's pyramid close() fails on ints here
                level.close()
        if not hasattr(reader, "res_levels"):
            reader.close()
    return images


def _key(axes: dict[str, Any]) -> str:
    return json.dumps(axes, sort_keys=True)


def _pages(files: list[Path]) -> dict[str, np.ndarray]:
    """Every page of the files written, by the ``Axes`` its own metadata names."""
    pages: dict[str, np.ndarray] = {}
    for path in files:
        with tifffile.TiffFile(path) as tif:
            for i, page in enumerate(tif.pages):
                tag = page.tags.get(65423 if i == 0 else 51123)  # type: ignore[union-attr]
                if tag is None:
                    continue  # a blank plane
                value = tag.value  # tifffile parses tag 51123 itself; 65423 is our JSON text
                metadata = value if isinstance(value, dict) else json.loads(value)
                key = _key(metadata["Axes"])
                assert key not in pages, key
                pages[key] = page.asarray()  # type: ignore[union-attr]
    return pages


def _channels(path: Path) -> list[str]:
    """The channel names of a file written: the slice labels of its first C planes."""
    with tifffile.TiffFile(path) as tif:
        ij = tif.imagej_metadata or {}
    labels = ij.get("Labels") or []
    labels = [labels] if isinstance(labels, str) else list(labels)
    return labels[: ij.get("channels", 1)]


@pytest.mark.parametrize("name", sorted(MONOCHROME))
def test_replay_equals_ndstorage(name: str, tmp_path: Path) -> None:
    """Every image of the dataset, written exactly: pixels equal ndstorage's, none left out."""
    dataset = DATA / name
    result = replay(dataset, tmp_path, progress=False)
    assert result.ok, result.error
    assert result.frames == MONOCHROME[name]
    pages = _pages(result.files)
    expected = _ndstorage_images(dataset)
    assert len(expected) == len(pages) == MONOCHROME[name]
    for key, image in expected.items():
        np.testing.assert_array_equal(pages[key], image, key)


def test_ndtiff2_header(tmp_path: Path) -> None:
    """NDTiff 2 has no minor version: its summary metadata start at byte 24 and are read."""
    source = NDTiffSource(DATA / "v2/ndtiffv2.0_test")
    scan = source.scan()
    assert scan.frames == 10 and not scan.problems
    assert source.summary["PixelSize_um"] == pytest.approx(1.0)
    assert source.summary["Core-Camera"] == "Camera"


@pytest.mark.parametrize(
    ("name", "channels"),
    [
        ("v2/ndtiffv2.0_test", ["DAPI", "FITC"]),  # integer channels (NDTiff 2)
        ("v3/ndtiffv3.0_test", ["DAPI", "FITC"]),  # integer channels, no ChNames
        ("v3/ndtiff3.2_11bit_1", ["DAPI"]),  # no channel axis
        ("v3/ndtiffv3.0_stitched_test", []),  # every image's Channel is ""
    ],
)
def test_channel_names_from_image_metadata(name: str, channels: list[str], tmp_path: Path) -> None:
    """Integer or absent channel axes take their names from each image's ``Channel``."""
    result = replay(DATA / name, tmp_path, progress=False)
    assert result.ok, result.error
    for path in result.files:
        assert _channels(path) == channels


def test_channel_names_need_every_channel(tmp_path: Path) -> None:
    """An image without a usable ``Channel`` leaves every channel unnamed, never half named."""
    dataset = tmp_path / "ds"
    shutil.copytree(DATA / "v3/ndtiffv3.0_test", dataset)
    tif = dataset / "ndtiffv3.0_test_NDTiffStack.tif"
    first = next(iter(tifffile.read_ndtiff_index(dataset / "NDTiff.index")))
    assert first[0] == {"channel": 0, "time": 0}
    offset, length = first[7], first[8]
    data = bytearray(tif.read_bytes())
    text = bytes(data[offset : offset + length])
    assert b'"Channel":"DAPI"' in text
    data[offset : offset + length] = text.replace(b'"Channel":"DAPI"', b'"Channel":123456')
    tif.write_bytes(bytes(data))
    assert NDTiffSource(dataset).scan().channel_names == []


def test_rgb_frames_read_as_ndstorage_does(tmp_path: Path) -> None:
    """RGB images are handed on as (Y, X, 3) uint8, equal to ndstorage's; none is lost."""
    dataset = DATA / RGB
    source = NDTiffSource(dataset)
    scan = source.scan()
    assert scan.frames == 3 and not scan.problems  # no "in no index entry"
    expected = _ndstorage_images(dataset)
    for entry, image, _ in source.images(scan):
        assert image.shape == (32, 32, 3) and image.dtype == np.uint8
        np.testing.assert_array_equal(image, expected[_key(entry.axes)])


@pytest.mark.filterwarnings("ignore::mmtiffsink.errors.MissingFramesWarning")
def test_rgb_replay_is_exact(tmp_path: Path) -> None:
    """An RGB dataset replays into RGB hyperstacks, every sample as ndstorage reads it."""
    from mmtiffsink.inspect import file_info

    dataset = DATA / RGB
    result = replay(dataset, tmp_path, progress=False)
    assert result.files
    pages = _pages(result.files)
    expected = _ndstorage_images(dataset)
    assert set(pages) == set(expected)
    for key, image in expected.items():
        assert pages[key].shape == (32, 32, 3)
        np.testing.assert_array_equal(pages[key], image, key)
    for path in result.files:
        info = file_info(path)
        assert info.finished and info.rgb and info.dtype == "uint8"


def _overwritten(root: Path) -> Path:
    """A dataset (ndstorage's writer) storing the tile (0, 0) three times, as Magellan does."""
    from ndstorage import NDTiffDataset

    dataset = NDTiffDataset(str(root), name="tiles", writable=True)
    dataset.initialize({"PixelSize_um": 1.0})
    for value, column in ((1, 0), (2, 1), (3, 0), (9, 0)):
        axes = {"row": 0, "column": column, "z": 0}
        dataset.put_image(axes, np.full((4, 6), value, np.uint16), {"Axes": axes, "v": value})
    writer = dataset.current_writer
    dataset.finish()
    dataset.close()
    writer.reader.close()  # ndstorage 0.1.18's writer never closes the reader it opens
    return Path(dataset.path)


def test_image_stored_twice_keeps_the_last(tmp_path: Path) -> None:
    """ndstorage keeps the last image stored at given axes: so does replay, and says so."""
    dataset = _overwritten(tmp_path / "src")
    with pytest.warns(SupersededImagesWarning, match="2 images were stored again"):
        result = replay(dataset, tmp_path / "out", progress=False)
    assert result.ok, result.error
    assert result.frames == 2
    pages = _pages(result.files)
    expected = _ndstorage_images(dataset)
    assert len(expected) == len(pages) == 2
    for key, image in expected.items():
        assert image[0, 0] == (9 if json.loads(key)["column"] == 0 else 2)
        np.testing.assert_array_equal(pages[key], image, key)


def test_superseded_needs_equal_axes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Digests only find candidates: with every digest equal, distinct axes are all kept."""
    from mmtiffsink.ndtiff import _reader

    monkeypatch.setattr(_reader, "_axes_digest", lambda axes: 7)  # every entry collides
    scan = NDTiffSource(DATA / "v3/ndtiffv3.0_test").scan()
    assert scan.superseded == set() and scan.frames == 10
    dataset = _overwritten(tmp_path / "src")
    scan = NDTiffSource(dataset).scan()
    assert scan.superseded == {0, 2} and scan.frames == 2


def test_ndtiff2_wrong_summary_header(tmp_path: Path) -> None:
    """A v2 file whose summary header is not NDTiff's is still refused (not read as v3)."""
    dataset = tmp_path / "ds"
    shutil.copytree(DATA / "v2/ndtiffv2.0_test", dataset)
    tif = dataset / "Full resolution" / "ndtiffv2.0_test_NDTiffStack.tif"
    data = bytearray(tif.read_bytes())
    struct.pack_into("<I", data, 16, 12345)
    tif.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="no NDTiff header"):
        replay(dataset, tmp_path / "out", progress=False)


def test_cli_replays_v2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["replay", str(DATA / "v2/ndtiffv2.0_test"), "--out", str(tmp_path), "--no-preview"]
    )
    assert code == 0, capsys.readouterr().err
    assert _channels(tmp_path / "ndtiffv2.0_test.tif") == ["DAPI", "FITC"]
