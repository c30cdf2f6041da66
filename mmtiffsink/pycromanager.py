"""pycro-manager adapters: the ``image_process_fn`` hook and a TiffSink-backed ndstorage storage.

* Hook: ``Acquisition(directory=None, image_process_fn=sink.image_process_fn)`` with a
  :class:`~mmtiffsink.sink.TiffSink` (see :func:`image_process_fn`).
* Storage: :class:`TiffStorage` implements ``ndstorage``'s ``WritableNDStorageAPI``
  (``initialize``, ``put_image``, ``finish``, ``block_until_finished``, ``is_finished``), the
  interface of the dataset that pycro-manager's Python backend hands to its acquisition engine.
  pycromanager 1.0.2 has no argument to pass a dataset: the engine builds ``NDRAMDataset()`` (no
  directory) or ``NDTiffDataset`` itself, so using :class:`TiffStorage` there means replacing that
  factory (as the tests do).

``finish()`` never raises (an exception there hangs pycro-manager's ``await_completion``): an
error of the sink is kept in :attr:`TiffStorage.error` and raised by :meth:`TiffStorage.close`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from ndstorage.ndstorage_base import WritableNDStorageAPI

from mmtiffsink.sink import TiffSink

__all__ = ["TiffStorage", "image_process_fn"]


def image_process_fn(sink: TiffSink) -> Callable[[Any, dict[str, Any]], Any]:
    """The pycro-manager hook storing every image into ``sink``.

    Parameters
    ----------
    sink
        The sink; its ``pass_through`` decides whether images are also passed on.

    Returns
    -------
    callable
        ``sink.image_process_fn``.

    """
    return sink.image_process_fn


class TiffStorage(WritableNDStorageAPI):  # type: ignore[misc]
    """An ndstorage ``WritableNDStorageAPI`` writing into a :class:`~mmtiffsink.sink.TiffSink`.

    Parameters
    ----------
    sink
        Where the images go. :meth:`finish` closes it.

    Notes
    -----
    Write-only: the read API knows which coordinates were stored (``has_image``,
    ``get_image_coordinates_list``) but does not read pixels back; open the files
    (``sink.files``) with tifffile for that.

    """

    def __init__(self, sink: TiffSink) -> None:
        super().__init__()
        self.sink = sink
        self.error: BaseException | None = None
        self._coordinates: list[dict[str, Any]] = []
        self._finished = threading.Event()
        self._new_image = threading.Event()
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- writing
    def initialize(self, summary_metadata: dict[str, Any]) -> None:
        """Take the summary metadata (pixel size and any stated z step / interval)."""
        self.summary_metadata = summary_metadata
        try:
            self.sink.update_summary(summary_metadata)
        except Exception as exc:  # kept for close(): raising here would stall the engine
            self.error = self.error or exc

    def put_image(self, coordinates: Mapping[str, Any], image: Any, metadata: Any) -> None:
        """Store one image; after a first error, later images are dropped (see :attr:`error`)."""
        if self.error is not None:
            return
        try:
            self.sink.put(image, coordinates, metadata)
        except Exception as exc:  # kept for close(): raising here would stall the engine
            self.error = exc
            return
        with self._lock:
            self._coordinates.append(dict(coordinates))
        self._new_image.set()

    def finish(self) -> None:
        """Close the sink (idempotent); never raises: errors go to :attr:`error`."""
        if self._finished.is_set():
            return
        try:
            self.sink.close()
        except Exception as exc:  # raising here would hang await_completion
            self.error = self.error or exc
        finally:
            self._finished.set()

    def block_until_finished(self, timeout: float | None = None) -> bool:
        """Wait for :meth:`finish`; True when it happened within ``timeout``."""
        return self._finished.wait(timeout=timeout)

    def is_finished(self) -> bool:
        """True once :meth:`finish` ran."""
        return self._finished.is_set()

    def close(self) -> None:
        """Finish if needed, then raise the first error of the sink, if any."""
        self.finish()
        if self.error is not None:
            raise self.error

    # ---------------------------------------------------------------- reading
    def get_image_coordinates_list(self) -> list[dict[str, Any]]:
        """The axes of every image stored, in arrival order."""
        with self._lock:
            return [dict(c) for c in self._coordinates]

    def has_image(
        self, channel: Any = None, z: Any = None, time: Any = None, **kwargs: Any
    ) -> bool:
        """Whether an image with exactly these axes was stored."""
        wanted = {"channel": channel, "z": z, "time": time, **kwargs}
        wanted = {k: v for k, v in wanted.items() if v is not None}
        with self._lock:
            return any(
                {k: v for k, v in c.items() if v is not None} == wanted for c in self._coordinates
            )

    def await_new_image(self, timeout: float | None = None) -> bool:
        """Wait for an image stored since the previous call; True if one came."""
        arrived = self._new_image.wait(timeout=timeout)
        self._new_image.clear()
        return arrived

    def _write_only(self, *args: Any, **kwargs: Any) -> Any:
        msg = "TiffStorage is write-only; read the files in sink.files with tifffile"
        raise NotImplementedError(msg)

    read_image = _write_only
    read_metadata = _write_only
    as_array = _write_only
