"""The plan of a run: pycro-manager's events computed on demand, absurd plans refused early."""

from __future__ import annotations

import json
import textwrap
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mmtiffsink.cli import main
from mmtiffsink.errors import ConfigError
from mmtiffsink.limits import MAX_PLANES
from mmtiffsink.runfile import (
    AcquisitionConfig,
    EventPlan,
    RunConfig,
    format_plan,
    load_config,
    plan_events,
    planned_files,
)


def _write(folder: Path, text: str) -> Path:
    path = folder / "run.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _pycromanager_events(acq: AcquisitionConfig) -> list[dict[str, Any]]:
    """``multi_d_acquisition_events`` called with the run file's acquisition."""
    pycromanager = pytest.importorskip("pycromanager")
    kwargs: dict[str, Any] = {"order": acq.order}
    if acq.num_time_points is not None:
        kwargs.update(num_time_points=acq.num_time_points, time_interval_s=acq.time_interval_s)
    if acq.z_step_um is not None:
        kwargs.update(z_start=acq.z_start_um, z_end=acq.z_end_um, z_step=acq.z_step_um)
    if acq.channels is not None:
        kwargs.update(channel_group=acq.channel_group, channels=list(acq.channels))
        if acq.channel_exposures_ms is not None:
            kwargs["channel_exposures_ms"] = list(acq.channel_exposures_ms)
    if acq.positions:
        if acq.positions[0].z_um is not None:
            kwargs["xyz_positions"] = [[p.x_um, p.y_um, p.z_um] for p in acq.positions]
        else:
            kwargs["xy_positions"] = [[p.x_um, p.y_um] for p in acq.positions]
        kwargs["position_labels"] = acq.position_labels
    return _plain(pycromanager.multi_d_acquisition_events(**kwargs))  # type: ignore[no-any-return]


TWO = [{"label": "A1", "x_um": 0.5, "y_um": -3}, {"x_um": 10, "y_um": 20}]
TWO_Z = [{"x_um": 0, "y_um": 0, "z_um": 100}, {"x_um": 1, "y_um": 2, "z_um": -7.25}]
CHANNELS = {"channel_group": "Channel", "channels": ["DAPI", "FITC", "Cy5"]}
Z = {"z_start_um": -1, "z_end_um": 1, "z_step_um": 0.5}
PLANS: list[dict[str, Any]] = [
    {},
    {"num_time_points": 4},
    {"num_time_points": 3, "time_interval_s": 1.5},
    Z,
    {**CHANNELS, "channel_exposures_ms": [5, 10.5, 20]},
    {"positions": TWO},
    {"positions": TWO_Z, **Z},
    {"num_time_points": 2, "positions": TWO, **CHANNELS, **Z, "order": "tpcz"},
    {"num_time_points": 2, "positions": TWO_Z, **CHANNELS, **Z, "order": "ptzc"},
    {"num_time_points": 2, **CHANNELS, **Z, "order": "czt"},
    {"num_time_points": 3, "time_interval_s": 0.1, "positions": TWO, "order": "pt"},
    {**CHANNELS, **Z, "order": "zc"},
]


@pytest.mark.parametrize("acquisition", PLANS, ids=range(len(PLANS)))
def test_plan_is_pycromanagers_events(acquisition: dict[str, Any]) -> None:
    config = RunConfig.model_validate({"acquisition": acquisition})
    plan = plan_events(config)
    expected = _pycromanager_events(config.acquisition)
    events = list(plan)
    assert events == expected
    assert [json.dumps(event) for event in events] == [json.dumps(e) for e in expected]
    assert len(plan) == len(expected)
    assert [plan[i] for i in range(len(plan))] == expected  # built from the index alone
    assert plan[-1] == expected[-1]
    assert plan[1::2] == expected[1::2]
    with pytest.raises(IndexError):
        plan[len(plan)]
    files = planned_files(config)
    assert sum(f.frames for f in files) == len(expected)


def test_z_stack_ends_at_z_end() -> None:
    """numpy.arange in pycro-manager can add a slice past z_end_um; the plan does not."""
    config = RunConfig.model_validate(
        {"acquisition": {"z_start_um": 0, "z_end_um": 0.2, "z_step_um": 0.1}}
    )
    assert config.acquisition.num_z_slices == 3
    assert [event["z"] for event in plan_events(config)] == pytest.approx([0, 0.1, 0.2])
    assert planned_files(config)[0].shape == (1, 3, 1)
    assert len(_pycromanager_events(config.acquisition)) == 4  # why the plan is our own
    assert "3 z slices" in format_plan(config) and "Events: 3 (3 frames" in format_plan(config)


