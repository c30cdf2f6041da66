"""RGB from the sources: the demo camera's 32bitRGB/64bitRGB through pymmcore-plus and
pycro-manager, replay of NDStorage's RGB dataset, ``info`` and ``preview``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from mmtiffsink import MMTiffSinkError, ProfileError
from mmtiffsink.inspect import file_info
from mmtiffsink.sink import TiffSink
from tests.writer_support import rgb_frame

WIDTH, HEIGHT = 64, 48


@pytest.fixture(scope="module")
def plus_core() -> Iterator[Any]:
    """A pymmcore-plus core on the demo adapters, its camera in colour (restored after)."""
    pytest.importorskip("pymmcore_plus")
    mm_test_adapters = pytest.importorskip("mm_test_adapters")
    from pymmcore_plus import CMMCorePlus

    core = CMMCorePlus()
    adapters = mm_test_adapters.device_adapter_path()
    core.setDeviceAdapterSearchPaths([adapters])
    core.loadSystemConfiguration(os.path.join(adapters, "MMConfig_demo.cfg"))
    core.setProperty("Camera", "OnCameraCCDXSize", WIDTH)
    core.setProperty("Camera", "OnCameraCCDYSize", HEIGHT)
    core.setProperty("Camera", "Mode", "Noise")  # distinct frames
    core.setExposure(1.0)
    yield core
    core.unloadAllDevices()


class Recorder:
    """A second handler: copies of what pymmcore-plus delivered."""

    def __init__(self) -> None:
        self.frames: list[tuple[np.ndarray, Any]] = []

    def frameReady(self, img: np.ndarray, event: Any, meta: dict[str, Any]) -> None:
        self.frames.append((img.copy(), event))


def _run_rgb(core: Any, pixel_type: str, tmp_path: Path, **options: Any) -> tuple[Any, Recorder]:
    from useq import MDASequence

    from mmtiffsink.pymmcore_plus import TiffHandler

    seq = MDASequence(
        channels=[{"config": "FITC"}, {"config": "DAPI"}],
        z_plan={"range": 1, "step": 1},
        time_plan={"interval": 0, "loops": 2},
        axis_order="tpcz",
    )
    core.setProperty("Camera", "PixelType", pixel_type)
    recorder = Recorder()
    handler = TiffHandler(tmp_path, name=pixel_type, **options)
    try:
        core.mda.run(seq, output=[handler, recorder])
    finally:
        core.setProperty("Camera", "PixelType", "16bit")
    return handler, recorder  # not closed: close() raises what went wrong


@pytest.mark.acquisition
@pytest.mark.parametrize(("pixel_type", "dtype"), [("32bitRGB", "uint8"), ("64bitRGB", "uint16")])
def test_pymmcore_plus_colour_camera(
    plus_core: Any, tmp_path: Path, pixel_type: str, dtype: str
) -> None:
    handler, recorder = _run_rgb(plus_core, pixel_type, tmp_path)
    handler.close()
    assert handler.error is None and handler.frames == len(recorder.frames) == 2 * 2 * 2
    (path,) = handler.files
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        assert series.axes == "TZCYXS" and series.dtype == np.dtype(dtype)
        data = series.asarray()
    assert data.shape == (2, 2, 2, HEIGHT, WIDTH, 3)
    order = {"FITC": 0, "DAPI": 1}
    for img, event in recorder.frames:  # pymmcore-plus hands RGB (Y, X, 3): stored as it is
        assert img.shape == (HEIGHT, WIDTH, 3) and img.dtype == np.dtype(dtype)
        c = order[event.channel.config]
        np.testing.assert_array_equal(data[event.index["t"], event.index["z"], c], img)
    info = file_info(path)
    assert info.rgb and info.shape["S"] == 3 and info.channel_names == ["FITC", "DAPI"]


@pytest.mark.acquisition
def test_pymmcore_plus_64bit_rgb_into_imagej_is_a_clear_error(
    plus_core: Any, tmp_path: Path
) -> None:
    handler, _ = _run_rgb(plus_core, "64bitRGB", tmp_path, profile="imagej")
    with pytest.raises(ProfileError, match=r"16-bit RGB.*profile='bigtiff' or 'ome'"):
        handler.close()


def test_camera_image_turns_micro_managers_bgra_into_rgb() -> None:
    """Micro-Manager's own layout (B, G, R, A; e.g. ``getImage(fix=False)`` viewed as bytes)."""
    from mmtiffsink.pymmcore_plus import camera_image

    rgb = rgb_frame(1, 0, 0)
    bgra = np.concatenate([rgb[..., ::-1], np.full((*rgb.shape[:2], 1), 255, np.uint8)], axis=2)
    np.testing.assert_array_equal(camera_image(bgra), rgb)
    assert camera_image(rgb) is rgb


