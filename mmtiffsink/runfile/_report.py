"""What ``mmtiffsink run`` prints: the ``--dry-run`` plan and the end-of-run summary.

:func:`format_plan` describes a run file without acquiring (microscope, acquisition, the files
expected and the first and last events); :func:`format_result` summarises a
:class:`~mmtiffsink.runfile.RunResult` (files with dimensions, size, compression and
calibration, read back from the files, then any error).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmtiffsink.errors import MMTiffSinkError
from mmtiffsink.inspect import FileInfo, file_info, summary_table

from ._models import AcquisitionConfig, MicroscopeConfig, RunConfig
from ._run import RunResult, plan_events, planned_files

__all__ = ["PLAN_EVENTS_SHOWN", "format_plan", "format_result"]

#: Events shown at each end of the ``--dry-run`` listing.
PLAN_EVENTS_SHOWN = 3


def _number(value: float) -> str:
    return f"{value:g}"


def _describe_microscope(mic: MicroscopeConfig) -> list[str]:
    if mic.kind == "demo":
        head = (
            "demo: Micro-Manager's demo configuration (mm-test-adapters), started headless "
            "in this process (Python backend)"
        )
    elif mic.kind == "micromanager":
        head = (
            f"micromanager: {mic.path} with {mic.config_path}, started headless in this "
            "process (Python backend)"
        )
    else:
        head = f"java: the running Micro-Manager on port {mic.java_port} (Java backend)"
    lines = [f"Microscope: {head}"]
    if mic.presets:
        presets = ", ".join(f"{group}={preset}" for group, preset in mic.presets.items())
        lines.append(f"  presets: {presets}")
    if mic.properties:
        props = ", ".join(f"{p.device}.{p.property}={p.value}" for p in mic.properties)
        lines.append(f"  properties: {props}")
    if mic.exposure_ms is not None:
        lines.append(f"  exposure: {_number(mic.exposure_ms)} ms")
    return lines


def _describe_acquisition(acq: AcquisitionConfig) -> str:
    parts: list[str] = []
    if acq.num_time_points is not None:
        every = f" every {_number(acq.time_interval_s)} s" if acq.time_interval_s else " (no wait)"
        parts.append(f"{acq.num_time_points} time points{every}")
    if acq.z_step_um is not None and acq.z_start_um is not None and acq.z_end_um is not None:
        parts.append(
            f"{acq.num_z_slices} z slices from {_number(acq.z_start_um)} to "
            f"{_number(acq.z_end_um)} um in steps of {_number(acq.z_step_um)} um"
        )
    if acq.channels:
        exposures: list[float | None] = (
            list(acq.channel_exposures_ms)
            if acq.channel_exposures_ms
            else [None] * len(acq.channels)
        )
        names = ", ".join(
            name + (f" {_number(ms)} ms" if ms is not None else "")
            for name, ms in zip(acq.channels, exposures, strict=True)
        )
        parts.append(f"{len(acq.channels)} channels ({acq.channel_group}: {names})")
    if acq.positions:
        labels = ", ".join(str(label) for label in acq.position_labels)
        parts.append(f"{len(acq.positions)} positions ({labels})")
    return f"Acquisition: {', '.join(parts) or 'one frame'}; order {acq.order}"


def _describe_sequence(sequence: Any) -> str:
    """The useq ``MDASequence`` of a pymmcore-plus run, as its sizes and axis order."""
    sizes = dict(getattr(sequence, "sizes", {}) or {})
    names = {"t": "time points", "p": "positions", "c": "channels", "z": "z slices", "g": "grid"}
    parts = [f"{n} {names.get(k, k)}" for k, n in sizes.items() if n]
    order = "".join(getattr(sequence, "axis_order", ()) or ())
    return f"Sequence (useq): {', '.join(parts) or 'one frame'}; order {order}"


def _calibration_text(config: RunConfig) -> str:
    out = config.output
    items = [
        ("pixel size", out.pixel_size_um, "um"),
        ("z step", out.z_step_um, "um"),
        ("interval", out.interval_s, "s"),
    ]
    return ", ".join(
        f"{what} {_number(value)} {unit}" if value is not None else f"{what} from metadata"
        for what, value, unit in items
    )


def format_plan(config: RunConfig) -> str:
    """The ``--dry-run`` report: microscope, acquisition, files expected, first/last events.

    Parameters
    ----------
    config
        The run configuration.

    Returns
    -------
    str
        A readable multi-line text. The events are counted, and only those shown are built.

    """
    events = plan_events(config)
    n = len(events)
    out = config.output
    lines = _describe_microscope(config.microscope)
    if config.sequence is not None:
        lines.append(_describe_sequence(config.sequence))
    else:
        lines.append(_describe_acquisition(config.acquisition))
    lines.append(f"Events: {n} ({n} frames expected)")
    lines.append(
        f"Output: profile {out.profile}, compression {out.codec}, if a file exists: {out.if_exists}"
    )
    lines.append(f"  calibration: {_calibration_text(config)}")
    for planned in planned_files(config):
        c, z, t = planned.shape
        note = ""
        if planned.path.exists():
            note = {
                "error": "  EXISTS: the run would stop before acquiring (if_exists: error)",
                "overwrite": "  exists: would be replaced (if_exists: overwrite)",
                "rename": "  exists: a free name would be chosen (if_exists: rename)",
            }[out.if_exists]
        lines.append(f"  {planned.path}  C={c} Z={z} T={t}, {planned.frames} frames{note}")
    width = len(str(n))

    def listing(indices: range) -> list[str]:
        return [f"  {i + 1:>{width}} {json.dumps(events[i])}" for i in indices]

    if n > 2 * PLAN_EVENTS_SHOWN:
        lines.append("First events:")
        lines += listing(range(PLAN_EVENTS_SHOWN))
        lines.append("Last events:")
        lines += listing(range(n - PLAN_EVENTS_SHOWN, n))
    else:
        lines.append("Events:")
        lines += listing(range(n))
    lines.append("Dry run: nothing was acquired.")
    return "\n".join(lines)


# -- the result of a run ------------------------------------------------------------------------


def _calibration_line(info: FileInfo) -> str:
    """``name: pixel 0.5 um, z step 1 um, interval 0.5 s; channels DAPI, FITC``."""
    parts = [
        f"{what} {value:.6g} {unit}"
        for what, value, unit in (
            ("pixel", info.pixel_size_um, "um"),
            ("z step", info.z_step_um, "um"),
            ("interval", info.interval_s, "s"),
        )
        if value is not None
    ]
    text = ", ".join(parts) if parts else "no calibration"
    if info.channel_names:
        text += f"; channels {', '.join(info.channel_names)}"
    return f"  {info.path.name}: {text}"


def _summary(files: Sequence[Path]) -> str:
    """:func:`mmtiffsink.inspect.summary_table` of the files, then their calibration."""
    infos: list[FileInfo] = []
    unreadable: list[str] = []
    for path in files:
        try:
            infos.append(file_info(path))
        except (MMTiffSinkError, OSError) as exc:  # must not hide the run's own result
            unreadable.append(f"  {path}: cannot be read back: {exc}")
    lines = [summary_table(infos)] if infos else []
    lines += [_calibration_line(info) for info in infos]
    return "\n".join(lines + unreadable)


def format_result(result: RunResult) -> str:
    """The end-of-run summary: files, frames, sizes, calibration, time, and any error.

    Parameters
    ----------
    result
        What :func:`mmtiffsink.runfile.run` returned.

    Returns
    -------
    str
        A readable multi-line text; its first line starts with ``Done`` or ``FAILED``.

    """
    count = f"{len(result.files)} file" + ("" if len(result.files) == 1 else "s")
    head = (
        f"{'Done' if result.ok else 'FAILED'}: {result.frames} of {result.expected_frames} "
        f"frames in {count}, {result.elapsed_s:.1f} s"
    )
    lines = [head]
    if result.files:
        lines.append(_summary(result.files))
    if result.error is not None:
        lines.append(f"error: {result.error}")
        if result.files:
            lines.append("Every frame written before the error is in the files above.")
    return "\n".join(lines)
