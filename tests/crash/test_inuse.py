"""A file in use: its lock record, info/preview/repair beside a live writer, one IFD walker.

The writers run in real subprocesses (``sys.executable``, this checkout on PYTHONPATH): the
OS locks, the growing file and SIGKILL are the real ones. ``MMTIFFSINK_PORTABLE_IO=1`` forces
the path taken where no OS lock can be had (the record judged by pid and host).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from mmtiffsink import IJTiffFile, MissingFramesWarning, repair
from mmtiffsink.errors import DatasetError, OutputExistsError, WriterError
from mmtiffsink.inspect import file_info, preview
from mmtiffsink.inspect._planes import stacks
from mmtiffsink.tiff._tags import Layout
from mmtiffsink.tiff.format import Entry, IfdWalk, in_use, lock_path
from tests.writer_support import coded_frame, read_hyperstack

ROOT = Path(__file__).resolve().parents[2]
SHAPE = (2, 2)  # C, Z
FRAME = (40, 56)

WRITER = """
    import sys, time
    from mmtiffsink import IJTiffFile
    from tests.writer_support import coded_frame
    path, compression, times = sys.argv[1], sys.argv[2], int(sys.argv[3])
    tif = IJTiffFile(path, compression=None if compression == "none" else compression,
                     pxsize=0.5, channel_names=["A", "B"])
    print("open", flush=True)
    for t in range(times):
        for z in range(2):
            for c in range(2):
                tif.save(coded_frame(c, z, t, (40, 56)), c, z, t)
        tif.flush()
        print("flushed", t, flush=True)
        time.sleep(0.01)
    tif.close()
    print("closed", flush=True)
"""


def run_child(code: str, *args: str, portable: bool = False) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("MMTIFFSINK_PORTABLE_IO", None)
    if portable:
        env["MMTIFFSINK_PORTABLE_IO"] = "1"
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_line(child: subprocess.Popen[str], start: str) -> str:
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line.startswith(start):
        out, err = child.communicate(timeout=30)
        pytest.fail(f"child failed: {line}{out}{err}")
    return line


def check_pixels(path: Path) -> int:
    """Read every plane info reports (as preview reads them) and compare; returns planes read."""
    import tifffile

    info = file_info(path)
    with tifffile.TiffFile(path) as tif:
        (stack,) = stacks(tif, info, tile=64)
        read = 0
        c_size, z_size, t_size = stack.sizes
        for t in range(t_size):
            for z in range(z_size):
                for c in range(c_size):
                    where = stack.locate(c, z, t)
                    if where is None:
                        continue
                    assert np.array_equal(stack.read(where), coded_frame(c, z, t, FRAME))
                    read += 1
    return read


# ------------------------------------------------------------------------------ the record
def test_writer_holds_a_lock_record_and_removes_it(tmp_path: Path) -> None:
    path = tmp_path / "a.tif"
    tif = IJTiffFile(path, shape=(1, 1, 2), dtype="uint16")
    try:
        record = json.loads(lock_path(path).read_text())
        assert record["pid"] == os.getpid()
        assert record["host"] == socket.gethostname()
        mark = in_use(path)
        assert mark is not None and mark.state == "live" and mark.mine
        tif.save(coded_frame(0, 0, 0, FRAME), 0, 0, 0)
        tif.flush()
        info = file_info(path)
        assert info.in_use and info.planes == 1
        assert "being written, 1 frames so far" in info.format()
        with pytest.raises(DatasetError, match=r"is being written .*repair refused"):
            repair(path)
        assert in_use(path) is not None  # neither check nor repair dropped the writer's lock
    finally:
        with pytest.warns(MissingFramesWarning):
            tif.close()
    assert not lock_path(path).exists()
    assert in_use(path) is None
    assert file_info(path).finished


def test_second_writer_is_refused_while_the_first_lives(tmp_path: Path) -> None:
    path = tmp_path / "a.tif"
    child = run_child(WRITER, str(path), "zstd", "400")
    try:
        wait_line(child, "open")
        wait_line(child, "flushed")
        with pytest.raises(OutputExistsError, match="being written by another writer"):
            IJTiffFile(path, overwrite=True)
    finally:
        child.kill()
        child.communicate(timeout=30)
    assert file_info(path).planes >= 4  # the refused writer did not truncate it


def test_stale_record_of_a_killed_writer_is_recognised_and_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "a.tif"
    child = run_child(WRITER, str(path), "zstd", "400")
    wait_line(child, "open")
    wait_line(child, "flushed")
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)
    mark = in_use(path)
    assert mark is not None and mark.state == "stale" and mark.pid == child.pid
    info = file_info(path)
    assert not info.finished and not info.in_use
    assert f"its writer stopped: pid {child.pid}" in info.format()
    report = repair(path)
    assert report.frames >= 4 and not lock_path(path).exists()
    assert file_info(path).finished


def test_a_record_of_another_host_stops_repair_and_says_how_to_proceed(tmp_path: Path) -> None:
    path = tmp_path / "a.tif"
    with pytest.warns(MissingFramesWarning), IJTiffFile(path, shape=(1, 1, 2)) as tif:
        tif.save(coded_frame(0, 0, 0, FRAME), 0, 0, 0)
    record = {"pid": 1, "host": "elsewhere", "started": "2026-12-01 10:00:00", "held_by": "os"}
    lock_path(path).write_text(json.dumps(record))
    mark = in_use(path)
    assert mark is not None and mark.state == "unknown"
    with pytest.raises(DatasetError, match=r"another host .*delete .*a\.tif\.lock"):
        repair(path)
    with pytest.raises(OutputExistsError, match="host elsewhere"):
        IJTiffFile(path)
    lock_path(path).unlink()
    assert repair(path).already_finished


def test_record_only_path_judges_the_pid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where no OS lock can be had, the record's pid on this host decides (forced here)."""
    monkeypatch.setenv("MMTIFFSINK_PORTABLE_IO", "1")
    path = tmp_path / "a.tif"
    child = run_child(WRITER, str(path), "zstd", "400", portable=True)
    try:
        wait_line(child, "open")
        wait_line(child, "flushed")
        assert json.loads(lock_path(path).read_text())["held_by"] == "record"
        mark = in_use(path)
        assert mark is not None and mark.state == "live"
        with pytest.raises(DatasetError, match="repair refused"):
            repair(path)
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)  # reaped: its pid is gone
    mark = in_use(path)
    assert mark is not None and mark.state == "stale"
    assert repair(path).frames >= 4
    assert not lock_path(path).exists()


