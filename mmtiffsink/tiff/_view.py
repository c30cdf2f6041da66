"""A hyperstack file as a lazy array: read back while it is written, or after.

:class:`Hyperstack` is what every view shares: ``shape`` (T, Z, C, Y, X), with a trailing S
for RGB files; numpy-style indexing that decodes only the planes asked for (identical frames
once: a small LRU keyed by where their data lies); zeros for planes not in the file and
``written`` to tell them apart; calibration; :meth:`~Hyperstack.refresh`;
:meth:`~Hyperstack.to_dask`; and a ``coords_changed`` signal (callbacks without arguments, as
ome-writers' ``StreamView`` and pymmcore-plus's ``SinkView`` users connect them).

:class:`OwnFile` reads a file of this writer, finished or growing, from the (c, z, t) each IFD
carries (tag 65421) and the settings tag (65422). A growing file is never corrupt: a refresh
walks the chain on from the last IFD it knew, and a link past the end of the file (after the
size is read again) only ends the walk until the next refresh. A finished file's header
points at its final chain; a refresh that finds the header changed walks that chain afresh.
``IJTiffFile.view()`` is an :class:`OwnFile` that the writer marks stale each time a frame is
linked (see :meth:`OwnFile.frame_linked`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, final

import numpy as np

from mmtiffsink._closing import ClosesAtBlockEnd

from ..errors import ConfigError, DatasetError
from ..limits import MAX_PLANES
from ._codecs import Codec
from ._colors import parse_color
from ._io import FileIO
from .format import BLANK_TAG, PLANE_TAG, SETTINGS_TAG, Ifd, IfdWalk

__all__ = ["Following", "Hyperstack", "OwnFile", "Signal", "is_own_file"]

_log = logging.getLogger(__name__)

_MAX_SETTINGS = 1 << 20  # bytes of the settings JSON parsed
_MAX_SIDE = 1 << 20  # pixels of a frame's side
_MAX_FRAME_BYTES = 1 << 32  # bytes of one decoded frame
_CACHE_BYTES = 64 << 20  # decoded frames kept (identical frames are decoded once)
_CACHE_PLANES = 64
_MAX_IFDS = 4 * MAX_PLANES  # IFDs of one chain
_SAMPLE_KINDS = {1: "u", 2: "i", 3: "f"}
_DIMS = ("T", "Z", "C", "Y", "X")


@final
class Signal:
    """Callbacks without arguments: ``connect``, ``disconnect``, ``emit``.

    The shape of ome-writers' ``StreamView.coords_changed``, which pymmcore-gui connects to
    refresh its ndv viewer. Callbacks run in the thread that emits: for a live view, the
    writer's thread that linked the frame; keep them short (a GUI posts to its own thread).
    A callback that raises is logged and never reaches the writer.
    """

    __slots__ = ("_slots",)

    def __init__(self) -> None:
        self._slots: list[Callable[[], Any]] = []

    def connect(self, callback: Callable[[], Any]) -> Callable[[], Any]:
        """Call ``callback()`` on every emit; returns it (usable as a decorator)."""
        self._slots.append(callback)
        return callback

    def disconnect(self, callback: Callable[[], Any]) -> None:
        """Stop calling ``callback`` (a no-op when it is not connected)."""
        if callback in self._slots:
            self._slots.remove(callback)

    def emit(self) -> None:
        """Call every callback; one that raises is logged, the others still run."""
        for callback in list(self._slots):
            try:
                callback()
            except Exception:
                _log.exception("mmtiffsink: a view callback raised")


class _LRU:
    """Decoded frames by where their data lies, bounded in count and bytes."""

    def __init__(self) -> None:
        self._data: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._bytes = 0

    def get(self, key: Hashable) -> np.ndarray | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: Hashable, value: np.ndarray) -> None:
        if value.nbytes > _CACHE_BYTES or key in self._data:
            return
        value.flags.writeable = False
        self._data[key] = value
        self._bytes += value.nbytes
        while len(self._data) > _CACHE_PLANES or self._bytes > _CACHE_BYTES:
            _, old = self._data.popitem(last=False)
            self._bytes -= old.nbytes

    def clear(self) -> None:
        self._data.clear()
        self._bytes = 0


def _axis_indices(key: Any, size: int, axis: str) -> tuple[list[int], bool]:
    """The indices an index of one axis selects, and whether the axis is kept."""
    if isinstance(key, slice):
        return list(range(*key.indices(size))), True
    if isinstance(key, (bool, np.bool_)):
        msg = f"boolean index on axis {axis} is not supported"
        raise IndexError(msg)
    if isinstance(key, (int, np.integer)):
        i = int(key)
        if not -size <= i < size:
            msg = f"index {i} is out of bounds for axis {axis} with size {size}"
            raise IndexError(msg)
        return [i % size], False
    try:
        values = np.asarray(key)
    except (TypeError, ValueError):
        values = np.asarray([])
    if values.ndim != 1 or values.dtype.kind not in "iu":
        msg = f"axis {axis} takes an int, a slice or a list of ints, not {key!r}"
        raise IndexError(msg)
    out = []
    for v in values.tolist():
        if not -size <= v < size:
            msg = f"index {v} is out of bounds for axis {axis} with size {size}"
            raise IndexError(msg)
        out.append(v % size)
    return out, True


class Hyperstack(ClosesAtBlockEnd):
    """A hyperstack file as a lazy, read-only array of shape (T, Z, C, Y, X) (plus S for RGB).

    Indexing is numpy's (ints, negative ints, slices, lists of ints, Ellipsis):
    ``h[t, z, c]`` is a plane, ``h[t]`` a (Z, C, Y, X) stack. Only the planes asked for are
    read; a plane not (yet) in the file reads as zeros (:attr:`written` tells them apart).
    Use it as a context manager, or call :meth:`close`.

    Notes
    -----
    Safe to use from several threads. The shape is the file's as last read: :meth:`refresh`
    takes in frames written since (a live view of a writer in this process refreshes itself).

    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._cache = _LRU()
        self._closed = False
        self.coords_changed = Signal()
        """Emitted (no arguments) when frames were found by a refresh, or linked by the
        writer of a live view."""
        self._sizes: tuple[int, int, int] = (0, 0, 0)  # T, Z, C
        self._frame: tuple[int, ...] = (0, 0)  # Y, X or Y, X, S
        self._dtype: np.dtype[Any] = np.dtype("uint8")
        self._written = np.zeros((0, 0, 0), dtype=bool)
        self._channel_names: list[str] = []
        self._colors: list[tuple[int, int, int]] | None = None
        self._pixel_size_um: float | None = None
        self._z_step_um: float | None = None
        self._interval_s: float | None = None
        self._finished = False

    # ------------------------------------------------------------ what subclasses give
    def _load(self) -> bool:
        """Read what the file holds now; True when anything changed."""
        raise NotImplementedError

    def _where(self, t: int, z: int, c: int) -> Hashable | None:
        """Where plane (t, z, c) lies in the file (equal for identical frames); None: absent."""
        raise NotImplementedError

    def _decode(self, where: Hashable) -> np.ndarray:
        """Read and decode the frame at ``where`` (shape :attr:`frame_shape`)."""
        raise NotImplementedError

    def _release(self) -> None:
        """Close what the subclass holds."""

    def _sync(self) -> None:
        """Hook for live views: bring the state up to date before it is used."""

    # ------------------------------------------------------------ shape and metadata
    def _state(self) -> None:
        if self._closed:
            msg = f"the view of {self.path} is closed"
            raise ValueError(msg)
        self._sync()

    @property
    def shape(self) -> tuple[int, ...]:
        """(T, Z, C, Y, X), or (T, Z, C, Y, X, S) for RGB files."""
        with self._lock:
            self._state()
            return (*self._sizes, *self._frame)

    @property
    def dims(self) -> tuple[str, ...]:
        """The axis names: ``("T", "Z", "C", "Y", "X")`` (plus ``"S"`` for RGB)."""
        return _DIMS + (("S",) if len(self._frame) == 3 else ())

    @property
    def coords(self) -> dict[str, range]:
        """Axis name -> the range of its indices (xarray's ``coords``, as ``StreamView``)."""
        return {d: range(n) for d, n in zip(self.dims, self.shape, strict=True)}

    @property
    def ndim(self) -> int:
        """5, or 6 for RGB files."""
        return len(self.dims)

    @property
    def dtype(self) -> np.dtype[Any]:
        """The pixel type."""
        return self._dtype

    @property
    def frame_shape(self) -> tuple[int, ...]:
        """(Y, X) or (Y, X, S)."""
        return self._frame

    @property
    def written(self) -> np.ndarray:
        """A (T, Z, C) boolean array: True where the file holds the plane's frame."""
        with self._lock:
            self._state()
            written: np.ndarray = self._written.copy()
            return written

    def is_written(self, t: int, z: int, c: int) -> bool:
        """Whether the file holds plane (t, z, c) (negative indices count from the end)."""
        with self._lock:
            self._state()
            index = tuple(
                _axis_indices(v, n, a)[0][0]
                for v, n, a in zip((t, z, c), self._sizes, "TZC", strict=True)
            )
            return bool(self._written[index])

    @property
    def finished(self) -> bool:
        """False while the file is written (or when its writer was killed)."""
        with self._lock:
            self._state()
            return self._finished

    @property
    def channel_names(self) -> list[str]:
        """One name per channel (``C<i>`` where the file names none)."""
        with self._lock:
            self._state()
            names = list(self._channel_names[: self._sizes[2]])
            return names + [f"C{i}" for i in range(len(names), self._sizes[2])]

    @property
    def colors(self) -> list[tuple[int, int, int]] | None:
        """One (r, g, b) colour (0-255) per channel, or None where the file gives none."""
        with self._lock:
            self._state()
            return None if self._colors is None else list(self._colors)

    @property
    def pixel_size_um(self) -> float | None:
        """Pixel size in µm, or None."""
        with self._lock:
            self._state()
            return self._pixel_size_um

    @property
    def z_step_um(self) -> float | None:
        """Z step in µm, or None."""
        with self._lock:
            self._state()
            return self._z_step_um

    @property
    def interval_s(self) -> float | None:
        """Time between time points in s, or None."""
        with self._lock:
            self._state()
            return self._interval_s

    # ------------------------------------------------------------ reading
    def refresh(self) -> bool:
        """Take in the frames written since the last read; True when something changed.

        Emits :attr:`coords_changed` when it did.
        """
        with self._lock:
            if self._closed:
                msg = f"the view of {self.path} is closed"
                raise ValueError(msg)
            changed = self._load()
        if changed:
            self.coords_changed.emit()
        return changed

    def _plane(self, t: int, z: int, c: int) -> np.ndarray | None:
        """Plane (t, z, c) decoded (cached, read-only), or None when it is not in the file."""
        where = self._where(t, z, c)
        if where is None:
            return None
        frame = self._cache.get(where)
        if frame is None:
            frame = self._decode(where)
            self._cache.put(where, frame)
        return frame

    def __getitem__(self, key: Any) -> np.ndarray:
        """Numpy-style indexing over (T, Z, C, Y, X[, S]); decodes only the planes selected."""
        keys = key if isinstance(key, tuple) else (key,)
        if any(k is None for k in keys):
            msg = "np.newaxis is not supported by a hyperstack view"
            raise IndexError(msg)
        if sum(k is Ellipsis for k in keys) > 1:
            msg = "an index can only have a single ellipsis ('...')"
            raise IndexError(msg)
        with self._lock:
            self._state()
            ndim = 3 + len(self._frame)
            if Ellipsis in [k for k in keys if not isinstance(k, np.ndarray)]:
                at = next(i for i, k in enumerate(keys) if k is Ellipsis)
                fill = (slice(None),) * (ndim - len(keys) + 1)
                keys = keys[:at] + fill + keys[at + 1 :]
            if len(keys) > ndim:
                msg = f"too many indices: the view is {ndim}-dimensional, {len(keys)} were given"
                raise IndexError(msg)
            keys = keys + (slice(None),) * (ndim - len(keys))
            picked = [
                _axis_indices(k, n, a) for k, n, a in zip(keys[:3], self._sizes, "TZC", strict=True)
            ]
            rest = keys[3:]
            template = np.broadcast_to(np.zeros((), dtype=self._dtype), self._frame)
            sub_shape = template[rest].shape
            (ts, keep_t), (zs, keep_z), (cs, keep_c) = picked
            out = np.zeros((len(ts), len(zs), len(cs), *sub_shape), dtype=self._dtype)
            for i, t in enumerate(ts):
                for j, z in enumerate(zs):
                    for k, c in enumerate(cs):
                        frame = self._plane(t, z, c)
                        if frame is not None:
                            out[i, j, k] = frame[rest]
            index = tuple(slice(None) if kept else 0 for kept in (keep_t, keep_z, keep_c))
            result: np.ndarray = out[index]  # a view of a new array: the caller's own
            return result

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if copy is False:
            msg = "a hyperstack view cannot be turned into an array without a copy"
            raise ValueError(msg)
        data = self[...]
        return data if dtype is None else data.astype(dtype)

    def __len__(self) -> int:
        return self.shape[0]

    def __iter__(self) -> Iterator[np.ndarray]:
        for t in range(len(self)):
            yield self[t]

    def to_dask(self) -> Any:
        """A dask array of the current shape, one chunk per plane, read when computed.

        Planes are read when the chunks are computed (zeros for planes still missing then).
        """
        import dask.array as da
        from dask.base import tokenize

        with self._lock:
            self._state()
            sizes, frame, dtype = self._sizes, self._frame, self._dtype
        name = "mmtiffsink-" + tokenize(str(self.path), sizes, frame, id(self))
        graph: dict[tuple[Any, ...], Any] = {}
        zeros = (0,) * len(frame)
        for t in range(sizes[0]):
            for z in range(sizes[1]):
                for c in range(sizes[2]):
                    block = (name, t, z, c, *zeros)
                    graph[block] = (self._block, t, z, c)
        chunks = ((1,) * sizes[0], (1,) * sizes[1], (1,) * sizes[2], *((n,) for n in frame))
        return da.Array(graph, name, chunks, dtype=dtype)  # type: ignore[no-untyped-call]

    def _block(self, t: int, z: int, c: int) -> np.ndarray:
        with self._lock:
            self._state()
            frame = self._plane(t, z, c) if self._in_bounds(t, z, c) else None
            if frame is None:
                return np.zeros((1, 1, 1, *self._frame), dtype=self._dtype)
            return np.array(frame)[None, None, None]

    def _in_bounds(self, t: int, z: int, c: int) -> bool:
        return all(0 <= v < n for v, n in zip((t, z, c), self._sizes, strict=True))

    # ------------------------------------------------------------ life
    def close(self) -> None:
        """Release the file (idempotent); the view can no longer be read."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._cache.clear()
            self._release()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed


    def __repr__(self) -> str:
        state = "closed" if self._closed else "finished" if self._finished else "being written"
        sizes = (*self._sizes, *self._frame)
        dims = " ".join(f"{d}={n}" for d, n in zip(self.dims, sizes, strict=True))
        return f"<{type(self).__name__} {str(self.path)!r} {dims} {self._dtype} {state}>"


# ---------------------------------------------------------------------- our own files
@final
class _At:
    """A :class:`FileIO` as the seek and read handle :class:`IfdWalk` reads through."""

    __slots__ = ("_io", "_pos")

    def __init__(self, io: FileIO) -> None:
        self._io, self._pos = io, 0

    def seek(self, offset: int, /) -> int:
        self._pos = offset
        return offset

    def read(self, size: int, /) -> bytes:
        data = self._io.read(self._pos, size)
        self._pos += len(data)
        return data


def _ints(walk: IfdWalk, ifd: Ifd, code: int) -> tuple[int, ...] | None:
    """The values of an integer tag, or None when absent, of another type or unreadable."""
    entry = ifd.entries.get(code)
    return None if entry is None else walk.ints(entry)


def _first_int(walk: IfdWalk, ifd: Ifd, code: int, default: int) -> int:
    values = _ints(walk, ifd, code)
    return values[0] if values else default


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if number > 0 and number != float("inf") else None


@dataclass
class _Settings:
    """What a view takes from the writer's settings JSON (tag 65422)."""

    shape: tuple[int, int, int] | None = None  # C, Z, T declared
    names: list[str] | None = None
    colors: list[tuple[int, int, int]] | None = None
    pixel: float | None = None
    z_step: float | None = None
    interval: float | None = None

    @classmethod
    def parse(cls, raw: bytes) -> _Settings:
        try:
            data = json.loads(raw[:_MAX_SETTINGS].rstrip(b"\0").decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return cls()
        if not isinstance(data, dict):
            return cls()
        out = cls(
            pixel=_number(data.get("pxsize")),
            z_step=_number(data.get("deltaz")),
            interval=_number(data.get("timeinterval")),
        )
        shape = data.get("shape")
        if (
            isinstance(shape, list)
            and len(shape) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape)
            and shape[0] * shape[1] * shape[2] <= MAX_PLANES
        ):
            out.shape = (shape[0], shape[1], shape[2])
        names = data.get("channel_names")
        if isinstance(names, list):
            out.names = [str(n) for n in names[:MAX_PLANES]]
        colors = data.get("colors")
        if isinstance(colors, list):
            try:
                out.colors = [parse_color(c) for c in colors[:MAX_PLANES]]
            except (ConfigError, TypeError, ValueError):
                out.colors = None
        return out


