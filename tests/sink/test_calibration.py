"""Calibration from metadata: tables of cases, the recorded demo metadata, properties, and one
real demo acquisition fed through AxisMapper + CalibrationTracker."""

from __future__ import annotations

import copy
import math
import time
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mmtiffsink.errors import CalibrationWarning, MMTiffSinkWarning
from mmtiffsink.sink import AxisMapper
from mmtiffsink.sink._calibration import (
    MAX_PIXEL_SIZE_UM,
    Calibration,
    CalibrationTracker,
    interval_s,
    parse_float,
    pixel_size_um,
    z_step_um,
)
from tests.microscope import (
    DEMO_POSITIONS_FRAMES,
    DEMO_SEQUENCED_FRAMES,
    DEMO_SUMMARY_METADATA,
    DEMO_TZC_FRAMES,
    DEMO_UNCALIBRATED_FRAMES,
    OBJECTIVES,
    multi_d_events,
    record_acquisition,
    set_objective,
)


def track(frames: list[dict[str, Any]], summary: dict[str, Any] | None = None) -> Calibration:
    tracker = CalibrationTracker()
    if summary is not None:
        tracker.update_summary(summary)
    for metadata in frames:
        tracker.update(metadata.get("Axes", {}), metadata)
    return tracker.result()


def frame(time: int | None = None, z: int | None = None, **metadata: Any) -> dict[str, Any]:
    """A metadata dict with Axes; keyword names use '_' for '-' (ElapsedTime_ms)."""
    axes = {k: v for k, v in (("time", time), ("z", z)) if v is not None}
    extra = {
        k.replace("_ms", "-ms") if k.startswith("Elapsed") else k: v for k, v in metadata.items()
    }
    return {"Axes": axes, **extra}


# -- parse_float / pixel_size_um / z_step_um / interval_s --------------------------------------

PARSE_CASES: list[tuple[object, float | None]] = [
    (1, 1.0),
    (0.5, 0.5),
    ("0.5", 0.5),
    (" 2 ", 2.0),
    ("1e3", 1000.0),
    ("-3", -3.0),
    (np.float32(0.25), 0.25),
    (np.int64(3), 3.0),
    (True, None),
    (None, None),
    ("", None),
    ("abc", None),
    ("1.0 um", None),
    ("nan", None),
    (math.nan, None),
    (math.inf, None),
    ("-inf", None),
    ([1.0], None),
    ({"a": 1}, None),
    (10**400, None),
]


@pytest.mark.parametrize(("value", "expected"), PARSE_CASES)
def test_parse_float(value: object, expected: float | None) -> None:
    assert parse_float(value) == expected


@given(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(), st.binary()))
def test_parse_float_never_raises(value: object) -> None:
    result = parse_float(value)
    assert result is None or math.isfinite(result)


PIXEL_CASES: list[tuple[str, dict[str, Any], float | None]] = [
    ("pycro-manager key", {"PixelSize_um": 1.0}, 1.0),
    ("studio key", {"PixelSizeUm": 0.5}, 0.5),
    ("text", {"PixelSizeUm": "0.065"}, 0.065),
    ("uncalibrated 0", {"PixelSize_um": 0.0}, None),
    ("negative", {"PixelSize_um": -1.0}, None),
    ("nan", {"PixelSize_um": math.nan}, None),
    ("inf", {"PixelSize_um": math.inf}, None),
    ("not a number", {"PixelSize_um": "n/a"}, None),
    ("absurd", {"PixelSize_um": MAX_PIXEL_SIZE_UM + 1}, None),
    ("largest believable", {"PixelSize_um": MAX_PIXEL_SIZE_UM}, MAX_PIXEL_SIZE_UM),
    ("missing", {}, None),
    ("None skipped", {"PixelSize_um": None, "PixelSizeUm": 0.5}, 0.5),
    ("first key wins", {"PixelSize_um": 0.2, "PixelSizeUm": 0.5}, 0.2),
    ("nested summary", {"Summary": {"PixelSize_um": 0.3}}, 0.3),
    ("nested studio summary", {"Summary": {"PixelSizeUm": "0.3"}}, 0.3),
    ("top level before summary", {"PixelSizeUm": 0.1, "Summary": {"PixelSize_um": 0.3}}, 0.1),
    ("summary not a mapping", {"Summary": "PixelSize_um=3"}, None),
    ("recorded 10X", DEMO_TZC_FRAMES[0], 1.0),
    ("recorded sequenced (text tags)", DEMO_SEQUENCED_FRAMES[0], 1.0),
    ("recorded 40X", DEMO_POSITIONS_FRAMES[0], 0.25),
    ("recorded uncalibrated", DEMO_UNCALIBRATED_FRAMES[0], None),
    ("recorded summary", DEMO_SUMMARY_METADATA, 1.0),
]


