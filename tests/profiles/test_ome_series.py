"""Several positions as series (OME Images) of one OME-TIFF.

Oracles: tifffile (``series[*]``), Bio-Formats 7.3.1 (OMETiffReader, its schema validation,
series and StageLabels, bfconvert pixels), bioio-ome-tiff (scenes), ome-types (schema).
"""

from __future__ import annotations

import random
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from mmtiffsink import IJTiffFile, MissingFramesWarning, repair
from mmtiffsink.errors import ConfigError, CoordinateError, ProfileError
from mmtiffsink.inspect import file_info
from mmtiffsink.tiff import StageLabel
from tests.crash_support import kill_after_flush, run_child
from tests.readers import bioformats_pixels, bioformats_server, imagej_read
from tests.series_support import series_frame
from tests.writer_support import PLANE_TAG, check_ome_schema, coded_frame

NS = {"ome": "http://www.openmicroscopy.org/Schemas/OME/2016-06"}
C, T = 2, 2
ZS = (3, 1, 2)  # z slices of series 0, 1, 2: positions may differ in z
NAMES = ("A1", "B2", "C3")
STAGES = ((100.0, -50.5, 7.0), (1200.25, 30.0, None), (-5.0, 0.0, 12.5))
MISSING = (1, 1, 0, 1)  # (series, c, z, t) never saved


def planes_of(s: int) -> list[tuple[int, int, int]]:
    return [(c, z, t) for t in range(T) for z in range(ZS[s]) for c in range(C)]


def write_series(path: Path, **kw: Any) -> None:
    """Three series saved interleaved, in a shuffled order; one plane of series 1 missing."""
    order = [(s, *czt) for s in range(3) for czt in planes_of(s)]
    random.Random(3).shuffle(order)
    with IJTiffFile(
        path,
        profile="ome",
        pxsize=0.5,
        deltaz=1.5,
        timeinterval=3.0,
        channel_names=["GFP", "mCherry"],
        colors=["lime", "red"],
        **kw,
    ) as tif:
        for s, name in enumerate(NAMES):
            x, y, z = STAGES[s]
            tif.set_series(s, name=name, stage={"x": x, "y": y, "z": z})
        for s, c, z, t in order:
            if (s, c, z, t) != MISSING:
                plane = {"delta_t": 3.0 * t + s, "position_x": STAGES[s][0]}
                tif.save(series_frame(s, c, z, t), c, z, t, plane=plane, series=s)
        assert tif.series_shapes == {s: (C, ZS[s], T) for s in range(3)}


def plane_tags(path: Path) -> list[tuple[int, ...]]:
    """Each IFD's plane tag, in chain order."""
    with tifffile.TiffFile(path) as f:
        return [tuple(page.tags[PLANE_TAG].value) for page in f.pages]


def check_schema(xml: str) -> None:
    check_ome_schema(xml)


def check_pixels(
    data: np.ndarray, s: int, blank: tuple[int, int, int, int] | None = MISSING
) -> None:
    """``data`` (T, Z, C, Y, X) holds series ``s``'s frames (a blank one where missing)."""
    assert data.shape == (T, ZS[s], C, 24, 40)
    for c, z, t in planes_of(s):
        expected = 0 if (s, c, z, t) == blank else series_frame(s, c, z, t)
        np.testing.assert_array_equal(data[t, z, c], expected)