def is_own_file(path: Path) -> bool:
    """Whether ``path`` is this writer's: little-endian, settings tag in the first IFD.

    A header whose chain is still empty is a file whose writer has not linked a frame yet;
    an empty file (or the start of our header) one whose writer has not written its header.

    Raises
    ------
    DatasetError
        The file is missing or cannot be read.

    """
    try:
        io = FileIO(path, "read")
    except FileNotFoundError:
        msg = f"{path}: no such file"
        raise DatasetError(msg) from None
    except OSError as exc:
        msg = f"{path}: cannot read it ({exc.strerror or exc})"
        raise DatasetError(msg) from None
    try:
        head = io.read(0, 16)
        size = io.size()  # after the header: the first IFD it links is wholly in the file
        if len(head) < 8 and (b"II*\0"[: len(head)] == head or b"II+\0"[: len(head)] == head):
            return True  # just created: its writer has not written the header yet
        if head[:4] not in (b"II*\0", b"II+\0"):
            return False
        bigtiff = head[2] == 43
        if bigtiff and len(head) < 16:
            return False
        (first,) = struct.unpack_from("<Q" if bigtiff else "<I", head, 8 if bigtiff else 4)
        if first == 0:
            return True
        ifd = next(iter(IfdWalk(_At(io), size, first=first)), None)
        return ifd is not None and SETTINGS_TAG in ifd.entries
    finally:
        io.close()