@pytest.mark.parametrize(
    ("metadata", "expected"), [c[1:] for c in PIXEL_CASES], ids=[c[0] for c in PIXEL_CASES]
)
def test_pixel_size_um(metadata: dict[str, Any], expected: float | None) -> None:
    assert pixel_size_um(metadata) == expected


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"z-step_um": 0.5}, 0.5),
        ({"z-step_um": "-0.5"}, 0.5),  # a direction, not an error
        ({"z-step_um": 0}, None),
        ({"z-step_um": "x"}, None),
        ({"Summary": {"z-step_um": 2}}, 2.0),
        (DEMO_SUMMARY_METADATA, None),
        ({}, None),
    ],
)
def test_z_step_um(metadata: dict[str, Any], expected: float | None) -> None:
    assert z_step_um(metadata) == expected


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"Interval_ms": 500}, 0.5),
        ({"Interval_ms": "250.0"}, 0.25),
        ({"Interval_ms": 0}, None),  # "as fast as possible"
        ({"Interval_ms": -5}, None),
        ({"Summary": {"Interval_ms": 1000}}, 1.0),
        (DEMO_SUMMARY_METADATA, None),
        ({}, None),
    ],
)
def test_interval_s(metadata: dict[str, Any], expected: float | None) -> None:
    assert interval_s(metadata) == expected


# -- the tracker on the metadata recorded from the demo microscope -----------------------------


def test_recorded_tzc() -> None:
    result = track(DEMO_TZC_FRAMES, DEMO_SUMMARY_METADATA)
    assert result.pixel_size_um == 1.0
    assert result.z_step_um == 2.0
    assert result.interval_s is not None
    # first arrivals 0.0, 111.3, 211.1 ms: median step 105.6 ms for a requested 0.1 s
    assert result.interval_s == pytest.approx(0.1, rel=0.1)


def test_recorded_sequenced_uses_time_received_by_core() -> None:
    assert {md["ElapsedTime-ms"] for md in DEMO_SEQUENCED_FRAMES} == {0.0}
    result = track(DEMO_SEQUENCED_FRAMES)
    assert result.pixel_size_um == 1.0
    assert result.z_step_um is None
    # 4 frames 10.6-12.6 ms apart (10 ms exposure)
    assert result.interval_s == pytest.approx(0.0106, abs=1e-4)


def test_recorded_sequenced_without_timestamps_has_no_interval() -> None:
    frames = [
        {k: v for k, v in md.items() if k != "TimeReceivedByCore"} for md in DEMO_SEQUENCED_FRAMES
    ]
    assert track(frames).interval_s is None


def test_recorded_positions() -> None:
    assert track(DEMO_POSITIONS_FRAMES) == Calibration(0.25, 1.0, None)


def test_recorded_uncalibrated() -> None:
    assert track(DEMO_UNCALIBRATED_FRAMES) == Calibration(None, None, None)


def test_recorded_frames_are_not_modified() -> None:
    before = copy.deepcopy(DEMO_TZC_FRAMES)
    track(DEMO_TZC_FRAMES)
    assert before == DEMO_TZC_FRAMES


# -- z step -------------------------------------------------------------------------------------

