"""The mark of a file in use: a lock record beside it, held by its writer with an OS lock.

A writer (and :func:`~mmtiffsink.repair`, while it works) keeps ``NAME.tif.lock`` beside
``NAME.tif``: a small JSON record (pid, host, start time, how it is held) and, on it, an OS
byte-range lock (``fcntl.lockf`` on POSIX, ``msvcrt.locking`` on Windows) at byte
:data:`LOCK_BYTE`, far past the record, so that a reader can always read the record (Windows
byte-range locks are mandatory). Other processes ask :func:`check`:

- the lock is held by another process, or by this one: the file is **live**;
- the record is there but nobody holds its lock: its writer stopped (killed, crashed, power
  lost): the mark is **stale**, and the OS proves it, since it drops the locks of a process that
  ends, however it ends;
- where locks cannot be had (a network share without lock support, a platform without either
  call, or ``MMTIFFSINK_PORTABLE_IO=1``, which forces this path on any OS so that CI proves it),
  the record alone is judged: same host and the pid is running -> live; same host and the pid is
  gone -> stale; another host -> **unknown**, taken as live by ``repair``, which then says how to
  proceed (delete the record once that writer is known to have stopped).

Why a record beside the file and not a lock on the TIFF itself: a POSIX process loses every
``fcntl`` lock on a file when it closes *any* descriptor of it (tifffile opening the file to
read it back, in the writer's process, would silently drop the mark), Windows locks on the TIFF
would make its bytes unreadable to viewers, and a record names the writer (pid, host, since
when) where a bare lock says nothing. The TIFF is never renamed while open.

Within one process the OS cannot tell (a process never conflicts with its own locks, and
closing the record's descriptor would drop them), so the locks this process holds are kept in
a table and asked first; every open and close of a record happens under one process-wide lock.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, final

from ..errors import OutputExistsError
from ._io import FileIO, check_path, open_output, portable_forced

__all__ = ["LOCK_BYTE", "FileMark", "Mark", "check", "lock_path", "open_output_marked", "take"]

LOCK_BYTE = 1 << 30
"""The byte of the record the OS lock covers (past the record: readers can read the record)."""
_SUFFIX = ".lock"
_MAX_RECORD = 4096
_BUSY = frozenset({errno.EACCES, errno.EAGAIN, getattr(errno, "EDEADLK", errno.EAGAIN)})
_NO_LOCKS = frozenset(
    {errno.ENOLCK, errno.EINVAL, getattr(errno, "EOPNOTSUPP", errno.EINVAL), errno.ENOSYS}
)
_table_lock = threading.Lock()
_held: dict[tuple[int, int], FileMark] = {}  # (device, inode) of a record -> this process's mark

State = Literal["live", "stale", "unknown"]


def lock_path(path: str | os.PathLike[str]) -> Path:
    """The lock record of ``path``: ``NAME.tif.lock`` beside ``NAME.tif``."""
    p = Path(path)
    return p.with_name(p.name + _SUFFIX)


@final
@dataclass(frozen=True)
class Mark:
    """What the lock record of a file says, and whether its writer lives.

    ``state`` is ``"live"`` (its writer holds the lock, or runs), ``"stale"`` (its writer
    stopped: nobody holds the lock, or its pid is gone on this host) or ``"unknown"`` (no lock
    could be asked and the record names another host).
    """

    path: Path
    """The lock record."""
    state: State
    pid: int | None
    host: str
    started: str
    held_by: str
    """``"os"`` (an OS lock) or ``"record"`` (the record alone: no lock could be had)."""
    mine: bool = False
    """True when this very process holds it."""

    def writer(self) -> str:
        """``pid 123 on host x since 2026-12-01 10:00:00`` (what is known of the writer)."""
        who = f"pid {self.pid}" if self.pid is not None else "an unknown process"
        return f"{who} on host {self.host or '?'} since {self.started or '?'}"


# ------------------------------------------------------------------------------ the OS calls
def _os_lock(fd: int, *, exclusive: bool) -> bool | None:
    """Try to lock :data:`LOCK_BYTE` of ``fd`` without waiting.

    Returns True when taken, False when another process holds it, None when the file system
    or the platform has no such locks (the caller then relies on the record alone).
    """
    if portable_forced():
        return None
    try:
        import fcntl
    except ImportError:
        return _msvcrt_lock(fd)
    mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
    try:
        fcntl.lockf(fd, mode, 1, LOCK_BYTE, os.SEEK_SET)
    except OSError as exc:
        if exc.errno in _BUSY:
            return False
        if exc.errno in _NO_LOCKS:
            return None
        raise
    return True


def _msvcrt_lock(fd: int) -> bool | None:
    """Windows: ``msvcrt.locking`` of one byte at :data:`LOCK_BYTE` (always exclusive)."""
    try:
        import msvcrt
    except ImportError:
        return None
    os.lseek(fd, LOCK_BYTE, os.SEEK_SET)
    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined,unused-ignore]
    except OSError as exc:
        if exc.errno in _NO_LOCKS:
            return None
        return False  # EACCES / EDEADLOCK: held by another process
    return True


def _os_unlock(fd: int) -> None:
    """Drop the lock taken by :func:`_os_lock` (closing the descriptor drops it too)."""
    try:
        import fcntl
    except ImportError:
        try:
            import msvcrt
        except ImportError:
            return
        os.lseek(fd, LOCK_BYTE, os.SEEK_SET)
        with contextlib.suppress(OSError):
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined,unused-ignore]
        return
    with contextlib.suppress(OSError):
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, LOCK_BYTE, os.SEEK_SET)


def _pid_running(pid: int) -> bool | None:
    """Whether ``pid`` runs on this host (None where it cannot be asked without harm).

    ``os.kill(pid, 0)`` asks without signalling on POSIX; on Windows ``os.kill`` would end
    the process, so there the answer is None (unknown).
    """
    if os.name != "posix" or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it runs, as another user
    except OSError:
        return None
    return True


# ------------------------------------------------------------------------------ the record
def _record() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "writer": "mmtiffsink",
    }


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw[:_MAX_RECORD].decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _mark(path: Path, data: dict[str, Any], state: State, *, mine: bool = False) -> Mark:
    pid = data.get("pid")
    return Mark(
        path=path,
        state=state,
        pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
        host=str(data.get("host", ""))[:200],
        started=str(data.get("started", ""))[:40],
        held_by=str(data.get("held_by", "os"))[:10],
        mine=mine,
    )


def _judge_record(path: Path, data: dict[str, Any]) -> Mark:
    """A record whose lock could not be asked: judged by its pid and host."""
    pid = data.get("pid")
    if data.get("host") == socket.gethostname() and isinstance(pid, int):
        running = _pid_running(pid)
        if running is not None:
            return _mark(path, data, "live" if running else "stale")
    return _mark(path, data, "unknown")


def _key(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


def check(path: str | os.PathLike[str]) -> Mark | None:
    """Whether the file at ``path`` is in use: its lock record judged, or None if it has none.

    Never harms the writer: the record is opened read-only, a shared lock (POSIX) is tried
    and dropped at once, and the record of a file this process writes is not opened at all.
    """
    record = lock_path(path)
    with _table_lock:
        try:
            st = os.stat(record)
        except OSError:
            return None
        mine = _held.get(_key(st))
        if mine is not None:
            return mine.mark
        try:
            fd = os.open(record, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        except OSError:
            return None  # removed meanwhile (its writer closed the file)
        try:
            data = _parse(os.read(fd, _MAX_RECORD))
            taken = _os_lock(fd, exclusive=False) if data.get("held_by") != "record" else None
            if taken:
                _os_unlock(fd)
        finally:
            os.close(fd)
    if taken is None:
        return _judge_record(record, data)
    if taken is False:
        return _mark(record, data, "live")
    return _free(record, data)


def _free(record: Path, data: dict[str, Any]) -> Mark:
    """A record whose OS lock nobody holds: stale, unless it names another host.

    A free lock on another host's record means that writer stopped, or that the share does
    not pass locks between hosts (an NFS mount with ``nolock``): it cannot be proved here.
    """
    if data.get("host", socket.gethostname()) != socket.gethostname():
        return _mark(record, data, "unknown")
    return _mark(record, data, "stale")


@final
class FileMark:
    """The lock record a writer holds while it writes a file; :meth:`release` removes it."""

    __slots__ = ("_fd", "_key", "_owner", "mark", "path")

    def __init__(self, path: Path, fd: int, key: tuple[int, int], mark: Mark) -> None:
        self.path, self._fd, self._key, self.mark = path, fd, key, mark
        self._owner = os.getpid()

    def release(self) -> None:
        """Remove the record and drop the lock (idempotent).

        In a fork child (another pid than the one that took it) only the child's copy of the
        descriptor is closed: the record and the lock stay the parent's.
        """
        with _table_lock:
            if self._fd < 0:
                return
            fd, self._fd = self._fd, -1
            _held.pop(self._key, None)
            if os.getpid() != self._owner:
                with contextlib.suppress(OSError):
                    os.close(fd)
                return
            if os.name == "posix" and not portable_forced():
                # unlinked while still locked: nobody can take a lock on a record being removed
                with contextlib.suppress(OSError):
                    if _key(os.stat(self.path)) == self._key:
                        os.unlink(self.path)
                _os_unlock(fd)
                os.close(fd)
                return
            # Windows: an open file cannot be removed; unlock and close first. Another process
            # that opened the record meanwhile keeps it open, and the unlink then fails (safe).
            _os_unlock(fd)
            os.close(fd)
            with contextlib.suppress(OSError):
                if _key(os.stat(self.path)) == self._key:
                    os.unlink(self.path)


def take(path: str | os.PathLike[str]) -> FileMark | Mark:
    """Mark ``path`` as in use by this process, unless a live writer already marks it.

    Returns
    -------
    FileMark | Mark
        The mark now held (release it when done), or the other writer's :class:`Mark`
        (live or unknown) that stops this one. A stale record is taken over.

    Raises
    ------
    OSError
        The record cannot be created (no permission, no such folder).

    """
    record = lock_path(path)
    for attempt in range(20):
        with _table_lock:
            got = _try_take(record, last=attempt >= 5)
        if got is not None:
            return got
        time.sleep(0.01)  # a reader's check holds the lock a moment, or a holder removed it
    msg = f"cannot take the lock record {record}: it keeps being replaced"
    raise OSError(errno.EAGAIN, msg)


def _try_take(record: Path, *, last: bool) -> FileMark | Mark | None:
    """One attempt of :func:`take` (under the table's lock); None: try again."""
    with contextlib.suppress(OSError):
        mine = _held.get(_key(os.stat(record)))
        if mine is not None:
            return mine.mark
    fd = os.open(record, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o666)
    keep = False
    try:
        old = _parse(os.read(fd, _MAX_RECORD))
        taken = _os_lock(fd, exclusive=True)
        if taken is False:
            return _mark(record, old, "live") if last else None
        st = os.fstat(fd)
        try:
            if _key(os.stat(record)) != _key(st):
                return None  # removed by its last holder between our open and our lock
        except FileNotFoundError:
            return None
        if old.get("pid") not in (None, os.getpid()):
            # a record left behind: with no lock to ask, judged by pid and host; with a free
            # lock, stale on this host, unknown from another (a share that does not pass
            # locks between hosts would hide a live writer there)
            judged = _judge_record(record, old) if taken is None else _free(record, old)
            if judged.state != "stale":
                return judged
        data = {**_record(), "held_by": "os" if taken else "record"}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(data).encode())
        held = FileMark(record, fd, _key(st), _mark(record, data, "live", mine=True))
        _held[held._key] = held
        keep = True
        return held
    finally:
        if not keep:
            os.close(fd)


def open_output_marked(path: Path, *, overwrite: bool) -> FileIO:
    """Create a writer's file marked as in use: :func:`take`, then ``_io.open_output``.

    The mark is taken first, so a live writer's file is never truncated by another; it is
    released when the returned file closes (:attr:`FileIO.mark`). Where no record can be made
    (an ``OSError``), the file is written unmarked and judged by its contents alone.

    Raises
    ------
    OutputExistsError
        Another writer that lives (or one on another host) marks ``path`` as in use, or
        ``path`` exists and ``overwrite`` is False.
    WriterError
        The OS refused (no such folder, no permission).

    """
    check_path(path)  # before the mark: its lock file's name holds the path's
    try:
        mark = take(path)
    except OSError:
        mark = None
    if mark is not None and not isinstance(mark, FileMark):
        msg = (
            f"{path} is being written by another writer ({mark.writer()}; lock record "
            f"{mark.path.name}); choose another name"
        )
        raise OutputExistsError(msg)
    try:
        io = open_output(path, overwrite=overwrite)
    except BaseException:
        if mark is not None:
            mark.release()
        raise
    io.mark = mark
    return io
