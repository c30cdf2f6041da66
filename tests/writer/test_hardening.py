"""The faults adversarial testing found in the writer, one class per test.

Every scenario uses the real writer, real threads and real processes: a second thread closing
while a first one saves, a KeyboardInterrupt raised in the saving thread by a real signal, a
fork through multiprocessing, a killed writer followed by repair, files deleted or replaced
under the writer.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from mmtiffsink import (
    ConfigError,
    CoordinateError,
    FrameError,
    IJTiffFile,
    MissingFramesWarning,
    MMTiffSinkError,
    OutputExistsError,
    Tag,
    WriterClosedError,
    WriterError,
    repair,
)
from mmtiffsink._closing import close_after_block
from mmtiffsink.tiff import _pool
from tests.crash_support import run_child
from tests.writer_support import coded_frame, page_plane, read_hyperstack


# ------------------------------------------------------------------ 1. close while saving
@pytest.mark.parametrize("compression", ["zstd", None])
def test_close_from_another_thread_while_save_waits(tmp_path: Path, compression: Any) -> None:
    """A save either lands before close finishes or raises WriterClosedError; nothing later."""
    for trial in range(12):
        path = tmp_path / f"race{trial}.tif"
        tif = IJTiffFile(path, compression=compression, max_inflight=1)
        frame = np.random.default_rng(trial).integers(0, 60000, (256, 256), dtype=np.uint16)
        tif.save(frame, 0, 0, 0)
        landed: list[tuple[int, int, int]] = [(0, 0, 0)]
        refused: list[BaseException] = []
        go = threading.Event()

        def saver(
            tif: IJTiffFile = tif,
            frame: np.ndarray = frame,
            go: threading.Event = go,
            landed: list[tuple[int, int, int]] = landed,
            refused: list[BaseException] = refused,
        ) -> None:
            go.set()
            for t in range(1, 10_000):
                try:
                    tif.save(frame + t, 0, 0, t)
                except WriterClosedError as exc:
                    refused.append(exc)
                    return
                landed.append((0, 0, t))

        thread = threading.Thread(target=saver)
        thread.start()
        go.wait()
        time.sleep(0.002 * (trial % 4))
        tif.close()
        size_at_close = path.stat().st_size
        thread.join(10)
        assert not thread.is_alive()
        assert refused, "the saver must be told the file is closed"
        time.sleep(0.05)
        assert path.stat().st_size == size_at_close  # nothing written after close returned
        with tifffile.TiffFile(path) as f:
            stored = {page_plane(p) for p in f.pages}
            data = f.series[0].asarray().reshape(-1, 256, 256)
        assert set(landed) <= stored  # every save that returned is in the file
        for _c, _z, t in landed:
            np.testing.assert_array_equal(data[t], frame + t)


def test_a_file_opened_later_gets_no_byte_of_a_closed_one(tmp_path: Path) -> None:
    """A descriptor reused by a new file never receives a closed file's frames."""
    for trial in range(6):
        first = IJTiffFile(tmp_path / f"a{trial}.tif", max_inflight=2)
        frame = np.full((512, 512), 7, np.uint16)
        first.save(frame, 0, 0, 0)  # one frame before the race: close never removes it

        def saver(first: IJTiffFile = first, frame: np.ndarray = frame) -> None:
            for t in range(1, 1000):  # in order: no gap, so no blank planes
                try:
                    first.save(frame, 0, 0, t)
                except WriterClosedError:
                    return

        thread = threading.Thread(target=saver)
        thread.start()
        time.sleep(0.005)
        first.close()
        second = IJTiffFile(tmp_path / f"b{trial}.tif")
        thread.join(10)
        second.save(np.ones((4, 4), np.uint16), 0, 0, 0)
        second.close()
        with tifffile.TiffFile(tmp_path / f"b{trial}.tif") as f:
            assert len(f.pages) == 1
            np.testing.assert_array_equal(f.pages[0].asarray(), 1)


