"""Self-checks of the reader oracles in tests/readers.py on files written by tifffile.

Every plane encodes its own (c, z, t) in its pixel values, so a wrong plane order or a transposed
reshape in an oracle cannot go unnoticed.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from tests.readers import (
    _JAVA_UTF8,
    ReaderError,
    _extract_xml,
    _run,
    _unavailable,
    bioformats_info,
    bioformats_pixels,
    bioformats_server,
    imagej_read,
)

pytestmark = pytest.mark.readers

T, Z, C, Y, X = 3, 4, 2, 37, 53  # odd, unequal sizes catch transposes
PIXEL_UM = 0.325
SPACING_UM = 1.5
FINTERVAL_S = 2.5
POINTS = ((0, 0), (5, 1), (X - 1, Y - 1), (17, 29))


def encoded_stack(dtype: str) -> np.ndarray:
    """(T, Z, C, Y, X) stack whose plane (c, z, t) holds a value derived from c, z and t."""
    t, z, c, y, x = np.meshgrid(*(np.arange(n) for n in (T, Z, C, Y, X)), indexing="ij")
    if dtype == "uint8":  # 64t + 16z + 4c + (x % 4) < 256, unique per plane
        values = 64 * t + 16 * z + 4 * c + x % 4
    elif dtype == "uint16":
        values = 1000 * t + 100 * z + 10 * c + x % 7 + 7 * (y % 3)
    else:
        values = 1000 * t + 100 * z + 10 * c + (x % 7) / 8 + (y % 3) / 3
    return values.astype(dtype)


def plane_of(value: float, dtype: str) -> tuple[int, int, int]:
    """Decode (c, z, t) from the pixel (0, 0) of a plane of :func:`encoded_stack`."""
    v = int(value)
    if dtype == "uint8":
        return (v % 16) // 4, (v % 64) // 16, v // 64
    return (v % 100) // 10, (v % 1000) // 100, v // 1000


def write_imagej(path: Path, data: np.ndarray) -> Path:
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        resolution=(1 / PIXEL_UM, 1 / PIXEL_UM),
        metadata={
            "axes": "TZCYX",
            "spacing": SPACING_UM,
            "unit": "um",
            "finterval": FINTERVAL_S,
        },
    )
    return path


@pytest.fixture(params=["uint16", "uint8", "float32"])
def hyperstack(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, np.ndarray]:
    data = encoded_stack(request.param)
    return write_imagej(tmp_path / f"hyperstack_{request.param}.tif", data), data


def test_encoding_is_unique() -> None:
    for dtype in ("uint8", "uint16", "float32"):
        data = encoded_stack(dtype)
        for t in range(T):
            for z in range(Z):
                for c in range(C):
                    assert plane_of(data[t, z, c, 0, 0], dtype) == (c, z, t)


# --- Bio-Formats ---------------------------------------------------------------------------


def test_bioformats_info_imagej_hyperstack(
    hyperstack: tuple[Path, np.ndarray], bioformats_jar: Path
) -> None:
    path, data = hyperstack
    info = bioformats_info(path, bioformats_jar)
    assert (info.size_t, info.size_z, info.size_c, info.size_y, info.size_x) == data.shape
    assert info.shape == data.shape
    assert info.dtype == data.dtype
    assert (
        info.pixel_type
        == {"uint8": "uint8", "uint16": "uint16", "float32": "float"}[str(data.dtype)]
    )
    assert info.dimension_order == "XYCZT"
    assert info.physical_size_x == pytest.approx(PIXEL_UM, rel=1e-6)
    assert info.physical_size_y == pytest.approx(PIXEL_UM, rel=1e-6)
    assert info.physical_size_z == pytest.approx(SPACING_UM)
    assert info.time_increment == pytest.approx(FINTERVAL_S)
    # Bio-Formats 7.3.1 names no channel of an ImageJ TIFF (DESIGN.md 1, trap 7).
    assert info.channel_names == [None] * C
    assert info.series_count == 1


def test_bioformats_pixels_imagej_hyperstack(
    hyperstack: tuple[Path, np.ndarray], bioformats_jar: Path, tmp_path: Path
) -> None:
    path, data = hyperstack
    pixels = bioformats_pixels(path, bioformats_jar, tmp_path)
    assert pixels.dtype == data.dtype
    assert pixels.shape == data.shape
    np.testing.assert_array_equal(pixels, data)
    assert list(tmp_path.glob("bfconvert-*")) == []  # the converted copy is removed


def test_bioformats_other_dimension_order_and_units(bioformats_jar: Path, tmp_path: Path) -> None:
    """An OME-TIFF in XYZCT order with nm / ms units and named channels."""
    data = encoded_stack("uint16")
    path = tmp_path / "tczyx.ome.tif"
    tifffile.imwrite(
        path,
        np.ascontiguousarray(data.transpose(0, 2, 1, 3, 4)),
        metadata={
            "axes": "TCZYX",
            "PhysicalSizeX": 325.0,
            "PhysicalSizeXUnit": "nm",
            "PhysicalSizeY": 325.0,
            "PhysicalSizeYUnit": "nm",
            "PhysicalSizeZ": 0.0015,
            "PhysicalSizeZUnit": "mm",
            "TimeIncrement": 2500.0,
            "TimeIncrementUnit": "ms",
            "Channel": {"Name": ["DAPI", "GFP"]},
        },
    )
    info = bioformats_info(path, bioformats_jar)
    assert info.dimension_order == "XYZCT"
    assert info.shape == data.shape
    assert info.physical_size_x == pytest.approx(PIXEL_UM)
    assert info.physical_size_y == pytest.approx(PIXEL_UM)
    assert info.physical_size_z == pytest.approx(SPACING_UM)
    assert info.time_increment == pytest.approx(FINTERVAL_S)
    assert info.channel_names == ["DAPI", "GFP"]
    np.testing.assert_array_equal(bioformats_pixels(path, bioformats_jar, tmp_path), data)


def test_bioformats_errors_are_clear(bioformats_jar: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"II*\x00" + bytes(range(256)) * 8)
    with pytest.raises(ReaderError, match="ImageInfo failed"):
        bioformats_info(junk, bioformats_jar)
    with pytest.raises(ReaderError, match="ImageConverter failed"):
        bioformats_pixels(tmp_path / "missing.tif", bioformats_jar, tmp_path)


# --- the Bio-Formats server (one JVM for the session) --------------------------------------


def test_bioformats_server_answers_like_the_command_line(
    bioformats_jar: Path, tmp_path: Path
) -> None:
    """The server's OME-XML and converted pixels are those of ``showinf`` / ``bfconvert``."""
    data = encoded_stack("uint16")
    path = write_imagej(tmp_path / "hyperstack.tif", data)
    java = ["java", *_JAVA_UTF8, "-cp", os.fspath(bioformats_jar)]
    flags = ["-nopix", "-omexml", "-novalid", "-no-upgrade", os.fspath(path)]
    cli = _run([*java, "loci.formats.tools.ImageInfo", *flags], timeout=120)
    assert cli.returncode == 0, cli.tail()
    info = bioformats_info(path, bioformats_jar)
    assert info.ome_xml == _extract_xml(cli.stdout)
    assert "µm" in info.ome_xml  # UTF-8 end to end

    convert = ["-no-upgrade", "-nolookup", "-overwrite", "-novalid", "-series", "0"]
    cli_out, server_out = tmp_path / "cli.ome.tif", tmp_path / "server.ome.tif"
    cli = _run(
        [*java, "loci.formats.tools.ImageConverter", *convert, os.fspath(path), str(cli_out)],
        timeout=120,
    )
    assert cli.returncode == 0, cli.tail()
    run = bioformats_server(bioformats_jar).run(
        ["convert", *convert, os.fspath(path), str(server_out)], timeout=120
    )
    assert run.returncode == 0, run.tail()
    with tifffile.TiffFile(cli_out) as a, tifffile.TiffFile(server_out) as b:
        assert len(a.pages) == len(b.pages) == T * Z * C
        np.testing.assert_array_equal(a.asarray(), b.asarray())
    np.testing.assert_array_equal(bioformats_pixels(path, bioformats_jar, tmp_path), data)


