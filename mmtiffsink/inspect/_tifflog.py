"""tifffile's log, collected per thread while a file is inspected (:mod:`mmtiffsink.inspect`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["tifffile_log"]


class _LogCapture(logging.Handler):
    """Collects tifffile's log records per thread while :func:`file_info` runs.

    tifffile reports a corrupted IFD chain by logging, not raising; the records are turned into
    a :class:`DatasetError` (and kept off the terminal). Installed on tifffile's logger while at
    least one :func:`file_info` call runs in any thread.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        records: list[logging.LogRecord] | None = getattr(self.local, "records", None)
        if records is not None:
            records.append(record)


_CAPTURE = _LogCapture()
_CAPTURE_LOCK = threading.Lock()
_capture_users = 0


@contextmanager
def tifffile_log() -> Iterator[list[logging.LogRecord]]:
    global _capture_users
    logger = logging.getLogger("tifffile")
    records: list[logging.LogRecord] = []
    _CAPTURE.local.records = records
    with _CAPTURE_LOCK:
        if _capture_users == 0:
            logger.addHandler(_CAPTURE)
        _capture_users += 1
    try:
        yield records
    finally:
        _CAPTURE.local.records = None
        with _CAPTURE_LOCK:
            _capture_users -= 1
            if _capture_users == 0:
                logger.removeHandler(_CAPTURE)