def test_read_frame_races_close(tmp_path: Path) -> None:
    """Reading back while another thread closes: right pixels or a clear error, never garbage."""
    tif = IJTiffFile(tmp_path / "r.tif")
    for t in range(40):
        tif.save(coded_frame(0, 0, t), 0, 0, t)
    errors: list[BaseException] = []

    def reader() -> None:
        for _ in range(20):
            for t in range(40):
                try:
                    image, _ = tif.read_frame(0, 0, t)
                except MMTiffSinkError as exc:  # pragma: no cover - allowed, must be ours
                    errors.append(exc)
                    continue
                np.testing.assert_array_equal(image, coded_frame(0, 0, t))

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for th in threads:
        th.start()
    tif.close()
    for th in threads:
        th.join(20)
    assert not errors


# ------------------------------------------------------------------ 2. BaseException
INTERRUPT_CHILD = """
    import faulthandler, signal, sys, threading
    faulthandler.dump_traceback_later(60, exit=True)  # a hang shows where it is
    import numpy as np
    from mmtiffsink import IJTiffFile
    from tests.writer_support import coded_frame
    path, compression = sys.argv[1], sys.argv[2]
    # a real SIGINT from a timer: KeyboardInterrupt lands wherever the saving thread is
    # (a child of a background job starts with SIGINT ignored: put Python's handler back)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.setitimer(signal.ITIMER_REAL, 0.05)
    signal.signal(signal.SIGALRM, lambda *a: signal.raise_signal(signal.SIGINT))
    tif = IJTiffFile(path, compression=None if compression == "none" else compression)
    n = 0
    try:
        for t in range(1_000_000):
            tif.save(coded_frame(0, 0, t % 1000, (64, 64)), 0, 0, t)
            n += 1
    except KeyboardInterrupt:
        print("interrupted", n, flush=True)
    # the writer is still usable: one more frame, then close
    tif.save(coded_frame(0, 0, 1, (64, 64)), 0, 1, 0)
    tif.close()
    print("closed", flush=True)
"""


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_keyboard_interrupt_reaches_the_caller(tmp_path: Path, compression: str) -> None:
    for trial in range(3):
        path = tmp_path / f"ki{trial}.tif"
        proc = run_child(INTERRUPT_CHILD, str(path), compression)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        lines = out.split()
        assert lines[0] == "interrupted" and "closed" in lines, out + err
        saved = int(lines[1])
        with tifffile.TiffFile(path) as f:
            planes = {page_plane(p) for p in f.pages}
            assert (0, 1, 0) in planes
            for page in f.pages:
                _c, z, t = page_plane(page)
                if z == 0 and t < saved:
                    expected = coded_frame(0, 0, t % 1000, (64, 64))
                    np.testing.assert_array_equal(page.asarray(), expected)
        assert {(0, 0, t) for t in range(saved)} <= planes


# ------------------------------------------------------------------ 3. fork
def _child_closes(path: str, queue: Any) -> None:
    # in the child: the inherited file is detached, a new file gets a pool of its own
    inherited = _INHERITED[0]
    inherited.close()
    try:
        inherited.save(np.zeros((8, 8), np.uint16), 0, 0, 99)
    except WriterClosedError as exc:
        queue.put(f"refused: {exc}")
    with IJTiffFile(path) as own:
        own.save(np.full((8, 8), 5, np.uint16), 0, 0, 0)
    queue.put("child done")


_INHERITED: list[IJTiffFile] = []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this OS")
def test_fork_while_a_file_is_open(tmp_path: Path) -> None:
    tif = IJTiffFile(tmp_path / "parent.tif")
    for t in range(5):
        tif.save(coded_frame(0, 0, t), 0, 0, t)
    _INHERITED[:] = [tif]
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    with pytest.warns(DeprecationWarning) if sys.version_info >= (3, 12) else _nothing():
        child = ctx.Process(target=_child_closes, args=(str(tmp_path / "child.tif"), queue))
        child.start()
    child.join(60)
    assert child.exitcode == 0
    messages = [queue.get(timeout=5), queue.get(timeout=5)]
    assert messages[0].startswith("refused") and "forked" in messages[0]
    assert messages[1] == "child done"
    for t in range(5, 8):
        tif.save(coded_frame(0, 0, t), 0, 0, t)
    tif.close()
    _INHERITED.clear()
    data, _, f = read_hyperstack(tmp_path / "parent.tif")
    with f:
        for t in range(8):
            np.testing.assert_array_equal(data[t, 0, 0], coded_frame(0, 0, t))
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "child.tif"), 5)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *args: object) -> None:
        return None