Z_CASES: list[tuple[str, list[dict[str, Any]], float | None]] = [
    ("no z", [frame(time=0)], None),
    ("one slice", [frame(z=0, ZPosition_um_Intended=5.0)], None),
    (
        "two slices",
        [frame(z=0, ZPosition_um_Intended=5.0), frame(z=1, ZPosition_um_Intended=5.5)],
        0.5,
    ),
    (
        "descending stack",
        [frame(z=i, ZPosition_um_Intended=10.0 - 2 * i) for i in range(4)],
        2.0,
    ),
    (
        "missing index",
        [frame(z=0, ZPosition_um_Intended=0.0), frame(z=2, ZPosition_um_Intended=1.0)],
        0.5,
    ),
    (
        "positions missing on some images",
        [frame(z=0, ZPosition_um_Intended=0.0), frame(z=1), frame(z=2, ZPosition_um_Intended=0.6)],
        0.3,
    ),
    (
        "text positions (Studio)",
        [frame(z=0, ZPositionUm="1.0"), frame(z=1, ZPositionUm="1.25")],
        0.25,
    ),
    (
        "ZPosition_um",
        [frame(z=0, ZPosition_um=0), frame(z=1, ZPosition_um=3)],
        3.0,
    ),
    (
        "stated z-step_um wins",
        [
            frame(z=0, ZPosition_um_Intended=0.0, **{"z-step_um": 0.7}),
            frame(z=1, ZPosition_um_Intended=1.0),
        ],
        0.7,
    ),
    (
        "out of order arrival",
        [frame(z=i, ZPosition_um_Intended=0.4 * i) for i in (3, 0, 2, 1)],
        0.4,
    ),
    (
        "an outlier slice",
        [
            frame(z=i, ZPosition_um_Intended=v)
            for i, v in enumerate([0.0, 1.0, 2.0, 9.0, 10.0, 11.0])
        ],
        1.0,
    ),
]


@pytest.mark.parametrize(
    ("frames", "expected"), [c[1:] for c in Z_CASES], ids=[c[0] for c in Z_CASES]
)
def test_z_step(frames: list[dict[str, Any]], expected: float | None) -> None:
    assert track(frames).z_step_um == pytest.approx(expected)


def test_z_step_per_channel_and_position_offsets() -> None:
    """Stacks are grouped by every other axis: offsets between them do not count."""
    frames = []
    for position, base in (("A1", 0.0), ("B2", 100.0)):
        for channel, offset in (("DAPI", 0.0), ("FITC", 0.35)):
            for z in range(3):
                frames.append(
                    {
                        "Axes": {"position": position, "channel": channel, "z": z},
                        "ZPosition_um_Intended": base + offset + 0.5 * z,
                    }
                )
    # interleave as an order 'tzc' acquisition would
    frames.sort(key=lambda md: (md["Axes"]["position"], md["Axes"]["z"]))
    assert track(frames).z_step_um == pytest.approx(0.5)


def test_z_step_when_z_is_the_outer_loop() -> None:
    """Order 'zt' over many time points: each stack completes only at the end; still found."""
    frames = [
        {"Axes": {"z": z, "time": t}, "ZPosition_um_Intended": 1.5 * z}
        for z in range(3)
        for t in range(1000)
    ]
    assert track(frames).z_step_um == pytest.approx(1.5)


def test_z_step_ignores_unhashable_axis_values() -> None:
    frames = [{"Axes": {"z": z, "odd": [1]}, "ZPosition_um_Intended": 1.0 * z} for z in range(3)]
    assert track(frames).z_step_um is None


def test_z_step_equal_positions_warns() -> None:
    frames = [frame(z=i, ZPosition_um_Intended=3.0) for i in range(3)]
    with pytest.warns(
        CalibrationWarning, match="z step .* positions of different z indices are equal"
    ):
        assert track(frames).z_step_um is None


