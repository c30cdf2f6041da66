"""mmtiffsink.open: a lazy hyperstack view of files, ours (finished or growing) and others'."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

import mmtiffsink
from mmtiffsink import DatasetError, IJTiffFile, MissingFramesWarning
from mmtiffsink.tiff import OwnFile
from mmtiffsink.tiff.format import IfdWalk
from tests.writer_support import coded_frame

FRAME = (24, 40)


def expected(shape_czt: tuple[int, int, int], frame: tuple[int, int] = FRAME) -> np.ndarray:
    """The (T, Z, C, Y, X) array of coded frames."""
    c_n, z_n, t_n = shape_czt
    out = np.zeros((t_n, z_n, c_n, *frame), dtype=np.uint16)
    for t in range(t_n):
        for z in range(z_n):
            for c in range(c_n):
                out[t, z, c] = coded_frame(c, z, t, frame)
    return out


CASES = [
    ("bigtiff", "zstd"),
    ("bigtiff", None),
    ("bigtiff", "zstd:1+predictor"),
    ("bigtiff", "deflate"),
    ("imagej", "deflate"),
    ("ome", "zstd"),
]


@pytest.mark.parametrize(("profile", "compression"), CASES)
def test_finished_file_reads_exactly(tmp_path: Path, profile: str, compression: str | None) -> None:
    path = tmp_path / ("a.ome.tif" if profile == "ome" else "a.tif")
    want = expected((2, 3, 4))
    with IJTiffFile(
        path,
        compression=compression,
        profile=profile,  # type: ignore[arg-type]
        pxsize=0.5,
        deltaz=2.0,
        timeinterval=3.0,
        channel_names=["DAPI", "FITC"],
        colors=["blue", "#00ff00"],
    ) as tif:
        for t in (3, 0, 2, 1):  # not plane order: the final chain is rewritten
            for z in range(3):
                for c in range(2):
                    tif.save(want[t, z, c], c, z, t)
    with mmtiffsink.open(path) as h:
        assert isinstance(h, OwnFile)
        assert h.shape == (4, 3, 2, *FRAME)
        assert h.dims == ("T", "Z", "C", "Y", "X")
        assert h.ndim == 5 and len(h) == 4
        assert h.dtype == np.uint16
        assert h.finished
        assert h.written.all()
        np.testing.assert_array_equal(h[...], want)
        np.testing.assert_array_equal(np.asarray(h), want)
        np.testing.assert_array_equal(h.to_dask().compute(), want)
        assert h.channel_names == ["DAPI", "FITC"]
        assert h.colors == [(0, 0, 255), (0, 255, 0)]
        assert (h.pixel_size_um, h.z_step_um, h.interval_s) == (0.5, 2.0, 3.0)
    # tifffile is the oracle of the same file
    np.testing.assert_array_equal(tifffile.imread(path).reshape(want.shape), want)


INDEXES: list[Any] = [
    (0, 0, 0),
    (-1, -1, -1),
    (2,),
    (slice(1, 3), 0),
    (slice(None, None, -1), slice(None), 1),
    (Ellipsis, 5, slice(2, 9)),
    (1, Ellipsis),
    (0, [2, 0], slice(None), 3),
    (slice(None), 1, 0, slice(0, 5), -1),
    (np.int64(3), np.int32(2), 1),
    (),
]


@pytest.mark.parametrize("key", INDEXES)
def test_indexing_is_numpy_indexing(tmp_path: Path, key: Any) -> None:
    path = tmp_path / "a.tif"
    want = expected((2, 3, 4))
    with IJTiffFile(path) as tif:
        for t in range(4):
            for z in range(3):
                for c in range(2):
                    tif.save(want[t, z, c], c, z, t)
    with mmtiffsink.open(path) as h:
        got = h[key]
        np.testing.assert_array_equal(got, want[key])
        assert got.shape == want[key].shape
        got[...] = 0  # a result is the caller's own array, never the cache's
        np.testing.assert_array_equal(h[key], want[key])


def test_bad_indexes_raise_index_error(tmp_path: Path) -> None:
    path = tmp_path / "a.tif"
    with IJTiffFile(path) as tif:
        tif.save(coded_frame(0, 0, 0), 0, 0, 0)
    with mmtiffsink.open(path) as h:
        for key in [(1, 0, 0), (0, -2), (0, 0, 0, 0, 0, 0), (None,), (..., 0, ...), ("a",)]:
            with pytest.raises(IndexError):
                h[key]
        with pytest.raises(IndexError):
            h.is_written(0, 0, 1)
    with pytest.raises(ValueError, match="closed"):
        h.shape  # noqa: B018


def test_identical_frames_are_decoded_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.tif"
    same = coded_frame(0, 1, 0)
    with IJTiffFile(path) as tif:
        for t in range(20):
            tif.save(same if t % 2 else coded_frame(0, 0, t), 0, 0, t)
    decoded: list[object] = []
    real = OwnFile._decode

    def counting(self: OwnFile, where: Any) -> np.ndarray:
        decoded.append(where)
        return real(self, where)

    monkeypatch.setattr(OwnFile, "_decode", counting)
    with mmtiffsink.open(path) as h:
        stack = h[:, 0, 0]
        for t in range(20):
            np.testing.assert_array_equal(stack[t], same if t % 2 else coded_frame(0, 0, t))
    assert len(decoded) == 11  # 10 distinct frames + the one stored for every odd t


def test_missing_planes_read_as_zeros_until_written(tmp_path: Path) -> None:
    path = tmp_path / "a.tif"
    tif = IJTiffFile(path, shape=(2, 1, 3))
    try:
        tif.save(coded_frame(1, 0, 2), 1, 0, 2)
        tif.flush()
        with mmtiffsink.open(path) as h:
            assert h.shape == (3, 1, 2, *FRAME)  # the declared shape
            assert not h.finished
            assert h.written.tolist() == [[[False, False]], [[False, False]], [[False, True]]]
            assert h.is_written(-1, 0, -1) and not h.is_written(0, 0, 0)
            assert not h[0, 0, 0].any()
            np.testing.assert_array_equal(h[2, 0, 1], coded_frame(1, 0, 2))
            tif.save(coded_frame(0, 0, 0), 0, 0, 0)
            tif.flush()
            assert not h.written[0, 0, 0]  # what the file held when last read
            assert h.refresh()
            assert not h.refresh()  # nothing new
            assert h.written[0, 0, 0]
            np.testing.assert_array_equal(h[0, 0, 0], coded_frame(0, 0, 0))
    finally:
        with pytest.warns(MissingFramesWarning):
            tif.close()


def test_negative_coordinates_count_from_the_smallest(tmp_path: Path) -> None:
    path = tmp_path / "a.tif"
    with IJTiffFile(path, allow_negative=True) as tif:
        for z in (-2, -1, 0, 1):
            tif.save(coded_frame(0, z + 2, 0), 0, z, 0)
    with mmtiffsink.open(path) as h:
        assert h.shape == (1, 4, 1, *FRAME)
        for z in range(4):
            np.testing.assert_array_equal(h[0, z, 0], coded_frame(0, z, 0))


def test_series_of_an_ome_file(tmp_path: Path) -> None:
    path = tmp_path / "a.ome.tif"
    with IJTiffFile(path, profile="ome") as tif:
        tif.set_series(1, name="B2")
        for s, n_t in ((0, 2), (1, 3)):
            for t in range(n_t):
                tif.save(coded_frame(s, 0, t), 0, 0, t, series=s)
    for s, n_t in ((0, 2), (1, 3)):
        with mmtiffsink.open(path, series=s) as h:
            assert h.shape == (n_t, 1, 1, *FRAME)
            for t in range(n_t):
                np.testing.assert_array_equal(h[t, 0, 0], coded_frame(s, 0, t))
    with pytest.raises(mmtiffsink.ConfigError):
        mmtiffsink.open(path, series=-1)


# ---------------------------------------------------------------------- others' files
def test_imagej_file_of_tifffile(tmp_path: Path) -> None:
    path = tmp_path / "ij.tif"
    want = expected((2, 3, 2))
    tifffile.imwrite(
        path,
        want,
        imagej=True,
        resolution=(1 / 0.25, 1 / 0.25),
        metadata={"axes": "TZCYX", "spacing": 1.5, "unit": "um", "finterval": 4.0},
    )
    with mmtiffsink.open(path) as h:
        assert h.shape == want.shape
        assert h.finished and h.written.all()
        np.testing.assert_array_equal(h[...], want)
        np.testing.assert_array_equal(h[1, 2, 1], want[1, 2, 1])
        assert h.pixel_size_um == pytest.approx(0.25)
        assert h.z_step_um == pytest.approx(1.5)
        assert h.interval_s == pytest.approx(4.0)
        assert not h.refresh()


def test_ome_file_of_tifffile(tmp_path: Path) -> None:
    path = tmp_path / "x.ome.tif"
    want = expected((2, 1, 3))
    tifffile.imwrite(
        path,
        want,
        ome=True,
        compression="zlib",
        metadata={
            "axes": "TZCYX",
            "PhysicalSizeX": 0.3,
            "PhysicalSizeY": 0.3,
            "Channel": {"Name": ["A", "B"]},
        },
    )
    with mmtiffsink.open(path) as h:
        assert h.shape == want.shape
        np.testing.assert_array_equal(h[...], want)
        assert h.channel_names == ["A", "B"]
        assert h.pixel_size_um == pytest.approx(0.3)


def test_plain_stack_and_rgb_of_tifffile(tmp_path: Path) -> None:
    stack = np.arange(5 * 8 * 9, dtype=np.uint8).reshape(5, 8, 9)
    tifffile.imwrite(tmp_path / "s.tif", stack)
    with mmtiffsink.open(tmp_path / "s.tif") as h:
        assert h.shape == (1, 5, 1, 8, 9)  # a plain stack is slices, as ImageJ shows it
        np.testing.assert_array_equal(h[0, :, 0], stack)
    rgb = np.arange(3 * 8 * 9 * 3, dtype=np.uint8).reshape(3, 8, 9, 3)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    with mmtiffsink.open(tmp_path / "rgb.tif") as h:
        assert h.dims == ("T", "Z", "C", "Y", "X", "S")
        assert h.shape == (1, 3, 1, 8, 9, 3)
        np.testing.assert_array_equal(h[0, :, 0], rgb)
        np.testing.assert_array_equal(h[0, 1, 0, 2:4, :, 1], rgb[1, 2:4, :, 1])


# ---------------------------------------------------------------------- hostile files
def _bigtiff_header(first: int) -> bytes:
    return b"II" + struct.pack("<HHHQ", 43, 8, 0, first)


def _entry(code: int, dtype: int, count: int, value: bytes) -> bytes:
    return struct.pack("<HHQ", code, dtype, count) + value.ljust(8, b"\0")


def _chain(path: Path) -> list[int]:
    """The IFD offsets of a BigTIFF's chain (a short, sound one)."""
    with path.open("rb") as fh:
        walk = IfdWalk.growing(fh)
        offsets = [ifd.offset for ifd in walk]
    assert walk.stop == "end" and walk.header.bigtiff
    return offsets


