"""Codec table: encode rate on 1 and 2 threads, compression ratio, and which readers open each.

This is a benchmark, not a test: it prints a markdown table and always exits 0.

    python benchmarks/bench_codecs.py                       # 2048x2048, about 1 minute
    python benchmarks/bench_codecs.py --sizes 2048,512,64 --repeat 3
    python benchmarks/bench_codecs.py --readers             # also open a file of each codec
                                                            # in tifffile, Bio-Formats, ImageJ
    python benchmarks/bench_codecs.py --threads 0 --clock cpu   # inline, the thread's CPU time

Frames are the microscopy-like uint16 frames of ``bench_writer.make_pool`` (smooth background,
Gaussian spots, shot noise). Each codec encodes whole frames, as mmtiffsink does, on a
``ThreadPoolExecutor`` of 1 and of 2 threads (imagecodecs releases the GIL), for at least
``--seconds`` per measurement; every (codec, threads) pair is measured ``--repeat`` times,
interleaved, and the best rate is shown. The zstd and deflate rows call the writer's own
``mmtiffsink.tiff.Codec.encode`` (this checkout's), so they measure exactly what the writer
does per frame; "+pred" rows are ``Codec(..., predictor=True)``: TIFF's horizontal-differencing
predictor (``imagecodecs.delta_encode(frame, axis=-1)``, inside the timing) before the codec,
as ``IJTiffFile(..., predictor=True)`` writes it. LZW and PackBits, which mmtiffsink does not
write, call imagecodecs directly.

With ``--readers`` a small file of each codec is written with ``tifffile.imwrite`` (classic
TIFF with ImageJ metadata, 3 planes) and opened in tifffile, Bio-Formats (``tests/readers.py``'s
``bioformats_pixels``) and plain ImageJ 1.x (``imagej_read``); a reader "opens" a file only if
it returns the exact pixels. ``tests/test_codec_readers.py`` pins the same facts as a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
from bench_writer import MB, machine, make_pool
from numpy.typing import NDArray

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # the checkout's writer codec, installed or not
from mmtiffsink.tiff import Codec  # noqa: E402

Encode = Callable[[NDArray[np.uint16]], Any]


@dataclass(frozen=True)
class Case:
    """One codec setting.

    Attributes
    ----------
    name
        Row label.
    encode
        Whole-frame encoder (returns bytes-like).
    tifffile
        ``imwrite`` keyword arguments that write a TIFF with this codec.
    """

    name: str
    encode: Encode
    tifffile: dict[str, Any]


def _pred(encode: Callable[..., Any], **kw: Any) -> Encode:
    def run(frame: NDArray[np.uint16]) -> Any:
        return encode(imagecodecs.delta_encode(frame, axis=-1), **kw)

    return run


def _plain(encode: Callable[..., Any], **kw: Any) -> Encode:
    def run(frame: NDArray[np.uint16]) -> Any:
        return encode(frame, **kw)

    return run


def _copy(frame: NDArray[np.uint16]) -> Any:
    return frame.tobytes()


def _writer(name: str, level: int, *, predictor: bool = False) -> Encode:
    """The writer's own whole-frame encoder (``IJTiffFile`` calls exactly this per frame)."""
    return Codec(name, level, predictor=predictor).encode  # type: ignore[arg-type]


def cases() -> list[Case]:
    """Return the codec settings in table order."""
    return [
        Case("none (a copy)", _copy, {}),
        Case("PackBits", _plain(imagecodecs.packbits_encode), {"compression": "packbits"}),
        Case("LZW", _plain(imagecodecs.lzw_encode), {"compression": "lzw"}),
        Case(
            "LZW+pred",
            _pred(imagecodecs.lzw_encode),
            {"compression": "lzw", "predictor": True},
        ),
        Case(
            "deflate 1",
            _writer("deflate", 1),
            {"compression": "adobe_deflate", "compressionargs": {"level": 1}},
        ),
        Case(
            "deflate 6",
            _writer("deflate", 6),
            {"compression": "adobe_deflate", "compressionargs": {"level": 6}},
        ),
        Case(
            "deflate 1+pred",
            _writer("deflate", 1, predictor=True),
            {"compression": "adobe_deflate", "compressionargs": {"level": 1}, "predictor": True},
        ),
        Case(
            "zstd 1",
            _writer("zstd", 1),
            {"compression": "zstd", "compressionargs": {"level": 1}},
        ),
        Case(
            "zstd 3",
            _writer("zstd", 3),
            {"compression": "zstd", "compressionargs": {"level": 3}},
        ),
        Case(
            "zstd 9",
            _writer("zstd", 9),
            {"compression": "zstd", "compressionargs": {"level": 9}},
        ),
        Case(
            "zstd 1+pred",
            _writer("zstd", 1, predictor=True),
            {"compression": "zstd", "compressionargs": {"level": 1}, "predictor": True},
        ),
        Case(
            "zstd 3+pred",
            _writer("zstd", 3, predictor=True),
            {"compression": "zstd", "compressionargs": {"level": 3}, "predictor": True},
        ),
    ]


