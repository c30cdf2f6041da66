"""Closing at the end of a ``with`` block without hiding the error that ended it."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

_S = TypeVar("_S", bound="ClosesAtBlockEnd")

__all__ = ["ClosesAtBlockEnd", "add_note", "close_after_block"]


def add_note(exc: BaseException, note: str) -> None:
    """Add ``note`` to ``exc`` (``add_note``), also on Python 3.10.

    Python 3.10 has no ``add_note``: the note is kept in ``exc.__notes__`` all the same, the
    attribute that 3.11's tracebacks (and the ``exceptiongroup`` backport) show.
    """
    adder = getattr(exc, "add_note", None)
    if adder is not None:
        adder(note)
        return
    notes = getattr(exc, "__notes__", None)
    if not isinstance(notes, list):
        notes = []
        try:
            exc.__notes__ = notes  # type: ignore[attr-defined]
        except AttributeError:  # pragma: no cover - exceptions without a __dict__
            return
    notes.append(note)


def close_after_block(close: Callable[[], None], exc: BaseException | None, what: str) -> None:
    """Call ``close``; if the block raised ``exc``, a close error becomes a note on ``exc``.

    Without an error in the block, a close error propagates as usual.
    """
    if exc is None:
        close()
        return
    try:
        close()
    except Exception as close_exc:  # do not hide the error that ended the block
        if close_exc is not exc:  # a close that re-raises the block's own error adds nothing
            add_note(exc, f"mmtiffsink: closing {what} also failed: {close_exc!r}")


class ClosesAtBlockEnd:
    """``with`` support for an object with ``close()``, written once for every such object.

    The object is closed at the end of the block; when the block raised, an error of the close
    becomes a note on the block's error instead of hiding it (:func:`close_after_block`).
    """

    __slots__ = ()

    def close(self) -> None:
        """Release the object (each subclass defines it)."""
        raise NotImplementedError

    def _closing_what(self) -> str:
        """How a close error names the object."""
        return f"the {type(self).__name__}"

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        close_after_block(self.close, exc, self._closing_what())
