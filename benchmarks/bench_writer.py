"""Side-by-side write benchmark: mmtiffsink against tiffwrite, tifffile, NDTiff, ome-writers.

This is a benchmark, not a test: it prints markdown tables and never fails on a slow result.
Every (workload, writer) case runs in a fresh subprocess of this same script, so peak memory
and thread pools are per case. Each case writes into its own directory under ``--out``, records
the size of what it wrote, and deletes it.

Run ``python benchmarks/bench_writer.py --help`` for the options, and see
``docs/benchmarks/writer.md`` for what each column means.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from _peers import fsync_tree, warm_up_ome_writers, write_ome_writers
from numpy.typing import NDArray

REPO_ROOT = Path(__file__).resolve().parent.parent
SEED = 20260311
MB = 1e6  # all sizes and rates are in decimal megabytes

Frame = NDArray[np.uint16]
Shape = tuple[int, int, int]  # (C, Z, T), C fastest when frames are numbered

#: writers in the order they are run and printed
WRITERS = (
    "mmtiffsink",
    "tiffwrite",
    "tifffile",
    "tifffile-iter",
    "ndstorage",
    "ome-tiff",
    "ome-zarr",
    "codec",
    "source",
    "baseline",
)
#: the writers that are timed on every throughput workload by default
DEFAULT_WRITERS = WRITERS[:-1]
#: writers that take the codec and level (the others write uncompressed or encode nothing)
COMPRESSING = frozenset(
    {"mmtiffsink", "baseline", "tiffwrite", "tifffile", "tifffile-iter", "codec"}
)
#: where ``baseline`` imports mmtiffsink from (``--baseline DIR``: another checkout)
BASELINE_ENV = "MMTIFFSINK_BENCH_BASELINE"
#: rows that are not file writers (no file, no fsync, never a "peer")
NOT_WRITERS = frozenset({"codec", "source"})


def base_writer(name: str) -> str:
    """Return the writer of a row name: ``mmtiffsink@1`` is ``mmtiffsink`` on 1 worker."""
    return name.split("@", 1)[0]


def writer_workers(name: str, default: int) -> int:
    """Return the worker count of a row name (``name@N``), else ``default``."""
    _, _, n = name.partition("@")
    return int(n) if n else default


# --------------------------------------------------------------------------------------------
# workloads
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """One frame size and one or more hyperstack shapes to write.

    Attributes
    ----------
    name
        Short name used on the command line (``large``, ``medium``, ``small``, ``memory``).
    height, width
        Frame size in pixels.
    shapes
        ``(C, Z, T)`` of each run; ``memory`` has two (a short and a long run).
    pool
        Number of distinct frames generated before timing.
    writers
        Writers to run, or ``None`` for the ``--writers`` selection.
    codec
        ``"none"`` for an uncompressed workload, ``None`` for ``--codec``.
    """

    name: str
    height: int
    width: int
    shapes: tuple[Shape, ...]
    pool: int
    writers: tuple[str, ...] | None = None
    codec: str | None = None


def workloads(*, quick: bool) -> dict[str, Workload]:
    """Return the workloads by name.

    Parameters
    ----------
    quick
        Use small frame counts, for a smoke run of about a minute.

    Returns
    -------
    dict of str to Workload
        ``large``, ``medium``, ``small``, their uncompressed twins ``large-none``,
        ``medium-none``, ``small-none``, and ``memory``.
    """
    if quick:
        large: Shape = (2, 2, 5)
        medium: Shape = (1, 1, 200)
        small: Shape = (1, 1, 2_000)
        memory: tuple[Shape, ...] = ((2, 2, 5), (2, 2, 25))
    else:
        large = (2, 10, 10)
        medium = (1, 1, 2_000)
        small = (1, 1, 20_000)
        memory = ((2, 10, 10), (2, 10, 100))
    return {
        "large": Workload("large", 2048, 2048, (large,), pool=8),
        "medium": Workload("medium", 512, 512, (medium,), pool=16),
        "small": Workload("small", 64, 64, (small,), pool=16),
        "large-none": Workload("large-none", 2048, 2048, (large,), pool=8, codec="none"),
        "medium-none": Workload("medium-none", 512, 512, (medium,), pool=16, codec="none"),
        "small-none": Workload("small-none", 64, 64, (small,), pool=16, codec="none"),
        "memory": Workload("memory", 2048, 2048, memory, pool=8, writers=("mmtiffsink",)),
    }


def make_frame(rng: np.random.Generator, height: int, width: int) -> Frame:
    """Return one microscopy-like uint16 frame.

    A camera offset plus a smooth, off-centre illumination profile, bright Gaussian spots
    (about one per 20,000 pixels, sigma 1.2-3 px) and Poisson shot noise on all of it.

    Parameters
    ----------
    rng
        Source of randomness (seeded by the caller, so pools are reproducible).
    height, width
        Frame size in pixels.

    Returns
    -------
    numpy.ndarray
        ``(height, width)`` uint16 frame.
    """
    y = np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :]
    cy, cx = rng.uniform(-0.3, 0.3, 2)
    image = 100.0 + 200.0 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 0.8)
    half = min(8, (min(height, width) - 1) // 2)
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float32)
    for _ in range(max(2, height * width // 20_000)):
        py = int(rng.integers(half, height - half))
        px = int(rng.integers(half, width - half))
        sigma = rng.uniform(1.2, 3.0)
        amplitude = rng.uniform(200.0, 3000.0)
        spot = amplitude * np.exp(-(yy**2 + xx**2) / (2.0 * sigma * sigma))
        image[py - half : py + half + 1, px - half : px + half + 1] += spot
    frame: Frame = np.clip(rng.poisson(image), 0, 65535).astype(np.uint16)
    return frame


def make_pool(height: int, width: int, count: int) -> NDArray[np.uint16]:
    """Return ``count`` distinct frames, the same for every run (fixed seed).

    Parameters
    ----------
    height, width
        Frame size in pixels.
    count
        Number of distinct frames.

    Returns
    -------
    numpy.ndarray
        ``(count, height, width)`` uint16.
    """
    rng = np.random.default_rng([SEED, height, width])
    return np.stack([make_frame(rng, height, width) for _ in range(count)])


def iter_frames(pool: NDArray[np.uint16], count: int) -> Iterator[tuple[int, Frame]]:
    """Yield ``count`` fresh frames made from the pool.

    Frame ``i`` is a new copy of ``pool[i % len(pool)]`` with the frame index XOR-ed into every
    16th pixel of every row, so no two frames, and no two rows, strips or tiles (TIFF tiles are
    at least 16 pixels wide) at the same place in two frames, are identical: writers that store
    identical frames, strips or tiles once (tiffwrite does) cannot profit. The copy also means
    a writer may keep the array it was given (as a camera buffer would be handed over). The
    cost (one memcpy and a strided XOR per frame) is the same for every writer and is shown on
    its own in the ``source`` row.

    Parameters
    ----------
    pool
        ``(n, height, width)`` distinct frames.
    count
        Number of frames to yield.

    Yields
    ------
    tuple of int and numpy.ndarray
        The frame index and a new frame.
    """
    n = len(pool)
    for i in range(count):
        frame = pool[i % n].copy()
        frame[:, ::16] ^= np.uint16(i & 0xFFFF)
        yield i, frame


def czt(index: int, shape: Shape) -> Shape:
    """Return ``(c, z, t)`` of frame ``index``: C fastest, then Z, then T.

    Parameters
    ----------
    index
        Frame number.
    shape
        ``(C, Z, T)``.

    Returns
    -------
    tuple of int
        ``(c, z, t)``.
    """
    n_c, n_z, _ = shape
    return index % n_c, (index // n_c) % n_z, index // (n_c * n_z)


# --------------------------------------------------------------------------------------------
# writers (run in the child process)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """What a child process writes.

    Attributes
    ----------
    workload
        Workload name.
    writer
        Writer name, one of `WRITERS`.
    shape
        ``(C, Z, T)``.
    pool_file
        ``.npy`` file holding the frame pool.
    out_dir
        Directory to write into (deleted by the parent afterwards).
    result_file
        JSON file the child writes its `Result` to.
    codec
        ``zstd``, ``deflate`` or ``none``.
    level
        Codec level.
    workers
        Threads for the writers that take a thread count (tifffile, codec; mmtiffsink as
        ``MMTIFFSINK_WORKERS`` when the row is named ``mmtiffsink@N``).
    """

    workload: str
    writer: str
    shape: Shape
    pool_file: str
    out_dir: str
    result_file: str
    codec: str
    level: int
    workers: int


@dataclass
class Result:
    """The measurements of one case (one subprocess).

    Attributes
    ----------
    workload, writer, shape
        As in `Job`.
    frames
        Frames written.
    raw_bytes
        Uncompressed bytes given to the writer.
    status
        ``ok``, ``unavailable``, ``error`` or ``timeout``.
    message
        Reason when the status is not ``ok``.
    wall_s
        Seconds from opening the writer to after closing it and ``fsync``-ing what it wrote.
    out_bytes
        Bytes written (file or directory; for ``codec`` the sum of encoded frames).
    peak_rss_mb
        Peak resident set size during the timed part, in MB.
    base_rss_mb
        Resident set size just before the timed part (interpreter, imports, frame pool).
    detail
        Writer settings worth reporting (e.g. tifffile's rows per strip).
    """

    workload: str
    writer: str
    shape: Shape
    frames: int
    raw_bytes: int
    status: str = "ok"
    message: str = ""
    wall_s: float = math.nan
    out_bytes: int = 0
    peak_rss_mb: float = math.nan
    base_rss_mb: float = math.nan
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def mb_per_s(self) -> float:
        """Uncompressed MB per second of wall time."""
        return self.raw_bytes / MB / self.wall_s

    @property
    def frames_per_s(self) -> float:
        """Frames per second of wall time."""
        return self.frames / self.wall_s


Writer = Callable[[Job, Iterator[tuple[int, Frame]], int, tuple[int, int]], int]


def write_mmtiffsink(
    job: Job, frames: Iterator[tuple[int, Frame]], count: int, size: tuple[int, int]
) -> int:
    """Write with ``mmtiffsink.IJTiffFile`` (this project); return the file size."""
    from mmtiffsink import IJTiffFile

    path = Path(job.out_dir, "mmtiffsink.tif")
    compression = None if job.codec == "none" else (job.codec, job.level)
    with IJTiffFile(path, shape=job.shape, dtype="uint16", compression=compression) as tif:
        for i, frame in frames:
            tif.save(frame, *czt(i, job.shape))
    return path.stat().st_size


def write_tiffwrite(
    job: Job, frames: Iterator[tuple[int, Frame]], count: int, size: tuple[int, int]
) -> int:
    """Write with ``tiffwrite.IJTiffFile`` (the predecessor, Rust); return the file size."""
    from tiffwrite import IJTiffFile

    path = Path(job.out_dir, "tiffwrite.tif")
    with IJTiffFile(path, dtype="uint16", compression=(job.codec, job.level)) as tif:
        for i, frame in frames:
            c, z, t = czt(i, job.shape)
            tif.save(frame, c, z, t)
    return path.stat().st_size


def rows_per_strip(height: int, width: int, workers: int) -> int:
    """Return tifffile's rows per strip: several strips per frame for its thread pool.

    tifffile encodes the strips (or tiles) of one ``write`` call in parallel, never two
    pages at once. So a frame is cut into about ``4 * workers`` strips, for load balance,
    but no strip is smaller than 64 kB, where the per-strip overhead would start to show:
    2048x2048 on 2 cores gives 256 rows (1 MB strips, 8 per frame), 512x512 gives 64 rows
    (64 kB, 8 per frame), 64x64 one strip per frame.

    Parameters
    ----------
    height, width
        Frame size in pixels (uint16).
    workers
        Encoding threads.

    Returns
    -------
    int
        Rows per strip.
    """
    rows = math.ceil(height / (4 * workers))
    rows = max(rows, math.ceil(65536 / (2 * width)))
    return min(rows, height)


def _tifffile_compression(job: Job) -> tuple[Any, dict[str, int] | None]:
    import tifffile

    if job.codec == "none":
        return None, None
    codec = {"zstd": tifffile.COMPRESSION.ZSTD, "deflate": tifffile.COMPRESSION.ADOBE_DEFLATE}
    return codec[job.codec], {"level": job.level}


def write_tifffile(
    job: Job, frames: Iterator[tuple[int, Frame]], count: int, size: tuple[int, int]
) -> int:
    """Write page by page with ``tifffile.TiffWriter`` (BigTIFF); return the file size.

    One ``write`` call per frame, as a streaming acquisition would. Each call encodes the
    strips of its frame on ``maxworkers`` threads (see `rows_per_strip`); no ImageJ metadata
    (``metadata=None``), so no per-page description is written.
    """
    import tifffile

    path = Path(job.out_dir, "tifffile.tif")
    compression, args = _tifffile_compression(job)
    rows = rows_per_strip(*size, job.workers)
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        for _, frame in frames:
            tif.write(
                frame,
                photometric="minisblack",
                compression=compression,
                compressionargs=args,
                rowsperstrip=rows,
                maxworkers=job.workers,
                contiguous=False,
                metadata=None,
            )
    return path.stat().st_size


def write_tifffile_iter(
    job: Job, frames: Iterator[tuple[int, Frame]], count: int, size: tuple[int, int]
) -> int:
    """Write all frames in one ``tifffile.TiffWriter.write`` call from an iterator.

    tifffile's own fast path for a stream of frames of known count: one series, one page per
    frame, and the strips of many pages are encoded together on ``maxworkers`` threads (in
    batches of ``buffersize``). Needs the frame count up front, so it is not a streaming API;
    shown to give tifffile its best chance.
    """
    import tifffile

    path = Path(job.out_dir, "tifffile-iter.tif")
    compression, args = _tifffile_compression(job)
    rows = rows_per_strip(*size, job.workers)
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        tif.write(
            (frame for _, frame in frames),
            shape=(count, *size),
            dtype="uint16",
            photometric="minisblack",
            compression=compression,
            compressionargs=args,
            rowsperstrip=rows,
            maxworkers=job.workers,
            metadata=None,
        )
    return path.stat().st_size


def write_ndstorage(
    job: Job, frames: Iterator[tuple[int, Frame]], count: int, size: tuple[int, int]
) -> int:
    """Write an NDTiff dataset (uncompressed) as pycro-manager's Python backend does.

    ``NDTiffDataset(directory, name=..., writable=True)``, ``initialize(summary)``, then
    ``put_image(axes, image, metadata)`` per frame and ``finish()``. Returns the size of all
    files of the dataset (image files and index).
    """
    from ndstorage import NDTiffDataset

    summary = {"PixelType": "GRAY16", "Width": size[1], "Height": size[0], "Prefix": "bench"}
    dataset = NDTiffDataset(job.out_dir, name="bench", writable=True)
    dataset.initialize(summary)
    for i, frame in frames:
        c, z, t = czt(i, job.shape)
        dataset.put_image({"channel": c, "z": z, "time": t}, frame, {"ImageNumber": i})
    dataset.finish()
    dataset.close()
    return sum(p.stat().st_size for p in Path(job.out_dir).rglob("*") if p.is_file())


def write_codec(
    job: Job, frames: Iterator[tuple[int, Frame]], count: int, size: tuple[int, int]
) -> int:
    """Only encode whole frames with imagecodecs on ``workers`` threads; no file.

    The ceiling for any writer using this codec: ``zstd_encode``/``deflate_encode`` release
    the GIL. At most ``2 * workers`` frames are in flight. Returns the encoded bytes.
    """
    import imagecodecs

    encoders = {"zstd": imagecodecs.zstd_encode, "deflate": imagecodecs.deflate_encode}
    # the "codec" of an uncompressed file: one copy of the frame
    encode: Callable[[Frame], bytes | bytearray] = (
        _as_bytes if job.codec == "none" else partial(encoders[job.codec], level=job.level)
    )
    total = 0
    pending: deque[Future[bytes | bytearray]] = deque()
    with ThreadPoolExecutor(job.workers) as pool:
        for _, frame in frames:
            pending.append(pool.submit(encode, frame))
            if len(pending) >= 2 * job.workers:
                total += len(pending.popleft().result())
        while pending:
            total += len(pending.popleft().result())
    return total


def _as_bytes(frame: Frame) -> bytes:
    return frame.tobytes()


def write_ome_tiff(
    job: Job, frames: Iterator[tuple[int, Frame]], count: int, size: tuple[int, int]
) -> int:
    """Write an OME-TIFF with ome-writers: LZW (its only codec) when compressing, else none."""
    compression = None if job.codec == "none" else "lzw"
    return write_ome_writers(job.out_dir, job.shape, size, frames, "ome-tiff", compression)


def write_ome_zarr(
    job: Job, frames: Iterator[tuple[int, Frame]], count: int, size: tuple[int, int]
) -> int:
    """Write an OME-Zarr with ome-writers' first backend: zstd level 3, or none."""
    compression = None if job.codec == "none" else "zstd"
    return write_ome_writers(job.out_dir, job.shape, size, frames, "ome-zarr", compression)


def unsupported(job: Job) -> str | None:
    """Return why a writer cannot write this job's codec, or None."""
    writer = base_writer(job.writer)
    if writer == "tiffwrite" and job.codec == "none":
        return "tiffwrite always compresses (compression=None means zstd)"
    if writer == "ome-zarr" and job.codec not in ("zstd", "none"):
        return "ome-writers' Zarr backends offer zstd/blosc only"
    return None


def write_source(
    job: Job, frames: Iterator[tuple[int, Frame]], count: int, size: tuple[int, int]
) -> int:
    """Only produce the frames (copy + index stamp), the fixed cost inside every timing."""
    for _ in frames:
        pass
    return 0


WRITER_FUNCS: dict[str, Writer] = {
    "mmtiffsink": write_mmtiffsink,
    "baseline": write_mmtiffsink,
    "tiffwrite": write_tiffwrite,
    "tifffile": write_tifffile,
    "tifffile-iter": write_tifffile_iter,
    "ndstorage": write_ndstorage,
    "ome-tiff": write_ome_tiff,
    "ome-zarr": write_ome_zarr,
    "codec": write_codec,
    "source": write_source,
}

WRITER_MODULES: dict[str, str] = {
    "mmtiffsink": "mmtiffsink",
    "baseline": "mmtiffsink",
    "tiffwrite": "tiffwrite",
    "tifffile": "tifffile",
    "tifffile-iter": "tifffile",
    "ndstorage": "ndstorage",
    "ome-tiff": "ome_writers",
    "ome-zarr": "ome_writers",
    "codec": "imagecodecs",
    "source": "numpy",
}


# --------------------------------------------------------------------------------------------
# memory measurement (Linux: /proc; elsewhere ru_maxrss, which cannot be reset)
# --------------------------------------------------------------------------------------------


def _proc_status(key: str) -> float | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) * 1024 / MB if match else None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux >= 4.0); return success."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def current_rss_mb() -> float:
    """Return the resident set size of this process in MB."""
    rss = _proc_status("VmRSS")
    if rss is not None:
        return rss
    import psutil

    return float(psutil.Process().memory_info().rss) / MB


