"""Flushing and closing a file: durable points, the finished hyperstack, what a file holds.

:class:`FileLifecycle` is the part of :class:`~mmtiffsink.tiff.IJTiffFile` that ends what
``save`` started: ``flush`` waits for every frame in flight and syncs; ``close`` waits, fills
never-saved planes and writes the final chain (:mod:`._finish`), then gives back the pool and
the descriptor; in a fork child a file is detached, never written.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

from ..errors import WriterError
from . import _pool
from ._attributes import FileAttributes
from ._encoder import EncodeQueue
from ._finish import finish_file

__all__ = ["FileLifecycle"]


class FileLifecycle(FileAttributes):
    """``flush``, ``close`` and what they share with ``save`` (errors, budget release)."""

    __slots__ = ()

    # set by IJTiffFile
    _budget: _pool.Budget
    _close_lock: threading.Lock
    _encoder: EncodeQueue
    _finalizer: weakref.finalize[Any, Any]
    _holds_pool: list[bool]

    def _release(self) -> None:
        """Give back the pool and the descriptor (once)."""
        self._finalizer.detach()
        try:
            self._io.close()
        finally:
            if self._holds_pool[0]:
                self._holds_pool[0] = False
                _pool.release_pool()

    def _detach_after_fork(self) -> None:
        """In a fork child: this file belongs to the parent; the child never writes it."""
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._close_lock = threading.Lock()
        self._seq.lock, self._seq.cond = self._lock, self._cond
        self._encoder.detach(self._lock)
        self._io.reset_lock_after_fork()
        self._inherited = True
        self._closing = True  # only the parent writes it
        self._holds_pool[0] = False  # the child's pool count was reset

    def _raise_error(self) -> None:
        self._seq.raise_error(self.path, len(self._app.planes))

    # ---------------------------------------------------------------- flush and close
    def flush(self) -> None:
        """Wait until every saved frame is in the file, then fsync: a durable point.

        After ``flush`` returns, a killed process or a power loss loses no frame saved
        before it: :func:`mmtiffsink.repair` (or tifffile) recovers every one of them.

        Raises
        ------
        WriterClosedError
            The file is closed.
        WriterError
            A frame failed, or the file was deleted or replaced while it was written.

        """
        if self._closed or self._closing:
            raise self._closed_error()
        self._encoder.kick()
        self._seq.wait_idle()
        with self._lock:
            self._raise_error()
        self._check_identity()
        try:
            self._io.sync()
        except (OSError, ValueError) as exc:
            if self._closing:
                raise self._closed_error() from None
            msg = f"syncing {self.path} failed: {exc}"
            raise WriterError(msg) from exc

    def close(self) -> None:
        """Finish the hyperstack (canonical plane order, ImageJ description) and close.

        Waits for frames in flight; a ``save`` in another thread either lands before close
        finishes or raises :class:`WriterClosedError`. Planes never saved are filled with one
        shared blank frame, with a :class:`MissingFramesWarning`. If a frame failed, the file
        is left as the valid TIFF it is (see :func:`mmtiffsink.repair`) and
        :class:`WriterError` raised; also when the file was deleted or replaced meanwhile.
        In a process forked while the file was open, ``close`` only releases the child's copy.
        Interrupted (KeyboardInterrupt) while it waits for the frames in flight, the file stays
        open and refuses saves; the frames keep landing, and ``close`` again finishes it.
        """
        with self._close_lock:
            if self._closed:
                return
            if self._inherited:
                self._closed = True
                self._finalizer.detach()
                self._io.close()
                return
            with self._lock:
                self._closing = True
            self._budget.wake()
            # an interrupt (KeyboardInterrupt) while waiting propagates and leaves the file
            # open, refusing saves: the frames in flight still land, and close again
            # finishes the file (releasing the descriptor now would lose every one of them)
            self._encoder.kick()
            self._seq.wait_idle()
            error: BaseException | None = None
            remove = False
            try:
                if self._seq.error is None:
                    self._check_identity()
                    remove = self._finalize()
            except BaseException as exc:
                error = exc
            finally:
                with self._lock:
                    self._closed = True
                    self._cond.notify_all()
                self._release()
            if remove:
                os.unlink(self.path)
        if error is not None and not isinstance(error, Exception):
            raise error  # an interrupt while finishing: itself, not what followed from it
        with self._lock:
            self._raise_error()
        if error is not None:
            if isinstance(error, OSError) and not isinstance(error, WriterError):
                msg = f"finishing {self.path} failed: {error!r}; the file keeps its frames"
                raise WriterError(msg) from error
            raise error

    def _finalize(self) -> bool:
        """Finish the file; True when no frame was saved (the file is then removed)."""
        blanks = finish_file(
            self._app,
            self._settings,
            low=self._low,
            high=self._high,
            series=self._series,
            codec=self._codec,
            dtype=self._dtype,
            profile=self.profile,
        )
        self.blank_planes = blanks or 0
        return blanks is None
