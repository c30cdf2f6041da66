"""pymmcore-plus adapter: its ``SinkProtocol`` and an MDA output handler, writing hyperstacks.

Two ways to write an MDA, through one writer (:class:`TiffMDASink`)::

    from mmtiffsink.pymmcore_plus import TiffHandler, TiffMDASink, attached

    # a sink, as pymmcore-plus's own writers: called on the acquisition thread, a writer
    # error stops the MDA at once and core.mda.run raises it
    with TiffMDASink("D:/data", name="exp1") as sink, attached(core, sink):
        core.mda.run(sequence)

    # an observer: output=handler (frameReady on pymmcore-plus's relay thread)
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

Both hand the sink neutral records (:func:`frame_record`, :func:`sequence_summary`), never
Micro-Manager's metadata keys.

How useq's ``MDAEvent.index`` maps onto the files (:func:`event_axes`):

* ``p`` -> one file per position, named by ``pos_name`` when every position of the sequence has a
  distinct name (else by the index); with ``positions="series"`` (``profile="ome"``) every
  position is a series (an OME Image) of one file instead, named the same way;
* ``c`` -> the channel, named ``event.channel.config``, in the sequence's channel order;
* ``z``, ``t`` -> the hyperstack's slices and frames; an event without a ``t`` index (a
  generator of ``MDAEvent(metadata=...)``) goes to the next time point (:class:`EventPlaces`);
* ``g`` (grid) and any other index key -> separate files, never merged (file-splitting axes of
  :class:`~mmtiffsink.sink.TiffSink`, e.g. ``exp1_A1_grid3.tif``);
* several cameras (a Micro-Manager ``Multi Camera``) -> one file per camera (axis ``camera``):
  cameras may differ in size and pixel type, which one hyperstack cannot hold.

Colour cameras (``PixelType`` ``32bitRGB``, ``64bitRGB``) give RGB frames (Y, X, 3), uint8 or
uint16 (:func:`camera_image`): the files are RGB hyperstacks (16-bit RGB needs
``profile="bigtiff"`` or ``"ome"``; ImageJ 1.x would lose its C, Z and T).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import enum
import logging
import math
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from mmtiffsink._values import finite, positive
from mmtiffsink.errors import MMTiffSinkError, WriterClosedError
from mmtiffsink.sink import (
    Calibration,
    Frame,
    SinkOptions,
    Summary,
    TiffSink,
    sink_options,
    summary_annotations,
)
from mmtiffsink.tiff import Following

from ._closing import ClosesAtBlockEnd, add_note, close_after_block

__all__ = [
    "EventPlaces",
    "SequenceLayout",
    "TiffHandler",
    "TiffMDASink",
    "attached",
    "camera_image",
    "event_axes",
    "frame_metadata",
    "frame_record",
    "jsonable",
    "sequence_summary",
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
    """A finite number (numpy's too), else None; text is not a number here."""
    return None if isinstance(value, str) else finite(value)


def frame_metadata(event: Any, meta: Mapping[str, Any]) -> dict[str, Any]:
    """A frame's metadata for the file: pymmcore-plus's ``FrameMetaV1`` as JSON.

    Every key is kept as pymmcore-plus gives it (``pixel_size_um``, ``runner_time_ms``,
    ``exposure_ms``, ``position``, ``property_values``, ...); ``mda_event`` is the event
    without its ``sequence`` (the whole plan, which is in the file's summary once).
    """
    out = jsonable({k: v for k, v in meta.items() if k != "mda_event"})
    assert isinstance(out, dict)
    out["mda_event"] = _event_json(meta.get("mda_event", event))
    return out


def frame_record(event: Any, meta: Mapping[str, Any], axes: Mapping[str, Any]) -> Frame:
    """The sink's :class:`~mmtiffsink.sink.Frame` of one pymmcore-plus frame.

    Parameters
    ----------
    event
        The ``MDAEvent``: its intended stage position (``x_pos``/``y_pos``/``z_pos``).
    meta
        Its ``FrameMetaV1``: ``pixel_size_um``, ``runner_time_ms``, ``exposure_ms``, and the
        stage ``position`` where the event has none.
    axes
        Where it goes (:meth:`EventPlaces.axes`).

    """
    position = meta.get("position")
    actual = position if isinstance(position, Mapping) else {}

    def where(axis: str) -> float | None:
        intended = _number(getattr(event, f"{axis}_pos", None))
        return intended if intended is not None else _number(actual.get(axis))

    elapsed_ms = _number(meta.get("runner_time_ms"))
    exposure_ms = _number(meta.get("exposure_ms"))
    return Frame(
        axes=axes,
        metadata=frame_metadata(event, meta),
        stated=Calibration(pixel_size_um=_number(meta.get("pixel_size_um"))),
        x_um=where("x"),
        y_um=where("y"),
        z_um=where("z"),
        elapsed_s=None if elapsed_ms is None else elapsed_ms / 1000.0,
        exposure_s=None if exposure_ms is None or exposure_ms < 0 else exposure_ms / 1000.0,
    )


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
    return positive(interval.total_seconds())


def sequence_summary(sequence: Any, meta: Mapping[str, Any]) -> Summary:
    """The sink's :class:`~mmtiffsink.sink.Summary` of a pymmcore-plus sequence.

    Stated calibration: the pixel size of the first ``image_infos``, the sequence's
    ``z_plan.step`` and ``time_plan.interval`` (the intended values, which win over what the
    frames' z positions and times show; explicit sink options win over both). Start: the
    summary's ``datetime``. Annotations: every key of ``SummaryMetaV1`` (``devices``,
    ``system_info``, ``config_groups``, ``image_infos``, ``mda_sequence``, ...) as JSON text,
    and ``mda_sequence`` also when the summary lacks it: kept in every file.
    """
    infos = meta.get("image_infos") or ()
    pixel = None
    if infos and isinstance(infos[0], Mapping):
        pixel = _number(infos[0].get("pixel_size_um"))
    start = None
    text = meta.get("datetime")
    if isinstance(text, str):
        try:
            start = datetime.datetime.fromisoformat(text.strip())
        except ValueError:
            start = None
    fields = dict(meta)
    if fields.get("mda_sequence") is None and sequence is not None:
        fields["mda_sequence"] = sequence
    dumped = jsonable(fields)
    assert isinstance(dumped, dict)
    return Summary(
        stated=Calibration(
            pixel_size_um=pixel or None,
            z_step_um=_z_step(sequence),
            interval_s=_interval_s(sequence),
        ),
        start=start,
        annotations=summary_annotations(dumped),
    )


def _key(key: Any) -> str:
    return str(getattr(key, "value", key))


@dataclasses.dataclass(frozen=True)
class SequenceLayout:
    """What a sequence fixes about the mapping: channel labels, position naming, cameras.

    Parameters
    ----------
    channel_names
        The channels' labels in the sequence's order (``config``; ``config_i`` when a preset
        is used twice), None without channels.
    channel_by_index
        ``(config, label)`` per channel index.
    position_names
        Positions are named by their ``pos_name`` (every position has a distinct name).
    cameras
        Several cameras (a ``Multi Camera``): one file per camera.

    """

    channel_names: tuple[str, ...] | None = None
    channel_by_index: tuple[tuple[str, str], ...] = ()
    position_names: bool = True
    cameras: bool = False

    @classmethod
    def of(cls, sequence: Any, meta: Mapping[str, Any] | None = None) -> SequenceLayout:
        """The layout of ``sequence``; ``meta`` (``SummaryMetaV1``) tells the cameras."""
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
        infos = (meta or {}).get("image_infos") or ()
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
    event: Any, meta: Mapping[str, Any] | None = None, layout: SequenceLayout | None = None
) -> dict[str, Any]:
    """The sink axes of a useq ``MDAEvent``: ``{"position": ..., "channel": ..., "z": ...}``.

    See the module's docstring for the rules. ``layout`` is what was learnt from the sequence
    (None: names as the event gives them). An event without a ``t`` index gets no ``time``
    here: :class:`EventPlaces` gives it one.
    """
    layout = layout if layout is not None else SequenceLayout()
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


