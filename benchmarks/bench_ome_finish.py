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

    python benchmarks/bench_ome_finish.py --xml-only --planes 1000000

measures the OME-XML alone, without writing planes first (which takes minutes per 10**5 on a
shared machine): the description of one image of N planes, each with its Plane values, made
and written to a scratch file, with tracemalloc's peak. On a checkout older than the streamed
OME-XML (before ``ome_xml_chunks``), the same run builds the description with
``ome_description`` from a list of the planes' values, as that finish did.
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
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
PROFILES = ("bigtiff", "ome")


def one(profile: str, planes: int) -> dict[str, float]:
    """Write and close one file; what its close cost."""
    if str(REPO_ROOT) not in sys.path:  # the checkout, installed or not
        sys.path.insert(0, str(REPO_ROOT))
    from mmtiffsink import IJTiffFile
    from mmtiffsink.tiff import Profile

    frame = np.zeros((4, 4), np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"bench.{profile}.tif"
        start = time.perf_counter()
        tif = IJTiffFile(
            path, profile=Profile.get(profile), pixel_size_um=0.5, interval_s=0.5, compression=None
        )
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


def xml_only(planes: int) -> dict[str, float]:
    """Make and write the OME-XML of one image of ``planes`` planes; what it cost."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from mmtiffsink.tiff import PlaneInfo, _ome
    from mmtiffsink.tiff._settings import Settings

    settings = Settings(channel_names=["A"], pxsize=0.5, timeinterval=0.5)
    values = (PlaneInfo(delta_t=0.5 * t, exposure_time=0.01) for t in range(planes))
    kwargs: dict[str, Any] = {
        "path": Path("bench.ome.tif"),
        "settings": settings,
        "frame_shape": (4, 4),
        "dtype": np.dtype(np.uint8),
    }
    start = time.perf_counter()
    tracemalloc.start()
    with tempfile.TemporaryFile() as out:
        streamed = hasattr(_ome, "ome_xml_chunks")
        if streamed:
            image = _ome.OmeImage((1, 1, planes), values)
            for chunk in _ome.ome_xml_chunks(images=[image], **kwargs):
                out.write(chunk.encode("utf-8"))
        else:  # the finish before the stream: a list of values, one string, one bytes
            image = _ome.OmeImage((1, 1, planes), list(values))
            out.write(_ome.ome_description(images=[image], **kwargs).encode("utf-8"))
        size = out.tell()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"peak_b": float(peak), "s": time.perf_counter() - start, "xml_b": float(size)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--planes", default="100000", help="comma-separated plane counts")
    parser.add_argument("--profiles", default=",".join(PROFILES))
    parser.add_argument("--xml-only", action="store_true", help="the OME-XML alone")
    parser.add_argument("--one", nargs=2, metavar=("PROFILE", "PLANES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]))))
        return
    if args.xml_only:
        print("| planes | OME-XML | traced peak | per plane | time (traced) |")
        print("|---:|---:|---:|---:|---:|")
        for planes in (int(n) for n in args.planes.split(",")):
            r = xml_only(planes)
            print(
                f"| {planes:,} | {r['xml_b'] / 1e6:,.0f} MB | {r['peak_b'] / 1e6:,.1f} MB "
                f"| {r['peak_b'] / planes:,.0f} B | {r['s']:.0f} s |",
                flush=True,
            )
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
