"""Preview PNGs of real files: the right spot in the right tile, in the file's colours.

Files are written with mmtiffsink's own writer (finished, with gaps, and killed mid-run in a
real subprocess) and with tifffile (ImageJ, plain, RGB, OME with two series). Each PNG is
decoded with imagecodecs and read at the places the sheet's layout (``Canvas.boxes``) names.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile

import mmtiffsink
from mmtiffsink import DatasetError, IJTiffFile, MissingFramesWarning
from mmtiffsink.inspect import file_info
from mmtiffsink.inspect._preview import MAX_ROWS, preview_path, sheet, write_previews
from mmtiffsink.inspect._sheet import BACKGROUND
from tests.preview_support import (
    CYAN,
    LIME,
    MAGENTA,
    SPOTS,
    H,
    W,
    at,
    decode,
    inked,
    is_missing,
    near,
    region,
    spot_frame,
    write_spots,
)

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------ the picture
@pytest.mark.parametrize("compression", ["zstd", "zstd:1+predictor"])
def test_channels_in_their_colours_and_a_composite(tmp_path: Path, compression: str) -> None:
    path = tmp_path / "cells.tif"
    write_spots(path, compression=compression)
    png = mmtiffsink.preview(path)
    assert png == tmp_path / "cells.preview.png"
    rgb = decode(png)
    boxes = sheet(path, projection="max", time="first").boxes
    assert rgb.shape[0] > max(y + h for _, y, _, h in boxes.values())
    assert rgb.shape[1] > max(x + w for x, _, w, _ in boxes.values())

    dapi, fitc, composite = boxes["tile 0 0"], boxes["tile 0 1"], boxes["tile 0 2"]
    assert dapi[2:] == (W, H)
    # each channel is bright at its own spot, in its own colour, and dark elsewhere
    assert near(at(rgb, dapi, *SPOTS[0]), MAGENTA)
    assert near(at(rgb, fitc, *SPOTS[1]), LIME)
    assert max(at(rgb, dapi, *SPOTS[1])) < 60
    assert max(at(rgb, fitc, *SPOTS[0])) < 60
    # the composite holds both, each in its colour
    assert near(at(rgb, composite, *SPOTS[0]), MAGENTA)
    assert near(at(rgb, composite, *SPOTS[1]), LIME)
    # the title (name, dimensions, calibration) and every label were drawn
    assert inked(rgb, boxes["title"]) > 500
    for key in ("label 0 0", "label 0 1", "label 0 2", "header 0"):
        assert inked(rgb, boxes[key]) > 50, key
    # a label is drawn in its channel's colour (lightened)
    label = region(rgb, boxes["label 0 0"]).reshape(-1, 3)
    ink = label[np.any(label != BACKGROUND, axis=1)]
    assert (ink[:, 0] > 200).all() and (ink[:, 1] < 120).all() and (ink[:, 2] > 200).all()


def test_scale_bar_only_when_calibrated(tmp_path: Path) -> None:
    calibrated, plain = tmp_path / "cal.tif", tmp_path / "plain.tif"
    write_spots(calibrated)
    write_spots(plain, pxsize=None)
    for path, expected in ((calibrated, True), (plain, False)):
        rgb = decode(mmtiffsink.preview(path))
        x, y, w, h = sheet(path, projection="max", time="first").boxes["tile 0 2"]
        corner = rgb[y + h - 30 : y + h, x + w - 60 : x + w]
        white = np.all(corner == 255, axis=-1).sum()
        assert bool(white > 20) is expected, path.name


def test_max_projection_and_middle_slice(tmp_path: Path) -> None:
    path = tmp_path / "z.tif"
    with IJTiffFile(path, shape=(1, 3, 1)) as tif:  # the spot moves with z
        for z in range(3):
            tif.save(spot_frame(0, z, dy=20 * z), 0, z, 0)
    y, x = SPOTS[0]
    maximum = decode(mmtiffsink.preview(path, tmp_path / "max.png"))
    box = sheet(path, projection="max", time="first").boxes["tile 0 0"]
    assert "tile 0 1" not in sheet(path, projection="max", time="first").boxes  # no composite
    assert all(min(at(maximum, box, y + 20 * z, x)) > 200 for z in range(3))  # grey, all 3
    middle = decode(mmtiffsink.preview(path, tmp_path / "mid.png", projection="mid"))
    box = sheet(path, projection="mid", time="first").boxes["tile 0 0"]
    assert min(at(middle, box, y + 20, x)) > 200
    assert max(at(middle, box, y, x)) < 60 and max(at(middle, box, y + 40, x)) < 60


def test_time_first_last_and_all(tmp_path: Path) -> None:
    path = tmp_path / "t.tif"
    t_size = 20
    with IJTiffFile(path, shape=(1, 1, t_size), timeinterval=30) as tif:
        for t in range(t_size):
            tif.save(spot_frame(0, t=t, dy=3 * t), 0, 0, t)
    y, x = SPOTS[0]
    for time, t in (("first", 0), ("last", t_size - 1)):
        rgb = decode(mmtiffsink.preview(path, tmp_path / f"{time}.png", time=time))
        box = sheet(path, projection="max", time=time).boxes["tile 0 0"]
        assert min(at(rgb, box, y + 3 * t, x)) > 200, time
    rgb = decode(mmtiffsink.preview(path, tmp_path / "all.png", time="all"))
    boxes = sheet(path, projection="max", time="all").boxes
    rows = [k for k in boxes if k.startswith("header ")]
    assert len(rows) == MAX_ROWS
    shown = np.unique(np.round(np.linspace(0, t_size - 1, MAX_ROWS)).astype(int))
    for r, t in enumerate(shown):
        assert min(at(rgb, boxes[f"tile {r} 0"], y + 3 * t, x)) > 200, (r, t)
        assert inked(rgb, boxes[f"header {r}"]) > 30


# ------------------------------------------------------------------------------ missing planes
def test_gaps_of_a_finished_file_are_shown_missing(tmp_path: Path) -> None:
    path = tmp_path / "gaps.tif"
    with pytest.warns(MissingFramesWarning), IJTiffFile(path, shape=(2, 2, 2)) as tif:
        for t in range(2):
            for z in range(2):
                tif.save(spot_frame(0, z, t), 0, z, t)
                if t == 0 and z == 0:  # channel 1 has one slice at t=0 and none at t=1
                    tif.save(spot_frame(1, z, t), 1, z, t)
    rgb = decode(mmtiffsink.preview(path, time="all"))
    boxes = sheet(path, projection="max", time="all").boxes
    assert not is_missing(rgb, boxes["tile 0 0"]) and not is_missing(rgb, boxes["tile 0 1"])
    assert is_missing(rgb, boxes["tile 1 1"])  # never acquired
    assert not is_missing(rgb, boxes["tile 1 0"])
    assert near(at(rgb, boxes["tile 1 2"], *SPOTS[0]), (255, 0, 0))  # default red
    # one of two slices: said on the tile (its bottom-left corner has text)
    x, y, _, h = boxes["tile 0 1"]
    assert (rgb[y + h - 20 : y + h, x : x + 60] > 200).all(axis=-1).sum() > 20


KILLED = """
    import os, signal, sys
    from mmtiffsink import IJTiffFile
    from tests.preview_support import spot_frame
    tif = IJTiffFile(sys.argv[1], pxsize=0.5, colors=["magenta", "lime"],
                     channel_names=["DAPI", "FITC"], compression=sys.argv[2])
    for z in (2, 0, 1):            # channel 0 complete at t=0, channel 1 only at z=1
        tif.save(spot_frame(0, z, 0), 0, z, 0)
    tif.save(spot_frame(1, 1, 0), 1, 1, 0)
    tif.save(spot_frame(0, 0, 1), 0, 0, 1)
    tif.flush()
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("compression", ["zstd", "deflate+predictor"])
def test_unfinished_file_of_a_killed_writer(tmp_path: Path, compression: str) -> None:
    path = tmp_path / "killed.tif"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILLED), str(path), compression],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == -9, child.stderr
    assert file_info(path).finished is False

    rgb = decode(mmtiffsink.preview(path, time="all"))
    boxes = sheet(path, projection="max", time="all").boxes
    assert near(at(rgb, boxes["tile 0 0"], *SPOTS[0]), MAGENTA)  # from the writer's settings
    assert near(at(rgb, boxes["tile 0 1"], *SPOTS[1]), LIME)
    assert not is_missing(rgb, boxes["tile 1 0"])
    assert is_missing(rgb, boxes["tile 1 1"])  # never written
    # the title warns that the file is unfinished (orange text)
    title = region(rgb, boxes["title"]).reshape(-1, 3)
    assert np.all(title == (255, 170, 60), axis=1).sum() > 50
    # time="last" is the last time point written
    last = sheet(path, projection="max", time="last").boxes
    assert "tile 1 0" not in last and "tile 0 0" in last


