"""TiffAcquisition into a folder that already holds its file; no future waits forever.

Real pycro-manager acquisitions on the demo microscope (Python backend).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from mmtiffsink.errors import CoordinateError, OutputExistsError

pytestmark = pytest.mark.acquisition


def _events(**kwargs: Any) -> list[dict[str, Any]]:
    from pycromanager import multi_d_acquisition_events

    return list(multi_d_acquisition_events(**kwargs))


def test_existing_name_gets_a_new_unique_name(microscope: Any, tmp_path: Path) -> None:
    """As pycro-manager's own NDTiff storage does: name_1 when name is taken."""
    from mmtiffsink.pycromanager import TiffAcquisition

    (tmp_path / "exp.tif").write_bytes(b"yesterday's acquisition")
    events = _events(num_time_points=3)
    with TiffAcquisition(tmp_path, name="exp", template="{name}.tif") as acq:
        future = acq.acquire(events)
        image = future.await_image_saved({"time": 2}, return_image=True)
    assert acq.files == [tmp_path / "exp_1.tif"]
    assert (tmp_path / "exp.tif").read_bytes() == b"yesterday's acquisition"
    data = tifffile.imread(tmp_path / "exp_1.tif")
    assert data.shape[0] == 3
    np.testing.assert_array_equal(data[2], image)
    # a second run takes the next free name
    with TiffAcquisition(tmp_path, name="exp", template="{name}.tif") as again:
        again.acquire(events)
    assert again.files == [tmp_path / "exp_2.tif"]


def test_no_future_waits_forever_after_a_writer_error(microscope: Any, tmp_path: Path) -> None:
    """if_exists="error" and a taken name: the acquisition stops; awaiting returns."""
    from mmtiffsink.pycromanager import TiffAcquisition

    (tmp_path / "taken.tif").write_bytes(b"precious")
    events = _events(num_time_points=20, time_interval_s=0.05)
    outcome: list[BaseException | None] = []
    with pytest.raises(OutputExistsError), TiffAcquisition(
        tmp_path, name="taken", template="{name}.tif", if_exists="error"
    ) as acq:
        future = acq.acquire(events)

        def wait_last() -> None:
            try:
                future.await_image_saved({"time": 19}, return_image=True)
            except BaseException as exc:
                outcome.append(exc)
            else:
                outcome.append(None)

        waiter = threading.Thread(target=wait_last, daemon=True)
        waiter.start()
        waiter.join(60)
        assert not waiter.is_alive(), "await_image_saved waits forever"
    assert (tmp_path / "taken.tif").read_bytes() == b"precious"
    assert len(outcome) == 1 and isinstance(outcome[0], CoordinateError)
    assert "stopped after an error" in str(outcome[0])