def test_a_chain_that_loops_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "loop.tif"
    with IJTiffFile(path) as tif:
        for t in range(4):
            tif.save(coded_frame(0, 0, t), 0, 0, t)
    chain = _chain(path)
    raw = bytearray(path.read_bytes())
    last = chain[-1]
    (count,) = struct.unpack_from("<Q", raw, last)
    struct.pack_into("<Q", raw, last + 8 + 20 * count, chain[1])  # back to the second IFD
    path.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match="loops"):
        mmtiffsink.open(path)


def test_hostile_counts_fail_in_one_line(tmp_path: Path) -> None:
    settings = _entry(65422, 2, 3, b"{}\0")
    # an entry count of 2**40 in a file of a few bytes: refused before any read sized by it
    huge = tmp_path / "huge.tif"
    huge.write_bytes(_bigtiff_header(16) + struct.pack("<Q", 1 << 40) + settings)
    with pytest.raises(DatasetError, match="entries"):
        OwnFile(huge)
    # a settings tag claiming 2**40 bytes is skipped; a frame of 2**20 x 2**20 is refused
    big = tmp_path / "value.tif"
    entries = [
        _entry(256, 4, 1, struct.pack("<I", 1 << 20)),
        _entry(257, 4, 1, struct.pack("<I", 1 << 20)),
        _entry(65422, 2, 1 << 40, struct.pack("<Q", 16)),
    ]
    body = struct.pack("<Q", len(entries)) + b"".join(entries) + struct.pack("<Q", 0)
    big.write_bytes(_bigtiff_header(16) + body)
    with pytest.raises(DatasetError, match="too large"):
        OwnFile(big)
    with pytest.raises(DatasetError, match="no such file"):
        mmtiffsink.open(tmp_path / "missing.tif")
    with pytest.raises(DatasetError, match="directory"):
        mmtiffsink.open(tmp_path)
    (tmp_path / "text.tif").write_text("hello")
    with pytest.raises(DatasetError, match="not a TIFF"):
        mmtiffsink.open(tmp_path / "text.tif")