def test_bioformats_server_is_reused(bioformats_jar: Path, tmp_path: Path) -> None:
    path = write_imagej(tmp_path / "hyperstack.tif", encoded_stack("uint8"))
    server = bioformats_server(bioformats_jar)
    bioformats_info(path, bioformats_jar)
    pid, starts = server.pid, server.starts
    assert pid is not None
    for _ in range(3):
        assert bioformats_info(path, bioformats_jar).shape == (T, Z, C, Y, X)
    bioformats_pixels(path, bioformats_jar, tmp_path)
    assert (server.pid, server.starts) == (pid, starts)


def test_bioformats_server_timeout_fails_one_request(bioformats_jar: Path, tmp_path: Path) -> None:
    path = write_imagej(tmp_path / "hyperstack.tif", encoded_stack("uint16"))
    server = bioformats_server(bioformats_jar)
    bioformats_info(path, bioformats_jar)  # a running JVM, so the timeout hits the request
    old_pid = server.pid
    assert old_pid is not None
    start = time.monotonic()
    with pytest.raises(ReaderError, match=r"ImageInfo timed out after 0\.001 s"):
        bioformats_info(path, bioformats_jar, timeout=0.001)
    assert time.monotonic() - start < 20
    assert server.pid is None  # the JVM that missed its deadline was ended
    with pytest.raises(ProcessLookupError):
        os.kill(old_pid, 0)
    assert bioformats_info(path, bioformats_jar).shape == (T, Z, C, Y, X)  # a new JVM
    assert server.pid not in (None, old_pid)


