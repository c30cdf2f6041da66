"""keep_up: a source faster than the compression pool is never made to wait for it.

With ``keep_up=True``, a frame that finds the in-flight budget full is stored by the saving
thread at once, uncompressed but in the codec's own format (zstd raw blocks, deflate stored
blocks), so the file keeps one Compression value and every reader reads it. Here the budget
is made one frame deep and the codec slow (zstd 19 or deflate 12 on 256x256 frames), so the
pool is behind from the second frame on, whatever the machine's speed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile

from mmtiffsink import IJTiffFile
from mmtiffsink.errors import ConfigError
from mmtiffsink.inspect import file_info
from mmtiffsink.tiff import Codec
from tests.keep_up_support import SHAPE, frame
from tests.readers import bioformats_pixels, imagej_read

SLOW = {"bigtiff": ("zstd", 19), "ome": ("zstd", 19), "imagej": ("deflate", 12)}


def write(path: Path, profile: str, *, keep_up: bool, n: int = 24) -> IJTiffFile:
    with IJTiffFile(path, profile=profile, compression=SLOW[profile], keep_up=keep_up) as tif:
        for t in range(n):
            tif.save(frame(t), 0, 0, t)
    return tif


@pytest.mark.parametrize("profile", ["bigtiff", "ome", "imagej"])
def test_frames_the_pool_cannot_take_are_stored_readable(
    tmp_path: Path, tiny_budget: None, profile: str
) -> None:
    path = tmp_path / ("k.ome.tif" if profile == "ome" else "k.tif")
    tif = write(path, profile, keep_up=True)
    assert 0 < tif.frames_kept_up < 24
    with tifffile.TiffFile(path) as f:
        assert len(f.pages) == 24
        codes = {page.compression.value for page in f.pages}
        assert codes == {Codec.parse(SLOW[profile]).tiff_code}  # one Compression for all
        raw = SHAPE[0] * SHAPE[1] * 2
        sizes = [page.databytecounts[0] for page in f.pages]
        stored = sum(size >= raw for size in sizes)
        assert stored == tif.frames_kept_up
        for t, page in enumerate(f.pages):
            np.testing.assert_array_equal(page.asarray(), frame(t))
    summary = file_info(path)
    assert summary.frames_uncompressed == tif.frames_kept_up


def test_without_keep_up_save_waits_and_compresses_every_frame(
    tmp_path: Path, tiny_budget: None
) -> None:
    tif = write(tmp_path / "w.tif", "bigtiff", keep_up=False, n=8)
    assert tif.frames_kept_up == 0
    with tifffile.TiffFile(tmp_path / "w.tif") as f:
        assert all(p.databytecounts[0] < SHAPE[0] * SHAPE[1] * 2 for p in f.pages)


def test_keep_up_with_saving_threads_and_close(tmp_path: Path, tiny_budget: None) -> None:
    path = tmp_path / "threads.tif"
    tif = IJTiffFile(path, compression=("zstd", 19), keep_up=True)
    errors: list[BaseException] = []

    def saver(c: int) -> None:
        try:
            for t in range(10):
                tif.save(frame(10 * c + t), c, 0, t)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=saver, args=(c,)) for c in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not any(th.is_alive() for th in threads), "a saving thread never returned"
    tif.close()
    assert not errors
    assert tif.frames_kept_up > 0
    with tifffile.TiffFile(path) as f:
        data = f.series[0].asarray()
    assert data.shape == (10, 3, *SHAPE)  # T, C, Y, X
    for c in range(3):
        for t in range(10):
            np.testing.assert_array_equal(data[t, c], frame(10 * c + t))


def test_keep_up_must_be_a_bool(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="keep_up"):
        IJTiffFile(tmp_path / "x.tif", keep_up="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("nbytes", [1, 2, 1 << 17, (1 << 17) + 2, 3 << 17, 1_000_002])
def test_zstd_raw_blocks_decode_in_libzstd(nbytes: int) -> None:
    data = np.random.default_rng(nbytes).integers(0, 255, nbytes, dtype=np.uint8)
    stored = Codec.parse("zstd").encode_stored(data)
    assert len(stored) >= nbytes
    assert imagecodecs.zstd_decode(bytes(stored)) == data.tobytes()
    deflated = Codec.parse("deflate").encode_stored(data)
    assert imagecodecs.zlib_decode(bytes(deflated)) == data.tobytes()


@pytest.mark.readers
@pytest.mark.parametrize("profile", ["bigtiff", "imagej"])
def test_bioformats_reads_kept_up_frames(
    tmp_path: Path, tiny_budget: None, bioformats_jar: Path, profile: str
) -> None:
    path = tmp_path / f"{profile}.tif"
    tif = write(path, profile, keep_up=True, n=12)
    assert tif.frames_kept_up > 0
    pixels = bioformats_pixels(path, bioformats_jar, tmp_path)
    expected = np.stack([frame(t) for t in range(12)])
    np.testing.assert_array_equal(pixels.reshape(expected.shape), expected)


@pytest.mark.readers
def test_imagej_reads_kept_up_deflate_frames(
    tmp_path: Path, tiny_budget: None, imagej_jar: Path
) -> None:
    path = tmp_path / "ij.tif"
    tif = write(path, "imagej", keep_up=True, n=6)
    assert tif.frames_kept_up > 0
    points = [(0, 0), (128, 128), (255, 17)]
    seen = imagej_read(path, [(0, 0, t) for t in range(6)], imagej_jar, points=points)
    assert seen.opened, seen.error
    for t in range(6):
        want = tuple(float(frame(t)[y, x]) for x, y in points)
        assert seen.planes[(0, 0, t)].values == want


def test_sinks_keep_up_by_default_and_replay_does_not(tmp_path: Path, tiny_budget: None) -> None:
    from mmtiffsink.ndtiff import ReplayOptions
    from mmtiffsink.sink import SinkOptions, TiffSink

    assert SinkOptions().keep_up and not ReplayOptions().keep_up
    with TiffSink(tmp_path, "live", compression=("zstd", 19)) as sink:
        for t in range(16):
            sink.put(frame(t), {"time": t}, {})
    (path,) = sink.files
    summary = file_info(path)
    assert summary.frames_uncompressed > 0
    with tifffile.TiffFile(path) as f:
        for t, page in enumerate(f.pages):
            np.testing.assert_array_equal(page.asarray(), frame(t))
    with TiffSink(tmp_path, "waits", compression=("zstd", 19), keep_up=False) as sink:
        for t in range(4):
            sink.put(frame(t), {"time": t}, {})
    assert file_info(sink.files[0]).frames_uncompressed == 0


def test_why_not_mixed_compression(tmp_path: Path) -> None:
    """The reason keep_up keeps the codec's Compression value: tifffile decodes the later pages
    of an ImageJ hyperstack with the first page's settings, so a hyperstack mixing zstd and
    uncompressed IFDs does not read (if this starts passing, tifffile changed)."""
    path = tmp_path / "mixed.tif"
    data = np.stack([frame(t) for t in range(4)])
    description = "ImageJ=1.11a\nimages=4\nframes=4\nhyperstack=true\n"
    with tifffile.TiffWriter(path, bigtiff=True) as w:
        for t in range(4):
            w.write(
                data[t],
                compression="zstd" if t % 2 == 0 else None,
                contiguous=False,
                metadata=None,
                description=description if t == 0 else None,
            )
    with tifffile.TiffFile(path) as f:
        assert f.is_imagej
        with pytest.raises(imagecodecs.ZstdError, match="frame descriptor"):
            f.series[0].asarray()


@pytest.mark.parametrize("keep_up", [False, True])
def test_the_callers_buffer_is_free_when_save_returns(
    tmp_path: Path, tiny_budget: None, keep_up: bool
) -> None:
    """Queued frames are copied, stored ones written before save returns: either way the
    caller may overwrite its buffer at once (one buffer reused for every frame here)."""
    path = tmp_path / "reuse.tif"
    buffer = np.empty(SHAPE, np.uint16)
    with IJTiffFile(path, compression=("zstd", 19), keep_up=keep_up) as tif:
        for t in range(12):
            buffer[:] = frame(t)
            tif.save(buffer, 0, 0, t)
            buffer[:] = 0  # at once: what the file holds must not change
    assert (tif.frames_kept_up > 0) == keep_up
    with tifffile.TiffFile(path) as f:
        for t, page in enumerate(f.pages):
            np.testing.assert_array_equal(page.asarray(), frame(t))


_POOL_NICENESS_CHILD = """
import os, sys, numpy as np
from mmtiffsink import IJTiffFile
from mmtiffsink.tiff import _pool
with IJTiffFile(sys.argv[1], compression="zstd") as tif:
    for t in range(8):
        tif.save(np.full((64, 64), t, np.uint16), 0, 0, t)
    tif.flush()
    threads = [th for th in _pool._pool_threads if th.native_id is not None]
    print(os.getpriority(os.PRIO_PROCESS, 0), *sorted(
        os.getpriority(os.PRIO_PROCESS, th.native_id) for th in threads))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="niceness per thread: Linux")
@pytest.mark.parametrize("setting", ["", "normal"])
def test_pool_threads_yield_to_the_camera(tmp_path: Path, setting: str) -> None:
    """The pool's threads run at a lower priority than the process (niceness + 10 on Linux), so
    on a machine the codec fills the saving (camera) thread still gets a core and ``keep_up``
    can store a frame at once; ``MMTIFFSINK_POOL_PRIORITY=normal`` keeps them as they are (the
    path of platforms where no priority is set)."""
    env = {**os.environ, "MMTIFFSINK_POOL_PRIORITY": setting}
    out = subprocess.run(
        [sys.executable, "-c", _POOL_NICENESS_CHILD, str(tmp_path / "n.tif")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.split()
    process, *pool = (int(v) for v in out)
    assert pool, "no pool thread started"
    expected = process if setting == "normal" else min(19, process + 10)
    assert pool == [expected] * len(pool)
