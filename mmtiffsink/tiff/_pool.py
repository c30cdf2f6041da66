"""What every open file of the process shares: the pool, the in-flight budget, spare copies.

The pool is reference counted: the first open file starts it and the last one to close joins
its threads, so nothing lingers after the last file is closed. The in-flight budget caps, in
bytes and across every open file, the frames saved but not yet in their file: 96 open
positions cannot queue more than one budget of memory between them. The writer's copies of
frames are recycled (:class:`Spares`), within a cap of their own.

After ``fork()`` the child holds a copy of the pool without its threads: the child's shared
state is reset (``os.register_at_fork``), so files it opens get a pool of their own, and files
it inherited are detached (see :meth:`IJTiffFile.close`): only the parent writes them.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import warnings
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, final

import numpy as np

from ..errors import UnclosedFileWarning

__all__ = [
    "Budget",
    "Spares",
    "abandoned",
    "acquire_pool",
    "budget",
    "default_budget_bytes",
    "default_workers",
    "pool_users",
    "pool_workers",
    "register_file",
    "release_pool",
    "spares",
]

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_workers = 0  # threads of _pool (set when it starts)
_pool_threads: weakref.WeakSet[threading.Thread] = weakref.WeakSet()
_users = 0
_files: weakref.WeakSet[Any] = weakref.WeakSet()


def default_workers() -> int:
    """Worker threads: ``MMTIFFSINK_WORKERS`` if set, else the number of usable CPUs."""
    env = os.environ.get("MMTIFFSINK_WORKERS", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            pass
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux (Windows, macOS)
        return max(1, os.cpu_count() or 1)


def default_budget_bytes() -> int:
    """In-flight bytes: ``MMTIFFSINK_INFLIGHT_MB`` if set, else 32 MiB per worker (>= 64 MiB)."""
    env = os.environ.get("MMTIFFSINK_INFLIGHT_MB", "").strip()
    if env:
        try:
            return max(1, int(float(env) * 2**20))
        except ValueError:
            pass
    return max(64 << 20, default_workers() * (32 << 20))


_TOTAL = "used"  # the key of the running total in Budget._held


@final
class Budget:
    """Bytes of frames in flight (saved, not yet in their file), shared by every open file.

    Each charge is recorded against the object that holds it (a frame's job) and given back
    with :meth:`release` of that object, once: a charge cannot be lost or given back twice,
    whichever thread (the saving thread recovering from an interrupt, or the file's writer
    thread once the frame is written) releases it.

    ``acquire`` blocks while the budget is used up; a frame larger than the whole budget
    still passes when nothing else is in flight, so no frame can wait forever.

    State: ``_held`` (holder -> bytes, and the running total under ``"used"``), guarded by
    ``_lock``. A charge and the total change in one ``dict.update`` call: Python runs signal
    handlers (a KeyboardInterrupt) only between bytecodes, never inside a C call, so an
    interrupt can find a charge made or not made, never half made.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._held: dict[object, int] = {_TOTAL: 0}
        self._lock = threading.Lock()  # blocks hold the lock itself (C-level enter)
        self._cond = threading.Condition(self._lock)

    @property
    def used(self) -> int:
        """Bytes charged now."""
        return self._held[_TOTAL]

    def _fits(self, nbytes: int, limit: int) -> bool:
        used = self._held[_TOTAL]
        return used == 0 or used + nbytes <= limit

    def acquire(
        self,
        holder: object,
        nbytes: int,
        blocked: Callable[[], bool],
        stop: Callable[[], bool],
        *,
        over: int = 1,
    ) -> bool:
        """Charge ``nbytes`` to ``holder``; wait while full or ``blocked()``; False once ``stop()``.

        ``over``: how many budgets this charge may fill (``keep_up`` stores frames the pool
        cannot take with ``over=2``: they wait only when the disk, not the pool, is behind).
        """
        limit = self.capacity * over
        with self._lock:
            while True:
                if self._fits(nbytes, limit) and not blocked():
                    self._held.update({holder: nbytes, _TOTAL: self._held[_TOTAL] + nbytes})
                    return True
                if stop():  # checked only before waiting: a file that fails or closes meanwhile
                    return False  # refuses the job at its hand-over
                self._cond.wait()

    def try_acquire(self, holder: object, nbytes: int, blocked: Callable[[], bool]) -> bool:
        """Charge ``nbytes`` to ``holder`` if they fit now and not ``blocked()``; never wait."""
        with self._lock:
            if self._fits(nbytes, self.capacity) and not blocked():
                self._held.update({holder: nbytes, _TOTAL: self._held[_TOTAL] + nbytes})
                return True
            return False

    def release(self, holder: object) -> None:
        """Give back what ``holder`` holds (nothing if it holds nothing) and wake the waiters."""
        self.release_many((holder,))

    def reduce_many(self, charges: Sequence[tuple[object, int]]) -> None:
        """Lower each holder's charge to its new bytes (never raise one); wake the waiters.

        A frame holds its raw bytes until encoded, then only its encoded bytes: the room
        between goes to the next frames at once, not when the frame reaches its file.
        """
        if not charges:
            return
        with self._lock:
            held = self._held
            for holder, nbytes in charges:
                now = held.get(holder, 0)
                if nbytes < now:
                    held.update({holder: nbytes, _TOTAL: held[_TOTAL] - (now - nbytes)})
            self._cond.notify_all()

    def release_many(self, holders: Sequence[object]) -> None:
        """:meth:`release` of each holder, under one lock and with one wake-up."""
        with self._lock:
            held = self._held
            for holder in holders:
                nbytes = held.get(holder, 0)
                if nbytes:  # one call: zero the charge and lower the total together
                    held.update({holder: 0, _TOTAL: held[_TOTAL] - nbytes})
                held.pop(holder, None)
            self._cond.notify_all()

    def wake(self) -> None:
        """Wake every waiter so it re-checks its file's state (a file is closing)."""
        with self._lock:
            self._cond.notify_all()


_budget = Budget(default_budget_bytes())

SPARE_BYTES = 32 << 20
"""Bytes of spare frame copies kept for reuse, across every open file."""
SPARE_FROM = 128 << 10
"""Frames of fewer bytes are not recycled: the allocator reuses such small blocks itself (glibc
maps a new block only from 128 KiB), and the spares' lock would cost more than it saves."""


@final
class Spares:
    """The writer's copies of callers' frames, recycled once their frames have passed.

    A copy into memory already mapped costs a ``memcpy``; into a new buffer, a page fault for
    every 4 KiB as well (about 1 ms per 8 MiB frame on a VM), paid twice per frame when the
    caller's source allocates too: what held uncompressed 512x512 frames to half the speed of
    a writer that makes no copy. A copy is taken in ``save`` and given back when its frame no
    longer needs it (encoded, or written); at most ``capacity`` bytes wait here, so memory
    stays bounded by the budget plus this cap.

    State: ``_spare`` (arrays by (shape, dtype), most recent last), ``_bytes`` and ``reused``,
    guarded by ``_lock``.
    """

    def __init__(self, capacity: int = SPARE_BYTES) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._spare: dict[tuple[tuple[int, ...], str], list[np.ndarray]] = {}
        self._bytes = 0
        self.reused = 0
        """Copies made into a spare (the others went into new memory)."""

    def copy(self, arr: np.ndarray) -> np.ndarray:
        """A C-contiguous copy of ``arr`` that nothing else refers to (read-only when small)."""
        if arr.nbytes < SPARE_FROM:
            # bytes, not numpy's copy: numpy releases the GIL for a copy of over 500 items,
            # and taking it back behind the writer's other threads costs more than the copy
            return np.frombuffer(arr.tobytes(), arr.dtype).reshape(arr.shape)
        key = (arr.shape, arr.dtype.str)
        with self._lock:
            free = self._spare.get(key)
            buf = free.pop() if free else None
            if buf is not None:
                self._bytes -= buf.nbytes
                self.reused += 1
        if buf is None:
            return np.array(arr, order="C", copy=True)
        np.copyto(buf, arr, casting="no")
        return buf

    def give_back(self, buf: np.ndarray | None) -> None:
        """``buf`` (a copy from :meth:`copy`, or a frame the writer made) is free again."""
        if buf is None or buf.nbytes < SPARE_FROM or not buf.flags.c_contiguous:
            return
        if not buf.flags.owndata:
            return
        with self._lock:
            if self._bytes + buf.nbytes > self.capacity:
                return
            self._spare.setdefault((buf.shape, buf.dtype.str), []).append(buf)
            self._bytes += buf.nbytes

    @property
    def spare_bytes(self) -> int:
        """Bytes waiting for reuse."""
        return self._bytes


_spares = Spares()


def budget() -> Budget:
    """The process's in-flight budget."""
    return _budget


def spares() -> Spares:
    """The process's spare frame copies."""
    return _spares


def pool_workers() -> int:
    """The number of threads of the shared pool (of a new one if none runs)."""
    return _pool_workers or default_workers()


POOL_NICENESS = 10
"""How much lower the pool's threads run than the rest of the process (Linux niceness)."""


def lower_priority() -> bool:
    """Lower the calling thread's scheduling priority; True if it was lowered.

    The pool's threads compress; the camera's and the engine's threads must come first on a
    machine whose cores the codec fills (``keep_up`` stores a frame the pool cannot take, but
    only if the saving thread gets a core). Linux: the thread's niceness raised by
    :data:`POOL_NICENESS` (``setpriority`` on the thread id is per thread there); Windows:
    ``THREAD_PRIORITY_BELOW_NORMAL``; elsewhere, or with ``MMTIFFSINK_POOL_PRIORITY=normal``,
    nothing.
    """
    if os.environ.get("MMTIFFSINK_POOL_PRIORITY", "").strip().lower() == "normal":
        return False
    try:
        if sys.platform.startswith("linux"):
            tid = threading.get_native_id()
            now = os.getpriority(os.PRIO_PROCESS, tid)
            os.setpriority(os.PRIO_PROCESS, tid, min(19, now + POOL_NICENESS))
            return True
        if sys.platform == "win32":
            import ctypes

            kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined,unused-ignore]
            below_normal = -1  # THREAD_PRIORITY_BELOW_NORMAL
            return bool(kernel32.SetThreadPriority(kernel32.GetCurrentThread(), below_normal))
    except (AttributeError, OSError):
        pass
    return False


