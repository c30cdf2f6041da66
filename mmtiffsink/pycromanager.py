"""pycro-manager adapters: the ``image_process_fn`` hook, an ndstorage storage, an acquisition.

Three ways to put a :class:`~mmtiffsink.sink.TiffSink` behind a pycro-manager acquisition:

* Hook: ``Acquisition(directory=None, image_process_fn=sink.image_process_fn)`` (any backend;
  see :func:`image_process_fn`). pycro-manager keeps nothing: the image is consumed.

Colour cameras: pycro-manager's Python backend (1.0.2) cannot acquire them (``PixelType``
``32bitRGB``: its engine fails before the first image), so :class:`TiffAcquisition` refuses
them up front; use the pymmcore-plus engine. The Java backend hands the hook Micro-Manager's
RGB32 pixels as (Y, X, 3) in B, G, R order (read from its source, not run here); the hook
stores them as RGB.
* :class:`TiffAcquisition`: a Python-backend acquisition (same arguments as pycro-manager's
  ``Acquisition``, plus the sink's options) whose dataset is a :class:`TiffStorage` instead of
  NDTiff. ``image_saved_fn``, ``AcquisitionFuture.await_image_saved`` and ``get_dataset()``
  (``read_image``, ``read_metadata``, ``as_array``) work, reading back from the files.
* :class:`TiffStorage` alone: ndstorage's ``WritableNDStorageAPI`` (``initialize``,
  ``put_image``, ``finish``, ``block_until_finished``, ``is_finished``) and its read API, for
  engines that take a dataset object.

``finish()`` never raises (an exception there hangs pycro-manager's ``await_completion``): an
error of the sink is kept in :attr:`TiffStorage.error` and raised by :meth:`TiffStorage.close`
(and by the ``with TiffAcquisition(...)`` block).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from ndstorage.ndstorage_base import NDStorageBase, WritableNDStorageAPI
from pycromanager.acquisition.python_backend_acquisitions import PythonBackendAcquisition

from mmtiffsink.errors import CoordinateError, MMTiffSinkError
from mmtiffsink.sink import Placement, SinkOptions, TiffSink

from ._closing import close_after_block

__all__ = ["TiffAcquisition", "TiffStorage", "image_process_fn"]


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


class TiffStorage(NDStorageBase, WritableNDStorageAPI):  # type: ignore[misc]
    """An ndstorage dataset (``WritableNDStorageAPI`` and the read API) over a :class:`TiffSink`.

    Parameters
    ----------
    sink
        Where the images go. :meth:`finish` closes it.
    on_error
        Called once, from the engine's saving thread, with the first error of the sink (e.g.
        :class:`TiffAcquisition` aborts the acquisition with it). After an error, later images
        are dropped.

    Notes
    -----
    Reading (``read_image``, ``read_metadata``, ``as_array``) reads the frames back from the
    files, while they are written and after: a read waits until its frame is in the file.
    The dataset keeps only an index of the stored axes in memory, never pixels.

    """

    def __init__(
        self,
        sink: TiffSink,
        *,
        on_error: Callable[[BaseException], None] | None = None,
        on_finish: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self.sink = sink
        self.error: BaseException | None = None
        self._on_error = on_error
        self._on_finish = on_finish
        self._index: dict[frozenset[tuple[str, Any]], Placement] = {}
        self._order: list[frozenset[tuple[str, Any]]] = []
        self._finished = threading.Event()
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- writing
    def _fail(self, exc: BaseException) -> None:
        if self.error is not None:
            return
        self.error = exc
        if self._on_error is not None:
            self._on_error(exc)

    def initialize(self, summary_metadata: dict[str, Any]) -> None:
        """Take the summary metadata (pixel size and any stated z step / interval)."""
        self.summary_metadata = summary_metadata
        try:
            self.sink.update_summary(summary_metadata)
        except Exception as exc:  # kept for close(): raising here would stall the engine
            self._fail(exc)

    def put_image(self, coordinates: Mapping[str, Any], image: Any, metadata: Any) -> None:
        """Store one image; after a first error, later images are dropped (see :attr:`error`)."""
        if self.error is not None:
            return
        try:
            placement = self.sink.put(image, coordinates, metadata)
        except Exception as exc:  # kept for close(): raising here would stall the engine
            self._fail(exc)
            return
        key = frozenset(coordinates.items())
        with self._lock:
            self._infer_image_properties(np.asarray(image))
            self._update_axes(dict(coordinates))
            self._index[key] = placement
            self._order.append(key)
        self._new_image_event.set()

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
            if self._on_finish is not None:
                self._on_finish()

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
            return [dict(key) for key in self._order]

    def _placement(self, axes: dict[str, Any]) -> Placement | None:
        """The placement of the image with these axes (from ``_consolidate_axes``), or None."""
        with self._lock:
            return self._index.get(frozenset(axes.items()))

    def has_image(
        self,
        channel: int | str | None = None,
        z: int | None = None,
        time: int | None = None,
        position: int | None = None,
        row: int | None = None,
        column: int | None = None,
        **kwargs: int | str,
    ) -> bool:
        """Whether an image with exactly these axes was stored."""
        axes = self._consolidate_axes(channel, z, position, time, row, column, **kwargs)
        return self._placement(axes) is not None

    def _read(self, axes: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any] | None]:
        placement = self._placement(axes)
        if placement is None:
            msg = f"no image with axes {axes!r} in this dataset"
            if self.error is not None:
                msg += f" (storing stopped after an error: {self.error})"
            raise CoordinateError(msg)
        return self.sink.read_placement(placement)

    def read_image(
        self,
        channel: int | str | None = None,
        z: int | None = None,
        time: int | None = None,
        position: int | None = None,
        row: int | None = None,
        column: int | None = None,
        **kwargs: int | str,
    ) -> np.ndarray:
        """The stored image with these axes, read back from its file."""
        axes = self._consolidate_axes(channel, z, position, time, row, column, **kwargs)
        return self._read(axes)[0]

    def read_metadata(
        self,
        channel: int | str | None = None,
        z: int | None = None,
        time: int | None = None,
        position: int | None = None,
        row: int | None = None,
        column: int | None = None,
        **kwargs: int | str,
    ) -> dict[str, Any]:
        """The metadata stored with the image with these axes."""
        axes = self._consolidate_axes(channel, z, position, time, row, column, **kwargs)
        return self._read(axes)[1] or {}


_FACTORY_LOCK = threading.Lock()


@contextlib.contextmanager
def _engine_dataset(storage: TiffStorage) -> Iterator[None]:
    """Make pycro-manager's Python backend build ``storage`` as the dataset of ``directory=None``.

    pycromanager (1.0.2) has no argument for a dataset: ``PythonBackendAcquisition.__init__``
    calls the module's ``NDRAMDataset()`` when no directory is given. That name is replaced for
    the duration of the constructor only, under a lock, and always restored.
    """
    from pycromanager.acquisition import python_backend_acquisitions as backend

    with _FACTORY_LOCK:
        original = backend.NDRAMDataset
        backend.NDRAMDataset = lambda: storage
        try:
            yield
        finally:
            backend.NDRAMDataset = original


def _require_python_backend() -> None:
    from mmpycorex import is_pymmcore_active

    if not is_pymmcore_active():
        msg = (
            "TiffAcquisition needs pycro-manager's Python backend (start_headless(..., "
            "python_backend=True)); with the Java backend use "
            "Acquisition(image_process_fn=sink.image_process_fn) and a TiffSink"
        )
        raise MMTiffSinkError(msg)


def _require_grey_camera() -> None:
    """Refuse a colour camera before pycro-manager's Python backend fails on it.

    pycromanager 1.0.2's Python backend cannot acquire RGB (``PixelType`` ``32bitRGB`` or
    ``64bitRGB``, four components): building the summary metadata raises ``AttributeError:
    type object 'AcqEngMetadata' has no attribute 'PIX_TYPE_RGB32'`` (checked on the demo
    camera) and the acquisition never delivers an image.
    """
    from pycromanager import Core

    components = int(Core().get_number_of_components())
    if components > 1:
        msg = (
            f"the camera gives colour images ({components} components per pixel, PixelType "
            "32bitRGB or 64bitRGB), which pycro-manager's Python backend cannot acquire (its "
            "engine fails with AttributeError: AcqEngMetadata has no PIX_TYPE_RGB32); use the "
            "pymmcore-plus engine (mmtiffsink.pymmcore_plus.TiffHandler), which writes RGB "
            "hyperstacks, or a grey PixelType"
        )
        raise MMTiffSinkError(msg)


class TiffAcquisition(PythonBackendAcquisition):  # type: ignore[misc]
    """A pycro-manager Python-backend acquisition that writes hyperstack TIFFs, not NDTiff.

    Same arguments as ``pycromanager.Acquisition`` (``directory`` is where the TIFF files go),
    plus the options of :class:`~mmtiffsink.sink.TiffSink`; everything else (``acquire``,
    ``abort``, ``get_dataset``, ``AcquisitionFuture.await_image_saved``) is pycro-manager's.

    Parameters
    ----------
    directory
        Directory of the files.
    name
        Acquisition name: the ``{name}`` of ``template``.
    image_process_fn, event_generation_hook_fn, pre_hardware_hook_fn, post_hardware_hook_fn, \
