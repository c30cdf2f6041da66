"""RGB frames (Y, X, 3) in every profile: the writer, repair, and tifffile as the oracle.

The Bio-Formats and ImageJ checks of the same files are in
``tests/profiles/test_rgb_readers.py``; the engines' and tools' RGB paths in
``tests/engines/test_rgb_sources.py``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile

from mmtiffsink import (
    FrameError,
    IJTiffFile,
    MissingFramesWarning,
    ProfileError,
    preview,
    repair,
)
from mmtiffsink.inspect import file_info
from tests.crash_support import kill_after_flush, run_child
from tests.rgb_support import ALL, SHAPE, C, T, Z, write_rgb
from tests.writer_support import check_ome_schema, page_plane, rgb_frame

CASES = [
    ("bigtiff", "zstd", False),
    ("bigtiff", "zstd", True),
    ("bigtiff", "deflate", True),
    ("bigtiff", None, False),
    ("imagej", "deflate", False),
    ("imagej", None, False),
    ("ome", "zstd", True),
    ("ome", None, False),
]


def read_rgb(path: Path) -> tuple[np.ndarray, tifffile.TiffFile]:
    """(T, Z, C, Y, X, 3) and the open file (the caller closes it)."""
    tif = tifffile.TiffFile(path)
    series = tif.series[0]
    assert series.axes == "TZCYXS", series.axes
    return series.asarray(), tif


@pytest.mark.parametrize(("profile", "compression", "predictor"), CASES)
def test_rgb_round_trip(tmp_path: Path, profile: str, compression: object, predictor: bool) -> None:
    path = tmp_path / ("rgb.ome.tif" if profile == "ome" else "rgb.tif")
    write_rgb(path, profile, compression, predictor)
    with tifffile.TiffFile(path) as f:
        for page in f.pages:
            assert isinstance(page, tifffile.TiffPage)
            assert page.photometric == tifffile.PHOTOMETRIC.RGB
            assert page.samplesperpixel == 3
            assert page.planarconfig == tifffile.PLANARCONFIG.CONTIG
            assert page.tags["BitsPerSample"].value == (8, 8, 8)
            assert page.predictor == (2 if predictor else 1)
    data, tif = read_rgb(path)
    with tif:
        assert data.shape == (T, Z, C, *SHAPE, 3) and data.dtype == np.uint8
        for c, z, t in ALL:
            np.testing.assert_array_equal(data[t, z, c], rgb_frame(c, z, t, SHAPE))
        if profile == "ome":
            xml = tif.ome_metadata
            assert xml is not None
            check_ome_schema(xml)
            assert f'SizeC="{3 * C}"' in xml and 'Interleaved="true"' in xml
            assert xml.count('SamplesPerPixel="3"') == C
        else:
            meta = tif.imagej_metadata
            assert meta is not None
            assert (meta["channels"], meta["slices"], meta["frames"]) == (C, Z, T)
            assert "mode" not in meta  # an RGB hyperstack has no LUTs, no display mode
    info = file_info(path)
    assert info.finished and info.rgb


@pytest.mark.parametrize("profile", ["bigtiff", "ome"])
def test_rgb_16_bit_samples(tmp_path: Path, profile: str) -> None:
    """64bitRGB (16 bits per sample) where the profile's readers show it."""
    path = tmp_path / ("rgb16.ome.tif" if profile == "ome" else "rgb16.tif")
    write_rgb(path, profile, "zstd", True, dtype="uint16")
    data, tif = read_rgb(path)
    with tif:
        assert data.dtype == np.uint16
        assert tif.pages[0].tags["BitsPerSample"].value == (16, 16, 16)  # type: ignore[union-attr]
        for c, z, t in ALL:
            np.testing.assert_array_equal(data[t, z, c], rgb_frame(c, z, t, SHAPE, "uint16"))


def test_rgb_refusals(tmp_path: Path) -> None:
    frame = rgb_frame(0, 0, 0, SHAPE)
    # 16-bit RGB in the imagej profile: ImageJ 1.x would lose C, Z and T
    with IJTiffFile(tmp_path / "a.tif", dtype="uint16", profile="imagej") as tif:
        with pytest.raises(ProfileError, match=r"16-bit RGB.*loses C, Z and T"):
            tif.save(frame, 0, 0, 0)
        tif.save(frame[..., 0], 0, 0, 0)  # the file is still usable, for grey frames
    # RGB of floats: no profile shows them as colour
    with IJTiffFile(tmp_path / "b.tif", dtype="float32") as tif:
        with pytest.raises(ProfileError, match="RGB frames of uint8 or uint16 samples"):
            tif.save(frame, 0, 0, 0)
        tif.save(frame[..., 0], 0, 0, 0)
    with IJTiffFile(tmp_path / "c.tif", dtype="uint8") as tif:
        # four samples (RGBA, Micro-Manager's BGRA): the message says how to make RGB
        with pytest.raises(FrameError, match=r"BGRA.*frame\[\.\.\., 2::-1\]"):
            tif.save(np.zeros((*SHAPE, 4), np.uint8), 0, 0, 0)
        with pytest.raises(FrameError, match=r"2-D \(Y, X\) or RGB \(Y, X, 3\)"):
            tif.save(np.zeros((*SHAPE, 2), np.uint8), 0, 0, 0)
        tif.save(frame, 0, 0, 0)