# ------------------------------------------------------------------------------ other writers
def test_tifffile_imagej_with_luts_and_labels(tmp_path: Path) -> None:
    path = tmp_path / "ij.tif"
    data = np.stack([[spot_frame(c, z) for c in range(3)] for z in range(2)])[None]  # TZCYX
    ramp = np.arange(256, dtype=np.uint8)
    zero = np.zeros(256, np.uint8)
    luts = [np.stack([zero, ramp, ramp]), np.stack([ramp, ramp, zero]), np.stack([ramp] * 3)]
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        resolution=(2.0, 2.0),
        metadata={"axes": "TZCYX", "unit": "um", "LUTs": luts, "Labels": ["a", "b", "c"] * 2},
    )
    rgb = decode(mmtiffsink.preview(path))
    boxes = sheet(path, projection="max", time="first").boxes
    assert near(at(rgb, boxes["tile 0 0"], *SPOTS[0]), CYAN)
    assert near(at(rgb, boxes["tile 0 1"], *SPOTS[1]), (255, 255, 0))
    assert near(at(rgb, boxes["tile 0 2"], *SPOTS[2]), (255, 255, 255))
    assert file_info(path).channel_names == ["a", "b", "c"]


def test_plain_rgb_and_ome_files(tmp_path: Path) -> None:
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, spot_frame(0))
    rgb = decode(mmtiffsink.preview(plain))
    box = sheet(plain, projection="max", time="first").boxes["tile 0 0"]
    assert min(at(rgb, box, *SPOTS[0])) > 200  # one channel: grey
    assert "tile 0 1" not in sheet(plain, projection="max", time="first").boxes

    colour = tmp_path / "colour.tif"
    image = np.zeros((H, W, 3), np.uint8)
    image[10:30, 10:30, 0] = 200
    image[50:70, 60:80, 2] = 200
    tifffile.imwrite(colour, image, photometric="rgb")
    rgb = decode(mmtiffsink.preview(colour))
    boxes = sheet(colour, projection="max", time="first").boxes
    # one tile in the image's own colours (8-bit RGB as it is), not three grey samples
    assert at(rgb, boxes["tile 0 0"], 20, 20) == (200, 0, 0)
    assert at(rgb, boxes["tile 0 0"], 60, 70) == (0, 0, 200)
    assert "tile 0 1" not in boxes

    ome = tmp_path / "multi.ome.tif"
    with tifffile.TiffWriter(ome, ome=True) as tif:
        for position in range(2):
            stack = np.stack([spot_frame(c, t=position) for c in range(2)])
            tif.write(stack, metadata={"axes": "CYX", "Channel": {"Name": ["A", "B"]}})
    png = mmtiffsink.preview(ome)
    assert png == tmp_path / "multi.ome.preview.png"
    rgb = decode(png)
    boxes = sheet(ome, projection="max", time="first").boxes
    assert {k for k in boxes if k.startswith("header")} == {"header 0", "header 1"}
    for r in range(2):
        assert near(at(rgb, boxes[f"tile {r} 0"], *SPOTS[0]), (255, 0, 0))
        assert near(at(rgb, boxes[f"tile {r} 1"], *SPOTS[1]), (0, 255, 0))


