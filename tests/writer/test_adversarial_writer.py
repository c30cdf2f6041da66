"""An adversary against the writer's save routes: the encode queue, keep_up and no-copy frames.

Real signals (a timer's SIGINT into a saving loop), real threads (close while saving, the
appender role held by another thread), a real full disk (a small tmpfs, else the kernel's
file-size limit), real kills (SIGKILL after flush) and a real fork. A fault is injected by
replacing one call (an encode or an append that raises, an append that is slow) only where
the moment it strikes must be exact. A process-wide budget of one byte makes the pool
"behind" from the second frame on, whatever the machine's speed.

What every case checks: the exception reaches the caller (KeyboardInterrupt as itself, a
failure as WriterError), nothing hangs (faulthandler's timeout in the children, join timeouts
here), every frame whose ``save`` returned is in the file with its pixels as they were when
``save`` was called, and the file reads in tifffile and repairs.
"""

from __future__ import annotations

import _thread
import contextlib
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from mmtiffsink import IJTiffFile, MissingFramesWarning, WriterClosedError, WriterError, repair
from mmtiffsink.inspect import file_info
from mmtiffsink.tiff import Codec, _pool
from mmtiffsink.tiff._appender import Appender
from tests.adversarial_support import SHAPE, frame
from tests.crash_support import ROOT, kill_after_flush
from tests.writer_support import page_plane


def check_pages(path: Path, expected: Any = frame) -> set[tuple[int, int, int]]:
    """Every page of the file exact for its plane tag; the set of planes (blank ones left out).

    A plane close filled (never saved) is all zeros, which no frame of these tests is.
    """
    planes: set[tuple[int, int, int]] = set()
    with tifffile.TiffFile(path) as f:
        for page in f.pages:
            c, z, t = page_plane(page)
            if not page.asarray().any():
                continue
            np.testing.assert_array_equal(page.asarray(), expected(c, t, z), f"plane {c, z, t}")
            planes.add((c, z, t))
    return planes


@pytest.fixture(autouse=True)
def no_budget_leak() -> Iterator[None]:
    """Every test leaves the process budget as it found it (a leak blocks later saves)."""
    before = _pool.budget().used
    yield
    assert _pool.budget().used == before, "budget bytes leaked"


def start(code: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start a child as tests/crash/test_crash.py does, with more environment variables."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT), **(env or {})),
    )


def run(code: str, *args: str, env: dict[str, str] | None = None, timeout: float = 90) -> str:
    """Run a child (faulthandler dumps and exits on a hang); its stdout."""
    proc = start(code, *args, env=env)
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{out}\n{err}"
    return out


PRELUDE = """
import faulthandler, json, os, random, signal, sys, threading, time
faulthandler.dump_traceback_later(40, exit=True)  # a hang shows where it is, and fails
import numpy as np
from mmtiffsink import IJTiffFile, WriterClosedError, WriterError
from tests.adversarial_support import frame
signal.signal(signal.SIGINT, signal.default_int_handler)
"""

