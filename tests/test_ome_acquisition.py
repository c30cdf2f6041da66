"""The ome profile behind real pycro-manager acquisitions on the demo microscope (issue 9)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

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
