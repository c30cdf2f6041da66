"""Peak memory with many open files: 2048x2048 frames saved round-robin into N open files.

    python benchmarks/bench_open_files.py                     # N = 1, 24, 96; about 1 minute
    python benchmarks/bench_open_files.py --files 1,96 --frames 384 --inflight-mb 128

The same frames (``bench_writer.iter_frames``: distinct microscopy-like 2048x2048 uint16) go
to N ``IJTiffFile`` s that are all open at once, frame ``i`` into file ``i % N``, as a
multi-position acquisition saves them. Each N runs in a fresh subprocess; the peak RSS
(``VmHWM``, reset just before the first file opens) must not grow with N: every open file
shares one in-flight budget in bytes (``mmtiffsink.tiff._pool.budget()``). A sampler thread
also records the largest ``budget().used`` it saw. Files are fsync-ed before the clock stops.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from _peers import fsync_tree
from bench_writer import (
    MB,
    REPO_ROOT,
    current_rss_mb,
    iter_frames,
    machine,
    make_pool,
    peak_rss_mb,
    reset_peak_rss,
)


def child(files: int, frames: int, pool_file: str, out: str, compression: str) -> dict[str, float]:
    """Write the case and return its measurements (runs in the subprocess)."""
    sys.path.insert(0, str(REPO_ROOT))
    from mmtiffsink import IJTiffFile
    from mmtiffsink.tiff import _pool

    pool = np.load(pool_file)
    per_file = -(-frames // files)
    budget = _pool.budget()
    seen = {"used": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.002):
            seen["used"] = max(seen["used"], budget.used)

    sampler = threading.Thread(target=sample, name="bench-sampler", daemon=True)
    codec = None if compression == "none" else compression
    reset_peak_rss()
    base = current_rss_mb()
    sampler.start()
    start = time.perf_counter()
    tifs = [
        IJTiffFile(Path(out, f"pos{k:03d}.tif"), shape=(1, 1, per_file), compression=codec)
        for k in range(files)
    ]
    try:
        for i, frame in iter_frames(pool, frames):
            tifs[i % files].save(frame, 0, 0, i // files)
    finally:
        for tif in tifs:
            tif.close()
    fsync_tree(out)
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    size = sum(p.stat().st_size for p in Path(out).glob("*.tif"))
    return {
        "wall_s": wall,
        "peak_rss_mb": peak_rss_mb(),
        "base_rss_mb": base,
        "budget_mb": budget.capacity / MB,
        "budget_used_max_mb": seen["used"] / MB,
        "out_mb": size / MB,
        "raw_mb": frames * pool[0].nbytes / MB,
    }


def main(argv: list[str] | None = None) -> int:
    """Run every N in its own subprocess and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--files", default="1,24,96", help="comma-separated open-file counts")
    parser.add_argument("--frames", type=int, default=192, help="frames per case (all files)")
    parser.add_argument("--compression", default="zstd", help="zstd, deflate or none")
    parser.add_argument("--inflight-mb", type=float, default=None, help="MMTIFFSINK_INFLIGHT_MB")
    parser.add_argument("--workers", type=int, default=None, help="MMTIFFSINK_WORKERS")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        job = json.loads(args.child)
        result = child(**job)
        print(json.dumps(result))
        return 0

    load_start = os.getloadavg()
    env = dict(os.environ)
    if args.inflight_mb is not None:
        env["MMTIFFSINK_INFLIGHT_MB"] = str(args.inflight_mb)
    if args.workers is not None:
        env["MMTIFFSINK_WORKERS"] = str(args.workers)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-open-files-") as tmp:
        pool_file = str(Path(tmp, "pool.npy"))
        np.save(pool_file, make_pool(2048, 2048, 8))
        for files in (int(n) for n in args.files.split(",")):
            out = Path(tmp, f"n{files}")
            out.mkdir()
            job = {
                "files": files,
                "frames": args.frames,
                "pool_file": pool_file,
                "out": str(out),
                "compression": args.compression,
            }
            cmd = [sys.executable, __file__, "--child", json.dumps(job)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                continue
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{files} files: {result}", file=sys.stderr)
            rows.append((files, result))
            for p in out.iterdir():
                p.unlink()
    print(
        f"### {args.frames} frames of 2048x2048 uint16 ({args.frames * 8.388608:,.0f} MB raw), "
        f"{args.compression}, saved round-robin into N open files\n"
    )
    print(
        "| open files | frames per file | MB/s | peak RSS (MB) | RSS over baseline (MB) "
        "| budget (MB) | largest in flight seen (MB) | output (MB) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for files, r in rows:
        print(
            f"| {files} | {-(-args.frames // files)} | {r['raw_mb'] / r['wall_s']:,.0f} "
            f"| {r['peak_rss_mb']:,.0f} | {r['peak_rss_mb'] - r['base_rss_mb']:,.0f} "
            f"| {r['budget_mb']:,.0f} | {r['budget_used_max_mb']:,.0f} | {r['out_mb']:,.0f} |"
        )
    info = machine()
    print(f"\nCommand: `python benchmarks/bench_open_files.py {' '.join(argv or sys.argv[1:])}`\n")
    print(
        "Machine: "
        + ", ".join(f"{k} {v}" for k, v in info.items() if k in ("cpus", "cpu", "mmtiffsink"))
        + f"; load average at start {'/'.join(f'{x:.2f}' for x in load_start)}"
        + f", at end {'/'.join(f'{x:.2f}' for x in os.getloadavg())}.\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