def test_large_frames_are_binned(tmp_path: Path) -> None:
    path = tmp_path / "big.tif"
    frame = np.full((1024, 768), 100, np.uint16)
    frame[400:440, 600:640] = 5000
    with IJTiffFile(path) as tif:
        tif.save(frame, 0, 0, 0)
    rgb = decode(mmtiffsink.preview(path))
    box = sheet(path, projection="max", time="first").boxes["tile 0 0"]
    assert box[2:] == (192, 256)  # binned 4 x 4
    assert min(at(rgb, box, 105, 155)) > 200 and max(at(rgb, box, 20, 20)) < 60


# ------------------------------------------------------------------------------ errors, CLI
def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mmtiffsink", "preview", *args],
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli(tmp_path: Path) -> None:
    good = tmp_path / "good.tif"
    write_spots(good)
    missing = tmp_path / "nope.tif"
    proc = run_cli(str(missing))
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "nope.tif" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr

    text = tmp_path / "notes.tif"
    text.write_text("not an image")
    proc = run_cli(str(good), str(text), "--projection", "mid", "--time", "last")
    assert proc.returncode == 1
    assert "not a TIFF" in proc.stderr and proc.stderr.strip().count("\n") == 0
    assert (tmp_path / "good.preview.png").exists()  # the good file still got its preview

    out = tmp_path / "sub" / "x.png"
    out.parent.mkdir()
    proc = run_cli(str(good), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    decode(out)
    assert run_cli(str(good), str(good), "-o", str(out)).returncode == 2
    assert run_cli(str(good), "--time", "middle").returncode == 2


def test_api_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such file"):
        mmtiffsink.preview(tmp_path / "nope.tif")
    good = tmp_path / "good.tif"
    write_spots(good)
    with pytest.raises(ValueError, match="projection"):
        mmtiffsink.preview(good, projection="sum")  # type: ignore[arg-type]
    with pytest.raises(mmtiffsink.MMTiffSinkError, match="cannot write"):
        mmtiffsink.preview(good, tmp_path / "no" / "dir" / "x.png")
    assert preview_path("/d/a.ome.tiff") == Path("/d/a.ome.preview.png")
    assert preview_path("/d/raw") == Path("/d/raw.preview.png")


def test_write_previews_never_raises_for_one_file(tmp_path: Path) -> None:
    good = tmp_path / "good.tif"
    write_spots(good)
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\0" + b"\xff" * 10)
    failed: list[tuple[Path, Exception]] = []
    written = write_previews([bad, good], on_error=lambda p, e: failed.append((p, e)))
    assert written == [tmp_path / "good.preview.png"]
    assert [p for p, _ in failed] == [bad] and isinstance(failed[0][1], DatasetError)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert write_previews([bad]) == []  # logged, not raised


def test_imagej_stack_with_one_ifd(tmp_path: Path) -> None:
    """ImageJ itself writes uncompressed stacks as one IFD and ``images=N`` contiguous planes."""
    path = tmp_path / "imagej.tif"
    data = np.stack([[spot_frame(c, z) for c in range(2)] for z in range(3)])  # ZCYX
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "ZCYX"})
    with tifffile.TiffFile(path) as tif:  # cut the chain after the first IFD, as ImageJ writes
        first = tif.pages.first.offset
    with open(path, "r+b") as fh:
        fh.seek(first)
        count = int.from_bytes(fh.read(2), "little")
        fh.seek(first + 2 + 12 * count)
        fh.write(b"\0\0\0\0")
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == 1 and tif.series[0].shape == (3, 2, H, W)
    rgb = decode(mmtiffsink.preview(path))
    boxes = sheet(path, projection="max", time="first").boxes
    assert near(at(rgb, boxes["tile 0 0"], *SPOTS[0]), (255, 0, 0))
    assert near(at(rgb, boxes["tile 0 1"], *SPOTS[1]), (0, 255, 0))
