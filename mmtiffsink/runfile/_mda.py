"""``mmtiffsink run`` with ``microscope.engine: pymmcore-plus``: a useq sequence on CMMCorePlus.

The run file's ``sequence`` (a useq ``MDASequence``) runs on a ``CMMCorePlus`` started from the
run file's microscope (:func:`mmtiffsink.runfile._microscope.pymmcore_plus_core`), set up as for
pycro-manager (presets, properties, exposure), into a
:class:`~mmtiffsink.pymmcore_plus.TiffMDASink` that the runner calls on its acquisition thread
(a writer error stops the MDA at once). The run itself (name, progress, Ctrl-C, result) is
:func:`~mmtiffsink.runfile._engine.run_with`'s.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mmtiffsink.pymmcore_plus import EventPlaces, SequenceLayout, TiffMDASink, attached
from mmtiffsink.sink import AxisMapper, FileKey, SinkOptions, file_name, split_position

from ._engine import PlannedFile, Worker, distinct_files
from ._microscope import SnakeCore, check_preset, pymmcore_plus_core, set_up
from ._models import RunConfig

__all__ = ["MDAEngine", "planned_sequence_files", "sequence_plan"]


def planned_sequence_files(
    config: RunConfig, name: str | None = None
) -> tuple[list[PlannedFile], int]:
    """The files the sequence will make (as the handler names them) and its number of events.

    Iterates the sequence's events once (about 10 µs each).
    """
    sequence = config.sequence
    out = config.output
    layout = SequenceLayout.of(sequence)
    places = EventPlaces(layout)
    mapper = AxisMapper(layout.channel_names)
    stem = out.name if name is None else name
    files: dict[FileKey, list[int]] = {}  # key -> [C, Z, T, frames]
    events = 0
    for event in sequence:
        events += 1
        axes = places.axes(event)
        placement = mapper.map(axes)
        key = placement.file_key
        if out.positions == "series":  # every position a series of one file
            key = split_position(key)[0]
        dims = files.setdefault(key, [1, 1, 1, 0])
        dims[0] = max(dims[0], placement.c + 1, len(mapper.channel_names))
        dims[1] = max(dims[1], placement.z + 1)
        dims[2] = max(dims[2], placement.t + 1)
        dims[3] += 1
    planned = [
        PlannedFile(out.directory / file_name(out.template, stem, key), key, (c, z, t), frames)
        for key, (c, z, t, frames) in files.items()
    ]
    return distinct_files(planned), events


def sequence_plan(config: RunConfig) -> list[dict[str, Any]]:
    """The sequence's events as JSON-able dicts (for ``--dry-run``)."""
    return [
        event.model_dump(mode="json", exclude_unset=True, exclude={"sequence"})
        for event in config.sequence
    ]


def _check_channels(core: SnakeCore, config: RunConfig) -> None:
    for i, channel in enumerate(config.sequence.channels):
        key = f"sequence.channels[{i}]"
        check_preset(core, key, str(channel.group), str(channel.config))


class _MDARun:
    """One MDA on a thread, into a TiffMDASink called on the acquisition thread (EngineRun)."""

    def __init__(
        self, core: Any, config: RunConfig, name: str, options: SinkOptions, on_frame: Any
    ) -> None:
        self._core = core
        self._config = config
        self._on_frame = on_frame
        self._sink = TiffMDASink(config.output.directory, name, options)
        self._failure: BaseException | None = None
        self._worker: Worker | None = None

    @property
    def files(self) -> list[Path]:
        return self._sink.files

    def _count(self, *_: Any) -> None:
        self._on_frame()

    def _target(self) -> None:
        runner = self._core.mda
        try:
            with attached(runner, self._sink):
                runner.run(self._config.sequence)
        except BaseException as exc:  # reported by the main thread
            self._failure = exc

    def begin(self) -> None:
        self._core.mda.events.frameReady.connect(self._count)
        self._worker = Worker(self._target, "mmtiffsink-mda")
        self._worker.start()

    def wait(self, timeout: float) -> bool:
        return self._worker is None or self._worker.wait(timeout)

    def abort(self) -> None:
        # pymmcore-plus logs "MDA Canceled" as a warning on stderr: the CLI reports Ctrl-C
        logging.getLogger("pymmcore-plus").setLevel(logging.ERROR)
        self._core.mda.cancel()

    def close(self) -> BaseException | None:
        worker = self._worker
        if worker is not None and worker.ended:
            self._core.mda.events.frameReady.disconnect(self._count)
        failure = self._failure
        try:
            self._sink.close()  # the runner closed it already: idempotent
        except Exception as exc:
            failure = failure or exc
        return failure


class MDAEngine:
    """The pymmcore-plus engine: the run file's useq ``sequence`` on a ``CMMCorePlus``."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self._planned: dict[str | None, tuple[list[PlannedFile], int]] = {}

    def _plan(self, name: str | None) -> tuple[list[PlannedFile], int]:
        if name not in self._planned:
            self._planned[name] = planned_sequence_files(self.config, name)
        return self._planned[name]

    def planned_files(self, name: str | None = None) -> list[PlannedFile]:
        return self._plan(name)[0]

    def expected_frames(self) -> int:
        return self._plan(None)[1]

    def channel_names(self) -> tuple[str, ...] | None:
        return SequenceLayout.of(self.config.sequence).channel_names

    @contextlib.contextmanager
    def _microscope(self) -> Iterator[Any]:
        with pymmcore_plus_core(self.config.microscope) as core:
            snake = SnakeCore(core)
            set_up(snake, self.config)
            _check_channels(snake, self.config)
            yield core

    def microscope(self) -> contextlib.AbstractContextManager[Any]:
        return self._microscope()

    def acquisition(
        self, core: Any, name: str, options: SinkOptions, on_frame: Any
    ) -> _MDARun:
        return _MDARun(core, self.config, name, options, on_frame)
