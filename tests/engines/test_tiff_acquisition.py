"""TiffAcquisition (the storage route) on the demo microscope; TiffStorage's read API."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from mmtiffsink.errors import CoordinateError, FileExistsError_, MMTiffSinkError
from mmtiffsink.sink import TiffSink
from tests.microscope import (
    DEFAULT_HEIGHT,
    DEFAULT_WIDTH,
    multi_d_events,
    set_objective,
    small_tzc_events,
)

pytestmark = pytest.mark.acquisition


def test_tzc_through_tiff_acquisition(microscope: Any, tmp_path: Path) -> None:
    """Files, calibration and the dataset read API (read_image, read_metadata, as_array)."""
    from mmtiffsink.pycromanager import TiffAcquisition, TiffStorage

    set_objective(microscope, "40X")
    saved: list[tuple[dict[str, Any], np.ndarray]] = []
    seen: list[tuple[np.ndarray, dict[str, Any]]] = []

    def image_saved(axes: dict[str, Any], dataset: Any) -> None:
        saved.append((dict(axes), dataset.read_image(**axes)))

    def keep_copy(image: np.ndarray, metadata: dict[str, Any]) -> Any:
        seen.append((image.copy(), dict(metadata)))
        return image, metadata

    events = small_tzc_events(["FITC", "DAPI"])
    with TiffAcquisition(
        tmp_path, name="tacq", image_saved_fn=image_saved, image_process_fn=keep_copy
    ) as acq:
        future = acq.acquire(events)
        last = {"time": 1, "z": 2, "channel": "DAPI"}
        image = future.await_image_saved(last, return_image=True)
    dataset = acq.get_dataset()
    assert isinstance(dataset, TiffStorage)
    assert acq.files == [tmp_path / "tacq.tif"]
    assert len(seen) == 12
    assert len(saved) == 12

    with tifffile.TiffFile(tmp_path / "tacq.tif") as tif:
        data = tif.series[0].asarray()
        meta = tif.imagej_metadata or {}
        num, den = tif.pages[0].tags["XResolution"].value
    assert data.shape == (2, 3, 2, DEFAULT_HEIGHT, DEFAULT_WIDTH)
    assert den / num == pytest.approx(0.25)
    assert meta["spacing"] == pytest.approx(1.0)
    assert list(meta["Labels"][:2]) == ["FITC", "DAPI"]

    by_axes = {frozenset(m["Axes"].items()): (img, m) for img, m in seen}
    for axes, img in saved:
        np.testing.assert_array_equal(img, by_axes[frozenset(axes.items())][0])
    np.testing.assert_array_equal(image, by_axes[frozenset(last.items())][0])
    for key, (img, metadata) in by_axes.items():
        axes = dict(key)
        c = ["FITC", "DAPI"].index(axes["channel"])
        np.testing.assert_array_equal(data[axes["time"], axes["z"], c], img)
        np.testing.assert_array_equal(dataset.read_image(**axes), img)
        assert dataset.read_metadata(**axes)["Axes"] == metadata["Axes"]
        assert dataset.has_image(**axes)
    assert not dataset.has_image(channel="Cy5", z=0, time=0)
    with pytest.raises(CoordinateError, match="no image"):
        dataset.read_image(channel="FITC", z=7, time=0)

    array = np.asarray(dataset.as_array(axes=["time", "z", "channel"]))
    # ndstorage sorts string axes: DAPI before FITC
    np.testing.assert_array_equal(array[:, :, 0], data[:, :, 1])
    np.testing.assert_array_equal(array[:, :, 1], data[:, :, 0])
    assert len(dataset.get_image_coordinates_list()) == 12


def test_positions_through_tiff_acquisition(microscope: Any, tmp_path: Path) -> None:
    from mmtiffsink.pycromanager import TiffAcquisition

    events = multi_d_events(xy_positions=[[0, 0], [5, 5]], num_time_points=2)
    with TiffAcquisition(tmp_path, name="pos", compression="deflate", show_display=False) as acq:
        acq.acquire(events)
    assert acq.files == [tmp_path / "pos_0.tif", tmp_path / "pos_1.tif"]
    dataset = acq.get_dataset()
    for p, path in enumerate(acq.files):
        with tifffile.TiffFile(path) as tif:
            data = tif.series[0].asarray()
            assert tif.pages[0].compression == 8
        assert data.shape == (2, DEFAULT_HEIGHT, DEFAULT_WIDTH)
        for t in range(2):
            np.testing.assert_array_equal(dataset.read_image(position=p, time=t), data[t])


def test_writer_error_aborts_and_surfaces(microscope: Any, tmp_path: Path) -> None:
    """An existing file: the acquisition stops early, the with block raises the writer's error."""
    from mmtiffsink.pycromanager import TiffAcquisition

    existing = tmp_path / "taken_1.tif"
    existing.write_bytes(b"precious")
    microscope.set_exposure(5.0)
    events = multi_d_events(xy_positions=[[0, 0], [5, 5]], num_time_points=40)
    received: list[int] = []

    def count(image: np.ndarray, metadata: dict[str, Any]) -> Any:
        received.append(1)
        return image, metadata

    done = threading.Event()
    with pytest.raises(FileExistsError_, match=r"taken_1\.tif"):
        with TiffAcquisition(
            tmp_path, name="taken", image_process_fn=count, if_exists="error"
        ) as acq:
            acq.acquire(events)
        done.set()
    assert not done.is_set()
    assert existing.read_bytes() == b"precious"
    assert len(received) < len(events), "the writer's error did not abort the acquisition"
    with tifffile.TiffFile(tmp_path / "taken_0.tif") as tif:  # the other position: valid
        assert tif.series[0].shape[-2:] == (DEFAULT_HEIGHT, DEFAULT_WIDTH)


