"""TiffHandler.get_view() (pymmcore-plus's SinkView) during and after a real MDA."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("pymmcore_plus")
mm_test_adapters = pytest.importorskip("mm_test_adapters")

from pymmcore_plus import CMMCorePlus  # noqa: E402
from useq import MDASequence  # noqa: E402

from mmtiffsink.pymmcore_plus import TiffHandler  # noqa: E402
from tests.microscope import wait_mda_idle  # noqa: E402


@pytest.fixture(scope="module")
def demo() -> Iterator[CMMCorePlus]:
    core = CMMCorePlus()
    adapters = mm_test_adapters.device_adapter_path()
    core.setDeviceAdapterSearchPaths([adapters])
    core.loadSystemConfiguration(os.path.join(adapters, "MMConfig_demo.cfg"))
    core.setConfig("Objective", "20X")  # 0.5 um/px
    core.setProperty("Camera", "OnCameraCCDXSize", 64)
    core.setProperty("Camera", "OnCameraCCDYSize", 48)
    core.setProperty("Camera", "Mode", "Noise")  # distinct frames
    core.setExposure(1.0)
    yield core
    wait_mda_idle(core)
    core.unloadAllDevices()


class Recorder:
    def __init__(self) -> None:
        self.frames: list[tuple[np.ndarray, Any]] = []

    def frameReady(self, img: np.ndarray, event: Any, meta: dict[str, Any]) -> None:
        self.frames.append((img.copy(), event))


@pytest.mark.acquisition
@pytest.mark.parametrize("compression", ["zstd", None])
def test_handler_view_during_a_real_mda(
    demo: CMMCorePlus, tmp_path: Path, compression: str | None
) -> None:
    seq = MDASequence(
        stage_positions=[{"x": 0, "y": 0, "name": "A1"}, {"x": 50, "y": 20, "name": "B2"}],
        channels=[{"config": "FITC"}, {"config": "DAPI"}],
        z_plan={"range": 1, "step": 0.5},
        time_plan={"interval": 0.02, "loops": 4},
        axis_order="tpcz",
    )
    recorder = Recorder()
    handler = TiffHandler(tmp_path, name="exp", compression=compression)
    view = handler.get_view()
    assert view is handler.get_view()
    assert view.shape == (0, 0, 0, 0, 0) and view.ndim == 5
    during: list[tuple[tuple[int, ...], int]] = []

    def changed() -> None:
        shape = view.shape
        written = view.written
        newest = np.argwhere(written)[-1] if written.any() else None
        if newest is not None:  # the newest plane reads back non-empty (noise frames)
            assert view[tuple(newest)].any()
        during.append((shape, int(written.sum())))

    view.coords_changed.connect(changed)
    with handler:
        demo.mda.run(seq, output=[handler, recorder])
    assert view.shape == (4, 3, 2, 48, 64)
    assert view.dtype == np.uint16
    assert view.written.all() and view.finished
    assert view.path == tmp_path / "exp_A1.tif"
    assert view.channel_names == ["FITC", "DAPI"]
    assert view.pixel_size_um == pytest.approx(0.5)
    sizes = [shape[0] for shape, _ in during]
    assert sizes == sorted(sizes) and set(sizes) == {0, 1, 2, 3, 4}  # T seen growing
    assert len(during) == 1 + 24  # attached (the file opened, empty), then one per frame
    assert during[-1][1] == 4 * 3 * 2
    order = {"FITC": 0, "DAPI": 1}
    mine = [(img, ev) for img, ev in recorder.frames if ev.pos_name == "A1"]
    assert len(mine) == 24
    for img, ev in mine:
        np.testing.assert_array_equal(
            view[ev.index["t"], ev.index["z"], order[ev.channel.config]], img
        )
    view.close()


@pytest.mark.acquisition
def test_runner_get_view_is_the_sinks_view(demo: CMMCorePlus, tmp_path: Path) -> None:
    """pymmcore-plus's own ``runner.get_view()`` (what pymmcore-gui shows) gives our view."""
    from mmtiffsink.pymmcore_plus import TiffMDASink, attached

    seq = MDASequence(channels=[{"config": "DAPI"}], time_plan={"interval": 0, "loops": 3})
    seen: list[tuple[int, ...]] = []
    same: list[bool] = []

    def changed() -> None:  # during the run: the runner hands out the sink's view
        seen.append(view.shape)
        same.append(runner.get_view() is view)

    with TiffMDASink(tmp_path, "run") as sink, attached(demo, sink) as runner:
        view = sink.get_view()
        view.coords_changed.connect(changed)
        demo.mda.run(seq)
    assert same and all(same)
    assert view.shape == (3, 1, 1, 48, 64) and view.finished
    # one call per frame; the shape a call sees may already hold frames linked in the same
    # batch (the writer links a batch at once, then tells the listeners frame by frame)
    # (the first call: the file opened, empty)
    grown = [s[0] for s in seen]
    assert len(grown) == 1 + 3 and grown == sorted(grown) and grown[0] == 0 and grown[-1] == 3
    for t in range(3):
        assert view.is_written(t, 0, 0)
    view.close()
