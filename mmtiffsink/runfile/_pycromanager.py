"""The pycro-manager engine of ``mmtiffsink run``: its event plan and its acquisition.

:class:`EventPlan` is pycro-manager's ``multi_d_acquisition_events`` for the run file's
``acquisition``, computed on demand; :class:`PycroManagerEngine` starts the microscope
(:func:`~mmtiffsink.runfile._microscope.microscope`) and acquires through pycro-manager with a
:class:`~mmtiffsink.sink.TiffSink` as the ``image_process_fn``. The run itself (name, progress,
Ctrl-C, result) is :func:`~mmtiffsink.runfile._engine.run_with`'s.
"""

from __future__ import annotations

import itertools
import math
import operator
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import numpy as np

from mmtiffsink.sink import AxisMapper, SinkOptions, TiffSink, file_name

from ._engine import PlannedFile, Worker, distinct_files
from ._microscope import microscope, set_up
from ._models import AcquisitionConfig, RunConfig

__all__ = ["EventPlan", "PycroManagerEngine"]


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


class _PycroRun:
    """One pycro-manager acquisition into a :class:`~mmtiffsink.sink.TiffSink` (an EngineRun)."""

    def __init__(
        self,
        config: RunConfig,
        events: EventPlan,
        name: str,
        options: SinkOptions,
        on_frame: Callable[[], None],
    ) -> None:
        self._config = config
        self._events = events
        self._name = name
        self._on_frame = on_frame
        self._sink = TiffSink(config.output.directory, name, options)
        self._acq: Any = None
        self._aborted = False
        self._lock = threading.Lock()
        self._failure: BaseException | None = None
        self._hook_error: BaseException | None = None
        self._worker: Worker | None = None

    @property
    def files(self) -> list[Path]:
        return self._sink.files

    def _hook(self, image: Any, metadata: dict[str, Any]) -> None:
        try:
            self._sink.image_process_fn(image, metadata)
        except Exception as exc:  # pycro-manager wraps it; keep the original for the report
            if self._hook_error is None:
                self._hook_error = exc
            raise
        self._on_frame()

    def begin(self) -> None:
        # everything pycro-manager does runs on this thread: a Ctrl-C on the main thread can
        # never strike inside its constructor or its acquire(), only abort() is called there
        self._worker = Worker(self._acquire, "mmtiffsink-pycromanager")
        self._worker.start()

    def _acquire(self) -> None:
        try:
            from pycromanager import Acquisition

            kwargs: dict[str, Any] = {"show_display": False}
            if self._config.microscope.kind == "java":
                kwargs["port"] = self._config.microscope.java_port
            acq = Acquisition(
                directory=None, name=self._name, image_process_fn=self._hook, **kwargs
            )
        except Exception as exc:
            self._failure = exc
            return
        with self._lock:
            self._acq = acq
            aborted = self._aborted
        try:
            if not aborted:
                try:
                    acq.acquire(list(self._events))  # pycro-manager takes a list or a generator
                except Exception as exc:  # pycro-manager aborted the acquisition; let it end
                    self._failure = exc
                if self._aborted:  # abort() came while the events were handed over
                    acq.abort()
            acq.mark_finished()
            acq.await_completion()
        except BaseException as exc:  # reported by the main thread
            self._failure = self._failure or exc
        with self._lock:  # ended: nothing left for abort() to stop
            self._acq = None

    def wait(self, timeout: float) -> bool:
        return self._worker is None or self._worker.wait(timeout)

    def abort(self) -> None:
        with self._lock:
            self._aborted = True
            acq = self._acq
        if acq is None:
            return
        try:
            acq.abort()
            acq.mark_finished()  # abort() empties the event queue, the end marker included
        except AttributeError:
            # the acquisition ended meanwhile: pycro-manager's await_completion drops the
            # engine's acquisition (None), which abort() then calls; nothing left to stop
            pass

    def close(self) -> BaseException | None:
        failure = self._failure
        try:
            self._sink.close()
        except Exception as exc:
            failure = failure or exc
        if failure is not None and self._hook_error is not None:
            return self._hook_error
        return failure


class PycroManagerEngine:
    """The pycro-manager engine: the run file's ``acquisition`` through pycro-manager."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.events = EventPlan(config.acquisition)

    def planned_files(self, name: str | None = None) -> list[PlannedFile]:
        """The files the run will make, with the names the sink will give them."""
        config = self.config
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

    def expected_frames(self) -> int:
        return len(self.events)

    def channel_names(self) -> tuple[str, ...] | None:
        channels = self.config.acquisition.channels
        return tuple(channels) if channels else None

    @contextmanager
    def _microscope(self) -> Iterator[Any]:
        with microscope(self.config.microscope) as core:
            set_up(core, self.config)
            yield core

    def microscope(self) -> AbstractContextManager[Any]:
        return self._microscope()

    def acquisition(
        self, core: Any, name: str, options: SinkOptions, on_frame: Callable[[], None]
    ) -> _PycroRun:
        return _PycroRun(self.config, self.events, name, options, on_frame)
