"""RGB files through the real readers: Bio-Formats (Fiji) and plain ImageJ 1.x."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.readers import bioformats_info, bioformats_pixels, imagej_read
from tests.rgb_support import ALL, SHAPE, C, T, Z, write_rgb
from tests.writer_support import rgb_frame

pytestmark = pytest.mark.readers


@pytest.mark.parametrize(
    ("profile", "compression", "predictor", "dtype"),
    [
        ("bigtiff", "zstd", True, "uint8"),
        ("imagej", "deflate", False, "uint8"),
        ("ome", "zstd", True, "uint8"),
        ("ome", "deflate", False, "uint16"),
    ],
)
def test_bioformats_reads_rgb(
    tmp_path: Path,
    bioformats_jar: Path,
    profile: str,
    compression: str,
    predictor: bool,
    dtype: str,
) -> None:
    path = tmp_path / ("rgb.ome.tif" if profile == "ome" else "rgb.tif")
    write_rgb(path, profile, compression, predictor, dtype=dtype)
    info = bioformats_info(path, bioformats_jar)
    # OME's SizeC counts samples: C channels of 3 samples each
    assert (info.size_t, info.size_z, info.size_c) == (T, Z, 3 * C)
    assert (info.size_y, info.size_x) == SHAPE
    assert info.pixel_type == dtype
    assert info.physical_size_x == pytest.approx(0.5)
    assert info.ome_xml.count('SamplesPerPixel="3"') == C
    pixels = bioformats_pixels(path, bioformats_jar, tmp_path)
    assert pixels.shape == (T, Z, C, *SHAPE, 3)
    for c, z, t in ALL:
        np.testing.assert_array_equal(pixels[t, z, c], rgb_frame(c, z, t, SHAPE, dtype))


def test_imagej_opens_rgb_hyperstack(tmp_path: Path, imagej_jar: Path) -> None:
    """Plain ImageJ 1.x: an RGB hyperstack (bit depth 24) with its C, Z, T and colours."""
    path = tmp_path / "rgb.tif"
    write_rgb(path, "imagej", "deflate")
    points = ((0, 0), (2, 0), (SHAPE[1] // 3, SHAPE[0] // 2))
    ij = imagej_read(path, ALL, imagej_jar, points=points)
    assert ij.opened, ij.error
    assert ij.bit_depth == 24
    assert ij.shape == (T, Z, C, *SHAPE)
    assert ij.is_hyperstack
    assert ij.unit in ("µm", "micron", "microns") and ij.pixel_width == pytest.approx(0.5)
    for c, z, t in ALL:
        expected = rgb_frame(c, z, t, SHAPE)
        # getPixel of an RGB image is the packed 0xAARRGGBB value (alpha 255: negative)
        got = [int(v) & 0xFFFFFF for v in ij.planes[(c, z, t)].values]
        want = [
            int(expected[y, x, 0]) << 16 | int(expected[y, x, 1]) << 8 | int(expected[y, x, 2])
            for x, y in points
        ]
        assert got == want, (c, z, t)