def peak_rss_mb() -> float:
    """Return the peak resident set size of this process in MB (since the last reset)."""
    peak = _proc_status("VmHWM")
    if peak is not None:
        return peak
    import resource

    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, kB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / MB


def run_child(job: Job) -> None:
    """Run one case and write its `Result` as JSON (the subprocess entry point).

    Order: import the writer's module (untimed; ``unavailable`` if it fails), load the frame
    pool, reset the peak-RSS mark, then time open + all frames + close + ``fsync`` of every
    file written, and measure.

    Parameters
    ----------
    job
        The case to run.
    """
    pool = np.load(job.pool_file)
    count = math.prod(job.shape)
    size = (int(pool.shape[1]), int(pool.shape[2]))
    result = Result(job.workload, job.writer, job.shape, count, count * pool[0].nbytes)
    writer = base_writer(job.writer)
    if writer in ("mmtiffsink", "baseline"):
        # benchmark the checkout (or, for baseline, the one --baseline names), installed or not
        root = os.environ.get(BASELINE_ENV, "") if writer == "baseline" else str(REPO_ROOT)
        sys.path.insert(0, root)
        if "@" in job.writer:  # before the import: the pool reads it when it starts
            os.environ["MMTIFFSINK_WORKERS"] = str(job.workers)
    reason = unsupported(job)
    try:
        if reason:
            raise RuntimeError(reason)
        if writer == "baseline" and not os.environ.get(BASELINE_ENV):
            raise RuntimeError("baseline needs --baseline DIR (a checkout of mmtiffsink)")
        __import__(WRITER_MODULES[writer])
        if writer in ("mmtiffsink", "baseline"):
            from mmtiffsink import IJTiffFile  # noqa: F401
        if writer in ("ome-tiff", "ome-zarr"):
            scratch = Path(job.out_dir, "warm-up")
            scratch.mkdir()
            compression = None if job.codec == "none" else ("lzw", "zstd")[writer == "ome-zarr"]
            warm_up_ome_writers(scratch, writer, compression)
            shutil.rmtree(scratch)
    except Exception as exc:  # any import failure means "cannot run this writer"
        result.status, result.message = "unavailable", f"{type(exc).__name__}: {exc}"
        Path(job.result_file).write_text(json.dumps(asdict(result)))
        return
    if writer in ("tifffile", "tifffile-iter"):
        result.detail["rowsperstrip"] = rows_per_strip(*size, job.workers)
    frames = iter_frames(pool, count)
    reset_peak_rss()
    result.base_rss_mb = current_rss_mb()
    try:
        start = time.perf_counter()
        result.out_bytes = WRITER_FUNCS[writer](job, frames, count, size)
        closed = time.perf_counter()
        if writer not in NOT_WRITERS:
            fsync_tree(job.out_dir)
        result.wall_s = time.perf_counter() - start
        result.detail["fsync_s"] = round(result.wall_s - (closed - start), 3)
    except Exception as exc:
        result.status = "error"
        result.message = f"{type(exc).__name__}: {exc}".replace(job.out_dir, "<out>")
        traceback.print_exc()
    result.peak_rss_mb = peak_rss_mb()
    if result.status == "ok" and writer not in NOT_WRITERS | {"ndstorage", "ome-zarr"}:
        problem = check_tiff_output(Path(job.out_dir), count)  # untimed
        if problem:
            result.status, result.message = "incomplete", problem
    Path(job.result_file).write_text(json.dumps(asdict(result)))


