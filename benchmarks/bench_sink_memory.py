"""Memory that grows with the number of frames: N small frames with unique metadata.

    python benchmarks/bench_sink_memory.py 100000

Every frame goes through ``TiffSink.put`` with pycro-manager-like metadata that differs per frame
(``ElapsedTime-ms``, ``Time``), so nothing but the file's index may grow. Prints Python's traced
memory (tracemalloc) and the process RSS after 10% of the frames and at the end, and the growth
per frame between the two.
"""

from __future__ import annotations

import argparse
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
import psutil

from mmtiffsink import TiffSink


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("frames", type=int, nargs="?", default=100_000)
    args = parser.parse_args()
    n = args.frames
    rng = np.random.default_rng(0)
    pool = [rng.integers(0, 1000, (16, 16), dtype=np.uint16) for _ in range(64)]
    samples: list[tuple[int, float, float]] = []
    tracemalloc.start()
    with tempfile.TemporaryDirectory() as tmp, TiffSink(Path(tmp), "mem") as sink:
        for i in range(n):
            frame = pool[i % 64].copy()
            frame[0, 0], frame[0, 1] = i % 65536, i // 65536  # every frame distinct
            metadata = {
                "Axes": {"time": i},
                "ElapsedTime-ms": i * 1.5,
                "Time": f"2026-11-21 12:00:00.{i:06d}",
                "PixelSize_um": 0.5,
            }
            sink.put(frame, {"time": i}, metadata)
            if i + 1 in (n // 10, n):
                traced, _ = tracemalloc.get_traced_memory()
                rss = psutil.Process().memory_info().rss
                samples.append((i + 1, traced / 1e6, rss / 1e6))
    for frames, traced, rss in samples:
        print(f"{frames:>9,} frames: traced {traced:7.1f} MB, RSS {rss:7.1f} MB")
    (f0, t0, r0), (f1, t1, r1) = samples[0], samples[-1]
    per = 1e6 / (f1 - f0)
    print(f"growth per frame: traced {(t1 - t0) * per:.0f} B, RSS {(r1 - r0) * per:.0f} B")


if __name__ == "__main__":
    main()
