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

from tests.microscope import wait_mda_idle
from tests.writer_support import check_ome_schema

pytest.importorskip("pymmcore_plus")
pytest.importorskip("useq")
mm_test_adapters = pytest.importorskip("mm_test_adapters")

from pymmcore_plus import CMMCorePlus  # noqa: E402
from pymmcore_plus.mda import SkipEvent, mda_listeners_connected  # noqa: E402
from useq import MDAEvent, MDASequence  # noqa: E402

from mmtiffsink.errors import (  # noqa: E402
    MissingFramesWarning,
    MMTiffSinkError,
    OutputExistsError,
)
from mmtiffsink.pymmcore_plus import TiffHandler, event_axes, jsonable  # noqa: E402

# only the tests that start the demo microscope (the ``core`` fixture, a CLI run) are marked
acquisition = pytest.mark.acquisition
REPO = Path(__file__).resolve().parents[2]
MDA_EXAMPLE = REPO / "mmtiffsink" / "examples" / "demo_pymmcore_plus.yaml"
WIDTH, HEIGHT = 64, 48


@pytest.fixture(scope="module")
def demo() -> Iterator[CMMCorePlus]:
    core = CMMCorePlus()
    adapters = mm_test_adapters.device_adapter_path()
    core.setDeviceAdapterSearchPaths([adapters])
    core.loadSystemConfiguration(os.path.join(adapters, "MMConfig_demo.cfg"))
    yield core
    wait_mda_idle(core)
    core.unloadAllDevices()


@pytest.fixture
def core(demo: CMMCorePlus) -> CMMCorePlus:
    wait_mda_idle(demo)  # a cancelled MDA of the test before may still be snapping
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


@acquisition
def test_positions_channels_z_t_pixel_by_pixel(core: CMMCorePlus, tmp_path: Path) -> None:
    from mmtiffsink.inspect import file_info

    seq = _sequence()
    recorder = Recorder()
    with TiffHandler(tmp_path, name="exp1") as handler:
        core.mda.run(seq, output=[handler, recorder])
    assert [p.name for p in handler.files] == ["exp1_A1.tif", "exp1_B2.tif"]
    assert handler.frames == len(recorder.frames) == 2 * 2 * 5 * 3
    assert handler.blank_planes_by_file == {p: 0 for p in handler.files}
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


@acquisition
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
    # "as fast as possible": no stated interval, measured from the frames' runner_time_ms
    assert info.interval_s is not None and 0 < info.interval_s < 5
    with tifffile.TiffFile(path) as tif:
        meta = _json(tif.pages[1].tags[51123].value)
        ij = tif.imagej_metadata or {}
    assert meta["format"] == "frame-dict"
    assert meta["pixel_size_um"] == pytest.approx(0.5)
    assert "runner_time_ms" in meta and "exposure_ms" in meta
    # pymmcore-plus's own keys only: no pycro-manager keys made up
    assert not {"PixelSize_um", "ZPosition_um_Intended", "ElapsedTime-ms"} & set(meta)
    assert meta["mda_event"]["channel"]["config"] in ("FITC", "DAPI")
    assert "sequence" not in meta["mda_event"]  # the whole plan, not in every frame
    assert handler.summary is not None and handler.summary["format"] == "summary-dict"
    info_lines = dict(line.split(" = ", 1) for line in ij["Info"].splitlines() if " = " in line)
    assert json.loads(info_lines["mda_sequence"])["channels"][0]["config"] == "FITC"
    assert "DemoCamera" in info_lines["devices"]


@acquisition
def test_explicit_options_win(core: CMMCorePlus, tmp_path: Path) -> None:
    from mmtiffsink.inspect import file_info

    seq = _sequence(stage_positions=[], channels=[], time_plan={"interval": 0.05, "loops": 2})
    with TiffHandler(tmp_path, "x", z_step_um=2.0, interval_s=9.0, pixel_size_um=0.1) as h:
        core.mda.run(seq, output=h)
    info = file_info(h.files[0])
    assert (info.pixel_size_um, info.z_step_um, info.interval_s) == pytest.approx((0.1, 2.0, 9.0))


