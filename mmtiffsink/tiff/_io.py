"""Portable positional file I/O: the only module of the writer that touches descriptors.

Where the OS has them (Linux, macOS), reads and writes are positional (``os.pread``,
``os.pwrite``, ``os.pwritev``). Where it does not (Windows), a ``seek`` + ``read``/``write``
pair does the same. Every call holds the file's lock (uncontended: one appender at a time), so
``close`` can never close the descriptor under a write in progress: a call after ``close``
raises, and no byte can go to another file that reuses the descriptor number. Files are always
opened in binary mode (``O_BINARY`` on Windows, where text mode would translate bytes).

``MMTIFFSINK_PORTABLE_IO=1`` in the environment forces the seek + write path on any OS, so that
CI proves the path Windows takes on a Linux machine.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol, final

__all__ = ["FileIO", "open_output", "portable_forced"]

class Releasable(Protocol):
    """What :class:`FileIO` releases when it closes (the in-use mark of ``_lock.py``)."""

    def release(self) -> None:
        """Release it (idempotent)."""


Mode = Literal["create", "create_new", "update", "read"]
_FLAGS = {
    "create": os.O_RDWR | os.O_CREAT | os.O_TRUNC,
    "create_new": os.O_RDWR | os.O_CREAT | os.O_EXCL,
    "update": os.O_RDWR,
    "read": os.O_RDONLY,
}
_BINARY = getattr(os, "O_BINARY", 0) | getattr(os, "O_NOINHERIT", 0)
_IOV_MAX = 64  # buffers per pwritev call (IOV_MAX is 1024 on Linux; joined beyond this)


def portable_forced() -> bool:
    """True when ``MMTIFFSINK_PORTABLE_IO=1`` forces the seek + write path."""
    return os.environ.get("MMTIFFSINK_PORTABLE_IO", "") not in ("", "0")


@final
class FileIO:
    """A file opened for binary, positional reads and writes.

    Parameters
    ----------
    path
        The file.
    mode
        ``"create"`` (truncate or create), ``"create_new"`` (fail if it exists), ``"update"``
        (read and write an existing file) or ``"read"``.

    Raises
    ------
    OSError
        From the OS (``FileExistsError`` for ``create_new``, ``PermissionError``, ...).

    """

    __slots__ = ("_closed", "_fd", "_lock", "_positional", "mark", "path")

    def __init__(self, path: str | os.PathLike[str], mode: Mode) -> None:
        self.path = Path(path)
        self._positional = hasattr(os, "pread") and hasattr(os, "pwrite") and not portable_forced()
        self._lock = threading.Lock()
        self._fd = os.open(self.path, _FLAGS[mode] | _BINARY, 0o666)
        self._closed = False
        self.mark: Releasable | None = None
        """The file's in-use mark (see ``_lock.py``), released after the descriptor closes."""

    @property
    def positional(self) -> bool:
        """True when positional calls are used (False: the locked seek + write fallback)."""
        return self._positional

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def _check(self) -> int:
        if self._closed:
            msg = f"I/O on closed file {self.path}"
            raise ValueError(msg)
        return self._fd

    def read(self, offset: int, size: int) -> bytes:
        """Read up to ``size`` bytes at ``offset`` (fewer only at the end of the file)."""
        if size <= 0:
            return b""
        with self._lock:
            return self._read(self._check(), offset, size)

    def _read(self, fd: int, offset: int, size: int) -> bytes:
        if self._positional:
            data = os.pread(fd, size, offset)
            if len(data) == size or not data:
                return data
            parts = [data]
            got = len(data)
            while got < size:
                more = os.pread(fd, size - got, offset + got)
                if not more:
                    break
                parts.append(more)
                got += len(more)
            return b"".join(parts)
        os.lseek(fd, offset, os.SEEK_SET)
        parts = []
        got = 0
        while got < size:
            more = os.read(fd, size - got)
            if not more:
                break
            parts.append(more)
            got += len(more)
        return b"".join(parts)

    def write(self, chunks: Sequence[bytes | bytearray | memoryview], offset: int) -> None:
        """Write ``chunks`` contiguously at ``offset``, retrying short writes."""
        with self._lock:
            self._write(self._check(), chunks, offset)

    def _write(
        self, fd: int, chunks: Sequence[bytes | bytearray | memoryview], offset: int
    ) -> None:
        if len(chunks) > _IOV_MAX:
            chunks = [b"".join(chunks)]
        total = sum(len(c) for c in chunks)
        if not total:
            return
        if self._positional:
            if len(chunks) > 1 and hasattr(os, "pwritev"):
                written = os.pwritev(fd, chunks, offset)
            else:
                written = os.pwrite(fd, chunks[0] if len(chunks) == 1 else b"".join(chunks), offset)
            if written < total:  # a short write: the rest, chunk by chunk
                skip = written
                for chunk in chunks:
                    view = memoryview(chunk).cast("B")
                    if skip >= len(view):
                        skip -= len(view)
                        continue
                    rest, skip = view[skip:], 0
                    while rest:
                        n = os.pwrite(fd, rest, offset + written)
                        written += n
                        rest = rest[n:]
            return
        # one seek, then each chunk in turn (the file's lock is held): no joined copy
        os.lseek(fd, offset, os.SEEK_SET)
        for chunk in chunks:
            data = memoryview(chunk).cast("B")
            while data:
                n = os.write(fd, data)
                data = data[n:]

    def truncate(self, size: int) -> None:
        """Cut the file to ``size`` bytes."""
        with self._lock:
            os.ftruncate(self._check(), size)

    def sync(self) -> None:
        """Flush the file's data to the device (``fsync``)."""
        with self._lock:
            os.fsync(self._check())

    def size(self) -> int:
        """The file's size in bytes."""
        with self._lock:
            return os.fstat(self._check()).st_size

    def is_at_path(self) -> bool:
        """True while the open file is still the one at :attr:`path` (not deleted, replaced).

        Compares the descriptor's device and inode (the file index on Windows) with the
        path's, and checks that the file still has a link.
        """
        try:
            with self._lock:
                st = os.fstat(self._check())
            at = os.stat(self.path)
        except (OSError, ValueError):
            return False
        if st.st_nlink == 0:
            return False
        if st.st_ino == 0 and at.st_ino == 0:  # a file system without inode numbers
            return True
        return (st.st_dev, st.st_ino) == (at.st_dev, at.st_ino)

    def close(self) -> None:
        """Close the descriptor (after any call in progress), then the in-use mark; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                os.close(self._fd)
            finally:
                if self.mark is not None:
                    self.mark.release()

    def reset_lock_after_fork(self) -> None:
        """A fork child's copy: a fresh lock (a parent thread may have held the old one)."""
        self._lock = threading.Lock()


def check_path(path: Path) -> None:
    """Refuse a path no file can have, before anything is created.

    Raises
    ------
    ConfigError
        ``path`` holds a NUL character (the OS's own error is a bare "embedded null byte").

    """
    from ..errors import ConfigError

    if "\0" in str(path):
        msg = f"the file name {str(path)!r} holds a NUL character, which no file name can hold"
        raise ConfigError(msg)


def open_output(path: Path, *, overwrite: bool) -> FileIO:
    """Create a writer's file, with mmtiffsink's errors (see ``_lock.open_marked``).

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is False.
    ConfigError
        ``path`` holds a NUL character.
    WriterError
        The OS refused (no such folder, no permission).

    """
    from ..errors import OutputExistsError, WriterError

    check_path(path)
    try:
        return FileIO(path, "create" if overwrite else "create_new")
    except FileExistsError:
        msg = f"{path} exists; pass overwrite=True to replace it"
        raise OutputExistsError(msg) from None
    except OSError as exc:
        why = exc.strerror or exc
        msg = f"cannot create {path}: {why}; choose a file in a folder you can write to"
        raise WriterError(msg) from exc