@given(
    step=st.floats(0.01, 100.0),
    start=st.floats(-1000, 1000),
    n=st.integers(2, 12),
    channel_offsets=st.lists(st.floats(-5, 5), min_size=1, max_size=3),
    data=st.data(),
)
def test_z_step_property(
    step: float, start: float, n: int, channel_offsets: list[float], data: st.DataObject
) -> None:
    frames = [
        {"Axes": {"channel": c, "z": z, "time": 0}, "ZPosition_um_Intended": start + off + step * z}
        for c, off in enumerate(channel_offsets)
        for z in range(n)
    ]
    frames = data.draw(st.permutations(frames))
    result = track(frames).z_step_um
    assert result == pytest.approx(step, rel=1e-6, abs=1e-9)


# -- interval -----------------------------------------------------------------------------------


def _timelapse(elapsed_ms: list[float], per_time: int = 1) -> list[dict[str, Any]]:
    return [
        {"Axes": {"time": t, "z": z}, "ElapsedTime-ms": ms + z}
        for t, ms in enumerate(elapsed_ms)
        for z in range(per_time)
    ]


INTERVAL_CASES: list[tuple[str, list[dict[str, Any]], float | None]] = [
    ("single time point", _timelapse([0.0]), None),
    ("regular", _timelapse([0.0, 100.0, 200.0, 300.0]), 0.1),
    ("first arrival of each time point", _timelapse([0.0, 500.0, 1000.0], per_time=5), 0.5),
    ("all 0.0 (sequenced)", _timelapse([0.0, 0.0, 0.0, 0.0]), None),
    ("a repeated 0.0", _timelapse([0.0, 0.0, 200.0, 300.0, 400.0]), 0.1),
    ("a pause", _timelapse([0.0, 100.0, 200.0, 5000.0, 5100.0, 5200.0]), 0.1),
    ("text values", [frame(time=t, ElapsedTime_ms=str(250.0 * t)) for t in range(3)], 0.25),
    ("missing time indices", [frame(time=t, ElapsedTime_ms=50.0 * t) for t in (0, 2, 6)], 0.05),
    (
        "out of order: the earliest image counts",
        [
            frame(time=1, ElapsedTime_ms=130.0),
            frame(time=0, ElapsedTime_ms=20.0),
            frame(time=1, ElapsedTime_ms=100.0),
            frame(time=0, ElapsedTime_ms=0.0),
            frame(time=2, ElapsedTime_ms=200.0),
        ],
        0.1,
    ),
    (
        "stated Interval_ms wins",
        [frame(time=t, ElapsedTime_ms=90.0 * t, Interval_ms=100) for t in range(3)],
        0.1,
    ),
    (
        "Interval_ms 0 is not stated",
        [frame(time=t, ElapsedTime_ms=90.0 * t, Interval_ms=0) for t in range(3)],
        0.09,
    ),
    ("no time axis", [frame(z=z, ElapsedTime_ms=10.0 * z) for z in range(3)], None),
    (
        "TimeReceivedByCore when ElapsedTime is all 0.0",
        [
            frame(
                time=t,
                ElapsedTime_ms=0.0,
                TimeReceivedByCore=f"2024-02-29 23:59:59.{990 + 5 * t:06d}",
            )
            for t in range(3)
        ],
        0.000005,
    ),
    (
        "TimeReceivedByCore across midnight and short fractions",
        [
            frame(time=0, ElapsedTime_ms=0.0, TimeReceivedByCore="2024-12-31 23:59:59.9"),
            frame(time=1, ElapsedTime_ms=0.0, TimeReceivedByCore="2025-01-01 00:00:00.1"),
            frame(time=2, ElapsedTime_ms=0.0, TimeReceivedByCore="2025-01-01 00:00:00.3"),
        ],
        0.2,
    ),
    (
        "unparsable TimeReceivedByCore",
        [frame(time=t, ElapsedTime_ms=0.0, TimeReceivedByCore="yesterday") for t in range(3)],
        None,
    ),
]


@pytest.mark.parametrize(
    ("frames", "expected"), [c[1:] for c in INTERVAL_CASES], ids=[c[0] for c in INTERVAL_CASES]
)
def test_interval(frames: list[dict[str, Any]], expected: float | None) -> None:
    result = track(frames).interval_s
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected, rel=1e-6)


