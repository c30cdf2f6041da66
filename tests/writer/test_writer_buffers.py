"""Every kind of buffer a camera library hands out may be reused as soon as ``save`` returns.

A camera SDK, a frame grabber or a tensor library gives its frames as plain arrays, views into
a ring buffer, ``memoryview``s, ``bytearray``-backed arrays, objects with
``__array_interface__`` or ``__array__``, memory maps or read-only arrays, and fills the same
memory again with the next frame. Here each kind is saved from one buffer that is overwritten
right after ``save`` returns (with garbage, then the next frame); every frame of the finished
file must hold what the buffer held when ``save`` was called. The frames are random (zstd 19
works on them) and the budget small, so frames wait in the pool's queue while the buffer
changes under them.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from mmtiffsink import IJTiffFile
from mmtiffsink.tiff import _pool

SHAPE = (96, 128)
FRAMES = 16


def frame(t: int) -> np.ndarray:
    return np.random.default_rng(t).integers(0, 60000, SHAPE, dtype=np.uint16)


class ArrayInterface:
    """An SDK buffer that exposes its memory only through ``__array_interface__``."""

    def __init__(self, memory: np.ndarray) -> None:
        self._memory = memory
        self.__array_interface__ = {
            "shape": SHAPE,
            "typestr": "<u2",
            "data": (memory.ctypes.data, False),
            "version": 3,
        }


class ArrayMethod:
    """An SDK buffer whose ``__array__`` returns the array it keeps (no copy)."""

    def __init__(self, memory: np.ndarray) -> None:
        self._memory = memory

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self._memory


Camera = Callable[[Path], tuple[Any, np.ndarray]]
"""Returns (the object given to save, a writable array over the same memory)."""


def plain(_: Path) -> tuple[Any, np.ndarray]:
    buf = np.empty(SHAPE, np.uint16)
    return buf, buf


def contiguous_slice(_: Path) -> tuple[Any, np.ndarray]:
    ring = np.empty((3 * SHAPE[0], SHAPE[1]), np.uint16)  # a ring buffer of three frames
    view = ring[SHAPE[0] : 2 * SHAPE[0]]
    return view, view


def strided_view(_: Path) -> tuple[Any, np.ndarray]:
    wide = np.empty((SHAPE[0], 2 * SHAPE[1]), np.uint16)  # every other column (interleaved)
    view = wide[:, ::2]
    return view, view


def memory_view(_: Path) -> tuple[Any, np.ndarray]:
    buf = np.empty(SHAPE, np.uint16)
    return memoryview(buf), buf


def bytearray_view(_: Path) -> tuple[Any, np.ndarray]:
    raw = bytearray(SHAPE[0] * SHAPE[1] * 2)
    view = memoryview(raw).cast("B").cast("H", SHAPE)
    return view, np.frombuffer(raw, np.uint16).reshape(SHAPE)


def bytearray_array(_: Path) -> tuple[Any, np.ndarray]:
    raw = bytearray(SHAPE[0] * SHAPE[1] * 2)
    arr = np.frombuffer(raw, np.uint16).reshape(SHAPE)
    return arr, arr


def ctypes_array(_: Path) -> tuple[Any, np.ndarray]:
    buf = ((ctypes.c_uint16 * SHAPE[1]) * SHAPE[0])()
    return buf, np.ctypeslib.as_array(buf)


def array_interface(_: Path) -> tuple[Any, np.ndarray]:
    memory = np.empty(SHAPE, np.uint16)
    return ArrayInterface(memory), memory


def array_method(_: Path) -> tuple[Any, np.ndarray]:
    memory = np.empty(SHAPE, np.uint16)
    return ArrayMethod(memory), memory


def memmap(folder: Path) -> tuple[Any, np.ndarray]:
    mm = np.memmap(folder / "camera.bin", np.uint16, mode="w+", shape=SHAPE)
    return mm, mm


def read_only(_: Path) -> tuple[Any, np.ndarray]:
    buf = np.empty(SHAPE, np.uint16)
    view = buf.view()
    view.flags.writeable = False  # the SDK hands out a read-only view of its own buffer
    return view, buf


def big_endian(_: Path) -> tuple[Any, np.ndarray]:
    buf = np.empty(SHAPE, ">u2")  # a cast the writer makes: its own copy
    return buf, buf


CAMERAS: dict[str, Camera] = {
    f.__name__: f
    for f in (
        plain,
        contiguous_slice,
        strided_view,
        memory_view,
        bytearray_view,
        bytearray_array,
        ctypes_array,
        array_interface,
        array_method,
        memmap,
        read_only,
        big_endian,
    )
}


@pytest.fixture
def small_budget(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Room for a few frames in flight: later saves wait, or (keep_up) are stored at once."""
    monkeypatch.setattr(_pool, "_budget", _pool.Budget(3 * 2 * SHAPE[0] * SHAPE[1]))
    yield
    assert _pool.budget().used == 0, "budget bytes leaked"


@pytest.mark.parametrize(
    ("compression", "keep_up"),
    [(("zstd", 19), False), (("zstd", 19), True), (None, False)],
    ids=["queued", "keep_up", "uncompressed"],
)
@pytest.mark.parametrize("camera", list(CAMERAS))
def test_a_reused_buffer_never_changes_a_saved_frame(
    tmp_path: Path, small_budget: None, camera: str, compression: Any, keep_up: bool
) -> None:
    given, memory = CAMERAS[camera](tmp_path)
    path = tmp_path / "reused.tif"
    with IJTiffFile(path, compression=compression, keep_up=keep_up) as tif:
        for t in range(FRAMES):
            memory[...] = frame(t)
            tif.save(given, 0, 0, t)
            memory[...] = 0xABCD  # the camera writes its next frame at once
            memory[...] = frame(t + 1000)
    with tifffile.TiffFile(path) as f:
        assert len(f.pages) == FRAMES
        for t, page in enumerate(f.pages):
            np.testing.assert_array_equal(page.asarray(), frame(t), f"frame {t} ({camera})")


@pytest.mark.parametrize("compression", [("zstd", 1), None], ids=["queued", "uncompressed"])
def test_recycled_copies_hold_each_frame_and_stay_within_their_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_budget: None, compression: Any
) -> None:
    """The writer's copies are recycled (``_pool.Spares``): a copy is reused only after its frame
    has passed, so every frame is exact while copies go round, and the spares never hold more
    than their cap (here two frames' worth)."""
    spares = _pool.Spares(capacity=2 * 2 * SHAPE[0] * SHAPE[1])
    monkeypatch.setattr(_pool, "_spares", spares)
    monkeypatch.setattr(_pool, "SPARE_FROM", 0)  # these frames are small: recycle them too
    buffer = np.empty(SHAPE, np.uint16)
    path = tmp_path / "spares.tif"
    peak = 0
    with IJTiffFile(path, compression=compression) as tif:
        for t in range(4 * FRAMES):
            buffer[...] = frame(t)
            tif.save(buffer, 0, 0, t)
            buffer[...] = 0xABCD
            peak = max(peak, spares.spare_bytes)
    assert peak <= spares.capacity
    assert 0 < spares.reused < 4 * FRAMES, "copies were not reused"
    with tifffile.TiffFile(path) as f:
        for t, page in enumerate(f.pages):
            np.testing.assert_array_equal(page.asarray(), frame(t), f"frame {t}")
