"""Runs described by a YAML file (``mmtiffsink run``), on pycro-manager or pymmcore-plus.

Stages: :mod:`._yaml` (the bounded YAML loader), :mod:`._models` (the run-file models),
:mod:`._useq` (useq-schema sequences), :mod:`._microscope` (starting and setting up the
microscope), :mod:`._engine` (the one run skeleton and the engine protocol),
:mod:`._pycromanager` and :mod:`._mda` (the pycro-manager and pymmcore-plus engines),
:mod:`._run` (choosing the engine: ``run``, ``plan_events``, ``planned_files``),
:mod:`._report` (what the CLI prints).
"""

from ._models import AcquisitionConfig, MicroscopeConfig, RunConfig, load_config
from ._report import format_plan, format_result
from ._run import EventPlan, PlannedFile, RunResult, plan_events, planned_files, run

__all__ = [
    "AcquisitionConfig",
    "EventPlan",
    "MicroscopeConfig",
    "PlannedFile",
    "RunConfig",
    "RunResult",
    "format_plan",
    "format_result",
    "load_config",
    "plan_events",
    "planned_files",
    "run",
]