MSVCRT_SHIM = """
    # Windows' msvcrt.locking, built on fcntl, with fcntl hidden: _lock.py takes its Windows path
    # (installed once the package and the standard library it needs are imported)
    import fcntl, os, sys, types
    import mmtiffsink
    msvcrt = types.ModuleType("msvcrt")
    msvcrt.LK_NBLCK, msvcrt.LK_UNLCK = 2, 0
    def locking(fd, mode, nbytes):
        start = os.lseek(fd, 0, os.SEEK_CUR)  # msvcrt locks from the current position
        how = fcntl.LOCK_UN if mode == msvcrt.LK_UNLCK else fcntl.LOCK_EX | fcntl.LOCK_NB
        try:
            fcntl.lockf(fd, how, nbytes, start, os.SEEK_SET)
        except BlockingIOError:
            raise PermissionError(13, "Permission denied") from None
    msvcrt.locking = locking
    sys.modules["msvcrt"] = msvcrt
    sys.modules["fcntl"] = None
"""


@pytest.mark.skipif(os.name != "posix", reason="the shim is built on fcntl")
def test_windows_locking_path_through_a_shim(tmp_path: Path) -> None:
    path = tmp_path / "a.tif"
    holder = run_child(
        MSVCRT_SHIM
        + """
    from mmtiffsink.tiff._lock import LOCK_BYTE, take
    mark = take(sys.argv[1])
    print("held", mark.mark.held_by, flush=True)
    import time
    time.sleep(120)
    """,
        str(path),
    )
    try:
        assert wait_line(holder, "held").split()[1] == "os"
        asker = run_child(
            MSVCRT_SHIM
            + """
    from mmtiffsink.tiff._lock import check
    print("state", check(sys.argv[1]).state, flush=True)
    """,
            str(path),
        )
        assert wait_line(asker, "state").split()[1] == "live"
        asker.communicate(timeout=30)
    finally:
        holder.kill()
        holder.communicate(timeout=30)
    mark = in_use(path)  # the holder was killed: its record stays, nobody holds its lock
    assert mark is not None and mark.state == "stale"


