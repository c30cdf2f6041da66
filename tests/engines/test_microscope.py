"""What a real pycro-manager acquisition on the demo microscope hands to ``image_process_fn``.

These tests pin down the facts DESIGN.md section 2 relies on, and keep the metadata recorded in
``tests/data/demo_recordings.json`` (used by-value by the calibration and mapping tests) honest.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.microscope import (
    CHANNELS,
    DEFAULT_EXPOSURE_MS,
    DEFAULT_HEIGHT,
    DEFAULT_WIDTH,
    DEMO_POSITIONS_FRAMES,
    DEMO_SEQUENCED_FRAMES,
    DEMO_SUMMARY_METADATA,
    DEMO_TZC_FRAMES,
    DEMO_UNCALIBRATED_FRAMES,
    OBJECTIVES,
    RECORDINGS,
    demo_events,
    multi_d_events,
    record_acquisition,
    set_objective,
)

pytestmark = pytest.mark.acquisition

REPO_ROOT = Path(__file__).resolve().parents[2]

# Keys the hook gets for a snapped (not sequenced) image; ZPosition_um_Intended only with z.
SNAP_KEYS = {
    "Axes",
    "Camera",
    "CameraChannelIndex",
    "ElapsedTime-ms",
    "Exposure",
    "Height",
    "PixelSize_um",
    "PixelType",
    "Time",
    "Width",
}
# Keys of a hardware-sequenced image (core metadata as text, plus the engine's keys).
SEQUENCE_KEYS = {
    "Axes",
    "Binning",
    "Camera",
    "ElapsedTime-ms",
    "Exposure",
    "Height",
    "ImageNumber",
    "PixelSize_um",
    "PixelType",
    "ROI-X-start",
    "ROI-Y-start",
    "Time",
    "TimeReceivedByCore",
    "Width",
}
VARYING = {"ElapsedTime-ms", "Time", "TimeReceivedByCore"}


def _without_times(metadata: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metadata.items() if k not in VARYING}


def test_demo_config(microscope: Any) -> None:
    core = microscope
    assert sorted(core.get_available_configs("Channel")) == sorted(CHANNELS)
    assert core.get_channel_group() == "Channel"
    assert (core.get_image_width(), core.get_image_height()) == (DEFAULT_WIDTH, DEFAULT_HEIGHT)
    assert core.get_bytes_per_pixel() == 2
    assert core.get_focus_device() == "Z"
    assert core.get_xy_stage_device() == "XY"
    for objective, pixel_size in OBJECTIVES.items():
        assert set_objective(core, objective) == pixel_size
    with pytest.raises(ValueError, match="objective must be one of"):
        set_objective(core, "60X")


def test_recordings_say_how_they_were_made() -> None:
    """Each recording re-acquired below is described by its objective and its events."""
    assert set(RECORDINGS) == {"tzc", "sequenced", "positions", "uncalibrated"}
    for name, recording in RECORDINGS.items():
        assert ("multi_d" in recording) != ("events" in recording), name
        assert recording["objective"] in (*OBJECTIVES, None), name
        assert recording["frames"], name
    assert RECORDINGS["tzc"]["frames"] is DEMO_TZC_FRAMES


def test_hook_metadata_tzc(microscope: Any, tzc_events: list[dict[str, Any]]) -> None:
    """Per-image keys and values of a snapped t/c/z acquisition (DESIGN.md section 2)."""
    assert RECORDINGS["tzc"]["objective"] == "10X"  # what the microscope fixture sets
    frames = record_acquisition(tzc_events)
    assert len(frames) == 3 * 2 * 3
    expected_order = [
        (t, c, z) for t in range(3) for c in ("DAPI", "FITC") for z in range(3)
    ]  # order 'tpcz'
    assert [(m["Axes"]["time"], m["Axes"]["channel"], m["Axes"]["z"]) for _, m in frames] == (
        expected_order
    )
    for image, metadata in frames:
        assert isinstance(image, np.ndarray)
        assert image.dtype == np.uint16
        assert image.shape == (DEFAULT_HEIGHT, DEFAULT_WIDTH)
        assert set(metadata) == SNAP_KEYS | {"ZPosition_um_Intended"}
        axes = metadata["Axes"]
        assert set(axes) == {"time", "channel", "z"}
        assert type(axes["time"]) is int and type(axes["z"]) is int
        assert axes["channel"] in ("DAPI", "FITC")  # the preset *name*
        assert metadata["PixelSize_um"] == 1.0
        assert metadata["ZPosition_um_Intended"] == 2.0 * axes["z"]
        assert type(metadata["Width"]) is int and metadata["Width"] == DEFAULT_WIDTH
        assert type(metadata["Height"]) is int and metadata["Height"] == DEFAULT_HEIGHT
        assert metadata["PixelType"] is None  # not filled in for snapped images
        assert metadata["Exposure"] == DEFAULT_EXPOSURE_MS
        assert metadata["Camera"] == "Camera"
        assert metadata["CameraChannelIndex"] == 0
        assert isinstance(metadata["Time"], str) and metadata["Time"].endswith(" -")
    elapsed = [m["ElapsedTime-ms"] for _, m in frames]
    assert elapsed[0] == 0.0  # relative to the first image
    assert all(b > a for a, b in itertools.pairwise(elapsed))
    # first arrival of each time point: about 0.1 s apart (plus snap time)
    firsts = [elapsed[i] for i in (0, 6, 12)]
    steps = np.diff(firsts)
    assert np.all((steps > 80) & (steps < 200)), firsts
    # the recorded copy has the same keys and values, times excepted
    assert [_without_times(m) for _, m in frames] == [_without_times(m) for m in DEMO_TZC_FRAMES]


def test_hook_metadata_sequenced(microscope: Any) -> None:
    """No interval, no z: the engine sequences the camera; text values and ElapsedTime 0.0."""
    set_objective(microscope, RECORDINGS["sequenced"]["objective"])
    frames = record_acquisition(demo_events("sequenced"))
    assert [m["Axes"] for _, m in frames] == [{"time": t} for t in range(4)]
    for _, metadata in frames:
        assert set(metadata) == SEQUENCE_KEYS
        assert metadata["Width"] == str(DEFAULT_WIDTH)
        assert metadata["Height"] == str(DEFAULT_HEIGHT)
        assert metadata["ElapsedTime-ms"] == 0.0
        assert metadata["PixelType"] == "GRAY16"
        assert metadata["PixelSize_um"] == 1.0
    stamps = [m["TimeReceivedByCore"] for _, m in frames]
    assert stamps == sorted(stamps) and len(set(stamps)) == 4
    assert [_without_times(m) for _, m in frames] == [
        _without_times(m) for m in DEMO_SEQUENCED_FRAMES
    ]


def test_hook_metadata_positions(microscope: Any) -> None:
    """Labelled positions at 40X; negative z positions still have z indices from 0."""
    assert RECORDINGS["positions"]["objective"] == "40X"
    set_objective(microscope, "40X")
    frames = record_acquisition(demo_events("positions"))
    assert [m["Axes"] for _, m in frames] == [
        {"position": p, "z": z} for p in ("A1", "B 2") for z in range(3)
    ]
    for _, metadata in frames:
        assert metadata["PixelSize_um"] == 0.25
        assert metadata["PositionName"] == metadata["Axes"]["position"]
        assert metadata["ZPosition_um_Intended"] == metadata["Axes"]["z"] - 1.0
    assert [_without_times(m) for _, m in frames] == [
        _without_times(m) for m in DEMO_POSITIONS_FRAMES
    ]

    # without labels, positions are integers and PositionName is absent
    frames = record_acquisition(multi_d_events(xy_positions=[[0, 0], [5, 5]]))
    assert [m["Axes"] for _, m in frames] == [{"position": 0}, {"position": 1}]
    assert all("PositionName" not in m for _, m in frames)


def test_uncalibrated_pixel_size_is_zero(microscope: Any) -> None:
    microscope.set_property("Objective", "Label", "Objective-2")
    assert microscope.get_pixel_size_um() == 0.0
    assert RECORDINGS["uncalibrated"]["objective"] is None
    frames = record_acquisition(demo_events("uncalibrated"))
    assert [_without_times(m) for _, m in frames] == [
        _without_times(m) for m in DEMO_UNCALIBRATED_FRAMES
    ]
    assert frames[0][1]["PixelSize_um"] == 0.0


def test_custom_axes_pass_through(microscope: Any) -> None:
    """The engine does not check axes: negative indices and any axis name reach the hook."""
    frames = record_acquisition([{"axes": {"z": -1, "time": 0}, "z": -3.0}])
    frames += record_acquisition([{"axes": {"row": -1, "column": 2}}])
    frames += record_acquisition([{"axes": {"camera": "left", "custom": 7}}])
    assert [m["Axes"] for _, m in frames] == [
        {"time": 0, "z": -1},
        {"row": -1, "column": 2},
        {"camera": "left", "custom": 7},
    ]
    # numpy integers in an event stay numpy integers in the hook's Axes
    frames = record_acquisition([{"axes": {"time": np.int64(1), "z": np.int32(0)}, "z": 0.0}])
    axes = frames[0][1]["Axes"]
    assert type(axes["time"]) is np.int64 and type(axes["z"]) is np.int32


def test_summary_metadata(microscope: Any) -> None:
    """The summary has no z step, interval or channel names (DESIGN.md section 2)."""
    from pycromanager import Acquisition

    with Acquisition(directory=None, image_process_fn=lambda image, md: (image, md)) as acq:
        acq.acquire([{"axes": {"time": 0}}])
    summary = acq.get_dataset().summary_metadata
    assert set(summary) == set(DEMO_SUMMARY_METADATA)
    assert {k: v for k, v in summary.items() if k != "DateAndTime"} == {
        k: v for k, v in DEMO_SUMMARY_METADATA.items() if k != "DateAndTime"
    }
    assert not {"z-step_um", "Interval_ms", "ChNames"} & set(summary)


def test_process_fn_return_value(microscope: Any) -> None:
    """None consumes the image; ``(image, metadata)`` passes it on to the RAM dataset."""
    from pycromanager import Acquisition

    def consume(image: Any, metadata: Any) -> None:
        return None

    seen: list[Any] = []

    def pass_on(image: Any, metadata: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        seen.append(image.copy())
        metadata["Added"] = "by the hook"
        return image + 1, metadata

    events = multi_d_events(num_time_points=2, z_start=0, z_end=2, z_step=2)
    with Acquisition(directory=None, image_process_fn=consume) as acq:
        acq.acquire(events)
    dataset = acq.get_dataset()
    assert dataset.get_image_coordinates_list() == []

    with Acquisition(directory=None, image_process_fn=pass_on) as acq:
        acq.acquire(events)
    dataset = acq.get_dataset()
    assert len(dataset.get_image_coordinates_list()) == 4
    assert dataset.read_metadata(time=1, z=1)["Added"] == "by the hook"
    assert np.array_equal(dataset.read_image(time=0, z=0), seen[0] + 1)


def test_process_fn_exception_aborts(microscope: Any) -> None:
    from pycromanager import Acquisition

    def fail(image: Any, metadata: Any) -> None:
        raise RuntimeError("boom")

    with (
        pytest.raises(Exception, match="exception in image processor: boom") as info,
        Acquisition(directory=None, image_process_fn=fail) as acq,
    ):
        acq.acquire(multi_d_events(num_time_points=3))
    assert type(info.value) is Exception  # pycro-manager's wrapper, not the RuntimeError itself


# -- in a subprocess: things that break the process-wide headless state -----------------------


def _run_python(code: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONFAULTHANDLER="1")
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
        env=env,
        check=False,
    )


def test_restart_in_one_process() -> None:
    """start/stop/start works once Engine.singleton is deleted; without that the restart breaks."""
    pytest.importorskip("pycromanager")
    result = _run_python(
        """
        import time
        from tests.microscope import (
            release_leaked_acquisition_threads, record_acquisition, reset_demo, start_demo,
            stop_demo,
        )
        from pycromanager import stop_headless
        for i in range(3):
            t0 = time.perf_counter()
            core = start_demo()
            print("start_s", time.perf_counter() - t0)
            reset_demo(core)
            frames = record_acquisition([{"axes": {"time": t}} for t in range(3)])
            print("frames", len(frames))
            stop_demo()
        # now the trap: stop without deleting the engine singleton, then start again
        start_demo()
        stop_headless()
        core = start_demo()
        try:
            record_acquisition([{"axes": {"time": 0}}])
        except RuntimeError as exc:
            print("stale engine:", exc)
        print("leaked", release_leaked_acquisition_threads(grace_s=0.5))
        stop_demo()
        """
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines.count("frames 3") == 3
    starts = [float(line.split()[1]) for line in lines if line.startswith("start_s")]
    assert len(starts) == 3 and max(starts) < 10.0, starts
    assert "stale engine: Camera byte depth cannot be zero" in lines
    leaked = next(line for line in lines if line.startswith("leaked"))
    assert "released: " in leaked and "alive: " not in leaked, leaked


def test_bad_return_value_hangs_and_is_released() -> None:
    """A hook returning a bare image kills pycro-manager's processing thread: the acquisition
    never completes. release_leaked_acquisition_threads() lets it finish so the process can exit.
    """
    pytest.importorskip("pycromanager")
    result = _run_python(
        """
        import threading, time
        from tests.microscope import (
            release_leaked_acquisition_threads, record_acquisition, reset_demo, start_demo,
            stop_demo,
        )
        core = start_demo()
        reset_demo(core)
        done = threading.Event()
        def run():
            record_acquisition([{"axes": {"time": t}} for t in range(3)],
                               image_process_fn=lambda image, md: image)
            done.set()
        threading.Thread(target=run).start()
        print("completed by itself", done.wait(3.0))
        print("leaked", release_leaked_acquisition_threads(grace_s=0.5))
        print("completed after release", done.wait(10.0))
        stop_demo()
        """
    )
    assert result.returncode == 0, result.stderr
    assert "too many values to unpack" in result.stderr
    lines = result.stdout.splitlines()
    assert "completed by itself False" in lines
    assert "completed after release True" in lines


def test_start_time() -> None:
    """Importing pycro-manager and starting the demo core take seconds at most."""
    pytest.importorskip("pycromanager")
    result = _run_python(
        """
        import time
        t0 = time.perf_counter()
        import pycromanager
        t1 = time.perf_counter()
        from tests.microscope import start_demo, stop_demo
        start_demo()
        t2 = time.perf_counter()
        stop_demo()
        t3 = time.perf_counter()
        print(t1 - t0, t2 - t1, t3 - t2)
        """
    )
    assert result.returncode == 0, result.stderr
    import_s, start_s, stop_s = (float(x) for x in result.stdout.split())
    assert import_s < 20 and start_s < 10 and stop_s < 5, (import_s, start_s, stop_s)


def test_acquisition_speed(microscope: Any, tzc_events: list[dict[str, Any]]) -> None:
    """18 snapped 64x48 frames at 10 ms exposure, 0.1 s interval: well under a few seconds."""
    start = time.perf_counter()
    frames = record_acquisition(tzc_events)
    assert len(frames) == 18
    assert time.perf_counter() - start < 10.0