def check_tiff_output(out_dir: Path, count: int) -> str:
    """'' when the TIFF(s) in ``out_dir`` hold ``count`` pages whose last one decodes, else why.

    Run after the clock stops: a writer that returns before its file is complete (a writer
    thread still busy, a truncated file) must not show a rate or a file size as if it had
    written everything. (NDTiff and Zarr outputs are not checked: not one TIFF hyperstack.)
    """
    import tifffile

    paths = sorted(p for p in out_dir.rglob("*") if p.suffix.lower() in (".tif", ".tiff"))
    if not paths:
        return "it left no TIFF file"
    pages = 0
    try:
        for path in paths:
            with tifffile.TiffFile(path) as tif:
                pages += len(tif.pages)
                last = tif.pages[-1]
                last.asarray()  # type: ignore[union-attr]
    except Exception as exc:
        return f"its file does not read back: {type(exc).__name__}: {exc}"
    if pages != count:
        return f"its file(s) hold {pages} of {count} frames"
    return ""


# --------------------------------------------------------------------------------------------
# parent: run the cases, print the tables
# --------------------------------------------------------------------------------------------


def run_case(job: Job, timeout: float) -> Result:
    """Run `job` in a fresh subprocess and return its result.

    Parameters
    ----------
    job
        The case.
    timeout
        Seconds before the subprocess is killed (status ``timeout``).

    Returns
    -------
    Result
        What the child measured, or a failed result.
    """
    Path(job.out_dir).mkdir(parents=True, exist_ok=True)
    count = math.prod(job.shape)
    failed = Result(job.workload, job.writer, job.shape, count, 0)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(asdict(job))]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        failed.status, failed.message = "timeout", f"killed after {timeout:.0f} s"
        return failed
    finally:
        shutil.rmtree(job.out_dir, ignore_errors=True)
    result_file = Path(job.result_file)
    if proc.returncode != 0 or not result_file.exists():
        lines = (proc.stderr or proc.stdout).strip().splitlines() or ["no output"]
        failed.status = "error"
        failed.message = f"exit code {proc.returncode}: {lines[-1]}".replace(job.out_dir, "<out>")
        return failed
    data = json.loads(result_file.read_text())
    result_file.unlink()
    data["shape"] = tuple(data["shape"])
    return Result(**data)


