"""pymmcore-plus MDA benchmark: mmtiffsink's TiffHandler against ome-writers on the demo adapters.

This is a benchmark, not a test: it prints markdown tables and always exits 0.

The same ``MDASequence`` (``--frames`` images: C=2 channels (DAPI, FITC) x Z=10 slices x
T time points, z fastest, no interval) runs on ``CMMCorePlus`` with Micro-Manager's demo
adapters (``mm-test-adapters``, ``MMConfig_demo.cfg``) at ``--size`` x ``--size`` uint16, and
is written by (``core.mda.run(seq, output=...)``):

* ``none``: no output at all, the MDA's own ceiling;
* ``mmtiffsink-zstd`` / ``mmtiffsink-zstd1`` / ``mmtiffsink-none``:
  ``mmtiffsink.pymmcore_plus.TiffHandler(out, compression=...)``, zstd level 3, zstd level 1,
  uncompressed;
* ``omew-tiff-none`` / ``omew-tiff-lzw``: ome-writers' OME-TIFF (pymmcore-plus's own sink,
  ``AcquisitionSettings(format="ome-tiff", compression=...)``);
* ``omew-zarr-zstd``: ome-writers' OME-Zarr, its default backend, zstd.

Pixels: every frame the engine yields is overwritten, in place, by a distinct microscopy-like
frame (``bench_writer.make_pool`` plus the frame index XOR-ed into every 16th pixel), in a
wrapper around ``engine.exec_event``, before the runner hands it to ome-writers' sink or emits
``frameReady``. That substitution runs on the runner thread, serially, and its time is
measured (``perf_counter_ns``) and subtracted from the wall time.

Every case runs in a fresh subprocess (peak RSS per case). After the timed runs, each writer
runs once more and is SIGKILLed after ``--kill-after`` frames (the child kills itself from
the runner thread just before it would hand over the next frame); the parent then opens what
is left with tifffile / zarr and counts the frames that decode and are not blank, and for
mmtiffsink again after ``mmtiffsink.repair``.

Run ``python benchmarks/bench_mda.py --help`` for the options; ``docs/benchmarks/mda.md`` has the
results and what the columns mean.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
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

REPO_ROOT = Path(__file__).resolve().parent.parent

CASES = (
    "none",
    "mmtiffsink-default",
    "mmtiffsink-zstd",
    "mmtiffsink-zstd1",
    "mmtiffsink-zstd3-pred",
    "mmtiffsink-none",
    "omew-tiff-none",
    "omew-tiff-lzw",
    "omew-zarr-zstd",
)
LABELS = {
    "none": "no output (MDA ceiling)",
    "mmtiffsink-default": "mmtiffsink TiffHandler, its default (zstd 1 + predictor)",
    "mmtiffsink-zstd": "mmtiffsink TiffHandler, zstd 3",
    "mmtiffsink-zstd1": "mmtiffsink TiffHandler, zstd 1",
    "mmtiffsink-zstd3-pred": "mmtiffsink TiffHandler, zstd 3 + predictor",
    "mmtiffsink-none": "mmtiffsink TiffHandler, none",
    "omew-tiff-none": "ome-writers OME-TIFF, none",
    "omew-tiff-lzw": "ome-writers OME-TIFF, LZW",
    "omew-zarr-zstd": "ome-writers OME-Zarr, zstd",
}
MMTIFFSINK_CODECS: dict[str, Any] = {
    "mmtiffsink-default": None,  # not passed: the sink's default codec
    "mmtiffsink-zstd": "zstd",
    "mmtiffsink-zstd1": ("zstd", 1),
    "mmtiffsink-zstd3-pred": "zstd:3+predictor",
    "mmtiffsink-none": None,
}
CHANNELS = ("DAPI", "FITC")
N_Z = 10
POOL = 16  # distinct realistic frames


@dataclass(frozen=True)
class Job:
    """What a child process runs."""

    case: str
    n_t: int
    size: int
    exposure_ms: float
    mode: str
    out_dir: str
    result_file: str
    kill_after: int = (
        0  # > 0: SIGKILL this process before handing over frame kill_after
    )


@dataclass
class Result:
    """The measurements of one case (one subprocess)."""

    case: str
    frames: int = 0
    raw_bytes: int = 0
    status: str = "ok"
    message: str = ""
    wall_s: float = math.nan  # run + close + fsync, substitution subtracted
    subst_s: float = 0.0  # the pixel substitution (subtracted)
    fsync_s: float = 0.0  # of which fsync of every output file
    out_bytes: int = 0
    peak_rss_mb: float = math.nan
    base_rss_mb: float = math.nan
    readable: int = -1  # frames read back (not blank) after the run
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def timed(self) -> bool:
        """The run was timed (its file may still be incomplete)."""
        return self.status in ("ok", "incomplete")

    @property
    def frames_per_s(self) -> float:
        """Frames per second of wall time."""
        return self.frames / self.wall_s


# --------------------------------------------------------------------------------------------
# child: the demo core, the substitution, one contender
# --------------------------------------------------------------------------------------------


def start_core(size: int, exposure_ms: float, mode: str) -> Any:
    """Load the demo configuration and set the camera; return the CMMCorePlus."""
    import mm_test_adapters
    from pymmcore_plus import CMMCorePlus

    core = CMMCorePlus()
    adapters = mm_test_adapters.device_adapter_path()
    core.setDeviceAdapterSearchPaths([adapters])
    core.loadSystemConfiguration(str(Path(adapters) / "MMConfig_demo.cfg"))
    core.setProperty("Camera", "OnCameraCCDXSize", size)
    core.setProperty("Camera", "OnCameraCCDYSize", size)
    core.setProperty("Camera", "PixelType", "16bit")
    core.setProperty("Camera", "Mode", mode)
    core.setExposure(exposure_ms)
    core.waitForSystem()
    got = (core.getImageWidth(), core.getImageHeight(), core.getBytesPerPixel())
    if got != (size, size, 2):
        msg = f"the DemoCamera gives {got} (width, height, bytes per pixel), not {size}x{size}x2"
        raise RuntimeError(msg)
    return core


def make_sequence(n_t: int, exposure_ms: float) -> Any:
    """The MDA: T time points (no interval) x 2 channels x 10 slices, z fastest."""
    from useq import MDASequence

    return MDASequence(
        channels=[{"config": c, "exposure": exposure_ms} for c in CHANNELS],
        z_plan={"range": N_Z - 1, "step": 1},
        time_plan={"interval": 0, "loops": n_t},
        axis_order="tcz",
    )


class Substitute:
    """Wrap ``engine.exec_event``: overwrite each yielded frame with a realistic one.

    Frame ``i`` becomes ``pool[i % len(pool)]`` with ``i`` XOR-ed into every 16th pixel of
    every row (in place when the camera's array is writable and of the right shape). The time
    spent here is summed in :attr:`ns`. With ``kill_after``, the process SIGKILLs itself
    instead of handing over frame ``kill_after``.
    """

    def __init__(self, engine: Any, pool: np.ndarray, kill_after: int = 0) -> None:
        self.exec_event = engine.exec_event
        self.pool = pool
        self.kill_after = kill_after
        self.count = 0
        self.ns = 0
        engine.exec_event = self

    def fill(self, image: Any) -> Any:
        i = self.count
        src = self.pool[i % len(self.pool)]
        if (
            isinstance(image, np.ndarray)
            and image.flags.writeable
            and image.shape == src.shape
        ):
            np.copyto(image, src, casting="unsafe")
        else:
            image = src.copy()
        image[:, ::16] ^= np.uint16(i & 0xFFFF)
        return image

    def __call__(self, event: Any) -> Any:
        for payload in self.exec_event(event) or ():
            start = time.perf_counter_ns()
            if self.kill_after and self.count >= self.kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
            if payload is not None and not isinstance(payload, int):
                img, sub_event, meta = payload
                payload = (self.fill(img), sub_event, meta)
                self.count += 1
            self.ns += time.perf_counter_ns() - start
            yield payload


def output_files(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*") if p.is_file())


def fsync_tree(out: Path) -> None:
    """fsync every file and directory under ``out`` (and ``out`` itself)."""
    for path in [
        *output_files(out),
        *sorted(p for p in out.rglob("*") if p.is_dir()),
        out,
    ]:
        flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if path.is_dir() else 0)
        fd = os.open(path, flags)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def make_output(job: Job, core: Any, out: Path) -> Any:
    """The ``output=`` of the case (None for ``none``)."""
    if job.case == "none":
        return None
    if job.case.startswith("mmtiffsink"):
        from mmtiffsink.pymmcore_plus import TiffHandler

        if job.case == "mmtiffsink-default":
            return TiffHandler(out, name="bench", core=core)
        return TiffHandler(
            out, name="bench", compression=MMTIFFSINK_CODECS[job.case], core=core
        )
    from ome_writers import AcquisitionSettings

    if job.case.startswith("omew-tiff"):
        compression = "lzw" if job.case.endswith("lzw") else None
        return AcquisitionSettings(
            root_path=str(out / "bench.ome.tiff"),
            format="ome-tiff",
            compression=compression,
        )
    return AcquisitionSettings(
        root_path=str(out / "bench.ome.zarr"), format="ome-zarr", compression="zstd"
    )


def run_mda(job: Job, result: Result) -> None:
    """Run the case's MDA (timed) and fill ``result``."""
    out = Path(job.out_dir)
    core = start_core(job.size, job.exposure_ms, job.mode)
    seq = make_sequence(job.n_t, job.exposure_ms)
    pool = make_pool(job.size, job.size, POOL)
    sub = Substitute(core.mda.engine, pool, job.kill_after)
    output = make_output(job, core, out)
    result.frames = len(CHANNELS) * N_Z * job.n_t
    result.raw_bytes = result.frames * job.size * job.size * 2
    if job.case.startswith("omew-zarr"):
        import ome_writers

        result.detail["ome-writers"] = importlib_metadata.version("ome-writers")
        result.detail["backend"] = _zarr_backend(ome_writers)
    reset_peak_rss()
    result.base_rss_mb = current_rss_mb()
    start = time.perf_counter()
    if job.case.startswith("mmtiffsink"):
        with output as handler:
            core.mda.run(seq, output=handler)
    else:
        core.mda.run(seq, output=output)
    late = late_writers()
    if late:  # ome-writers' OME-TIFF gives up waiting for its writer thread after 5 s
        result.detail["writer threads alive after run()"] = len(late)
        result.detail["OME-XML planes at close"] = ome_planes(out)
        joined = time.perf_counter()
        for thread in late:
            thread.join()
        result.detail["waited for them (s)"] = round(time.perf_counter() - joined, 2)
    synced = time.perf_counter()
    fsync_tree(out)
    end = time.perf_counter()
    result.peak_rss_mb = peak_rss_mb()
    result.fsync_s = end - synced
    result.subst_s = sub.ns / 1e9
    result.wall_s = end - start - result.subst_s
    result.out_bytes = sum(p.stat().st_size for p in output_files(out))
    if sub.count != result.frames:
        result.status, result.message = (
            "error",
            f"{sub.count} frames for {result.frames}",
        )
    if job.case == "none":
        return
    result.readable, error = count_readable(out)
    if (
        result.readable != result.frames
    ):  # timed, but the file does not hold every frame
        result.status = "incomplete"
        result.message = f"read back {result.readable:,} of {result.frames:,} frames"
        result.message += f" ({error[:80]})" if error else ""
    if job.case.startswith("omew-tiff"):
        result.detail["OME-XML planes"] = ome_planes(out)


def late_writers() -> list[threading.Thread]:
    """ome-writers' OME-TIFF writer threads still running (daemon threads, named so)."""
    return [
        t
        for t in threading.enumerate()
        if t.name.startswith("TiffWriterThread") and t.is_alive()
    ]


def ome_planes(out: Path) -> int:
    """Planes the OME-XML of the OME-TIFF(s) under ``out`` describes (tifffile's series)."""
    import tifffile

    planes = 0
    for path in sorted(out.glob("*.ome.tif*")):
        try:
            with tifffile.TiffFile(path) as tif:
                if tif.is_ome and tif.series:
                    planes += math.prod(tif.series[0].shape[:-2])
        except Exception:
            continue
    return planes


def _zarr_backend(ome_writers: Any) -> str:
    """The backend ome-writers picks for OME-Zarr ('auto'), as far as it tells."""
    for name in ("tensorstore", "acquire_zarr", "zarrs", "zarr"):
        try:
            __import__(name)
        except ImportError:
            continue
        return f"{name} (first installed)"
    return "unknown"


def run_child(job: Job) -> None:
    """Run one case and write its `Result` as JSON (the subprocess entry point)."""
    sys.path.insert(0, str(REPO_ROOT))  # benchmark the checkout, installed or not
    result = Result(job.case)
    try:
        run_mda(job, result)
    except Exception as exc:
        result.status = "error"
        result.message = f"{type(exc).__name__}: {exc}".replace(job.out_dir, "<out>")
        traceback.print_exc()
    Path(job.result_file).write_text(json.dumps(asdict(result)))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


# --------------------------------------------------------------------------------------------
# reading back (after a run, or after a SIGKILL)
# --------------------------------------------------------------------------------------------


def _tiff_frames(path: Path) -> tuple[int, str]:
    """Pages of ``path`` that decode and are not all zero, and the first error."""
    import tifffile

    good = 0
    try:
        with tifffile.TiffFile(path) as tif:
            for page in tif.pages:
                data = page.asarray()  # type: ignore[union-attr]
                if data.any():
                    good += 1
    except Exception as exc:
        return good, f"{type(exc).__name__}: {exc}"[:120]
    return good, ""


def _zarr_frames(root: Path) -> tuple[int, str]:
    """Frames (all but the last two axes) of every array under ``root`` that decode, not 0."""
    import zarr

    good = 0
    try:
        group = zarr.open_group(str(root), mode="r")
        arrays = [a for _, a in group.arrays()]
        for arr in arrays:
            lead = arr.shape[:-2]
            for idx in np.ndindex(*lead):
                try:
                    if np.asarray(arr[idx]).any():
                        good += 1
                except Exception:
                    continue
        if not arrays:
            return 0, "no array in the group"
    except Exception as exc:
        return good, f"{type(exc).__name__}: {exc}"[:120]
    return good, ""


def count_readable(out: Path) -> tuple[int, str]:
    """Frames readable under ``out``: TIFF pages or zarr frames, decodable and not blank."""
    good, errors = 0, []
    for zroot in sorted(out.glob("*.zarr")):
        n, err = _zarr_frames(zroot)
        good += n
        errors += [err] if err else []
    for path in sorted(p for p in out.rglob("*.tif*") if ".zarr" not in str(p)):
        n, err = _tiff_frames(path)
        good += n
        errors += [err] if err else []
    return good, "; ".join(errors)


def crash_check(job: Job, timeout: float) -> dict[str, Any]:
    """Run ``job`` (with ``kill_after``) in a subprocess, then read what it left."""
    out = Path(job.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        json.dumps(asdict(job)),
    ]
    info: dict[str, Any] = {"kill_after": job.kill_after}
    try:
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            return {**info, "status": "timeout"}
        info["returncode"] = proc.returncode
        if proc.returncode != -signal.SIGKILL:
            last = (proc.stderr or "").strip().splitlines()[-1:] or ["?"]
            return {**info, "status": f"not killed (exit {proc.returncode}): {last[0]}"}
        info["status"] = "killed"
        info["files"] = len(output_files(out))
        info["bytes"] = sum(p.stat().st_size for p in output_files(out))
        info["readable"], info["error"] = count_readable(out)
        if job.case.startswith("mmtiffsink"):
            sys.path.insert(0, str(REPO_ROOT))
            import mmtiffsink

            repaired, errors = 0, []
            for path in sorted(out.glob("*.tif")):
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        report = mmtiffsink.repair(path)
                    info.setdefault("repair_frames", 0)
                    info["repair_frames"] += report.frames
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}"[:120])
            repaired, err = count_readable(out)
            info["repaired"] = repaired
            info["repair_error"] = "; ".join(errors + ([err] if err else []))
    finally:
        shutil.rmtree(out, ignore_errors=True)
        Path(job.result_file).unlink(missing_ok=True)
    return info


