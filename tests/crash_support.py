"""Writers in child processes: start one, wait for its flush, kill it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_child(code: str, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def kill_after_flush(child: subprocess.Popen[str], wait: float) -> str:
    """Wait for the child's first "flushed ..." line, let it write ``wait`` s more, SIGKILL it.

    Returns that line; fails the test with the child's output if it printed anything else.
    """
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line.startswith("flushed"):
        out, err = child.communicate(timeout=30)
        pytest.fail(f"child failed: {line}{out}{err}")
    time.sleep(wait)  # keep writing, then die in the middle of it
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)  # also closes the pipes
    assert child.returncode == -signal.SIGKILL
    return line


KILL_CHILD = """
    import sys, time
    import numpy as np
    from mmtiffsink import IJTiffFile
    from tests.writer_support import coded_frame
    path, compression = sys.argv[1], sys.argv[2]
    tif = IJTiffFile(path, compression=None if compression == "none" else compression,
                     pxsize=0.5, deltaz=1.0, timeinterval=2.0, channel_names=["A", "B"])
    n = 0
    for t in range(10_000):
        for z in (2, 0, 1):  # not plane order
            for c in (1, 0):
                tif.save(coded_frame(c, z, t, (128, 96)), c, z, t, metadata={"n": n})
                n += 1
        if t == 9:
            tif.flush()
            print("flushed", n, flush=True)
        if t > 9:
            time.sleep(0.002)
"""