def summarize(results: list[Result], stat: str) -> Result:
    """Combine the repeats of one case: pick the best or the median run.

    The throughput columns come from the run with the shortest (``best``) or median
    (``median``) wall time; the peak RSS is the largest of all runs.

    Parameters
    ----------
    results
        Repeats of one case.
    stat
        ``best`` or ``median``.

    Returns
    -------
    Result
        The chosen run, with the maximal peak RSS.
    """
    ok = sorted((r for r in results if r.status == "ok"), key=lambda r: r.wall_s)
    if not ok:
        return results[-1]
    chosen = ok[0] if stat == "best" else ok[(len(ok) - 1) // 2]
    out = Result(**asdict(chosen))
    out.shape = tuple(out.shape)  # type: ignore[assignment]
    out.peak_rss_mb = max(r.peak_rss_mb for r in ok)
    out.detail = dict(chosen.detail, runs=len(ok), wall_s_all=[round(r.wall_s, 3) for r in ok])
    return out


def _fmt(value: float, digits: int) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:,.{digits}f}"


def _label(result: Result, workload: Workload) -> str:
    writer, _, workers = result.writer.partition("@")
    name = writer
    if workers:
        name += f" ({workers} worker{'s' * (workers != '1')})"
    if writer in ("tifffile", "tifffile-iter") and "rowsperstrip" in result.detail:
        name += f" ({result.detail['rowsperstrip']} rows/strip)"
    compressed = workload.codec != "none"
    if writer == "ndstorage" and compressed:
        name += " (uncompressed)"
    if writer == "ome-tiff" and compressed:
        name += " (LZW)"
    if writer == "ome-zarr" and compressed:
        name += " (zstd 3)"
    if len(workload.shapes) > 1:
        name += f", {result.frames:,} frames"
    return name