@given(
    interval_ms=st.floats(1.0, 1e6),
    n=st.integers(3, 30),
    per_time=st.integers(1, 4),
    jitter=st.lists(st.floats(0.0, 0.01), min_size=30, max_size=30),
)
def test_interval_property(interval_ms: float, n: int, per_time: int, jitter: list[float]) -> None:
    """Jitter below 1% of the interval keeps the estimate within 2%."""
    frames = [
        {
            "Axes": {"time": t, "channel": c},
            "ElapsedTime-ms": interval_ms * (t + jitter[t]) + c * 0.001 * interval_ms,
        }
        for t in range(n)
        for c in range(per_time)
    ]
    result = track(frames).interval_s
    assert result == pytest.approx(interval_ms / 1000.0, rel=0.02)


# -- pixel size, explicit values, warnings ------------------------------------------------------


def test_pixel_size_first_valid_value() -> None:
    frames = [frame(time=0, PixelSize_um=0.0), frame(time=1, PixelSizeUm="0.5"), frame(time=2)]
    assert track(frames).pixel_size_um == 0.5


def test_pixel_size_from_summary() -> None:
    assert track([frame(time=0)], summary={"PixelSize_um": 0.65}).pixel_size_um == 0.65


def test_pixel_size_change_warns_once_and_keeps_the_first() -> None:
    frames = [frame(time=t, PixelSize_um=v) for t, v in enumerate([1.0, 0.5, 0.25, 1.0])]
    with pytest.warns(CalibrationWarning, match="changed from 1.0 to 0.5") as record:
        result = track(frames)
    assert result.pixel_size_um == 1.0
    assert len(record) == 1


@pytest.mark.parametrize(
    ("metadata", "kind"),
    [
        ({"PixelSize_um": -1.0}, "pixel size"),
        ({"PixelSize_um": "n/a"}, "pixel size"),
        ({"PixelSize_um": math.nan}, "pixel size"),
        ({"PixelSize_um": 5000.0}, "pixel size"),
        ({"z-step_um": "bad"}, "z step"),
        ({"z-step_um": math.inf}, "z step"),
        ({"Interval_ms": -100.0}, "time interval"),
        ({"Interval_ms": "soon"}, "time interval"),
    ],
)
def test_absurd_stated_values_warn_once(metadata: dict[str, Any], kind: str) -> None:
    tracker = CalibrationTracker()
    with pytest.warns(CalibrationWarning, match=kind) as record:
        for t in range(3):
            tracker.update({"time": t}, metadata)
        result = tracker.result()
    assert len(record) == 1
    assert record[0].filename == __file__  # attributed to the caller
    assert result == Calibration()


def test_zero_is_silent() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = track(
            [frame(time=0, z=0, PixelSize_um=0, Interval_ms=0, **{"z-step_um": 0})],
            summary={"PixelSize_um": 0.0, "z-step_um": 0, "Interval_ms": 0},
        )
    assert result == Calibration()


def test_each_kind_warns_once() -> None:
    tracker = CalibrationTracker()
    with pytest.warns(CalibrationWarning) as record:
        for _ in range(3):
            tracker.update({}, {"PixelSize_um": -1, "z-step_um": "x", "Interval_ms": "y"})
    assert sorted(str(w.message).split(":")[0] for w in record) == [
        "pixel size (um)",
        "time interval (s)",
        "z step (um)",
    ]
    assert all(issubclass(w.category, MMTiffSinkWarning) for w in record)


def test_explicit_values_win() -> None:
    explicit = Calibration(pixel_size_um=0.1, z_step_um=0.3, interval_s=60.0)
    tracker = CalibrationTracker()
    for md in DEMO_TZC_FRAMES:
        tracker.update(md["Axes"], md)
    assert tracker.result(explicit) == explicit
    partial = tracker.result(Calibration(z_step_um=0.3))
    assert partial.pixel_size_um == 1.0
    assert partial.z_step_um == 0.3
    assert partial.interval_s == pytest.approx(0.1, rel=0.1)


