"""pymmcore-plus adapter: an MDA output handler that writes ImageJ hyperstack TIFFs.

::

    from mmtiffsink.pymmcore_plus import TiffHandler

    with TiffHandler("D:/data", name="exp1") as handler:
        core.mda.run(sequence, output=handler)      # or core.run_mda(..., block=True)
    handler.files                                    # the files written

:class:`TiffHandler` is what pymmcore-plus calls a data handler (``sequenceStarted``,
``frameReady``, ``sequenceFinished``): ``mda.run(output=handler)`` connects it through
``mda_listeners_connected``, which calls it from one relay thread, in order, and joins that thread
before ``run`` returns. pymmcore-plus only logs what a handler raises (and an exception kills the
relay thread, so no later callback would come), so the handler never raises from a callback: a
writer error is logged, cancels the MDA (``core.mda.cancel()``), drops the frames that follow,
and is raised by :meth:`TiffHandler.close` (and the ``with`` block) once every file is finished.

How useq's ``MDAEvent.index`` maps onto the files (:func:`event_axes`):

* ``p`` -> one file per position, named by ``pos_name`` when every position of the sequence has a
  distinct name (else by the index); with ``positions="series"`` (``profile="ome"``) every
  position is a series (an OME Image) of one file instead, named the same way;
* ``c`` -> the channel, named ``event.channel.config``, in the sequence's channel order;
* ``z``, ``t`` -> the hyperstack's slices and frames;
* ``g`` (grid) and any other index key -> separate files, never merged (file-splitting axes of
  :class:`~mmtiffsink.sink.TiffSink`, e.g. ``exp1_A1_grid3.tif``);
* several cameras (a Micro-Manager ``Multi Camera``) -> one file per camera (axis ``camera``):
  cameras may differ in size and pixel type, which one hyperstack cannot hold.

Colour cameras (``PixelType`` ``32bitRGB``, ``64bitRGB``) give RGB frames (Y, X, 3), uint8 or
uint16 (:func:`camera_image`): the files are RGB hyperstacks (16-bit RGB needs
``profile="bigtiff"`` or ``"ome"``; ImageJ 1.x would lose its C, Z and T).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import logging
import math
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from mmtiffsink.errors import MMTiffSinkError, WriterClosedError
from mmtiffsink.sink import SinkOptions, TiffSink, sink_options
from mmtiffsink.tiff import Following

from ._closing import add_note, close_after_block

__all__ = [
    "TiffHandler",
    "camera_image",
    "event_axes",
    "frame_metadata",
    "jsonable",
    "summary_metadata",
]

_log = logging.getLogger(__name__)

#: useq index keys with a name of their own; other keys keep theirs.
INDEX_AXES = {"t": "time", "z": "z", "c": "channel", "p": "position", "g": "grid"}
_RESERVED = frozenset({*INDEX_AXES.values(), "camera"})
_MAX_DEPTH = 12


def jsonable(value: Any, _depth: int = 0) -> Any:
    """``value`` as what ``json`` writes: models dumped, numpy unwrapped, NaN/inf as None.

    pydantic models (``MDAEvent``) become their JSON dump without unset fields, enums their
    value, numpy scalars and arrays Python numbers and lists, tuples lists, timedeltas seconds,
    dates ISO text, keys text; anything else its ``str``.
    """
    if _depth > _MAX_DEPTH:
        return str(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value.value if isinstance(value, enum.Enum) else value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, enum.Enum):
        return jsonable(value.value, _depth + 1)
    if isinstance(value, np.generic):
        return jsonable(value.item(), _depth + 1)
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist(), _depth + 1)
    if isinstance(value, Mapping):
        return {str(jsonable(k, _depth + 1)): jsonable(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v, _depth + 1) for v in value]
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return jsonable(dump(mode="json", exclude_unset=True), _depth + 1)
        except Exception:  # a model that cannot dump itself: keep its text
            return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value), _depth + 1)
    return str(value)


def camera_image(image: Any) -> Any:
    """A camera's image as the writer takes it: grey (Y, X) or RGB (Y, X, 3).

    pymmcore-plus gives colour cameras (``PixelType`` ``32bitRGB``, ``64bitRGB``) as RGB
    (Y, X, 3) uint8 or uint16 (``CMMCorePlus.fixImage``): passed on as they are. Micro-
    Manager's own layout, four samples per pixel in B, G, R, A order (an image read with
    ``fix=False``, or an engine that does not fix it), becomes R, G, B (alpha dropped).
    """
    if getattr(image, "ndim", 0) == 3 and image.shape[2] == 4:
        return np.ascontiguousarray(image[..., 2::-1])  # BGRA -> RGB
    return image


def _event_json(event: Any) -> Any:
    """An ``MDAEvent`` as JSON, without its ``sequence`` (the whole plan, in every frame)."""
    dump = getattr(event, "model_dump", None)
    if callable(dump):
        try:
            return jsonable(dump(mode="json", exclude_unset=True, exclude={"sequence"}))
        except Exception:  # not a useq event after all
            return str(event)
    return jsonable(event)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def frame_metadata(event: Any, meta: Mapping[str, Any]) -> dict[str, Any]:
    """A frame's metadata for the file: ``FrameMetaV1`` as JSON, plus Micro-Manager's keys.

    The keys the sink's calibration reads, ``PixelSize_um`` (``pixel_size_um``),
    ``X/Y/ZPosition_um_Intended`` (the event's ``x_pos``/``y_pos``/``z_pos``; the OME
    profile's plane positions and StageLabels), ``ElapsedTime-ms``
    (``runner_time_ms``), and ``Exposure`` (``exposure_ms``) and ``Camera``
    (``camera_device``), are added when known; every original key is kept.
    """
    out = jsonable({k: v for k, v in meta.items() if k != "mda_event"})
    assert isinstance(out, dict)
    out["mda_event"] = _event_json(meta.get("mda_event", event))
    extra = {
        "PixelSize_um": _number(meta.get("pixel_size_um")),
        "XPosition_um_Intended": _number(getattr(event, "x_pos", None)),
        "YPosition_um_Intended": _number(getattr(event, "y_pos", None)),
        "ZPosition_um_Intended": _number(getattr(event, "z_pos", None)),
        "ElapsedTime-ms": _number(meta.get("runner_time_ms")),
        "Exposure": _number(meta.get("exposure_ms")),
        "Camera": meta.get("camera_device") if isinstance(meta.get("camera_device"), str) else None,
    }
    out.update({key: value for key, value in extra.items() if value is not None})
    return out


def _z_step(sequence: Any) -> float | None:
    """The z plan's intended step (None for position lists)."""
    step = _number(getattr(getattr(sequence, "z_plan", None), "step", None))
    return abs(step) if step else None


def _interval_s(sequence: Any) -> float | None:
    """The time plan's intended interval (None for multi-phase plans and ``0``)."""
    plan = getattr(sequence, "time_plan", None)
    interval = getattr(plan, "interval", None)
    if not isinstance(interval, datetime.timedelta):
        return None
    return _number(interval.total_seconds()) or None


def summary_metadata(sequence: Any, meta: Mapping[str, Any]) -> dict[str, Any]:
    """The summary for :meth:`TiffSink.update_summary`: Micro-Manager's calibration keys.

    ``PixelSize_um`` from the first ``image_infos``, ``z-step_um`` from the sequence's
    ``z_plan.step`` and ``Interval_ms`` from its ``time_plan.interval``: the intended values,
    which win over what the frames' z positions and time stamps show (explicit sink options win
    over both).
    """
    summary: dict[str, Any] = {}
    infos = meta.get("image_infos") or ()
    if infos and isinstance(infos[0], Mapping):
        pixel = _number(infos[0].get("pixel_size_um"))
        if pixel:
            summary["PixelSize_um"] = pixel
    step = _z_step(sequence)
    if step:
        summary["z-step_um"] = step
    interval = _interval_s(sequence)
    if interval:
        summary["Interval_ms"] = interval * 1000.0
    return summary


def _key(key: Any) -> str:
    return str(getattr(key, "value", key))


@dataclasses.dataclass(frozen=True)
class _Layout:
    """What a sequence fixes about the mapping: channel labels, position naming, cameras."""

    channel_names: tuple[str, ...] | None = None
    channel_by_index: tuple[tuple[str, str], ...] = ()  # (config, label) per channel index
    position_names: bool = True
    cameras: bool = False

    @classmethod
    def of(cls, sequence: Any, meta: Mapping[str, Any]) -> _Layout:
        channels = tuple(getattr(sequence, "channels", None) or ())
        configs = [str(ch.config) for ch in channels]
        labels = configs
        if len(set(configs)) != len(configs):  # the same preset twice (e.g. two exposures)
            labels = [f"{config}_{i}" for i, config in enumerate(configs)]
        try:
            positions = list(getattr(sequence, "stage_positions", None) or ())
        except TypeError:
            positions = []
        names = [getattr(p, "name", None) for p in positions]
        named = all(isinstance(n, str) and n for n in names) and len(set(names)) == len(names)
        infos = meta.get("image_infos") or ()
        cameras = any(
            isinstance(info, Mapping) and (info.get("num_camera_adapter_channels") or 1) > 1
            for info in infos
        )
        return cls(
            channel_names=tuple(labels) or None,
            channel_by_index=tuple(zip(configs, labels, strict=True)),
            position_names=named or not positions,
            cameras=cameras,
        )


def event_axes(
    event: Any, meta: Mapping[str, Any] | None = None, layout: Any = None
) -> dict[str, Any]:
    """The sink axes of a useq ``MDAEvent``: ``{"position": ..., "channel": ..., "z": ...}``.

    See the module's docstring for the rules. ``layout`` is what the handler learnt from the
    sequence (None: names as the event gives them).
    """
    layout = layout if isinstance(layout, _Layout) else _Layout()
    axes: dict[str, Any] = {}
    for raw_key, value in dict(getattr(event, "index", {}) or {}).items():
        key = _key(raw_key)
        name = INDEX_AXES.get(key, key)
        if key not in INDEX_AXES and key in _RESERVED:  # e.g. a custom "time" index
            name = f"index_{key}"
        axes[name] = int(value) if not isinstance(value, str) else value
    channel = getattr(event, "channel", None)
    if channel is not None:
        config = str(channel.config)
        c = axes.get("channel")
        table = layout.channel_by_index
        if isinstance(c, int) and 0 <= c < len(table) and table[c][0] == config:
            axes["channel"] = table[c][1]
        else:
            axes["channel"] = config
    elif "channel" in axes and layout.channel_names:  # an index without a channel: by order
        c = axes["channel"]
        if isinstance(c, int) and 0 <= c < len(layout.channel_names):
            axes["channel"] = layout.channel_names[c]
    pos_name = getattr(event, "pos_name", None)
    if "position" in axes and layout.position_names and isinstance(pos_name, str) and pos_name:
        axes["position"] = pos_name
    elif "position" not in axes and isinstance(pos_name, str) and pos_name:
        axes["position"] = pos_name  # a named event of a generator without a p index
    if layout.cameras and meta is not None and isinstance(meta.get("camera_device"), str):
        axes["camera"] = meta["camera_device"]
    return axes


class TiffHandler:
    """A pymmcore-plus MDA output handler writing one hyperstack TIFF per position.

    Parameters
    ----------
    directory
        Folder of the files (created if missing).
    name
        Dataset name: the ``{name}`` of the file-name template.
    options, **sink_options
        How the files are written: a :class:`~mmtiffsink.sink.SinkOptions` and/or its
        fields, as :class:`~mmtiffsink.sink.TiffSink` takes them. Without ``channel_names``
        the sequence's channel order is used. Explicit ``pixel_size_um``/``z_step_um``/
        ``interval_s`` win over the sequence's plan and the frames' metadata.
    core
        The ``CMMCorePlus`` (or its ``mda`` runner) running the sequence, cancelled on a
        writer error. Without it, the core pymmcore-plus knows as its first instance is used
        when it is running this handler's sequence; otherwise the MDA goes on and the frames
        after the error are dropped.

    Raises
    ------
    ConfigError, ProfileError
        For a bad option (at construction, before any MDA runs).

    Notes
    -----
    One handler writes one sequence: a second ``sequenceStarted`` is an error. Skipped
    (``SkipEvent``) and never-acquired frames, a cancelled MDA and generator sequences of
    unknown length leave valid files whose missing planes hold a blank frame (with a
    :class:`~mmtiffsink.errors.MissingFramesWarning`); :attr:`blank_planes` counts them per file.
    Each frame's metadata (``FrameMetaV1``, JSON-able) is stored with it (tag 51123).

    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        name: str = "acq",
        options: SinkOptions | None = None,
        *,
        core: Any = None,
        **sink_options_: Any,
    ) -> None:
        self.options = sink_options(options, sink_options_)
        self.directory = Path(directory)
        self.name = str(name)
        self.error: BaseException | None = None
        self.frames = 0
        self.dropped = 0
        self.canceled = False
        self.blank_planes: dict[Path, int] = {}
        self.summary: dict[str, Any] | None = None
        self._runner = getattr(core, "mda", core)
        self._sink: TiffSink | None = None
        self._layout = _Layout()
        self._started = False
        self._finished = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._per_file: dict[Path, int] = {}
        self._view: Following | None = None

    # ---------------------------------------------------------------- state
    @property
    def files(self) -> list[Path]:
        """The files written so far, in order of their first frame."""
        return [] if self._sink is None else self._sink.files

    @property
    def sink(self) -> TiffSink | None:
        """The sink of the sequence (None before ``sequenceStarted``)."""
        return self._sink

    def _make_sink(self) -> TiffSink:
        options = self.options
        if options.channel_names is None and self._layout.channel_names:
            options = options.replace(channel_names=self._layout.channel_names)
        sink = TiffSink(self.directory, self.name, options)
        self._sink = sink
        if self._view is not None:
            sink.follow(self._view, 0)
        return sink

    def get_view(self) -> Following:
        """A live view of the first file (the first position's) as a (T, Z, C, Y, X) array.

        pymmcore-plus's ``SinkView`` (``dtype``, ``shape``, ``ndim``, ``__getitem__``) with
        ome-writers' ``coords_changed`` signal (connect a callback without arguments; it is
        called in the writer's thread for each frame in the file): what pymmcore-gui shows in
        ndv. Available at once: empty until the first frame opens the file, then following
        it as frames land (the shape grows), compressed files included; readable after the
        run. For another file or position use ``handler.sink.view(...)``.
        """
        with self._lock:
            if self._view is None:
                self._view = Following()
                if self._sink is not None:
                    self._sink.follow(self._view, 0)
            return self._view

    def _fail(self, exc: BaseException, when: str) -> None:
        """Keep the first error, log it, and cancel the MDA (from the callback's thread)."""
        if self.error is None:
            self.error = exc
            _log.error("mmtiffsink: %s failed, cancelling the MDA: %s", when, exc)
            self._cancel()

    def _cancel(self) -> None:
        runner = self._runner
        if runner is None:
            try:  # the core pymmcore-plus knows, without making one
                from pymmcore_plus.core import _mmcore_plus

                ref = getattr(_mmcore_plus, "_instance", None)
                core = ref() if ref is not None else None
                candidate = getattr(core, "mda", None)
                handlers = getattr(candidate, "_handlers", ())
                if candidate is not None and candidate.is_running() and self in handlers:
                    runner = candidate
            except Exception:  # a pymmcore-plus without these internals: cannot cancel
                runner = None
        if runner is None:
            _log.error("mmtiffsink: cannot cancel the MDA (give TiffHandler(core=...))")
            return
        try:
            runner.cancel()
        except Exception as exc:
            _log.error("mmtiffsink: cancelling the MDA failed: %s", exc)

    # ---------------------------------------------------------------- callbacks
    def sequenceStarted(self, sequence: Any, meta: Mapping[str, Any] | None = None) -> None:
        """Begin the sequence: channel order, position names, calibration from its plan."""
        self._thread = threading.current_thread()
        if self._started:
            self._fail(
                MMTiffSinkError("a TiffHandler writes one sequence; make a new one per MDA"),
                "starting a second sequence",
            )
            return
        self._started = True
        meta = meta or {}
        try:
            self._layout = _Layout.of(sequence, meta)
            sink = self._make_sink()
            self.summary = jsonable(meta)
            summary = summary_metadata(sequence, meta)
            if summary:
                sink.update_summary(summary)
        except Exception as exc:  # raising here would stop the relay thread
            self._fail(exc, "starting the files")

    def frameReady(self, image: Any, event: Any, meta: Mapping[str, Any] | None = None) -> None:
        """Store one frame; after an error, frames are dropped (see :attr:`error`)."""
        with self._lock:  # close() may run in another thread
            if self.error is not None or self._closed:
                self.dropped += 1
                return
            try:
                sink = self._sink if self._sink is not None else self._make_sink()
                axes = event_axes(event, meta or {}, self._layout)
                image = camera_image(image)
                placement = sink.put(image, axes, frame_metadata(event, meta or {}))
            except WriterClosedError:
                self.dropped += 1
                return
            except Exception as exc:  # raising here would stop the relay thread
                self.dropped += 1
                self._fail(exc, "writing a frame")
                return
            path = sink.file_of(placement)
            self._per_file[path] = self._per_file.get(path, 0) + 1
            self.frames += 1

    def sequenceCanceled(self, sequence: Any) -> None:
        """The MDA was cancelled: the files are finished by ``sequenceFinished``."""
        self.canceled = True

    def sequenceFinished(self, sequence: Any) -> None:
        """Finish every file; an error is kept for :meth:`close` (never raised here)."""
        try:
            self._close_sink()
        except Exception as exc:
            if self.error is None:
                self.error = exc
                _log.error("mmtiffsink: finishing the files failed: %s", exc)
        finally:
            self._finished.set()

    # ---------------------------------------------------------------- closing
    def _close_sink(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            sink = self._sink
            if sink is None:
                return
            try:
                sink.close()
            finally:
                self._count_blanks()

    def _count_blanks(self) -> None:
        from mmtiffsink.inspect import file_info

        for path, frames in self._per_file.items():
            try:
                planes = file_info(path).planes
            except Exception:  # a file the writer could not finish: repair() tells
                continue
            self.blank_planes[path] = max(planes - frames, 0)

    def close(self, timeout: float | None = None) -> None:
        """Wait for the sequence to finish, finish the files, raise the first error.

        Parameters
        ----------
        timeout
            Longest wait, in seconds, for ``sequenceFinished`` of a sequence still running
            (None: until it finishes, or until the thread calling the handler is gone).

        Raises
        ------
        Exception
            The first error of the writer (after every file was finished).

        """
        if self._started and not self._finished.is_set():
            waited = 0.0
            while not self._finished.wait(0.1):
                waited += 0.1
                thread = self._thread
                gone = thread is not None and not thread.is_alive()
                if gone or (timeout is not None and waited >= timeout):
                    break
        try:
            self._close_sink()
        except Exception as exc:
            if self.error is None:
                raise
            add_note(self.error, f"mmtiffsink: closing the files also failed: {exc!r}")
        if self.error is not None:
            raise self.error

    def __enter__(self) -> TiffHandler:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        timeout = 0 if isinstance(exc, KeyboardInterrupt) else None
        close_after_block(lambda: self.close(timeout=timeout), exc, "the TiffHandler")