@acquisition
def test_grid_is_split_into_files(core: CMMCorePlus, tmp_path: Path) -> None:
    seq = MDASequence(
        stage_positions=[{"x": 0, "y": 0, "name": "W"}],
        grid_plan={"rows": 1, "columns": 2, "fov_width": 10, "fov_height": 10},
        channels=["DAPI"],
    )
    with TiffHandler(tmp_path, name="g") as handler:
        core.mda.run(seq, output=handler)
    assert sorted(p.name for p in handler.files) == ["g_W_grid0.tif", "g_W_grid1.tif"]


@acquisition
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
    assert handler.blank_planes_by_file == {path: 1} and handler.blank_planes == 1
    data = tifffile.imread(path)
    assert data.shape == (2, 5, HEIGHT, WIDTH)
    assert not data[0, 1].any() and data[1, 1].any()


@acquisition
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


@acquisition
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


@acquisition
def test_writer_error_without_core_argument(core: CMMCorePlus, tmp_path: Path) -> None:
    (tmp_path / "n.tif").write_bytes(b"x")
    seq = MDASequence(time_plan={"interval": 0.05, "loops": 100})
    recorder = Recorder()
    with pytest.raises(OutputExistsError), TiffHandler(tmp_path, "n") as handler:
        core.mda.run(seq, output=[handler, recorder])
    assert len(recorder.frames) < 100  # found the running core and cancelled it


@acquisition
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


@acquisition
def test_synchronous_listener(core: CMMCorePlus, tmp_path: Path) -> None:
    handler = TiffHandler(tmp_path, "sync")
    seq = MDASequence(channels=["DAPI", "FITC"])
    with mda_listeners_connected(handler, mda_events=core.mda.events, asynchronous=False):
        core.mda.run(seq)
    handler.close()
    assert tifffile.imread(handler.files[0]).shape == (2, HEIGHT, WIDTH)
    assert handler._thread is threading.current_thread()


@acquisition
def test_second_sequence_is_refused(core: CMMCorePlus, tmp_path: Path) -> None:
    handler = TiffHandler(tmp_path, "twice", core=core)
    core.mda.run(MDASequence(channels=["DAPI"]), output=handler)
    core.mda.run(MDASequence(channels=["DAPI"]), output=handler)
    with pytest.raises(MMTiffSinkError, match="one sequence"):
        handler.close()
    assert len(handler.files) == 1


def test_event_axes_mapping() -> None:
    from mmtiffsink.pymmcore_plus import SequenceLayout

    seq = MDASequence(
        channels=["DAPI", "DAPI"],
        stage_positions=[{"x": 0, "y": 0, "name": "A"}, {"x": 1, "y": 1}],
    )
    layout = SequenceLayout.of(seq, {"image_infos": [{"num_camera_adapter_channels": 2}]})
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


@acquisition
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


@acquisition
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
    assert handler.blank_planes_by_file == {path: 0}
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


@acquisition
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


@acquisition
def test_index_less_events_each_get_a_time_point(core: CMMCorePlus, tmp_path: Path) -> None:
    """pymmcore-plus's own tests drive events without an index: every frame is kept."""
    from mmtiffsink.pymmcore_plus import TiffMDASink, attached

    def events() -> Iterator[MDAEvent]:
        for i in range(3):
            yield MDAEvent(metadata={"i": i})

    for route in ("handler", "sink"):
        recorder = Recorder()
        if route == "handler":
            with TiffHandler(tmp_path / route, "free") as writer:
                core.mda.run(events(), output=[writer, recorder])
        else:
            with TiffMDASink(tmp_path / route, "free") as writer, attached(core, writer):
                core.mda.run(events(), output=recorder)
        assert writer.frames == 3 and writer.blank_planes == 0, route
        data = tifffile.imread(writer.files[0])
        assert data.shape == (3, HEIGHT, WIDTH), route
        for t, (img, _event, _meta) in enumerate(recorder.frames):
            np.testing.assert_array_equal(data[t], img)