@pytest.mark.parametrize(
    ("explicit", "kind"),
    [
        (Calibration(pixel_size_um=0.0), "pixel size"),
        (Calibration(pixel_size_um=-0.5), "pixel size"),
        (Calibration(pixel_size_um=math.nan), "pixel size"),
        (Calibration(pixel_size_um=2000.0), "pixel size"),
        (Calibration(z_step_um=math.inf), "z step"),
        (Calibration(interval_s=-1.0), "time interval"),
    ],
)
def test_absurd_explicit_values_are_dropped(explicit: Calibration, kind: str) -> None:
    tracker = CalibrationTracker()
    for md in DEMO_TZC_FRAMES:
        tracker.update(md["Axes"], md)
    with pytest.warns(CalibrationWarning, match=f"{kind}.*given explicitly"):
        result = tracker.result(explicit)
    assert result.pixel_size_um == 1.0
    assert result.z_step_um == 2.0
    assert result.interval_s == pytest.approx(0.1, rel=0.1)


def test_calibration_is_frozen() -> None:
    calibration = Calibration(1.0, 2.0, 3.0)
    with pytest.raises(AttributeError):
        calibration.pixel_size_um = 2.0  # type: ignore[misc]


def test_result_can_be_asked_twice_and_tracking_continues() -> None:
    tracker = CalibrationTracker()
    tracker.update({"time": 0}, {"ElapsedTime-ms": 0.0})
    assert tracker.result().interval_s is None
    tracker.update({"time": 1}, {"ElapsedTime-ms": 40.0})
    assert tracker.result().interval_s == pytest.approx(0.04)
    assert tracker.result().interval_s == pytest.approx(0.04)


def test_update_is_cheap_and_bounded() -> None:
    tracker = CalibrationTracker()
    start = time.perf_counter()
    for t in range(2000):
        for c in range(2):
            for z in range(10):
                tracker.update(
                    {"time": t, "channel": c, "z": z},
                    {
                        "PixelSize_um": 0.5,
                        "ElapsedTime-ms": 1000.0 * t + z,
                        "ZPosition_um_Intended": 0.2 * z,
                    },
                )
    elapsed = time.perf_counter() - start
    result = tracker.result()
    assert result == Calibration(0.5, pytest.approx(0.2), pytest.approx(1.0))  # type: ignore[arg-type]
    assert elapsed < 5.0, elapsed


# -- a real acquisition on the demo microscope --------------------------------------------------


@pytest.mark.acquisition
@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_demo_acquisition_through_mapper_and_tracker(
    microscope: Any, tzc_events: list[dict[str, Any]], objective: str
) -> None:
    set_objective(microscope, objective)
    mapper = AxisMapper()
    tracker = CalibrationTracker()
    placements = []

    def hook(image: Any, metadata: dict[str, Any]) -> None:
        placements.append(mapper.map(metadata["Axes"]))
        tracker.update(metadata["Axes"], metadata)

    record_acquisition(tzc_events, image_process_fn=hook)
    assert mapper.channel_names == ["DAPI", "FITC"]
    assert {p.file_key for p in placements} == {()}
    assert sorted((p.c, p.z, p.t) for p in placements) == [
        (c, z, t) for c in range(2) for z in range(3) for t in range(3)
    ]
    result = tracker.result()
    assert result.pixel_size_um == OBJECTIVES[objective]
    assert result.z_step_um == 2.0
    assert result.interval_s == pytest.approx(0.1, rel=0.25)


@pytest.mark.acquisition
def test_demo_sequenced_acquisition_interval(microscope: Any) -> None:
    """Sequenced frames (ElapsedTime-ms all 0.0): the interval is the camera's frame period."""
    tracker = CalibrationTracker()
    frames = record_acquisition(multi_d_events(num_time_points=8))
    for _, metadata in frames:
        tracker.update(metadata["Axes"], metadata)
    assert {md["ElapsedTime-ms"] for _, md in frames} == {0.0}
    result = tracker.result()
    assert result.pixel_size_um == 1.0
    assert result.interval_s is not None
    assert 0.008 < result.interval_s < 0.05  # 10 ms exposure