def test_series_roundtrip_tifffile(tmp_path: Path) -> None:
    path = tmp_path / "plate.ome.tif"
    with pytest.warns(MissingFramesWarning, match=r"1 of 24 planes .* \(series 1 \(B2\): 1\)"):
        write_series(path)
    with tifffile.TiffFile(path) as f:
        assert f.is_ome and len(f.series) == 3
        assert [s.name for s in f.series] == list(NAMES)
        assert [s.axes for s in f.series] == ["TZCYX", "TCYX", "TZCYX"]
        for s, series in enumerate(f.series):
            check_pixels(series.asarray().reshape(T, ZS[s], C, 24, 40), s)
        xml = f.pages.first.description
    # the chain: series 0 in plane order, then series 1, then series 2
    expected = [(*czt, s)[: 3 if s == 0 else 4] for s in range(3) for czt in planes_of(s)]
    assert plane_tags(path) == expected
    check_schema(xml)
    root = ET.fromstring(xml)
    images = root.findall("ome:Image", NS)
    assert [(i.get("ID"), i.get("Name")) for i in images] == [
        (f"Image:{s}", NAMES[s]) for s in range(3)
    ]
    first_ifd = 0
    for s, image in enumerate(images):
        label = image.find("ome:StageLabel", NS)
        assert label is not None and label.get("Name") == NAMES[s]
        x, y, z = STAGES[s]
        assert (float(label.get("X", "nan")), float(label.get("Y", "nan"))) == (x, y)
        assert label.get("Z") == (None if z is None else repr(z))
        assert label.get("XUnit") == "µm"
        pixels = image.find("ome:Pixels", NS)
        assert pixels is not None and pixels.get("ID") == f"Pixels:{s}"
        assert (pixels.get("SizeC"), pixels.get("SizeZ"), pixels.get("SizeT")) == (
            str(C),
            str(ZS[s]),
            str(T),
        )
        assert pixels.get("PhysicalSizeZ") == "1.5" and pixels.get("TimeIncrement") == "3.0"
        channels = pixels.findall("ome:Channel", NS)
        assert [(ch.get("ID"), ch.get("Name")) for ch in channels] == [
            (f"Channel:{s}:0", "GFP"),
            (f"Channel:{s}:1", "mCherry"),
        ]
        ifds = [int(td.get("IFD", -1)) for td in pixels.findall("ome:TiffData", NS)]
        assert ifds == list(range(first_ifd, first_ifd + C * ZS[s] * T))
        first_ifd += len(ifds)
        for plane in pixels.findall("ome:Plane", NS):
            czt = (
                int(plane.get("TheC", -1)),
                int(plane.get("TheZ", -1)),
                int(plane.get("TheT", -1)),
            )
            if (s, *czt) == MISSING:
                assert plane.get("DeltaT") is None  # never acquired: nothing invented
            else:
                assert float(plane.get("DeltaT", "nan")) == 3.0 * czt[2] + s
                assert float(plane.get("PositionX", "nan")) == STAGES[s][0]
    info = file_info(path)
    assert info.finished and info.profile == "ome"
    assert info.planes == sum(C * z * T for z in ZS)
    assert [(s.name, s.shape) for s in info.series] == [
        (NAMES[s], {"T": T, "Z": ZS[s], "C": C, "Y": 24, "X": 40}) for s in range(3)
    ]
    assert "series       3: A1 (T=2 Z=3 C=2), B2 (T=2 Z=1 C=2), C3 (T=2 Z=2 C=2)" in info.format()


def test_one_series_file_is_unchanged(tmp_path: Path) -> None:
    """series=0 is the single-image file, byte for byte; a 4-value plane tag only for s > 0."""
    paths = [tmp_path / "plain" / "f.ome.tif", tmp_path / "series0" / "f.ome.tif"]
    for i, path in enumerate(paths):
        path.parent.mkdir()
        with IJTiffFile(path, profile="ome", acquisition_date="2024-05-01T10:00:00") as tif:
            for c, z, t in planes_of(0):
                extra = {"series": 0} if i else {}
                tif.save(coded_frame(c, z, t), c, z, t, **extra)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert all(len(key) == 3 for key in plane_tags(paths[1]))