class EventPlaces:
    """The axes of each event of one run, in order: :func:`event_axes`, and a time for each.

    An event whose index has no ``t`` (a generator of ``MDAEvent(metadata=...)``, an
    event-driven acquisition) goes to the next time point its other coordinates have not used
    yet, so that every frame is kept: three index-less events are time points 0, 1 and 2;
    ``{"c": 0}``, ``{"c": 1}`` share time point 0; an index-less event after ``{"t": 4}`` is
    time point 5.

    Parameters
    ----------
    layout
        What the sequence fixes (:meth:`SequenceLayout.of`).

    """

    def __init__(self, layout: SequenceLayout | None = None) -> None:
        self.layout = layout if layout is not None else SequenceLayout()
        self._next: dict[Any, int] = {}  # other coordinates -> first time point not used

    def axes(self, event: Any, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The axes of the next frame (``meta``: its ``FrameMetaV1``, for the camera)."""
        axes = event_axes(event, meta, self.layout)
        try:
            others = tuple(sorted((k, v) for k, v in axes.items() if k != "time"))
            hash(others)
        except TypeError:  # values the mapper refuses anyway
            return axes
        time = axes.get("time")
        if time is None:
            time = axes["time"] = self._next.get(others, 0)
        if isinstance(time, int) and time >= self._next.get(others, 0):
            self._next[others] = time + 1
        return axes


class TiffMDASink(ClosesAtBlockEnd):
    """pymmcore-plus's ``SinkProtocol``: hyperstack TIFFs written on the acquisition thread.

    The runner calls :meth:`setup`, :meth:`append` (for every frame, before ``frameReady``),
    :meth:`skip` and :meth:`close` synchronously on its acquisition thread, as it does for its
    own writer (ome-writers): an error of the files (a full disk, a file that exists) raises
    from :meth:`append`, which halts the acquisition at once, and ``core.mda.run`` raises it
    after every file was finished (pymmcore-plus#561). With ``keep_up`` (the default) an
    append never waits for compression.

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

    Raises
    ------
    ConfigError, ProfileError
        For a bad option (at construction, before any MDA runs).

    Examples
    --------
    pymmcore-plus (0.18) has no public way to hand a runner a third-party sink:
    ``run(output=...)`` turns a path into its own ome-writers sink and anything else into a
    ``frameReady`` observer. :func:`attached` puts this sink where the runner keeps its own
    (``runner._sink``) for the runs of a ``with`` block:

    >>> with TiffMDASink("D:/data", "exp1") as sink, attached(core, sink):
    ...     core.mda.run(sequence)           # or core.run_mda(sequence).join()
    >>> sink.files

    Notes
    -----
    One sink writes one sequence: a second :meth:`setup` is an error. Each frame's metadata
    (``FrameMetaV1``, JSON) is stored with it (tag 51123); the summary (``SummaryMetaV1``,
    the ``MDASequence``) in every file (:func:`sequence_summary`). Skipped and missing frames
    leave blank planes (:attr:`blank_planes`, with a
    :class:`~mmtiffsink.errors.MissingFramesWarning` at close).

    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        name: str = "acq",
        options: SinkOptions | None = None,
        **sink_options_: Any,
    ) -> None:
        self.options = sink_options(options, sink_options_)
        self.directory = Path(directory)
        self.name = str(name)
        self.frames = 0
        self.skipped = 0
        self.summary: dict[str, Any] | None = None
        self._sink: TiffSink | None = None
        self._places = EventPlaces()
        self._started = False
        self._view: Following | None = None  # get_view() may come from another thread
        self._view_lock = threading.Lock()

    @property
    def files(self) -> list[Path]:
        """The files written so far, in order of their first frame."""
        return [] if self._sink is None else self._sink.files

    @property
    def sink(self) -> TiffSink | None:
        """The :class:`~mmtiffsink.sink.TiffSink` of the sequence (None before :meth:`setup`)."""
        return self._sink

    @property
    def blank_planes(self) -> int:
        """Planes the files hold a blank frame in (skipped or never acquired), once closed."""
        return 0 if self._sink is None else self._sink.blank_planes

    @property
    def blank_planes_by_file(self) -> dict[Path, int]:
        """:attr:`blank_planes` per file."""
        return {} if self._sink is None else self._sink.blank_planes_by_file

    def _make_sink(self) -> TiffSink:
        options = self.options
        names = self._places.layout.channel_names
        if options.channel_names is None and names:
            options = options.replace(channel_names=names)
        sink = TiffSink(self.directory, self.name, options)
        with self._view_lock:
            self._sink = sink
            if self._view is not None:
                sink.follow(self._view, 0)
        return sink

    def setup(self, sequence: Any, meta: Mapping[str, Any] | None) -> None:
        """Begin the sequence: channel order, position names, its summary in every file."""
        if self._started:
            msg = "a TiffMDASink writes one sequence; make a new one per MDA"
            raise MMTiffSinkError(msg)
        self._started = True
        meta = meta or {}
        self._places = EventPlaces(SequenceLayout.of(sequence, meta))
        sink = self._make_sink()
        summary = jsonable(meta)
        self.summary = summary if isinstance(summary, dict) else None
        sink.set_summary(sequence_summary(sequence, meta))

    def append(self, img: Any, event: Any, meta: Mapping[str, Any] | None) -> None:
        """Store one frame (raises what the files raise: the runner stops the MDA)."""
        sink = self._sink if self._sink is not None else self._make_sink()
        meta = meta or {}
        img = camera_image(img)
        sink.append(img, frame_record(event, meta, self._places.axes(event, meta)))
        self.frames += 1

    def skip(self, *, frames: int = 1) -> None:
        """Frames that will never come: their planes stay blank (filled at close)."""
        self.skipped += max(int(frames), 0)

    def get_view(self) -> Following:
        """A live view of the first file (the first position's) as a (T, Z, C, Y, X) array.

        pymmcore-plus's ``SinkView`` (``dtype``, ``shape``, ``ndim``, ``__getitem__``; what
        ``runner.get_view()`` returns and pymmcore-gui shows in ndv) with ome-writers'
        ``coords_changed`` signal (connect a callback without arguments; it is called in the
        writer's thread for each frame in the file). Available at once: empty until the first
        frame opens the file, then following it as frames land (the shape grows), compressed
        files included; readable after the run. Another file or position:
        ``self.sink.view(...)``. :meth:`TiffHandler.get_view` is this view too.
        """
        with self._view_lock:
            if self._view is None:
                self._view = Following()
                if self._sink is not None:
                    self._sink.follow(self._view, 0)
            return self._view

    def close(self) -> None:
        """Finish every file (idempotent); raises the first error of finishing them."""
        if self._sink is not None:
            self._sink.close()



@contextlib.contextmanager
def attached(core: Any, sink: Any) -> Iterator[Any]:
    """Make the MDA runs of a ``with`` block write through ``sink`` (a ``SinkProtocol``).

    pymmcore-plus (checked with 0.18.1) keeps its data sink in ``runner._sink``, set by
    ``run()`` from ``run(output=...)`` through ``runner._coerce_outputs``: there is no public
    hook yet. Inside the block, that step also returns ``sink``, so ``core.mda.run(seq)``
    and ``core.run_mda(seq)`` call its ``setup``/``append``/``skip``/``close`` on the
    acquisition thread; ``output=`` still takes ``frameReady`` observers (a path output,
    pymmcore-plus's own sink, is refused: a runner has one sink).

    Parameters
    ----------
    core
        The ``CMMCorePlus`` or its ``mda`` runner.
    sink
        E.g. a :class:`TiffMDASink`.

    Yields
    ------
    runner
        The ``MDARunner``.

    Raises
    ------
    MMTiffSinkError
        This pymmcore-plus keeps its sink elsewhere (the version is named).

    """
    runner = getattr(core, "mda", core)
    original = getattr(runner, "_coerce_outputs", None)
    if not callable(original) or not hasattr(runner, "_sink"):
        version = getattr(sys.modules.get("pymmcore_plus"), "__version__", "?")
        msg = (
            f"cannot attach a sink to this pymmcore-plus ({version}): its runner has no "
            "_coerce_outputs/_sink (known: 0.18); use output=TiffHandler(...) instead"
        )
        raise MMTiffSinkError(msg)

    def coerce(output: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        handlers, own = original(output, *args, **kwargs)
        if own is not None:
            msg = "this runner writes through an mmtiffsink sink; give no path as output"
            raise ValueError(msg)
        return handlers, sink

    patched_before = "_coerce_outputs" in vars(runner)
    runner._coerce_outputs = coerce
    try:
        yield runner
    finally:
        if patched_before:
            runner._coerce_outputs = original
        else:
            del runner._coerce_outputs


class TiffHandler:
    """A pymmcore-plus MDA output handler (``frameReady`` observer) writing hyperstack TIFFs.

    ``core.mda.run(sequence, output=handler)`` calls it on pymmcore-plus's relay thread, which
    only logs what a handler raises: so a writer error is logged, cancels the MDA, drops the
    frames that follow, and is raised by :meth:`close` (and the ``with`` block) once every
    file is finished. It writes through a :class:`TiffMDASink`, which pymmcore-plus can also
    call directly on its acquisition thread (:func:`attached`): there, an error stops the MDA
    at the frame it happened.

    Parameters
    ----------
    directory, name, options, **sink_options
        As :class:`TiffMDASink`.
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
    :class:`~mmtiffsink.errors.MissingFramesWarning`); :attr:`blank_planes` counts them.

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
        self._writer = TiffMDASink(directory, name, options, **sink_options_)
        self.options = self._writer.options
        self.directory = self._writer.directory
        self.name = self._writer.name
        self.error: BaseException | None = None
        self.dropped = 0
        self.canceled = False
        self._runner = getattr(core, "mda", core)
        self._started = False
        self._finished = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    # ---------------------------------------------------------------- state
    @property
    def files(self) -> list[Path]:
        """The files written so far, in order of their first frame."""
        return self._writer.files

    @property
    def sink(self) -> TiffSink | None:
        """The sink of the sequence (None before ``sequenceStarted``)."""
        return self._writer.sink

    @property
    def frames(self) -> int:
        """Frames stored."""
        return self._writer.frames

    @property
    def summary(self) -> dict[str, Any] | None:
        """The sequence's ``SummaryMetaV1``, as JSON (None before ``sequenceStarted``)."""
        return self._writer.summary

    @property
    def blank_planes(self) -> int:
        """Planes the files hold a blank frame in, once finished (as ``IJTiffFile``'s)."""
        return self._writer.blank_planes

    @property
    def blank_planes_by_file(self) -> dict[Path, int]:
        """:attr:`blank_planes` per file."""
        return self._writer.blank_planes_by_file

    def get_view(self) -> Following:
        """A live view of the first file (the first position's): :meth:`TiffMDASink.get_view`."""
        return self._writer.get_view()

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
        try:
            self._writer.setup(sequence, meta)
        except Exception as exc:  # raising here would stop the relay thread
            self._fail(exc, "starting the files")

    def frameReady(self, image: Any, event: Any, meta: Mapping[str, Any] | None = None) -> None:
        """Store one frame; after an error, frames are dropped (see :attr:`error`)."""
        with self._lock:  # close() may run in another thread
            if self.error is not None or self._closed:
                self.dropped += 1
                return
            try:
                self._writer.append(image, event, meta)
            except WriterClosedError:
                self.dropped += 1
            except Exception as exc:  # raising here would stop the relay thread
                self.dropped += 1
                self._fail(exc, "writing a frame")

    def sequenceCanceled(self, sequence: Any) -> None:
        """The MDA was cancelled: the files are finished by ``sequenceFinished``."""
        self.canceled = True

    def sequenceFinished(self, sequence: Any) -> None:
        """Finish every file; an error is kept for :meth:`close` (never raised here)."""
        try:
            self._close_files()
        except Exception as exc:
            if self.error is None:
                self.error = exc
                _log.error("mmtiffsink: finishing the files failed: %s", exc)
        finally:
            self._finished.set()

    # ---------------------------------------------------------------- closing
    def _close_files(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._writer.close()

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
            self._close_files()
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
