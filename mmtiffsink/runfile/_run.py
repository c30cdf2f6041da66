"""Run the acquisition a run file describes (``mmtiffsink run CONFIG.yaml``).

:func:`run` plans the events (an :class:`EventPlan`: pycro-manager's
``multi_d_acquisition_events``, computed on demand), checks the output files against
``output.if_exists``, starts the microscope and sets it up (:mod:`mmtiffsink.runfile._microscope`),
acquires through pycro-manager with a :class:`~mmtiffsink.sink.TiffSink` as the
``image_process_fn``, and returns a :class:`RunResult` (the CLI reports it).

The run owns the microscope it starts: it is always stopped, and the sink always closed (every
frame written stays in a valid file), also after an error or Ctrl-C. Problems found before the
first frame (a file that exists, a preset the microscope lacks, a microscope that does not start)
raise an :class:`~mmtiffsink.errors.MMTiffSinkError`; a failure during the acquisition ends the
run and is reported in :attr:`RunResult.error` with the files written so far; Ctrl-C aborts the
acquisition and re-raises ``KeyboardInterrupt``.
"""

from __future__ import annotations

import itertools
import math
import operator
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import numpy as np

from mmtiffsink.errors import ConfigError, FileExistsError_
from mmtiffsink.sink import AxisMapper, FileKey, TiffSink, file_name

from ._microscope import microscope, set_up
from ._models import AcquisitionConfig, RunConfig

__all__ = [
    "EventPlan",
    "PlannedFile",
    "RunResult",
    "distinct_files",
    "plan_events",
    "planned_files",
    "run",
]


# -- planning ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Axis:
    """One loop of the plan: its order letter and one item per step."""

    letter: str
    items: tuple[Any, ...]


class EventPlan(Sequence[dict[str, Any]]):
    """The acquisition events of a run, computed on demand: a sequence that holds no events.

    The events are those of pycro-manager's ``multi_d_acquisition_events`` for the run's
    ``acquisition`` (same keys, key order and values, as plain Python values), except that a z
    stack has the run file's :attr:`~mmtiffsink.runfile.AcquisitionConfig.num_z_slices` slices
    (``numpy.arange`` there can add a slice beyond ``z_end_um``). ``len(plan)`` is computed,
    ``plan[i]`` is built from ``i``, and iterating builds one event at a time, so a plan of
    10**7 events costs no memory.

    Parameters
    ----------
    acquisition
        The validated acquisition section (every axis it has is in its ``order``).

    """

    def __init__(self, acquisition: AcquisitionConfig) -> None:
        acq = acquisition
        self._interval = acq.time_interval_s
        self._group = acq.channel_group
        self._z: tuple[float, ...] = ()
        if acq.z_start_um is not None and acq.z_end_um is not None and acq.z_step_um:
            n = acq.num_z_slices
            stop = acq.z_end_um + acq.z_step_um
            z = np.arange(acq.z_start_um, stop, acq.z_step_um)[:n].tolist()  # pycro-manager's
            self._z = tuple(z + [acq.z_start_um + i * acq.z_step_um for i in range(len(z), n)])
        exposures: list[float | None] = [None] * len(acq.channels or ())
        if acq.channel_exposures_ms is not None:
            exposures = list(acq.channel_exposures_ms)
        positions = acq.positions or ()
        labels = acq.position_labels
        items = {
            "t": tuple(range(acq.num_time_points or 0)),
            "p": tuple(zip(labels, positions, strict=True)),
            "c": tuple(zip(acq.channels or (), exposures, strict=True)),
            "z": tuple(range(len(self._z))),
        }
        self._axes = tuple(_Axis(letter, items[letter]) for letter in acq.order if items[letter])
        self._len = math.prod(len(axis.items) for axis in self._axes)

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [self[i] for i in range(self._len)[index]]
        i = operator.index(index)
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            msg = f"event {index} of a plan of {self._len}"
            raise IndexError(msg)
        picked: list[Any] = []
        for axis in reversed(self._axes):  # the last letter turns fastest
            i, step = divmod(i, len(axis.items))
            picked.append(axis.items[step])
        return self._event(reversed(picked))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for picked in itertools.product(*(axis.items for axis in self._axes)):
            yield self._event(picked)

    def _event(self, picked: Iterable[Any]) -> dict[str, Any]:
        axes: dict[str, Any] = {}
        event: dict[str, Any] = {"axes": axes}
        z_base: float | None = None  # the position's z_um, when the stack is relative to it
        for axis, item in zip(self._axes, picked, strict=True):
            if axis.letter == "t":
                axes["time"] = item
                if self._interval != 0:
                    event["min_start_time"] = item * self._interval
            elif axis.letter == "p":
                label, position = item
                axes["position"] = label
                event["x"], event["y"] = position.x_um, position.y_um
                z_base = position.z_um
            elif axis.letter == "c":
                channel, exposure = item
                event["config_group"] = [self._group, channel]
                axes["channel"] = channel
                if exposure is not None:
                    event["exposure"] = exposure
            else:
                axes["z"] = item
                event["z"] = self._z[item] if z_base is None else z_base + self._z[item]
        return event