# ------------------------------------------------------------------ 4. repair in place
KILLED_IMAGEJ = """
    import os, sys
    import numpy as np
    from mmtiffsink import IJTiffFile
    from tests.writer_support import coded_frame
    tif = IJTiffFile(sys.argv[1], shape=(2, 3, 2), profile="imagej", compression=None,
                     channel_names=["A", "B"], pxsize=0.5)
    for c, z, t in [(1, 2, 1), (0, 0, 0), (1, 0, 0), (0, 1, 1)]:
        tif.save(coded_frame(c, z, t), c, z, t)
    tif.flush()
    os._exit(0)  # killed: no close
"""


def test_repair_killed_imagej_uncompressed_exactly(tmp_path: Path) -> None:
    path = tmp_path / "ij.tif"
    proc = run_child(KILLED_IMAGEJ, str(path))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    with pytest.warns(MissingFramesWarning, match="8 of 12"):
        report = repair(path)
    assert report.shape == (2, 3, 2) and report.frames == 4 and report.blank_planes == 8
    data, meta, f = read_hyperstack(path)
    with f:
        assert meta["channels"] == 2 and meta["slices"] == 3 and meta["frames"] == 2
        # ImageJ reads uncompressed planes in file order: every plane's data in its slot
        offsets = [p.dataoffsets[0] for p in f.pages]
        assert offsets == sorted(offsets)
    for c, z, t in [(1, 2, 1), (0, 0, 0), (1, 0, 0), (0, 1, 1)]:
        np.testing.assert_array_equal(data[t, z, c], coded_frame(c, z, t))
    assert not data[0, 1, 0].any()
    from mmtiffsink.inspect import file_info

    info = file_info(path)
    assert info.finished


# ------------------------------------------------------------------ 5. absurd coordinates
@pytest.mark.parametrize("coord", [(10**9, 0, 0), (0, 2**32, 0), (0, 0, 10**8), (4000, 4000, 1)])
def test_absurd_coordinates_are_refused_before_anything_is_queued(
    tmp_path: Path, coord: tuple[int, int, int]
) -> None:
    tif = IJTiffFile(tmp_path / "a.tif")
    tif.save(coded_frame(0, 0, 0), 0, 0, 0)
    start = time.perf_counter()
    with pytest.raises(CoordinateError, match="cap"):
        tif.save(coded_frame(0, 0, 0), *coord)
    tif.close()
    assert time.perf_counter() - start < 5  # not 10**9 planes built at close
    with tifffile.TiffFile(tmp_path / "a.tif") as f:
        assert len(f.pages) == 1


def test_plane_cap_is_settable_and_checks_the_declared_shape(tmp_path: Path) -> None:
    with pytest.raises(CoordinateError, match="cap"):
        IJTiffFile(tmp_path / "s.tif", shape=(1, 10**4, 10**4))
    with IJTiffFile(tmp_path / "m.tif", max_planes=4) as tif:
        for t in range(4):
            tif.save(coded_frame(0, 0, t), 0, 0, t)
        with pytest.raises(CoordinateError, match="cap of 4"):
            tif.save(coded_frame(0, 0, 4), 0, 0, 4)
    with pytest.raises(ConfigError):
        IJTiffFile(tmp_path / "x.tif", max_planes=0)


# ------------------------------------------------------------------ 6. casts
@pytest.mark.parametrize(
    ("value", "dtype"),
    [
        (2.0**63, "int64"),
        (2.0**31, "int32"),
        (2.0**64, "uint64"),
        (2.0**32, "uint32"),
        (-0.5, "uint16"),
        (65535.5, "uint16"),
        (float("nan"), "uint8"),
        (1e39, "float32"),
        (0.1, "float32"),
    ],
)
def test_value_changing_casts_raise(tmp_path: Path, value: float, dtype: str) -> None:
    with IJTiffFile(tmp_path / "c.tif", dtype=dtype) as tif:
        with pytest.raises(FrameError):
            tif.save(np.full((4, 4), value), 0, 0, 0)
        tif.save(np.zeros((4, 4), dtype), 0, 0, 0)