def test_index_less_events_after_indexed_ones() -> None:
    from mmtiffsink.pymmcore_plus import EventPlaces

    places = EventPlaces()
    indexed = [places.axes(MDAEvent(index={"t": t, "c": 0})) for t in (0, 4)]
    assert [a["time"] for a in indexed] == [0, 4]
    assert places.axes(MDAEvent(index={"c": 0})) == {"channel": 0, "time": 5}
    assert places.axes(MDAEvent(index={"c": 1})) == {"channel": 1, "time": 0}
    assert places.axes(MDAEvent()) == {"time": 0}


@acquisition
def test_sink_protocol_on_the_acquisition_thread(core: CMMCorePlus, tmp_path: Path) -> None:
    """TiffMDASink as the runner's sink, beside an observer: same files as the handler."""
    from pymmcore_plus.mda._sink import SinkProtocol

    from mmtiffsink.pymmcore_plus import TiffMDASink, attached

    seq = _sequence(time_plan={"interval": 0.05, "loops": 2})
    recorder = Recorder()
    threads: set[str] = set()
    sink = TiffMDASink(tmp_path, "s", profile="ome")
    original = sink.append

    def append(img: np.ndarray, event: MDAEvent, meta: Any) -> None:
        threads.add(threading.current_thread().name)
        original(img, event, meta)

    protocol: SinkProtocol = sink  # checked by mypy: the protocol's signatures
    assert all(callable(getattr(protocol, n)) for n in ("setup", "skip", "close", "get_view"))
    sink.append = append  # type: ignore[method-assign]
    with sink, attached(core, sink) as runner:
        thread = core.run_mda(seq, output=recorder)
        thread.join(60)
        assert runner.get_view() is sink.get_view()  # the runner hands out the sink's view
    assert threads == {thread.name}  # called synchronously by the acquisition thread
    assert "_coerce_outputs" not in vars(core.mda)  # detached again
    assert [p.name for p in sink.files] == ["s_A1.ome.tif", "s_B2.ome.tif"]
    assert sink.frames == len(recorder.frames) == 2 * 2 * 5 * 2
    stacks = {p.name: tifffile.imread(p) for p in sink.files}
    order = {"FITC": 0, "DAPI": 1}
    for img, event, _meta in recorder.frames:
        data = stacks[f"s_{event.pos_name}.ome.tif"]
        c = order[event.channel.config]
        np.testing.assert_array_equal(data[event.index["t"], event.index["z"], c], img)
    with tifffile.TiffFile(sink.files[0]) as tif:
        xml = tif.ome_metadata or ""
    assert "mda_sequence" in xml and "system_info" in xml  # the summary, in the OME annotation


@acquisition
def test_sink_error_halts_the_acquisition_at_once(core: CMMCorePlus, tmp_path: Path) -> None:
    """A failing writer stops the MDA at the failing frame (not a logged error on a relay)."""
    from mmtiffsink.pymmcore_plus import TiffMDASink, attached

    (tmp_path / "h_B2.tif").write_bytes(b"not mine")
    seq = _sequence(channels=["DAPI"], z_plan=None, time_plan={"interval": 0, "loops": 5})
    seq = seq.replace(axis_order="ptcz")  # all of A1, then B2
    recorder = Recorder()
    sink = TiffMDASink(tmp_path, "h")
    with pytest.raises(OutputExistsError), sink, attached(core, sink):
        core.mda.run(seq, output=recorder)
    assert len(recorder.frames) == 5  # A1's frames; B2's first frame never reached frameReady
    assert (tmp_path / "h_B2.tif").read_bytes() == b"not mine"
    assert tifffile.imread(tmp_path / "h_A1.tif").shape == (5, HEIGHT, WIDTH)
    with pytest.raises(ValueError, match="no path as output"), attached(core, sink):
        core.mda.run(seq, output=str(tmp_path / "x.ome.tiff"))