# ------------------------------------------------------------------ 1. SIGINT at random moments
SIGINT_CHILD = (
    PRELUDE
    + """
mode, nthreads, seed, folder = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rng = random.Random(seed)
signal.signal(signal.SIGALRM, lambda *a: signal.raise_signal(signal.SIGINT))
kwargs = {
    "keep_up": {"compression": ("zstd", 19), "keep_up": True},
    "queue": {"compression": ("zstd", 3), "keep_up": False},
    "none": {"compression": None},
}[mode]
for trial in range(3):
    path = os.path.join(folder, f"{mode}{nthreads}_{seed}_{trial}.tif")
    tif = IJTiffFile(path, **kwargs)
    stop = threading.Event()
    saved = []  # (c, t) whose save returned

    def helper(c):
        buf = np.empty_like(frame(0, 0))
        for t in range(100000):
            if stop.is_set():
                return
            buf[:] = frame(c, t)
            try:
                tif.save(buf, c, 0, t)
            except WriterClosedError:
                return
            saved.append((c, t))
            buf[:] = 1  # the caller reuses its buffer at once

    helpers = [threading.Thread(target=helper, args=(c,)) for c in range(1, nthreads)]
    for th in helpers:
        th.start()
    buf = np.empty_like(frame(0, 0))
    signal.setitimer(signal.ITIMER_REAL, rng.uniform(0.01, 0.3))
    where = None
    try:
        for t in range(100000):
            buf[:] = frame(0, t)
            where = t
            tif.save(buf, 0, 0, t)
            where = None
            saved.append((0, t))
            buf[:] = 2
        print("no interrupt", file=sys.stderr)
        sys.exit(3)
    except KeyboardInterrupt:
        pass
    # the interrupted save's buffer is never read again: overwrite it, save it, close
    buf[:] = frame(0, 0, 1)
    tif.save(buf, 0, 1, 0)
    buf[:] = 3
    stop.set()
    for th in helpers:
        th.join()
    tif.close()
    print(json.dumps({"path": path, "saved": saved, "where": where}), flush=True)
"""
)


@pytest.mark.parametrize("nthreads", [1, 3])
@pytest.mark.parametrize("mode", ["keep_up", "queue", "none"])
def test_sigint_at_random_moments(tmp_path: Path, mode: str, nthreads: int) -> None:
    env = {"MMTIFFSINK_INFLIGHT_MB": "0.000001"} if mode == "keep_up" else {}
    seed = 1 + nthreads + len(mode)
    out = run(SIGINT_CHILD, mode, str(nthreads), str(seed), str(tmp_path), env=env)
    results = [json.loads(line) for line in out.splitlines()]
    assert len(results) == 3
    for result in results:
        path = Path(result["path"])
        planes = check_pages(path)
        saved = {(c, 0, t) for c, t in result["saved"]}
        assert saved <= planes, sorted(saved - planes)[:5]
        assert (0, 1, 0) in planes
        with tifffile.TiffFile(path) as f:  # close finished it: one hyperstack
            assert f.is_imagej and f.series[0].asarray().shape[-2:] == SHAPE


# ------------------------------------------------------------------ 1b. interrupts at exact moments
BEHIND_WRITE_CHILD = (
    PRELUDE
    + """
from mmtiffsink.tiff._appender import Appender
# the writer thread is held on the helpers' frames until the main thread's save has returned
# and the caller has overwritten its buffer: a save that waited for its write would hang here
real_append = Appender.append_many
gate = threading.Event()
written = []
def held_append(self, batch):
    if any(key[0] != 0 for key, *_ in batch.frames):
        gate.wait(30)
    real_append(self, batch)
    written.extend(key for key, *_ in batch.frames)
Appender.append_many = held_append
path = sys.argv[1]
tif = IJTiffFile(path, compression=None)
tif.save(frame(1, 0), 1, 0, 0)  # fixes the frame shape
started = threading.Barrier(3)
def helper(c):
    started.wait()
    tif.save(frame(c, 1), c, 0, 1)
helpers = [threading.Thread(target=helper, args=(c,)) for c in (1, 2)]
for th in helpers:
    th.start()
started.wait()
time.sleep(0.05)  # both helpers' frames are handed over, the writer held on them
buf = frame(0, 1).copy()
tif.save(buf, 0, 0, 1)
print("written" if (0, 0, 1) in written else "returned-before-write", gate.is_set())
buf[:] = 9  # the caller reuses its buffer at once
gate.set()
for th in helpers:
    th.join()
tif.close()
"""
)