def _mark_worker() -> None:
    """The pool's initializer: remember its threads (see :func:`release_pool`), lower them."""
    _pool_threads.add(threading.current_thread())
    lower_priority()


def acquire_pool() -> ThreadPoolExecutor:
    """Return the shared pool, starting it if no file holds it; pair with :func:`release_pool`."""
    global _pool, _users, _pool_workers
    with _lock:
        if _pool is None:
            _pool_workers = default_workers()
            _pool = ThreadPoolExecutor(
                _pool_workers, thread_name_prefix="mmtiffsink", initializer=_mark_worker
            )
        _users += 1
        return _pool


def release_pool() -> None:
    """Drop one reference; the last one shuts the pool down and joins its threads.

    A pool thread cannot join itself: if the last reference is dropped in one (a file
    collected there), the pool is shut down without waiting, and its threads end after their
    current task (the interpreter joins them at exit).
    """
    global _pool, _users
    with _lock:
        _users -= 1
        if _users > 0 or _pool is None:
            return
        pool, _pool, _users = _pool, None, 0
    pool.shutdown(wait=threading.current_thread() not in _pool_threads)


def pool_users() -> int:
    """Number of open files holding the shared pool (for tests and diagnostics)."""
    return _users


def abandoned(writer: Any) -> None:
    """Finalizer of a file dropped unclosed while the program runs: stop its writer, release.

    Runs in whichever thread dropped the file's last reference (never a writer thread, which
    holds the file's core, not the file); see :func:`release_pool` for a pool thread. At
    interpreter exit :func:`_finish_at_exit` closes (finishes) open files instead.
    """
    if writer.abandon():
        warnings.warn(
            f"IJTiffFile {writer.app.io.path} was never closed; it is a valid TIFF, "
            "mmtiffsink.repair() finishes it",
            ResourceWarning,
            stacklevel=2,
        )