def table(workload: Workload, results: list[Result]) -> str:
    """Return the markdown table of one workload.

    Parameters
    ----------
    workload
        The workload.
    results
        One summarized result per writer (and per shape).

    Returns
    -------
    str
        Markdown table, then one line per failed writer.
    """
    codec = fastest(results, lambda name: base_writer(name) == "codec")
    ref = fastest(results, lambda name: name == "tiffwrite")
    peer = fastest_peer(workload, results)
    head = (
        "| writer | MB/s | frames/s | peak RSS (MB) | RSS over baseline (MB) | file size (MB) "
        "| ratio to codec limit | ratio to fastest peer | ratio to tiffwrite |"
    )
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    notes = []
    for r in results:
        if r.status != "ok":
            lines.append(f"| {_label(r, workload)} | {r.status} | | | | | | | |")
            notes.append(f"- {_label(r, workload)}: {r.status}: {r.message}")
            continue
        size = "-" if base_writer(r.writer) == "source" else _fmt(r.out_bytes / MB, 1)
        lines.append(
            f"| {_label(r, workload)} | {_fmt(r.mb_per_s, 1)} | {_fmt(r.frames_per_s, 0)} "
            f"| {_fmt(r.peak_rss_mb, 0)} | {_fmt(r.peak_rss_mb - r.base_rss_mb, 0)} | {size} "
            f"| {_fmt(r.mb_per_s / codec.mb_per_s, 2) if codec else '-'} "
            f"| {_fmt(r.mb_per_s / peer.mb_per_s, 2) if peer else '-'} "
            f"| {_fmt(r.mb_per_s / ref.mb_per_s, 2) if ref else '-'} |"
        )
    if peer is not None:
        kind = "uncompressed" if workload.codec == "none" else "compressing"
        notes.insert(0, f"Fastest {kind} peer: {_label(peer, workload)}.")
    return "\n".join(lines + (["", *notes] if notes else []))


