"""Run the acquisition a run file describes (``mmtiffsink run CONFIG.yaml``).

:func:`run` picks the run file's engine (pycro-manager: :mod:`._pycromanager`, pymmcore-plus:
:mod:`._mda`) and runs it in the one run skeleton, :func:`~mmtiffsink.runfile._engine.run_with`:
it checks the output files against ``output.if_exists`` before the microscope starts, starts the
microscope and sets it up (:mod:`mmtiffsink.runfile._microscope`), acquires, and returns a
:class:`RunResult` (the CLI reports it).

The run owns the microscope it starts: it is always stopped, and the files always finished
(every frame written stays in a valid file), also after an error or Ctrl-C. Problems found
before the first frame (a file that exists, a preset the microscope lacks, a microscope that
does not start) raise an :class:`~mmtiffsink.errors.MMTiffSinkError`; a failure during the
acquisition ends the run and is reported in :attr:`RunResult.error` with the files written so
far; Ctrl-C aborts the acquisition and re-raises ``KeyboardInterrupt``.
"""

from __future__ import annotations

from typing import Any

from ._engine import Engine, PlannedFile, RunResult, run_with
from ._models import RunConfig
from ._pycromanager import EventPlan, PycroManagerEngine

__all__ = [
    "EventPlan",
    "PlannedFile",
    "RunResult",
    "engine_for",
    "plan_events",
    "planned_files",
    "run",
]


def engine_for(config: RunConfig) -> Engine:
    """The engine of the run file (``microscope.engine``)."""
    if config.microscope.engine == "pymmcore-plus":
        from ._mda import MDAEngine

        return MDAEngine(config)
    return PycroManagerEngine(config)


def plan_events(config: RunConfig) -> EventPlan | list[dict[str, Any]]:
    """The acquisition events of the run, as pycro-manager's ``multi_d_acquisition_events``.

    Parameters
    ----------
    config
        The run configuration.

    Returns
    -------
    EventPlan or list of dict
        One event per frame, in acquisition order, computed on demand, e.g. ``{'axes':
        {'time': 0, 'channel': 'DAPI', 'z': 0}, 'config_group': ['Channel', 'DAPI'],
        'exposure': 5.0, 'z': -2.0}``. With ``microscope.engine: pymmcore-plus``, the
        sequence's useq events as dicts.

    """
    if config.microscope.engine == "pymmcore-plus":
        from ._mda import sequence_plan

        return sequence_plan(config)
    return EventPlan(config.acquisition)


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
    return engine_for(config).planned_files(name)


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
        The microscope could not be started or set up (or its engine is not installed);
        nothing was acquired.
    KeyboardInterrupt
        Ctrl-C: the acquisition was aborted, the files closed, the microscope stopped.

    """
    return run_with(engine_for(config), config, progress=progress)
