"""`mmtiffsink info`: what a reader will see in a TIFF, read from its IFDs only.

Files are written by the real writer (IJTiffFile) and by tifffile; a killed writer is a real
SIGKILLed child process (the helper of test_crash); the oracles are tifffile reading every
pixel and Bio-Formats.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tifffile

from mmtiffsink import IJTiffFile
from mmtiffsink.cli import main
from mmtiffsink.errors import DatasetError
from mmtiffsink.inspect import FileInfo, file_info, summary_table
from tests.crash_support import KILL_CHILD, kill_after_flush, run_child
from tests.readers import bioformats_info
from tests.writer_support import coded_frame, read_hyperstack

C, Z, T = 2, 3, 4
FRAME = (24, 40)


def write(
    path: Path,
    *,
    profile: str = "bigtiff",
    compression: object = "zstd",
    shape: tuple[int, int, int] = (C, Z, T),
    dtype: str = "uint16",
    calibrated: bool = True,
    names: list[str] | None = None,
    frame: object = None,
) -> None:
    """Write every plane of ``shape``; ``frame(c, z, t)`` gives the pixels (default: coded)."""
    c_n, z_n, t_n = shape
    make = frame or (lambda c, z, t: coded_frame(c, z, t, FRAME, dtype))
    calibration: dict[str, object] = (
        {"pxsize": 0.65, "deltaz": 0.5, "timeinterval": 2.5} if calibrated else {}
    )
    with IJTiffFile(
        path,
        shape=shape,
        dtype=dtype,
        profile=profile,
        compression=compression,
        channel_names=names,
        **calibration,  # type: ignore[arg-type]
    ) as tif:
        for t in range(t_n):
            for z in range(z_n):
                for c in range(c_n):
                    tif.save(make(c, z, t), c, z, t)  # type: ignore[operator]


def distinct_frames(path: Path) -> int:
    """Count distinct frames by decoding every page (the oracle for frames_stored)."""
    with tifffile.TiffFile(path) as f:
        return len({hashlib.sha1(page.asarray().tobytes()).digest() for page in f.pages})


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------- our own files
@pytest.mark.parametrize(
    ("profile", "compression", "codec"),
    [
        ("bigtiff", "zstd", "zstd"),
        ("bigtiff", "deflate", "deflate"),
        ("bigtiff", None, "none"),
        ("imagej", "deflate", "deflate"),
        ("imagej", None, "none"),
    ],
)
def test_hyperstack_with_calibration_and_names(
    tmp_path: Path, profile: str, compression: object, codec: str
) -> None:
    path = tmp_path / "cells.tif"
    write(path, profile=profile, compression=compression, names=["DAPI", "FITC"])
    info = file_info(path)

    assert info.path == path
    assert info.size_bytes == path.stat().st_size
    assert (info.profile, info.codec, info.dtype) == (profile, codec, "uint16")
    assert info.shape == {"T": T, "Z": Z, "C": C, "Y": FRAME[0], "X": FRAME[1]}
    assert list(info.shape) == ["T", "Z", "C", "Y", "X"]
    assert info.planes == C * Z * T
    assert info.frames_stored == distinct_frames(path) == C * Z * T
    assert info.raw_bytes == C * Z * T * FRAME[0] * FRAME[1] * 2
    assert info.compression_ratio == pytest.approx(info.raw_bytes / info.size_bytes)
    assert info.pixel_size_um == pytest.approx(0.65)
    assert info.z_step_um == pytest.approx(0.5)
    assert info.interval_s == pytest.approx(2.5)
    assert info.channel_names == ["DAPI", "FITC"]
    assert info.finished is True
    assert info.written_by == "mmtiffsink"

    # what tifffile (the reader behind napari) decodes agrees
    data, _meta, f = read_hyperstack(path)
    f.close()
    assert data.shape == tuple(info.shape.values())
    assert data.dtype == np.dtype(info.dtype)

    text = info.format()
    assert str(path) in text
    assert "T=4 Z=3 C=2 Y=24 X=40" in text
    assert "pixel 0.65 µm, z step 0.5 µm, interval 2.5 s" in text
    assert "DAPI, FITC" in text
    assert "finished" in text and "UNFINISHED" not in text
    assert json.loads(json.dumps(info.to_dict())) == info.to_dict()


def test_no_calibration_no_names_one_channel_float(tmp_path: Path) -> None:
    path = tmp_path / "plain.tif"
    write(path, shape=(1, 1, 5), dtype="float32", calibrated=False)
    info = file_info(path)
    assert info.shape == {"T": 5, "Z": 1, "C": 1, "Y": FRAME[0], "X": FRAME[1]}
    assert info.dtype == "float32"
    assert info.raw_bytes == 5 * FRAME[0] * FRAME[1] * 4
    assert (info.pixel_size_um, info.z_step_um, info.interval_s) == (None, None, None)
    assert info.channel_names == []
    assert "calibration  none" in info.format()
    d = info.to_dict()
    assert d["pixel_size_um"] is None and d["channel_names"] == []


@pytest.mark.parametrize("compression", ["zstd", None])
def test_identical_frames_are_counted_once(tmp_path: Path, compression: object) -> None:
    """Every z of a channel is the same frame: 2 channels x 2 time points stored."""
    path = tmp_path / "dup.tif"

    def frame(c: int, z: int, t: int) -> np.ndarray:
        return coded_frame(c, 0, t, FRAME)

    write(path, compression=compression, frame=frame)
    info = file_info(path)
    assert info.planes == C * Z * T
    assert info.frames_stored == distinct_frames(path) == C * T
    assert "identical frames stored once" in info.format()
    # ratio counts every plane the reader decodes, not just the stored ones
    assert info.raw_bytes == C * Z * T * FRAME[0] * FRAME[1] * 2


def test_killed_writer_is_unfinished_then_repaired_by_cli(tmp_path: Path) -> None:
    path = tmp_path / "killed.tif"
    child = run_child(KILL_CHILD, str(path), "zstd")
    kill_after_flush(child, 0.2)

    before = sha(path)
    info = file_info(path)
    assert sha(path) == before  # info only reads
    with tifffile.TiffFile(path) as f:
        npages = len(f.pages)
    assert info.finished is False
    assert info.written_by == "mmtiffsink"
    assert info.planes == npages >= 60
    # a reader sees a plain stack of the frames written so far
    assert list(info.shape.values()) == [npages, 128, 96]
    # calibration and names are those repair() will write
    assert (info.pixel_size_um, info.z_step_um, info.interval_s) == (0.5, 1.0, 2.0)
    assert info.channel_names == ["A", "B"]
    assert f"mmtiffsink repair {path}" in info.format()
    assert "UNFINISHED" in summary_table([info])

    assert main(["repair", str(path)]) == 0
    fixed = file_info(path)
    assert fixed.finished is True
    data, _meta, f = read_hyperstack(path)
    f.close()
    assert fixed.shape == dict(zip("TZCYX", data.shape, strict=True))
    assert fixed.shape["Z"] == 3 and fixed.shape["C"] == 2
    assert (fixed.pixel_size_um, fixed.z_step_um, fixed.interval_s) == (0.5, 1.0, 2.0)
    assert fixed.channel_names == ["A", "B"]
    assert fixed.planes == math.prod(data.shape[:3])


# ------------------------------------------------------------------------- other writers
def test_tifffile_plain_tiff(tmp_path: Path) -> None:
    path = tmp_path / "plain.tif"
    data = np.random.default_rng(0).integers(0, 200, (5, 32, 48), dtype=np.uint8)
    tifffile.imwrite(
        path,
        data,
        compression="zlib",
        resolution=(1e4 / 0.25, 1e4 / 0.25),
        resolutionunit="CENTIMETER",
    )
    info = file_info(path)
    assert info.profile == "tiff"
    assert info.codec == "deflate"
    assert info.dtype == "uint8"
    assert list(info.shape.values()) == [5, 32, 48]
    assert (info.planes, info.frames_stored) == (5, 5)
    assert info.raw_bytes == data.nbytes
    assert info.pixel_size_um == pytest.approx(0.25)
    assert (info.z_step_um, info.interval_s) == (None, None)
    assert info.finished is True
    assert info.written_by == "tifffile.py"


def test_tifffile_imagej_hyperstack_and_bigtiff(tmp_path: Path) -> None:
    ij = tmp_path / "ij.tif"
    data = np.zeros((3, 4, 2, 16, 20), np.uint16)
    data[:] = np.arange(3 * 4 * 2).reshape(3, 4, 2, 1, 1)
    tifffile.imwrite(
        ij,
        data,
        imagej=True,
        resolution=(1 / 0.2, 1 / 0.2),
        metadata={"axes": "TZCYX", "unit": "um", "spacing": 0.3, "finterval": 5, "tunit": "ms"},
    )
    info = file_info(ij)
    assert info.profile == "imagej"
    assert info.shape == {"T": 3, "Z": 4, "C": 2, "Y": 16, "X": 20}
    assert (info.planes, info.frames_stored) == (24, 24)
    assert info.pixel_size_um == pytest.approx(0.2)
    assert info.z_step_um == pytest.approx(0.3)
    assert info.interval_s == pytest.approx(0.005)
    assert info.finished is True and info.written_by == "tifffile.py"

    big = tmp_path / "big.tif"
    tifffile.imwrite(big, data[:, 0, 0], bigtiff=True, compression="zstd", photometric="minisblack")
    info = file_info(big)
    assert (info.profile, info.codec) == ("bigtiff", "zstd")
    assert list(info.shape.values()) == [3, 16, 20]
    assert info.pixel_size_um is None


def test_multi_gigabyte_file_reads_ifds_only(tmp_path: Path) -> None:
    """A sparse 4 GB BigTIFF of 1000 planes: info reads about a megabyte, not the pixels."""
    path = tmp_path / "huge.tif"
    tifffile.imwrite(path, shape=(1000, 2048, 1024), dtype="uint16", bigtiff=True)
    size = path.stat().st_size
    assert size > 4e9
    if path.stat().st_blocks * 512 > 100e6:
        pytest.fail("the file system does not keep the test file sparse")

    def read_bytes() -> int:
        with open("/proc/self/io") as io:
            return next(int(x.split()[1]) for x in io if x.startswith("rchar"))

    start, t0 = read_bytes(), time.perf_counter()
    info = file_info(path)
    elapsed, read = time.perf_counter() - t0, read_bytes() - start
    assert info.planes == info.frames_stored == 1000
    assert info.raw_bytes == 1000 * 2048 * 1024 * 2
    assert read < 5e6, f"read {read} bytes of a {size}-byte file"
    assert elapsed < 10


# ------------------------------------------------------------------------- errors
def _bad_files(tmp_path: Path) -> dict[str, Path]:
    good = tmp_path / "good.tif"
    write(good, shape=(2, 1, 3))
    raw = good.read_bytes()
    text = tmp_path / "notes.txt"
    text.write_text("pixel size 0.65 um\n")
    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.tif"  # header points at the final chain, now gone
    truncated.write_bytes(raw[: len(raw) // 2])
    cut = tmp_path / "cut.tif"  # inside the last IFD of the final chain
    cut.write_bytes(raw[:-20])
    return {
        "missing": tmp_path / "missing.tif",
        "text": text,
        "empty": empty,
        "truncated": truncated,
        "cut": cut,
        "directory": tmp_path,
    }


MESSAGES = {
    "missing": "no such file",
    "text": "not a TIFF file",
    "empty": "empty",
    "truncated": "corrupt or truncated TIFF",
    "cut": "corrupt or truncated TIFF",
    "directory": "is a directory",
}


@pytest.mark.parametrize("kind", list(MESSAGES))
def test_bad_files_raise_dataset_error(
    tmp_path: Path, kind: str, capfd: pytest.CaptureFixture[str]
) -> None:
    path = _bad_files(tmp_path)[kind]
    with pytest.raises(DatasetError, match=MESSAGES[kind]) as exc_info:
        file_info(path)
    assert str(path) in str(exc_info.value)
    assert "\n" not in str(exc_info.value)

    assert main(["info", str(path)]) == 1
    _out, err = capfd.readouterr()
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("mmtiffsink info: ") and MESSAGES[kind] in err


def test_good_and_bad_files_together_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _bad_files(tmp_path)
    good = tmp_path / "good.tif"
    other = tmp_path / "other.tif"
    write(other, compression=None, names=["x", "y"])

    assert main(["info", str(good), str(bad["text"]), str(other)]) == 1
    out, err = capsys.readouterr()
    assert out.count("dimensions") == 2 and str(other) in out
    assert len(err.strip().splitlines()) == 1 and str(bad["text"]) in err

    assert main(["info", "--json", str(good), str(other)]) == 0
    out, _ = capsys.readouterr()
    parsed = json.loads(out)
    assert parsed == [file_info(good).to_dict(), file_info(other).to_dict()]
    assert parsed[1]["shape"] == {"T": T, "Z": Z, "C": C, "Y": FRAME[0], "X": FRAME[1]}
    assert parsed[1]["channel_names"] == ["x", "y"]
    assert parsed[1]["compression_ratio"] == pytest.approx(file_info(other).compression_ratio)


def test_threads_share_the_log_capture(tmp_path: Path) -> None:
    """Parallel callers (replay) each get their own result and error."""
    bad = _bad_files(tmp_path)
    paths = [tmp_path / "good.tif", bad["cut"]] * 8

    def one(path: Path) -> FileInfo | str:
        try:
            return file_info(path)
        except DatasetError as exc:
            return str(exc)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, paths))
    for path, result in zip(paths, results, strict=True):
        if path.name == "good.tif":
            assert isinstance(result, FileInfo) and result.planes == 6
        else:
            assert isinstance(result, str) and "corrupt" in result
    assert not logging.getLogger("tifffile").handlers  # capture removed afterwards


def test_summary_table(tmp_path: Path) -> None:
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    write(a)
    write(b, frame=lambda c, z, t: coded_frame(c, 0, 0, FRAME))
    infos = [file_info(a), file_info(b)]
    lines = summary_table(infos).splitlines()
    assert len(lines) == 6  # header, rule, 2 files, rule, total
    assert lines[0].split()[:3] == ["file", "dimensions", "dtype"]
    assert str(a) in lines[2] and "24/24" in lines[2] and "finished" in lines[2]
    assert str(b) in lines[3] and "2/24" in lines[3]
    assert lines[5].startswith("total: 2 files") and "26/48" in lines[5]
    total_ratio = sum(i.raw_bytes for i in infos) / sum(i.size_bytes for i in infos)
    assert f"{total_ratio:.2f}" in lines[5]
    assert "UNFINISHED" not in "\n".join(lines)
    assert summary_table([]).splitlines()[-1].startswith("total: 0 files")


def test_installed_console_script(tmp_path: Path) -> None:
    """The entry point, in a fresh process: one line per bad file, nothing from tifffile's log."""
    bad = _bad_files(tmp_path)
    path = tmp_path / "cells.tif"
    write(path, names=["DAPI", "FITC"])
    script = Path(sys.executable).parent / "mmtiffsink"
    exe = str(script) if script.exists() else shutil.which("mmtiffsink")
    assert exe, "the mmtiffsink console script is not installed (pip install -e .)"
    run = subprocess.run(
        [exe, "info", str(path), str(bad["missing"]), str(bad["truncated"])],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    assert run.returncode == 1, run.stderr
    assert "T=4 Z=3 C=2 Y=24 X=40" in run.stdout and "DAPI, FITC" in run.stdout
    errors = run.stderr.strip().splitlines()
    assert len(errors) == 2, run.stderr  # tifffile logs the bad first-IFD offset: kept quiet
    assert errors[0].startswith(f"mmtiffsink info: {bad['missing']}: ")
    assert errors[0].endswith("no such file")
    assert errors[1].startswith(f"mmtiffsink info: {bad['truncated']}: ")
    assert "corrupt or truncated TIFF" in errors[1]


# ------------------------------------------------------------------------- Bio-Formats
@pytest.mark.readers
@pytest.mark.parametrize("writer", ["mmtiffsink", "tifffile"])
def test_bioformats_sees_what_info_says(tmp_path: Path, bioformats_jar: Path, writer: str) -> None:
    path = tmp_path / "bf.tif"
    if writer == "mmtiffsink":
        write(path, names=["DAPI", "FITC"])
    else:
        tifffile.imwrite(
            path,
            np.zeros((3, 4, 2, 16, 20), np.uint16),
            imagej=True,
            resolution=(1 / 0.2, 1 / 0.2),
            metadata={"axes": "TZCYX", "unit": "um", "spacing": 0.3, "finterval": 5},
        )
    info = file_info(path)
    bf = bioformats_info(path, bioformats_jar)
    assert bf.shape == tuple(info.shape[k] for k in "TZCYX")
    assert bf.dtype == np.dtype(info.dtype)
    assert bf.physical_size_x == pytest.approx(info.pixel_size_um)
    assert bf.physical_size_y == pytest.approx(info.pixel_size_um)
    assert bf.physical_size_z == pytest.approx(info.z_step_um)
    assert bf.time_increment == pytest.approx(info.interval_s)