# ------------------------------------------------------------------------------ real parts
@pytest.mark.parametrize("portable", [False, True], ids=["os-lock", "portable"])
@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_info_preview_repair_beside_a_live_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compression: str, portable: bool
) -> None:
    if portable:
        monkeypatch.setenv("MMTIFFSINK_PORTABLE_IO", "1")
    path = tmp_path / "live.tif"
    times = 60
    child = run_child(WRITER, str(path), compression, str(times), portable=portable)
    wait_line(child, "open")
    wait_line(child, "flushed")
    seen: list[int] = []
    rounds = refused = 0
    try:
        while child.poll() is None:
            info = file_info(path)  # never "corrupt" beside a live writer
            if info.finished:
                break
            assert info.in_use, info.format()
            assert "being written" in info.format()
            seen.append(info.planes)
            assert check_pixels(path) >= info.planes
            preview(path, tmp_path / "live.png")
            try:
                report = repair(path)
            except DatasetError as exc:
                assert "repair refused" in str(exc)
                refused += 1
            else:  # the writer closed between info and repair: finished, left unchanged
                assert report.already_finished
            rounds += 1
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate(timeout=30)
    assert child.returncode == 0, err
    assert rounds >= 2 and refused >= rounds - 1
    assert seen == sorted(seen) and seen[-1] > seen[0]  # seen growing, never shrinking
    data, _, tif = read_hyperstack(path)
    tif.close()
    assert data.shape == (times, *SHAPE[::-1], *FRAME)
    for t in range(times):
        for z in range(2):
            for c in range(2):
                assert np.array_equal(data[t, z, c], coded_frame(c, z, t, FRAME))
    assert not lock_path(path).exists()
    assert file_info(path).finished


@pytest.mark.parametrize("portable", [False, True], ids=["os-lock", "portable"])
def test_writer_killed_while_readers_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, portable: bool
) -> None:
    if portable:
        monkeypatch.setenv("MMTIFFSINK_PORTABLE_IO", "1")
    path = tmp_path / "killed.tif"
    child = run_child(WRITER, str(path), "zstd", "100000", portable=portable)
    wait_line(child, "open")
    wait_line(child, "flushed")
    for _ in range(3):
        assert file_info(path).in_use
        check_pixels(path)
    child.kill()
    child.communicate(timeout=30)
    info = file_info(path)
    assert not info.in_use and not info.finished and info.writer_state == "stale"
    planes = check_pixels(path)
    assert planes == info.planes >= 4
    with warnings.catch_warnings():  # the last time point may be partial, or not
        warnings.simplefilter("ignore", MissingFramesWarning)
        report = repair(path)
    assert report.frames == planes
    assert file_info(path).finished and not lock_path(path).exists()


# ------------------------------------------------------------------------------ the writer
def test_writer_close_survives_an_overwritten_first_ifd(tmp_path: Path) -> None:
    """A repair that ran anyway (before marks) garbled the IFD count: close raises, at once."""
    path = tmp_path / "a.tif"
    tif = IJTiffFile(path, shape=(1, 1, 2))
    for t in range(2):
        tif.save(coded_frame(0, 0, t, FRAME), 0, 0, t)
    tif.flush()
    with open(path, "r+b") as fh:  # the first IFD's entry count: 2**64 - 1 (BigTIFF)
        fh.seek(8)
        (first,) = struct.unpack("<Q", fh.read(8))
        fh.seek(first)
        fh.write(b"\xff" * 8)
    start = time.monotonic()
    with pytest.raises(WriterError, match=r"claims .* entries"):
        tif.close()
    assert time.monotonic() - start < 5
    assert not lock_path(path).exists()


def test_layout_bounds_every_count() -> None:
    lay = Layout(bigtiff=True)
    with pytest.raises(WriterError, match="claims"):
        lay.parse_ifd(b"\xff" * 8 + b"\0" * 100)
    entry = struct.pack("<HHQQ", 270, 2, 1 << 40, 16)
    with pytest.raises(WriterError, match="claims a value"):
        lay.entry_value(entry, lambda offset, n: pytest.fail("read"))