def test_hook_stores_java_backend_rgb32_as_rgb(tmp_path: Path) -> None:
    """pycro-manager's Java backend gives RGB32 as ``reshape(H, W, 4)[..., :3]`` of Micro-
    Manager's B, G, R, A bytes (its ``java_backend_acquisitions``; the Java backend cannot run
    here): the hook stores R, G, B."""
    rgb = rgb_frame(0, 0, 0)
    bgra = np.concatenate([rgb[..., ::-1], np.zeros((*rgb.shape[:2], 1), np.uint8)], axis=2)
    from_java = bgra.reshape(rgb.shape[0], rgb.shape[1], 4)[..., :3]
    with TiffSink(tmp_path, "java") as sink:
        assert sink.image_process_fn(from_java, {"Axes": {"time": 0}, "PixelType": "RGB32"}) is None
        (path,) = sink.files
    with tifffile.TiffFile(path) as tif:
        np.testing.assert_array_equal(tif.series[0].asarray(), rgb)


@pytest.mark.acquisition
def test_tiff_acquisition_refuses_a_colour_camera(microscope: Any, tmp_path: Path) -> None:
    """pycro-manager's Python backend cannot acquire RGB: refused before anything starts."""
    from mmtiffsink.pycromanager import TiffAcquisition

    microscope.set_property("Camera", "PixelType", "32bitRGB")
    try:
        with pytest.raises(MMTiffSinkError, match=r"Python backend cannot acquire.*pymmcore-plus"):
            TiffAcquisition(tmp_path, name="rgb")
    finally:
        microscope.set_property("Camera", "PixelType", "16bit")
    assert not list(tmp_path.iterdir())


def test_info_and_preview_of_an_rgb_file(tmp_path: Path) -> None:
    """``info`` says RGB; ``preview`` draws each channel as one tile in its own colours."""
    import mmtiffsink
    from mmtiffsink.inspect._preview import sheet
    from tests.preview_support import at, decode

    path = tmp_path / "colour.tif"
    shape = (96, 128)  # shown 1:1
    with mmtiffsink.IJTiffFile(path, shape=(2, 2, 1), dtype="uint8", pxsize=0.5) as tif:
        for c in range(2):
            for z in range(2):
                tif.save(rgb_frame(c, z, 0, shape), c, z, 0)
    info = file_info(path)
    assert info.rgb and info.shape == {"T": 1, "Z": 2, "C": 2, "Y": 96, "X": 128, "S": 3}
    assert " uint8 RGB" in info.format()
    png = decode(mmtiffsink.preview(path, projection="mid"))  # the middle slice: z=1
    boxes = sheet(path, projection="mid", time="first").boxes
    assert "tile 0 2" not in boxes  # colour images are not blended into a composite
    for c in range(2):
        frame = rgb_frame(c, 1, 0, shape)
        for y, x in ((0, 0), (5, 3), (48, 42)):
            assert at(png, boxes[f"tile 0 {c}"], y, x) == tuple(int(v) for v in frame[y, x])