def test_uncompressed_save_returns_before_its_write(tmp_path: Path) -> None:
    """An uncompressed save behind another thread's slow write returns at once, with a copy.

    The writer thread is held on the helpers' frames; the main thread's save returns before
    its own frame is written, the caller overwrites its buffer, and the file still holds the
    frame as it was saved (:func:`check_pages` checks every plane's stamp).
    """
    path = tmp_path / "w.tif"
    out = run(BEHIND_WRITE_CHILD, str(path))
    assert out.split() == ["returned-before-write", "False"]
    planes = check_pages(path)
    assert planes == {(1, 0, 0), (1, 0, 1), (2, 0, 1), (0, 0, 1)}


def planes_now(tif: IJTiffFile) -> set[Any]:
    """The planes in the open file, once the frames in flight have landed."""
    tif.flush()
    return set(tif._app.planes)


@pytest.mark.parametrize("where", ["acquire", "hand_over", "after_hand_over", "kick", "after_kick"])
@pytest.mark.parametrize("compression", [None, ("zstd", 1)])
def test_an_interrupt_at_each_step_of_the_hand_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, compression: Any
) -> None:
    """A saving thread changes the file's state only by the budget charge and the hand-over:
    an interrupt before or after each step leaves no budget byte held, no hang, a valid
    file, and the plane either stored or free to save again; the buffer reused at once."""
    from mmtiffsink.tiff import _writer

    struck: list[str] = []

    def once(real: Any, after: bool) -> Any:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if struck:
                return real(*args, **kwargs)
            if after:
                real(*args, **kwargs)
            struck.append(where)
            raise KeyboardInterrupt

        return wrapped

    budget = _pool.Budget(1 << 30)
    monkeypatch.setattr(_pool, "_budget", budget)
    monkeypatch.setattr(_writer, "LINGER", 0.01)
    path = tmp_path / "h.tif"
    tif = IJTiffFile(path, compression=compression)
    tif.save(frame(0, 0), 0, 0, 0)
    tif.flush()
    deadline = time.monotonic() + 10
    while tif._w._writer is not None:  # idle: the next save starts a writer thread (kick)
        assert time.monotonic() < deadline
        time.sleep(0.005)
    writer = _writer.FileWriter
    obj, name, after = {
        "acquire": (budget, "acquire", True),
        "hand_over": (writer, "hand_over", False),
        "after_hand_over": (writer, "hand_over", True),
        "kick": (writer, "kick", False),
        "after_kick": (writer, "kick", True),
    }[where]
    with monkeypatch.context() as patch:
        patch.setattr(obj, name, once(getattr(obj, name), after))
        buf = frame(0, 1).copy()
        with pytest.raises(KeyboardInterrupt):
            tif.save(buf, 0, 0, 1)
        buf[:] = 9
    assert struck == [where]
    if (0, 0, 1) not in planes_now(tif):
        tif.save(frame(0, 1), 0, 0, 1)  # the interrupted save's plane is free
    tif.save(frame(0, 2), 0, 0, 2)
    tif.close()
    assert budget.used == 0, "budget bytes leaked"
    assert check_pages(path) == {(0, 0, 0), (0, 0, 1), (0, 0, 2)}


