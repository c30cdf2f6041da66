"""TiffSink with synthetic pycro-manager images (no microscope): placement, calibration, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from pydantic import ValidationError

from mmtiffsink.errors import (
    CloseErrors,
    ConfigError,
    CoordinateError,
    FileExistsError_,
    FrameError,
    MissingFramesWarning,
    ProfileError,
    WriterClosedError,
    WriterError,
)
from mmtiffsink.sink import SinkOptions, TiffSink
from mmtiffsink.tiff import Codec

CHANNELS = ("DAPI", "FITC")
NT, NZ, NC = 3, 4, 2
H, W = 12, 16


def frame(c: int, z: int, t: int, p: int = 0) -> np.ndarray:
    """A frame whose pixels encode its coordinates."""
    value = 1000 * p + 100 * t + 10 * z + c
    return np.full((H, W), value, dtype=np.uint16) + np.arange(W, dtype=np.uint16)


def images(
    positions: int | None = None, *, pixel_size: float = 0.5, dz: float = 2.0, dt_ms: float = 250.0
) -> list[tuple[np.ndarray, dict[str, Any]]]:
    """(image, metadata) in pycro-manager's order (position -> t -> channel -> z)."""
    out = []
    elapsed = 0.0
    for t in range(NT):
        for p in range(positions or 1):
            for c, channel in enumerate(CHANNELS):
                for z in range(NZ):
                    axes: dict[str, Any] = {"time": t, "channel": channel, "z": z}
                    if positions is not None:
                        axes["position"] = p
                    metadata = {
                        "Axes": axes,
                        "PixelSize_um": pixel_size,
                        "ElapsedTime-ms": t * dt_ms + elapsed,
                        "ZPosition_um_Intended": 10.0 + z * dz,
                        "Exposure": 10.0,
                        "Camera": "Camera",
                        "Width": W,
                        "Height": H,
                    }
                    elapsed += 0.5
                    out.append((frame(c, z, t, p), metadata))
    return out