@pytest.mark.parametrize(
    ("source", "dtype"),
    [
        (np.array([[2**63 - 1]], np.int64), "uint64"),
        (np.array([[2**64 - 1]], np.uint64), "int64"),
        (np.array([[2**53 + 1]], np.int64), "float64"),
        (np.array([[-1]], np.int8), "uint8"),
    ],
)
def test_integer_casts_compare_in_integers(tmp_path: Path, source: np.ndarray, dtype: str) -> None:
    value = int(source[0, 0])
    with IJTiffFile(tmp_path / "i.tif", dtype=dtype) as tif:
        fits = np.iinfo(dtype).min <= value <= np.iinfo(dtype).max if dtype != "float64" else False
        if fits:
            tif.save(source, 0, 0, 0)
        else:
            with pytest.raises(FrameError):
                tif.save(source, 0, 0, 0)
            tif.save(np.zeros((1, 1), dtype), 0, 0, 0)
    if fits:
        assert int(tifffile.imread(tmp_path / "i.tif").item()) == value


def test_fractions_into_integers_round_or_truncate_on_request(tmp_path: Path) -> None:
    frame = np.array([[1.5, 2.4], [-0.0, 7.9]])
    with IJTiffFile(tmp_path / "r.tif", dtype="uint16", cast="round") as tif:
        tif.save(frame, 0, 0, 0)
    with IJTiffFile(tmp_path / "t.tif", dtype="uint16", cast="truncate") as tif:
        tif.save(frame, 0, 0, 0)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "r.tif"), [[2, 2], [0, 8]])
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "t.tif"), [[1, 2], [0, 7]])
    with IJTiffFile(tmp_path / "x.tif", dtype="uint16", cast="round") as tif:
        with pytest.raises(FrameError):  # out of range in every mode
            tif.save(np.array([[70000.2]]), 0, 0, 0)
        tif.save(np.zeros((1, 1)), 0, 0, 0)
    with pytest.raises(ConfigError):
        IJTiffFile(tmp_path / "y.tif", cast="wrap")  # type: ignore[arg-type]


# ------------------------------------------------------------------ 7. decoding tags
@pytest.mark.parametrize(
    "code",
    [266, 32997, 258, 339, 259, 317, 278, 322, 323, 324, 325, 330, 34665, 34853, 273, 279, 284],
)
def test_extratags_that_change_decoding_are_refused(tmp_path: Path, code: int) -> None:
    name = tifffile.TIFF.TAGS.get(code, str(code))
    with pytest.raises(ConfigError, match=str(code)) as caught:
        IJTiffFile(tmp_path / "t.tif", extratags={code: 1})
    assert name in str(caught.value)
    with IJTiffFile(tmp_path / "t.tif") as tif:
        with pytest.raises(ConfigError, match=str(code)):
            tif.save(coded_frame(0, 0, 0), 0, 0, 0, extratags=[Tag.long(code, [1])])
        tif.save(coded_frame(0, 0, 0), 0, 0, 0, extratags={"Artist": "me", 40000: 3})
    with tifffile.TiffFile(tmp_path / "t.tif") as f:
        assert f.pages[0].tags["Artist"].value == "me"


def test_pointer_field_types_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="IFD"):
        IJTiffFile(tmp_path / "p.tif", extratags=[Tag.ifd(40001, [8])])


# ------------------------------------------------------------------ 8. error types
def test_every_bad_input_is_an_mmtiffsink_error(tmp_path: Path) -> None:
    circular: dict[str, Any] = {}
    circular["self"] = circular
    deep: dict[str, Any] = {}
    cur = deep
    for _ in range(100_000):
        cur["a"] = {}
        cur = cur["a"]
    with IJTiffFile(tmp_path / "e.tif") as tif:
        for metadata in ({"x": float("nan")}, circular, {(1, 2): 3}, deep, ["not", "a dict"]):
            with pytest.raises(FrameError, match="metadata"):
                tif.save(coded_frame(0, 0, 0), 0, 0, 0, metadata=metadata)  # type: ignore[arg-type]
        with pytest.raises(FrameError):
            tif.save(np.zeros((2, 2, 2)), 0, 0, 0)
        with pytest.raises(FrameError):
            tif.save(object(), 0, 0, 0)
        tif.save(coded_frame(0, 0, 0), 0, 0, 0)
    bad_options: list[dict[str, Any]] = [
        {"pxsize": "x"},
        {"pxsize": -1},
        {"deltaz": float("inf")},
        {"colors": ["nocolor"]},
        {"colors": "red"},
        {"colormap": "nosuchmap"},
        {"compression": ("zstd", "x")},
        {"compression": "lzw"},
        {"compression": ("deflate", 99)},
        {"shape": (1, 2)},
        {"shape": (0, 1, 1)},
        {"dtype": "complex64"},
        {"dtype": "not a dtype"},
        {"profile": "ome-zarr"},
        {"max_inflight": 0},
    ]
    for kwargs in bad_options:
        with pytest.raises(MMTiffSinkError) as caught:
            IJTiffFile(tmp_path / "o.tif", **kwargs)
        assert isinstance(caught.value, ValueError), kwargs
        assert "invalid literal" not in str(caught.value)