def test_bioformats_server_interrupted_request_is_not_answered_later(
    bioformats_jar: Path, tmp_path: Path
) -> None:
    """An exception while waiting (pytest-timeout, Ctrl-C) must not leave an answer pending."""
    small = write_imagej(tmp_path / "small.tif", encoded_stack("uint8"))
    other = tmp_path / "other.tif"
    tifffile.imwrite(other, np.zeros((5, 9, 11), np.uint16), imagej=True)
    bioformats_info(small, bioformats_jar)  # a running JVM

    class Interrupted(BaseException):
        """What pytest-timeout or Ctrl-C raise in the middle of a call."""

    def interrupt(signum: int, frame: object) -> None:
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.002)
        with pytest.raises(Interrupted):
            bioformats_info(small, bioformats_jar)
            pytest.fail("the request was answered within 2 ms: nothing was interrupted")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    info = bioformats_info(other, bioformats_jar)  # this file's answer, not the pending one
    assert (info.size_x, info.size_y) == (11, 9)


def test_bioformats_server_crash_fails_one_request(bioformats_jar: Path, tmp_path: Path) -> None:
    path = write_imagej(tmp_path / "hyperstack.tif", encoded_stack("uint16"))
    server = bioformats_server(bioformats_jar)
    with pytest.raises(ReaderError, match=r"JVM died during a request \(exit 134\)"):
        server.run(["selftest-halt", "134"], timeout=60)
    assert server.pid is None
    assert bioformats_info(path, bioformats_jar).shape == (T, Z, C, Y, X)
    # killed between two requests (e.g. by the OOM killer): the next request starts a new JVM
    pid = server.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # dead (not reaped) before the request
    np.testing.assert_array_equal(
        bioformats_pixels(path, bioformats_jar, tmp_path), encoded_stack("uint16")
    )
    assert server.pid not in (None, pid)


# --- ImageJ 1.x ----------------------------------------------------------------------------


