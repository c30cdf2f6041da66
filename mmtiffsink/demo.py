"""Write a demo hyperstack of synthetic cells: ``python -m mmtiffsink.demo [OUT.tif]``.

Until the acquisition parts land this is the project's main job: it shows the writer end to
end (2 channels x 10 slices x 5 time points, calibrated, colored, zstd) and prints a summary.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .tiff import IJTiffFile, Profile

__all__ = ["demo_frame", "main"]


def demo_frame(
    c: int, z: int, t: int, shape: tuple[int, int] = (256, 256), seed: int = 0
) -> np.ndarray:
    """A synthetic fluorescence frame: background, blurred spots drifting with t, shot noise."""
    rng = np.random.default_rng(seed)
    h, w = shape
    centers = rng.uniform(0.1, 0.9, (12, 2)) * (h, w)
    yy, xx = np.mgrid[:h, :w]
    img = np.full(shape, 100.0)
    focus = 2.0 + abs(z - 4.5)
    for i, (cy, cx) in enumerate(centers):
        if i % 2 != c % 2:
            continue
        cy, cx = cy + 2 * t, cx + t
        img += 2000 / focus * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (3 * focus) ** 2))
    noise = np.random.default_rng(seed + 1 + c + 10 * z + 100 * t)
    return noise.poisson(img).astype(np.uint16)


def main(argv: list[str] | None = None) -> int:
    """Write the demo file and print what was written."""
    parser = argparse.ArgumentParser(prog="python -m mmtiffsink.demo", description=__doc__)
    parser.add_argument("out", nargs="?", default="demo.tif", type=Path)
    parser.add_argument("--profile", choices=tuple(Profile.ALL), default="bigtiff")
    args = parser.parse_args(argv)
    shape = (2, 10, 5)
    start = time.perf_counter()
    with IJTiffFile(
        args.out,
        shape=shape,
        profile=args.profile,
        pxsize=0.65,
        deltaz=0.5,
        timeinterval=30.0,
        colors=["magenta", "lime"],
        channel_names=["DAPI", "FITC"],
    ) as tif:
        planes = [
            (c, z, t) for t in range(shape[2]) for z in range(shape[1]) for c in range(shape[0])
        ]
        for c, z, t in tqdm(planes, desc="demo", unit="frame"):
            tif.save(
                demo_frame(c, z, t), c, z, t, metadata={"Axes": {"channel": c, "z": z, "time": t}}
            )
    size = args.out.stat().st_size
    raw = len(planes) * 256 * 256 * 2
    print(
        f"wrote {args.out}: C={shape[0]} Z={shape[1]} T={shape[2]} 256x256 uint16, "
        f"{args.profile}/{tif.compression.name}, 0.65 µm/px, z step 0.5 µm, interval 30 s, "
        f"{size / 1e6:.1f} MB ({raw / size:.1f}x smaller than raw) in "
        f"{time.perf_counter() - start:.1f} s. Open it in Fiji (Bio-Formats) or with tifffile."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