def test_a_file_is_rgb_or_grey_from_its_first_frame(tmp_path: Path) -> None:
    rgb_path, grey_path = tmp_path / "rgb.tif", tmp_path / "grey.tif"
    with IJTiffFile(rgb_path, dtype="uint8") as tif:
        tif.save(rgb_frame(0, 0, 0, SHAPE), 0, 0, 0)
        with pytest.raises(FrameError, match=r"a grey \(Y, X\) frame .* file of RGB"):
            tif.save(rgb_frame(0, 0, 1, SHAPE)[..., 0], 0, 0, 1)
        tif.save(rgb_frame(0, 0, 1, SHAPE), 0, 0, 1)
    with IJTiffFile(grey_path, dtype="uint8") as tif:
        tif.save(rgb_frame(0, 0, 0, SHAPE)[..., 0], 0, 0, 0)
        with pytest.raises(FrameError, match=r"an? RGB \(Y, X, 3\) frame .* file of grey"):
            tif.save(rgb_frame(0, 0, 1, SHAPE), 0, 0, 1)
    with tifffile.TiffFile(rgb_path) as f:
        assert f.series[0].shape == (2, *SHAPE, 3)
        np.testing.assert_array_equal(f.series[0].asarray()[1], rgb_frame(0, 0, 1, SHAPE))
    with tifffile.TiffFile(grey_path) as f:
        assert f.series[0].shape == SHAPE


def test_rgb_blank_planes_and_dedup(tmp_path: Path) -> None:
    """A never-saved plane is a blank RGB frame; identical RGB frames are stored once."""
    path = tmp_path / "gaps.tif"
    frame = np.random.default_rng(2).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    with (
        pytest.warns(MissingFramesWarning, match="1 of 6 planes"),
        IJTiffFile(path, shape=(1, 1, 6), dtype="uint8", compression=None) as tif,
    ):
        for t in range(5):
            tif.save(frame, 0, 0, t)
    data, f = read_rgb_squeezed(path)
    with f:
        assert data.shape == (6, 64, 64, 3)
        for t in range(5):
            np.testing.assert_array_equal(data[t], frame)
        assert not data[5].any()
        # five saved frames, one stored copy (page 0 keeps a copy of its last row apart)
        assert len({p.dataoffsets[0] for p in f.pages[:5]}) == 1  # type: ignore[union-attr]
    assert path.stat().st_size < 3 * frame.nbytes + 40_000


def read_rgb_squeezed(path: Path) -> tuple[np.ndarray, tifffile.TiffFile]:
    tif = tifffile.TiffFile(path)
    return tif.series[0].asarray(), tif


KILL_RGB_CHILD = """
    import sys, time
    from mmtiffsink import IJTiffFile
    from tests.writer_support import rgb_frame
    path, profile, compression = sys.argv[1], sys.argv[2], sys.argv[3]
    tif = IJTiffFile(path, dtype="uint8", profile=profile, pxsize=0.5, deltaz=1.0,
                     compression=None if compression == "none" else compression)
    n = 0
    for t in range(10_000):
        for z in (1, 0):  # not plane order
            for c in (1, 0):
                tif.save(rgb_frame(c, z, t, (48, 40)), c, z, t)
                n += 1
        if t == 5:
            tif.flush()
            print("flushed", n, flush=True)
        if t > 5:
            time.sleep(0.002)
"""


@pytest.mark.parametrize(
    ("profile", "compression"),
    [("bigtiff", "zstd:1+predictor"), ("imagej", "deflate"), ("ome", "zstd")],
)
def test_killed_rgb_writer_is_repaired(tmp_path: Path, profile: str, compression: str) -> None:
    path = tmp_path / ("killed.ome.tif" if profile == "ome" else "killed.tif")
    line = kill_after_flush(run_child(KILL_RGB_CHILD, str(path), profile, compression), 0.3)
    flushed = int(line.split()[1])
    seen = set()
    with tifffile.TiffFile(path) as f:  # the file as the kill left it: every frame, exact
        assert len(f.pages) >= flushed
        for page in f.pages:
            assert isinstance(page, tifffile.TiffPage)
            c, z, t = page_plane(page)
            np.testing.assert_array_equal(page.asarray(), rgb_frame(c, z, t, (48, 40)))
            seen.add((c, z, t))
    unfinished = file_info(path)
    assert not unfinished.finished and unfinished.rgb
    assert preview(path).is_file()  # the unfinished file, by the planes each IFD names
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingFramesWarning)  # the last time point may lack some
        report = repair(path)
    assert report.frames == len(seen)
    data, tif = read_rgb(path)
    with tif:
        assert data.shape[1:] == (2, 2, 48, 40, 3)
        for c, z, t in seen:
            np.testing.assert_array_equal(data[t, z, c], rgb_frame(c, z, t, (48, 40)))
        if profile == "ome":
            assert tif.ome_metadata is not None
            check_ome_schema(tif.ome_metadata)
        else:
            assert tif.is_imagej
    assert file_info(path).finished