def read(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    with tifffile.TiffFile(path) as tif:
        data = tif.series[0].asarray()
        meta = tif.imagej_metadata or {}
    return data, meta


def check_stack(data: np.ndarray, p: int = 0) -> None:
    assert data.shape == (NT, NZ, NC, H, W)
    for t in range(NT):
        for z in range(NZ):
            for c in range(NC):
                np.testing.assert_array_equal(data[t, z, c], frame(c, z, t, p))


def test_one_file_placement_and_calibration(tmp_path: Path) -> None:
    with TiffSink(tmp_path, "exp") as sink:
        for image, metadata in images():
            assert sink.image_process_fn(image, metadata) is None
    assert sink.files == [tmp_path / "exp.tif"]
    data, meta = read(tmp_path / "exp.tif")
    check_stack(data)
    assert meta["spacing"] == pytest.approx(2.0)
    assert meta["finterval"] == pytest.approx(0.25, rel=0.05)
    assert list(meta["Labels"]) == [name for _ in range(NT * NZ) for name in CHANNELS]
    with tifffile.TiffFile(tmp_path / "exp.tif") as tif:
        page = tif.pages[0]
        x_resolution = page.tags["XResolution"].value
        assert x_resolution[0] / x_resolution[1] == pytest.approx(2.0)  # 1 / 0.5 µm
        # the image metadata go to tag 51123 (the first page keeps them in a private tag)
        stored = tif.pages[1].tags[51123].value
        stored = json.loads(stored) if isinstance(stored, str) else stored
        assert stored["Axes"] == {"time": 0, "channel": "FITC", "z": 0}


def test_positions_give_files(tmp_path: Path) -> None:
    with TiffSink(tmp_path, "exp") as sink:
        for image, metadata in images(positions=2):
            sink.put(image, metadata["Axes"], metadata)
    assert sink.files == [tmp_path / "exp_0.tif", tmp_path / "exp_1.tif"]
    for p in range(2):
        data, meta = read(tmp_path / f"exp_{p}.tif")
        check_stack(data, p)
        assert meta["spacing"] == pytest.approx(2.0)
        assert meta["finterval"] == pytest.approx(0.25, rel=0.05)


def test_explicit_values_win_and_channel_order(tmp_path: Path) -> None:
    with TiffSink(
        tmp_path,
        "exp",
        channel_names=["FITC", "DAPI"],
        pxsize=0.25,
        deltaz=3.0,
        timeinterval=7.0,
    ) as sink:
        for image, metadata in images():
            sink.image_process_fn(image, metadata)
    data, meta = read(tmp_path / "exp.tif")
    assert meta["spacing"] == pytest.approx(3.0)
    assert meta["finterval"] == pytest.approx(7.0)
    assert list(meta["Labels"][:2]) == ["FITC", "DAPI"]
    # channel 0 is now FITC (index 1 in the synthetic frames)
    np.testing.assert_array_equal(data[1, 2, 0], frame(1, 2, 1))
    with tifffile.TiffFile(tmp_path / "exp.tif") as tif:
        x_resolution = tif.pages[0].tags["XResolution"].value
        assert x_resolution[0] / x_resolution[1] == pytest.approx(4.0)


def test_pass_through(tmp_path: Path) -> None:
    image, metadata = images()[0]
    with TiffSink(tmp_path, pass_through=True) as sink:
        result = sink.image_process_fn(image, metadata)
    assert result is not None
    assert result[0] is image
    assert result[1] is metadata


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    image, metadata = images()[0]
    with TiffSink(tmp_path, "exp") as sink:
        sink.image_process_fn(image, metadata)
    before = (tmp_path / "exp.tif").read_bytes()
    with TiffSink(tmp_path, "exp") as sink, pytest.raises(FileExistsError_):
        sink.image_process_fn(image, metadata)
    assert (tmp_path / "exp.tif").read_bytes() == before
    with TiffSink(tmp_path, "exp", overwrite=True) as sink:
        sink.image_process_fn(image * 0 + 7, metadata)
    data, _ = read(tmp_path / "exp.tif")
    assert int(data.ravel()[0]) == 7


def test_two_keys_one_path_is_an_error(tmp_path: Path) -> None:
    image = frame(0, 0, 0)
    with TiffSink(tmp_path, "exp") as sink:
        sink.put(image, {"position": "A 1"})
        with pytest.raises(CoordinateError, match="would both go to"):
            sink.put(image, {"position": "A/1"})
    assert sink.files == [tmp_path / "exp_A_1.tif"]


def test_errors_surface(tmp_path: Path) -> None:
    image = frame(0, 0, 0)
    with TiffSink(tmp_path, "exp") as sink:
        sink.put(image, {"z": 0})
        with pytest.raises(CoordinateError):
            sink.put(image, {"z": 0})  # saved twice
        with pytest.raises(CoordinateError):
            sink.put(image, {"z": 1.5})
        with pytest.raises(FrameError):
            sink.put(np.zeros((3, 3, 3), np.uint16), {"z": 1})
    with pytest.raises(WriterClosedError):
        sink.put(image, {"z": 1})


def test_close_closes_every_file_then_raises(tmp_path: Path) -> None:
    """One file deleted while written: its error is raised, the other files are finished."""
    sink = TiffSink(tmp_path, "exp")
    for p in range(3):
        sink.put(frame(0, 0, 0, p), {"position": p})
    (tmp_path / "exp_0.tif").unlink()  # a real fault: the file is gone under the writer
    with pytest.raises(WriterError, match="deleted or replaced"):
        sink.close()
    sink.close()  # idempotent
    for p in (1, 2):
        data, _ = read(tmp_path / f"exp_{p}.tif")
        np.testing.assert_array_equal(data, frame(0, 0, 0, p))


def test_close_keeps_every_error(tmp_path: Path) -> None:
    """Several files failing at close: one error naming each, every error kept."""
    sink = TiffSink(tmp_path, "exp")
    for p in range(3):
        sink.put(frame(0, 0, 0, p), {"position": p})
    (tmp_path / "exp_0.tif").unlink()
    (tmp_path / "exp_2.tif").unlink()
    (tmp_path / "exp_2.tif").write_bytes(b"someone else's file")  # replaced
    with pytest.raises(CloseErrors) as caught:
        sink.close()
    assert len(caught.value.errors) == 2
    assert all(isinstance(e, WriterError) for e in caught.value.errors)
    assert "exp_0.tif" in str(caught.value) and "exp_2.tif" in str(caught.value)
    assert caught.value.__cause__ is caught.value.errors[0]
    assert (tmp_path / "exp_2.tif").read_bytes() == b"someone else's file"  # not clobbered
    data, _ = read(tmp_path / "exp_1.tif")
    np.testing.assert_array_equal(data, frame(0, 0, 0, 1))


def test_negative_z_and_time_map_to_planes_in_order(tmp_path: Path) -> None:
    """Explore/Magellan datasets and ndstorage's unordered z axis have negative z."""
    order = [(z, t) for t in (-1, 0, 1) for z in (2, -3, 0, -1)]
    with (  # z = -2 and 1 were not acquired
        pytest.warns(MissingFramesWarning, match="6 of 18"),
        TiffSink(tmp_path, "neg", template="{name}.tif") as sink,
    ):
        for z, t in order:
            sink.put(frame(0, z + 5, t + 5), {"z": z, "time": t})
        image, _ = sink.read({"z": -3, "time": -1})
        np.testing.assert_array_equal(image, frame(0, 2, 4))
    with tifffile.TiffFile(tmp_path / "neg.tif") as tif:
        data = tif.series[0].asarray()
        assert tif.imagej_metadata["slices"] == 6 and tif.imagej_metadata["frames"] == 3
    assert data.shape == (3, 6, H, W)
    for z, t in order:
        np.testing.assert_array_equal(data[t + 1, z + 3], frame(0, z + 5, t + 5))
    assert not data[0, 1].any() and not data[0, 4].any()  # z = -2 and z = 1: blank


def test_options_are_checked_when_built(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="bogus"):
        TiffSink(tmp_path, "x", bogus=1)
    with pytest.raises(ConfigError, match="compression"):
        TiffSink(tmp_path, "x", compression=("zstd", "x"))
    with pytest.raises(ConfigError, match="pixel_size_um"):
        TiffSink(tmp_path, "x", pxsize=float("nan"))
    with pytest.raises(ConfigError, match="template"):
        TiffSink(tmp_path, "x", template="sub/{name}.tif")
    options = SinkOptions.of(compression="zstd:1", colors=["magenta", "green"])
    sink = TiffSink(tmp_path, "x", options, interval_s=2.0)
    assert sink.options.codec == Codec("zstd", 1)
    assert sink.options.interval_s == 2.0 and options.interval_s is None  # frozen
    with pytest.raises(ValidationError):
        options.profile = "imagej"  # type: ignore[misc]


def test_if_exists_rename_gives_a_new_dataset_name(tmp_path: Path) -> None:
    (tmp_path / "exp_0.tif").write_bytes(b"an earlier acquisition")
    with TiffSink(tmp_path, "exp", if_exists="rename") as sink:
        for p in range(2):
            sink.put(frame(0, 0, 0, p), {"position": p})
    assert [f.name for f in sink.files] == ["exp_1_0.tif", "exp_1_1.tif"]
    assert (tmp_path / "exp_0.tif").read_bytes() == b"an earlier acquisition"
    with pytest.raises(FileExistsError_, match=r'if_exists="rename" to write .* \(exp_1, \.\.\.\)'):
        TiffSink(tmp_path, "exp").put(frame(0, 0, 0), {"position": 0})


def test_no_images_no_files(tmp_path: Path) -> None:
    with TiffSink(tmp_path / "sub", "exp") as sink:
        pass
    assert sink.files == []
    assert sink.closed


def test_storage_adapter_keeps_errors_for_close(tmp_path: Path) -> None:
    pytest.importorskip("ndstorage")
    from mmtiffsink.pycromanager import TiffStorage

    storage = TiffStorage(TiffSink(tmp_path, "exp"))
    storage.initialize({"PixelSize_um": 0.5, "z-step_um": 3.0})
    storage.put_image({"z": 0}, frame(0, 0, 0), {"Axes": {"z": 0}})
    storage.put_image({"z": 1}, frame(0, 1, 0), {"Axes": {"z": 1}})
    storage.put_image({"z": 1}, frame(0, 1, 0), {"Axes": {"z": 1}})  # repeated: kept for close
    assert isinstance(storage.error, CoordinateError)
    assert storage.get_image_coordinates_list() == [{"z": 0}, {"z": 1}]
    assert storage.has_image(z=1) and not storage.has_image(z=2)
    assert not storage.block_until_finished(0.01)
    storage.finish()  # never raises
    storage.finish()
    assert storage.is_finished() and storage.block_until_finished(0)
    with pytest.raises(CoordinateError):
        storage.close()
    np.testing.assert_array_equal(storage.read_image(z=1), frame(0, 1, 0))  # read back, closed
    assert storage.read_metadata(z=0) == {"Axes": {"z": 0}}
    data, meta = read(tmp_path / "exp.tif")
    assert data.shape == (2, H, W)
    assert meta["spacing"] == pytest.approx(3.0)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"profile": "omexml"}, ProfileError, "profile must be"),
        ({"profile": "imagej", "compression": None}, ProfileError, "needs each file's"),
        ({"compression": "lzw"}, ValueError, "unknown compression"),
        ({"compression": ("zstd", 99)}, ValueError, "level"),
    ],
)
def test_bad_options_fail_before_any_image(
    tmp_path: Path, options: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        TiffSink(tmp_path / "out", "x", **options)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


# -- one rule per fact: numbers, overwrite, Micro-Manager keys, neutral frames ---------------


def test_numpy_numbers_are_numbers(tmp_path: Path) -> None:
    """One number rule (mmtiffsink._values): numpy scalars are accepted as IJTiffFile takes them."""
    sink = TiffSink(tmp_path, "np", pixel_size_um=np.float32(0.65), z_step_um=np.int64(2))
    assert sink.options.pixel_size_um == pytest.approx(0.65)
    assert sink.options.z_step_um == 2.0
    for bad in (np.float64("nan"), -1, True, "0.5"):
        with pytest.raises(ConfigError, match="pixel_size_um"):
            TiffSink(tmp_path, "bad", pixel_size_um=bad)


def test_overwrite_is_one_rule_everywhere(tmp_path: Path) -> None:
    from mmtiffsink.ndtiff import ReplayOptions

    renamed = SinkOptions(if_exists="rename")
    assert SinkOptions(overwrite=True).if_exists == "overwrite"
    assert ReplayOptions(overwrite=False).if_exists == "error"
    assert TiffSink(tmp_path, options=renamed, overwrite=True).options.if_exists == "overwrite"
    assert TiffSink(tmp_path, options=renamed, overwrite=None).options.if_exists == "rename"
    for build in (SinkOptions, ReplayOptions):
        with pytest.raises(ConfigError, match="overwrite is True or False"):
            build(overwrite="yes")
        with pytest.raises(ConfigError, match="disagree"):
            build(overwrite=True, if_exists="rename")


def test_micro_manager_keys_one_table() -> None:
    """Each stage-position spelling feeds both the z step and the OME plane."""
    from mmtiffsink.sink import CalibrationTracker, mm_frame

    for key in ("ZPosition_um_Intended", "ZPosition_um", "ZPositionUm", "Z-Position"):
        tracker = CalibrationTracker()
        for z in range(3):
            tracker.update({"z": z}, {key: 1.5 * z})
        assert tracker.result().z_step_um == pytest.approx(1.5), key
        assert mm_frame({"z": 2}, {key: 3.0}).plane() == {"position_z": 3.0}, key


def test_neutral_frames_and_summary_in_every_profile(tmp_path: Path) -> None:
    """A source without Micro-Manager keys: Frame and Summary records (no made-up metadata)."""
    from mmtiffsink.sink import Calibration, Frame, Summary

    for profile in ("bigtiff", "imagej", "ome"):
        sink = TiffSink(tmp_path / profile, "n", profile=profile)
        sink.set_summary(
            Summary(stated=Calibration(pixel_size_um=0.25), annotations={"plan": '{"t": 2}'})
        )
        for t in range(2):
            record = Frame({"time": t}, {"mine": t}, elapsed_s=0.5 * t, z_um=1.0, exposure_s=0.01)
            sink.append(frame(0, 0, t), record)
        sink.close()
        (path,) = sink.files
        with tifffile.TiffFile(path) as tif:
            stored = tif.pages[1].tags[51123].value  # tifffile decodes the JSON itself
            assert (stored if isinstance(stored, dict) else json.loads(stored)) == {"mine": 1}
            if profile == "ome":
                xml = tif.ome_metadata or ""
                assert "plan" in xml and 'DeltaT="0.5"' in xml and 'PositionZ="1.0"' in xml
            else:
                ij = tif.imagej_metadata or {}
                assert 'plan = {"t": 2}' in ij["Info"] and ij["finterval"] == pytest.approx(0.5)
            x_res = tif.pages[0].tags["XResolution"].value
            assert x_res[1] / x_res[0] == pytest.approx(0.25)
        assert sink.blank_planes == 0 and sink.blank_planes_by_file == {path: 0}
