"""Peer writers of the writer benchmark that have their own setup: ome-writers, and fsync.

Kept apart from ``bench_writer.py`` so that script stays readable; these functions take plain
arguments (no `Job`), so this module imports nothing from the script.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

Frame = NDArray[np.uint16]


def fsync_tree(root: str | os.PathLike[str]) -> None:
    """``fsync`` every file under ``root`` and every directory, so the data is on the disk.

    Run inside every writer's timing: a writer that leaves its data in the page cache does not
    get to stop the clock earlier than one that wrote it through.
    """
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fd = os.open(dirpath, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _settings(
    path: Path,
    shape: tuple[int, int, int],
    size: tuple[int, int],
    fmt: str,
    compression: str | None,
) -> object:
    import ome_writers as ow

    n_c, n_z, n_t = shape
    dims = [
        ow.Dimension(name="t", count=n_t, type="time"),
        ow.Dimension(name="z", count=n_z, type="space"),
        ow.Dimension(name="c", count=n_c, type="channel"),
        ow.Dimension(name="y", count=size[0], type="space"),
        ow.Dimension(name="x", count=size[1], type="space"),
    ]
    dims = [d for d in dims if d.count != 1 or d.name in ("t", "y", "x")]
    return ow.AcquisitionSettings(
        root_path=str(path),
        dimensions=dims,
        dtype="uint16",
        format=fmt,
        compression=compression,
        overwrite=True,
        # OME-Zarr must store T, C, Z (its chunks are addressed, any order of arrival is
        # fine); OME-TIFF keeps the arrival order, so its pages need no reordering
        storage_order="acquisition" if fmt == "ome-tiff" else "ome",
    )


def warm_up_ome_writers(scratch: Path, fmt: str, compression: str | None) -> None:
    """Write one tiny stream, untimed: the first stream of a process pays ~1.4 s of lazy set-up.

    (Measured here: ``create_stream`` of the first OME-TIFF in a process takes 1.4 s, the
    second 0.03 s; the time goes to building the OME metadata models, not to writing.)
    """
    import ome_writers as ow

    suffix = ".ome.tiff" if fmt == "ome-tiff" else ".ome.zarr"
    settings = _settings(scratch / f"warm{suffix}", (1, 1, 2), (16, 16), fmt, compression)
    with ow.create_stream(settings) as stream:  # type: ignore[arg-type]
        for _ in range(2):
            stream.append(np.zeros((16, 16), np.uint16))


def write_ome_writers(
    out_dir: str,
    shape: tuple[int, int, int],
    size: tuple[int, int],
    frames: Iterator[tuple[int, Frame]],
    fmt: str,
    compression: str | None,
) -> int:
    """Stream frames with ome-writers (pymmcore-plus's writer); return the bytes written.

    Frames arrive C fastest, then Z, then T (the benchmark's order), declared as the
    acquisition order; OME-TIFF stores them in that order (no reordering), OME-Zarr in its
    required T, C, Z order (one chunk per frame, so nothing is buffered). OME-TIFF:
    tifffile on one writer thread per position, compression ``"lzw"`` or none (the only two
    it offers). OME-Zarr: its first available backend (tensorstore here), zstd level 3, one
    chunk per frame.
    """
    import ome_writers as ow

    suffix = ".ome.tiff" if fmt == "ome-tiff" else ".ome.zarr"
    path = Path(out_dir, f"bench{suffix}")
    settings = _settings(path, shape, size, fmt, compression)
    with ow.create_stream(settings) as stream:  # type: ignore[arg-type]
        for _, frame in frames:
            stream.append(frame)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