def test_sink_and_tiffwrite_input_errors_are_ours(tmp_path: Path) -> None:
    from mmtiffsink import TiffSink, tiffwrite

    with pytest.raises(ConfigError, match="unique"):
        TiffSink(tmp_path, "x", channel_names=["DAPI", "DAPI"])
    with pytest.raises(ConfigError, match="template"):
        TiffSink(tmp_path, "x", template="{name!r}.tif")
    with pytest.raises(ConfigError, match="axes"):
        tiffwrite(tmp_path / "t.tif", np.zeros((2, 3, 4)), "YXC")
    with pytest.raises(ConfigError, match="2-D to 5-D"):
        tiffwrite(tmp_path / "t.tif", np.zeros(4), "X")
    assert not list(tmp_path.iterdir())


def test_os_errors_are_writer_errors_that_say_what_to_do(tmp_path: Path) -> None:
    folder = tmp_path / "a_folder.tif"
    folder.mkdir()
    with pytest.raises(WriterError, match="cannot create") as caught:
        IJTiffFile(folder)
    assert isinstance(caught.value, OSError)
    with pytest.raises(WriterError, match="cannot create"):
        IJTiffFile(tmp_path / "missing" / "x.tif")
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(WriterError, match="cannot create"):
            IJTiffFile(ro / "x.tif")
    (tmp_path / "exists.tif").write_bytes(b"keep me")
    with pytest.raises(OutputExistsError):
        IJTiffFile(tmp_path / "exists.tif", overwrite=False)
    assert (tmp_path / "exists.tif").read_bytes() == b"keep me"


# ------------------------------------------------------------------ 9. deleted or replaced
@pytest.mark.parametrize("how", ["deleted", "replaced", "renamed"])
def test_file_deleted_or_replaced_while_written(tmp_path: Path, how: str) -> None:
    path = tmp_path / "gone.tif"
    tif = IJTiffFile(path)
    tif.save(coded_frame(0, 0, 0), 0, 0, 0)
    tif.flush()
    if how == "deleted":
        path.unlink()
    elif how == "replaced":
        path.unlink()
        path.write_bytes(b"another file")
    else:
        path.rename(tmp_path / "elsewhere.tif")
    tif.save(coded_frame(0, 0, 1), 0, 0, 1)
    with pytest.raises(WriterError, match="deleted or replaced"):
        tif.flush()
    with pytest.raises(WriterError, match="deleted or replaced"):
        tif.close()
    if how == "replaced":
        assert path.read_bytes() == b"another file"


# ------------------------------------------------------------------ 14. close errors
def test_close_error_is_kept_as_a_note_on_every_python() -> None:
    def failing_close() -> None:
        msg = "disk gone"
        raise OSError(msg)

    block_error = ValueError("the block failed")
    if sys.version_info >= (3, 11):
        close_after_block(failing_close, block_error, "x.tif")
        assert any("disk gone" in n for n in block_error.__notes__)
    # the 3.10 path: an exception type without add_note
    legacy = _NoAddNote("old python")
    close_after_block(failing_close, legacy, "y.tif")
    assert any("disk gone" in n for n in legacy.__notes__)


class _NoAddNote(Exception):
    """Behaves as exceptions do on Python 3.10: no ``add_note``."""

    def __getattribute__(self, name: str) -> Any:
        if name == "add_note":
            raise AttributeError(name)
        return super().__getattribute__(name)


