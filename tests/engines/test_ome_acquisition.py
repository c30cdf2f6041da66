"""The ome profile behind real pycro-manager acquisitions on the demo microscope."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from tests.writer_support import check_ome_schema

pytestmark = pytest.mark.acquisition


def _events() -> list[dict[str, Any]]:
    from pycromanager import multi_d_acquisition_events

    return list(
        multi_d_acquisition_events(
            num_time_points=2,
            z_start=0,
            z_end=1,
            z_step=1,
            channel_group="Channel",
            channels=["DAPI", "FITC"],
            xy_positions=[[0, 0], [10, 5]],
        )
    )


@pytest.mark.parametrize("route", ["hook", "storage"])
def test_two_positions_as_ome_files(microscope: Any, tmp_path: Path, route: str) -> None:
    from pycromanager import Acquisition

    from mmtiffsink import TiffSink
    from mmtiffsink.pycromanager import TiffAcquisition

    seen: dict[tuple[int, int, int, str], np.ndarray] = {}

    def keep(image: np.ndarray, metadata: dict[str, Any]) -> Any:
        axes = metadata["Axes"]
        seen[(axes["position"], axes["time"], axes["z"], axes["channel"])] = image.copy()
        return image, metadata

    events = _events()
    if route == "hook":
        with TiffSink(tmp_path, "exp", profile="ome") as sink:

            def hook(image: np.ndarray, metadata: dict[str, Any]) -> Any:
                keep(image, metadata)
                return sink.image_process_fn(image, metadata)

            with Acquisition(directory=None, image_process_fn=hook) as acq:
                acq.acquire(events)
        files = sink.files
    else:
        with TiffAcquisition(tmp_path, name="exp", profile="ome", image_process_fn=keep) as acq:
            acq.acquire(events)
        files = acq.files
    assert [f.name for f in files] == ["exp_0.ome.tif", "exp_1.ome.tif"]
    for p, path in enumerate(files):
        with tifffile.TiffFile(path) as tif:
            assert tif.is_ome
            series = tif.series[0]
            assert series.axes == "TZCYX"
            data = series.asarray()
            xml = tif.ome_metadata or ""
        assert 'Name="DAPI"' in xml and 'Name="FITC"' in xml
        assert "<Plane " in xml and "DeltaT=" in xml
        for t in range(2):
            for z in range(2):
                for c, channel in enumerate(["DAPI", "FITC"]):
                    np.testing.assert_array_equal(data[t, z, c], seen[(p, t, z, channel)])


@pytest.mark.parametrize("route", ["hook", "storage"])
def test_two_positions_as_series_of_one_file(microscope: Any, tmp_path: Path, route: str) -> None:
    """positions="series": one OME-TIFF, a series (OME Image) per position, with StageLabels."""
    import xml.etree.ElementTree as ET

    from pycromanager import Acquisition

    from mmtiffsink import TiffSink
    from mmtiffsink.pycromanager import TiffAcquisition

    seen: dict[tuple[int, int, int, str], np.ndarray] = {}

    def keep(image: np.ndarray, metadata: dict[str, Any]) -> Any:
        axes = metadata["Axes"]
        seen[(axes["position"], axes["time"], axes["z"], axes["channel"])] = image.copy()
        return image, metadata

    events = _events()
    options = {"profile": "ome", "positions": "series"}
    if route == "hook":
        with TiffSink(tmp_path, "exp", **options) as sink:

            def hook(image: np.ndarray, metadata: dict[str, Any]) -> Any:
                keep(image, metadata)
                return sink.image_process_fn(image, metadata)

            with Acquisition(directory=None, image_process_fn=hook) as acq:
                acq.acquire(events)
        files = sink.files
    else:
        with TiffAcquisition(tmp_path, name="exp", image_process_fn=keep, **options) as acq:
            acq.acquire(events)
            dataset = acq.get_dataset()
        # the dataset reads back from the one file, by each position's series
        image = dataset.read_image(position=1, time=1, z=1, channel="FITC")
        np.testing.assert_array_equal(image, seen[(1, 1, 1, "FITC")])
        files = acq.files
    assert [f.name for f in files] == ["exp.ome.tif"]
    with tifffile.TiffFile(files[0]) as tif:
        assert tif.is_ome and [s.name for s in tif.series] == ["Pos0", "Pos1"]
        stacks = [s.asarray() for s in tif.series]
        xml = tif.ome_metadata or ""
    ns = {"ome": "http://www.openmicroscopy.org/Schemas/OME/2016-06"}
    labels = ET.fromstring(xml).findall(".//ome:Image/ome:StageLabel", ns)
    assert [(lb.get("Name"), lb.get("X"), lb.get("Y")) for lb in labels] == [
        ("Pos0", "0.0", "0.0"),
        ("Pos1", "10.0", "5.0"),
    ]
    check_ome_schema(xml)
    for p, data in enumerate(stacks):
        assert data.shape[:3] == (2, 2, 2)  # T Z C
        for t in range(2):
            for z in range(2):
                for c, channel in enumerate(["DAPI", "FITC"]):
                    np.testing.assert_array_equal(data[t, z, c], seen[(p, t, z, channel)])