post_camera_hook_fn, notification_callback_fn, napari_viewer, image_saved_fn, debug
        As in ``pycromanager.Acquisition``. An ``image_process_fn`` runs before storage:
        return ``(image, metadata)`` to store the image, None to drop it.
    show_display
        Accepted for code written for the Java backend and ignored, as pycro-manager's Python
        backend does.
    options, **sink_options
        How the files are written: a :class:`~mmtiffsink.sink.SinkOptions` and/or its
        fields, as :class:`~mmtiffsink.sink.TiffSink` takes them. Unlike a ``TiffSink``, the
        default ``if_exists`` is ``"rename"``: as pycro-manager's own storage does, an
        acquisition whose files exist is written under a new name (``name_1``, ...).

    Raises
    ------
    MMTiffSinkError
        When pycro-manager's Python backend is not running, or the camera is a colour one
        (``32bitRGB``, ``64bitRGB``), which that backend cannot acquire.

    Examples
    --------
    >>> events = multi_d_acquisition_events(num_time_points=10, z_start=0, z_end=5, z_step=1)
    >>> with TiffAcquisition("out", name="exp1") as acq:
    ...     acq.acquire(events)
    >>> acq.files
    [PosixPath('out/exp1.tif')]

    Notes
    -----
    A writer error (full disk, existing file, ...) aborts the acquisition; the ``with`` block
    (or :meth:`await_completion`) raises it once every file is finished. The dataset
    (``get_dataset()``) is a :class:`TiffStorage` that reads images back from the files.

    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        name: str = "acq",
        image_process_fn: Callable[..., Any] | None = None,
        event_generation_hook_fn: Callable[..., Any] | None = None,
        pre_hardware_hook_fn: Callable[..., Any] | None = None,
        post_hardware_hook_fn: Callable[..., Any] | None = None,
        post_camera_hook_fn: Callable[..., Any] | None = None,
        notification_callback_fn: Callable[..., Any] | None = None,
        napari_viewer: Any = None,
        image_saved_fn: Callable[..., Any] | None = None,
        debug: bool = False,
        *,
        show_display: bool | None = None,
        options: SinkOptions | None = None,
        **sink_options: Any,
    ) -> None:
        _require_python_backend()
        _require_grey_camera()
        del show_display  # the Python backend has no display
        if options is None and "if_exists" not in sink_options and "overwrite" not in sink_options:
            sink_options["if_exists"] = "rename"  # pycro-manager's convention for a used name
        sink = TiffSink(directory, name, options, **sink_options)
        self._constructed = False
        self.storage = TiffStorage(
            sink, on_error=self._storage_failed, on_finish=self._release_futures
        )
        with _engine_dataset(self.storage):
            super().__init__(
                directory=None,
                name=name,
                image_process_fn=image_process_fn,
                event_generation_hook_fn=event_generation_hook_fn,
                pre_hardware_hook_fn=pre_hardware_hook_fn,
                post_hardware_hook_fn=post_hardware_hook_fn,
                post_camera_hook_fn=post_camera_hook_fn,
                notification_callback_fn=notification_callback_fn,
                napari_viewer=napari_viewer,
                image_saved_fn=image_saved_fn,
                debug=debug,
            )
        self._constructed = True

    def _storage_failed(self, exc: BaseException) -> None:
        """From the saving thread: stop acquiring into a sink that cannot store (non-blocking)."""
        if self._constructed:
            self.abort(exc)

    def _release_futures(self) -> None:
        """Storing is over: no future may wait for an image that will never be stored.

        After an error or an abort, events that were never acquired (or images that were
        dropped) would leave ``AcquisitionFuture.await_image_saved`` waiting forever; they are
        marked as done, so the wait returns and reading the image raises a clear
        :class:`~mmtiffsink.errors.CoordinateError` instead.
        """
        for ref in list(getattr(self, "_acq_futures", ())):
            future = ref()
            if future is None:
                continue
            received = getattr(future, "_notification_recieved", None)
            condition = getattr(future, "_condition", None)
            if not isinstance(received, dict) or condition is None:
                continue
            with condition:
                for milestones in received.values():
                    for milestone in milestones:
                        milestones[milestone] = True
                condition.notify_all()

    @property
    def sink(self) -> TiffSink:
        """The sink writing the files."""
        return self.storage.sink

    @property
    def files(self) -> list[Path]:
        """Paths of the files written so far."""
        return self.sink.files

    def await_completion(self) -> None:
        """Wait for the acquisition and its files to finish; raise the writer's error, if any."""
        try:
            super().await_completion()
        except BaseException:
            self.storage.finish()  # never raises; the acquisition's error wins
            raise
        self.storage.close()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.mark_finished()
        close_after_block(self.await_completion, exc, "the TiffAcquisition")
