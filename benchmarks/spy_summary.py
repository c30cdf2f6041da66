"""Summarise a ``py-spy record --threads --format raw`` file: samples by thread and stage.

    python benchmarks/spy_summary.py /tmp/spy.txt

A stage is the innermost frame of a sample whose function name is in `STAGES` (in that
order of precedence), else the leaf function; threads are grouped by name without their
number (``mmtiffsink_0``, ``mmtiffsink_1`` -> ``mmtiffsink``).
"""

from __future__ import annotations

import re
import sys
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
    counts: Counter[tuple[str, str]] = Counter()
    for line in Path(sys.argv[1]).read_text(encoding="utf-8").splitlines():
        stack, _, n = line.rstrip("\n").rpartition(" ")
        parts = stack.split(";")
        thread = re.sub(r"^thread \(\d+\): ?", "", parts[0])
        thread = re.sub(r"_\d+$", "", thread) or "?"
        counts[(thread, stage_of(parts[1:]))] += int(n)
    total = sum(counts.values())
    print(f"{total} samples")
    print("| thread | stage | share of samples |")
    print("|---|---|---:|")
    for (thread, stage), n in counts.most_common(25):
        print(f"| {thread} | {stage} | {n / total:.1%} |")


if __name__ == "__main__":
    main()
