"""TiffSink as a real pycro-manager ``image_process_fn`` on the demo microscope."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from mmtiffsink.sink import TiffSink
from tests.microscope import (
    DEFAULT_HEIGHT,
    DEFAULT_WIDTH,
    multi_d_events,
    record_acquisition,
    set_objective,
    small_tzc_events,
)

pytestmark = pytest.mark.acquisition


def _acquire(sink: TiffSink, events: Any, name: str) -> list[tuple[np.ndarray, dict[str, Any]]]:
    """Run the acquisition through the sink; return copies of the frames it got."""
    return record_acquisition(events, sink.image_process_fn, name=name, show_display=False)


def _read(path: Path) -> tuple[np.ndarray, dict[str, Any], float]:
    with tifffile.TiffFile(path) as tif:
        data = tif.series[0].asarray()
        meta = dict(tif.imagej_metadata or {})
        num, den = tif.pages[0].tags["XResolution"].value
    return data, meta, den / num


def test_tzc_acquisition(microscope: Any, tmp_path: Path, tzc_events: list[dict[str, Any]]) -> None:
    set_objective(microscope, "20X")
    with TiffSink(tmp_path, "tzc") as sink:
        frames = _acquire(sink, tzc_events, "tzc")
    assert sink.files == [tmp_path / "tzc.tif"]
    data, meta, pixel_size = _read(tmp_path / "tzc.tif")
    assert data.shape == (3, 3, 2, DEFAULT_HEIGHT, DEFAULT_WIDTH)
    assert data.dtype == np.uint16
    assert data.any()
    assert pixel_size == pytest.approx(0.5)
    assert meta["spacing"] == pytest.approx(2.0)
    assert meta["finterval"] == pytest.approx(0.1, rel=0.3)
    assert list(meta["Labels"]) == ["DAPI", "FITC"] * 9
    assert len(frames) == 18
    for image, metadata in frames:
        axes = metadata["Axes"]
        c = ["DAPI", "FITC"].index(axes["channel"])
        np.testing.assert_array_equal(data[axes["time"], axes["z"], c], image)


def test_positions_acquisition(microscope: Any, tmp_path: Path) -> None:
    events = multi_d_events(xy_positions=[[0, 0], [10, 10]], z_start=0, z_end=2, z_step=1)
    with TiffSink(tmp_path, "pos", pass_through=True) as sink:
        _acquire(sink, events, "pos")
    assert sink.files == [tmp_path / "pos_0.tif", tmp_path / "pos_1.tif"]
    for path in sink.files:
        data, meta, pixel_size = _read(path)
        assert data.shape == (3, DEFAULT_HEIGHT, DEFAULT_WIDTH)
        assert pixel_size == pytest.approx(1.0)
        assert meta["spacing"] == pytest.approx(1.0)


def test_storage_adapter_acquisition(
    microscope: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TiffStorage as the engine's dataset (replacing the NDRAMDataset of directory=None)."""
    from pycromanager import Acquisition
    from pycromanager.acquisition import python_backend_acquisitions

    from mmtiffsink.pycromanager import TiffStorage

    set_objective(microscope, "20X")
    storage = TiffStorage(TiffSink(tmp_path, "storage"))
    monkeypatch.setattr(python_backend_acquisitions, "NDRAMDataset", lambda: storage)
    events = small_tzc_events(["DAPI", "FITC"])
    with Acquisition(directory=None, name="storage", show_display=False) as acq:
        acq.acquire(events)
    assert storage.is_finished()
    storage.close()
    assert len(storage.get_image_coordinates_list()) == 12
    assert storage.has_image(channel="FITC", z=2, time=1)
    assert storage.summary_metadata["PixelSize_um"] == 0.5
    data, meta, pixel_size = _read(tmp_path / "storage.tif")
    assert data.shape == (2, 3, 2, DEFAULT_HEIGHT, DEFAULT_WIDTH)
    assert data.any()
    assert pixel_size == pytest.approx(0.5)
    assert meta["spacing"] == pytest.approx(1.0)
    assert meta["finterval"] == pytest.approx(0.1, rel=0.3)
    assert list(meta["Labels"]) == ["DAPI", "FITC"] * 6