def test_series_read_frame_and_declared_shape(tmp_path: Path) -> None:
    path = tmp_path / "declared.ome.tif"
    warned = pytest.warns(MissingFramesWarning, match=r"series 1: 3")
    with warned, IJTiffFile(path, profile="ome", shape=(1, 2, 2)) as tif:
        saved = [(0, z, t) for z in range(2) for t in range(2)] + [(1, 0, 0)]
        for s, z, t in saved:  # series 1: one plane of the declared four
            tif.save(series_frame(s, 0, z, t), 0, z, t, series=s)
        image, _ = tif.read_frame(0, 1, 0, series=0)
        np.testing.assert_array_equal(image, series_frame(0, 0, 1, 0))
        with pytest.raises(CoordinateError, match=r"\(0, 1, 1\) of series 1 was not saved"):
            tif.read_frame(0, 1, 1, series=1)
        with pytest.raises(CoordinateError, match="outside the declared shape"):
            tif.save(series_frame(1, 0, 0, 2), 0, 0, 2, series=1)
    with IJTiffFile(path, profile="ome", shape=(1, 1, 1)) as tif:
        tif.save(series_frame(2, 0, 0, 0), 0, 0, 0, series=2)
        with pytest.warns(MissingFramesWarning, match=r"series 0, 1 of .*Image:0"):
            tif.close()
        image, _ = tif.read_frame(0, 0, 0, series=2)  # after close: still by its own number
        np.testing.assert_array_equal(image, series_frame(2, 0, 0, 0))
    with tifffile.TiffFile(path) as f:
        assert len(f.series) == 1 and f.series[0].shape == (24, 40)


def test_series_absurd_input(tmp_path: Path) -> None:
    with IJTiffFile(tmp_path / "a.ome.tif", profile="ome", max_planes=10) as tif:
        frame = coded_frame(0, 0, 0)
        for bad in (-1, 1.0, True, "1", None, np.float64(2)):
            with pytest.raises(CoordinateError, match="series"):
                tif.save(frame, 0, 0, 0, series=bad)
        with pytest.raises(CoordinateError, match=r"series=1000000000 is absurd"):
            tif.save(frame, 0, 0, 0, series=10**9)
        with pytest.raises(CoordinateError, match=r"series=-2 is negative"):
            tif.set_series(-2, name="x")
        with pytest.raises(ConfigError, match=r"stage x \(µm\) must be a finite number"):
            tif.set_series(1, stage={"x": float("nan")})
        with pytest.raises(ConfigError, match="unknown stage field 'w'"):
            tif.set_series(1, stage={"w": 1.0})
        with pytest.raises(ConfigError, match="a series name is text"):
            tif.set_series(1, name=3)
        tif.save(frame, 0, 0, 0, series=np.int64(1))
        with pytest.raises(CoordinateError, match=r"\(0, 0, 0\) of series 1 was already saved"):
            tif.save(frame, 0, 0, 0, series=1)
        tif.save(frame, 0, 0, 4, series=0)  # 5 planes in series 0, 1 in series 1
        with pytest.raises(CoordinateError, match=r"11 planes \(C x Z x T summed over the series"):
            tif.save(frame, 0, 0, 4, series=2)
        tif.save(frame, 0, 0, 3, series=1)  # 4 + 5 planes: within the cap
        with pytest.raises(CoordinateError, match="11 planes"):
            tif.save(frame, 0, 0, 6, series=0)
        with pytest.raises(ConfigError, match="stage is a StageLabel"):
            tif.set_series(1, stage=(1.0, 2.0))
        tif.set_series(1, stage=StageLabel("B", 1.0, 2.0))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MissingFramesWarning)
            tif.close()
    with IJTiffFile(tmp_path / "d.ome.tif", profile="ome", shape=(1, 1, 4), max_planes=10) as tif:
        tif.save(coded_frame(0, 0, 0), 0, 0, 0, series=0)
        tif.save(coded_frame(0, 0, 0), 0, 0, 0, series=1)  # 2 x 4 declared planes
        with pytest.raises(CoordinateError, match="12 planes"):  # each series holds all 4
            tif.save(coded_frame(0, 0, 0), 0, 0, 0, series=2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MissingFramesWarning)
            tif.close()
    with IJTiffFile(tmp_path / "b.tif", profile="bigtiff") as tif:
        tif.save(coded_frame(0, 0, 0), 0, 0, 0, series=0)
        with pytest.raises(ProfileError, match="only profile='ome' holds several images"):
            tif.save(coded_frame(0, 0, 0), 0, 0, 1, series=1)
        with pytest.raises(ProfileError, match="use profile='ome'"):
            tif.set_series(0, name="x")
    with tifffile.TiffFile(tmp_path / "a.ome.tif") as f:
        assert [s.shape[0] for s in f.series] == [5, 4]
        assert 'Name="B" X="1.0"' in (f.ome_metadata or "")