def test_flush_interrupted_then_close(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """flush interrupted while it waits for frames on the pool: close still stores every one."""
    real_encode = Codec.encode

    def encode(self: Codec, arr: np.ndarray) -> Any:
        time.sleep(0.05)
        return real_encode(self, arr)

    monkeypatch.setattr(Codec, "encode", encode)
    path = tmp_path / "f.tif"
    tif = IJTiffFile(path, compression=("zstd", 1))
    for t in range(10):
        tif.save(frame(0, t), 0, 0, t)
    timer = threading.Timer(0.05, _thread.interrupt_main)
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        tif.flush()
    timer.join()
    tif.close()
    assert check_pages(path) == {(0, 0, t) for t in range(10)}


# ------------------------------------------------------------------ 2. close racing keep_up saves
def test_close_races_keep_up_saves(tmp_path: Path, tiny_budget: None) -> None:
    for trial in range(4):
        path = tmp_path / f"race{trial}.tif"
        tif = IJTiffFile(path, compression=("zstd", 19), keep_up=True)
        tif.save(frame(0, 0), 0, 0, 0)
        landed: list[tuple[int, int, int]] = [(0, 0, 0)]
        failures: list[BaseException] = []
        go = threading.Barrier(4)

        def saver(
            c: int,
            tif: IJTiffFile = tif,
            landed: list[Any] = landed,
            failures: list[BaseException] = failures,
            go: threading.Barrier = go,
        ) -> None:
            go.wait()
            for t in range(1, 100000):
                try:
                    tif.save(frame(c, t), c, 0, t)
                except WriterClosedError:
                    return
                except BaseException as exc:  # reported below
                    failures.append(exc)
                    return
                landed.append((c, 0, t))

        threads = [threading.Thread(target=saver, args=(c,)) for c in range(3)]
        for th in threads:
            th.start()
        go.wait()
        time.sleep(0.01 + 0.03 * trial)
        with warnings_ok():
            tif.close()
        size = path.stat().st_size
        for th in threads:
            th.join(20)
            assert not th.is_alive()
        assert not failures, failures
        time.sleep(0.05)
        assert path.stat().st_size == size  # nothing written after close returned
        assert set(landed) <= check_pages(path)


@contextlib.contextmanager
def warnings_ok() -> Iterator[None]:
    """Closing with gaps between the threads' time points warns of blank planes."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingFramesWarning)
        yield


# ------------------------------------------------------------------ 3. no-copy frames
def test_uncompressed_caller_overwrites_at_once(tmp_path: Path) -> None:
    path = tmp_path / "nc.tif"
    with IJTiffFile(path, compression=None) as tif:
        buf = np.empty(SHAPE, np.uint16)
        for t in range(20):
            buf[:] = frame(0, t)
            tif.save(buf, 0, 0, t)
            buf[:] = 0xFFFF
    assert check_pages(path) == {(0, 0, t) for t in range(20)}


def test_uncompressed_overwrite_while_another_thread_appends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several threads each reuse one buffer; appends are slow so frames queue in batches."""
    real_append = Appender.append_many

    def append(self: Appender, batch: Any) -> None:
        time.sleep(0.002)
        real_append(self, batch)

    monkeypatch.setattr(Appender, "append_many", append)
    path = tmp_path / "mt.tif"
    errors: list[BaseException] = []
    with IJTiffFile(path, compression=None) as tif:

        def saver(c: int) -> None:
            buf = np.empty(SHAPE, np.uint16)
            try:
                for t in range(25):
                    buf[:] = frame(c, t)
                    tif.save(buf, c, 0, t)
                    buf[:] = 0xFFFF
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=saver, args=(c,)) for c in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(30)
    assert not errors
    assert check_pages(path) == {(c, 0, t) for c in range(4) for t in range(25)}


# ------------------------------------------------------------------ 4. a full disk
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path | None]:
    """A 3 MiB tmpfs (root on Linux), else None (the tests then use RLIMIT_FSIZE)."""
    where = tmp_path / "disk"
    where.mkdir()
    mounted = False
    if sys.platform.startswith("linux") and shutil.which("mount"):
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(where)],
            capture_output=True,
            check=False,
        )
        mounted = proc.returncode == 0
    try:
        yield where if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(where)], check=False)


