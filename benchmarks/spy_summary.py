"""Summarise a ``py-spy record --threads --format raw`` file: samples by thread and stage.

    python benchmarks/spy_summary.py /tmp/spy.txt
    python benchmarks/spy_summary.py /tmp/spy.txt --rate 500 --frames 20000

With ``--rate`` (py-spy's ``-r``) and ``--frames`` (the frames written) each row also gives
µs per frame; with ``--gil`` samples (only the thread holding the GIL is sampled) that is the
GIL-held time per frame, the serial part of a writer on CPython. Only the writer's part of
the run counts (stacks through ``run_writer`` of ``profile_writer.py``, and threads named
``mmtiffsink*``), not the script's stage measurements or imports.

A stage is the innermost frame of a sample whose function name is in `STAGES` (in that
order of precedence), else the leaf function; threads are grouped by name without their
number (``mmtiffsink_0``, ``mmtiffsink_1`` -> ``mmtiffsink``).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

#: (label, substring of a frame) from the most to the least specific
STAGES = (
    ("codec encode", "Codec.encode"),
    ("CRC-32 key", "data_key"),
    ("pwrite/pwritev", "_io.py"),
    ("append: IFD and tags (Python)", "Appender.append"),
    ("writer thread (ordering, hand-over)", "FileWriter."),
    ("budget wait", "Budget.acquire"),
    ("frame copy (as_frame)", "as_frame"),
    ("save: checks, tags, locks", "IJTiffFile.save"),
    ("pool submit", "ThreadPoolExecutor.submit"),
    ("source (bench frames)", "iter_frames"),
    ("pool idle (queue get)", "_worker"),
)


def stage_of(frames: list[str]) -> str:
    """Return the label of the first stage any frame of the stack matches."""
    for label, key in STAGES:
        if any(key in f for f in frames):
            return label
    return frames[-1].split(" (")[0] if frames else "?"


def main() -> None:
    """Print the table of samples by thread group and stage."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw", type=Path, help="py-spy's --format raw output")
    parser.add_argument("--rate", type=float, default=None, help="py-spy's sampling rate (-r)")
    parser.add_argument("--frames", type=int, default=None, help="frames the run wrote")
    parser.add_argument("--rows", type=int, default=25, help="rows to print")
    args = parser.parse_args()
    per_frame = args.rate is not None and args.frames is not None
    counts: Counter[tuple[str, str]] = Counter()
    threads: Counter[str] = Counter()
    for line in args.raw.read_text(encoding="utf-8").splitlines():
        stack, _, n = line.rstrip("\n").rpartition(" ")
        parts = stack.split(";")
        thread = re.sub(r"^thread \(\d+\): ?", "", parts[0])
        thread = re.sub(r"_\d+$", "", thread) or "?"
        if per_frame and not (
            thread.startswith("mmtiffsink") or any("run_writer" in f for f in parts)
        ):
            continue
        counts[(thread, stage_of(parts[1:]))] += int(n)
        threads[thread] += int(n)
    total = sum(counts.values())
    print(f"{total} samples")
    if per_frame:
        us = 1e6 / (args.rate * args.frames)  # µs per frame of one sample
        print("| thread | µs per frame |")
        print("|---|---:|")
        for thread, n in threads.most_common():
            print(f"| {thread} | {n * us:.1f} |")
        print(f"| all | {total * us:.1f} |")
        print()
    print("| thread | stage | share of samples |" + (" µs per frame |" if per_frame else ""))
    print("|---|---|---:|" + ("---:|" if per_frame else ""))
    for (thread, stage), n in counts.most_common(args.rows):
        extra = f" {n * us:.1f} |" if per_frame else ""
        print(f"| {thread} | {stage} | {n / total:.1%} |{extra}")


if __name__ == "__main__":
    main()
