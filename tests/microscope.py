"""The demo microscope (pycro-manager headless on mm-test-adapters) as a pytest fixture.

* :func:`demo_core` (session fixture): ``pycromanager.start_headless`` with the Python backend on
  the DemoCamera adapters and ``MMConfig_demo.cfg`` shipped by ``mm-test-adapters``, started once
  per session; yields the core (``pycromanager.Core()``, a snake_case ``pymmcore.CMMCore``).
* :func:`microscope` (function fixture): the same core, reset to a known state before the test
  (:func:`reset_demo`), and checked for leaked acquisition threads after it.
* :func:`tzc_events` (function fixture): the events of the recorded ``tzc`` acquisition.
* :func:`set_objective`, :func:`reset_demo`, :func:`record_acquisition`, :func:`multi_d_events`,
  :func:`small_tzc_events`, :func:`demo_events`: plain helpers; the recorded metadata
  (``DEMO_*``) comes from ``tests/data/demo_recordings.json``.
* :func:`release_leaked_acquisition_threads`: unblocks pycro-manager threads left waiting forever.

Facts measured here (pycromanager 1.0.2, mm-test-adapters 75, 2 cores):

* importing pycromanager ~0.8 s; ``start_headless`` ~0.05-0.1 s; ``stop_headless`` ~1 ms.
* A 64x48 frame costs about its exposure plus ~1.3 ms: ~11.4 ms at the config's 10 ms exposure
  (snapped or sequenced), ~1.2-1.7 ms at 0.1 ms.
* Restarting in one process works only if ``Engine.singleton`` is deleted after
  ``stop_headless()``: otherwise the next ``start_headless`` keeps the old engine bound to the
  unloaded core, and building an ``Acquisition`` raises ``RuntimeError('Camera byte depth cannot be
  zero')`` while leaving two non-daemon threads (``submit_events`` and the engine's
  ``NotificationHandler.run``) that keep the interpreter from exiting.
* ``Acquisition(image_process_fn=f)``: ``f`` returning None consumes the image (the RAM dataset
  stays empty); returning ``(image, metadata)`` passes it on to the dataset. Anything else that
  does not unpack into two items kills the processing thread and ``await_completion`` waits
  forever (a bare 2-D image unpacks along its rows!); a list of two tuples unpacks and then fails
  in the saving thread (raised from the ``with`` block). An exception in ``f`` aborts the
  acquisition and the ``with`` block raises ``Exception('exception in image processor: ...')``.
  ``show_display`` is silently ignored by the Python backend.
"""

from __future__ import annotations

import concurrent.futures
import copy
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

#: Pixel size (µm/px) of each preset of the demo config's ``Objective`` group.
OBJECTIVES: dict[str, float] = {"10X": 1.0, "20X": 0.5, "40X": 0.25}
#: The demo config's ``Channel`` group presets.
CHANNELS: tuple[str, ...] = ("Cy5", "DAPI", "FITC", "Rhodamine")
#: Frame size used by :func:`reset_demo` unless told otherwise (small: tests stay fast).
DEFAULT_WIDTH, DEFAULT_HEIGHT = 64, 48
#: The DemoCamera's default exposure (ms) in ``MMConfig_demo.cfg``.
DEFAULT_EXPOSURE_MS = 10.0
BUFFER_SIZE_MB = 64
#: Seconds an acquisition's threads get to end by themselves before being called leaked.
THREAD_GRACE_S = 2.0


def _require_pycromanager() -> None:
    """Skip (locally) or fail (when ``CI`` is set) if the pycromanager extra is missing."""
    try:
        import mm_test_adapters  # noqa: F401
        import pycromanager  # noqa: F401
    except ImportError as exc:
        msg = f"the demo microscope needs the 'pycromanager' extra: {exc}"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