FULL_CHILD = (
    PRELUDE
    + """
import resource
path, mode, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
if limit:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
rng = np.random.default_rng(1)
noise = rng.integers(0, 60000, (64, 128, 128), dtype=np.uint16)  # incompressible
kwargs = {"keep_up": {"compression": ("zstd", 19), "keep_up": True},
          "queue": {"compression": ("zstd", 1)}}[mode]
saved, durable, error = 0, 0, None
tif = IJTiffFile(path, **kwargs)
try:
    for t in range(100000):
        tif.save(noise[t % 64] ^ np.uint16(t), 0, 0, t)
        saved += 1
        if t % 8 == 7:
            tif.flush()
            durable = saved
except WriterError as exc:
    error = exc
    where = "save"
for attempt in ("save", "flush"):
    try:
        tif.save(noise[0], 0, 1, 0) if attempt == "save" else tif.flush()
        print(attempt, "did not raise", file=sys.stderr)
        sys.exit(4)
    except WriterError:
        pass
try:
    tif.close()
    sys.exit(5)
except WriterError as exc:
    close_error = str(exc)
print(json.dumps({"saved": saved, "durable": durable, "error": str(error),
                  "cause": repr(error.__cause__), "close": close_error,
                  "kept_up": tif.frames_kept_up}), flush=True)
"""
)


@pytest.mark.parametrize("mode", ["keep_up", "queue"])
def test_full_disk(tmp_path: Path, small_disk: Path | None, mode: str) -> None:
    folder = small_disk or tmp_path
    path = folder / "full.tif"
    env = {"MMTIFFSINK_INFLIGHT_MB": "0.000001"} if mode == "keep_up" else {}
    out = run(FULL_CHILD, str(path), mode, "0" if small_disk else "3000000", env=env)
    result = json.loads(out)
    assert "No space" in result["cause"] or "too large" in result["cause"], result
    assert "repair" in result["error"]
    if mode == "keep_up":
        assert result["kept_up"] > 0
    copy = tmp_path / "copy.tif"
    shutil.copyfile(path, copy)  # repair needs room to write the final chain
    noise = np.random.default_rng(1).integers(0, 60000, (64, 128, 128), dtype=np.uint16)

    def expected(c: int, t: int, z: int) -> np.ndarray:
        return noise[t % 64] ^ np.uint16(t)

    planes = check_pages(copy, expected)
    assert {(0, 0, t) for t in range(result["durable"])} <= planes
    assert result["durable"] >= 8
    assert not file_info(copy).finished
    with warnings_ok():
        report = repair(copy)
    assert report.frames == len(planes)
    assert file_info(copy).finished
    assert check_pages(copy, expected) >= planes


# ------------------------------------------------------------------ 5. worker exceptions
def test_encode_failure_with_batches_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_encode = Codec.encode
    bad = 37

    def encode(self: Codec, arr: np.ndarray) -> Any:
        if int(arr[0, 0]) == int(frame(0, bad)[0, 0]):
            msg = "the codec broke"
            raise RuntimeError(msg)
        return real_encode(self, arr)

    monkeypatch.setattr(Codec, "encode", encode)
    path = tmp_path / "e.tif"
    tif = IJTiffFile(path, compression=("zstd", 9))
    saved = 0
    with pytest.raises(WriterError, match="the codec broke") as caught:
        for t in range(100000):
            tif.save(frame(0, t), 0, 0, t)
            saved += 1
            if t > bad + 64:
                tif.flush()
    assert saved > bad
    assert isinstance(caught.value.__cause__, RuntimeError)
    with pytest.raises(WriterError):
        tif.save(frame(0, 0, 1), 0, 1, 0)
    with pytest.raises(WriterError):
        tif.close()
    assert check_pages(path) == {(0, 0, t) for t in range(bad)}  # every frame before it
    with warnings_ok():
        assert repair(path).frames == bad


