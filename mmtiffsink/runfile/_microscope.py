"""The microscope of a run: start it (or reach a running one), set it up, stop it.

:func:`microscope` gives the core of what ``microscope`` in a run file describes: Micro-Manager's
demo configuration or an installation, started headless in this process with pycro-manager's
Python backend (and always stopped again), or a running Micro-Manager reached on its ZMQ port.
:func:`set_up` applies the presets, properties and exposure and checks what the acquisition
needs (its channels, a pixel type the backend can acquire) before the first frame.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mmtiffsink.errors import MicroscopeError

from ._models import MicroscopeConfig, RunConfig

__all__ = [
    "EXTRA_HINT",
    "PYMMCORE_PLUS_HINT",
    "SnakeCore",
    "check_pixel_type",
    "headless_paths",
    "microscope",
    "pymmcore_plus_core",
    "set_up",
    "stop_headless",
]

#: How to get what acquiring needs.
EXTRA_HINT = "install the pycromanager extra: pip install 'mmtiffsink[pycromanager]'"
PYMMCORE_PLUS_HINT = "install the pymmcore-plus extra: pip install 'mmtiffsink[pymmcore-plus]'"


def _strings(vector: Any) -> list[str]:
    """A Micro-Manager StrVector (pymmcore or a Java object) as a list."""
    try:
        return [str(item) for item in vector]
    except TypeError:  # a Java StrVector through the ZMQ bridge
        return [str(vector.get(i)) for i in range(int(vector.size()))]


def stop_headless() -> None:
    """Stop the headless core; drop the engine singleton so a later start is a clean one."""
    from pycromanager import stop_headless
    from pycromanager.acquisition.acq_eng_py.internal.engine import Engine

    stop_headless()
    if hasattr(Engine, "singleton"):
        del Engine.singleton


def headless_paths(mic: MicroscopeConfig) -> tuple[Path, Path]:
    """The device adapter folder and ``.cfg`` file of a headless core (demo, micromanager)."""
    if mic.kind == "micromanager":
        assert mic.path is not None  # checked by the config
        return mic.path, mic.config_path
    try:
        import mm_test_adapters
    except ImportError as exc:
        msg = f"the demo microscope needs mm-test-adapters ({exc}); {EXTRA_HINT}"
        raise MicroscopeError(msg) from None
    adapters = Path(mm_test_adapters.device_adapter_path())
    return adapters, adapters / "MMConfig_demo.cfg"


@contextmanager
def microscope(mic: MicroscopeConfig) -> Iterator[Any]:
    """The core of the configured microscope; a headless one is stopped on the way out.

    Raises
    ------
    MicroscopeError
        pycro-manager is missing, a headless core already runs in this process, or the
        microscope cannot be started or reached.

    """
    try:
        from mmpycorex import is_pymmcore_active
        from pycromanager import Core, start_headless
    except ImportError as exc:
        msg = f"acquiring needs pycro-manager ({exc}); {EXTRA_HINT}"
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
    adapters, cfg = headless_paths(mic)
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
        stop_headless()


class SnakeCore:
    """A ``CMMCorePlus`` seen as pycro-manager's snake_case core (``get_loaded_devices()``)."""

    def __init__(self, core: Any) -> None:
        self.core = core

    def __getattr__(self, name: str) -> Any:
        first, *rest = name.split("_")
        return getattr(self.core, first + "".join(part.title() for part in rest))


@contextmanager
def pymmcore_plus_core(mic: MicroscopeConfig) -> Iterator[Any]:
    """A ``CMMCorePlus`` with the configured adapters and ``.cfg``; unloaded on the way out.

    Raises
    ------
    MicroscopeError
        pymmcore-plus is missing, or the configuration does not load.

    """
    try:
        from pymmcore_plus import CMMCorePlus
    except ImportError as exc:
        msg = f"engine pymmcore-plus needs pymmcore-plus ({exc}); {PYMMCORE_PLUS_HINT}"
        raise MicroscopeError(msg) from None
    adapters, cfg = headless_paths(mic)
    core = CMMCorePlus()
    try:
        try:
            core.setDeviceAdapterSearchPaths([str(adapters)])
            core.loadSystemConfiguration(str(cfg))
            core.setCircularBufferMemoryFootprint(mic.buffer_size_mb)
        except Exception as exc:
            msg = f"cannot start Micro-Manager from {adapters} with {cfg}: {exc}"
            raise MicroscopeError(msg) from None
        yield core
    finally:
        core.unloadAllDevices()


def check_pixel_type(core: Any) -> None:
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


def check_preset(
    core: Any, key: str, group: str, preset: str, groups: list[str] | None = None
) -> None:
    """Refuse a config group or preset the microscope does not have, naming the run-file key.

    ``core`` is pycro-manager's snake_case core (or a :class:`SnakeCore`); ``groups`` the
    microscope's config groups when already read.

    Raises
    ------
    MicroscopeError
        For an unknown group or preset.

    """
    if groups is None:
        groups = _strings(core.get_available_config_groups())
    if group not in groups:
        msg = f"{key}: the microscope has no config group {group!r} (groups: {groups})"
        raise MicroscopeError(msg)
    presets = _strings(core.get_available_configs(group))
    if preset not in presets:
        msg = f"{key}: group {group!r} has no preset {preset!r} (presets: {presets})"
        raise MicroscopeError(msg)


def set_up(core: Any, config: RunConfig) -> None:
    """Apply presets, properties and exposure; check the channels exist.

    Raises
    ------
    MicroscopeError
        For a group, preset, device, property or value the microscope does not have.

    """
    mic = config.microscope
    groups = _strings(core.get_available_config_groups())
    try:
        for group, preset in mic.presets.items():
            check_preset(core, "microscope.presets", group, preset, groups)
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
            check_pixel_type(core)
        acq = config.acquisition
        if acq.channel_group is not None:
            for channel in acq.channels or ():
                check_preset(core, "acquisition.channels", acq.channel_group, channel, groups)
        core.wait_for_system()
    except MicroscopeError:
        raise
    except Exception as exc:  # the core's own errors (pymmcore CMMError, Java exceptions)
        msg = f"setting up the microscope failed: {exc}"
        raise MicroscopeError(msg) from None