def test_a_damaged_frame_is_a_dataset_error(tmp_path: Path) -> None:
    path = tmp_path / "a.tif"
    with IJTiffFile(path) as tif:
        tif.save(coded_frame(0, 0, 0), 0, 0, 0)
    with mmtiffsink.open(path) as h:
        data_at = next(iter(h._where_of.values()))[0]  # type: ignore[attr-defined]
    raw = bytearray(path.read_bytes())
    raw[data_at : data_at + 8] = b"\xff" * 8  # no longer a zstd frame
    path.write_bytes(bytes(raw))
    with mmtiffsink.open(path) as h, pytest.raises(DatasetError, match="cannot be decoded"):
        h[0, 0, 0]


# ---------------------------------------------------------------------- growing files
WRITER = """
    import sys, time
    from mmtiffsink import IJTiffFile
    from tests.writer_support import coded_frame
    path, compression, n_t = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with IJTiffFile(path, compression=None if compression == "none" else compression,
                    pxsize=0.5, channel_names=["A", "B"]) as tif:
        for t in range(n_t):
            for z in (2, 0, 1):  # not plane order
                for c in (1, 0):
                    tif.save(coded_frame(c, z, t, (64, 48)), c, z, t)
            tif.flush()
            print("flushed", t, flush=True)
            time.sleep(0.01)
        if len(sys.argv) > 4:
            time.sleep(600)  # wait to be killed
    print("closed", flush=True)
"""