def test_append_failure_of_a_kept_up_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_budget: None
) -> None:
    """Appending a kept-up frame fails: WriterError on a later save, nothing hangs."""
    real_append = Appender.append_many
    failed: list[Any] = []

    def append(self: Appender, batch: Any) -> None:
        keys = [key for key, *_ in batch.frames]
        if any(key[2] >= 3 for key in keys) and not failed:
            failed.extend(keys)
            raise OSError(28, "No space left on device")
        real_append(self, batch)

    monkeypatch.setattr(Appender, "append_many", append)
    path = tmp_path / "k.tif"
    tif = IJTiffFile(path, compression=("zstd", 19), keep_up=True)
    with pytest.raises(WriterError, match="No space"):
        for t in range(1000):
            tif.save(frame(0, t), 0, 0, t)
    assert failed
    with pytest.raises(WriterError):
        tif.save(frame(0, 0, 1), 0, 1, 0)
    with pytest.raises(WriterError):
        tif.flush()
    with pytest.raises(WriterError):
        tif.close()
    planes = check_pages(path)
    assert not set(failed) & planes and len(planes) >= 1


# ------------------------------------------------------------------ 6. series, read_frame, flush
def test_series_keep_up_threads(tmp_path: Path, tiny_budget: None) -> None:
    path = tmp_path / "s.ome.tif"
    tif = IJTiffFile(path, profile="ome", compression=("zstd", 19), keep_up=True)
    errors: list[BaseException] = []

    def saver(s: int) -> None:
        try:
            for t in range(8):
                for c in range(2):
                    tif.save(frame(c + 2 * s, t), c, 0, t, series=s)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=saver, args=(s,)) for s in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    tif.close()
    assert not errors
    assert tif.frames_kept_up > 0
    with tifffile.TiffFile(path) as f:
        assert len(f.series) == 3
        for s in range(3):
            data = f.series[s].asarray()
            assert data.shape == (8, 2, *SHAPE), f.series[s].axes
            for t in range(8):
                for c in range(2):
                    np.testing.assert_array_equal(data[t, c], frame(c + 2 * s, t))


@pytest.mark.parametrize("keep_up", [False, True])
def test_read_frame_while_queued_or_stored(
    tmp_path: Path, tiny_budget: None, keep_up: bool
) -> None:
    path = tmp_path / "r.tif"
    with IJTiffFile(path, compression=("zstd", 19), keep_up=keep_up) as tif:
        for t in range(12):
            tif.save(frame(0, t), 0, 0, t)
            image, _ = tif.read_frame(0, 0, t)  # queued, encoding, or stored out of order
            np.testing.assert_array_equal(image, frame(0, t))
        for t in range(12):
            np.testing.assert_array_equal(tif.read_frame(0, 0, t)[0], frame(0, t))
    assert check_pages(path) == {(0, 0, t) for t in range(12)}


FLUSH_KILL_CHILD = (
    PRELUDE
    + """
path = sys.argv[1]
tif = IJTiffFile(path, compression=("zstd", 19), keep_up=True)
stop = threading.Event()
def helper():
    for t in range(100000):
        if stop.is_set():
            return
        tif.save(frame(1, t), 1, 0, t)
th = threading.Thread(target=helper, daemon=True)
th.start()
for t in range(100000):
    tif.save(frame(0, t), 0, 0, t)
    if t == 30:
        tif.flush()
        print("flushed", t + 1, tif.frames_kept_up, flush=True)
"""
)


def test_flush_is_a_durable_point_with_keep_up(tmp_path: Path) -> None:
    path = tmp_path / "killed.tif"
    child = start(FLUSH_KILL_CHILD, str(path), env={"MMTIFFSINK_INFLIGHT_MB": "0.000001"})
    flushed = int(kill_after_flush(child, 0.2).split()[1])
    planes = check_pages(path)
    assert {(0, 0, t) for t in range(flushed)} <= planes
    with warnings_ok():
        report = repair(path)
    assert report.frames == len(planes)
    assert check_pages(path) >= {(0, 0, t) for t in range(flushed)}


# ------------------------------------------------------------------ 7. fork while queued
_FORKED: list[IJTiffFile] = []


