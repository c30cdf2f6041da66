"""Crash safety: a killed process, a full disk and ImageJ's 4 GiB limit lose nothing written.

Each scenario runs the writer in a real subprocess: SIGKILL is a real kill, and the full disk
is the kernel's own file-size limit (RLIMIT_FSIZE makes write() fail with EFBIG exactly as a
full disk fails it with ENOSPC), so no part of the writer is replaced.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
import tifffile

from mmtiffsink import MissingFramesWarning, ProfileError, repair
from mmtiffsink.inspect import file_info
from tests.crash_support import KILL_CHILD, kill_after_flush, run_child
from tests.writer_support import coded_frame, page_plane, read_hyperstack


@pytest.mark.parametrize("compression", ["zstd", "none", "zstd:1+predictor"])
def test_sigkill_after_flush_loses_nothing(tmp_path: Path, compression: str) -> None:
    path = tmp_path / "killed.tif"
    line = kill_after_flush(run_child(KILL_CHILD, str(path), compression), 0.3)
    flushed = int(line.split()[1])

    # tifffile opens the file as it was left: every flushed frame, exact, with its (c, z, t)
    with tifffile.TiffFile(path) as f:
        assert len(f.pages) >= flushed
        seen = set()
        for page in f.pages:
            c, z, t = page_plane(page)
            np.testing.assert_array_equal(page.asarray(), coded_frame(c, z, t, (128, 96)))
            seen.add((c, z, t))
    assert {(c, z, t) for t in range(10) for z in range(3) for c in range(2)} <= seen

    # info shows the codec (and the predictor) of the file as the kill left it
    predictor = 2 if compression.endswith("+predictor") else 1
    expected = compression.split(":")[0] + ("+predictor" if predictor == 2 else "")
    info = file_info(path)
    assert not info.finished and info.codec == expected

    # repair() turns it into the finished hyperstack, calibrated
    with pytest.warns(MissingFramesWarning) if len(seen) % 6 else contextlib.nullcontext():
        report = repair(path)
    assert report.frames == len(seen)
    data, meta, f = read_hyperstack(path)
    # every page (blank planes too) keeps the predictor of the killed writer's files
    assert {page.predictor for page in f.pages} == {predictor}
    f.close()
    assert data.shape[1:3] == (3, 2)
    assert meta["spacing"] == 1.0 and meta["finterval"] == 2.0
    for c, z, t in seen:
        np.testing.assert_array_equal(data[t, z, c], coded_frame(c, z, t, (128, 96)))
    info = file_info(path)
    assert info.finished and info.codec == expected


FULL_DISK_CHILD = """
    import resource, signal, sys, threading, time
    import numpy as np
    from mmtiffsink import IJTiffFile, WriterError
    from mmtiffsink.tiff import _appender
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG
    path, batched = sys.argv[1], sys.argv[2] == "batched"
    if batched:  # the first write is slow: every other frame reaches the writer in one batch
        append_many = _appender.Appender.append_many
        first = threading.Event()
        def slow_first(self, batch):
            if not first.is_set():
                first.set()
                time.sleep(1.0)
            return append_many(self, batch)
        _appender.Appender.append_many = slow_first
    resource.setrlimit(resource.RLIMIT_FSIZE, (3_000_000, 3_000_000))
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 60000, (256, 256), dtype=np.uint16) for _ in range(100)]
    saved = 0
    try:
        with IJTiffFile(path, compression=None) as tif:
            for t in range(100):
                tif.save(frames[t], 0, 0, t)
                saved += 1
    except WriterError as exc:
        print("WriterError", saved, repr(exc.__cause__), str(exc), flush=True)
        sys.exit(0)
    print("no error", saved)
    sys.exit(1)
"""


@pytest.mark.parametrize("writes", ["as-saved", "batched"])
def test_full_disk_raises_and_keeps_written_frames(tmp_path: Path, writes: str) -> None:
    """The disk fills up: the file keeps every frame that fit, also when the frame that did
    not fit came in a batch with others (they land one by one until one does not fit)."""
    path = tmp_path / "full.tif"
    child = run_child(FULL_DISK_CHILD, str(path), writes)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, out + err
    assert out.startswith("WriterError"), out + err
    assert "File too large" in out or "No space" in out
    assert "repair" in out  # the message says what to do
    # the file keeps every frame written before the disk filled up
    with tifffile.TiffFile(path) as f:
        n = len(f.pages)
        assert 20 <= n < 100  # 3 MB hold 22 frames of 128 KiB
        planes = sorted(page_plane(p)[2] for p in f.pages)
        assert planes == list(range(n))
    report = repair(path)
    assert report.frames == n


@pytest.mark.slow
def test_imagej_profile_refuses_past_4gib_and_keeps_file(tmp_path: Path) -> None:
    """32 MiB frames into a deflate (level 0: stored) ImageJ file until the 4 GiB limit."""
    from mmtiffsink import IJTiffFile

    path = tmp_path / "big.tif"
    rng = np.random.default_rng(0)
    pool = [rng.integers(0, 2**16, (4096, 4096), dtype=np.uint16) for _ in range(3)]
    saved = 0
    with IJTiffFile(path, profile="imagej", compression=("deflate", 0)) as tif:
        with pytest.raises(ProfileError, match="4 GiB"):
            for t in range(200):
                frame = pool[t % 3].copy()
                frame[0, :4] = t  # distinct frames: no de-duplication
                tif.save(frame, 0, 0, t)
                saved += 1
        assert 100 <= saved < 128
    assert path.stat().st_size < 2**32
    with tifffile.TiffFile(path) as f:
        assert not f.is_bigtiff
        assert len(f.pages) == saved
        assert f.imagej_metadata["frames"] == saved
        last = f.pages[saved - 1].asarray()
        assert int(last[0, 0]) == saved - 1
        np.testing.assert_array_equal(last[1:], pool[(saved - 1) % 3][1:])