def demo_config_path() -> Path:
    """``MMConfig_demo.cfg`` shipped inside the ``mm-test-adapters`` wheel."""
    import mm_test_adapters

    return Path(mm_test_adapters.device_adapter_path()) / "MMConfig_demo.cfg"


def start_demo() -> Any:
    """Start the headless demo microscope (Python backend) and return its core."""
    import mm_test_adapters
    from pycromanager import Core, start_headless

    start_headless(
        mm_test_adapters.device_adapter_path(),
        str(demo_config_path()),
        python_backend=True,
        buffer_size_mb=BUFFER_SIZE_MB,
    )
    return Core()


def stop_demo() -> None:
    """Stop the headless core and drop the engine singleton so a later start is a clean one."""
    from pycromanager import stop_headless
    from pycromanager.acquisition.acq_eng_py.internal.engine import Engine

    stop_headless()
    if hasattr(Engine, "singleton"):
        del Engine.singleton


def set_objective(core: Any, objective: str) -> float:
    """Switch the demo objective (``'10X'``, ``'20X'`` or ``'40X'``); return the pixel size (µm).

    Raises
    ------
    ValueError
        For an unknown preset.
    AssertionError
        If the core's pixel size does not follow (the demo config would have changed).
    """
    if objective not in OBJECTIVES:
        msg = f"objective must be one of {sorted(OBJECTIVES)}, got {objective!r}"
        raise ValueError(msg)
    core.set_config("Objective", objective)
    core.wait_for_config("Objective", objective)
    pixel_size = float(core.get_pixel_size_um())
    assert pixel_size == OBJECTIVES[objective], (objective, pixel_size)
    return pixel_size


#: Seconds :func:`wait_engine_idle` waits for the engine's last event before failing the test.
ENGINE_IDLE_TIMEOUT_S = 30.0


def wait_engine_idle(timeout_s: float = ENGINE_IDLE_TIMEOUT_S) -> None:
    """Wait until pycro-manager's engine threads have finished every event they were given.

    An acquisition can end (its ``with`` block returns, after an ``abort()`` or an error) while
    the engine's acquisition thread still executes an event it had already taken: it snaps an
    image, or moves a stage. The demo camera's C++ code is not safe against the next test
    resizing its frame under that snap (a full run once died with SIGABRT in this module's
    reset). Each engine executor has one worker, so a no-op submitted to it runs only after
    everything submitted before it: that is the barrier.

    Raises
    ------
    AssertionError
        If an executor is still busy after ``timeout_s`` (an event blocked forever).
    """
    from pycromanager.acquisition.acq_eng_py.internal.engine import Engine

    engine = Engine.get_instance()
    if engine is None:
        return
    deadline = time.monotonic() + timeout_s
    for executor in (engine.event_generator_executor, engine.acq_executor):
        try:
            barrier = executor.submit(lambda: None)
        except RuntimeError:  # shut down: no event can run any more
            continue
        remaining = max(0.0, deadline - time.monotonic())
        try:
            barrier.result(timeout=remaining)
        except concurrent.futures.TimeoutError as exc:  # not the builtin one before 3.11
            msg = f"pycro-manager's engine is still busy after {timeout_s} s ({executor!r})"
            raise AssertionError(msg) from exc