@pytest.mark.filterwarnings("ignore::mmtiffsink.errors.MissingFramesWarning")  # see below
def test_error_in_user_hook_finishes_files(microscope: Any, tmp_path: Path) -> None:
    from mmtiffsink.pycromanager import TiffAcquisition

    def fail_at_fifth(image: np.ndarray, metadata: dict[str, Any]) -> Any:
        if metadata["Axes"]["time"] == 4:
            msg = "user hook failed"
            raise RuntimeError(msg)
        return image, metadata

    with (
        pytest.raises(Exception, match="user hook failed"),
        TiffAcquisition(tmp_path, name="hookfail", image_process_fn=fail_at_fifth) as acq,
    ):
        acq.acquire(multi_d_events(num_time_points=8))
    with tifffile.TiffFile(tmp_path / "hookfail.tif") as tif:
        data = tif.series[0].asarray()
    # pycro-manager aborts on the hook's error, but frames already past the hook when it
    # raised may still be stored (how many depends on timing): every stored frame is in the
    # finished file, the failed one never is
    times = sorted(c["time"] for c in acq.get_dataset().get_image_coordinates_list())
    assert times[:4] == [0, 1, 2, 3]
    assert 4 not in times
    assert data.shape == (times[-1] + 1, DEFAULT_HEIGHT, DEFAULT_WIDTH)  # ends where storing did
    for t in times:
        np.testing.assert_array_equal(data[t], acq.get_dataset().read_image(time=t))
    assert not data[4:5].any()  # a blank plane where the hook failed, if later frames landed


def test_needs_the_python_backend(tmp_path: Path) -> None:
    """Without start_headless(python_backend=True): a clear error, in a fresh interpreter."""
    code = (
        "from mmtiffsink.pycromanager import TiffAcquisition\n"
        f"TiffAcquisition({str(tmp_path)!r}, name='x')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode != 0
    assert "MMTiffSinkError" in proc.stderr
    assert "Python backend" in proc.stderr
    assert not list(tmp_path.iterdir())


def test_sink_read_back_while_open(tmp_path: Path) -> None:
    """TiffSink.read waits for the frame and reads it from the file, open or closed."""
    rng = np.random.default_rng(1)
    frames = {
        (ch, z): rng.integers(0, 4000, (20, 30), dtype=np.uint16)
        for ch in ("B", "A")
        for z in range(3)
    }
    sink = TiffSink(tmp_path, "rb", compression="zstd")
    try:
        for (ch, z), frame in frames.items():
            axes = {"channel": ch, "z": z}
            sink.put(frame, axes, {"Axes": axes})
            image, metadata = sink.read(axes)
            np.testing.assert_array_equal(image, frame)
            assert metadata == {"Axes": axes}
        with pytest.raises(CoordinateError):
            sink.read({"channel": "C", "z": 0})
        with pytest.raises(CoordinateError):
            sink.read({"channel": "A", "z": 9})
    finally:
        sink.close()
    for (ch, z), frame in frames.items():
        np.testing.assert_array_equal(sink.read({"channel": ch, "z": z})[0], frame)
    assert isinstance(CoordinateError("x"), MMTiffSinkError)
