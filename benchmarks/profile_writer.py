"""Where a frame's time goes in ``IJTiffFile.save``: per-stage costs and a cProfile.

    python benchmarks/profile_writer.py --size 2048 --frames 200 --compression none
    python benchmarks/profile_writer.py --size 64 --frames 20000 --compression zstd
    py-spy record --threads --format raw -o /tmp/spy.txt -- \\
        python benchmarks/profile_writer.py --size 64 --frames 20000 --no-cprofile

Three parts, all on the same frames (``bench_writer.iter_frames``):

1. the stages measured alone, per frame, in this thread: the source's copy, the writer's own
   frame copy (``np.array(copy=True)``), ``tobytes``, the codec, the CRC-32 dedup key, the
   ``pwrite`` of the bytes, a ``ThreadPoolExecutor`` round trip;
2. the writer end to end (open, save every frame, close, fsync), frames/s and µs per frame,
   beside the codec alone on as many threads as the writer's pool (``bench_writer``'s
   ``codec``), each with what it cost the machine: CPU time and context switches per frame
   (all threads), and the share of the CPUs left idle during the run (Linux). A small-frame
   stream whose CPUs idle while frames wait for the pool is held by the GIL, not by work;
3. (unless ``--no-cprofile``) the same run under cProfile, the calling thread only: the top
   functions by own time, per frame.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
from _peers import fsync_tree
from bench_writer import REPO_ROOT, iter_frames, make_pool

_pool: Any = None  # mmtiffsink.tiff._pool, imported by main() from this checkout


def per_frame_us(fn: Callable[[], Any], n: int) -> float:
    """Return the median over 5 batches of the µs one call of ``fn`` takes."""
    fn()
    batches = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        batches.append((time.perf_counter() - start) / n * 1e6)
    return sorted(batches)[2]


def stages(pool: np.ndarray, compression: str, level: int, tmp: Path) -> list[tuple[str, float]]:
    """Return (stage, µs per frame) measured alone."""
    frame = pool[0]
    n = max(5, min(2000, int(2e8 // max(frame.nbytes, 1) // 5)))
    raw = frame.tobytes()
    fd = os.open(tmp / "stage.bin", os.O_WRONLY | os.O_CREAT)
    offset = [0]

    def pwrite() -> None:
        os.pwrite(fd, raw, offset[0])
        offset[0] = (offset[0] + len(raw)) % (256 << 20)  # stay within 256 MB of page cache

    out = [
        ("source: copy + index stamp", per_frame_us(lambda: next(iter_frames(pool, 1)), n)),
        ("writer frame copy (Spares.copy)", per_frame_us(lambda: _pool.spares().copy(frame), n)),
        ("tobytes (the 'none' codec)", per_frame_us(frame.tobytes, n)),
    ]
    if compression != "none":
        enc = imagecodecs.zstd_encode if compression == "zstd" else imagecodecs.deflate_encode
        out.append((f"{compression} {level} encode", per_frame_us(lambda: enc(frame, level), n)))
        raw = bytes(enc(frame, level))
    out += [
        (
            "CRC-32 dedup key of the stored bytes",
            per_frame_us(lambda: imagecodecs.deflate_crc32(raw), n),
        ),
        ("pwrite of the stored bytes (page cache)", per_frame_us(pwrite, n)),
    ]
    os.close(fd)
    with ThreadPoolExecutor(1) as ex:
        out.append(
            (
                "pool round trip (submit + result, no work)",
                per_frame_us(lambda: ex.submit(int).result(), n),
            )
        )
    return out


def cpu_idle() -> tuple[int, int] | None:
    """(idle, total) jiffies of all CPUs so far (Linux's /proc/stat), or None elsewhere."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]
    except OSError:
        return None
    return fields[3], sum(fields)


def machine_use(run: Callable[[], float], frames: int) -> str:
    """Run ``run`` (which returns its wall time); say what it cost per frame."""
    before, idle0 = resource_usage(), cpu_idle()
    wall = run()
    after, idle1 = resource_usage(), cpu_idle()
    cpu = (after[0] - before[0]) / frames * 1e6
    switches = (after[1] - before[1]) / frames
    idle = ""
    if idle0 is not None and idle1 is not None and idle1[1] > idle0[1]:
        idle = f", CPUs idle {(idle1[0] - idle0[0]) / (idle1[1] - idle0[1]):.0%} of the run"
    return (
        f"{frames / wall:,.0f} frames/s, {wall / frames * 1e6:,.1f} µs per frame; per frame "
        f"{cpu:,.1f} µs of CPU, {switches:.1f} context switches{idle}"
    )


def resource_usage() -> tuple[float, int]:
    """(CPU seconds, context switches) of this process so far, every thread."""
    try:
        import resource
    except ImportError:  # Windows
        return time.process_time(), 0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_nvcsw + usage.ru_nivcsw


def run_codec(pool: np.ndarray, frames: int, compression: str, level: int) -> float:
    """Encode ``frames`` frames on as many threads as the writer's pool; return the wall time."""
    from collections import deque

    workers = _pool.pool_workers()
    if compression == "none":
        encode: Callable[[np.ndarray], Any] = np.ndarray.tobytes
    else:
        codec = imagecodecs.zstd_encode if compression == "zstd" else imagecodecs.deflate_encode
        encode = lambda frame: codec(frame, level)  # noqa: E731
    start = time.perf_counter()
    pending: deque[Any] = deque()
    with ThreadPoolExecutor(workers) as ex:
        for _, frame in iter_frames(pool, frames):
            pending.append(ex.submit(encode, frame))
            if len(pending) >= 2 * workers:
                pending.popleft().result()
        while pending:
            pending.popleft().result()
    return time.perf_counter() - start


def run_writer(pool: np.ndarray, frames: int, codec: Any, tmp: Path) -> float:
    """Write ``frames`` frames with IJTiffFile, fsync; return the wall time."""
    from mmtiffsink import IJTiffFile

    out = tmp / "writer"
    out.mkdir(exist_ok=True)
    path = out / "p.tif"
    path.unlink(missing_ok=True)
    start = time.perf_counter()
    with IJTiffFile(path, shape=(1, 1, frames), compression=codec) as tif:
        for i, frame in iter_frames(pool, frames):
            tif.save(frame, 0, 0, i)
    fsync_tree(out)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    """Print the stage costs, the end-to-end rate and the profile."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--compression", default="none", choices=("none", "zstd", "deflate"))
    parser.add_argument("--level", type=int, default=3)
    parser.add_argument("--top", type=int, default=18)
    parser.add_argument("--no-cprofile", action="store_true")
    parser.add_argument("--repeat", type=int, default=1, help="end-to-end runs of each")
    parser.add_argument("--dir", default=None, help="write here (e.g. /dev/shm: no disk)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO_ROOT))
    global _pool
    from mmtiffsink.tiff import _pool  # imported before any timing

    pool = make_pool(args.size, args.size, 8)
    codec = None if args.compression == "none" else (args.compression, args.level)
    print(f"load average {'/'.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="profile-writer-", dir=args.dir) as name:
        tmp = Path(name)
        print(f"\n{args.size}x{args.size} uint16, stages alone (µs per frame):")
        for stage, us in stages(pool, args.compression, args.level, tmp):
            print(f"  {us:10.1f}  {stage}")
        print(f"\nend to end, {args.frames:,} frames:")
        for _ in range(args.repeat):
            used = machine_use(lambda: run_writer(pool, args.frames, codec, tmp), args.frames)
            print(f"  IJTiffFile, compression={codec} (fsync included): {used}")
            used = machine_use(
                lambda: run_codec(pool, args.frames, args.compression, args.level), args.frames
            )
            print(f"  the codec alone on {_pool.pool_workers()} threads: {used}")
        if not args.no_cprofile:
            prof = cProfile.Profile()
            prof.enable()
            wall = run_writer(pool, args.frames, codec, tmp)
            prof.disable()
            text = io.StringIO()
            stats = pstats.Stats(prof, stream=text)
            stats.sort_stats("tottime").print_stats(args.top)
            print(
                f"\ncProfile (calling thread; {wall / args.frames * 1e6:,.1f} µs per frame "
                "under the profiler); tottime/frame in µs:"
            )
            for func, (_, ncalls, tt, ct, _) in sorted(
                stats.stats.items(),
                key=lambda kv: -kv[1][2],  # type: ignore[attr-defined]
            )[: args.top]:
                where = f"{Path(func[0]).name}:{func[1]}({func[2]})"
                print(
                    f"  {tt / args.frames * 1e6:9.1f} own {ct / args.frames * 1e6:9.1f} cum "
                    f"{ncalls / args.frames:6.1f} calls/frame  {where}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