def _finish_at_exit() -> None:
    """At interpreter exit, finish every file still open (and say so): nothing is left unfinished.

    Registered to run before :mod:`concurrent.futures` shuts its pools down (``threading``'s
    exit hooks, which run before the interpreter joins its threads), so the frames still in
    flight are compressed and land. A file whose close fails stays the valid, unfinished TIFF
    it is (``mmtiffsink repair`` finishes it); the error is printed, never raised.
    """
    for file in list(_files):
        if file.closed or file._inherited:
            continue
        try:
            warnings.warn(
                f"IJTiffFile {file.path} was still open at exit: it was finished now; close it "
                "(or use 'with IJTiffFile(...) as f:') when done writing",
                UnclosedFileWarning,
                stacklevel=1,
            )
        except Exception as exc:  # -W error: the warning is an exception; still finish
            print(f"mmtiffsink: {exc}", file=sys.stderr)
        try:
            file.close()
        except Exception as exc:
            print(f"mmtiffsink: finishing {file.path} at exit failed: {exc}", file=sys.stderr)


def register_file(file: Any) -> None:
    """Remember an open file, so that a fork child can detach it (weakly: no leak)."""
    with _lock:
        _files.add(file)


def _after_fork_in_child() -> None:
    global _lock, _pool, _users, _budget, _pool_workers, _spares
    _lock = threading.Lock()
    _pool = None
    _pool_workers = 0
    _users = 0
    _budget = Budget(default_budget_bytes())
    _spares = Spares()
    for file in list(_files):
        file._detach_after_fork()
    _files.clear()


if hasattr(os, "register_at_fork"):  # POSIX; Windows has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)

# before concurrent.futures' own exit hook (registered when it was imported, above): the pool
# must still take work while the open files are finished
_register = getattr(threading, "_register_atexit", None)
if _register is not None:
    _register(_finish_at_exit)
else:  # pragma: no cover - every CPython we support has it
    atexit.register(_finish_at_exit)
