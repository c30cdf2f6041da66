"""Fuzz `info` and `repair`: damaged files give a result or one clean error, nothing else.

Base files are written by the real writer (every profile and codec), finished and
unfinished (an unfinished file is a byte copy taken after ``flush()`` while the writer is open,
which is what a killed process leaves: the crash tests check that equivalence). Each is then
damaged with a seeded mix of bit flips, byte runs and truncations, and handed to
``file_info``, ``repair`` and the ``mmtiffsink info`` / ``repair`` commands. The contract:
success, or a :class:`~mmtiffsink.errors.MMTiffSinkError` (one line on stderr, exit 1); never
another exception, never a hang, and memory bounded by the file, not by the numbers in it.
"""

from __future__ import annotations

import random
import shutil
import time
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from mmtiffsink import IJTiffFile
from mmtiffsink.cli import main
from mmtiffsink.errors import DatasetError, MissingFramesWarning, MMTiffSinkError, MMTiffSinkWarning
from mmtiffsink.inspect import file_info
from mmtiffsink.tiff import repair
from tests.writer_support import coded_frame, read_hyperstack

PROFILES = [
    ("bigtiff", "zstd"),
    ("bigtiff", "deflate"),
    ("bigtiff", None),
    ("imagej", "deflate"),
    ("imagej", None),
]
SHAPE = (2, 2, 2)
FRAME = (6, 10)
#: Allocation a call may make on a file of a few kB (tracemalloc peak; numpy included).
MAX_PEAK_BYTES = 32 << 20
MAX_CALL_S = 5.0
#: Bases only info is fuzzed on (none: every base is repaired too).
REPAIR_BROKEN: set[str] = set()


def _write(path: Path, profile: str, compression: str | None, finished: bool) -> None:
    copy = path.with_suffix(".open.tif")
    tif = IJTiffFile(
        copy,
        shape=SHAPE if (profile, compression) == ("imagej", None) else None,
        profile=profile,  # type: ignore[arg-type]
        compression=compression,
        pxsize=0.5,
        deltaz=1.0,
        timeinterval=2.0,
        channel_names=["A", "B"],
    )
    try:
        for t in range(SHAPE[2]):
            for z in range(SHAPE[1]):
                for c in range(SHAPE[0]):
                    if finished or (c, z, t) != (1, 1, 1):  # a plane missing in unfinished
                        tif.save(coded_frame(c, z, t, FRAME), c, z, t, metadata={"n": t})
        tif.flush()
        if not finished:
            shutil.copyfile(copy, path)  # the bytes a SIGKILL would leave
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MMTiffSinkWarning)
            tif.close()
    if finished:
        copy.replace(path)
    else:
        copy.unlink()


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, bytes]]:
    root = tmp_path_factory.mktemp("fuzz-bases")
    out = []
    for profile, compression in PROFILES:
        for finished in (True, False):
            name = f"{profile}-{compression}-{'finished' if finished else 'unfinished'}"
            path = root / f"{name}.tif"
            _write(path, profile, compression, finished)
            out.append((name, path.read_bytes()))
    return out


def _mutate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One to three damages of the kinds a disk, a copy or a crash makes."""
    buf = bytearray(data)
    done = []
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(("flip", "flip", "run", "truncate", "tail"))
        if kind in ("flip", "run", "tail") and not buf:
            continue
        if kind == "flip":  # a few bits anywhere, header and IFDs included
            for _ in range(rng.randint(1, 8)):
                i = rng.randrange(len(buf))
                buf[i] ^= 1 << rng.randrange(8)
            done.append("flip")
        elif kind in ("run", "tail"):  # a run of 0x00 / 0xFF / random bytes
            start = rng.randrange(len(buf))
            if kind == "tail":  # the writer's IFDs and chain live near the end
                start = max(0, len(buf) - 1 - rng.randrange(min(len(buf), 600)))
            n = rng.randint(1, 24)
            fill = rng.choice((b"\0", b"\xff", None))
            run = bytes(rng.getrandbits(8) for _ in range(n)) if fill is None else fill * n
            buf[start : start + n] = run[: len(buf) - start]
            done.append(f"{kind}@{start}+{n}")
        else:
            cut = rng.randrange(len(buf) + 1)
            del buf[cut:]
            done.append(f"cut@{cut}")
    return bytes(buf), ",".join(done)


def _bounded(call: Callable[[], Any], what: str) -> Any:
    """Run ``call``: a result or an MMTiffSinkError, in bounded time and memory."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MMTiffSinkWarning)  # blank planes filled, etc.
            return call()
    except MMTiffSinkError as exc:
        assert "\n" not in str(exc), f"{what}: a multi-line error: {exc!r}"
        return exc
    finally:
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert elapsed < MAX_CALL_S, f"{what}: took {elapsed:.1f} s"
        assert peak < MAX_PEAK_BYTES, f"{what}: allocated {peak / 1e6:.0f} MB"


