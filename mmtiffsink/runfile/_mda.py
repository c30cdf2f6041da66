"""``mmtiffsink run`` with ``microscope.engine: pymmcore-plus``: a useq sequence on CMMCorePlus.

The run file's ``sequence`` (a useq ``MDASequence``) runs on a ``CMMCorePlus`` started from the
run file's microscope (:func:`mmtiffsink.runfile._microscope.pymmcore_plus_core`), set up as for
pycro-manager (presets, properties, exposure), into a
:class:`~mmtiffsink.pymmcore_plus.TiffHandler`. Existing output files are found before the
microscope starts (``output.if_exists``); Ctrl-C cancels the MDA, the files are finished and
``KeyboardInterrupt`` re-raised.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from mmtiffsink.pymmcore_plus import TiffHandler, _Layout, event_axes
from mmtiffsink.sink import AxisMapper, FileKey, file_name, split_position

from ._microscope import SnakeCore, check_preset, pymmcore_plus_core, set_up
from ._models import RunConfig
from ._run import PlannedFile, RunResult, distinct_files, output_name

__all__ = ["planned_sequence_files", "run_sequence", "sequence_plan"]


def planned_sequence_files(
    config: RunConfig, name: str | None = None
) -> tuple[list[PlannedFile], int]:
    """The files the sequence will make (as the handler names them) and its number of events.

    Iterates the sequence's events once (about 10 µs each).
    """
    sequence = config.sequence
    out = config.output
    layout = _Layout.of(sequence, {})
    mapper = AxisMapper(layout.channel_names)
    stem = out.name if name is None else name
    files: dict[FileKey, list[int]] = {}  # key -> [C, Z, T, frames]
    events = 0
    for event in sequence:
        events += 1
        axes = event_axes(event, None, layout)
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


def _sequence_files(config: RunConfig, name: str | None) -> list[PlannedFile]:
    return planned_sequence_files(config, name)[0]


def _check_channels(core: SnakeCore, config: RunConfig) -> None:
    for i, channel in enumerate(config.sequence.channels):
        key = f"sequence.channels[{i}]"
        check_preset(core, key, str(channel.group), str(channel.config))


def run_sequence(config: RunConfig, *, progress: bool = True) -> RunResult:
    """Run the file's ``sequence`` with pymmcore-plus; see :func:`mmtiffsink.runfile.run`."""
    from tqdm import tqdm

    started = time.monotonic()
    name = output_name(config, _sequence_files)
    expected = planned_sequence_files(config, name)[1]
    out = config.output
    options = out.options()
    if out.if_exists == "rename":
        options = options.replace(if_exists="error")  # the free name was chosen above
    bar = tqdm(total=expected, unit="frame", desc=name, disable=not progress, leave=True)
    handler: TiffHandler | None = None
    failure: BaseException | None = None
    try:
        with pymmcore_plus_core(config.microscope) as core:
            snake = SnakeCore(core)
            set_up(snake, config)
            _check_channels(snake, config)
            handler = TiffHandler(out.directory, name, options, core=core)
            failure = _acquire(core, config, handler, bar)
    finally:
        bar.close()
        if handler is not None:
            try:
                handler.close(timeout=10)
            except Exception as exc:
                failure = handler.error or failure or exc
    assert handler is not None
    error: str | None = None
    if failure is not None:
        error = f"the acquisition failed: {failure}"
    elif handler.frames != expected:
        error = f"the acquisition ended after {handler.frames} of {expected} frames"
    return RunResult(
        files=handler.files,
        frames=handler.frames,
        expected_frames=expected,
        elapsed_s=time.monotonic() - started,
        error=error,
    )


def _acquire(core: Any, config: RunConfig, handler: TiffHandler, bar: Any) -> BaseException | None:
    """Run the MDA on a thread; return its error. Ctrl-C cancels it, waits, re-raises."""
    failure: list[BaseException] = []

    def count(*_: Any) -> None:
        bar.update(1)

    def target() -> None:
        try:
            core.mda.run(config.sequence, output=handler)
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)

    core.mda.events.frameReady.connect(count)
    thread = threading.Thread(target=target, name="mmtiffsink-mda")
    try:
        thread.start()
        try:
            while thread.is_alive():
                thread.join(0.1)
        except KeyboardInterrupt:
            core.mda.cancel()
            while thread.is_alive():  # a second Ctrl-C stops waiting
                thread.join(0.1)
            raise
    finally:
        core.mda.events.frameReady.disconnect(count)
    return failure[0] if failure else handler.error
