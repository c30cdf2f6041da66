"""Run the acquisition a run file describes (``mmtiffsink run CONFIG.yaml``).

:func:`run` plans the events (pycro-manager's ``multi_d_acquisition_events``), checks the output
files against ``output.if_exists``, starts the microscope (or connects to a running one), applies
the presets, properties and exposure, acquires through pycro-manager with a
:class:`~mmtiffsink.sink.TiffSink` as the ``image_process_fn``, and reports a :class:`RunResult`.

The run owns the microscope it starts: it is always stopped, and the sink always closed (every
frame written stays in a valid file), also after an error or Ctrl-C. Problems found before the
first frame (a file that exists, a preset the microscope lacks, a microscope that does not start)
raise an :class:`~mmtiffsink.errors.MMTiffSinkError`; a failure during the acquisition ends the
run and is reported in :attr:`RunResult.error` with the files written so far; Ctrl-C aborts the
acquisition and re-raises ``KeyboardInterrupt``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmtiffsink.config import AcquisitionConfig, MicroscopeConfig, RunConfig
from mmtiffsink.errors import FileExistsError_, MicroscopeError, MMTiffSinkError
from mmtiffsink.info import FileInfo, file_info, summary_table
from mmtiffsink.mapping import AxisMapper, FileKey, file_name
from mmtiffsink.sink import DEFAULT, TiffSink

__all__ = [
    "PlannedFile",
    "RunResult",
    "format_plan",
    "plan_events",
    "planned_files",
    "run",
]

#: Events shown at each end of the ``--dry-run`` listing.
PLAN_EVENTS_SHOWN = 3
_EXTRA_HINT = "install the pycromanager extra: pip install 'mmtiffsink[pycromanager]'"


# -- planning ---------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """``value`` with numpy scalars and arrays turned into plain Python (JSON-able) values."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays
    if callable(tolist):
        return tolist()
    return value


def plan_events(config: RunConfig) -> list[dict[str, Any]]:
    """The acquisition events of the run, from pycro-manager's ``multi_d_acquisition_events``.

    Parameters
    ----------
    config
        The run configuration.

    Returns
    -------
    list of dict
        One event per frame, in acquisition order, with plain Python values (numpy scalars
        converted), e.g. ``{'axes': {'time': 0, 'channel': 'DAPI', 'z': 0}, 'z': -2.0,
        'config_group': ['Channel', 'DAPI'], 'exposure': 5.0, 'min_start_time': 0.0}``.

    Raises
    ------
    MMTiffSinkError
        pycro-manager is not installed, or rejects the arguments.

    """
    try:
        from pycromanager import multi_d_acquisition_events
    except ImportError as exc:
        msg = f"planning the events needs pycro-manager ({exc}); {_EXTRA_HINT}"
        raise MMTiffSinkError(msg) from None
    try:
        events = multi_d_acquisition_events(**config.acquisition.event_arguments())
    except ValueError as exc:  # pycro-manager's own checks; the config checks the same first
        msg = f"pycro-manager rejects the acquisition: {exc}"
        raise MMTiffSinkError(msg) from None
    return [_plain(event) for event in events]


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


def planned_files(
    config: RunConfig,
    events: Sequence[dict[str, Any]],
    name: str | None = None,
) -> list[PlannedFile]:
    """The files the events will make, with the names the sink will give them.

    Parameters
    ----------
    config
        The run configuration (output directory and template, channel order).
    events
        From :func:`plan_events`.
    name
        The dataset name (default: ``output.name``).

    Returns
    -------
    list of PlannedFile
        In order of their first event.

    """
    out = config.output
    mapper = AxisMapper(config.acquisition.channels)
    shapes: dict[FileKey, list[int]] = {}
    for event in events:
        placement = mapper.map(event.get("axes") or {})
        dims = shapes.setdefault(placement.file_key, [0, 0, 0, 0])
        dims[0] = max(dims[0], placement.c + 1)
        dims[1] = max(dims[1], placement.z + 1)
        dims[2] = max(dims[2], placement.t + 1)
        dims[3] += 1
    stem = out.name if name is None else name
    return [
        PlannedFile(out.directory / file_name(out.template, stem, key), key, (c, z, t), frames)
        for key, (c, z, t, frames) in shapes.items()
    ]


def _output_name(config: RunConfig, events: Sequence[dict[str, Any]]) -> str:
    """The dataset name to use, after ``output.if_exists``.

    Raises
    ------
    FileExistsError_
        ``if_exists: error`` and an output file exists.

    """
    out = config.output
    if out.if_exists == "overwrite":
        return out.name
    if out.if_exists == "rename":
        for n in range(100_000):
            name = out.name if n == 0 else f"{out.name}_{n}"
            if not any(f.path.exists() for f in planned_files(config, events, name)):
                return name
        msg = f"no free name for {out.name!r} in {out.directory}"  # pragma: no cover
        raise FileExistsError_(msg)  # pragma: no cover
    existing = [f.path for f in planned_files(config, events) if f.path.exists()]
    if existing:
        listing = ", ".join(str(path) for path in existing)
        msg = (
            f"output file exists: {listing}; nothing was acquired and the file was left as it "
            "is. Set output.if_exists to overwrite or rename, or change output.name"
        )
        raise FileExistsError_(msg)
    return out.name