def test_imagej_read_hyperstack(hyperstack: tuple[Path, np.ndarray], imagej_jar: Path) -> None:
    path, data = hyperstack
    positions = [(c, z, t) for t in range(T) for z in range(Z) for c in range(C)]
    info = imagej_read(path, positions, imagej_jar, points=POINTS)
    assert info.opened, info.error
    assert info.error == ""
    assert (info.width, info.height, info.channels, info.slices, info.frames) == (X, Y, C, Z, T)
    assert info.shape == data.shape
    assert info.bit_depth == {"uint8": 8, "uint16": 16, "float32": 32}[str(data.dtype)]
    assert info.n_images == T * Z * C
    assert info.is_hyperstack
    assert info.pixel_width == pytest.approx(PIXEL_UM, rel=1e-6)
    assert info.pixel_height == pytest.approx(PIXEL_UM, rel=1e-6)
    assert info.voxel_depth == pytest.approx(SPACING_UM)
    assert info.unit == "µm"
    assert info.frame_interval == pytest.approx(FINTERVAL_S)
    assert info.time_unit == "sec"
    assert len(info.channel_colors) == C
    assert set(info.planes) == set(positions)
    for (c, z, t), plane in info.planes.items():
        expected = data[t, z, c]
        got = np.array(plane.values, dtype=data.dtype)  # exact: 10 significant digits printed
        np.testing.assert_array_equal(got, [expected[y, x] for x, y in POINTS])
        assert plane_of(plane.values[0], str(data.dtype)) == (c, z, t)
        assert plane.mean == pytest.approx(float(expected.astype(np.float64).mean()), rel=1e-8)


def test_imagej_read_out_of_range_requests(
    hyperstack: tuple[Path, np.ndarray], imagej_jar: Path
) -> None:
    path, _ = hyperstack
    info = imagej_read(path, [(C, 0, 0), (0, 0, 0)], imagej_jar, points=((X, 0), (0, 0)))
    assert info.opened, info.error
    assert set(info.planes) == {(0, 0, 0)}  # the missing channel is left out, no hang
    assert np.isnan(info.planes[(0, 0, 0)].values[0])


def test_imagej_uncalibrated_single_plane(imagej_jar: Path, tmp_path: Path) -> None:
    path = tmp_path / "plane.tif"
    plane = np.arange(Y * X, dtype=np.uint16).reshape(Y, X)
    tifffile.imwrite(path, plane, imagej=True)  # without imagej=True, ImageJ's unit is " "
    info = imagej_read(path, [(0, 0, 0)], imagej_jar, points=POINTS)
    assert info.opened, info.error
    assert info.shape == (1, 1, 1, Y, X)
    assert not info.is_hyperstack
    assert info.unit == "pixels"
    assert info.frame_interval == 0.0
    assert info.planes[(0, 0, 0)].values == tuple(float(plane[y, x]) for x, y in POINTS)


def test_imagej_reports_failure_on_bigtiff_zstd(imagej_jar: Path, tmp_path: Path) -> None:
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, encoded_stack("uint16"), bigtiff=True, compression="zstd")
    start = time.monotonic()
    info = imagej_read(path, [(0, 0, 0)], imagej_jar, timeout=60)
    elapsed = time.monotonic() - start
    assert not info.opened
    assert "Format not supported" in info.error
    assert info.planes == {}
    assert elapsed < 30, "ImageJ failure must be reported promptly, not by the timeout"


def test_imagej_missing_file(imagej_jar: Path, tmp_path: Path) -> None:
    info = imagej_read(tmp_path / "missing.tif", [], imagej_jar, timeout=60)
    assert not info.opened
    assert "File not found" in info.error


def test_bioformats_reads_bigtiff_zstd(bioformats_jar: Path, tmp_path: Path) -> None:
    """The file ImageJ refuses is read by Bio-Formats (all planes on T: no ImageJ metadata)."""
    data = encoded_stack("uint16")
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, data, bigtiff=True, compression="zstd")
    info = bioformats_info(path, bioformats_jar)
    assert info.shape == (T * Z * C, 1, 1, Y, X)
    pixels = bioformats_pixels(path, bioformats_jar, tmp_path)
    np.testing.assert_array_equal(pixels.reshape(data.shape), data)


# --- fixtures' policy ----------------------------------------------------------------------


def test_unavailable_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"scripts/test\.sh"):
        _unavailable("no reader")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no reader"):
        _unavailable("no reader")


def test_imagej_timeout_is_reported_not_hung(imagej_jar: Path, tmp_path: Path) -> None:
    path = write_imagej(tmp_path / "hyperstack.tif", encoded_stack("uint16"))
    start = time.monotonic()
    info = imagej_read(path, [(0, 0, 0)], imagej_jar, timeout=0.05)
    assert time.monotonic() - start < 20
    assert not info.opened
    assert "timed out" in info.error
