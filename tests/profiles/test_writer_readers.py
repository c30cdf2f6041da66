"""The writer's files through the real readers: Bio-Formats (Fiji) and ImageJ 1.x."""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import numpy as np
import pytest

from mmtiffsink import IJTiffFile, MissingFramesWarning
from tests.readers import bioformats_info, bioformats_pixels, imagej_read
from tests.writer_support import coded_frame

pytestmark = pytest.mark.readers

C, Z, T = 2, 3, 4
ALL = [(c, z, t) for t in range(T) for z in range(Z) for c in range(C)]


def write(path: Path, profile: str, compression: object, *, skip: int = 0, **kw: object) -> None:
    order = list(ALL)
    random.Random(3).shuffle(order)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingFramesWarning)
        with IJTiffFile(
            path,
            shape=(C, Z, T),
            profile=profile,
            compression=compression,
            pxsize=0.65,
            deltaz=0.5,
            timeinterval=2.5,
            **kw,
        ) as tif:  # type: ignore[arg-type]
            for c, z, t in order[skip:]:
                tif.save(coded_frame(c, z, t), c, z, t)


@pytest.mark.parametrize(
    ("profile", "compression"),
    [
        ("bigtiff", "zstd"),
        ("bigtiff", "deflate"),
        ("bigtiff", None),
        ("imagej", "deflate"),
        ("imagej", None),
    ],
)
def test_bioformats_reads_hyperstack(
    tmp_path: Path, bioformats_jar: Path, profile: str, compression: object
) -> None:
    path = tmp_path / "bf.tif"
    write(path, profile, compression, colors=["magenta", "green"])
    info = bioformats_info(path, bioformats_jar)
    assert (info.size_c, info.size_z, info.size_t) == (C, Z, T)
    assert (info.size_y, info.size_x) == (24, 40)
    assert info.pixel_type == "uint16"
    assert info.physical_size_x == pytest.approx(0.65)
    assert info.physical_size_z == pytest.approx(0.5)
    assert info.time_increment == pytest.approx(2.5)
    pixels = bioformats_pixels(path, bioformats_jar, tmp_path)
    assert pixels.shape == (T, Z, C, 24, 40)
    for c, z, t in ALL:
        np.testing.assert_array_equal(pixels[t, z, c], coded_frame(c, z, t))


def test_bioformats_reads_gaps_as_blank_planes(tmp_path: Path, bioformats_jar: Path) -> None:
    path = tmp_path / "gaps.tif"
    order = list(ALL)
    random.Random(3).shuffle(order)
    write(path, "bigtiff", "zstd", skip=5)
    info = bioformats_info(path, bioformats_jar)
    assert (info.size_c, info.size_z, info.size_t) == (C, Z, T)
    pixels = bioformats_pixels(path, bioformats_jar, tmp_path)
    for c, z, t in order[:5]:
        assert not pixels[t, z, c].any()
    for c, z, t in order[5:]:
        np.testing.assert_array_equal(pixels[t, z, c], coded_frame(c, z, t))


@pytest.mark.parametrize("compression", ["deflate", None])
def test_imagej_opens_imagej_profile(tmp_path: Path, imagej_jar: Path, compression: object) -> None:
    path = tmp_path / "ij.tif"
    write(path, "imagej", compression, colors=["magenta", "green"])
    info = imagej_read(path, ALL, imagej_jar, points=((5, 7), (3, 0)))
    assert info.opened, info.error
    assert (info.width, info.height) == (40, 24)
    assert (info.channels, info.slices, info.frames) == (C, Z, T)
    assert info.bit_depth == 16
    assert info.pixel_width == pytest.approx(0.65)
    assert info.voxel_depth == pytest.approx(0.5)
    assert info.unit in ("µm", "micron", "microns")
    assert info.frame_interval == pytest.approx(2.5)
    for c, z, t in ALL:
        frame = coded_frame(c, z, t)
        plane = info.planes[(c, z, t)]
        assert plane.values == (float(frame[7, 5]), float(frame[0, 3]))
        assert plane.mean == pytest.approx(frame.mean())
    if compression is not None:
        # known limitation, see README: ImageJ 1.52i drops the channel LUTs of our
        # uncompressed files (dimensions, calibration and pixels are right)
        assert info.channel_colors[:2] == ((255, 0, 255), (0, 255, 0))


def test_imagej_many_channels_color_mode(tmp_path: Path, imagej_jar: Path) -> None:
    path = tmp_path / "nine.tif"
    with IJTiffFile(path, profile="imagej") as tif:
        for c in range(9):
            tif.save(coded_frame(c, 0, 0), c, 0, 0)
    info = imagej_read(path, [(8, 0, 0)], imagej_jar, points=((5, 7),))
    assert info.opened, info.error
    assert info.channels == 9
    assert info.planes[(8, 0, 0)].values == (float(coded_frame(8, 0, 0)[7, 5]),)


def test_imagej_cannot_open_bigtiff_zstd(tmp_path: Path, imagej_jar: Path) -> None:
    """Why the imagej profile exists: plain ImageJ 1.x refuses BigTIFF + zstd."""
    path = tmp_path / "big.tif"
    write(path, "bigtiff", "zstd")
    info = imagej_read(path, [(0, 0, 0)], imagej_jar)
    assert not info.opened