# ------------------------------------------------------------------------------ the walker
def _classic(ifds: list[tuple[int, int]]) -> bytes:
    """A classic TIFF of IFDs at given offsets with given next links (one entry each)."""
    size = max(off for off, _ in ifds) + 18
    buf = bytearray(size)
    buf[:8] = b"II*\0" + struct.pack("<I", ifds[0][0])
    for off, nxt in ifds:
        buf[off : off + 18] = struct.pack("<H", 1) + struct.pack("<HHII", 256, 4, 1, 8) + (
            struct.pack("<I", nxt)
        )
    return bytes(buf)


def test_walker_stops_at_a_loop_a_link_past_the_end_and_garbage(tmp_path: Path) -> None:
    path = tmp_path / "w.tif"
    path.write_bytes(_classic([(8, 40), (40, 8)]))
    with open(path, "rb") as fh:
        walk = IfdWalk.growing(fh)
        assert [i.offset for i in walk] == [8, 40] and walk.stop == "corrupt"
        assert "loops" in walk.problem
    path.write_bytes(_classic([(8, 40), (40, 10_000)]))
    with open(path, "rb") as fh:
        walk = IfdWalk.growing(fh)
        ifds = list(walk)
        assert len(ifds) == 2 and walk.stop == "past_end" and walk.dangling == 10_000
        assert ifds[1].link_pos == 40 + 2 + 12 and ifds[0].entries[256].count == 1
    data = bytearray(_classic([(8, 0)]))
    data[8:10] = struct.pack("<H", 65535)  # 65535 entries claimed in a 26-byte file
    path.write_bytes(bytes(data))
    with open(path, "rb") as fh:
        walk = IfdWalk.growing(fh)
        assert list(walk) == [] and walk.stop == "corrupt" and "65535 entries" in walk.problem


def test_walker_asks_the_size_again_for_a_growing_file(tmp_path: Path) -> None:
    path = tmp_path / "w.tif"
    data = _classic([(8, 40), (40, 0)])
    path.write_bytes(data)
    with open(path, "rb") as fh:  # the size taken before the second IFD landed
        walk = IfdWalk(fh, 30)
        assert len(list(walk)) == 1 and walk.stop == "past_end"
        fh.seek(0)
        walk = IfdWalk(fh, 30, grow=lambda: len(data))
        assert len(list(walk)) == 2 and walk.stop == "end"


class _Positional:
    """A Source over bytes that are read positionally (as the live reader's FileIO is)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos, self.reads = data, 0, 0

    def seek(self, offset: int, /) -> int:
        self.pos = offset
        return offset

    def read(self, size: int, /) -> bytes:
        self.reads += 1
        out = self.data[self.pos : self.pos + size]
        self.pos += len(out)
        return out


def test_walker_reads_any_source_and_values_between_steps() -> None:
    data = _classic([(8, 40), (40, 80), (80, 0)])
    source = _Positional(data)
    walk = IfdWalk(source, len(data), first=40)  # on from a known IFD, as a refresh walks
    seen = []
    for ifd in walk:
        source.seek(0)  # a read of its own between steps (a tag value, a strip)
        assert walk.ints(ifd.entries[256]) == (8,)
        seen.append(ifd.offset)
    assert seen == [40, 80] and walk.stop == "end" and source.reads > 0


def test_walker_tells_where_a_value_lies() -> None:
    data = bytearray(_classic([(8, 0)]))
    data[10:22] = struct.pack("<HHII", 270, 2, 12, 26)  # 12 bytes of text, after the IFD
    data += b"hello world\0"
    walk = IfdWalk(_Positional(bytes(data)), len(data))
    (ifd,) = walk
    text = ifd.entries[270]
    assert walk.where(text) == 26 and walk.value(text) == b"hello world\0"
    assert walk.head(text, 5) == b"hello" and walk.text(text) == b"hello world"
    inline = Entry(256, 4, 1, struct.pack("<I", 8))
    assert walk.where(inline) is None and walk.ints(inline) == (8,)
