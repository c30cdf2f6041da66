"""Which reader decodes which TIFF codec: tested, not assumed (the README's codec table).

Files are written by tifffile (not by mmtiffsink), so these are facts about the readers: a
classic TIFF with ImageJ metadata, three distinct microscopy-like 64x64 uint16 planes, and for
the ``bigtiff`` profile's codecs also a BigTIFF. A reader passes only if it returns the exact
pixels. ``benchmarks/bench_codecs.py --readers`` prints the same matrix next to the rates.

The last test is about mmtiffsink's own files: the ``bigtiff`` and ``ome`` profiles' predictor
option, decoded by Bio-Formats for every integer pixel type it reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from mmtiffsink import IJTiffFile
from tests.predictor_support import extreme_frames
from tests.readers import ReaderError, bioformats_pixels, imagej_read

pytestmark = pytest.mark.readers

#: name -> (tifffile.imwrite arguments, what ImageJ 1.x does with a classic file of it)
CASES: dict[str, tuple[dict[str, Any], str]] = {
    "none": ({}, "ok"),
    "packbits": ({"compression": "packbits"}, "ok"),
    "lzw": ({"compression": "lzw"}, "ok"),
    "lzw+pred": ({"compression": "lzw", "predictor": True}, "ok"),
    "deflate1": ({"compression": "adobe_deflate", "compressionargs": {"level": 1}}, "ok"),
    "deflate6": ({"compression": "adobe_deflate", "compressionargs": {"level": 6}}, "ok"),
    # ImageJ 1.x undoes the predictor per byte, not per 16-bit sample: wrong pixels, no error
    "deflate1+pred": (
        {"compression": "adobe_deflate", "compressionargs": {"level": 1}, "predictor": True},
        "wrong pixels",
    ),
    "zstd3": ({"compression": "zstd", "compressionargs": {"level": 3}}, "refused"),
    "zstd3+pred": (
        {"compression": "zstd", "compressionargs": {"level": 3}, "predictor": True},
        "refused",
    ),
}
IMAGEJ_CASES = ["none", "packbits", "lzw", "lzw+pred", "deflate1", "deflate1+pred", "zstd3"]
POINTS = [(x, y) for y in (0, 9, 33, 63) for x in (0, 5, 40, 63)]


def frames() -> np.ndarray:
    """Three distinct microscopy-like planes: offset, smooth profile, spots, shot noise."""
    rng = np.random.default_rng(11)
    y, x = np.mgrid[0:64, 0:64].astype(np.float64)
    planes = []
    for k in range(3):
        image = 100.0 + 200.0 * np.exp(-((y - 30 - k) ** 2 + (x - 34) ** 2) / 900.0)
        for _ in range(4):
            py, px = rng.uniform(8, 56, 2)
            image += rng.uniform(300, 3000) * np.exp(-((y - py) ** 2 + (x - px) ** 2) / 8.0)
        planes.append(rng.poisson(image))
    return np.clip(np.stack(planes), 0, 65535).astype(np.uint16)


def write(path: Path, name: str, *, bigtiff: bool = False) -> np.ndarray:
    data = frames()
    kwargs = CASES[name][0]
    if bigtiff:
        tifffile.imwrite(path, data, bigtiff=True, photometric="minisblack", **kwargs)
    else:
        tifffile.imwrite(
            path, data, imagej=True, metadata={"axes": "TYX"}, photometric="minisblack", **kwargs
        )
    return data


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("bigtiff", [False, True], ids=["classic", "bigtiff"])
def test_tifffile_and_bioformats_decode_every_codec(
    tmp_path: Path, bioformats_jar: Path, name: str, bigtiff: bool
) -> None:
    path = tmp_path / f"{name}.tif"
    data = write(path, name, bigtiff=bigtiff)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_bigtiff == bigtiff
    np.testing.assert_array_equal(tifffile.imread(path), data)
    pixels = bioformats_pixels(path, bioformats_jar, tmp_path)
    np.testing.assert_array_equal(pixels.reshape(data.shape), data)


@pytest.mark.parametrize("name", IMAGEJ_CASES)
def test_imagej_classic_codecs(tmp_path: Path, imagej_jar: Path, name: str) -> None:
    path = tmp_path / f"{name}.tif"
    data = write(path, name)
    info = imagej_read(path, [(0, 0, t) for t in range(3)], imagej_jar, points=POINTS)
    expected = CASES[name][1]
    if expected == "refused":
        assert not info.opened, info
        return
    assert info.opened, info.error
    assert (info.frames, info.height, info.width, info.bit_depth) == (3, 64, 64, 16)
    want = [tuple(float(data[t, y, x]) for x, y in POINTS) for t in range(3)]
    seen = [info.planes[(0, 0, t)].values for t in range(3)]
    if expected == "ok":
        assert seen == want
        for t in range(3):
            assert info.planes[(0, 0, t)].mean == pytest.approx(float(data[t].mean()), rel=1e-6)
    else:  # wrong pixels: opened without complaint, but not the data
        assert seen != want
        means = [info.planes[(0, 0, t)].mean for t in range(3)]
        assert all(abs(m - float(data[t].mean())) > 1000 for t, m in enumerate(means)), means


def test_bioformats_refusal_is_a_reader_error(tmp_path: Path, bioformats_jar: Path) -> None:
    """Sanity check of the oracle: a file that is no TIFF fails loudly, not silently."""
    path = tmp_path / "not.tif"
    path.write_bytes(b"II*\x00" + b"\x00" * 60)
    with pytest.raises(ReaderError):
        bioformats_pixels(path, bioformats_jar, tmp_path)


# ------------------------------------------------------------------ mmtiffsink's predictor files
PREDICTOR_DTYPES = ["uint8", "int8", "uint16", "int16", "uint32", "int32"]
# Bio-Formats 7.3.1 refuses 64-bit integer pixels with or without the predictor
# ("64-bit int data not supported"), so (u)int64 is checked by tifffile only (test_predictor.py)


@pytest.mark.parametrize("compression", ["zstd:1", "deflate:1"])
@pytest.mark.parametrize("dtype", PREDICTOR_DTYPES)
@pytest.mark.parametrize("profile", ["bigtiff", "ome"])
def test_bioformats_decodes_mmtiffsink_predictor_files(
    tmp_path: Path, bioformats_jar: Path, profile: str, dtype: str, compression: str
) -> None:
    """Exact pixels, full range (every difference wraps somewhere), planes in their places."""
    data = extreme_frames(dtype, 4).reshape(2, 2, 21, 34)  # (T, C, Y, X)
    path = tmp_path / ("pred.ome.tif" if profile == "ome" else "pred.tif")
    options: dict[str, Any] = {"dtype": dtype, "profile": profile, "compression": compression}
    with IJTiffFile(path, predictor=True, **options) as tif:
        for t in (1, 0):
            for c in (0, 1):
                tif.save(data[t, c], c, 0, t)
    with tifffile.TiffFile(path) as tif:
        assert all(page.predictor == 2 for page in tif.pages)
    pixels = bioformats_pixels(path, bioformats_jar, tmp_path)
    assert pixels.shape == (2, 1, 2, 21, 34) and pixels.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(pixels[:, 0], data)