# --------------------------------------------------------------------------------------------
# parent
# --------------------------------------------------------------------------------------------


def run_case(job: Job, timeout: float) -> Result:
    """Run `job` in a fresh subprocess and return its result."""
    Path(job.out_dir).mkdir(parents=True, exist_ok=True)
    failed = Result(job.case)
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        json.dumps(asdict(job)),
    ]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, check=False
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
        failed.message = f"exit code {proc.returncode}: {lines[-1]}"
        return failed
    data = json.loads(result_file.read_text())
    result_file.unlink()
    return Result(**data)


def _fmt(value: float | None, digits: int) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _crash_cell(case: str, crash: dict[str, Any] | None) -> tuple[str, str]:
    if crash is None:
        return "-", "-"
    if crash.get("status") != "killed":
        return str(crash.get("status")), "-"
    n = crash["kill_after"]
    cell = f"{crash['readable']:,} of {n:,}"
    if crash.get("error"):
        cell += f" ({crash['error'][:60]})"
    repaired = "-"
    if case.startswith("mmtiffsink"):
        repaired = f"{crash.get('repaired', 0):,} of {n:,}"
        if crash.get("repair_error"):
            repaired += f" ({crash['repair_error'][:60]})"
    return cell, repaired


def table(
    done: dict[str, list[Result]], crashes: dict[str, dict[str, Any]], stat: str
) -> str:
    """The markdown table."""
    chosen: dict[str, Result] = {}
    for case, runs in done.items():
        ok = [r for r in runs if r.timed]
        if ok:
            ok.sort(key=lambda r: r.wall_s)
            chosen[case] = ok[0] if stat == "best" else ok[len(ok) // 2]
    ceiling = chosen.get("none")
    lzw = chosen.get("omew-tiff-lzw")
    lines = [
        "| writer | frames/s | vs MDA ceiling | vs OME-TIFF LZW | wall (s) | of which fsync (s) "
        "| file size (MB) | size vs OME-TIFF LZW | peak RSS (MB) | over baseline (MB) "
        "| frames read back after close | SIGKILL: frames readable | after `mmtiffsink.repair` |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    notes = []
    for case in CASES:
        if case not in done:
            continue
        crash_cell, repaired = _crash_cell(case, crashes.get(case))
        r = chosen.get(case)
        if r is None:
            bad = done[case][0]
            lines.append(f"| {LABELS[case]} | {bad.status} |" + " |" * 11)
            notes.append(f"- {LABELS[case]}: {bad.status}: {bad.message}")
            continue
        peak = max(x.peak_rss_mb for x in done[case] if x.timed)
        bad_runs = [x for x in done[case] if x.status == "incomplete"]
        if case == "none":
            back = "-"
        elif r.status == "ok":
            back = f"{r.readable:,}"
        else:
            back = f"**{r.readable:,} of {r.frames:,}**"
        for x in bad_runs:
            notes.append(
                f"- {LABELS[case]}: a timed run's file is incomplete: {x.message}"
            )
        size = "-" if case == "none" else _fmt(r.out_bytes / MB, 1)
        size_ratio = (
            _fmt(r.out_bytes / lzw.out_bytes, 2)
            if lzw is not None and case != "none"
            else "-"
        )
        lines.append(
            f"| {LABELS[case]} | {_fmt(r.frames_per_s, 0)} "
            f"| {_fmt(r.frames_per_s / ceiling.frames_per_s, 2) if ceiling else '-'} "
            f"| {_fmt(r.frames_per_s / lzw.frames_per_s, 2) if lzw else '-'} "
            f"| {_fmt(r.wall_s, 2)} | {_fmt(r.fsync_s, 2)} | {size} | {size_ratio} "
            f"| {_fmt(peak, 0)} | {_fmt(peak - r.base_rss_mb, 0)} | {back} "
            f"| {crash_cell} | {repaired} |"
        )
    return "\n".join(lines + ([""] if notes else []) + notes)


def targets(done: dict[str, list[Result]], stat: str) -> list[str]:
    """The target lines, each PASS, FAIL or n/a."""

    def pick(case: str) -> Result | None:
        ok = sorted((r for r in done.get(case, []) if r.timed), key=lambda r: r.wall_s)
        if not ok:
            return None
        return ok[0] if stat == "best" else ok[len(ok) // 2]

    lines = []
    lzw, unc = pick("omew-tiff-lzw"), pick("omew-tiff-none")
    for case in (
        "mmtiffsink-default",
        "mmtiffsink-zstd",
        "mmtiffsink-zstd1",
        "mmtiffsink-zstd3-pred",
    ):
        r = pick(case)
        text = f"{LABELS[case]}: size <= 0.8x OME-TIFF LZW at >= 1.0x its frames/s"
        if r is None or lzw is None:
            lines.append(f"- n/a: {text}")
            continue
        size, speed = r.out_bytes / lzw.out_bytes, r.frames_per_s / lzw.frames_per_s
        verdict = "PASS" if size <= 0.8 and speed >= 1.0 else "FAIL"
        line = f"- {verdict}: {text}: size {size:.2f}x, frames/s {speed:.2f}x"
        if lzw.status == "incomplete":
            line += f" (the OME-TIFF LZW file is incomplete: {lzw.message})"
        lines.append(line)
    r = pick("mmtiffsink-none")
    text = "mmtiffsink TiffHandler, none: frames/s >= 0.95x OME-TIFF none"
    if r is None or unc is None:
        lines.append(f"- n/a: {text}")
    else:
        speed = r.frames_per_s / unc.frames_per_s
        lines.append(f"- {'PASS' if speed >= 0.95 else 'FAIL'}: {text}: {speed:.2f}x")
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
        help="frames: 2 channels x 10 z x round(N / 20) t",
    )
    parser.add_argument(
        "--size", type=int, default=512, help="camera frame size (square)"
    )
    parser.add_argument("--exposure", type=float, default=0.1, help="exposure (ms)")
    parser.add_argument(
        "--mode",
        default="Color Test Pattern",
        help="DemoCamera Mode (the pixels are replaced anyway; 'Artificial Waves', the demo "
        "config's, costs about 8 ms per 512x512 snap and caps the MDA near 120 frames/s)",
    )
    parser.add_argument(
        "--cases", default=",".join(CASES), help="comma-separated cases"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="timed runs per case, interleaved"
    )
    parser.add_argument("--stat", choices=("best", "median"), default="best")
    parser.add_argument(
        "--kill-after",
        type=int,
        default=None,
        help="SIGKILL check: frames handed over before the kill (default: half; 0: no check)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="directory to write into"
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="also dump the results here"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per case")
    parser.add_argument(
        "--tabulate",
        type=Path,
        default=None,
        help="print the tables of a --json file, run nothing",
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


def render(payload: dict[str, Any], stat: str) -> None:
    """Print the tables of one run (``payload`` as ``--json`` writes it)."""
    a = payload["args"]
    done = {c: [Result(**r) for r in runs] for c, runs in payload["results"].items()}
    crashes = payload["crashes"]
    n_t = a["n_t"]
    frames = len(CHANNELS) * N_Z * n_t
    times = f", {stat} of {a['repeat']} runs" if a["repeat"] > 1 else ""
    print(
        f"### pymmcore-plus MDA, demo adapters: {a['size']}x{a['size']} uint16, "
        f"C={len(CHANNELS)} Z={N_Z} T={n_t} ({frames:,} frames, "
        f"{frames * a['size'] * a['size'] * 2 / MB:,.0f} MB raw), DemoCamera '{a['mode']}' "
        f"(pixels replaced, untimed), exposure {a['exposure']:g} ms{times}\n"
    )
    print(table(done, crashes, stat) + "\n")
    print("Command: `" + payload["command"] + "`\n")
    loads = ", ".join(f"{v:.1f}" for v in payload["loads"])
    print(
        "Machine: "
        + ", ".join(f"{k} {v}" for k, v in payload["machine"].items())
        + f"; load after each case {loads}. Total run time {payload['elapsed_s']:,.0f} s.\n"
    )
    for case, runs in done.items():
        for i, r in enumerate(runs):
            extra = f", {r.detail}" if r.detail else ""
            print(
                f"- {LABELS[case]}, run {i + 1}: {r.status}, {_fmt(r.frames_per_s, 0)} frames/s, "
                f"substitution {r.subst_s:.2f} s (subtracted){extra}"
            )
    for case, crash in crashes.items():
        print(f"- SIGKILL {LABELS[case]}: {crash}")
    print("\nTargets:\n")
    print("\n".join(targets(done, stat)))


def tabulate(path: Path, stat: str) -> int:
    """Print the tables of a ``--json`` file."""
    render(json.loads(path.read_text()), stat)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with ``--child``, one case of it); always exit 0."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.child is not None:
        run_child(Job(**json.loads(args.child)))
        return 0
    if args.tabulate is not None:
        return tabulate(args.tabulate, args.stat)
    started = time.perf_counter()
    load_start = os.getloadavg()
    chosen = [c for c in CASES if c in args.cases.split(",")]
    n_t = max(1, round(args.frames / (len(CHANNELS) * N_Z)))
    frames = len(CHANNELS) * N_Z * n_t
    kill_after = (
        frames // 2 if args.kill_after is None else min(args.kill_after, frames - 1)
    )
    own_out = args.out is None
    out = Path(tempfile.mkdtemp(prefix="bench-mda-")) if own_out else args.out
    out.mkdir(parents=True, exist_ok=True)
    done: dict[str, list[Result]] = {}
    crashes: dict[str, dict[str, Any]] = {}
    loads: list[float] = []

    def job(case: str, tag: str, kill: int = 0) -> Job:
        return Job(
            case=case,
            n_t=n_t,
            size=args.size,
            exposure_ms=args.exposure,
            mode=args.mode,
            out_dir=str(out / f"case-{tag}-{case}"),
            result_file=str(out / f"result-{tag}-{case}.json"),
            kill_after=kill,
        )

    try:
        schedule = [(rep, case) for rep in range(args.repeat) for case in chosen]
        for n, (rep, case) in enumerate(schedule, 1):
            print(
                f"[{n}/{len(schedule)}] {case} {frames:,} frames",
                end="",
                file=sys.stderr,
            )
            r = run_case(job(case, str(rep)), args.timeout)
            loads.append(os.getloadavg()[0])
            shown = f"{r.frames_per_s:,.0f} frames/s" if r.timed else ""
            shown += f" {r.message}" if r.message else ""
            print(f": {shown} (load {loads[-1]:.2f})", file=sys.stderr, flush=True)
            done.setdefault(case, []).append(r)
        if kill_after > 0:
            for case in (c for c in chosen if c != "none"):
                print(
                    f"[kill] {case} after {kill_after:,} frames",
                    end="",
                    file=sys.stderr,
                )
                crashes[case] = crash_check(job(case, "kill", kill_after), args.timeout)
                c = crashes[case]
                print(
                    f": {c.get('status')}, readable {c.get('readable')}",
                    file=sys.stderr,
                )
    finally:
        if own_out:
            shutil.rmtree(out, ignore_errors=True)

    elapsed = time.perf_counter() - started
    info = machine()
    for dist in (
        "pymmcore-plus",
        "pymmcore",
        "mm-test-adapters",
        "ome-writers",
        "tensorstore",
    ):
        info[dist] = _version(dist)
    info["zarr"] = _version("zarr")
    info["load average (1, 5, 15 min)"] = (
        "at start "
        + "/".join(f"{v:.2f}" for v in load_start)
        + ", at end "
        + "/".join(f"{v:.2f}" for v in os.getloadavg())
    )
    command = shlex.join(["python", "benchmarks/bench_mda.py", *argv])
    payload = {
        "command": command,
        "machine": info,
        "elapsed_s": elapsed,
        "args": {
            "size": args.size,
            "mode": args.mode,
            "exposure": args.exposure,
            "repeat": args.repeat,
            "n_t": n_t,
        },
        "loads": loads,
        "results": {c: [asdict(r) for r in runs] for c, runs in done.items()},
        "crashes": crashes,
        "targets": targets(done, args.stat),
    }
    if args.json is not None:
        args.json.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    render(payload, args.stat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