def test_an_axis_left_out_of_order_is_an_error(tmp_path: Path) -> None:
    """Positions without p in order made pycro-manager put a list of z values in one event."""
    path = _write(
        tmp_path,
        """
        acquisition:
          z_start_um: 0
          z_end_um: 1
          z_step_um: 1
          positions:
            - {x_um: 0, y_um: 0}
          order: tcz
        """,
    )
    with pytest.raises(ConfigError, match=r"line 7: acquisition\.order: order 'tcz' has no 'p'"):
        load_config(path)


ABSURD: list[tuple[str, str, str]] = [
    ("num_time_points: 1000000000", "num_time_points", "1000000000 time points make"),
    (
        "num_time_points: 3000000\n  channel_group: Channel\n  channels: [A, B, C, D]",
        "num_time_points",
        "3000000 time points x 4 channels make 12000000 planes",
    ),
    (
        "num_time_points: 1001\n  z_start_um: 0\n  z_end_um: 9999\n  z_step_um: 1",
        "z_step_um",  # the largest factor
        "1001 time points x 10000 z slices",
    ),
    (
        "num_time_points: 200\n  z_start_um: 0\n  z_end_um: 9999\n  z_step_um: 1\n"
        "  channel_group: Channel\n  channels: [A, B, C, D, E]",
        "z_step_um",
        "200 time points x 10000 z slices x 5 channels make 10000000",
    ),
]


@pytest.mark.parametrize(("text", "key", "fragment"), ABSURD, ids=range(len(ABSURD)))
def test_absurd_plans_name_the_key(tmp_path: Path, text: str, key: str, fragment: str) -> None:
    path = _write(tmp_path, f"acquisition:\n  {text}\n")
    started = time.perf_counter()
    try:
        load_config(path)
    except ConfigError as exc:
        message = str(exc)
    else:
        message = ""
    assert time.perf_counter() - started < 0.5
    if fragment.endswith("10000000"):  # exactly MAX_PLANES: legal
        assert message == ""
        return
    assert f"acquisition.{key}: {fragment}" in message, message
    assert f"more than {MAX_PLANES} (mmtiffsink.limits.MAX_PLANES)" in message


def test_positions_multiply_files_not_planes() -> None:
    positions = [{"x_um": i, "y_um": 0} for i in range(20)]
    config = RunConfig.model_validate(
        {"acquisition": {"num_time_points": MAX_PLANES // 2, "positions": positions}}
    )
    plan = plan_events(config)
    assert len(plan) == 20 * MAX_PLANES // 2
    assert plan[-1] == {"axes": {"time": MAX_PLANES // 2 - 1, "position": 19}, "x": 19, "y": 0}
    assert [f.frames for f in planned_files(config)] == [MAX_PLANES // 2] * 20


MILLION = """
acquisition:
  num_time_points: 1000
  z_start_um: 0
  z_end_um: 99
  z_step_um: 1
  channel_group: Channel
  channels: [DAPI, FITC, Rhodamine, Cy5, A, B, C, D, E, F]
output:
  directory: out
"""


def test_dry_run_of_a_million_events_builds_only_what_it_shows(tmp_path: Path) -> None:
    """The plan was a list of every event: 40 s and 1 GB for this file, measured before."""
    config = load_config(_write(tmp_path, MILLION))
    tracemalloc.start()
    started = time.perf_counter()
    try:
        text = format_plan(config)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "Events: 1000000 (1000000 frames expected)" in text
    assert f"{tmp_path / 'out' / 'acq.tif'}  C=10 Z=100 T=1000, 1000000 frames" in text
    last = '  1000000 {"axes": {"time": 999, "channel": "F", "z": 99}, "config_group": '
    assert last + '["Channel", "F"], "z": 99.0}' in text
    assert elapsed < 0.5, elapsed
    assert peak < 2_000_000, peak


def test_cli_dry_run_of_a_million_events(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--dry-run", str(_write(tmp_path, MILLION))]) == 0
    out = capsys.readouterr().out
    assert "Events: 1000000" in out
    assert out.rstrip().endswith("Dry run: nothing was acquired.")
    assert not (tmp_path / "out").exists()


def test_plan_iterates_lazily() -> None:
    config = RunConfig.model_validate({"acquisition": {"num_time_points": MAX_PLANES}})
    plan = plan_events(config)
    assert isinstance(plan, EventPlan)
    first = [event for _, event in zip(range(3), plan, strict=False)]
    assert first == [{"axes": {"time": t}} for t in range(3)]
