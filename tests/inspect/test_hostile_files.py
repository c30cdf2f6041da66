"""Small hostile TIFFs into ``info``, ``preview`` and ``repair``: bounded time, memory, one line.

Each file states an absurd count in a few bytes (DESIGN.md section 9). Measured on
main before the fix: OME-XML declaring 10**8 planes cost ``info`` 1.6 GB and 25 s, 10**9 more
than a minute; a contiguous ImageJ stack of 20,000 channels kept ``preview`` busy more than a
minute; a zstd frame of 60000 x 60000 in 220 kB, and ``{"shape": [1e6, 1e6, 1e6]}`` in an
unfinished file's settings, too; a 30000 x 30000 one cost 3.5 GB; ``{"colors": {"a": 1}}`` was a
TypeError traceback. The tools run here in a child process under an address-space limit, as a
user's shell runs them.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from mmtiffsink.errors import DatasetError
from mmtiffsink.inspect import file_info
from mmtiffsink.inspect._preview import sheet
from tests.hostile_support import HOSTILE

ADDRESS_SPACE = 600 << 20
"""The child's address-space limit: Python, numpy, tifffile and imagecodecs mapped need ~400 MB."""
MAX_WALL_S = 20.0
"""A child's wall time at most: its start-up (imports) included, on a busy 2-core machine."""
MAX_PEAK_BYTES = 80 << 20
MAX_CALL_S = 3.0

#: Name -> exit status of ``info`` and ``preview`` (1: a one-line error, 0: a partial result).
EXPECTED = {
    "ome-1e8": (1, 1),
    "ome-1e9": (1, 1),
    "imagej-c20000": (0, 0),
    "imagej-c100000": (0, 0),
    "zstd-60000": (0, 0),
    "zstd-30000": (0, 0),
    "json-deep": (1, 1),
    "shape-1e6": (0, 0),
    "colors-dict": (0, 0),
}


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def _run(*args: str) -> tuple[int, str, float]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "mmtiffsink", *args],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_limit,
        check=False,
    )
    return done.returncode, done.stderr, time.perf_counter() - start


@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.parametrize("command", ["info", "preview"])
def test_hostile_file_in_a_child(tmp_path: Path, name: str, command: str) -> None:
    path = HOSTILE[name](tmp_path)
    status, err, wall = _run(command, str(path))
    assert "Traceback" not in err, err
    assert status == EXPECTED[name][command == "preview"], err
    if status:
        assert len(err.strip().splitlines()) == 1, err
        assert err.startswith(f"mmtiffsink {command}: "), err
        assert "tifffile." not in err, err
    else:
        assert not err.strip(), err
    assert wall < MAX_WALL_S, f"{command} {name}: {wall:.1f} s"


def _bounded(call: Callable[[], Any]) -> Any:
    tracemalloc.start()
    start = time.perf_counter()
    try:
        return call()
    except DatasetError as exc:
        assert "\n" not in str(exc)
        return exc
    finally:
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert elapsed < MAX_CALL_S, f"took {elapsed:.1f} s"
        assert peak < MAX_PEAK_BYTES, f"allocated {peak / 1e6:.0f} MB"


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_file_in_process(tmp_path: Path, name: str) -> None:
    path = HOSTILE[name](tmp_path)
    info = _bounded(lambda: file_info(path))
    assert isinstance(info, DatasetError) == (EXPECTED[name][0] == 1)
    drawn = _bounded(lambda: sheet(path, projection="max", time="all"))
    assert isinstance(drawn, DatasetError) == (EXPECTED[name][1] == 1)


def test_ome_sizes_name_what_the_file_holds(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"declares 100,000,000 planes in 1 image \(a file of"):
        file_info(HOSTILE["ome-1e8"](tmp_path))


def test_ome_sizes_a_file_can_hold_are_read(tmp_path: Path) -> None:
    """The bound is the file's room, not a guess: 6 planes in 6 IFDs are read as ever."""
    path = tmp_path / "ok.ome.tif"
    tifffile.imwrite(path, np.zeros((3, 2, 8, 8), np.uint8), ome=True, metadata={"axes": "TCYX"})
    assert file_info(path).shape == {"T": 3, "C": 2, "Y": 8, "X": 8}


def test_many_channels_show_the_first_ones(tmp_path: Path) -> None:
    path = HOSTILE["imagej-c20000"](tmp_path)
    assert file_info(path).shape["C"] == 20_000  # the file holds them: info says so
    canvas = sheet(path, projection="max", time="first")
    labels = [key for key in canvas.boxes if key.startswith("label 0 ")]
    assert len(labels) == 16 + 1  # 16 channels and the composite
    assert canvas.pixels.nbytes < 10 << 20


def test_a_decompression_bomb_is_a_too_large_tile(tmp_path: Path) -> None:
    path = HOSTILE["zstd-60000"](tmp_path)
    assert file_info(path).shape == {"Y": 60_000, "X": 60_000}
    canvas = sheet(path, projection="max", time="first")
    _, _, w, h = canvas.boxes["tile 0 0"]
    assert (w, h) == (128, 128)  # the empty tile, drawn, not the image