@pytest.mark.readers
def test_bioformats_reads_series(tmp_path: Path, bioformats_jar: Path) -> None:
    """OMETiffReader, no validation errors, three series with their sizes and StageLabels."""
    path = tmp_path / "bf.ome.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingFramesWarning)
        write_series(path)
    run = bioformats_server(bioformats_jar).run(["info", "-nopix", "-omexml", str(path)], 120)
    assert run.returncode == 0, run.tail()
    assert "OMETiffReader initializing" in run.stdout
    assert "No validation errors found." in run.stdout
    assert "Series count = 3" in run.stdout
    xml = run.stdout[run.stdout.find("<?xml") : run.stdout.rfind("</OME>") + 6]
    root = ET.fromstring(xml)
    images = root.findall("ome:Image", NS)
    assert [i.get("Name") for i in images] == list(NAMES)
    for s, image in enumerate(images):
        pixels = image.find("ome:Pixels", NS)
        assert pixels is not None
        sizes = tuple(int(pixels.get(f"Size{a}", -1)) for a in "XYCZT")
        assert sizes == (40, 24, C, ZS[s], T)
        label = image.find("ome:StageLabel", NS)
        assert label is not None and float(label.get("X", "nan")) == STAGES[s][0]
        assert [ch.get("Name") for ch in pixels.findall("ome:Channel", NS)] == ["GFP", "mCherry"]
    for s in (0, 1, 2):
        check_pixels(bioformats_pixels(path, bioformats_jar, tmp_path, series=s), s)


# bioio-ome-tiff passes ome-types 0.7 a parser= argument, which warns (not our file's fault)
@pytest.mark.filterwarnings("ignore:As of version 0.4.0, the parser argument is ignored")
def test_bioio_reads_series_as_scenes(tmp_path: Path) -> None:
    pytest.importorskip("bioio")
    bioio_ome_tiff = pytest.importorskip("bioio_ome_tiff")
    from bioio import BioImage

    path = tmp_path / "scenes.ome.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingFramesWarning)
        write_series(path)
    image = BioImage(path, reader=bioio_ome_tiff.Reader)
    assert len(image.scenes) == 3
    for s in range(3):
        image.set_scene(s)
        dims = image.dims
        assert (T, C, ZS[s]) == (dims.T, dims.C, dims.Z)
        assert image.channel_names == ["GFP", "mCherry"]
        data = image.get_image_data("TZCYX")
        check_pixels(data, s)


KILL_SERIES_CHILD = """
    import sys, time
    from mmtiffsink import IJTiffFile
    from tests.series_support import series_frame
    path = sys.argv[1]
    tif = IJTiffFile(path, profile="ome", pxsize=0.5, channel_names=["A", "B"])
    for s in range(3):
        tif.set_series(s, name=f"Pos{s}", stage={"x": 10.0 * s, "y": -1.0})
    for t in range(10_000):
        for s in range(3):  # positions visited in turn, each with its own z count
            for z in range(s + 1):
                for c in (1, 0):
                    tif.save(series_frame(s, c, z, t, (64, 48)), c, z, t, series=s,
                             plane={"delta_t": 2.0 * t})
        if t == 3:
            tif.flush()
            print("flushed", flush=True)
        if t > 3:
            time.sleep(0.002)
"""