def fastest(results: list[Result], keep: Callable[[str], bool]) -> Result | None:
    """Return the fastest ok result whose row name ``keep`` accepts."""
    ok = [r for r in results if r.status == "ok" and keep(r.writer)]
    return max(ok, key=lambda r: r.mb_per_s, default=None)


def fastest_peer(workload: Workload, results: list[Result]) -> Result | None:
    """Return the fastest other file writer that compresses as the workload does.

    In a compressed workload the peers are the compressing writers (not ndstorage, whose
    files are raw, nor ome-zarr with ``--codec deflate``); in an uncompressed one, every writer.
    """
    raw_only = {"ndstorage"}

    def keep(name: str) -> bool:
        writer = base_writer(name)
        if writer in ("mmtiffsink", "baseline") or writer in NOT_WRITERS:
            return False
        return workload.codec == "none" or writer not in raw_only

    return fastest(results, keep)


def describe(workload: Workload, args: argparse.Namespace) -> str:
    """Return the heading line of a workload's table."""
    counts = " and ".join(
        f"C={c} Z={z} T={t} ({c * z * t:,} frames, "
        f"{c * z * t * workload.height * workload.width * 2 / MB:,.0f} MB raw)"
        for c, z, t in workload.shapes
    )
    repeat = 1 if workload.name == "memory" else args.repeat
    stat = f", {args.stat} of {repeat} runs" if repeat > 1 else ""
    codec = "uncompressed" if workload.codec == "none" else f"{args.codec} level {args.level}"
    return (
        f"### {workload.name}: {workload.height}x{workload.width} uint16, {counts}, "
        f"{codec}{stat}, files fsync-ed"
    )


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _checkout_version() -> str:
    """Return the version in the checkout's pyproject.toml (the benchmarked code)."""
    try:
        text = (REPO_ROOT / "pyproject.toml").read_text()
    except OSError:
        return _version("mmtiffsink")
    match = re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE)
    return match.group(1) if match else "unknown"


def _git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", "mmtiffsink"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("+dirty" if dirty else "")


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else "unknown"


