"""The OME-TIFF profile, and the imagej profile's colour and Info fixes.

Oracles: Bio-Formats 7.3.1 (OMETiffReader, its schema validation), ImageJ 1.x, tifffile, ome-types
(schema validation), bioio-ome-tiff when installed.
"""

from __future__ import annotations

import random
import re
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from mmtiffsink import IJTiffFile, MissingFramesWarning, ProfileError, TiffSink, repair
from mmtiffsink.errors import FrameError
from mmtiffsink.inspect import file_info
from mmtiffsink.sink import SinkOptions
from mmtiffsink.tiff import PlaneInfo, Profile
from tests.crash_support import kill_after_flush, run_child
from tests.readers import bioformats_info, bioformats_pixels, bioformats_server, imagej_read
from tests.writer_support import check_ome_schema, coded_frame

C, Z, T = 2, 3, 4
ALL = [(c, z, t) for t in range(T) for z in range(Z) for c in range(C)]


# ------------------------------------------------------------------ imagej profile fixes
@pytest.mark.readers
def test_imagej_uncompressed_keeps_channel_colours(tmp_path: Path, imagej_jar: Path) -> None:
    """images=N on the slot layout: ImageJ opens the composite with its LUTs, pixels exact."""
    path = tmp_path / "ij.tif"
    with IJTiffFile(
        path, shape=(C, Z, T), profile="imagej", compression=None, colors=["magenta", "lime"]
    ) as tif:
        for c, z, t in reversed(ALL):
            tif.save(coded_frame(c, z, t), c, z, t)
    info = imagej_read(path, ALL, imagej_jar, points=((5, 7), (3, 0)))
    assert info.opened, info.error
    assert (info.channels, info.slices, info.frames) == (C, Z, T)
    assert info.composite_mode == "composite"
    assert info.channel_colors[:2] == ((255, 0, 255), (0, 255, 0))
    for c, z, t in ALL:
        frame = coded_frame(c, z, t)
        plane = info.planes[(c, z, t)]
        assert plane.values == (float(frame[7, 5]), float(frame[0, 3]))
        assert plane.mean == pytest.approx(frame.mean())


@pytest.mark.readers
def test_imagej_info_channel_names_not_glued(tmp_path: Path, bioformats_jar: Path) -> None:
    """The Info text ends with a newline: Bio-Formats reads the last name as it is."""
    path = tmp_path / "names.tif"
    with IJTiffFile(path, profile="imagej", channel_names=["DAPI", "FITC"]) as tif:
        for c in range(2):
            for z in range(2):
                tif.save(coded_frame(c, z, 0), c, z, 0)
    xml = bioformats_info(path, bioformats_jar).ome_xml
    found = dict(
        re.findall(r"<Key>(Channel\dName)</Key>\s*<Value>([^<]*)</Value>", xml, flags=re.S)
    )
    assert found == {"Channel0Name": "DAPI", "Channel1Name": "FITC"}


# ------------------------------------------------------------------ the ome profile
NS = {"ome": "http://www.openmicroscopy.org/Schemas/OME/2016-06"}
SKIP = (1, 2, 3)  # never saved: a blank plane without DeltaT


def plane_of(c: int, z: int, t: int) -> dict[str, float]:
    return {
        "delta_t": t * 2.5 + c * 0.125,
        "exposure_time": 0.01 * (c + 1),
        "position_x": 100.0,
        "position_y": -50.5,
        "position_z": z * 0.5,
    }


def write_ome(path: Path, *, skip: tuple[int, int, int] | None = SKIP, **kw: Any) -> None:
    order = list(ALL)
    random.Random(7).shuffle(order)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingFramesWarning)
        with IJTiffFile(
            path,
            profile="ome",
            pxsize=0.65,
            deltaz=0.5,
            timeinterval=2.5,
            colors=["lime", "red"],
            channel_names=["GFP", "mCherry"],
            **kw,
        ) as tif:
            for c, z, t in order:
                if (c, z, t) != skip:
                    tif.save(coded_frame(c, z, t), c, z, t, plane=plane_of(c, z, t))


def description(path: Path) -> str:
    with tifffile.TiffFile(path) as f:
        return str(f.pages.first.description)


def check_schema(xml: str) -> None:
    check_ome_schema(xml)