def test_sigkilled_series_writer_repairs(tmp_path: Path) -> None:
    path = tmp_path / "killed.ome.tif"
    child = run_child(KILL_SERIES_CHILD, str(path))
    kill_after_flush(child, 0.2)
    info = file_info(path)
    assert not info.finished and [s.shape["Z"] for s in info.series] == [1, 2, 3]
    with tifffile.TiffFile(path) as f:  # a valid TIFF as it was left, not yet OME
        assert not f.is_ome and len(f.pages) >= 4 * 12
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingFramesWarning)
        report = repair(path)
    assert report.series == 3 and not report.already_finished
    t_size = report.shape[2]
    assert report.shape[:2] == (2, 1) and t_size >= 4
    with tifffile.TiffFile(path) as f:
        assert f.is_ome and len(f.series) == 3
        assert [s.name for s in f.series] == ["Pos0", "Pos1", "Pos2"]
        xml = f.pages.first.description
        for s, series in enumerate(f.series):
            data = series.asarray().reshape(-1, s + 1, 2, 64, 48)  # each its own T
            assert t_size - 1 <= data.shape[0] <= t_size
            for t in range(4):  # flushed before the kill: every frame exact
                for z in range(s + 1):
                    for c in range(2):
                        np.testing.assert_array_equal(
                            data[t, z, c], series_frame(s, c, z, t, (64, 48))
                        )
    check_schema(xml)
    labels = ET.fromstring(xml).findall(".//ome:StageLabel", NS)
    assert [(lb.get("Name"), lb.get("X")) for lb in labels] == [
        ("Pos0", "0.0"),
        ("Pos1", "10.0"),
        ("Pos2", "20.0"),
    ]
    assert repair(path).already_finished


def test_preview_draws_a_row_per_series(tmp_path: Path) -> None:
    """Finished and unfinished: one row per series, each channel in its colour."""
    import shutil

    import mmtiffsink
    from mmtiffsink.inspect._preview import sheet
    from tests.preview_support import LIME, MAGENTA, SPOTS, at, decode, is_missing, near, spot_frame

    path = tmp_path / "rows.ome.tif"
    early = tmp_path / "early.ome.tif"
    tif = IJTiffFile(path, profile="ome", colors=["magenta", "lime"], channel_names=["A", "B"])
    for s in range(2):
        tif.set_series(s, name=f"well {s}")
        for c in range(s, 2):  # series 1: channel 0 never saved
            tif.save(spot_frame(c), c, 0, 0, series=s)
    tif.flush()
    shutil.copy(path, early)  # the file as a killed writer would leave it
    with pytest.warns(MissingFramesWarning, match=r"series 1 \(well 1\): 1"):
        tif.close()
    for target in (path, early):
        assert file_info(target).finished is (target == path)
        rgb = decode(mmtiffsink.preview(target))
        boxes = sheet(target, projection="max", time="first").boxes
        assert {k for k in boxes if k.startswith("header")} == {"header 0", "header 1"}
        for r in range(2):
            assert near(at(rgb, boxes[f"tile {r} 1"], *SPOTS[1]), LIME), (target, r)
        assert near(at(rgb, boxes["tile 0 0"], *SPOTS[0]), MAGENTA)
        assert is_missing(rgb, boxes["tile 1 0"])  # blank in the finished file, absent before


def test_sink_positions_as_series(tmp_path: Path) -> None:
    """TiffSink(positions="series"): one file, a series per position in order of arrival."""
    from mmtiffsink import TiffSink
    from mmtiffsink.sink import Placement

    with pytest.raises(ConfigError, match=r"positions='series' .* needs profile='ome'"):
        TiffSink(tmp_path, "x", positions="series")
    with pytest.raises(ConfigError, match="positions"):
        TiffSink(tmp_path, "x", profile="ome", positions="both")
    stages = {"B2": (3.0, 4.0), 7: (-1.5, 0.0)}
    with TiffSink(tmp_path, "exp", profile="ome", positions="series") as sink:
        for s, position in enumerate(stages):  # a label and an index
            x, y = stages[position]
            for z in range(2 + s):
                for c in ("DAPI", "FITC"):
                    meta = {"XPosition_um_Intended": x, "YPosition_um_Intended": y}
                    axes = {"position": position, "z": z, "channel": c}
                    placement = sink.put(series_frame(s, c == "FITC", z, 0), axes, meta)
                    assert sink.file_of(placement) == tmp_path / "exp.ome.tif"
        image, _ = sink.read({"position": 7, "z": 2, "channel": "FITC"})
        np.testing.assert_array_equal(image, series_frame(1, 1, 2, 0))
        with pytest.raises(CoordinateError, match="no image was stored"):
            sink.read_placement(Placement((("position", 3),), 0, 0, 0))
    assert sink.files == [tmp_path / "exp.ome.tif"]
    with tifffile.TiffFile(sink.files[0]) as f:
        assert [(s.name, s.shape[0]) for s in f.series] == [("B2", 2), ("Pos7", 3)]
        xml = f.ome_metadata or ""
    labels = ET.fromstring(xml).findall(".//ome:StageLabel", NS)
    assert [(lb.get("Name"), lb.get("X"), lb.get("Y")) for lb in labels] == [
        ("B2", "3.0", "4.0"),
        ("Pos7", "-1.5", "0.0"),
    ]


