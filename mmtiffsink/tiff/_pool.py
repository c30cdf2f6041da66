"""What every open file of the process shares: the compression pool and the in-flight budget.

The pool is reference counted: the first open file starts it and the last one to close joins
its threads, so nothing lingers after the last file is closed. The in-flight budget caps, in
bytes and across every open file, the frames saved but not yet in their file: 96 open
positions cannot queue more than one budget of memory between them.

After ``fork()`` the child holds a copy of the pool without its threads: the child's shared
state is reset (``os.register_at_fork``), so files it opens get a pool of their own, and files
it inherited are detached (see :meth:`IJTiffFile.close`): only the parent writes them.
"""

from __future__ import annotations

import os
import threading
import warnings
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, final

__all__ = [
    "Budget",
    "abandoned",
    "acquire_pool",
    "budget",
    "default_budget_bytes",
    "default_workers",
    "pool_users",
    "pool_workers",
    "register_file",
    "release_pool",
]

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
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


@final
class Budget:
    """Bytes of frames in flight (saved, not yet in their file), shared by every open file.

    ``acquire`` blocks while the budget is used up; a frame larger than the whole budget
    still passes when nothing else is in flight, so no frame can wait forever.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._lock = threading.Lock()  # blocks hold the lock itself (see Sequencer)
        self._cond = threading.Condition(self._lock)

    def acquire(
        self,
        nbytes: int,
        blocked: Callable[[], bool],
        stop: Callable[[], bool],
        held: list[int],
    ) -> bool:
        """Take ``nbytes``; wait while full or ``blocked()``; give up (False) once ``stop()``.

        What was taken is also added to ``held[0]`` in the same step: an interrupt striking
        as this returns cannot make the caller lose track of bytes it holds.
        """
        with self._lock:
            while True:
                if stop():
                    return False
                fits = self.used == 0 or self.used + nbytes <= self.capacity
                if fits and not blocked():
                    self.used += nbytes
                    held[0] += nbytes  # no call between these stores
                    return True
                self._cond.wait()

    def try_acquire(self, nbytes: int, blocked: Callable[[], bool], held: list[int]) -> bool:
        """Take ``nbytes`` if they fit now and not ``blocked()``; never wait (see acquire)."""
        with self._lock:
            fits = self.used == 0 or self.used + nbytes <= self.capacity
            if fits and not blocked():
                self.used += nbytes
                held[0] += nbytes
                return True
            return False

    def release(self, nbytes: int) -> None:
        """Give back ``nbytes`` and wake the waiters."""
        with self._lock:
            self.used -= nbytes
            self._cond.notify_all()

    def wake(self) -> None:
        """Wake every waiter so it re-checks its file's state (a file is closing)."""
        with self._lock:
            self._cond.notify_all()


_budget = Budget(default_budget_bytes())


def budget() -> Budget:
    """The process's in-flight budget."""
    return _budget


def pool_workers(pool: ThreadPoolExecutor) -> int:
    """The number of threads of ``pool``."""
    return int(getattr(pool, "_max_workers", 0) or default_workers())


def acquire_pool() -> ThreadPoolExecutor:
    """Return the shared pool, starting it if no file holds it; pair with :func:`release_pool`."""
    global _pool, _users
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(default_workers(), thread_name_prefix="mmtiffsink")
        _users += 1
        return _pool


def release_pool() -> None:
    """Drop one reference; the last one shuts the pool down and joins its threads."""
    global _pool, _users
    with _lock:
        _users -= 1
        if _users > 0 or _pool is None:
            return
        pool, _pool, _users = _pool, None, 0
    pool.shutdown(wait=True)


def pool_users() -> int:
    """Number of open files holding the shared pool (for tests and diagnostics)."""
    return _users


def abandoned(io: Any, holds_pool: list[bool]) -> None:
    """Finalizer of a file that was never closed: release what it holds."""
    if holds_pool and holds_pool[0]:
        holds_pool[0] = False
        release_pool()
    if not io.closed:
        io.close()
        warnings.warn(
            f"IJTiffFile {io.path} was never closed; it is a valid TIFF, "
            "mmtiffsink.repair() finishes it",
            ResourceWarning,
            stacklevel=2,
        )


def register_file(file: Any) -> None:
    """Remember an open file, so that a fork child can detach it (weakly: no leak)."""
    with _lock:
        _files.add(file)


def _after_fork_in_child() -> None:
    global _lock, _pool, _users, _budget
    _lock = threading.Lock()
    _pool = None
    _users = 0
    _budget = Budget(default_budget_bytes())
    for file in list(_files):
        file._detach_after_fork()
    _files.clear()


if hasattr(os, "register_at_fork"):  # POSIX; Windows has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)