def wait_mda_idle(core: Any, timeout_s: float = ENGINE_IDLE_TIMEOUT_S) -> None:
    """Wait until a pymmcore-plus ``CMMCorePlus``'s MDA runner has ended, then stop the camera.

    The same rule as :func:`wait_engine_idle`, for pymmcore-plus: a cancelled or failed MDA may
    still be snapping on its thread when the test returns, and resizing the demo camera (or
    unloading it) under a snap is not safe in its C++ code.

    Raises
    ------
    AssertionError
        If the runner still runs after ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while core.mda.is_running():
        assert time.monotonic() < deadline, f"the MDA still runs after {timeout_s} s"
        time.sleep(0.01)
    if core.isSequenceRunning():
        core.stopSequenceAcquisition()
        while core.isSequenceRunning() and time.monotonic() < deadline:
            time.sleep(0.01)


def reset_demo(
    core: Any,
    *,
    width: int = DEFAULT_WIDTH,
    height: int = DEFAULT_HEIGHT,
    exposure_ms: float = DEFAULT_EXPOSURE_MS,
    objective: str = "10X",
) -> None:
    """Put the demo microscope in a known state.

    Waits until pycro-manager's engine has run every event it was given (see
    :func:`wait_engine_idle`), then stops any sequence, empties the circular buffer, applies the
    config's ``System/Startup`` preset, clears the ROI, sets the camera's frame size and
    exposure, the objective, channel ``DAPI`` and the stages at 0.
    """
    wait_engine_idle()
    if core.is_sequence_running():
        core.stop_sequence_acquisition()
        # the camera's own (C++) sequence thread may still be inserting images: emptying the
        # buffer under it can abort the process, so wait until the sequence has really ended
        deadline = time.monotonic() + 5.0
        while core.is_sequence_running() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
    core.clear_circular_buffer()
    core.set_config("System", "Startup")
    core.wait_for_config("System", "Startup")
    core.clear_roi()
    core.set_property("Camera", "OnCameraCCDXSize", width)
    core.set_property("Camera", "OnCameraCCDYSize", height)
    core.set_exposure(exposure_ms)
    core.set_config("Channel", "DAPI")
    core.wait_for_config("Channel", "DAPI")
    set_objective(core, objective)
    core.set_position(core.get_focus_device(), 0.0)
    core.set_xy_position(core.get_xy_stage_device(), 0.0, 0.0)
    core.wait_for_system()
    assert (core.get_image_width(), core.get_image_height()) == (width, height)


Frame = tuple[Any, dict[str, Any]]


def record_acquisition(
    events: Sequence[dict[str, Any]] | dict[str, Any],
    image_process_fn: Callable[[Any, dict[str, Any]], Any] | None = None,
    **kwargs: Any,
) -> list[Frame]:
    """Run one acquisition (``with Acquisition(...)``) and return every ``(image, metadata)``.

    The hook records a copy of each frame and of its metadata dict (as they arrived, before
    ``image_process_fn`` sees them) and returns what ``image_process_fn`` returns (None when no
    function is given: the frame is consumed). ``kwargs`` go to ``Acquisition``.
    """
    from pycromanager import Acquisition

    frames: list[Frame] = []

    def hook(image: Any, metadata: dict[str, Any]) -> Any:
        frames.append((image.copy(), dict(metadata)))
        return image_process_fn(image, metadata) if image_process_fn is not None else None

    with Acquisition(directory=None, image_process_fn=hook, **kwargs) as acq:
        acq.acquire(events)
    return frames


# -- metadata recorded from the demo microscope -------------------------------------------------
# tests/data/demo_recordings.json: for each recording, how it was acquired (objective, the
# arguments of multi_d_acquisition_events or a literal event list) and every frame's metadata,
# exactly as the image_process_fn received it. test_microscope.py acquires each one again
# (through demo_events) and checks that a live acquisition still gives the same keys and values
# (times excepted); the calibration and mapping tests use the frames by value.

RECORDINGS_PATH = Path(__file__).resolve().parent / "data" / "demo_recordings.json"
_RECORDED: dict[str, Any] = json.loads(RECORDINGS_PATH.read_text(encoding="utf-8"))
#: The recordings by name: ``{"objective": ..., "multi_d" or "events": ..., "frames": [...]}``.
RECORDINGS: dict[str, dict[str, Any]] = _RECORDED["recordings"]

#: ``tzc``: snapped t/c/z (3 time points 0.1 s apart, z 0-4 um step 2, DAPI and FITC) at 10X.
DEMO_TZC_FRAMES: list[dict[str, Any]] = RECORDINGS["tzc"]["frames"]
#: ``sequenced``: 4 time points, no interval: the engine sequences the camera; Width/Height etc.
#: arrive as text, ElapsedTime-ms is 0.0 for all.
DEMO_SEQUENCED_FRAMES: list[dict[str, Any]] = RECORDINGS["sequenced"]["frames"]
#: ``positions``: positions 'A1' and 'B 2', z -1..1 um at 40X: z indices start at 0.
DEMO_POSITIONS_FRAMES: list[dict[str, Any]] = RECORDINGS["positions"]["frames"]
#: ``uncalibrated``: one frame with the objective turret on 'Objective-2' (no pixel size
#: configuration): PixelSize_um is 0.0.
DEMO_UNCALIBRATED_FRAMES: list[dict[str, Any]] = RECORDINGS["uncalibrated"]["frames"]
#: Summary metadata given to the dataset's initialize() (NDRAMDataset.summary_metadata).
DEMO_SUMMARY_METADATA: dict[str, Any] = _RECORDED["summary_metadata"]["metadata"]


def multi_d_events(**kwargs: Any) -> list[dict[str, Any]]:
    """``pycromanager.multi_d_acquisition_events(**kwargs)`` as a list of events."""
    from pycromanager import multi_d_acquisition_events

    return list(multi_d_acquisition_events(**kwargs))


def small_tzc_events(channels: Sequence[str]) -> list[dict[str, Any]]:
    """2 time points 0.1 s apart x z 0-2 um step 1 (3 slices) x ``channels``, order 'tpcz'."""
    return multi_d_events(
        num_time_points=2,
        time_interval_s=0.1,
        z_start=0,
        z_end=2,
        z_step=1,
        channel_group="Channel",
        channels=list(channels),
    )


def demo_events(name: str) -> list[dict[str, Any]]:
    """The events of recording ``name`` of :data:`RECORDINGS` (a fresh list every call)."""
    recording = RECORDINGS[name]
    if "multi_d" in recording:
        return multi_d_events(**recording["multi_d"])
    return copy.deepcopy(list(recording["events"]))


# -- leaked threads ---------------------------------------------------------------------------


class _FinishedEngineAcquisition:
    """Stands in for the engine acquisition an ``Acquisition`` failed to build."""

    def finish(self) -> None:
        """Nothing to finish."""

    def block_until_events_finished(self, timeout: float | None = None) -> None:
        """Nothing to wait for."""


def _closure_object(function: object, cls: type) -> Any:
    for cell in getattr(function, "__closure__", None) or ():
        try:
            contents = cell.cell_contents
        except ValueError:  # empty cell
            continue
        if isinstance(contents, cls):
            return contents
    return None


def _target(thread: threading.Thread) -> Any:
    return getattr(thread, "_target", None)


def _is_acquisition_thread(thread: threading.Thread) -> bool:
    """A live thread running pycro-manager acquisition code (not the engine's pool)."""
    if thread is threading.current_thread() or not thread.is_alive():
        return False
    module = getattr(_target(thread), "__module__", None) or ""
    return module.startswith("pycromanager.acquisition")


def acquisition_threads() -> list[threading.Thread]:
    """The live threads started by pycro-manager acquisitions (daemon or not).

    They are non-daemon unless started from a daemon thread; non-daemon ones left waiting keep
    the interpreter from exiting.
    """
    return [thread for thread in threading.enumerate() if _is_acquisition_thread(thread)]


def release_leaked_acquisition_threads(
    grace_s: float = THREAD_GRACE_S, timeout_s: float = 5.0
) -> list[str]:
    """Let leaked pycro-manager acquisition threads end; describe each leak (empty: none).

    Threads that end by themselves within ``grace_s`` are not leaks. The others wait on a queue
    that nobody will feed again (after a failed ``Acquisition`` construction or a dead processing
    thread); each gets what it waits for: the "events finished" and "data sink finished"
    notifications, the end-of-data image, or the end-of-events marker.

    Returns
    -------
    list of str
        ``"released: name"`` for each thread that had to be released and then ended, and
        ``"alive: name"`` for each one still running after ``timeout_s``. Empty: no leak.
    """
    deadline = time.monotonic() + grace_s
    for thread in acquisition_threads():
        thread.join(max(0.0, deadline - time.monotonic()))
    leaked = acquisition_threads()
    if not leaked:
        return []

    from mmpycorex.launcher import TaggedImage
    from pycromanager.acquisition.acq_eng_py.internal.notification_handler import (
        NotificationHandler,
    )
    from pycromanager.acquisition.acq_eng_py.main.acq_notification import AcqNotification
    from pycromanager.acquisition.python_backend_acquisitions import (
        ImageProcessor,
        PythonBackendAcquisition,
    )

    def finished() -> list[Any]:
        return [
            AcqNotification.create_acq_events_finished_notification(),
            AcqNotification.create_data_sink_finished_notification(),
        ]

    end_of_data = TaggedImage(None, None)
    for thread in leaked:
        target = _target(thread)
        owner = getattr(target, "__self__", None)
        name = getattr(target, "__name__", "")
        if isinstance(owner, NotificationHandler):
            for notification in finished():
                owner.post_notification(notification)
        elif isinstance(owner, ImageProcessor):
            owner.input_queue.put(end_of_data, timeout=timeout_s)
        elif name == "saving_thread":
            engine_acq: Any = getattr(thread, "_args", (None,))[0]
            if engine_acq is None:
                continue
            processors = engine_acq.image_processors_
            queue = (
                engine_acq.processor_output_queues_[processors[-1]]
                if processors
                else engine_acq.first_dequeue_
            )
            queue.put(end_of_data, timeout=timeout_s)
        else:
            acq = _closure_object(target, PythonBackendAcquisition)
            if acq is None:
                continue
            if name == "submit_events":
                if getattr(acq, "_acq", None) is None:
                    acq._acq = _FinishedEngineAcquisition()
                acq._event_queue.put(None)
            elif name == "dispatch_notifications":
                for notification in finished():
                    acq._notification_queue.put(notification)
            elif name == "_storage_monitor_fn":
                acq._image_notification_queue.put(finished()[1])
    deadline = time.monotonic() + timeout_s
    for thread in leaked:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [f"{'alive' if t.is_alive() else 'released'}: {t.name}" for t in leaked]


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def demo_core() -> Iterator[Any]:
    """The demo microscope's core, started once per session (Python backend, 64 MB buffer)."""
    _require_pycromanager()
    core = start_demo()
    try:
        yield core
    finally:
        leaked = release_leaked_acquisition_threads()
        wait_engine_idle()  # no event may run on the core being unloaded
        stop_demo()
        leaked += release_leaked_acquisition_threads(grace_s=0.5)
    if leaked:
        pytest.fail(f"pycro-manager acquisition threads leaked: {leaked}")


@pytest.fixture
def microscope(demo_core: Any) -> Iterator[Any]:
    """The demo core reset by :func:`reset_demo` (64x48 frames, 10 ms, 10X, DAPI, stages at 0).

    After the test, fails it if pycro-manager acquisition threads were left behind (they are
    released first, so the session can still end).
    """
    reset_demo(demo_core)
    yield demo_core
    leaked = release_leaked_acquisition_threads()
    if leaked:
        pytest.fail(f"the test leaked pycro-manager acquisition threads: {leaked}")


@pytest.fixture
def tzc_events() -> list[dict[str, Any]]:
    """Events of the recorded ``tzc`` acquisition: 3 time points 0.1 s apart, z 0-4 um step 2
    (3 slices), channels DAPI and FITC, order 'tpcz' (18 frames)."""
    _require_pycromanager()
    return demo_events("tzc")
