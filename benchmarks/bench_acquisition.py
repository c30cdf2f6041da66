"""Acquisition benchmark: mmtiffsink's pycro-manager hook against NDTiff on the demo microscope.

This is a benchmark, not a test: it prints markdown tables and never fails on a slow result.
The same event list (``--frames`` images: C=2 channels x Z=10 slices x T time points, z
fastest) runs on pycro-manager's Python backend with Micro-Manager's DemoCamera (from
``mm-test-adapters``) at ``--size`` x ``--size`` uint16, through:

* ``discard``: ``Acquisition(directory=None, image_process_fn=hook)``, the hook returns None:
  the ceiling of the engine itself;
* ``hook-zstd`` / ``hook-zstd1`` / ``hook-deflate`` / ``hook-none``: the hook is
  ``TiffSink(tmp, compression=...).image_process_fn`` (zstd at its default level 3, zstd
  level 1, deflate at its default level 1, uncompressed);
* ``ndtiff``: pycro-manager's own NDTiff storage, ``Acquisition(directory=tmp, name=...)``;
* ``storage-zstd``: ``mmtiffsink.pycromanager.TiffAcquisition(tmp, compression="zstd")``,
  whose dataset is a ``TiffStorage`` (with an older checkout: ``TiffStorage`` put in place of
  the engine's ``NDRAMDataset``).

Every call into a contender (the hook, or the dataset's ``put_image`` for ``ndtiff`` and
``storage-zstd``) is timed with ``time.perf_counter_ns``. The ``offline-*`` cases call the
hook directly with pre-made frames and realistic metadata, no microscope: once flat out (the
sink's own ceiling), then paced at the engine's frame rate or 50% of the flat-out rate,
whichever is lower (the hook's own latency, without engine jitter or back-pressure). The CPU
time of the process (all threads) and of each timed call is recorded too. Every case runs in
a fresh subprocess of this script.

Run ``python benchmarks/bench_acquisition.py --help`` for the options, and see
``docs/benchmarks/writer.md`` (*Acquisition benchmark*) for what each column means.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import math
import os
import pstats
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
from bench_writer import (
    MB,
    current_rss_mb,
    machine,
    make_pool,
    peak_rss_mb,
    reset_peak_rss,
)
from numpy.typing import NDArray

REPO_ROOT = Path(__file__).resolve().parent.parent

#: every case, in the order run and printed
ACQ_CASES = (
    "discard",
    "hook-default",
    "hook-zstd",
    "hook-zstd-wait",
    "hook-zstd1",
    "hook-deflate",
    "hook-none",
    "ndtiff",
    "storage-zstd",
)
OFFLINE_CASES = ("offline-zstd", "offline-zstd-wait", "offline-deflate", "offline-none")
CASES = ACQ_CASES + OFFLINE_CASES
#: compression of each mmtiffsink case
CODECS: dict[str, Any] = {
    "hook-default": "default",  # not passed: the sink's own default (zstd 1 + predictor)
    "hook-zstd": "zstd",
    "hook-zstd-wait": "zstd",
    "hook-zstd1": ("zstd", 1),
    "hook-deflate": "deflate",
    "hook-none": None,
    "storage-zstd": "zstd",
    "offline-zstd": "zstd",
    "offline-zstd-wait": "zstd",
    "offline-deflate": "deflate",
    "offline-none": None,
}
def sink_kwargs(case: str) -> dict[str, Any]:
    """The TiffSink options of a case: its codec (unless the default) and keep_up."""
    kwargs: dict[str, Any] = {"keep_up": case not in WAITS}
    if CODECS[case] != "default":
        kwargs["compression"] = CODECS[case]
    return kwargs


#: the sinks' keep_up (their default, True) for the cases that turn it off: the writer waits
#: for the pool (back-pressure) instead of storing frames uncompressed when it is behind
WAITS = frozenset({"hook-zstd-wait", "offline-zstd-wait"})
CHANNELS = ("DAPI", "FITC")
N_Z = 10
POOL = 16  # distinct realistic frames
BUFFER_SIZE_MB = 256
FALLBACK_RATE = 200.0  # frames/s for the paced offline run when no engine rate was measured


# --------------------------------------------------------------------------------------------
# the demo microscope (as tests/microscope.py starts it; copied, tests are not imported)
# --------------------------------------------------------------------------------------------


def start_demo(size: int, exposure_ms: float, mode: str) -> Any:
    """Start the headless demo microscope (Python backend) and set the camera; return the core."""
    import mm_test_adapters
    from pycromanager import Core, start_headless

    adapters = mm_test_adapters.device_adapter_path()
    start_headless(
        adapters,
        str(Path(adapters) / "MMConfig_demo.cfg"),
        python_backend=True,
        buffer_size_mb=BUFFER_SIZE_MB,
    )
    core = Core()
    core.set_config("System", "Startup")
    core.wait_for_config("System", "Startup")
    core.clear_roi()
    core.set_property("Camera", "OnCameraCCDXSize", size)
    core.set_property("Camera", "OnCameraCCDYSize", size)
    core.set_property("Camera", "PixelType", "16bit")
    core.set_property("Camera", "Mode", mode)
    core.set_exposure(exposure_ms)
    core.set_config("Objective", "10X")
    core.wait_for_system()
    got = (core.get_image_width(), core.get_image_height(), core.get_bytes_per_pixel())
    if got != (size, size, 2):
        msg = f"the DemoCamera gives {got} (width, height, bytes per pixel), not {size}x{size}x2"
        raise RuntimeError(msg)
    return core


def stop_demo() -> None:
    """Stop the headless core and drop the engine singleton."""
    from pycromanager import stop_headless
    from pycromanager.acquisition.acq_eng_py.internal.engine import Engine

    stop_headless()
    if hasattr(Engine, "singleton"):
        del Engine.singleton


def shape_for(frames: int, sequence: bool = False) -> tuple[int, int, int]:
    """Return ``(C, Z, T)`` of the event list: 2 channels x 10 slices x enough time points.

    With ``sequence``: one channel, one slice, ``frames`` time points.
    """
    if sequence:
        return 1, 1, frames
    n_c = len(CHANNELS)
    return n_c, N_Z, max(1, round(frames / (n_c * N_Z)))


def make_events(frames: int, sequence: bool = False) -> list[dict[str, Any]]:
    """Return the event list: time points x channels x z (z fastest).

    With ``sequence``: a time-lapse with no interval, which pycro-manager runs as a camera
    sequence (frames made by the camera's own thread, not snapped by the engine).
    """
    from pycromanager import multi_d_acquisition_events

    if sequence:
        seq: list[dict[str, Any]] = multi_d_acquisition_events(num_time_points=frames)
        return seq
    _, n_z, n_t = shape_for(frames)
    events: list[dict[str, Any]] = multi_d_acquisition_events(
        num_time_points=n_t,
        z_start=0,
        z_end=n_z - 1,
        z_step=1,
        channel_group="Channel",
        channels=list(CHANNELS),
    )
    return events


# --------------------------------------------------------------------------------------------
# cases (run in the child process)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """What a child process runs (see the module docstring for the cases)."""

    case: str
    frames: int
    size: int
    exposure_ms: float
    mode: str
    pixels: str
    rate: float
    out_dir: str
    result_file: str
    profile: bool
    sequence: bool = False
    exact_rate: bool = False


@dataclass
class Result:
    """The measurements of one case (one subprocess).

    ``latencies_us`` holds every timed call (hook or ``put_image``) in microseconds; for the
    offline cases it is the paced run. ``wall_s`` runs from ``acquire()`` (offline: the first
    call) until every file is closed; offline cases add ``free_wall_s``, the flat-out run.
    """

    case: str
    frames: int = 0
    raw_bytes: int = 0
    status: str = "ok"
    message: str = ""
    wall_s: float = math.nan
    out_bytes: int = 0
    peak_rss_mb: float = math.nan
    base_rss_mb: float = math.nan
    latencies_us: list[float] = field(default_factory=list)
    free_wall_s: float = math.nan
    cpu_s: float = math.nan
    thread_cpu_s: dict[str, float] = field(default_factory=dict)
    call_cpu_us: list[float] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def frames_per_s(self) -> float:
        """Frames per second of wall time."""
        return self.frames / self.wall_s

    @property
    def mb_per_s(self) -> float:
        """Uncompressed MB per second of wall time."""
        return self.raw_bytes / MB / self.wall_s


class Timed:
    """Wrap a callable: fill in realistic pixels (untimed), then time the call.

    Parameters
    ----------
    fn
        The contender (``image_process_fn`` or ``put_image``).
    pool
        Realistic frames, or None to pass the camera's pixels on unchanged.
    capacity
        Number of calls to expect (the latency array grows beyond it if needed).
    profiler
        When given, enabled around each timed call (the hook's own thread only).
    image_arg
        Position of the image among the call's arguments.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        pool: NDArray[np.uint16] | None,
        capacity: int,
        profiler: cProfile.Profile | None = None,
        image_arg: int = 0,
    ) -> None:
        self.fn = fn
        self.pool = pool
        self.ns = np.zeros(capacity + 16, dtype=np.int64)
        self.cpu_ns = np.zeros(capacity + 16, dtype=np.int64)
        self.count = 0
        self.profiler = profiler
        self.image_arg = image_arg

    def fill(self, image: Any) -> Any:
        """Overwrite the camera's frame with frame ``count`` of the realistic source."""
        if self.pool is None:
            return image
        i = self.count
        src = self.pool[i % len(self.pool)]
        if isinstance(image, np.ndarray) and image.flags.writeable and image.shape == src.shape:
            np.copyto(image, src, casting="unsafe")
        else:
            image = src.copy()
        image[:, ::16] ^= np.uint16(i & 0xFFFF)
        return image

    def __call__(self, *args: Any) -> Any:
        args_list = list(args)
        args_list[self.image_arg] = self.fill(args_list[self.image_arg])
        if self.count >= len(self.ns):
            self.ns = np.concatenate([self.ns, np.zeros_like(self.ns)])
            self.cpu_ns = np.concatenate([self.cpu_ns, np.zeros_like(self.cpu_ns)])
        profiler = self.profiler
        if profiler is not None:
            profiler.enable()
        cpu = time.thread_time_ns()
        start = time.perf_counter_ns()
        out = self.fn(*args_list)
        self.ns[self.count] = time.perf_counter_ns() - start
        self.cpu_ns[self.count] = time.thread_time_ns() - cpu
        if profiler is not None:
            profiler.disable()
        self.count += 1
        return out

    def hook(self, image: Any, metadata: dict[str, Any]) -> Any:
        """The same, as a two-argument ``image_process_fn`` (pycro-manager counts them)."""
        return self(image, metadata)

    def latencies_us(self) -> list[float]:
        """Every timed call, in microseconds."""
        return [round(v / 1e3, 2) for v in self.ns[: self.count].tolist()]

    def cpu_us(self) -> list[float]:
        """CPU time of the calling thread in every timed call, in microseconds."""
        return [round(v / 1e3, 2) for v in self.cpu_ns[: self.count].tolist()]


class ThreadCPU:
    """CPU time of each thread of this process, by thread name, sampled while it runs.

    A sampler thread reads every thread's CPU time (psutil, ``/proc/self/task``) every
    ``interval`` seconds and keeps the last value seen, so threads that end before `stop`
    are counted too. Names come from `threading` (numbers stripped, so ``mmtiffsink_0`` and
    ``mmtiffsink_1`` are one group); threads unknown to Python are ``native``.
    """

    def __init__(self, interval: float = 0.05) -> None:
        import psutil

        self._process = psutil.Process()
        self._interval = interval
        self._names: dict[int, str] = {}
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def _sample(self) -> None:
        for t in threading.enumerate():
            if t.native_id is not None and t.native_id not in self._names:
                self._names[t.native_id] = re.sub(r"[-_ ]?\d+", "", t.name).strip() or t.name
        for t in self._process.threads():
            cpu = t.user_time + t.system_time
            self._first.setdefault(t.id, cpu)
            self._last[t.id] = cpu

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def start(self) -> None:
        """Take the first sample and start sampling."""
        self._sample()
        self._thread.start()

    def stop(self) -> dict[str, float]:
        """Stop sampling; return CPU seconds since `start` by thread name."""
        self._stop.set()
        self._thread.join()
        self._sample()
        out: dict[str, float] = {}
        for tid, cpu in self._last.items():
            name = self._names.get(tid, "native")
            out[name] = out.get(name, 0.0) + cpu - self._first[tid]
        return {k: round(v, 4) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


def cpu_seconds() -> float:
    """CPU time (user + system) of this process, all threads, in seconds."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _discard(image: Any, metadata: dict[str, Any]) -> None:
    return None


def dir_bytes(path: Path) -> int:
    """Return the size of every file under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def check_tiffs(out_dir: Path, expected: int) -> str:
    """Return '' when the TIFF(s) under ``out_dir`` hold ``expected`` pages, else a message."""
    import tifffile

    pages = 0
    for path in sorted(out_dir.rglob("*.tif")):
        with tifffile.TiffFile(path) as tif:
            pages += len(tif.pages)
    return "" if pages == expected else f"the TIFFs hold {pages} pages, expected {expected}"


def kept_up(out_dir: Path) -> int:
    """Frames the writer stored uncompressed to keep up (``mmtiffsink info``), or 0."""
    try:
        from mmtiffsink.inspect import file_info
    except ImportError:
        return 0
    return sum(getattr(file_info(p), "frames_uncompressed", 0) for p in out_dir.rglob("*.tif"))


def run_acquisition(job: Job, result: Result, pool: NDArray[np.uint16] | None) -> None:
    """Run one acquisition case on the demo microscope and fill ``result``."""
    from pycromanager import Acquisition
    from pycromanager.acquisition import python_backend_acquisitions as backend

    import mmtiffsink.pycromanager as adapters
    from mmtiffsink.sink import TiffSink

    out = Path(job.out_dir)
    start_demo(job.size, job.exposure_ms, job.mode)
    try:
        events = make_events(job.frames, job.sequence)
        result.frames = len(events)
        result.raw_bytes = len(events) * job.size * job.size * 2
        profiler = cProfile.Profile() if job.profile else None
        timed: Timed | None = None
        sink: TiffSink | None = None
        storage: Any = None
        datasets: list[Any] = []
        new_acquisition: Callable[[], Any]

        if job.case == "ndtiff":
            original = backend.NDTiffDataset

            def ndtiff_factory(*args: Any, **kwargs: Any) -> Any:
                nonlocal timed
                dataset = original(*args, **kwargs)
                timed = Timed(dataset.put_image, pool, len(events), profiler, image_arg=1)
                dataset.put_image = timed
                datasets.append(dataset)
                return dataset

            backend.NDTiffDataset = ndtiff_factory

            def new_acquisition() -> Any:
                return Acquisition(directory=str(out), name="bench")

        elif job.case == "storage-zstd" and hasattr(adapters, "TiffAcquisition"):
            result.detail["storage"] = "TiffAcquisition"

            def new_acquisition() -> Any:
                nonlocal timed
                acq = adapters.TiffAcquisition(out, name="bench", **sink_kwargs(job.case))
                timed = Timed(acq.storage.put_image, pool, len(events), profiler, image_arg=1)
                acq.storage.put_image = timed  # no image arrives before acquire()
                return acq

        elif job.case == "storage-zstd":  # an older checkout: TiffStorage as the RAM dataset
            result.detail["storage"] = "TiffStorage in place of NDRAMDataset"
            sink = TiffSink(out, "bench", **sink_kwargs(job.case))
            storage = adapters.TiffStorage(sink)
            timed = Timed(storage.put_image, pool, len(events), profiler, image_arg=1)
            storage.put_image = timed
            backend.NDRAMDataset = lambda: storage

            def new_acquisition() -> Any:
                return Acquisition(directory=None, name="bench")

        else:
            if job.case == "discard":
                timed = Timed(_discard, pool, len(events), profiler)
            else:
                sink = TiffSink(out, "bench", **sink_kwargs(job.case))
                timed = Timed(sink.image_process_fn, pool, len(events), profiler)
            hook = timed.hook

            def new_acquisition() -> Any:
                return Acquisition(directory=None, name="bench", image_process_fn=hook)

        reset_peak_rss()
        result.base_rss_mb = current_rss_mb()
        sampler = ThreadCPU()
        with new_acquisition() as acq:
            sampler.start()
            cpu = cpu_seconds()
            start = time.perf_counter()
            acq.acquire(events)
        if sink is not None:
            sink.close()  # the hook's files
        if storage is not None:
            storage.close()  # already finished by the engine: raises the sink's error, if any
        result.wall_s = time.perf_counter() - start
        result.cpu_s = cpu_seconds() - cpu
        result.thread_cpu_s = sampler.stop()
        result.peak_rss_mb = peak_rss_mb()
        for dataset in datasets:
            dataset.close()
    finally:
        stop_demo()

    assert timed is not None
    result.latencies_us = timed.latencies_us()
    result.call_cpu_us = timed.cpu_us()
    result.detail["calls"] = timed.count
    result.out_bytes = dir_bytes(out)
    if timed.count != result.frames:
        result.status = "error"
        result.message = f"{timed.count} calls for {result.frames} events"
    elif job.case.startswith(("hook", "storage")):
        problem = check_tiffs(out, result.frames)
        result.detail["kept_up"] = kept_up(out)
        if problem:
            result.status, result.message = "error", problem
    if profiler is not None:
        _print_profile(profiler, job.case)


def offline_metadata(i: int, size: int, period_ms: float) -> dict[str, Any]:
    """Return the metadata the Python backend gives frame ``i`` (as recorded on the demo)."""
    z = i % N_Z
    c = (i // N_Z) % len(CHANNELS)
    t = i // (N_Z * len(CHANNELS))
    return {
        "Camera": "Camera",
        "Height": size,
        "Width": size,
        "PixelType": None,
        "CameraChannelIndex": 0,
        "PixelSize_um": 1.0,
        "ElapsedTime-ms": i * period_ms,
        "Time": "2026-11-21 22:08:32 -",
        "Axes": {"time": t, "channel": CHANNELS[c], "z": z},
        "ZPosition_um_Intended": float(z),
        "Exposure": 0.1,
    }


def _offline_run(
    job: Job, pool: NDArray[np.uint16], out: Path, rate: float | None, profiler: Any
) -> tuple[float, Timed]:
    """Call a fresh sink's hook ``frames`` times (paced at ``rate``, or flat out)."""
    from mmtiffsink.sink import TiffSink

    count = math.prod(shape_for(job.frames, job.sequence))
    period_ms = 1e3 / rate if rate else 5.0
    metas = [offline_metadata(i, job.size, period_ms) for i in range(count)]
    image = np.empty((job.size, job.size), dtype=np.uint16)
    out.mkdir(parents=True, exist_ok=True)
    sink = TiffSink(out, "bench", **sink_kwargs(job.case))
    timed = Timed(sink.image_process_fn, pool, count, profiler)
    start = time.perf_counter()
    with sink:
        for i in range(count):
            if rate:
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            timed(image, metas[i])
    return time.perf_counter() - start, timed


def run_offline(job: Job, result: Result, pool: NDArray[np.uint16]) -> None:
    """Call the hook directly: flat out (throughput), then paced (latency).

    The paced run goes at ``job.rate`` or 50% of the flat-out rate, whichever is lower, so
    its latencies are the hook's own cost and not the wait for a writer that is behind; with
    ``job.exact_rate`` at ``job.rate`` itself (e.g. twice the codec's rate, for ``keep_up``).
    """
    profiler = cProfile.Profile() if job.profile else None
    out = Path(job.out_dir)
    count = math.prod(shape_for(job.frames, job.sequence))
    result.frames = count
    result.raw_bytes = count * job.size * job.size * 2
    reset_peak_rss()
    result.base_rss_mb = current_rss_mb()
    cpu = cpu_seconds()
    sampler = ThreadCPU()
    sampler.start()
    result.free_wall_s, free = _offline_run(job, pool, out / "free", None, None)
    result.cpu_s = cpu_seconds() - cpu
    result.thread_cpu_s = sampler.stop()
    result.out_bytes = dir_bytes(out / "free")
    problem = check_tiffs(out / "free", count)
    result.detail["kept_up"] = kept_up(out / "free")
    shutil.rmtree(out / "free", ignore_errors=True)
    free_us = np.asarray(free.latencies_us())
    result.detail["free_median_us"] = float(np.median(free_us))
    result.detail["free_p99_us"] = float(np.percentile(free_us, 99))
    rate = job.rate if job.exact_rate else min(job.rate, 0.5 * count / result.free_wall_s)
    result.detail["rate"] = rate
    result.wall_s, paced = _offline_run(job, pool, out / "paced", rate, profiler)
    result.latencies_us = paced.latencies_us()
    result.call_cpu_us = paced.cpu_us()
    result.peak_rss_mb = peak_rss_mb()
    problem = problem or check_tiffs(out / "paced", count)
    if problem:
        result.status, result.message = "error", problem
    if profiler is not None:
        _print_profile(profiler, job.case + " (paced)")


def _print_profile(profiler: cProfile.Profile, case: str) -> None:
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("cumulative").print_stats(30)
    stats.sort_stats("tottime").print_stats(20)
    print(f"==== cProfile of the timed calls, {case} ====", file=sys.stderr)
    print(text.getvalue().replace(str(REPO_ROOT), "<repo>"), file=sys.stderr)


def run_child(job: Job) -> None:
    """Run one case and write its `Result` as JSON (the subprocess entry point)."""
    sys.path.insert(0, str(REPO_ROOT))  # benchmark the checkout, installed or not
    result = Result(job.case)
    try:
        import pycromanager  # noqa: F401

        import mmtiffsink.pycromanager  # noqa: F401

        pool = make_pool(job.size, job.size, POOL) if job.pixels == "realistic" else None
        if job.case in OFFLINE_CASES:
            if pool is None:
                pool = make_pool(job.size, job.size, POOL)
            run_offline(job, result, pool)
        else:
            run_acquisition(job, result, pool)
    except Exception as exc:
        result.status = "error"
        result.message = f"{type(exc).__name__}: {exc}".replace(job.out_dir, "<out>")
        traceback.print_exc()
    Path(job.result_file).write_text(json.dumps(asdict(result)))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # a leaked non-daemon pycro-manager thread must not keep the child alive


# --------------------------------------------------------------------------------------------
# parent: run the cases, print the tables
# --------------------------------------------------------------------------------------------


def run_case(job: Job, timeout: float) -> Result:
    """Run `job` in a fresh subprocess and return its result."""
    Path(job.out_dir).mkdir(parents=True, exist_ok=True)
    failed = Result(job.case)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(asdict(job))]
    try:
        proc = subprocess.run(
            cmd,
            stdout=subprocess.PIPE,
            stderr=None if job.profile else subprocess.PIPE,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        failed.status, failed.message = "timeout", f"killed after {timeout:.0f} s"
        return failed
    finally:
        shutil.rmtree(job.out_dir, ignore_errors=True)
    result_file = Path(job.result_file)
    if proc.returncode != 0 or not result_file.exists():
        lines = (proc.stderr or proc.stdout or "").strip().splitlines() or ["no output"]
        failed.status = "error"
        failed.message = f"exit code {proc.returncode}: {lines[-1]}".replace(job.out_dir, "<out>")
        return failed
    data = json.loads(result_file.read_text())
    result_file.unlink()
    return Result(**data)


@dataclass
class Summary:
    """The repeats of one case: throughput of the chosen run, latencies of all runs."""

    case: str
    chosen: Result
    runs: int
    walls: list[float]
    lat: NDArray[np.float64]
    cpu: NDArray[np.float64]
    peak_rss_mb: float

    @property
    def cpu_median_us(self) -> float:
        """Median CPU time of the calling thread in a timed call, every run."""
        return float(np.median(self.cpu)) if self.cpu.size else math.nan

    @property
    def cpu_ms_per_frame(self) -> float:
        """CPU time of the whole process (all threads) per frame, chosen run."""
        return 1e3 * self.chosen.cpu_s / self.chosen.frames

    @property
    def cores(self) -> float:
        """CPU time of the whole process / wall time, chosen run (flat-out run offline)."""
        wall = self.chosen.free_wall_s if self.case in OFFLINE_CASES else self.chosen.wall_s
        return self.chosen.cpu_s / wall

    @property
    def median_us(self) -> float:
        """Median latency of every timed call of every run."""
        return float(np.median(self.lat)) if self.lat.size else math.nan

    @property
    def p99_us(self) -> float:
        """99th percentile latency."""
        return float(np.percentile(self.lat, 99)) if self.lat.size else math.nan

    @property
    def max_us(self) -> float:
        """Largest latency."""
        return float(self.lat.max()) if self.lat.size else math.nan

    @property
    def busy(self) -> float:
        """Share of the chosen run's wall time spent inside the timed calls."""
        return sum(self.chosen.latencies_us) / 1e6 / self.chosen.wall_s


def summarize(results: list[Result], stat: str) -> Summary | Result:
    """Combine the repeats of one case (a failed `Result` when no run succeeded)."""
    ok = [r for r in results if r.status == "ok"]
    if not ok:
        return results[-1]
    offline = ok[0].case in OFFLINE_CASES  # offline: the flat-out run gives the throughput
    ok.sort(key=lambda r: r.free_wall_s if offline else r.wall_s)
    chosen = ok[0] if stat == "best" else ok[(len(ok) - 1) // 2]
    lat = np.concatenate([np.asarray(r.latencies_us, dtype=np.float64) for r in ok])
    cpu = np.concatenate([np.asarray(r.call_cpu_us, dtype=np.float64) for r in ok])
    return Summary(
        chosen.case,
        chosen,
        len(ok),
        [round(r.free_wall_s if offline else r.wall_s, 3) for r in ok],
        lat,
        cpu,
        max(r.peak_rss_mb for r in ok),
    )


def _fmt(value: float | None, digits: int) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:,.{digits}f}"


LABELS = {
    "discard": "engine alone (hook discards)",
    "hook-default": "mmtiffsink hook, its defaults (zstd 1 + predictor, keep_up)",
    "hook-zstd": "mmtiffsink hook, zstd (level 3), keep_up",
    "hook-zstd-wait": "mmtiffsink hook, zstd (level 3), keep_up=False (waits)",
    "hook-zstd1": "mmtiffsink hook, zstd level 1",
    "hook-deflate": "mmtiffsink hook, deflate (level 1)",
    "hook-none": "mmtiffsink hook, uncompressed",
    "ndtiff": "NDTiff (pycro-manager's own storage)",
    "storage-zstd": "mmtiffsink TiffAcquisition (TiffStorage), zstd",
    "offline-zstd": "zstd (level 3), keep_up",
    "offline-zstd-wait": "zstd (level 3), keep_up=False (waits)",
    "offline-deflate": "deflate (level 1)",
    "offline-none": "uncompressed",
}


def acquisition_table(done: dict[str, Summary | Result]) -> str:
    """Return the markdown table of the acquisition cases."""
    nd = done.get("ndtiff")
    eng = done.get("discard")
    ref = nd.chosen if isinstance(nd, Summary) else None
    ceiling = eng.chosen if isinstance(eng, Summary) else None
    lines = [
        "| contender | frames/s | MB/s | wall (s) | vs NDTiff | vs engine alone "
        "| call median (µs) | call p99 (µs) | call max (µs) | call CPU median (µs) "
        "| time in calls | process CPU (ms/frame) | cores busy "
        "| output (MB) | raw / output | stored uncompressed (keep_up) "
        "| peak RSS (MB) | RSS over baseline (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    notes = []
    for case in ACQ_CASES:
        s = done.get(case)
        if s is None:
            continue
        if not isinstance(s, Summary):
            lines.append(f"| {LABELS[case]} | {s.status} |" + " |" * 16)
            notes.append(f"- {LABELS[case]}: {s.status}: {s.message}")
            continue
        r = s.chosen
        output = "-" if case == "discard" else _fmt(r.out_bytes / MB, 1)
        ratio = "-" if case == "discard" else _fmt(r.raw_bytes / max(r.out_bytes, 1), 2)
        lines.append(
            f"| {LABELS[case]} | {_fmt(r.frames_per_s, 0)} | {_fmt(r.mb_per_s, 1)} "
            f"| {_fmt(r.wall_s, 2)} "
            f"| {_fmt(r.frames_per_s / ref.frames_per_s, 2) if ref else '-'} "
            f"| {_fmt(r.frames_per_s / ceiling.frames_per_s, 2) if ceiling else '-'} "
            f"| {_fmt(s.median_us, 0)} | {_fmt(s.p99_us, 0)} | {_fmt(s.max_us, 0)} "
            f"| {_fmt(s.cpu_median_us, 0)} | {_fmt(100 * s.busy, 0)}% "
            f"| {_fmt(s.cpu_ms_per_frame, 2)} | {_fmt(s.cores, 2)} | {output} | {ratio} "
            f"| {r.detail.get('kept_up', '-')} "
            f"| {_fmt(s.peak_rss_mb, 0)} | {_fmt(s.peak_rss_mb - r.base_rss_mb, 0)} |"
        )
    return "\n".join(lines + ([""] if notes else []) + notes)


def offline_table(done: dict[str, Summary | Result]) -> str:
    """Return the markdown table of the offline cases."""
    lines = [
        "| codec | flat out: frames/s | flat out: MB/s | flat out: hook median (µs) "
        "| flat out: hook p99 (µs) | flat out: stored uncompressed "
        "| flat out: process CPU (ms/frame) | flat out: cores busy "
        "| paced at (frames/s) | paced: hook median (µs) | paced: hook p99 (µs) "
        "| paced: hook max (µs) | paced: hook CPU median (µs) | output (MB) | peak RSS (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    notes = []
    for case in OFFLINE_CASES:
        s = done.get(case)
        if s is None:
            continue
        if not isinstance(s, Summary):
            lines.append(f"| {LABELS[case]} | {s.status} |" + " |" * 13)
            notes.append(f"- offline {LABELS[case]}: {s.status}: {s.message}")
            continue
        r = s.chosen
        lines.append(
            f"| {LABELS[case]} | {_fmt(r.frames / r.free_wall_s, 0)} "
            f"| {_fmt(r.raw_bytes / MB / r.free_wall_s, 1)} "
            f"| {_fmt(r.detail.get('free_median_us'), 0)} "
            f"| {_fmt(r.detail.get('free_p99_us'), 0)} | {r.detail.get('kept_up', '-')} "
            f"| {_fmt(s.cpu_ms_per_frame, 2)} "
            f"| {_fmt(s.cores, 2)} | {_fmt(r.detail.get('rate'), 0)} | {_fmt(s.median_us, 0)} "
            f"| {_fmt(s.p99_us, 0)} | {_fmt(s.max_us, 0)} | {_fmt(s.cpu_median_us, 0)} "
            f"| {_fmt(r.out_bytes / MB, 1)} | {_fmt(s.peak_rss_mb, 0)} |"
        )
    return "\n".join(lines + ([""] if notes else []) + notes)


#: friendlier names of the thread groups of `ThreadCPU`
THREAD_LABELS = {
    "Acquisition Engine Thread": "engine",
    "Thread (_process)": "hook thread",
    "Thread (saving_thread)": "saving thread",
    "mmtiffsink": "mmtiffsink pool",
    "MainThread": "main",
    "Acq Eng event generator": "event generator",
    "Thread (run)": "notifications",
    "NotificationDispatcherThread": "notification dispatch",
}


def thread_table(done: dict[str, Summary | Result]) -> str:
    """Return the markdown table of CPU time per frame by thread group (chosen runs)."""
    rows = [(c, s) for c, s in done.items() if isinstance(s, Summary) and s.chosen.thread_cpu_s]
    totals: dict[str, float] = {}
    for _, s in rows:
        for name, cpu in s.chosen.thread_cpu_s.items():
            label = THREAD_LABELS.get(name, name)
            totals[label] = totals.get(label, 0.0) + cpu / s.chosen.frames
    columns = [k for k, v in sorted(totals.items(), key=lambda kv: -kv[1]) if v >= 5e-6]
    lines = [
        "| case | " + " | ".join(columns) + " | all threads |",
        "|---|" + "---:|" * (len(columns) + 1),
    ]
    for case, s in rows:
        per: dict[str, float] = {}
        for name, cpu in s.chosen.thread_cpu_s.items():
            label = THREAD_LABELS.get(name, name)
            per[label] = per.get(label, 0.0) + 1e3 * cpu / s.chosen.frames
        label = LABELS[case] if case in ACQ_CASES else f"offline flat out, {LABELS[case]}"
        cells = " | ".join(_fmt(per.get(c, 0.0), 2) for c in columns)
        lines.append(f"| {label} | {cells} | {_fmt(sum(per.values()), 2)} |")
    return "\n".join(lines)


def targets(done: dict[str, Summary | Result], size: int) -> list[str]:
    """Return the target lines, each marked PASS, FAIL or n/a."""
    lines = []
    for case, where in (("hook-zstd", "in the acquisition"), ("offline-zstd", "offline, paced")):
        s = done.get(case)
        text = f"hook median under 1 ms at {size}x{size}, zstd, {where}"
        if isinstance(s, Summary):
            verdict = "PASS" if s.median_us < 1000 else "FAIL"
            lines.append(f"- {verdict}: {text}: {s.median_us:,.0f} µs (p99 {s.p99_us:,.0f} µs)")
        else:
            lines.append(f"- n/a: {text}")
    nd = done.get("ndtiff")
    for case in ("hook-zstd", "hook-zstd1", "hook-deflate", "hook-none", "storage-zstd"):
        s = done.get(case)
        text = f"acquisition with {LABELS[case]} no slower than with NDTiff"
        if isinstance(s, Summary) and isinstance(nd, Summary):
            ratio = s.chosen.frames_per_s / nd.chosen.frames_per_s
            verdict = "PASS" if ratio >= 1.0 else "FAIL"
            if case != "hook-zstd":
                verdict = "info " + verdict
            lines.append(
                f"- {verdict}: {text}: {s.chosen.frames_per_s:,.0f} vs "
                f"{nd.chosen.frames_per_s:,.0f} frames/s ({ratio:.2f}x)"
            )
        elif case == "hook-zstd":
            lines.append(f"- n/a: {text}")
    return lines


def _version(dist: str) -> str:
    try:
        return importlib_metadata.version(dist)
    except importlib_metadata.PackageNotFoundError:
        return "not installed"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--frames",
        type=int,
        default=2000,
        help="frames per acquisition (2 channels x 10 z x round(frames / 20) time points)",
    )
    parser.add_argument("--size", type=int, default=512, help="camera frame size (square)")
    parser.add_argument("--exposure", type=float, default=0.1, help="exposure (ms)")
    parser.add_argument(
        "--mode",
        default="Artificial Waves",
        help="DemoCamera Mode property: 'Artificial Waves' (the demo config's default), "
        "'Fluorescent Beads', 'Noise'",
    )
    parser.add_argument(
        "--pixels",
        choices=("realistic", "camera"),
        default="realistic",
        help="realistic: each frame's pixels are replaced (untimed) by a distinct "
        "microscopy-like frame; camera: the DemoCamera's own pixels (few distinct frames)",
    )
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated cases")
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="frames/s of the paced offline run (default: the engine-alone rate of the run)",
    )
    parser.add_argument(
        "--exact-rate",
        action="store_true",
        help="pace the offline run at --rate even above half the flat-out rate (a source "
        "faster than the codec, for keep_up's latency)",
    )
    parser.add_argument(
        "--sequence",
        action="store_true",
        help="a time-lapse with no interval (a camera sequence) instead of C x Z x T snaps",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs of each case (interleaved)")
    parser.add_argument(
        "--stat",
        choices=("best", "median"),
        default="best",
        help="which run's wall time to report (latencies: all runs pooled)",
    )
    parser.add_argument("--out", type=Path, default=None, help="directory to write into")
    parser.add_argument("--json", type=Path, default=None, help="also dump the results here")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per case")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="cProfile every timed call of the hook and print the top functions to stderr",
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is None:
        for name in args.cases.split(","):
            if name not in CASES:
                parser.error(f"unknown case {name!r}; choose from {', '.join(CASES)}")
        if args.repeat < 1 or args.frames < 1:
            parser.error("--repeat and --frames must be >= 1")
    return args


def _command_line(argv: list[str]) -> str:
    return " ".join(["python", "benchmarks/bench_acquisition.py", *argv])


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with ``--child``, one case of it); always exit 0."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.child is not None:
        run_child(Job(**json.loads(args.child)))
        return 0

    started = time.perf_counter()
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    chosen = [c for c in CASES if c in args.cases.split(",")]
    own_out = args.out is None
    out = Path(tempfile.mkdtemp(prefix="bench-acq-")) if own_out else args.out
    out.mkdir(parents=True, exist_ok=True)
    n_c, n_z, n_t = shape_for(args.frames, args.sequence)
    frames = n_c * n_z * n_t
    rate = args.rate
    raw: dict[str, list[Result]] = {}
    schedule = [(rep, case) for rep in range(args.repeat) for case in chosen]
    try:
        for n, (rep, case) in enumerate(schedule, 1):
            if case in OFFLINE_CASES and rate is None:
                ceiling = [r for r in raw.get("discard", []) if r.status == "ok"]
                rate = ceiling[0].frames_per_s if ceiling else FALLBACK_RATE
            job = Job(
                case=case,
                frames=frames,
                size=args.size,
                exposure_ms=args.exposure,
                mode=args.mode,
                pixels=args.pixels,
                rate=rate or FALLBACK_RATE,
                out_dir=str(out / f"case-{rep}-{case}"),
                result_file=str(out / f"result-{rep}-{case}.json"),
                profile=args.profile,
                sequence=args.sequence,
                exact_rate=args.exact_rate,
            )
            print(
                f"[{n}/{len(schedule)}] {case} {frames:,} frames",
                end="",
                file=sys.stderr,
                flush=True,
            )
            result = run_case(job, args.timeout)
            if result.status == "ok":
                lat = np.asarray(result.latencies_us)
                shown = f"{result.frames_per_s:,.0f} frames/s, call median {np.median(lat):,.0f} µs"
            else:
                shown = f"{result.status}: {result.message}"
            print(f": {shown} (load {os.getloadavg()[0]:.2f})", file=sys.stderr, flush=True)
            raw.setdefault(case, []).append(result)
    finally:
        if own_out:
            shutil.rmtree(out, ignore_errors=True)

    done = {case: summarize(runs, args.stat) for case, runs in raw.items()}
    elapsed = time.perf_counter() - started
    info = machine()
    for dist in ("pycromanager", "pymmcore", "mm-test-adapters"):
        info[dist] = _version(dist)
    info["load average (1, 5, 15 min)"] = (
        "at start "
        + "/".join(f"{v:.2f}" for v in load_start)
        + ", at end "
        + "/".join(f"{v:.2f}" for v in os.getloadavg())
    )
    found = targets(done, args.size)
    if args.json is not None:
        payload = {
            "command": _command_line(argv),
            "machine": info,
            "elapsed_s": elapsed,
            "args": {k: v for k, v in vars(args).items() if k not in ("out", "json", "child")},
            "results": {
                case: (
                    {
                        "frames_per_s": s.chosen.frames_per_s,
                        "mb_per_s": s.chosen.mb_per_s,
                        "median_us": s.median_us,
                        "call_cpu_median_us": s.cpu_median_us,
                        "cpu_ms_per_frame": s.cpu_ms_per_frame,
                        "cores": s.cores,
                        "p99_us": s.p99_us,
                        "max_us": s.max_us,
                        "walls_s": s.walls,
                        "peak_rss_mb": s.peak_rss_mb,
                        "out_bytes": s.chosen.out_bytes,
                        "detail": s.chosen.detail,
                    }
                    if isinstance(s, Summary)
                    else {"status": s.status, "message": s.message}
                )
                for case, s in done.items()
            },
            "targets": found,
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str) + "\n")

    stat = f", {args.stat} of {args.repeat} runs" if args.repeat > 1 else ""
    pixels = (
        "pixels replaced (untimed) by distinct microscopy-like frames"
        if args.pixels == "realistic"
        else "the DemoCamera's own pixels"
    )
    print("## Acquisition benchmark\n")
    print(
        f"### Demo acquisition: {args.size}x{args.size} uint16, C={n_c} Z={n_z} T={n_t} "
        f"({frames:,} frames, {frames * args.size * args.size * 2 / MB:,.0f} MB raw), "
        f"DemoCamera '{args.mode}', exposure {args.exposure:g} ms, {pixels}{stat}\n"
    )
    if any(c in done for c in ACQ_CASES):
        print(acquisition_table(done) + "\n")
    if any(c in done for c in OFFLINE_CASES):
        print(
            f"### Offline: the hook called directly, {frames:,} frames of {args.size}x{args.size}"
            f" with demo metadata, no microscope{stat}\n"
        )
        print(offline_table(done) + "\n")
    if any(isinstance(s, Summary) and s.chosen.thread_cpu_s for s in done.values()):
        print("### CPU time by thread (ms per frame; chosen runs)\n")
        print(thread_table(done) + "\n")
    print("Command: `" + _command_line(argv) + "`\n")
    print(
        "Machine: "
        + ", ".join(f"{k} {v}" for k, v in info.items())
        + f". Total run time {elapsed:,.0f} s.\n"
    )
    print(
        "MB = 10^6 bytes; MB/s and frames/s use the wall time from `acquire()` until every "
        "file is closed. Call latencies: every timed call of every run (hook, or `put_image` "
        "for NDTiff and TiffStorage).\n"
    )
    print("Targets:\n")
    print("\n".join(found))
    return 0


if __name__ == "__main__":
    sys.exit(main())