def _writer(tmp_path: Path, path: Path, compression: str, n_t: int, *hold: str) -> Any:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")]
    )
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(WRITER), str(path), compression, str(n_t), *hold],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )


def _check_view(h: Any, seen: list[tuple[int, ...]]) -> None:
    """Every plane the view says is written holds exactly its coded frame."""
    shape = h.shape
    seen.append(shape)
    written = h.written
    assert written.shape == shape[:3]
    for t, z, c in zip(*np.nonzero(written), strict=True):
        np.testing.assert_array_equal(h[t, z, c], coded_frame(int(c), int(z), int(t), (64, 48)))
    if shape[0]:  # planes not written read as zeros
        for t, z, c in zip(*np.nonzero(~written), strict=True):
            assert not h[t, z, c].any()


@pytest.mark.parametrize("portable", [False, True])
@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_reading_while_another_process_writes(
    tmp_path: Path, compression: str, portable: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if portable:
        monkeypatch.setenv("MMTIFFSINK_PORTABLE_IO", "1")
    path = tmp_path / "live.tif"
    n_t = 40
    child = _writer(tmp_path, path, compression, n_t)
    seen: list[tuple[int, ...]] = []
    opened = 0
    deadline = time.monotonic() + 120
    try:
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        with mmtiffsink.open(path) as h:
            while child.poll() is None and time.monotonic() < deadline:
                h.refresh()
                _check_view(h, seen)
                with mmtiffsink.open(path) as fresh:  # a new reader each time, too
                    assert isinstance(fresh, OwnFile)  # at every moment: ours, not a plain stack
                    _check_view(fresh, seen)
                    opened += 1
            out, err = child.communicate(timeout=60)
            h.refresh()  # the reader that watched it grow finds the finished chain
            assert h.finished
            np.testing.assert_array_equal(h[...], expected((2, 3, n_t), (64, 48)))
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0, err
    assert out.splitlines()[-1] == "closed"
    sizes = [s[0] for s in seen]
    assert len(set(sizes)) > 3, sizes  # the shape was seen growing
    assert opened > 3
    with mmtiffsink.open(path) as h:
        assert h.finished
        np.testing.assert_array_equal(h[...], expected((2, 3, n_t), (64, 48)))
        assert h.channel_names == ["A", "B"] and h.pixel_size_um == 0.5


@pytest.mark.parametrize("portable", [False, True])
def test_reading_a_killed_writers_file(
    tmp_path: Path, portable: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if portable:
        monkeypatch.setenv("MMTIFFSINK_PORTABLE_IO", "1")
    path = tmp_path / "killed.tif"
    child = _writer(tmp_path, path, "zstd", 6, "hold")
    assert child.stdout is not None
    seen: list[tuple[int, ...]] = []
    try:
        with _open_when_there(path) as h:
            for line in child.stdout:
                h.refresh()
                _check_view(h, seen)
                if line.startswith("flushed 5"):
                    break
            child.kill()
            child.communicate(timeout=30)
            h.refresh()
            _check_view(h, seen)
            assert h.shape[:3] == (6, 3, 2)
            assert h.written.all()
            assert not h.finished
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    with mmtiffsink.open(path) as h:  # after the kill: every flushed frame, exactly
        assert not h.finished
        np.testing.assert_array_equal(h[...], expected((2, 3, 6), (64, 48)))


def _open_when_there(path: Path) -> Any:
    deadline = time.monotonic() + 60
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    return mmtiffsink.open(path)


@pytest.mark.parametrize(
    ("profile", "compression"),
    [("bigtiff", "zstd"), ("bigtiff", "zstd:1+predictor"), ("imagej", "deflate"), ("ome", None)],
)
def test_rgb_files_have_a_trailing_sample_axis(
    tmp_path: Path, profile: str, compression: str | None
) -> None:
    path = tmp_path / ("rgb.ome.tif" if profile == "ome" else "rgb.tif")
    rng = np.random.default_rng(7)
    frames = {
        (z, t): rng.integers(0, 256, (8, 10, 3), dtype=np.uint8) for z in (0, 1) for t in (0, 1, 2)
    }
    with IJTiffFile(path, dtype="uint8", profile=profile, compression=compression) as tif:  # type: ignore[arg-type]
        view = tif.view()
        for (z, t), frame in frames.items():
            tif.save(frame, 0, z, t)
        tif.flush()
        assert view.shape == (3, 2, 1, 8, 10, 3)
        np.testing.assert_array_equal(view[2, 1, 0], frames[1, 2])
    view.close()
    with mmtiffsink.open(path) as h:
        assert h.dims == ("T", "Z", "C", "Y", "X", "S") and h.ndim == 6
        for (z, t), frame in frames.items():
            np.testing.assert_array_equal(h[t, z, 0], frame)
        np.testing.assert_array_equal(h[1, :, 0, 3, :, 2], [frames[z, 1][3, :, 2] for z in (0, 1)])


def test_a_view_holds_no_descriptor_and_sees_a_replaced_file(tmp_path: Path) -> None:
    path = tmp_path / "a.tif"
    with IJTiffFile(path) as tif:
        for t in range(2):
            tif.save(coded_frame(0, 0, t), 0, 0, t)
    h = mmtiffsink.open(path)
    fds = len(os.listdir("/proc/self/fd")) if Path("/proc/self/fd").exists() else None
    np.testing.assert_array_equal(h[0, 0, 0], coded_frame(0, 0, 0))
    if fds is not None:  # nothing left open between reads (Windows can delete the file)
        assert len(os.listdir("/proc/self/fd")) == fds
    path.unlink()
    with IJTiffFile(path) as tif:  # a new acquisition at the same path, other frames
        for t in range(3):
            tif.save(coded_frame(1, 0, t, (16, 20)), 0, 0, t)
    with pytest.raises(DatasetError, match="replaced"):
        h[1, 0, 0]  # never a plane of the new file read through the old file's index
    assert h.refresh()
    assert h.shape == (3, 1, 1, 16, 20)
    for t in range(3):
        np.testing.assert_array_equal(h[t, 0, 0], coded_frame(1, 0, t, (16, 20)))
    h.close()
