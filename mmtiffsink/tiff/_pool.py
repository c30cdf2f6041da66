"""The compression worker pool shared by every open file of the process.

The pool is reference counted: the first open file starts it and the last one to close
joins its threads. Nothing lingers after the last file is closed.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

__all__ = ["acquire_pool", "default_workers", "release_pool"]

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_users = 0


def default_workers() -> int:
    """Worker threads: ``MMTIFFSINK_WORKERS`` if set, else the number of usable CPUs."""
    env = os.environ.get("MMTIFFSINK_WORKERS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


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