def machine() -> dict[str, str]:
    """Return the machine and package versions (nothing that names a path)."""
    info = {
        "cpus": str(os.cpu_count()),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
    }
    for dist in ("numpy", "imagecodecs", "tifffile", "tiffwrite", "ndstorage", "ome-writers"):
        info[dist] = _version(dist)
    info["mmtiffsink"] = f"{_checkout_version()} (checkout {_git_revision()})"
    return info


def targets(done: dict[str, list[Result]]) -> list[str]:
    """Return the target lines, each marked PASS, FAIL or n/a.

    Parameters
    ----------
    done
        Summarized results per workload name.

    Returns
    -------
    list of str
        Markdown bullet lines.
    """

    def pick(workload: str, writer: str) -> Result | None:
        rows = [r for r in done.get(workload, []) if r.status == "ok"]
        if writer == "peer":
            return fastest_peer(known[workload], rows) if workload in known else None
        for r in rows:
            if r.writer == writer:
                return r
        # no plain row: the row of this writer with the most workers (``name@N``)
        return max(
            (r for r in rows if base_writer(r.writer) == writer),
            key=lambda r: writer_workers(r.writer, 0),
            default=None,
        )

    def ratio_line(
        workload: str, what: str, ref: str, goal: float, text: str, info: bool = False
    ) -> str:
        mine, other = pick(workload, "mmtiffsink"), pick(workload, ref)
        if mine is None or other is None:
            return f"- n/a: {text}"
        ratio = getattr(mine, what) / getattr(other, what)
        verdict = ("info " if info else "") + ("PASS" if ratio >= goal else "FAIL")
        return f"- {verdict}: {text}: {ratio:.2f}x"

    known = workloads(quick=False)  # only the frame sizes and codecs are used
    lines = [
        ratio_line(
            "large", "mb_per_s", "tiffwrite", 1.0, "large (2048x2048): MB/s >= 1.0x tiffwrite"
        ),
        ratio_line(
            "large", "mb_per_s", "codec", 0.85, "large (2048x2048): MB/s >= 0.85x codec limit"
        ),
        ratio_line(
            "small", "frames_per_s", "tiffwrite", 1.0, "small (64x64): frames/s >= 1.0x tiffwrite"
        ),
        ratio_line(
            "large-none",
            "mb_per_s",
            "peer",
            1.0,
            "large-none (2048x2048 uncompressed): MB/s >= 1.0x fastest uncompressed peer",
        ),
        ratio_line(
            "medium", "mb_per_s", "codec", 0.85, "medium (512x512): MB/s >= 0.85x codec limit", True
        ),
        ratio_line(
            "small", "mb_per_s", "codec", 0.85, "small (64x64): MB/s >= 0.85x codec limit", True
        ),
    ]
    runs = sorted((r for r in done.get("memory", []) if r.status == "ok"), key=lambda r: r.frames)
    if len(runs) >= 2:
        growth = runs[-1].peak_rss_mb - runs[0].peak_rss_mb
        lines.append(
            f"- {'PASS' if growth <= 100 else 'FAIL'}: memory: peak RSS, {runs[-1].frames:,} vs "
            f"{runs[0].frames:,} frames, within 100 MB: {runs[-1].peak_rss_mb:,.0f} vs "
            f"{runs[0].peak_rss_mb:,.0f} MB ({growth:+,.0f} MB)"
        )
    else:
        lines.append("- n/a: memory: peak RSS, long vs short run, within 100 MB")
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small frame counts (~1 minute)")
    parser.add_argument("--codec", choices=("zstd", "deflate"), default="zstd")
    parser.add_argument("--level", type=int, default=3, help="codec level")
    parser.add_argument(
        "--workloads",
        default="large,medium,small,large-none,medium-none,small-none,memory",
        help="comma-separated workloads",
    )
    parser.add_argument(
        "--writers", default=",".join(DEFAULT_WRITERS), help="comma-separated writers"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="directory to write into (default: a temp dir)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also dump the results here")
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="a checkout whose mmtiffsink the 'baseline' writer runs (old core vs new)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs of each case")
    parser.add_argument(
        "--stat", choices=("best", "median"), default="best", help="which run to report"
    )
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="threads for tifffile and codec"
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per case")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is None:
        known = workloads(quick=args.quick)
        for name in args.workloads.split(","):
            if name not in known:
                parser.error(f"unknown workload {name!r}; choose from {', '.join(known)}")
        for name in args.writers.split(","):
            writer, _, n = name.partition("@")
            if writer not in WRITERS or (n and not (n.isdigit() and int(n) >= 1)):
                parser.error(
                    f"unknown writer {name!r}; choose from {', '.join(WRITERS)} "
                    "(optionally NAME@WORKERS)"
                )
        if args.repeat < 1 or args.workers < 1:
            parser.error("--repeat and --workers must be >= 1")
    return args


def _command_line(argv: list[str]) -> str:
    return " ".join(["python", "benchmarks/bench_writer.py", *argv])