# -- describing -------------------------------------------------------------------------------


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
        A readable multi-line text.

    Raises
    ------
    MMTiffSinkError
        From :func:`plan_events`.

    """
    events = plan_events(config)
    out = config.output
    lines = _describe_microscope(config.microscope)
    lines.append(_describe_acquisition(config.acquisition))
    lines.append(f"Events: {len(events)} ({len(events)} frames expected)")
    compression = out.compression or "the profile's default"
    lines.append(
        f"Output: profile {out.profile}, compression {compression}, if a file exists: "
        f"{out.if_exists}"
    )
    lines.append(f"  calibration: {_calibration_text(config)}")
    for planned in planned_files(config, events):
        c, z, t = planned.shape
        note = ""
        if planned.path.exists():
            note = {
                "error": "  EXISTS: the run would stop before acquiring (if_exists: error)",
                "overwrite": "  exists: would be replaced (if_exists: overwrite)",
                "rename": "  exists: a free name would be chosen (if_exists: rename)",
            }[out.if_exists]
        lines.append(f"  {planned.path}  C={c} Z={z} T={t}, {planned.frames} frames{note}")
    width = len(str(len(events)))
    shown = list(enumerate(events, 1))
    if len(events) > 2 * PLAN_EVENTS_SHOWN:
        head, tail = shown[:PLAN_EVENTS_SHOWN], shown[-PLAN_EVENTS_SHOWN:]
        lines.append("First events:")
        lines += [f"  {i:>{width}} {json.dumps(event)}" for i, event in head]
        lines.append("Last events:")
        lines += [f"  {i:>{width}} {json.dumps(event)}" for i, event in tail]
    else:
        lines.append("Events:")
        lines += [f"  {i:>{width}} {json.dumps(event)}" for i, event in shown]
    lines.append("Dry run: nothing was acquired.")
    return "\n".join(lines)


# -- the result -------------------------------------------------------------------------------


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
    """:func:`mmtiffsink.info.summary_table` of the files, then their calibration."""
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

    def format(self) -> str:
        """The end-of-run summary: files, frames, sizes, calibration, time, and any error."""
        count = f"{len(self.files)} file" + ("" if len(self.files) == 1 else "s")
        head = (
            f"{'Done' if self.ok else 'FAILED'}: {self.frames} of {self.expected_frames} frames "
            f"in {count}, {self.elapsed_s:.1f} s"
        )
        lines = [head]
        if self.files:
            lines.append(_summary(self.files))
        if self.error is not None:
            lines.append(f"error: {self.error}")
            if self.files:
                lines.append("Every frame written before the error is in the files above.")
        return "\n".join(lines)


# -- the microscope ---------------------------------------------------------------------------


def _strings(vector: Any) -> list[str]:
    """A Micro-Manager StrVector (pymmcore or a Java object) as a list."""
    try:
        return [str(item) for item in vector]
    except TypeError:  # a Java StrVector through the ZMQ bridge
        return [str(vector.get(i)) for i in range(int(vector.size()))]


def _stop_headless() -> None:
    """Stop the headless core; drop the engine singleton so a later start is a clean one."""
    from pycromanager import stop_headless
    from pycromanager.acquisition.acq_eng_py.internal.engine import Engine

    stop_headless()
    if hasattr(Engine, "singleton"):
        del Engine.singleton


def _headless_paths(mic: MicroscopeConfig) -> tuple[Path, Path]:
    if mic.kind == "micromanager":
        assert mic.path is not None  # checked by the config
        return mic.path, mic.config_path
    try:
        import mm_test_adapters
    except ImportError as exc:
        msg = f"the demo microscope needs mm-test-adapters ({exc}); {_EXTRA_HINT}"
        raise MicroscopeError(msg) from None
    adapters = Path(mm_test_adapters.device_adapter_path())
    return adapters, adapters / "MMConfig_demo.cfg"


@contextmanager
def _microscope(mic: MicroscopeConfig) -> Iterator[Any]:
    """The core of the configured microscope; a headless one is stopped on the way out."""
    try:
        from mmpycorex import is_pymmcore_active
        from pycromanager import Core, start_headless
    except ImportError as exc:
        msg = f"acquiring needs pycro-manager ({exc}); {_EXTRA_HINT}"
        raise MicroscopeError(msg) from None
    if mic.kind == "java":
        # Not run in the tests: it needs a running Micro-Manager with its ZMQ server on.
        try:
            core = Core(port=mic.java_port)
        except Exception as exc:
            msg = (
                f"cannot reach Micro-Manager on port {mic.java_port}: {exc} (is it running, "
                "with Tools > Options > 'Run server on port' checked?)"
            )
            raise MicroscopeError(msg) from None
        yield core
        return
    if is_pymmcore_active():
        msg = (
            "a headless Micro-Manager core already runs in this process; a run starts and "
            "stops its own (run it in a fresh process, e.g. with the mmtiffsink command)"
        )
        raise MicroscopeError(msg)
    adapters, cfg = _headless_paths(mic)
    try:
        try:
            start_headless(
                str(adapters),
                str(cfg),
                python_backend=True,
                buffer_size_mb=mic.buffer_size_mb,
            )
        except Exception as exc:
            msg = f"cannot start Micro-Manager from {adapters} with {cfg}: {exc}"
            raise MicroscopeError(msg) from None
        yield Core()
    finally:
        _stop_headless()


def _check_pixel_type(core: Any) -> None:
    """pycro-manager's Python backend acquires 8- and 16-bit grayscale cameras only.

    With 4 bytes per pixel it fails while building the acquisition and leaves threads that keep
    the process from exiting (pycromanager 1.0.2), so refuse before acquiring.
    """
    depth = int(core.get_bytes_per_pixel())
    components = int(core.get_number_of_components())
    if depth not in (1, 2) or components != 1:
        camera = core.get_camera_device()
        pixel_type = ""
        if "PixelType" in _strings(core.get_device_property_names(camera)):
            pixel_type = f" (PixelType {core.get_property(camera, 'PixelType')})"
        msg = (
            f"the camera {camera!r} gives {depth} bytes per pixel{pixel_type}; pycro-manager's "
            "Python backend acquires 8- and 16-bit grayscale images only: set an 8- or 16-bit "
            "pixel type in microscope.properties"
        )
        raise MicroscopeError(msg)


def _set_up(core: Any, config: RunConfig) -> None:
    """Apply presets, properties and exposure; check the channels exist.

    Raises
    ------
    MicroscopeError
        For a group, preset, device, property or value the microscope does not have.

    """
    mic = config.microscope
    groups = _strings(core.get_available_config_groups())

    def check_preset(key: str, group: str, preset: str) -> None:
        if group not in groups:
            msg = f"{key}: the microscope has no config group {group!r} (groups: {groups})"
            raise MicroscopeError(msg)
        presets = _strings(core.get_available_configs(group))
        if preset not in presets:
            msg = f"{key}: group {group!r} has no preset {preset!r} (presets: {presets})"
            raise MicroscopeError(msg)

    try:
        for group, preset in mic.presets.items():
            check_preset("microscope.presets", group, preset)
            core.set_config(group, preset)
            core.wait_for_config(group, preset)
        devices = _strings(core.get_loaded_devices())
        for i, setting in enumerate(mic.properties):
            key = f"microscope.properties[{i}]"
            if setting.device not in devices:
                msg = f"{key}: no device {setting.device!r} (devices: {devices})"
                raise MicroscopeError(msg)
            names = _strings(core.get_device_property_names(setting.device))
            if setting.property not in names:
                msg = f"{key}: device {setting.device!r} has no property {setting.property!r}"
                raise MicroscopeError(msg)
            allowed = _strings(core.get_allowed_property_values(setting.device, setting.property))
            if allowed and setting.value not in allowed:
                msg = (
                    f"{key}: {setting.device}.{setting.property} cannot be {setting.value!r} "
                    f"(allowed: {allowed})"
                )
                raise MicroscopeError(msg)
            core.set_property(setting.device, setting.property, setting.value)
        if mic.exposure_ms is not None:
            core.set_exposure(float(mic.exposure_ms))
        if mic.kind != "java":
            _check_pixel_type(core)
        acq = config.acquisition
        if acq.channel_group is not None:
            for channel in acq.channels or ():
                check_preset("acquisition.channels", acq.channel_group, channel)
        core.wait_for_system()
    except MicroscopeError:
        raise
    except Exception as exc:  # the core's own errors (pymmcore CMMError, Java exceptions)
        msg = f"setting up the microscope failed: {exc}"
        raise MicroscopeError(msg) from None


def _acquire(
    config: RunConfig, events: list[dict[str, Any]], name: str, hook: Any
) -> BaseException | None:
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
            acq.acquire(events)
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
        The run configuration (:func:`mmtiffsink.config.load_config`).
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

    started = time.monotonic()
    events = plan_events(config)
    name = _output_name(config, events)
    out = config.output
    codec = out.codec()
    sink = TiffSink(
        out.directory,
        name,
        template=out.template,
        profile=out.profile,
        compression=DEFAULT if codec == "default" else codec,
        channel_names=config.acquisition.channels,
        pxsize=out.pixel_size_um,
        deltaz=out.z_step_um,
        timeinterval=out.interval_s,
        colors=out.colors,
        colormap=out.colormap,
        overwrite=out.if_exists == "overwrite",
    )
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
        with _microscope(config.microscope) as core:
            _set_up(core, config)
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