def _cli(capfd: pytest.CaptureFixture[str], command: str, path: Path, what: str) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MMTiffSinkWarning)
        status = main([command, str(path)])
    out, err = capfd.readouterr()
    assert status in (0, 1), f"{what}: exit {status}"
    assert "Traceback" not in out + err, f"{what}: {err}"
    if status == 1:
        assert len(err.strip().splitlines()) == 1, f"{what}: {err!r}"
        assert err.startswith(f"mmtiffsink {command}: "), f"{what}: {err!r}"
    else:
        assert not err.strip(), f"{what}: {err!r}"
    return status


def _fuzz(
    tmp_path: Path,
    bases: list[tuple[str, bytes]],
    capfd: pytest.CaptureFixture[str],
    seed: int,
    rounds: int,
) -> dict[str, int]:
    rng = random.Random(seed)
    outcomes = {"ok": 0, "error": 0}
    for n in range(rounds):
        for name, data in bases:
            damaged, how = _mutate(data, rng)
            what = f"seed {seed} round {n} {name} [{how}]"
            path = tmp_path / f"{name}.tif"
            path.write_bytes(damaged)
            info = _bounded(lambda p=path: file_info(p), f"file_info {what}")
            _cli(capfd, "info", path, f"info {what}")
            if name in REPAIR_BROKEN:
                continue
            report = _bounded(lambda p=path: repair(p), f"repair {what}")
            outcomes["error" if isinstance(report, MMTiffSinkError) else "ok"] += 1
            if not isinstance(report, MMTiffSinkError) and not report.already_finished:
                # a repaired file is a finished file that info reads
                fixed = _bounded(lambda p=path: file_info(p), f"info after repair {what}")
                assert not isinstance(fixed, MMTiffSinkError), f"{what}: {fixed}"
                assert fixed.finished, what
            path.write_bytes(damaged)
            _cli(capfd, "repair", path, f"repair (cli) {what}")
            del info
    return outcomes


def test_fuzz_info_and_repair(
    tmp_path: Path, bases: list[tuple[str, bytes]], capfd: pytest.CaptureFixture[str]
) -> None:
    outcomes = _fuzz(tmp_path, bases, capfd, seed=8, rounds=12)
    # the damage is real: some files are refused, some still repair
    assert outcomes["error"] > 0 and outcomes["ok"] > 0, outcomes


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1, 6))
def test_fuzz_info_and_repair_long(
    tmp_path: Path, bases: list[tuple[str, bytes]], capfd: pytest.CaptureFixture[str], seed: int
) -> None:
    _fuzz(tmp_path, bases, capfd, seed=seed * 1000, rounds=40)


def test_repair_in_place_unfinished(tmp_path: Path) -> None:
    """An unfinished uncompressed ImageJ file, undamaged, repairs into a finished one."""
    path = tmp_path / "open.tif"
    _write(path, "imagej", None, finished=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MMTiffSinkWarning)
        report = repair(path)
    assert report.frames == 7 and file_info(path).finished


def test_repair_cuts_a_dangling_chain(tmp_path: Path) -> None:
    """A file cut short: the chain ends where the file does, and repair keeps what is left."""
    path = tmp_path / "cut.tif"
    _write(path, "bigtiff", "zstd", finished=False)
    data = path.read_bytes()
    with tifffile.TiffFile(path) as tif:
        offsets = [page.offset for page in tif.pages]
    path.write_bytes(data[: offsets[4]])  # IFDs 0-3 whole, IFD 3 links past the end
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = repair(path)
    messages = [str(w.message) for w in caught if issubclass(w.category, MissingFramesWarning)]
    assert any("points past the end of the file" in m for m in messages), messages
    assert report.frames == 4
    info = file_info(path)
    assert info.finished and info.shape == {"T": 1, "Z": 2, "C": 2, "Y": FRAME[0], "X": FRAME[1]}
    data, _, tif = read_hyperstack(path)
    tif.close()
    for z in range(2):
        for c in range(2):
            np.testing.assert_array_equal(data[0, z, c], coded_frame(c, z, 0, FRAME))


def test_repair_refuses_a_few_frames_spread_over_millions_of_planes(tmp_path: Path) -> None:
    """A damaged plane tag asking for 10**6 planes: refused at once, not minutes of blanks."""
    import time

    from mmtiffsink import IJTiffFile

    path = tmp_path / "spread.tif"
    tif = IJTiffFile(path)
    for t in range(3):
        tif.save(np.full((4, 4), t, np.uint16), 0, 0, t)
    tif.save(np.ones((4, 4), np.uint16), 0, 999, 999)  # legal, but what a flipped tag looks like
    tif.flush()
    tif._release()  # left unfinished, as a killed writer leaves it
    started = time.perf_counter()
    with pytest.raises(DatasetError, match="look damaged"):
        repair(path)
    assert time.perf_counter() - started < 5
    with tifffile.TiffFile(path) as f:  # left as it was: a valid TIFF with its 4 frames
        assert len(f.pages) == 4