@pytest.mark.parametrize("compression", ["zstd", "deflate", None])
def test_ome_tiff_roundtrip_tifffile(tmp_path: Path, compression: object) -> None:
    path = tmp_path / "cells.ome.tif"
    write_ome(path, compression=compression)
    with tifffile.TiffFile(path) as f:
        assert f.is_ome and f.is_bigtiff
        series = f.series[0]
        assert series.axes == "TZCYX"
        assert series.shape == (T, Z, C, 24, 40)
        data = series.asarray()
        xml = f.pages.first.description
    for c, z, t in ALL:
        expected = 0 if (c, z, t) == SKIP else coded_frame(c, z, t)
        np.testing.assert_array_equal(data[t, z, c], expected)
    check_schema(xml)
    root = ET.fromstring(xml)
    image = root.find("ome:Image", NS)
    assert image is not None and image.get("Name") == "cells"
    assert image.find("ome:AcquisitionDate", NS) is not None
    pixels = image.find("ome:Pixels", NS)
    assert pixels is not None
    assert pixels.get("DimensionOrder") == "XYCZT" and pixels.get("Type") == "uint16"
    assert pixels.get("PhysicalSizeXUnit") == "µm" and pixels.get("PhysicalSizeZ") == "0.5"
    assert (pixels.get("TimeIncrement"), pixels.get("TimeIncrementUnit")) == ("2.5", "s")
    channels = pixels.findall("ome:Channel", NS)
    assert [(ch.get("Name"), ch.get("Color")) for ch in channels] == [
        ("GFP", "16711935"),
        ("mCherry", "-16776961"),
    ]
    assert all(ch.get("SamplesPerPixel") == "1" for ch in channels)
    tiffdata = pixels.findall("ome:TiffData", NS)
    assert [
        (int(td.get("FirstC", -1)), int(td.get("FirstZ", -1)), int(td.get("FirstT", -1)))
        for td in tiffdata
    ] == ALL
    assert [int(td.get("IFD", -1)) for td in tiffdata] == list(range(len(ALL)))
    planes = pixels.findall("ome:Plane", NS)
    assert len(planes) == len(ALL)
    for plane in planes:
        czt = (int(plane.get("TheC", -1)), int(plane.get("TheZ", -1)), int(plane.get("TheT", -1)))
        if czt == SKIP:  # never acquired: nothing invented
            assert plane.get("DeltaT") is None and plane.get("PositionX") is None
            continue
        want = plane_of(*czt)
        assert float(plane.get("DeltaT", "nan")) == want["delta_t"]
        assert float(plane.get("ExposureTime", "nan")) == want["exposure_time"]
        assert float(plane.get("PositionY", "nan")) == want["position_y"]
        assert float(plane.get("PositionZ", "nan")) == want["position_z"]
        assert plane.get("PositionXUnit") == "µm" and plane.get("DeltaTUnit") == "s"
    info = file_info(path)
    assert info.profile == "ome" and info.finished
    assert info.shape == {"T": T, "Z": Z, "C": C, "Y": 24, "X": 40}
    assert (info.pixel_size_um, info.z_step_um, info.interval_s) == (0.65, 0.5, 2.5)
    assert info.channel_names == ["GFP", "mCherry"]


def test_ome_single_plane_and_names(tmp_path: Path) -> None:
    path = tmp_path / "one.tif"
    with IJTiffFile(
        path,
        profile="ome",
        dtype="float32",
        image_name="well A1",
        acquisition_date="2024-01-31T12:34:56+01:00",
        annotations={"Core-Camera": "Camera", "PixelSize_um": "0.5"},
    ) as tif:
        tif.save(np.full((8, 9), 0.5, np.float32), 0, 0, 0)
    xml = description(path)
    check_schema(xml)
    root = ET.fromstring(xml)
    image = root.find("ome:Image", NS)
    assert image is not None and image.get("Name") == "well A1"
    assert image.findtext("ome:AcquisitionDate", namespaces=NS) == "2024-01-31T12:34:56+01:00"
    pairs = root.findall(".//ome:MapAnnotation/ome:Value/ome:M", NS)
    assert {m.get("K"): m.text for m in pairs} == {"Core-Camera": "Camera", "PixelSize_um": "0.5"}
    pixels = image.find("ome:Pixels", NS)
    assert pixels is not None and pixels.get("Type") == "float"
    assert pixels.get("PhysicalSizeX") is None  # uncalibrated: nothing written


def test_ome_profile_rules() -> None:
    ome = Profile.get("ome")
    assert ome.bigtiff and ome.ome and ome.suffix == ".ome.tif"
    assert str(ome.codec()) == "zstd:3"
    assert {ome.codec(c).name for c in ("zstd:9", "deflate", None)} == {"zstd", "deflate", "none"}
    with pytest.raises(ProfileError, match="stores"):
        ome.dtype("int64")
    assert ome.dtype("float64") == np.dtype("<f8")
    with pytest.raises(FrameError, match="unknown plane value"):
        PlaneInfo.of({"deltat": 1.0})
    with pytest.raises(FrameError, match="finite"):
        PlaneInfo.of({"delta_t": float("nan")})
    with pytest.raises(FrameError, match="non-negative"):
        PlaneInfo(exposure_time=-1)
    assert PlaneInfo.of({"delta_t": 1}) == PlaneInfo(delta_t=1.0)