def plan_events(config: RunConfig) -> EventPlan:
    """The acquisition events of the run, as pycro-manager's ``multi_d_acquisition_events``.

    Parameters
    ----------
    config
        The run configuration.

    Returns
    -------
    EventPlan
        One event per frame, in acquisition order, computed on demand, e.g. ``{'axes':
        {'time': 0, 'channel': 'DAPI', 'z': 0}, 'config_group': ['Channel', 'DAPI'],
        'exposure': 5.0, 'z': -2.0}``. With ``microscope.engine: pymmcore-plus``, the
        sequence's useq events as dicts.

    """
    if config.microscope.engine == "pymmcore-plus":
        from ._mda import sequence_plan

        return sequence_plan(config)  # type: ignore[return-value]
    return EventPlan(config.acquisition)


@dataclass(frozen=True)
class PlannedFile:
    """One output file of a run and the hyperstack it will hold.

    Parameters
    ----------
    path
        The file.
    key
        Its file-splitting axes (e.g. ``(('position', 'A1'),)``).
    shape
        ``(C, Z, T)``.
    frames
        Frames planned for it.

    """

    path: Path
    key: FileKey
    shape: tuple[int, int, int]
    frames: int


def planned_files(config: RunConfig, name: str | None = None) -> list[PlannedFile]:
    """The files the run will make, with the names the sink will give them.

    Parameters
    ----------
    config
        The run configuration (output directory and template, channels, positions).
    name
        The dataset name (default: ``output.name``).

    Returns
    -------
    list of PlannedFile
        One per position (one file without positions, or with ``positions: series``), in
        order of their first event.

    """
    if config.microscope.engine == "pymmcore-plus":
        from ._mda import planned_sequence_files

        return planned_sequence_files(config, name)[0]
    acq, out = config.acquisition, config.output
    shape = (max(len(acq.channels or ()), 1), acq.num_z_slices, acq.num_time_points or 1)
    frames = math.prod(shape)
    mapper = AxisMapper(acq.channels)
    keys = [mapper.file_key({"position": label}) for label in acq.position_labels] or [()]
    if out.positions == "series":  # every position a series of one file
        frames *= len(keys)
        keys = [()]
    stem = out.name if name is None else name
    return distinct_files(
        [
            PlannedFile(out.directory / file_name(out.template, stem, key), key, shape, frames)
            for key in keys
        ]
    )


def distinct_files(planned: list[PlannedFile]) -> list[PlannedFile]:
    """``planned``, checked: no two of its files get one name (positions ``A/1`` and ``A_1``).

    Raises
    ------
    ConfigError
        Two files would get the same name: before anything is acquired, also by ``--dry-run``.

    """
    seen: dict[Path, PlannedFile] = {}
    for file in planned:
        other = seen.setdefault(file.path, file)
        if other is not file:
            msg = (
                f"the files of {dict(other.key)!r} and {dict(file.key)!r} would both be "
                f"{file.path.name!r} (a file name keeps letters, digits and . _ + -, the rest "
                "becomes _): give the positions labels that differ there"
            )
            raise ConfigError(msg)
    return planned


def output_name(
    config: RunConfig,
    planned: Callable[[RunConfig, str | None], Sequence[PlannedFile]] = planned_files,
) -> str:
    """The dataset name to use, after ``output.if_exists``.

    Parameters
    ----------
    config
        The run configuration.
    planned
        The files a run of ``config`` makes under a dataset name (``None``: the file's own),
        :func:`planned_files` for pycro-manager runs.

    Raises
    ------
    FileExistsError_
        ``if_exists: error`` and an output file exists.
    ConfigError
        Two planned files get the same name (see :func:`distinct_files`).

    """
    out = config.output
    planned(config, None)  # the plan's own checks (two positions, one file), before acquiring
    if out.if_exists == "overwrite":
        return out.name
    if out.if_exists == "rename":
        for n in range(100_000):
            name = out.name if n == 0 else f"{out.name}_{n}"
            if not any(f.path.exists() for f in planned(config, name)):
                return name
        msg = f"no free name for {out.name!r} in {out.directory}"  # pragma: no cover
        raise FileExistsError_(msg)  # pragma: no cover
    existing = [f.path for f in planned(config, None) if f.path.exists()]
    if existing:
        listing = ", ".join(str(path) for path in existing)
        msg = (
            f"output file exists: {listing}; nothing was acquired and the file was left as it "
            "is. Set output.if_exists to overwrite or rename, or change output.name"
        )
        raise FileExistsError_(msg)
    return out.name


