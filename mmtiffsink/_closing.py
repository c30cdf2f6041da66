"""Closing at the end of a ``with`` block without hiding the error that ended it."""

from __future__ import annotations

from collections.abc import Callable


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
        if hasattr(exc, "add_note"):
            exc.add_note(f"mmtiffsink: closing {what} also failed: {close_exc!r}")