def _check_space(out: Path, chosen: list[Workload]) -> None:
    """Warn when the output disk may be too small for the largest case."""
    need = max(
        math.prod(shape) * w.height * w.width * 2 for w in chosen for shape in w.shapes
    )  # uncompressed (ndstorage); compressed runs need about half
    free = shutil.disk_usage(out).free
    if free < 1.1 * need:
        print(
            f"warning: {free / MB:,.0f} MB free on the output disk; the largest case may "
            f"write up to {need / MB:,.0f} MB",
            file=sys.stderr,
        )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with ``--child``, one case of it).

    Parameters
    ----------
    argv
        Command line arguments without the program name.

    Returns
    -------
    int
        Exit status: 0, also when a writer failed or missed a target.
    """
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.baseline is not None:  # the children inherit it
        os.environ[BASELINE_ENV] = str(args.baseline.resolve())
    if args.child is not None:
        data = json.loads(args.child)
        data["shape"] = tuple(data["shape"])
        run_child(Job(**data))
        return 0

    started = time.perf_counter()
    load_at_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    known = workloads(quick=args.quick)
    chosen = [known[name] for name in args.workloads.split(",")]
    wanted = args.writers.split(",")
    selected = sorted(wanted, key=lambda n: (WRITERS.index(base_writer(n)), n))
    own_out = args.out is None
    out = Path(tempfile.mkdtemp(prefix="bench-writer-")) if own_out else args.out
    out.mkdir(parents=True, exist_ok=True)
    _check_space(out, chosen)

    pools: dict[tuple[int, int, int], Path] = {}
    cases: list[tuple[Workload, str, Shape]] = []
    try:
        for w in chosen:
            key = (w.height, w.width, w.pool)
            if key not in pools:
                print(f"generating {w.pool} frames of {w.height}x{w.width}", file=sys.stderr)
                pools[key] = out / f"pool-{w.height}x{w.width}x{w.pool}.npy"
                np.save(pools[key], make_pool(w.height, w.width, w.pool))
            for shape in w.shapes:
                for writer in w.writers or selected:
                    cases.append((w, writer, shape))

        raw: dict[tuple[str, str, Shape], list[Result]] = {}
        schedule = [  # repeats interleaved, so drift hits every writer alike; memory runs once
            (rep, k, case)
            for rep in range(args.repeat)
            for k, case in enumerate(cases)
            if rep == 0 or case[0].name != "memory"
        ]
        for n, (rep, k, (w, writer, shape)) in enumerate(schedule, 1):
            job = Job(
                workload=w.name,
                writer=writer,
                shape=shape,
                pool_file=str(pools[(w.height, w.width, w.pool)]),
                out_dir=str(out / f"case-{rep}-{k}"),
                result_file=str(out / f"result-{rep}-{k}.json"),
                codec=w.codec or args.codec,
                level=args.level,
                workers=writer_workers(writer, args.workers),
            )
            print(
                f"[{n}/{len(schedule)}] {w.name} {writer} {math.prod(shape):,} frames",
                end="",
                file=sys.stderr,
                flush=True,
            )
            result = run_case(job, args.timeout)
            shown = f"{result.mb_per_s:.1f} MB/s" if result.status == "ok" else result.status
            print(f": {shown}", file=sys.stderr, flush=True)
            raw.setdefault((w.name, writer, shape), []).append(result)
    finally:
        for path in pools.values():
            path.unlink(missing_ok=True)
        if own_out:
            shutil.rmtree(out, ignore_errors=True)

    done: dict[str, list[Result]] = {}
    for (name, _, _), runs in raw.items():
        done.setdefault(name, []).append(summarize(runs, args.stat))
    elapsed = time.perf_counter() - started
    info = machine()
    if hasattr(os, "getloadavg"):  # other work on the machine makes the numbers noisy
        info["load average"] = f"{load_at_start:.2f} at start, {os.getloadavg()[0]:.2f} at end"

    if args.json is not None:  # first, so a closed stdout cannot lose it
        payload = {
            "command": _command_line(argv),
            "machine": info,
            "elapsed_s": elapsed,
            "args": {k: v for k, v in vars(args).items() if k not in ("out", "json", "child")},
            "results": {
                name: [
                    dict(asdict(r), mb_per_s=r.mb_per_s, frames_per_s=r.frames_per_s)
                    if r.status == "ok"
                    else asdict(r)
                    for r in rs
                ]
                for name, rs in done.items()
            },
            "targets": targets(done),
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str) + "\n")

    print(f"## Writer benchmark ({args.codec} level {args.level})\n")
    for w in chosen:
        print(describe(w, args) + "\n")
        print(table(w, done[w.name]) + "\n")
    print("Command: `" + _command_line(argv) + "`\n")
    print(
        "Machine: "
        + ", ".join(f"{k} {v}" for k, v in info.items())
        + f". Total run time {elapsed:,.0f} s.\n"
    )
    print(
        "MB = 10^6 bytes. MB/s = uncompressed bytes / wall time (open to close and fsync). "
        + (
            f"Each case: {args.stat} of {args.repeat} runs (memory: one run); "
            if args.repeat > 1
            else ""
        )
        + "peak RSS includes the interpreter and the frame pool.\n"
    )
    print("Targets for mmtiffsink:\n")
    print("\n".join(targets(done)))

    return 0


if __name__ == "__main__":
    sys.exit(main())