def measure(
    encode: Encode, pool: NDArray[np.uint16], threads: int, seconds: float, cpu: bool = False
) -> float:
    """Return MB/s of raw input encoding whole frames on ``threads`` threads.

    Frames are taken round-robin from ``pool``; at most ``2 * threads`` are in flight; the
    clock runs until at least ``seconds`` passed and at least ``4 * threads`` frames are done.
    ``threads=0`` calls the codec inline, without a pool (what one frame costs the codec);
    there ``cpu=True`` counts the thread's CPU time instead of wall time, which other jobs on
    a shared machine disturb much less.
    """
    if threads == 0:  # inline, in the calling thread: the codec's own per-frame cost
        clock = time.thread_time if cpu else time.perf_counter
        encode(pool[0])
        done, start = 0, clock()
        while done < 8 or clock() - start < seconds:
            encode(pool[done % len(pool)])
            done += 1
        return done * pool[0].nbytes / MB / (clock() - start)
    done = 0
    pending: deque[Future[Any]] = deque()
    with ThreadPoolExecutor(threads) as ex:
        encode(pool[0])  # warm up the threads' codec contexts outside the clock
        start = time.perf_counter()
        i = 0
        while True:
            pending.append(ex.submit(encode, pool[i % len(pool)]))
            i += 1
            if len(pending) >= 2 * threads:
                pending.popleft().result()
                done += 1
                if done >= 4 * threads and time.perf_counter() - start >= seconds:
                    break
        while pending:
            pending.popleft().result()
            done += 1
        wall = time.perf_counter() - start
    return done * pool[0].nbytes / MB / wall


def ratio(encode: Encode, pool: NDArray[np.uint16]) -> float:
    """Return raw bytes / encoded bytes over the pool."""
    raw = sum(f.nbytes for f in pool)
    return raw / sum(len(encode(f)) for f in pool)


# --------------------------------------------------------------------------------------------
# readers
# --------------------------------------------------------------------------------------------


def write_case(path: Path, frames: NDArray[np.uint16], case: Case) -> None:
    """Write ``frames`` (T, Y, X) as a classic ImageJ hyperstack TIFF with ``case``'s codec."""
    import tifffile

    tifffile.imwrite(
        path,
        frames,
        imagej=True,
        metadata={"axes": "TYX"},
        photometric="minisblack",
        **case.tifffile,
    )


def reader_verdicts(frames: NDArray[np.uint16], tmp: Path) -> dict[str, dict[str, str]]:
    """Return ``{case: {reader: verdict}}`` with verdicts ``ok``, ``wrong pixels``, ``refused``.

    Needs the Java readers of ``tests/readers.py`` (``bash scripts/test.sh`` installs them);
    a reader that is not installed is reported as ``not installed``.
    """
    import tifffile

    sys.path.insert(0, str(REPO_ROOT))
    from tests import readers

    bf_jar = readers.DEFAULT_BIOFORMATS_JAR
    ij_jar = readers.DEFAULT_IMAGEJ_JAR
    points = [(x, y) for y in (0, 7, 31) for x in (0, 5, 63)]
    out: dict[str, dict[str, str]] = {}
    try:
        for case in cases():
            path = tmp / f"{case.name.replace(' ', '_').replace('(', '').replace(')', '')}.tif"
            write_case(path, frames, case)
            row: dict[str, str] = {}
            try:
                got = tifffile.imread(path)
                row["tifffile"] = "ok" if np.array_equal(got, frames) else "wrong pixels"
            except Exception as exc:
                row["tifffile"] = f"refused ({type(exc).__name__})"
            if bf_jar.exists():
                try:
                    px = readers.bioformats_pixels(path, bf_jar, tmp)
                    good = np.array_equal(px.reshape(frames.shape), frames)
                    row["Bio-Formats"] = "ok" if good else "wrong pixels"
                except readers.ReaderError:
                    row["Bio-Formats"] = "refused"
            else:
                row["Bio-Formats"] = "not installed"
            if ij_jar.exists():
                t = frames.shape[0]
                info = readers.imagej_read(
                    path, [(0, 0, k) for k in range(t)], ij_jar, points=points
                )
                if not info.opened:
                    row["ImageJ 1.x"] = "refused"
                else:
                    want = [tuple(float(frames[k, y, x]) for x, y in points) for k in range(t)]
                    seen = [info.planes[(0, 0, k)].values for k in range(t)]
                    row["ImageJ 1.x"] = "ok" if seen == want else "wrong pixels"
            else:
                row["ImageJ 1.x"] = "not installed"
            out[case.name] = row
            print(f"readers {case.name}: {row}", file=sys.stderr, flush=True)
    finally:
        readers.close_bioformats_servers()
    return out