def test_ome_template_default_follows_profile() -> None:
    assert SinkOptions.of(profile="ome").template == "{name}_{position}.ome.tif"
    assert SinkOptions.of(SinkOptions(), profile="ome").template == "{name}_{position}.ome.tif"
    explicit = SinkOptions.of(template="{name}.tif", profile="ome")
    assert explicit.template == "{name}.tif"
    assert SinkOptions.of(explicit, profile="bigtiff").template == "{name}.tif"
    assert SinkOptions.of(profile="bigtiff").template == "{name}_{position}.tif"


def test_sink_fills_ome_from_metadata(tmp_path: Path) -> None:
    summary = {"DateAndTime": "2024-01-31 12:34:56.789 +0100", "Core-Camera": "Camera"}
    with TiffSink(tmp_path, "exp", profile="ome", channel_names=["DAPI", "FITC"]) as sink:
        sink.update_summary(summary)
        for t in range(2):
            for c, name in enumerate(["DAPI", "FITC"]):
                meta = {
                    "Axes": {"time": t, "channel": name},
                    "PixelSize_um": 0.5,
                    "ElapsedTime-ms": 1000.0 * t + 10 * c,
                    "Exposure": 5.0 * (c + 1),
                    "XPosition_um_Intended": 12.5,
                    "YPosition_um_Intended": "-3.0",
                    "ZPosition_um_Intended": 7.0,
                }
                sink.image_process_fn(coded_frame(c, 0, t), meta)
    (path,) = sink.files
    assert path.name == "exp.ome.tif"
    xml = description(path)
    check_schema(xml)
    root = ET.fromstring(xml)
    date = root.findtext(".//ome:AcquisitionDate", namespaces=NS)
    assert date == "2024-01-31T12:34:56.789000+01:00"
    pairs = {m.get("K"): m.text for m in root.findall(".//ome:MapAnnotation//ome:M", NS)}
    assert pairs["Core-Camera"] == "Camera"
    planes = root.findall(".//ome:Plane", NS)
    got = [
        (p.get("TheC"), p.get("TheT"), p.get("DeltaT"), p.get("ExposureTime"), p.get("PositionY"))
        for p in planes
    ]
    assert got == [
        ("0", "0", "0.0", "0.005", "-3.0"),
        ("1", "0", "0.01", "0.01", "-3.0"),
        ("0", "1", "1.0", "0.005", "-3.0"),
        ("1", "1", "1.01", "0.01", "-3.0"),
    ]
    assert file_info(path).profile == "ome"


@pytest.mark.readers
def test_bioformats_reads_ome_tiff(tmp_path: Path, bioformats_jar: Path) -> None:
    """OMETiffReader, the schema check passes, and every value is there."""
    path = tmp_path / "bf.ome.tif"
    write_ome(path)
    run = bioformats_server(bioformats_jar).run(["info", "-nopix", "-omexml", str(path)], 120)
    assert run.returncode == 0, run.tail()
    assert "OMETiffReader initializing" in run.stdout
    assert "No validation errors found." in run.stdout
    info = bioformats_info(path, bioformats_jar)
    assert (info.size_c, info.size_z, info.size_t, info.size_y, info.size_x) == (C, Z, T, 24, 40)
    assert info.dimension_order == "XYCZT" and info.pixel_type == "uint16"
    assert info.physical_size_x == pytest.approx(0.65)
    assert info.physical_size_z == pytest.approx(0.5)
    assert info.time_increment == pytest.approx(2.5)
    assert info.channel_names == ["GFP", "mCherry"]
    root = ET.fromstring(info.ome_xml)
    colors = [ch.get("Color") for ch in root.findall(".//ome:Channel", NS)]
    assert colors == ["16711935", "-16776961"]
    planes = {
        (int(p.get("TheC", -1)), int(p.get("TheZ", -1)), int(p.get("TheT", -1))): p
        for p in root.findall(".//ome:Pixels/ome:Plane", NS)
    }
    for czt in ALL:
        plane = planes[czt]
        if czt == SKIP:
            assert plane.get("DeltaT") is None
            continue
        assert float(plane.get("DeltaT", "nan")) == pytest.approx(plane_of(*czt)["delta_t"])
        assert float(plane.get("PositionX", "nan")) == pytest.approx(100.0)
        assert float(plane.get("PositionZ", "nan")) == pytest.approx(plane_of(*czt)["position_z"])
    pixels = bioformats_pixels(path, bioformats_jar, tmp_path)
    assert pixels.shape == (T, Z, C, 24, 40)
    for c, z, t in ALL:
        expected = 0 if (c, z, t) == SKIP else coded_frame(c, z, t)
        np.testing.assert_array_equal(pixels[t, z, c], expected)


