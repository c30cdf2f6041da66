"""The replay's progress bar, shared by the datasets being converted."""

from __future__ import annotations

import sys
import threading
from typing import Any

__all__ = ["Progress"]


class Progress:
    """One tqdm bar (on stderr) shared by the datasets being converted; thread-safe.

    The bar appears with the first work announced (:meth:`add_total`), so a run that fails
    before converting anything prints no empty bar.
    """

    def __init__(self, enabled: bool, unit: str = "frame", total: int = 0) -> None:
        self._lock = threading.Lock()
        self._enabled = enabled
        self._unit = unit
        self._bar: Any = None
        if total:
            self.add_total(total)

    def add_total(self, count: int) -> None:
        if not self._enabled or not count:
            return
        with self._lock:
            if self._bar is None:
                from tqdm import tqdm

                self._bar = tqdm(
                    total=count, unit=self._unit, desc="replay", file=sys.stderr, dynamic_ncols=True
                )
            else:
                self._bar.total += count
                self._bar.refresh()

    def advance(self, count: int = 1) -> None:
        if self._bar is not None:
            with self._lock:
                self._bar.update(count)

    def close(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.close()