# ------------------------------------------------------------------ tiffwrite's API
def test_tiffwrite_attribute_names_and_no_silent_typos(tmp_path: Path) -> None:
    path = tmp_path / "tw.tif"
    with IJTiffFile(path, (2, 1, 2)) as tif:  # old positional shape
        tif.px_size = 0.25
        tif.delta_z = 1.5
        tif.time_interval = 3.0
        tif.colors = ["magenta", "green"]
        tif.comment = "hello"
        tif.append_extra_tag(Tag.ascii(315, "Jane"))
        tif.append_extra_tag(Tag.ascii(33000, "for (1, 0, 1)"), (1, 0, 1))
        assert (tif.pxsize, tif.deltaz, tif.timeinterval) == (0.25, 1.5, 3.0)
        with pytest.raises(AttributeError):
            tif.pixel_size = 1.0  # type: ignore[attr-defined]
        with pytest.raises(AttributeError):
            tif.timeinterva = 2.0  # type: ignore[attr-defined]
        for c, z, t in [(c, 0, t) for t in range(2) for c in range(2)]:
            tif.save(np.random.randint(0, 255, (64, 64)), c, z, t)
    _data, meta, f = read_hyperstack(path)
    with f:
        assert meta["spacing"] == 1.5 and meta["finterval"] == 3.0
        xres = f.pages[0].tags["XResolution"].value
        assert xres[0] / xres[1] == pytest.approx(4.0)
        assert f.pages[0].tags["Artist"].value == "Jane"
        tagged = [p for p in f.pages if 33000 in p.tags]
        assert len(tagged) == 1 and page_plane(tagged[0]) == (1, 0, 1)


def test_tiffwrite_set_compression_before_the_first_save(tmp_path: Path) -> None:
    with IJTiffFile(tmp_path / "sc.tif") as tif:
        tif.set_compression(8, 6)
        assert str(tif.compression) == "deflate:6"
        tif.save(coded_frame(0, 0, 0), 0, 0, 0)
        with pytest.raises(ConfigError, match="before the first save"):
            tif.set_compression("zstd", 1)
    with tifffile.TiffFile(tmp_path / "sc.tif") as f:
        assert f.pages[0].compression == 8


# ------------------------------------------------------------------ the budget is global
def test_inflight_budget_is_shared_by_every_open_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frames in flight, counted by the files (saved - linked), stay within ONE budget.

    The budget holds two frames; six files each save from this thread faster than zstd 19 can
    go. A budget per file would let 6 x 2 frames be in flight at once; one shared budget keeps
    it at two (plus one frame that may pass a full budget alone, plus the frame just saved).
    The count comes from the files themselves, not from the budget under test.
    """
    frame = np.random.default_rng(0).integers(0, 60000, (512, 512), dtype=np.uint16)
    # a frame in flight charges its pixels and its compressed size bound: about 2 x nbytes
    monkeypatch.setattr(_pool, "_budget", _pool.Budget(2 * (2 * frame.nbytes + (64 << 10))))
    files = [IJTiffFile(tmp_path / f"b{i}.tif", compression=("zstd", 19)) for i in range(6)]
    saved = peak = 0
    try:
        for t in range(6):
            for tif in files:
                tif.save(frame + t, 0, 0, t)
                saved += 1
                peak = max(peak, saved - sum(f.frames_written for f in files))
    finally:
        for tif in files:
            tif.close()
    assert _pool.budget().used == 0
    assert sum(f.frames_written for f in files) == saved == 36
    assert 2 <= peak <= 4, f"{peak} frames were in flight at once"


def test_portable_io_fallback_is_used_when_forced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MMTIFFSINK_PORTABLE_IO", "1")
    with IJTiffFile(tmp_path / "p.tif", compression=None) as tif:
        assert not tif._io.positional
        for t in range(3):
            tif.save(coded_frame(0, 0, t), 0, 0, t)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "p.tif")[2], coded_frame(0, 0, 2))
    monkeypatch.delenv("MMTIFFSINK_PORTABLE_IO")
    with IJTiffFile(tmp_path / "q.tif") as tif:
        assert tif._io.positional == hasattr(os, "pwrite")
        tif.save(coded_frame(0, 0, 0), 0, 0, 0)