def _in_fork_child(queue: Any) -> None:
    inherited = _FORKED[0]
    answers = []
    try:
        inherited.read_frame(0, 0, 199)  # queued in the parent: never arrives in the child
        answers.append("read")
    except Exception as exc:  # which one: asserted in the parent
        answers.append(type(exc).__name__)
    try:
        inherited.save(frame(0, 0, 5), 0, 5, 0)
        answers.append("saved")
    except WriterClosedError:
        answers.append("refused")
    inherited.close()
    queue.put(answers)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this OS")
def test_fork_while_frames_are_queued(tmp_path: Path) -> None:
    path = tmp_path / "p.tif"
    tif = IJTiffFile(path, compression=("zstd", 19))
    for t in range(200):
        tif.save(frame(0, t), 0, 0, t)
    assert tif._w.pending or tif._w.inbox  # frames in flight when the process forks
    _FORKED[:] = [tif]
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        child = ctx.Process(target=_in_fork_child, args=(queue,))
        child.start()
    child.join(30)
    if child.is_alive():
        child.kill()
        pytest.fail("the fork child hung")
    assert child.exitcode == 0
    answers = queue.get(timeout=5)
    assert answers[1] == "refused"
    assert answers[0] in ("read", "WriterClosedError"), answers
    tif.close()
    _FORKED.clear()
    assert check_pages(path) == {(0, 0, t) for t in range(200)}


# ------------------------------------------------------------------ absurd values: dedup keys
@pytest.mark.parametrize("compression", [None, ("zstd", 1)])
def test_frames_that_differ_only_between_sampled_words(tmp_path: Path, compression: Any) -> None:
    """The dedup key of a frame over 64 KiB samples one word in 64: frames equal in every
    sampled word share a key, and the byte comparison must still keep them apart."""
    from mmtiffsink.tiff._appender import data_key

    path = tmp_path / "d.tif"
    frames = []
    for i in range(6):
        f = np.zeros((256, 256), np.uint16)  # 128 KiB
        f.flat[4 + 64 * i] = i + 1  # byte 8 + 128 i: never in a sampled word (one in 512)
        frames.append(f)
    assert len({data_key(f.data.cast("B")) for f in frames}) == 1
    with IJTiffFile(path, compression=compression) as tif:
        for t, f in enumerate(frames):
            tif.save(f, 0, 0, t)
        tif.save(frames[2], 0, 0, 6)  # a repeat: shared or stored again, never mixed up
    assert tif._app.frames_stored >= 6  # no two different frames share their bytes
    with tifffile.TiffFile(path) as f:
        for t, page in enumerate(f.pages):
            np.testing.assert_array_equal(page.asarray(), frames[t if t < 6 else 2])


# ------------------------------------------------------------------ an interrupt in close
CLOSE_SIGINT_CHILD = (
    PRELUDE
    + """
path = sys.argv[1]
tif = IJTiffFile(path, compression=("zstd", 19))
for t in range(300):
    tif.save(frame(0, t), 0, 0, t)
signal.signal(signal.SIGALRM, lambda *a: signal.raise_signal(signal.SIGINT))
signal.setitimer(signal.ITIMER_REAL, 0.05)  # strikes while close waits for the encoding
t0 = time.perf_counter()
try:
    tif.close()
    first = "returned"
except KeyboardInterrupt:
    first = "KeyboardInterrupt"
except BaseException as exc:
    first = type(exc).__name__ + ": " + str(exc)
tif.close()  # a second close finishes the file
print(json.dumps({"first": first, "seconds": time.perf_counter() - t0}))
"""
)


def test_interrupt_in_close_then_close_again(tmp_path: Path) -> None:
    """Ctrl-C while close waits: the caller gets KeyboardInterrupt, no saved frame is lost, and
    close again finishes the file."""
    path = tmp_path / "c.tif"
    result = json.loads(run(CLOSE_SIGINT_CHILD, str(path)))
    assert result["first"] in ("KeyboardInterrupt", "returned"), result
    assert check_pages(path) == {(0, 0, t) for t in range(300)}
    assert file_info(path).finished