def reader_frames() -> NDArray[np.uint16]:
    """Three distinct small microscopy-like frames (64x64)."""
    return make_pool(64, 64, 3)


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------


def _thread_head(n: int, cpu: bool = False) -> str:
    if n == 0:
        return "inline MB/s (CPU time)" if cpu else "inline MB/s"
    return f"{n} thread{'s' * (n > 1)} MB/s"


def main(argv: list[str] | None = None) -> int:
    """Run the codec benchmark and print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--sizes", default="2048", help="comma-separated square frame sizes")
    parser.add_argument(
        "--threads", default="1,2", help="comma-separated thread counts (0: inline, no pool)"
    )
    parser.add_argument("--repeat", type=int, default=2, help="interleaved runs; best shown")
    parser.add_argument("--seconds", type=float, default=0.6, help="minimum per measurement")
    parser.add_argument("--pool", type=int, default=4, help="distinct frames per size")
    parser.add_argument("--codecs", default="", help="comma-separated row names (default all)")
    parser.add_argument("--readers", action="store_true", help="also test the readers")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="inline (--threads 0) rates per wall time or per the thread's CPU time",
    )
    args = parser.parse_args(argv)
    cpu = args.clock == "cpu"

    load_start = os.getloadavg()
    threads = [int(t) for t in args.threads.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]
    chosen = cases()
    if args.codecs:
        names = set(args.codecs.split(","))
        chosen = [c for c in chosen if c.name in names]
    verdicts: dict[str, dict[str, str]] = {}
    if args.readers:
        with tempfile.TemporaryDirectory(prefix="bench-codecs-") as tmp:
            verdicts = reader_verdicts(reader_frames(), Path(tmp))

    started = time.perf_counter()
    for size in sizes:
        pool = make_pool(size, size, args.pool)
        rates: dict[tuple[str, int], float] = {}
        for rep in range(args.repeat):
            for case in chosen:
                for n in threads:
                    rate = measure(case.encode, pool, n, args.seconds, cpu)
                    key = (case.name, n)
                    rates[key] = max(rates.get(key, 0.0), rate)
                    if rep == args.repeat - 1:
                        print(f"{size} {case.name} x{n}: {rates[key]:.0f} MB/s", file=sys.stderr)
        ratios = {case.name: ratio(case.encode, pool) for case in chosen}
        print(f"### {size}x{size} uint16, whole frames, best of {args.repeat} interleaved runs\n")
        head = ["codec", *[_thread_head(n, cpu) for n in threads]]
        if len(threads) > 1:
            head.append(f"scaling {threads[-1]}/{next((n for n in threads if n > 0), 1)}")
        head.append("ratio (raw/encoded)")
        if verdicts:
            head += list(next(iter(verdicts.values())).keys())
        print("| " + " | ".join(head) + " |")
        numeric = len(threads) + (len(threads) > 1) + 1
        print("|---|" + "---:|" * numeric + "---|" * (len(head) - 1 - numeric))
        for case in chosen:
            cells = [case.name, *[f"{rates[(case.name, n)]:,.0f}" for n in threads]]
            if len(threads) > 1:
                one = next((n for n in threads if n > 0), threads[0])
                scale = rates[(case.name, threads[-1])] / rates[(case.name, one)]
                cells.append(f"{scale:.2f}")
            cells.append(f"{ratios[case.name]:.2f}")
            cells += list(verdicts.get(case.name, {}).values())
            print("| " + " | ".join(cells) + " |")
        print()
    info = machine()
    load_end = os.getloadavg()
    print(f"Command: `python benchmarks/bench_codecs.py {' '.join(argv or sys.argv[1:])}`\n")
    print(
        "Machine: "
        + ", ".join(f"{k} {v}" for k, v in info.items() if k not in ("tiffwrite", "ndstorage"))
        + f"; load average (1, 5, 15 min) at start {'/'.join(f'{x:.2f}' for x in load_start)}"
        + f", at end {'/'.join(f'{x:.2f}' for x in load_end)}"
        + f". Timing {time.perf_counter() - started:,.0f} s.\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