def test_replay_cli_positions_series(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mmtiffsink.cli import main
    from tests.replay_support import make_dataset

    source = make_dataset(tmp_path / "src", "pv", positions=("A1", "B2"), nt=2)
    out = tmp_path / "out"
    args = ["replay", str(source.path), str(out), "--no-progress", "--no-preview"]
    assert main([*args, "--positions", "series"]) != 0
    assert "needs profile='ome'" in capsys.readouterr().err
    assert main([*args, "--positions", "series", "--profile", "ome"]) == 0
    (path,) = out.glob("*.tif")
    assert path.name.endswith(".ome.tif") and "_A1" not in path.name
    with tifffile.TiffFile(path) as f:
        assert [s.name for s in f.series] == ["A1", "B2"]
        stacks = [s.asarray() for s in f.series]
    for (position, t, z, channel), (image, _) in source.frames.items():
        data = stacks[["A1", "B2"].index(position)]
        c = list(dict.fromkeys(ch for _, _, _, ch in source.frames)).index(channel)
        np.testing.assert_array_equal(data[t, z, c], image)


def test_keep_up_frames_keep_their_series(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames keep_up stores out of save order land in their own series, pixels exact."""
    from mmtiffsink.tiff import _pool
    from tests.keep_up_support import frame

    monkeypatch.setattr(_pool, "_budget", _pool.Budget(1))  # one frame in flight at a time
    path = tmp_path / "kept.ome.tif"
    with IJTiffFile(path, profile="ome", compression=("zstd", 19), keep_up=True) as tif:
        for t in range(8):
            for s in range(2):
                tif.save(frame(10 * s + t), 0, 0, t, series=s)
    assert 0 < tif.frames_kept_up < 16
    assert plane_tags(path) == [(0, 0, t) for t in range(8)] + [(0, 0, t, 1) for t in range(8)]
    with tifffile.TiffFile(path) as f:
        assert [s.shape for s in f.series] == [(8, 256, 256)] * 2
        for s, series in enumerate(f.series):
            data = series.asarray()
            for t in range(8):
                np.testing.assert_array_equal(data[t], frame(10 * s + t))


@pytest.mark.readers
@pytest.mark.parametrize("s", [0, 2])
def test_fijis_importer_opens_each_series(
    tmp_path: Path, bioformats_jar: Path, imagej_jar: Path, s: int
) -> None:
    """What a Fiji user sees: the Bio-Formats Importer opens series ``s`` (its own C/Z/T,
    the channel colours) with the right pixels."""
    path = tmp_path / "fiji.ome.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingFramesWarning)
        write_series(path)
    points = [(0, 0), (39, 23)]
    seen = imagej_read(
        path, planes_of(s), imagej_jar, points=points, bioformats_jar=bioformats_jar, series=s
    )
    assert seen.opened, seen.error
    assert (seen.channels, seen.slices, seen.frames) == (C, ZS[s], T)
    assert seen.channel_colors == ((0, 255, 0), (255, 0, 0))
    for c, z, t in planes_of(s):
        frame = series_frame(s, c, z, t)
        want = tuple(float(frame[y, x]) for x, y in points)
        assert seen.planes[(c, z, t)].values == want