# bioio-ome-tiff passes ome-types 0.7 a parser= argument, which warns (not our file's fault)
@pytest.mark.filterwarnings("ignore:As of version 0.4.0, the parser argument is ignored")
def test_bioio_reads_ome_tiff(tmp_path: Path) -> None:
    pytest.importorskip("bioio")
    bioio_ome_tiff = pytest.importorskip("bioio_ome_tiff")
    from bioio import BioImage

    path = tmp_path / "bioio.ome.tif"
    write_ome(path, skip=None)
    image = BioImage(path, reader=bioio_ome_tiff.Reader)
    assert (image.dims.T, image.dims.C, image.dims.Z, image.dims.Y, image.dims.X) == (
        T,
        C,
        Z,
        24,
        40,
    )
    assert image.channel_names == ["GFP", "mCherry"]
    sizes = image.physical_pixel_sizes
    assert pytest.approx((0.5, 0.65, 0.65)) == (sizes.Z, sizes.Y, sizes.X)
    data = image.get_image_data("TCZYX")
    for c, z, t in ALL:
        np.testing.assert_array_equal(data[t, c, z], coded_frame(c, z, t))


KILL_OME_CHILD = """
    import sys, time
    from mmtiffsink import IJTiffFile
    from tests.writer_support import coded_frame
    path = sys.argv[1]
    tif = IJTiffFile(path, profile="ome", pxsize=0.5, deltaz=1.0, timeinterval=2.0,
                     channel_names=["A", "B"], colors=["lime", "red"])
    for t in range(10_000):
        for z in (2, 0, 1):
            for c in (1, 0):
                tif.save(coded_frame(c, z, t, (64, 48)), c, z, t,
                         plane={"delta_t": 2.0 * t + 0.1 * c, "position_z": float(z)})
        if t == 4:
            tif.flush()
            print("flushed", flush=True)
        if t > 4:
            time.sleep(0.002)
"""


def test_sigkilled_ome_writer_repairs_to_valid_ome_tiff(tmp_path: Path) -> None:
    path = tmp_path / "killed.ome.tif"
    child = run_child(KILL_OME_CHILD, str(path))
    kill_after_flush(child, 0.2)
    with tifffile.TiffFile(path) as f:  # a valid TIFF as it was left, not yet OME
        assert not f.is_ome and len(f.pages) >= 30
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingFramesWarning)
        report = repair(path)
    assert report.frames >= 30 and not report.already_finished
    c, z, t = report.shape
    assert (c, z) == (2, 3) and t >= 5
    with tifffile.TiffFile(path) as f:
        assert f.is_ome
        assert f.series[0].shape == (t, z, c, 64, 48)
        data = f.series[0].asarray()
        xml = f.pages.first.description
    check_schema(xml)
    for tt in range(5):
        for zz in range(3):
            for cc in range(2):
                np.testing.assert_array_equal(data[tt, zz, cc], coded_frame(cc, zz, tt, (64, 48)))
    root = ET.fromstring(xml)
    pixels = root.find(".//ome:Pixels", NS)
    assert pixels is not None and pixels.get("PhysicalSizeZ") == "1.0"
    assert [ch.get("Name") for ch in pixels.findall("ome:Channel", NS)] == ["A", "B"]
    first = pixels.findall("ome:Plane", NS)[1]  # c=1, z=0, t=0
    assert (first.get("DeltaT"), first.get("PositionZ")) == ("0.1", "0.0")
    assert repair(path).already_finished


def test_channel_names_as_original_metadata_for_fijis_importer(tmp_path: Path) -> None:
    """Fiji's importer shows a file's original metadata in Show Info and no OME channel name
    anywhere (benchmarks/reader_matrix.py), so the names are in both; the XML stays valid."""
    path = tmp_path / "named.ome.tif"
    write_ome(path)
    xml = description(path)
    check_schema(xml)
    root = ET.fromstring(xml)
    pairs = {
        a.findtext("ome:Value/ome:OriginalMetadata/ome:Key", namespaces=NS): a.findtext(
            "ome:Value/ome:OriginalMetadata/ome:Value", namespaces=NS
        )
        for a in root.iterfind("ome:StructuredAnnotations/ome:XMLAnnotation", NS)
        if a.get("Namespace") == "openmicroscopy.org/OriginalMetadata"
    }
    assert pairs == {"Channel0Name": "GFP", "Channel1Name": "mCherry"}
    ids = [a.get("ID") for a in root.iterfind("ome:StructuredAnnotations/*", NS)]
    assert len(ids) == len(set(ids))
