"""A small frame's per-frame work keeps the GIL.

A call that releases the GIL for a microsecond of work (numpy copies arrays of over 500 items
without it; ``zlib.crc32`` hashes over 5 KiB without it) then waits to take it back behind the
writer's other threads: with a saving thread, a writer thread and two pool threads, each such
release cost a context switch, and a 64x64 stream ran at 0.6 of the codec alone instead of
0.75 (docs/performance.md). The copy ``save`` makes of a small frame and the dedup key of a
small encoded frame therefore keep the GIL; frames from ``_pool.SPARE_FROM`` (copies) or
64 KiB (keys) release it, where the work is worth a switch.

How it is seen: another thread that only runs when the GIL is released (the switch interval is
set far beyond the test, so the interpreter never forces a switch) counts its steps while this
one calls the function. A function that keeps the GIL lets it make none, always; one that
releases it lets it in now and then, so each check repeats the calls in several rounds.
"""

from __future__ import annotations

import sys
import threading
import time
import zlib
from collections.abc import Callable

import numpy as np
import pytest

from mmtiffsink.tiff import _pool
from mmtiffsink.tiff._appender import data_key


def steps_of_another_thread(call: Callable[[], object], calls: int = 2000, rounds: int = 10) -> int:
    """Steps a thread that runs only when the GIL is released makes while ``call`` runs."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(60.0)  # never forced: only a release lets the other thread run
    count = 0
    stop = False
    started = threading.Event()

    def other() -> None:
        nonlocal count
        started.set()
        while not stop:
            count += 1
            time.sleep(0)  # gives the GIL back at once

    thread = threading.Thread(target=other)
    try:
        thread.start()
        started.wait()
        steps = 0
        for _ in range(rounds):
            before = count
            for _ in range(calls):
                call()
            steps += count - before
    finally:
        stop = True
        sys.setswitchinterval(old)
        thread.join()
    return steps


def test_the_probe_sees_a_release() -> None:
    """The check can fail: numpy's copy of a 64x64 frame releases the GIL, and is seen to."""
    frame = np.zeros((64, 64), np.uint16)
    assert steps_of_another_thread(lambda: np.array(frame, copy=True)) > 0


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [((64, 64), np.uint16), ((32, 48, 3), np.uint8), ((255, 256), np.uint16)],
    ids=["64x64", "rgb", "just-below-spare-from"],
)
def test_the_copy_of_a_small_frame_keeps_the_gil(shape: tuple[int, ...], dtype: type) -> None:
    frame = np.arange(np.prod(shape), dtype=dtype).reshape(shape)
    assert frame.nbytes < _pool.SPARE_FROM
    spares = _pool.Spares()
    copy = spares.copy(frame)
    np.testing.assert_array_equal(copy, frame)
    assert copy.flags.c_contiguous
    assert not np.shares_memory(copy, frame)
    strided = np.arange(2 * frame.size, dtype=dtype)[::2].reshape(shape)  # not contiguous
    np.testing.assert_array_equal(spares.copy(strided), strided)
    assert steps_of_another_thread(lambda: spares.copy(frame), calls=500) == 0


@pytest.mark.parametrize("size", [0, 100, 5 * 1024, 5 * 1024 + 1, 8192, 30_001, 1 << 16])
def test_the_dedup_key_of_a_small_frame_is_its_crc_and_keeps_the_gil(size: int) -> None:
    data = np.random.default_rng(size).integers(0, 256, size, np.uint8).tobytes()
    assert data_key(data) == size << 32 | zlib.crc32(data)
    assert data_key(memoryview(data)) == data_key(data)
    assert steps_of_another_thread(lambda: data_key(data), calls=200) == 0
