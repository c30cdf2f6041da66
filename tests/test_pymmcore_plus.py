"""TiffHandler on real pymmcore-plus MDAs (CMMCorePlus on Micro-Manager's demo adapters)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from tests.writer_support import check_ome_schema

pytest.importorskip("pymmcore_plus")
pytest.importorskip("useq")
mm_test_adapters = pytest.importorskip("mm_test_adapters")

from pymmcore_plus import CMMCorePlus  # noqa: E402
from pymmcore_plus.mda import SkipEvent, mda_listeners_connected  # noqa: E402
from useq import MDAEvent, MDASequence  # noqa: E402

from mmtiffsink.errors import MissingFramesWarning, OutputExistsError  # noqa: E402
from mmtiffsink.pymmcore_plus import TiffHandler, event_axes, jsonable  # noqa: E402

pytestmark = pytest.mark.acquisition
REPO = Path(__file__).resolve().parents[1]
MDA_EXAMPLE = REPO / "mmtiffsink" / "examples" / "demo_pymmcore_plus.yaml"
WIDTH, HEIGHT = 64, 48


@pytest.fixture(scope="module")
def demo() -> Iterator[CMMCorePlus]:
    core = CMMCorePlus()
    adapters = mm_test_adapters.device_adapter_path()
    core.setDeviceAdapterSearchPaths([adapters])
    core.loadSystemConfiguration(os.path.join(adapters, "MMConfig_demo.cfg"))
    yield core
    core.unloadAllDevices()


@pytest.fixture
def core(demo: CMMCorePlus) -> CMMCorePlus:
    demo.setConfig("Objective", "20X")  # 0.5 um/px
    demo.setProperty("Camera", "OnCameraCCDXSize", WIDTH)
    demo.setProperty("Camera", "OnCameraCCDYSize", HEIGHT)
    demo.setProperty("Camera", "Mode", "Noise")  # distinct frames
    demo.setExposure(1.0)
    demo.waitForSystem()
    return demo


class Recorder:
    """A second handler: copies of what frameReady delivered."""

    def __init__(self) -> None:
        self.frames: list[tuple[np.ndarray, MDAEvent, dict[str, Any]]] = []

    def frameReady(self, img: np.ndarray, event: MDAEvent, meta: dict[str, Any]) -> None:
        self.frames.append((img.copy(), event, dict(meta)))


def _json(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else json.loads(value)


def _sequence(**changes: Any) -> MDASequence:
    fields: dict[str, Any] = {
        "stage_positions": [{"x": 0, "y": 0, "name": "A1"}, {"x": 50, "y": 20, "name": "B2"}],
        "channels": [{"config": "FITC"}, {"config": "DAPI"}],
        "z_plan": {"range": 2, "step": 0.5},
        "time_plan": {"interval": 0.05, "loops": 3},
        "axis_order": "tpcz",
    }
    fields.update(changes)
    return MDASequence(**fields)


def test_positions_channels_z_t_pixel_by_pixel(core: CMMCorePlus, tmp_path: Path) -> None:
    from mmtiffsink.inspect import file_info

    seq = _sequence()
    recorder = Recorder()
    with TiffHandler(tmp_path, name="exp1") as handler:
        core.mda.run(seq, output=[handler, recorder])
    assert [p.name for p in handler.files] == ["exp1_A1.tif", "exp1_B2.tif"]
    assert handler.frames == len(recorder.frames) == 2 * 2 * 5 * 3
    assert handler.blank_planes == {p: 0 for p in handler.files}
    by_name = {p.name: p for p in handler.files}
    stacks = {}
    for name, path in by_name.items():
        with tifffile.TiffFile(path) as tif:
            assert tif.is_imagej
            ij = tif.imagej_metadata
            assert ij is not None
            data = tif.asarray()
            assert data.shape == (3, 5, 2, HEIGHT, WIDTH)  # T Z C Y X
            assert ij["spacing"] == pytest.approx(0.5)
            assert ij["finterval"] == pytest.approx(0.05)
            x_res = tif.pages[0].tags["XResolution"].value
            assert x_res[1] / x_res[0] == pytest.approx(0.5)
        assert file_info(path).channel_names == ["FITC", "DAPI"]
        stacks[name] = data
    order = {"FITC": 0, "DAPI": 1}
    for img, event, _meta in recorder.frames:
        data = stacks[f"exp1_{event.pos_name}.tif"]
        c = order[event.channel.config]
        np.testing.assert_array_equal(data[event.index["t"], event.index["z"], c], img)


def test_metadata_and_channel_names(core: CMMCorePlus, tmp_path: Path) -> None:
    from mmtiffsink.inspect import file_info

    seq = _sequence(stage_positions=[], time_plan={"interval": 0, "loops": 2})
    with TiffHandler(tmp_path, name="m") as handler:
        core.mda.run(seq, output=handler)
    (path,) = handler.files
    assert path.name == "m.tif"
    info = file_info(path)
    assert info.channel_names == ["FITC", "DAPI"]
    assert info.shape == {"T": 2, "Z": 5, "C": 2, "Y": HEIGHT, "X": WIDTH}
    assert info.pixel_size_um == pytest.approx(0.5)
    assert info.z_step_um == pytest.approx(0.5)
    assert info.interval_s is None or info.interval_s > 0  # as fast as possible: measured
    with tifffile.TiffFile(path) as tif:
        meta = _json(tif.pages[1].tags[51123].value)
    assert meta["format"] == "frame-dict"
    assert meta["PixelSize_um"] == pytest.approx(0.5)
    assert "ZPosition_um_Intended" in meta and "ElapsedTime-ms" in meta
    assert meta["mda_event"]["channel"]["config"] in ("FITC", "DAPI")
    assert "sequence" not in meta["mda_event"]  # the whole plan, not in every frame
    assert handler.summary is not None and handler.summary["format"] == "summary-dict"


def test_explicit_options_win(core: CMMCorePlus, tmp_path: Path) -> None:
    from mmtiffsink.inspect import file_info

    seq = _sequence(stage_positions=[], channels=[], time_plan={"interval": 0.05, "loops": 2})
    with TiffHandler(tmp_path, "x", z_step_um=2.0, interval_s=9.0, pixel_size_um=0.1) as h:
        core.mda.run(seq, output=h)
    info = file_info(h.files[0])
    assert (info.pixel_size_um, info.z_step_um, info.interval_s) == pytest.approx((0.1, 2.0, 9.0))


def test_grid_is_split_into_files(core: CMMCorePlus, tmp_path: Path) -> None:
    seq = MDASequence(
        stage_positions=[{"x": 0, "y": 0, "name": "W"}],
        grid_plan={"rows": 1, "columns": 2, "fov_width": 10, "fov_height": 10},
        channels=["DAPI"],
    )
    with TiffHandler(tmp_path, name="g") as handler:
        core.mda.run(seq, output=handler)
    assert sorted(p.name for p in handler.files) == ["g_W_grid0.tif", "g_W_grid1.tif"]


def test_skipped_frames_are_blank(core: CMMCorePlus, tmp_path: Path) -> None:
    engine = core.mda.engine
    assert engine is not None
    original = engine.setup_event

    def setup_event(event: MDAEvent) -> None:
        if event.index.get("z") == 1 and event.index.get("t") == 0:
            raise SkipEvent
        original(event)

    seq = _sequence(stage_positions=[], channels=["DAPI"], time_plan={"interval": 0, "loops": 2})
    engine.setup_event = setup_event  # type: ignore[method-assign]
    try:
        with pytest.warns(MissingFramesWarning), TiffHandler(tmp_path, "s") as handler:
            core.mda.run(seq, output=handler)
    finally:
        del engine.setup_event
    (path,) = handler.files
    assert handler.frames == 9
    assert handler.blank_planes == {path: 1}
    data = tifffile.imread(path)
    assert data.shape == (2, 5, HEIGHT, WIDTH)
    assert not data[0, 1].any() and data[1, 1].any()


def test_cancelled_run_leaves_valid_files(core: CMMCorePlus, tmp_path: Path) -> None:
    seq = _sequence(stage_positions=[], channels=["DAPI"], time_plan={"interval": 0.2, "loops": 50})
    handler = TiffHandler(tmp_path, "c")

    def cancel_soon(img: np.ndarray, event: MDAEvent, meta: dict[str, Any]) -> None:
        if event.index.get("t") == 1:
            core.mda.cancel()

    core.mda.events.frameReady.connect(cancel_soon)
    try:
        with pytest.warns(MissingFramesWarning):
            core.mda.run(seq, output=handler)
            handler.close()
    finally:
        core.mda.events.frameReady.disconnect(cancel_soon)
    assert handler.canceled
    data = tifffile.imread(handler.files[0])
    assert data.shape[1:] == (5, HEIGHT, WIDTH)
    assert handler.frames < 50 * 5


def test_writer_error_cancels_and_is_raised(core: CMMCorePlus, tmp_path: Path) -> None:
    (tmp_path / "e_B2.tif").write_bytes(b"not mine")
    seq = _sequence(channels=["DAPI"], z_plan=None, time_plan={"interval": 0.05, "loops": 40})
    seq = seq.replace(axis_order="ptcz")  # all of A1, then B2
    handler = TiffHandler(tmp_path, "e", core=core)
    recorder = Recorder()
    core.mda.run(seq, output=[handler, recorder])
    assert isinstance(handler.error, OutputExistsError)
    assert len(recorder.frames) < 80  # cancelled at B2's first frame
    with pytest.raises(OutputExistsError):
        handler.close()
    assert (tmp_path / "e_B2.tif").read_bytes() == b"not mine"
    assert tifffile.imread(tmp_path / "e_A1.tif").shape == (40, HEIGHT, WIDTH)


def test_writer_error_without_core_argument(core: CMMCorePlus, tmp_path: Path) -> None:
    (tmp_path / "n.tif").write_bytes(b"x")
    seq = MDASequence(time_plan={"interval": 0.05, "loops": 100})
    recorder = Recorder()
    with pytest.raises(OutputExistsError), TiffHandler(tmp_path, "n") as handler:
        core.mda.run(seq, output=[handler, recorder])
    assert len(recorder.frames) < 100  # found the running core and cancelled it


def test_generator_of_events_and_run_mda_thread(core: CMMCorePlus, tmp_path: Path) -> None:
    def events() -> Iterator[MDAEvent]:
        for t in range(3):
            for c, name in enumerate(("Cy5", "DAPI")):
                yield MDAEvent(index={"t": t, "c": c}, channel={"config": name})

    recorder = Recorder()
    with TiffHandler(tmp_path, "gen") as handler:
        thread = core.run_mda(events(), output=[handler, recorder])
        thread.join(60)
    assert not thread.is_alive()
    data = tifffile.imread(handler.files[0])
    assert data.shape == (3, 2, HEIGHT, WIDTH)
    for img, event, _ in recorder.frames:
        np.testing.assert_array_equal(data[event.index["t"], event.index["c"]], img)


def test_synchronous_listener(core: CMMCorePlus, tmp_path: Path) -> None:
    handler = TiffHandler(tmp_path, "sync")
    seq = MDASequence(channels=["DAPI", "FITC"])
    with mda_listeners_connected(handler, mda_events=core.mda.events, asynchronous=False):
        core.mda.run(seq)
    handler.close()
    assert tifffile.imread(handler.files[0]).shape == (2, HEIGHT, WIDTH)
    assert handler._thread is threading.current_thread()


def test_second_sequence_is_refused(core: CMMCorePlus, tmp_path: Path) -> None:
    handler = TiffHandler(tmp_path, "twice", core=core)
    core.mda.run(MDASequence(channels=["DAPI"]), output=handler)
    core.mda.run(MDASequence(channels=["DAPI"]), output=handler)
    with pytest.raises(Exception, match="one sequence"):
        handler.close()
    assert len(handler.files) == 1


def test_event_axes_mapping() -> None:
    from mmtiffsink.pymmcore_plus import _Layout

    seq = MDASequence(
        channels=["DAPI", "DAPI"],
        stage_positions=[{"x": 0, "y": 0, "name": "A"}, {"x": 1, "y": 1}],
    )
    layout = _Layout.of(seq, {"image_infos": [{"num_camera_adapter_channels": 2}]})
    assert layout.channel_names == ("DAPI_0", "DAPI_1")
    assert not layout.position_names  # one position has no name: indices
    event = next(iter(seq))
    axes = event_axes(event, {"camera_device": "Cam2"}, layout)
    assert axes == {"position": 0, "channel": "DAPI_0", "camera": "Cam2"}
    custom = MDAEvent(index={"t": 1, "q": 2, "time": 3})  # type: ignore[dict-item]
    assert event_axes(custom) == {"time": 1, "q": 2, "index_time": 3}
    assert jsonable({"a": np.float32(1.5), "b": float("nan"), 1: (np.int64(2),)}) == {
        "a": 1.5,
        "b": None,
        "1": [2],
    }


def test_bad_option_fails_at_construction(tmp_path: Path) -> None:
    from mmtiffsink.errors import ConfigError

    with pytest.raises(ConfigError):
        TiffHandler(tmp_path, compresion="zstd")


def test_yaml_run_through_the_cli(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    text = MDA_EXAMPLE.read_text()
    config.write_text(text)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "mmtiffsink", "run", str(config), "--no-progress"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    files = sorted((tmp_path / "output").glob("*.tif"))
    assert [f.name for f in files] == ["demo_pymmcore_plus_A1.tif", "demo_pymmcore_plus_B2.tif"]
    with tifffile.TiffFile(files[0]) as tif:
        ij = tif.imagej_metadata
        assert ij is not None
        assert tif.series[0].shape == (3, 5, 3, 128, 128)
        assert ij["spacing"] == pytest.approx(1.0)
        assert ij["finterval"] == pytest.approx(0.2)


def test_yaml_dry_run_lists_the_sequence(tmp_path: Path) -> None:
    from mmtiffsink.runfile import format_plan, load_config

    config = tmp_path / "run.yaml"
    config.write_text(MDA_EXAMPLE.read_text())
    text = format_plan(load_config(config))
    assert "Events: 90 (90 frames expected)" in text
    assert "Sequence (useq): 3 time points, 2 positions, 3 channels, 5 z slices" in text
    assert "demo_pymmcore_plus_A1.tif  C=3 Z=5 T=3, 45 frames" in text
    assert '"pos_name": "B2"' in text


def test_yaml_engine_and_section_must_match(tmp_path: Path) -> None:
    from mmtiffsink.errors import ConfigError
    from mmtiffsink.runfile import load_config

    config = tmp_path / "mix.yaml"
    config.write_text("sequence:\n  channels: [DAPI]\n")
    with pytest.raises(ConfigError, match="engine: pymmcore-plus"):
        load_config(config)
    config.write_text("microscope:\n  engine: pymmcore-plus\nacquisition:\n  num_time_points: 2\n")
    with pytest.raises(ConfigError, match="not 'acquisition'"):
        load_config(config)


def test_yaml_typo_names_line_and_key(tmp_path: Path) -> None:
    from mmtiffsink.errors import ConfigError
    from mmtiffsink.runfile import load_config

    config = tmp_path / "typo.yaml"
    config.write_text(
        "microscope:\n  engine: pymmcore-plus\nsequence:\n  z_plan:\n    range: 2\n"
        "    stpe: 1\n  channels:\n    - config: DAPI\n      exposur: 3\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(config)
    text = str(info.value)
    assert "line 6: sequence.z_plan.stpe: unknown key; did you mean 'step'?" in text
    assert "line 9: sequence.channels[0].exposur: unknown key; did you mean 'exposure'?" in text
    assert "ZTopBottom" not in text


def test_named_positions_as_series_of_one_ome_file(core: CMMCorePlus, tmp_path: Path) -> None:
    """positions="series": one OME-TIFF, a series per position (its own z count), StageLabels."""
    import re
    import xml.etree.ElementTree as ET

    from mmtiffsink.inspect import file_info

    sub = {"z_plan": {"range": 1, "step": 0.5}}  # B2: 3 slices instead of 5
    seq = _sequence(
        stage_positions=[
            {"x": 0, "y": 0, "name": "A1"},
            {"x": 50, "y": 20, "name": "B2", "sequence": sub},
        ]
    )
    recorder = Recorder()
    with TiffHandler(tmp_path, name="plate", profile="ome", positions="series") as handler:
        core.mda.run(seq, output=[handler, recorder])
    assert [p.name for p in handler.files] == ["plate.ome.tif"]
    (path,) = handler.files
    assert handler.frames == len(recorder.frames) == 2 * (5 + 3) * 3
    assert handler.blank_planes == {path: 0}
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome and [s.name for s in tif.series] == ["A1", "B2"]
        stacks = {s.name: s.asarray() for s in tif.series}
        xml = tif.ome_metadata or ""
    assert stacks["A1"].shape == (3, 5, 2, HEIGHT, WIDTH)
    assert stacks["B2"].shape == (3, 3, 2, HEIGHT, WIDTH)
    order = {"FITC": 0, "DAPI": 1}
    for img, event, _meta in recorder.frames:
        c = order[event.channel.config]
        np.testing.assert_array_equal(
            stacks[event.pos_name][event.index["t"], event.index["z"], c], img
        )
    ns = {"ome": "http://www.openmicroscopy.org/Schemas/OME/2016-06"}
    labels = ET.fromstring(xml).findall(".//ome:Image/ome:StageLabel", ns)
    assert [(lb.get("Name"), lb.get("X"), lb.get("Y")) for lb in labels] == [
        ("A1", "0.0", "0.0"),
        ("B2", "50.0", "20.0"),
    ]
    assert re.search(r'<Plane [^>]*PositionX="50.0"', xml)  # per plane too
    check_ome_schema(xml)
    info = file_info(path)
    assert [(s.name, s.shape["Z"]) for s in info.series] == [("A1", 5), ("B2", 3)]
    assert info.channel_names == ["FITC", "DAPI"] and info.z_step_um == pytest.approx(0.5)


def test_positions_series_needs_the_ome_profile(tmp_path: Path) -> None:
    from mmtiffsink.errors import ConfigError

    with pytest.raises(ConfigError, match=r"positions='series' .* needs profile='ome'"):
        TiffHandler(tmp_path, positions="series")


def test_yaml_run_positions_series_through_the_cli(tmp_path: Path) -> None:
    from mmtiffsink.errors import ConfigError
    from mmtiffsink.runfile import format_plan, load_config

    config = tmp_path / "run.yaml"
    text = MDA_EXAMPLE.read_text()
    config.write_text(text.replace("profile: bigtiff", "profile: ome"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "mmtiffsink", "run", str(config), "--no-progress"]
    done = subprocess.run(
        [*cmd, "--positions", "series"], env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stdout + done.stderr
    files = sorted((tmp_path / "output").glob("*.tif"))
    assert [f.name for f in files] == ["demo_pymmcore_plus.ome.tif"]
    with tifffile.TiffFile(files[0]) as tif:
        assert [(s.name, s.shape) for s in tif.series] == [
            ("A1", (3, 5, 3, 128, 128)),
            ("B2", (3, 5, 3, 128, 128)),
        ]
    # the same in the run file: output.positions
    config.write_text(text.replace("profile: bigtiff", "profile: ome\n  positions: series"))
    plan = format_plan(load_config(config))
    assert "demo_pymmcore_plus.ome.tif  C=3 Z=5 T=3, 90 frames" in plan
    config.write_text(text.replace("profile: bigtiff", "profile: bigtiff\n  positions: series"))
    with pytest.raises(ConfigError, match=r"line \d+.*positions.*needs profile='ome'"):
        load_config(config)