@final
class OwnFile(Hyperstack):
    """A file of this writer, finished or being written, read from its IFDs' plane tags.

    The file is open only while it is read. Another file put at the path (deleted and written
    again) is noticed by its device and inode, or by the IFD last read being gone or changed,
    and read from its header at the next refresh (a plane not yet read raises
    :class:`DatasetError` until then); a new file of exactly the same layout written in place
    can only be told apart by opening it again.

    Parameters
    ----------
    path
        The file.
    series
        The series (an OME Image of a file of several), from 0.

    Raises
    ------
    DatasetError
        Missing, unreadable, not a file of this writer, or damaged (an IFD chain that loops,
        counts no writer makes). A file without any frame yet (no IFD, or not even a header)
        opens with shape (0, 0, 0, 0, 0).
    ConfigError
        ``series`` is not an integer from 0.

    """

    def __init__(self, path: str | os.PathLike[str], series: int = 0) -> None:
        super().__init__(path)
        if isinstance(series, bool) or not isinstance(series, int) or series < 0:
            msg = f"series is an integer from 0, got {series!r}"
            raise ConfigError(msg)
        self._series = series
        # the file is open only while it is read (a refresh, a plane): a view never holds a
        # descriptor another process (or Windows' delete and rename) could trip over
        self._io: FileIO | None = None
        self._identity: tuple[int, int] | None = None  # (device, inode) as last opened
        self._bigtiff = False
        self._head = -1  # the header's first-IFD pointer as last read
        self._last: Ifd | None = None  # the last IFD of the chain walked
        self._walked = 0
        self._settings_at: tuple[int, bytes] | None = None
        self._settings = _Settings()
        self._codec: Codec | None = None
        self._where_of: dict[tuple[int, ...], tuple[int, ...]] = {}  # raw key -> strips
        self._blank: set[tuple[int, ...]] = set()  # planes filled at close (BLANK_TAG)
        self._low = (0, 0, 0)  # C, Z, T of index 0
        self._stale = False
        self._live = False
        try:
            self._load()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ live views
    def frame_linked(self, key: tuple[int, ...]) -> None:
        """The writer linked the frame of ``key`` into the file (called in its thread).

        Makes this a live view: it reads the new IFDs at its next use (and notices the
        writer's switch to the finished chain at close); emits :attr:`coords_changed`.
        Never raises.
        """
        self._live = True
        self._stale = True
        self.coords_changed.emit()

    def follow_writer(self) -> None:
        """Make this a live view of a writer in this process (see :meth:`frame_linked`)."""
        self._live = True

    def _sync(self) -> None:
        if self._live and not self._stale and not self._finished:
            # closing the file links no frame: the header's switch to the final chain tells
            with self._opened():
                head = self._read(0, 16)
            fmt, at = ("<Q", 8) if self._bigtiff else ("<I", 4)
            if len(head) >= at + struct.calcsize(fmt):
                self._stale = struct.unpack_from(fmt, head, at)[0] != self._head
        if self._stale:
            self._stale = False
            self._load()

    # ------------------------------------------------------------ reading the file
    @contextlib.contextmanager
    def _opened(self) -> Iterator[FileIO]:
        """The file, open for the block; a file replaced since it was last read starts afresh."""
        if self._io is not None:  # nested in a read that holds it
            yield self._io
            return
        try:
            io = FileIO(self.path, "read")
            stat = os.stat(self.path)
        except OSError as exc:
            msg = f"{self.path}: cannot read it ({exc.strerror or exc})"
            raise DatasetError(msg) from None
        try:
            identity = (stat.st_dev, stat.st_ino)
            if self._identity is not None and identity != self._identity:
                self._head = -1  # another file at this path: walk it from its header
            self._identity = identity
            self._io = io
            yield io
        finally:
            self._io = None
            io.close()

    def _replaced(self) -> bool:
        """Whether the open file is not the one last read.

        Another inode, or the IFD last read gone or other: the writer never changes a linked
        IFD but for its next-pointer.
        """
        last = self._last
        if self._head == -1:
            return True
        if last is None:
            return False
        again = next(iter(self._walker(last.offset)), None)
        return again is None or again.entries != last.entries

    def _read(self, offset: int, size: int) -> bytes:
        assert self._io is not None
        return self._io.read(offset, size)

    def _size(self) -> int:
        assert self._io is not None
        return self._io.size()

    def _load(self) -> bool:
        with self._opened():
            return self._walk()

    def _walker(self, first: int) -> IfdWalk:
        """A walk of the open file from the IFD at ``first``, its size read again as it grows."""
        assert self._io is not None
        return IfdWalk(
            _At(self._io), self._size(), grow=self._size, max_ifds=_MAX_IFDS + 1, first=first
        )

    def _walk(self) -> bool:
        header = self._read(0, 16)  # before the walk takes the size: what it links is in it
        if len(header) < 8 or header[:4] not in (b"II*\0", b"II+\0"):
            if len(header) < 8 and header in (b"II*\0"[: len(header)], b"II+\0"[: len(header)]):
                return False  # just created: its writer has not written the header yet
            msg = f"{self.path}: not a little-endian TIFF written by mmtiffsink"
            raise DatasetError(msg)
        self._bigtiff = header[2] == 43
        if self._bigtiff and len(header) < 16:
            return False
        fmt, at = ("<Q", 8) if self._bigtiff else ("<I", 4)
        (first,) = struct.unpack_from(fmt, header, at)
        last = self._last if first == self._head else None
        walk = self._walker(first if last is None else last.offset)
        ifds = iter(walk)
        if last is not None:  # walk on from the IFD last read: read again, as it was
            again = next(ifds, None)
            if again is None or again.entries != last.entries:
                self._head = -1  # the IFD last read is gone or other: another file at the path
        changed = False
        if first != self._head:  # a new file, or the writer switched to the final chain
            self._head, self._last, self._walked = first, None, 0
            self._where_of, self._codec, self._settings_at = {}, None, None
            self._blank = set()
            self._cache.clear()
            changed = True
            if last is not None:  # not from the IFD last read after all: from the header's
                walk = self._walker(first)
                ifds = iter(walk)
        smallest = 36 if self._bigtiff else 18  # bytes of an IFD of one entry
        for ifd in ifds:  # up to a link past the end: walked on from there at the next refresh
            self._walked += 1
            if self._walked > min(walk.size // smallest, _MAX_IFDS):  # size as last read
                msg = f"{self.path}: more IFDs in its chain than the file can hold"
                raise DatasetError(msg)
            self._take(walk, ifd)
            self._last = ifd
            changed = True
        if walk.stop == "corrupt":  # a chain that loops, counts no writer makes
            msg = f"{self.path}: {walk.problem}"
            raise DatasetError(msg)
        if changed:
            self._layout_axes()
        return changed

    def _take(self, walk: IfdWalk, ifd: Ifd) -> None:
        """Record one IFD: its plane and strips; the frame layout from the first."""
        if self._codec is None:
            self._first_ifd(walk, ifd)
        settings = ifd.entries.get(SETTINGS_TAG)
        if settings is not None and (self._walked == 1 or not self._finished):
            where = (settings.count, settings.field)
            if where != self._settings_at:
                self._settings_at = where
                found = walk.value(settings)
                if found:
                    self._settings = _Settings.parse(found)
        key = _ints(walk, ifd, PLANE_TAG)
        offsets = _ints(walk, ifd, 273)
        counts = _ints(walk, ifd, 279)
        if key is None or len(key) not in (3, 4) or not offsets or counts is None:
            return
        series = key[3] if len(key) == 4 else 0
        if series != self._series or len(offsets) != len(counts):
            return
        strips = tuple(v for pair in zip(offsets, counts, strict=True) for v in pair)
        self._where_of.setdefault(key[:3], strips)
        if BLANK_TAG in ifd.entries:
            self._blank.add(key[:3])

    def _first_ifd(self, walk: IfdWalk, ifd: Ifd) -> None:
        """The frame's shape, pixel type and codec, from the chain's first IFD."""
        width = _first_int(walk, ifd, 256, 0)
        height = _first_int(walk, ifd, 257, 0)
        samples = _first_int(walk, ifd, 277, 1)
        bits = _first_int(walk, ifd, 258, 8)
        kind = _SAMPLE_KINDS.get(_first_int(walk, ifd, 339, 1))
        if not (0 < width <= _MAX_SIDE and 0 < height <= _MAX_SIDE) or samples not in (1, 3):
            msg = f"{self.path}: frames of {width}x{height}x{samples} are not ours"
            raise DatasetError(msg)
        if kind is None or bits not in (8, 16, 32, 64):
            msg = f"{self.path}: pixels of {bits} bits are not ours"
            raise DatasetError(msg)
        dtype = np.dtype(f"<{kind}{bits // 8}")
        frame = (height, width) if samples == 1 else (height, width, samples)
        if height * width * samples * dtype.itemsize > _MAX_FRAME_BYTES:
            msg = f"{self.path}: frames of {frame} are too large to read"
            raise DatasetError(msg)
        try:
            codec = Codec.from_tiff(_first_int(walk, ifd, 259, 1), _first_int(walk, ifd, 317, 1))
        except ConfigError as exc:
            msg = f"{self.path}: {exc}"
            raise DatasetError(msg) from None
        description = ifd.entries.get(270)
        text = (walk.head(description, 8) if description is not None else None) or b""
        self._finished = text.startswith((b"ImageJ=", b"<?xml"))
        self._dtype, self._frame, self._codec = dtype, frame, codec

    def _layout_axes(self) -> None:
        """Sizes, index 0 of each axis, ``written`` and the metadata from the planes found."""
        keys = list(self._where_of)
        declared = self._settings.shape if self._series == 0 else None
        if keys:
            low = tuple(min(0, *(k[i] for k in keys)) for i in range(3))
            high = tuple(max(k[i] for k in keys) for i in range(3))
            czt = [high[i] - low[i] + 1 for i in range(3)]
        else:
            low, czt = (0, 0, 0), [0, 0, 0]
        if declared is not None and low == (0, 0, 0):
            czt = [max(d, n) for d, n in zip(declared, czt, strict=True)]
        self._low = (low[0], low[1], low[2])
        self._sizes = (czt[2], czt[1], czt[0])
        written = np.zeros(self._sizes, dtype=bool)
        for c, z, t in keys:
            if (c, z, t) not in self._blank:
                written[t - low[2], z - low[1], c - low[0]] = True
        self._written = written
        s = self._settings
        self._channel_names = list(s.names or [])
        self._colors = None if s.colors is None else s.colors[: max(czt[0], len(s.colors))]
        self._pixel_size_um, self._z_step_um, self._interval_s = s.pixel, s.z_step, s.interval

    def _where(self, t: int, z: int, c: int) -> Hashable | None:
        low = self._low
        return self._where_of.get((c + low[0], z + low[1], t + low[2]))

    def _decode(self, where: Hashable) -> np.ndarray:
        assert isinstance(where, tuple) and self._codec is not None
        strips: Sequence[int] = where
        chunks = []
        with self._opened():
            if self._replaced():
                msg = f"{self.path} was replaced since it was read: refresh() reads the new file"
                raise DatasetError(msg)
            for offset, count in zip(strips[::2], strips[1::2], strict=True):
                if count > _MAX_FRAME_BYTES:
                    msg = f"{self.path}: a strip of {count} bytes"
                    raise DatasetError(msg)
                data = self._read(offset, count)
                if len(data) != count:
                    msg = f"{self.path} was cut short: a frame's data at {offset} is missing"
                    raise DatasetError(msg)
                chunks.append(data)
        codec = self._codec
        try:
            return codec.decode(b"".join(chunks), self._dtype, self._frame)
        except (ValueError, RuntimeError) as exc:  # imagecodecs' errors are RuntimeErrors
            msg = f"{self.path}: a frame at {strips[0]} cannot be decoded ({exc})"
            raise DatasetError(msg) from exc


@final
class Following(Hyperstack):
    """A view of a file that may not exist yet: empty until :meth:`attach` gives it one.

    What a sink hands out before its file is opened (a GUI asks for the view when the
    acquisition starts; the file comes with the first frame). Once attached it is the attached
    view: shape, planes, metadata and ``coords_changed`` (also emitted on attaching).
    """

    def __init__(self, path: str | os.PathLike[str] = "") -> None:
        super().__init__(path)
        self._inner: OwnFile | None = None

    @property
    def attached(self) -> bool:
        """True once a file's view was attached."""
        return self._inner is not None

    def attach(self, view: OwnFile) -> None:
        """Follow ``view`` from now on (once; a second call is an error)."""
        with self._lock:
            if self._inner is not None:
                msg = "this view already follows a file"
                raise ValueError(msg)
            if self._closed:
                view.close()
                return
            self._inner = view
            self.path = view.path
            view.coords_changed.connect(self.coords_changed.emit)
        self.coords_changed.emit()

    def _sync(self) -> None:
        inner = self._inner
        if inner is None:
            return
        with inner._lock:
            inner._sync()
            self._copy(inner)

    def _copy(self, inner: OwnFile) -> None:
        self._sizes, self._frame, self._dtype = inner._sizes, inner._frame, inner._dtype
        self._written, self._finished = inner._written, inner._finished
        self._channel_names, self._colors = inner._channel_names, inner._colors
        self._pixel_size_um, self._z_step_um = inner._pixel_size_um, inner._z_step_um
        self._interval_s = inner._interval_s

    def _load(self) -> bool:
        inner = self._inner
        if inner is None:
            return False
        with inner._lock:
            changed = inner._load()
            self._copy(inner)
        return changed

    def _where(self, t: int, z: int, c: int) -> Hashable | None:
        return None if self._inner is None else self._inner._where(t, z, c)

    def _decode(self, where: Hashable) -> np.ndarray:
        assert self._inner is not None
        return self._inner._decode(where)

    def _release(self) -> None:
        if self._inner is not None:
            self._inner.close()