@dataclass(frozen=True)
class RunResult:
    """What a run did.

    Parameters
    ----------
    files
        The files written, in order of their first frame.
    frames
        Frames handed to the writer (a writer failure can keep the last few out of the file).
    expected_frames
        Frames planned.
    elapsed_s
        Wall time of the run, microscope start and stop included.
    error
        Why the run failed or is incomplete; None when it succeeded.

    """

    files: list[Path]
    frames: int
    expected_frames: int
    elapsed_s: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when every planned frame was written and nothing failed."""
        return self.error is None and self.frames == self.expected_frames


# -- running ----------------------------------------------------------------------------------


def _acquire(config: RunConfig, events: EventPlan, name: str, hook: Any) -> BaseException | None:
    """Run the acquisition; return the exception that ended it, or None.

    Ctrl-C aborts the acquisition, waits for its threads and re-raises ``KeyboardInterrupt``.
    """
    from pycromanager import Acquisition

    kwargs: dict[str, Any] = {"show_display": False}
    if config.microscope.kind == "java":
        kwargs["port"] = config.microscope.java_port
    try:
        acq = Acquisition(directory=None, name=name, image_process_fn=hook, **kwargs)
    except Exception as exc:
        return exc
    failure: list[BaseException] = []

    def wait() -> None:
        try:
            acq.await_completion()
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)

    waiter = threading.Thread(target=wait, name="mmtiffsink-run-wait", daemon=True)
    try:
        try:
            acq.acquire(list(events))  # pycro-manager takes a list or a generator
        except Exception as exc:  # pycro-manager aborted the acquisition; let it end
            failure.append(exc)
        acq.mark_finished()
        waiter.start()
        while waiter.is_alive():
            waiter.join(0.1)
    except KeyboardInterrupt:
        acq.abort()
        acq.mark_finished()  # abort() empties the event queue, the end marker included
        if waiter.ident is None:
            waiter.start()
        while waiter.is_alive():  # a second Ctrl-C stops waiting
            waiter.join(0.1)
        raise
    return failure[0] if failure else None


def run(config: RunConfig, *, progress: bool = True) -> RunResult:
    """Run the configured acquisition into hyperstack TIFFs.

    Parameters
    ----------
    config
        The run configuration (:func:`mmtiffsink.runfile.load_config`).
    progress
        Show a progress bar over the expected frames (on stderr).

    Returns
    -------
    RunResult
        Files, frames, time, and the error that ended the acquisition if any.

    Raises
    ------
    FileExistsError_
        An output file exists and ``output.if_exists`` is ``error``; nothing was acquired.
    MicroscopeError
        The microscope could not be started or set up; nothing was acquired.
    MMTiffSinkError
        pycro-manager is missing.
    KeyboardInterrupt
        Ctrl-C: the acquisition was aborted, the files closed, the microscope stopped.

    """
    from tqdm import tqdm

    if config.microscope.engine == "pymmcore-plus":
        from ._mda import run_sequence

        return run_sequence(config, progress=progress)
    started = time.monotonic()
    events = plan_events(config)
    name = output_name(config)
    out = config.output
    options = out.options()
    if options.channel_names is None and config.acquisition.channels:
        options = options.replace(channel_names=tuple(config.acquisition.channels))
    sink = TiffSink(out.directory, name, options)
    frames = 0
    hook_errors: list[BaseException] = []
    bar = tqdm(total=len(events), unit="frame", desc=name, disable=not progress, leave=True)

    def hook(image: Any, metadata: dict[str, Any]) -> None:
        nonlocal frames
        try:
            sink.image_process_fn(image, metadata)
        except Exception as exc:  # pycro-manager wraps it; keep the original for the report
            hook_errors.append(exc)
            raise
        frames += 1
        bar.update(1)

    failure: BaseException | None = None
    try:
        with microscope(config.microscope) as core:
            set_up(core, config)
            failure = _acquire(config, events, name, hook)
    finally:
        bar.close()
        try:
            sink.close()
        except Exception as exc:
            failure = failure or exc
    error: str | None = None
    if failure is not None:
        cause = hook_errors[0] if hook_errors else failure
        error = f"the acquisition failed: {cause}"
    elif frames != len(events):
        error = f"the acquisition ended after {frames} of {len(events)} frames"
    return RunResult(
        files=sink.files,
        frames=frames,
        expected_frames=len(events),
        elapsed_s=time.monotonic() - started,
        error=error,
    )