def test_an_absurd_declared_shape_is_ignored(tmp_path: Path) -> None:
    from tests.hostile_support import settings_file

    path = settings_file(tmp_path / "s.tif", json.dumps({"shape": [2, 3, 1]}), frames=1)
    canvas = sheet(path, projection="max", time="first")  # a sane shape is kept: C=2
    assert "label 0 1" in canvas.boxes
    path = HOSTILE["shape-1e6"](tmp_path)
    canvas = sheet(path, projection="max", time="first")
    assert "label 0 1" not in canvas.boxes  # 1 channel seen, the declared 10**6 ignored


# ------------------------------------------------------------------------------ OME of others
def test_info_and_preview_of_another_writers_ome_tiff(tmp_path: Path) -> None:
    path = tmp_path / "cells.ome.tif"
    metadata = {
        "axes": "TCYX",
        "PhysicalSizeX": 0.3,
        "PhysicalSizeY": 0.3,
        "PhysicalSizeZ": 1.5,
        "TimeIncrement": 2,
        "TimeIncrementUnit": "min",
        "Channel": {"Name": ["A", "B"]},
    }
    tifffile.imwrite(path, np.ones((3, 2, 64, 64), np.uint16), ome=True, metadata=metadata)
    info = file_info(path)
    assert info.profile == "ome"
    assert info.pixel_size_um == pytest.approx(0.3)
    assert info.z_step_um == pytest.approx(1.5)
    assert info.interval_s == pytest.approx(120.0)
    assert info.channel_names == ["A", "B"]
    assert "calibration  pixel 0.3 µm" in info.format()
    from mmtiffsink.inspect._preview import _title

    canvas = sheet(path, projection="max", time="first")
    assert "label 0 0" in canvas.boxes
    with tifffile.TiffFile(path) as tif:
        from mmtiffsink.inspect._planes import stacks

        title = " ".join(t for t, _ in _title(info, stacks(tif, info, tile=256), "max", "first"))
    assert "uncalibrated" not in title
    assert "pixel 0.3 µm" in title


# ------------------------------------------------------------------------------ repair
def _finished_file(path: Path, profile: str, compression: str | None) -> None:
    from mmtiffsink import IJTiffFile
    from tests.writer_support import coded_frame

    shape = (2, 1, 3) if compression is None else None
    with IJTiffFile(path, profile=profile, compression=compression, shape=shape) as tif:  # type: ignore[arg-type]
        for t in range(3):
            for c in range(2):
                tif.save(coded_frame(c, 0, t, (6, 10)), c, 0, t)


@pytest.mark.parametrize(
    ("profile", "compression"),
    [("bigtiff", "zstd"), ("imagej", "deflate"), ("imagej", None), ("ome", "deflate")],
)
def test_repair_recovers_a_finished_file_cut_short(
    tmp_path: Path, profile: str, compression: str | None
) -> None:
    """An interrupted copy: every intact frame comes back, exact, at its (c, z, t)."""
    import warnings

    from mmtiffsink.errors import MissingFramesWarning
    from mmtiffsink.tiff import repair
    from tests.writer_support import coded_frame, read_hyperstack

    whole = tmp_path / "whole.tif"
    _finished_file(whole, profile, compression)
    data = whole.read_bytes()
    recovered = []
    for fraction in (0.5, 0.7, 0.95, 0.999):
        cut = tmp_path / f"cut-{fraction}.tif"
        cut.write_bytes(data[: int(len(data) * fraction)])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            report = repair(cut)
        assert any(issubclass(w.category, MissingFramesWarning) for w in caught)
        assert not report.already_finished
        assert report.frames >= 1
        array, _, tif = read_hyperstack(cut)
        tif.close()
        for t in range(array.shape[0]):
            for c in range(array.shape[2]):
                plane = array[t, 0, c]
                if plane.any():  # a blank plane stands for a frame lost past the cut
                    np.testing.assert_array_equal(plane, coded_frame(c, 0, t, (6, 10)))
        kept = [
            bool(array[t, 0, c].any()) for t in range(array.shape[0]) for c in range(array.shape[2])
        ]
        assert sum(kept) == report.frames
        assert file_info(cut).finished
        recovered.append(report.frames)
    assert recovered == sorted(recovered) and recovered[-1] == 6


def test_repair_refuses_a_damaged_file_of_another_writer(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from mmtiffsink.cli import main

    path = tmp_path / "ij.tif"
    tifffile.imwrite(
        path, np.ones((4, 3, 16, 16), np.uint16), imagej=True, metadata={"axes": "TCYX"}
    )
    assert main(["repair", str(path)]) == 0  # whole: already finished, left as it is
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    capfd.readouterr()
    assert main(["repair", str(path)]) == 1
    err = capfd.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "not written by mmtiffsink" in err and "damaged" in err
    assert path.read_bytes() == data[: len(data) // 2]  # untouched


def test_one_wording_for_a_missing_file(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from mmtiffsink.cli import main

    path = tmp_path / "gone.tif"
    for command in ("info", "preview", "repair"):
        assert main([command, str(path)]) == 1
        err = capfd.readouterr().err.strip()
        assert err.endswith(f"{path}: no such file"), err
        assert len(err.splitlines()) == 1


def test_no_tifffile_object_names_in_messages() -> None:
    from mmtiffsink.inspect._info import _first_line

    line = _first_line("<tifffile.TiffPages @8> invalid page offset 123456")
    assert line == "invalid page offset 123456"
