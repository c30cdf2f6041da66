"""Memory of a file's finish (``close``) per plane: the ``ome`` profile beside ``bigtiff``.

    python benchmarks/bench_ome_finish.py                     # 100,000 planes, both profiles
    python benchmarks/bench_ome_finish.py --planes 100000,1000000

Each case runs in a fresh process: ``IJTiffFile`` writes N planes (T = N) of one 4 x 4 uint8
frame, so the pixels are stored once (de-duplicated) and the file stays small, each with its
OME Plane values (``plane={"delta_t": ..., "exposure_time": ...}``, stored in its IFD in every
profile), then closes it. Reported: tracemalloc's peak of the ``close()`` call (Python
allocations made by the finish alone, per plane), the process's peak RSS (``ru_maxrss``, the
whole run: the writer's index grows with the planes in every profile), and the times. tracemalloc
slows allocation-heavy code: read the times of the traced close as relative only.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
PROFILES = ("bigtiff", "ome")


def one(profile: str, planes: int) -> dict[str, float]:
    """Write and close one file; what its close cost."""
    if str(REPO_ROOT) not in sys.path:  # the checkout, installed or not
        sys.path.insert(0, str(REPO_ROOT))
    from mmtiffsink import IJTiffFile

    frame = np.zeros((4, 4), np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"bench.{profile}.tif"
        start = time.perf_counter()
        tif = IJTiffFile(path, profile=profile, pxsize=0.5, timeinterval=0.5, compression=None)
        for t in range(planes):
            tif.save(frame, 0, 0, t, plane={"delta_t": 0.5 * t, "exposure_time": 0.01})
        saved = time.perf_counter()
        tracemalloc.start()
        tif.close()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        closed = time.perf_counter()
        size = path.stat().st_size
    return {
        "close_peak_b": float(peak),
        "max_rss_b": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0,
        "save_s": saved - start,
        "close_s": closed - saved,
        "file_b": float(size),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--planes", default="100000", help="comma-separated plane counts")
    parser.add_argument("--profiles", default=",".join(PROFILES))
    parser.add_argument("--one", nargs=2, metavar=("PROFILE", "PLANES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]))))
        return
    print("| profile | planes | close: traced peak | per plane | peak RSS (run) | save | close |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for planes in (int(n) for n in args.planes.split(",")):
        for profile in args.profiles.split(","):
            run = subprocess.run(
                [sys.executable, __file__, "--one", profile, str(planes)],
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(run.stdout.strip().splitlines()[-1])
            print(
                f"| `{profile}` | {planes:,} | {r['close_peak_b'] / 1e6:,.1f} MB "
                f"| {r['close_peak_b'] / planes:,.0f} B | {r['max_rss_b'] / 1e6:,.0f} MB "
                f"| {r['save_s']:.0f} s | {r['close_s']:.1f} s |",
                flush=True,
            )


if __name__ == "__main__":
    main()
