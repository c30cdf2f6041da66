"""IJTiffFile: the parallel, incremental, crash-safe ImageJ hyperstack writer.

How bytes reach the disk
------------------------
``save`` validates and copies the frame in the caller's thread, then hands it to the shared
compression pool (blocking while too many frames of this file are in flight). A worker
compresses the whole frame, hashes the result and, holding the file's lock, appends in one
``pwritev``: any tag values not stored before, the pixel data (unless an identical frame is
already stored), and the frame's IFD. Only then is the previous IFD's next-pointer patched
to the new IFD. So the file on disk is at every moment a valid TIFF whose IFD chain holds
every frame written so far, in arrival order, each IFD carrying its (c, z, t) in a private
tag.

At close, missing planes are filled with one shared blank frame, and a chain in ImageJ's
canonical order (C fastest, then Z, then T) is written at the end of the file, its first IFD
carrying the ImageJ description and IJMetadata. The header's first-IFD pointer is switched
to it last, with one 4- or 8-byte write: before that write the old chain is intact, after it
the new one is.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import struct
import threading
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar, final

import imagecodecs
import numpy as np

from .._closing import close_after_block
from .._version import __version__
from ..errors import (
    CoordinateError,
    FileExistsError_,
    FrameError,
    MissingFramesWarning,
    ProfileError,
    WriterClosedError,
    WriterError,
)
from ._codecs import Codec, CompressionLike, parse_compression
from ._colors import color_lut, colormap_lut
from ._imagej import imagej_description, imagej_metadata_tags
from ._pool import acquire_pool, default_workers, release_pool
from ._tags import (
    FIRST_METADATA_TAG,
    METADATA_TAG,
    PLANE_TAG,
    SETTINGS_TAG,
    Layout,
    Tag,
    TagsLike,
    decode_values,
    normalize_tags,
)

__all__ = ["IJTiffFile", "Profile"]

Profile = Literal["bigtiff", "imagej"]
Coord = tuple[int, int, int]

_BIGTIFF_DTYPES = frozenset(
    np.dtype(d) for d in ("u1", "u2", "u4", "u8", "i1", "i2", "i4", "i8", "f4", "f8")
)
_IMAGEJ_DTYPES = frozenset(np.dtype(d) for d in ("u1", "u2", "f4"))
_SAMPLE_FORMAT = {"u": 1, "i": 2, "f": 3}
_FINAL_RESERVE = 1 << 20  # bytes kept free in classic files for the final IFD chain's extras
_DEFAULT = object()


def _positive_or_none(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    try:
        val = float(value)
    except (TypeError, ValueError):
        msg = f"{name} must be a number, got {value!r}"
        raise ValueError(msg) from None
    if not math.isfinite(val) or val <= 0:
        msg = f"{name} must be a positive, finite number, got {value!r}"
        raise ValueError(msg)
    return val


def _coord(name: str, value: Any) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        msg = f"{name} must be an integer, got {value!r}"
        raise CoordinateError(msg)
    if value < 0:
        msg = f"{name}={value} is negative; coordinates start at 0"
        raise CoordinateError(msg)
    return int(value)


_DATA_INDEX_SIZE = 16384  # distinct frames remembered for dedup (about 2.5 MB at most)
_VALUE_INDEX_SIZE = 1024  # distinct out-of-line tag values remembered for dedup

_SIZE_BITS = 24  # an IFD is far below 16 MiB (it holds one frame's tags)


def _pack(offset: int, size: int) -> int:
    """One int for an IFD's (offset, size): a third of a tuple's memory."""
    if not 0 <= size < 1 << _SIZE_BITS:
        msg = f"an IFD of {size} bytes is too large"
        raise ProfileError(msg)
    return offset << _SIZE_BITS | size


def _unpack(packed: int) -> tuple[int, int]:
    return packed >> _SIZE_BITS, packed & ((1 << _SIZE_BITS) - 1)


def _data_key(data: bytes) -> int:
    """Dedup key of an encoded frame: its length and CRC-32 (libdeflate, ~30x blake2b's speed).

    A key is only a hint: a hit is confirmed by comparing the stored bytes (``_find_data``).
    """
    return len(data) << 32 | int(imagecodecs.deflate_crc32(data))


_K = TypeVar("_K")
_V = TypeVar("_V")


class _LRU(Generic[_K, _V]):
    """A dict of at most ``size`` entries that forgets the least recently used one."""

    __slots__ = ("_data", "_size")

    def __init__(self, size: int) -> None:
        self._data: OrderedDict[_K, _V] = OrderedDict()
        self._size = size

    def get(self, key: _K) -> _V | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: _K, value: _V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        if len(self._data) > self._size:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


class _Tail:
    """Bytes to append at the end of the file, allocated on even offsets, written at once."""

    def __init__(self, start: int) -> None:
        self.start = start
        self.pos = start
        self.chunks: list[bytes] = []

    def reserve(self, nbytes: int) -> int:
        """Skip ``nbytes`` (written elsewhere) before any allocation; return their offset."""
        assert not self.chunks
        offset = self.pos
        self.start = self.pos = offset + nbytes
        return offset

    def alloc(self, buf: bytes) -> int:
        """Queue ``buf`` and return the file offset it will have."""
        offset = self.pos
        self.chunks.append(buf)
        self.pos += len(buf)
        if self.pos % 2:
            self.chunks.append(b"\0")
            self.pos += 1
        return offset


@final
class IJTiffFile:
    """Write a C/Z/T hyperstack TIFF that ImageJ, Fiji (Bio-Formats) and tifffile open.

    Frames are saved one at a time, in any order, and compressed in parallel on a worker pool
    shared by every open file. The file on disk is a valid TIFF at every moment; ``close``
    (or leaving the ``with`` block) turns it into the finished hyperstack.

    Parameters
    ----------
    path
        The file to write. An existing file is replaced unless ``overwrite=False``.
    shape
        ``(C, Z, T)`` when known. ``None``: taken from the largest saved coordinates at close.
    dtype
        Pixel type of the file. Frames of another type are cast; a cast that would wrap or
        lose values (out of range, NaN or infinity into integers) raises :class:`FrameError`.
        ``bigtiff`` takes (u)int8/16/32/64 and float32/64, ``imagej`` uint8, uint16, float32.
    colors
        One color per channel: CSS names (``"magenta"``), ``"#rrggbb"`` or RGB triples.
    colormap
        A colorcet colormap name (e.g. ``"glasbey"``, ``"fire"``) for every channel.
    pxsize
        Pixel size in µm.
    deltaz
        Z step in µm.
    timeinterval
        Time between time points in seconds.
    compression
        ``"zstd"``, ``("zstd", level)``, ``"deflate"``, ``("deflate", level)`` or ``None``.
        Default: zstd level 3 for ``bigtiff``, none for ``imagej``.
    profile
        ``"bigtiff"`` (any size; Fiji/Bio-Formats, tifffile) or ``"imagej"`` (classic TIFF of
        at most 4 GiB that plain ImageJ 1.x opens; no compression or deflate).
    comment
        Free text stored in the ImageJ ``Info`` field.
    extratags
        Tags for every frame: ``{name_or_code: value}`` or :class:`Tag` objects.
    channel_names
        Channel names, shown by ImageJ as slice labels and in the ``Info`` field.
    overwrite
        Replace an existing file (default, like tiffwrite) or raise.
    max_inflight
        Frames of this file queued or being compressed before ``save`` blocks. Default:
        twice the number of workers.

    Examples
    --------
    >>> with IJTiffFile("stack.tif", pxsize=0.65, deltaz=0.5, timeinterval=2.0) as tif:
    ...     for t, z, c, frame in acquire():
    ...         tif.save(frame, c, z, t)

    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        shape: Sequence[int] | None = None,
        dtype: Any = "uint16",
        colors: Sequence[str | Sequence[float]] | None = None,
        colormap: str | None = None,
        pxsize: float | None = None,
        deltaz: float | None = None,
        timeinterval: float | None = None,
        compression: CompressionLike = _DEFAULT,
        profile: Profile = "bigtiff",
        comment: str | None = None,
        extratags: TagsLike = None,
        *,
        channel_names: Sequence[str] | None = None,
        overwrite: bool = True,
        max_inflight: int | None = None,
    ) -> None:
        if profile not in ("bigtiff", "imagej"):
            msg = f"profile must be 'bigtiff' or 'imagej', got {profile!r}"
            raise ProfileError(msg)
        self._profile: Profile = profile
        self._layout = Layout(bigtiff=profile == "bigtiff")
        if compression is _DEFAULT:
            compression = "zstd" if profile == "bigtiff" else ("deflate", 1)
        self._codec: Codec = parse_compression(compression)
        self._dtype = self._check_dtype(dtype)
        if profile == "imagej" and self._codec.name == "zstd":
            msg = (
                "the 'imagej' profile allows compression None or 'deflate' (ImageJ 1.x cannot "
                "read zstd); use profile='bigtiff' for zstd"
            )
            raise ProfileError(msg)
        if colors is not None and colormap is not None:
            msg = "give colors (one per channel) or colormap (for all channels), not both"
            raise ValueError(msg)
        self._colors = None if colors is None else list(colors)
        self._luts: list[np.ndarray] | None = None
        if self._colors is not None:
            self._luts = [color_lut(color) for color in self._colors]
        self._colormap = colormap
        self._colormap_lut = None if colormap is None else colormap_lut(colormap)
        self._shape: Coord | None = None
        if shape is not None:
            if len(shape) != 3:
                msg = f"shape is (C, Z, T), got {tuple(shape)!r}"
                raise ValueError(msg)
            c, z, t = (_coord(n, v) for n, v in zip("CZT", shape, strict=True))
            if min(c, z, t) < 1:
                msg = f"shape sizes must be >= 1, got {tuple(shape)!r}"
                raise ValueError(msg)
            self._shape = (c, z, t)
            if self._colors is not None and len(self._colors) < c:
                msg = f"{len(self._colors)} colors given for {c} channels"
                raise ValueError(msg)
        # ImageJ 1.x reads an uncompressed stack sequentially: plane data must lie in plane
        # order. Such files keep a slot per plane, laid out at the first save.
        self._in_place = profile == "imagej" and self._codec.name == "none"
        if self._in_place and self._shape is None:
            msg = (
                "profile='imagej' with compression=None needs shape=(C, Z, T) up front (ImageJ "
                "reads uncompressed planes in file order); or use compression='deflate'"
            )
            raise ProfileError(msg)
        self._pxsize = _positive_or_none("pxsize", pxsize)
        self._deltaz = _positive_or_none("deltaz", deltaz)
        self._timeinterval = _positive_or_none("timeinterval", timeinterval)
        self._comment = None if comment is None else str(comment)
        self._channel_names = None if channel_names is None else [str(n) for n in channel_names]
        self._extratags = normalize_tags(extratags, bigtiff=self._layout.bigtiff)
        workers = default_workers()
        self._max_inflight = max(1, int(max_inflight or 2 * workers))

        self.path = Path(path)
        flags = os.O_RDWR | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
        try:
            self._fd = os.open(self.path, flags, 0o666)
        except FileExistsError:
            msg = f"{self.path} exists; pass overwrite=True to replace it"
            raise FileExistsError_(msg) from None
        self._init_state()
        try:
            self._write_all([self._layout.header(0)], 0)
        except BaseException:
            os.close(self._fd)
            raise
        self._end = self._layout.header_size
        self._pool: ThreadPoolExecutor | None = acquire_pool()

    @classmethod
    def _resume(
        cls,
        path: Path,
        *,
        bigtiff: bool,
        frame_shape: tuple[int, int],
        dtype: np.dtype[Any],
        codec: Codec,
        settings: Mapping[str, Any],
        planes: dict[Coord, tuple[int, int]],
        arrival: list[Coord],
        link_pos: int,
        end: int,
    ) -> IJTiffFile:
        """Re-open a file left unfinished (see :func:`repair`) so that ``close`` finishes it."""
        self = cls.__new__(cls)
        self._profile = "bigtiff" if bigtiff else "imagej"
        self._layout = Layout(bigtiff=bigtiff)
        self._codec = codec
        self._dtype = dtype
        self._colors = settings.get("colors")
        self._luts = None if self._colors is None else [color_lut(c) for c in self._colors]
        self._colormap = settings.get("colormap")
        self._colormap_lut = None if self._colormap is None else colormap_lut(self._colormap)
        shape = settings.get("shape")
        self._shape = None if shape is None else (int(shape[0]), int(shape[1]), int(shape[2]))
        self._pxsize = _positive_or_none("pxsize", settings.get("pxsize"))
        self._deltaz = _positive_or_none("deltaz", settings.get("deltaz"))
        self._timeinterval = _positive_or_none("timeinterval", settings.get("timeinterval"))
        self._comment = settings.get("comment")
        names = settings.get("channel_names")
        self._channel_names = None if names is None else [str(n) for n in names]
        self._extratags = ()
        self._in_place = False  # a resumed file only gets its chain rewritten
        self._max_inflight = 1
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDWR)
        self._init_state()
        self._frame_shape = frame_shape
        self._planes = {coord: _pack(*where) for coord, where in planes.items()}
        self._arrival = list(arrival)
        for coord in planes:
            self._max_seen = tuple(max(a, b) for a, b in zip(self._max_seen, coord, strict=True))  # type: ignore[assignment]
        self._link_pos = link_pos
        self._end = end + end % 2
        self._pool = None
        return self

    # ---------------------------------------------------------------- state
    def _init_state(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._frame_shape: tuple[int, int] | None = None
        # coord -> IFD offset and size packed in one int (see _pack): a few hundred bytes per
        # plane is all the memory that grows with the number of frames
        self._planes: dict[Coord, int] = {}
        self._arrival: list[Coord] = []
        self._claimed: set[Coord] = set()  # saved, not yet in the file (in flight)
        self._max_seen: Coord = (-1, -1, -1)
        # dedup indexes, bounded: memory must not grow with every frame (per-frame metadata
        # such as ElapsedTime-ms makes every value new); the most recently used entries stay
        self._data_index: _LRU[int, tuple[int, int]] = _LRU(_DATA_INDEX_SIZE)
        self._value_index: _LRU[tuple[int, int, bytes], int] = _LRU(_VALUE_INDEX_SIZE)
        self._link_pos = self._layout.first_ifd_pointer
        self._pending = 0
        self._inflight_bytes = 0
        self._error: BaseException | None = None
        self._closing = False
        self._closed = False
        self._static: tuple[Tag, ...] | None = None
        self._static_entries: list[tuple[int, bytes]] | None = None
        self._ready: dict[int, tuple[Any, int]] = {}  # seq -> (encoded frame or error, bound)
        self._next_seq = 0  # given to the next saved frame
        self._write_seq = 0  # the next frame to append: frames reach the file in save order
        self._frames_stored = 0
        self._slots_at: int | None = None  # start of the per-plane data slots (in-place files)
        self._blank_planes = 0

    def _check_dtype(self, dtype: Any) -> np.dtype[Any]:
        try:
            dt: np.dtype[Any] = np.dtype(dtype)
        except TypeError:
            msg = f"{dtype!r} is not a numpy dtype"
            raise FrameError(msg) from None
        dt = dt.newbyteorder("<") if dt.itemsize > 1 else dt
        if dt.kind == "b":
            dt = np.dtype("u1")
        allowed = _BIGTIFF_DTYPES if self._profile == "bigtiff" else _IMAGEJ_DTYPES
        if dt not in allowed:
            if self._profile == "imagej":
                msg = (
                    f"the 'imagej' profile stores uint8, uint16 or float32, not {dt.name}: "
                    "convert the data, or use profile='bigtiff' (read by Fiji/Bio-Formats)"
                )
            else:
                msg = f"cannot store {dt.name}: use (u)int8/16/32/64, float32 or float64"
            raise ProfileError(msg)
        return dt

    # ---------------------------------------------------------------- properties
    @property
    def dtype(self) -> np.dtype[Any]:
        """The file's pixel type."""
        return self._dtype

    @property
    def profile(self) -> Profile:
        """``"bigtiff"`` or ``"imagej"``."""
        return self._profile

    @property
    def compression(self) -> Codec:
        """The codec used for every frame."""
        return self._codec

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has finished."""
        return self._closed

    @property
    def shape(self) -> Coord:
        """``(C, Z, T)``: the declared shape, or the one implied by the frames saved so far."""
        if self._shape is not None:
            return self._shape
        c, z, t = self._max_seen
        return (c + 1, z + 1, t + 1) if c >= 0 else (0, 0, 0)

    @property
    def frames_written(self) -> int:
        """Frames whose IFD is linked into the file (durable on the OS level)."""
        with self._cond:
            return len(self._planes)

    def _setting(name: str, doc: str) -> Any:  # type: ignore[misc]
        attr = "_" + name

        def fget(self: IJTiffFile) -> float | None:
            return getattr(self, attr)  # type: ignore[no-any-return]

        def fset(self: IJTiffFile, value: float | None) -> None:
            checked = _positive_or_none(name, value)
            with self._cond:
                setattr(self, attr, checked)
                self._static = self._static_entries = None

        return property(fget, fset, doc=doc)

    pxsize = _setting("pxsize", "Pixel size in µm (``None``: uncalibrated). Settable until close.")
    deltaz = _setting("deltaz", "Z step in µm. Settable until close.")
    timeinterval = _setting("timeinterval", "Time-point interval in s. Settable until close.")
    del _setting

    @property
    def channel_names(self) -> list[str] | None:
        """Channel names, in channel order. Settable until close."""
        return None if self._channel_names is None else list(self._channel_names)

    @channel_names.setter
    def channel_names(self, names: Sequence[str] | None) -> None:
        with self._cond:
            self._channel_names = None if names is None else [str(n) for n in names]
            self._static = self._static_entries = None

    @property
    def comment(self) -> str | None:
        """Free text stored in the ImageJ ``Info`` field. Settable until close."""
        return self._comment

    @comment.setter
    def comment(self, text: str | None) -> None:
        with self._cond:
            self._comment = None if text is None else str(text)
            self._static = self._static_entries = None

    # ---------------------------------------------------------------- saving
    def save(
        self,
        frame: Any,
        c: int,
        z: int,
        t: int,
        extratags: TagsLike = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Queue a 2-D frame for plane (c, z, t) and return; the buffer may be reused at once.

        Parameters
        ----------
        frame
            A 2-D array (Y, X), or anything ``numpy.asarray`` turns into one.
        c, z, t
            The plane's channel, slice and time point, from 0.
        extratags
            Tags for this frame only (``{name_or_code: value}`` or :class:`Tag` objects).
        metadata
            A JSON-able dict stored in this frame's tag 51123 (Micro-Manager's convention).

        Raises
        ------
        FrameError
            Wrong dimensionality or shape, or a lossy cast.
        CoordinateError
            Negative, out-of-shape or repeated coordinates.
        ProfileError
            The frame would push an ``imagej`` file past 4 GiB.
        WriterClosedError
            The file is closed.
        WriterError
            An earlier frame failed in a worker (I/O error, full disk); the cause is chained.

        """
        if self._closing:
            msg = f"{self.path} is closed; cannot save more frames"
            raise WriterClosedError(msg)
        coord = (_coord("c", c), _coord("z", z), _coord("t", t))
        if self._shape is not None and any(v >= s for v, s in zip(coord, self._shape, strict=True)):
            msg = f"(c, z, t)={coord} is outside the declared shape (C, Z, T)={self._shape}"
            raise CoordinateError(msg)
        arr = self._prepare(frame)
        extra: list[Tag] = list(normalize_tags(extratags, bigtiff=self._layout.bigtiff))
        if metadata is not None:
            try:
                text = json.dumps(metadata, default=str, allow_nan=False)
            except (TypeError, ValueError) as exc:
                msg = f"metadata must be a JSON-able dict: {exc}"
                raise ValueError(msg) from None
            extra.append(Tag.ascii(METADATA_TAG, text))
        bound = self._size_bound(arr.nbytes, extra)
        with self._cond:
            self._raise_error()
            if self._closing:
                msg = f"{self.path} is closed; cannot save more frames"
                raise WriterClosedError(msg)
            if coord in self._claimed or coord in self._planes:
                msg = f"plane (c, z, t)={coord} was already saved to {self.path}"
                raise CoordinateError(msg)
            if self._frame_shape is None:
                self._frame_shape = (int(arr.shape[0]), int(arr.shape[1]))
            elif arr.shape != self._frame_shape:
                msg = (
                    f"frame shape {arr.shape} differs from the file's frame shape "
                    f"{self._frame_shape}"
                )
                raise FrameError(msg)
            while self._pending >= self._max_inflight and self._error is None:
                self._cond.wait()
            self._raise_error()
            self._check_budget(coord, bound)
            self._claimed.add(coord)
            self._max_seen = tuple(max(a, b) for a, b in zip(self._max_seen, coord, strict=True))  # type: ignore[assignment]
            self._pending += 1
            self._inflight_bytes += bound
            seq = self._next_seq
            self._next_seq += 1
        if self._codec.name == "none":
            # nothing to compress: appending here costs less than a hand-off to the pool
            # (fewer thread switches, which matter when a camera driver holds the GIL)
            self._process(arr, seq, coord, tuple(extra), bound)
            return
        assert self._pool is not None
        try:
            self._pool.submit(self._process, arr, seq, coord, tuple(extra), bound)
        except BaseException as exc:  # pool gone (interpreter shutting down): keep order
            with self._cond:
                self._claimed.discard(coord)
                self._deposit(seq, exc, bound)
            raise

    def read_frame(self, c: int, z: int, t: int) -> tuple[np.ndarray, dict[str, Any] | None]:
        """Read back a saved plane and its metadata, waiting until it is in the file.

        Works while the file is written (the plane is read from disk once its frame has been
        appended) and after :meth:`close`. Reads only this plane: memory stays flat.

        Parameters
        ----------
        c, z, t
            The plane.

        Returns
        -------
        image : numpy.ndarray
            The 2-D frame as stored.
        metadata : dict or None
            The frame's ``metadata`` (tag 51123), or None when it had none.

        Raises
        ------
        CoordinateError
            The plane was never saved.
        WriterError
            Writing failed before the plane reached the file.

        """
        coord = (_coord("c", c), _coord("z", z), _coord("t", t))
        with self._cond:
            while coord not in self._planes:
                if coord not in self._claimed or self._closed:
                    msg = f"plane (c, z, t)={coord} was not saved to {self.path}"
                    raise CoordinateError(msg)
                self._raise_error()
                self._cond.wait()
            ifd_at, ifd_size = _unpack(self._planes[coord])
            closed = self._closed
        fd = os.open(self.path, os.O_RDONLY) if closed else self._fd
        try:

            def read(offset: int, size: int) -> bytes:
                return os.pread(fd, size, offset)

            lay = self._layout
            entries, _ = lay.parse_ifd(read(ifd_at, ifd_size))
            values = {lay.entry_code(e): e for e in entries}
            offsets = decode_values(*lay.entry_value(values[273], read))
            counts = decode_values(*lay.entry_value(values[279], read))
            data = b"".join(read(int(o), int(n)) for o, n in zip(offsets, counts, strict=True))
            meta_entry = values.get(METADATA_TAG, values.get(FIRST_METADATA_TAG))
            meta_raw = None if meta_entry is None else lay.entry_value(meta_entry, read)[1]
        finally:
            if closed:
                os.close(fd)
        assert self._frame_shape is not None
        image = self._codec.decode(data, self._dtype.newbyteorder("<"), self._frame_shape)
        metadata = None
        if meta_raw is not None:
            metadata = json.loads(meta_raw.rstrip(b"\0").decode("utf-8"))
        return image, metadata

    def _prepare(self, frame: Any) -> np.ndarray:
        arr = np.asarray(frame)
        if arr.ndim != 2:
            msg = f"a frame is 2-D (Y, X); got an array of shape {arr.shape}"
            raise FrameError(msg)
        if 0 in arr.shape:
            msg = f"a frame cannot be empty; got shape {arr.shape}"
            raise FrameError(msg)
        if arr.dtype == self._dtype:
            return np.array(arr, order="C", copy=True)
        return self._cast(arr)

    def _cast(self, arr: np.ndarray) -> np.ndarray:
        src, dst = arr.dtype, self._dtype
        if src.kind not in "biuf":
            msg = f"cannot store a frame of dtype {src} in a {dst} file"
            raise FrameError(msg)
        if dst.kind in "iu" and src.kind in "iuf":
            info = np.iinfo(dst)
            if src.kind == "f" and not np.all(np.isfinite(arr)):
                msg = (
                    f"frame holds NaN or infinity, which a {dst} file cannot store; use "
                    "dtype='float32' or replace them first"
                )
                raise FrameError(msg)
            lo, hi = arr.min(), arr.max()
            if lo < info.min or hi > info.max:
                msg = (
                    f"frame values {lo}..{hi} do not fit {dst} ({info.min}..{info.max}); "
                    "a cast would wrap them. Choose a wider dtype or rescale the data"
                )
                raise FrameError(msg)
        elif dst.kind == "f" and src.kind == "f" and dst.itemsize < src.itemsize:
            finite = np.isfinite(arr)
            big = np.abs(np.where(finite, arr, 0)).max()
            if big > np.finfo(dst).max:
                msg = f"frame values up to {big} overflow {dst}; use dtype='float64'"
                raise FrameError(msg)
        with np.errstate(invalid="ignore", over="ignore"):
            return np.ascontiguousarray(arr.astype(dst))

    def _size_bound(self, nbytes: int, extra: Sequence[Tag]) -> int:
        """Upper bound of the bytes one frame adds to the end of the file."""
        if self._in_place:
            worst = 0  # the data goes to its slot, counted when the slots are laid out
        elif self._codec.name == "none":
            worst = nbytes
        else:
            worst = nbytes + nbytes // 100 + 1024
        return worst + sum(len(t.value) + 2 for t in extra) + 1024

    def _check_budget(self, coord: Coord, bound: int) -> None:
        if self._layout.bigtiff:
            return
        c, z, t = (max(a, b) + 1 for a, b in zip(self._max_seen, coord, strict=True))
        planes = self._shape or (c, z, t)
        nplanes = planes[0] * planes[1] * planes[2]
        fh, fw = self._frame_shape or (0, 0)
        final = nplanes * 512 + _FINAL_RESERVE + fh * fw * self._dtype.itemsize + 2048
        slots = 0
        if self._in_place and self._slots_at is None:
            slots = nplanes * fh * fw * self._dtype.itemsize
        projected = self._end + slots + self._inflight_bytes + bound + final
        if projected > self._layout.max_offset:
            msg = (
                f"the 'imagej' profile is a classic TIFF of at most 4 GiB and this frame would "
                f"not fit in {self.path}; it holds every frame saved before. Use "
                "profile='bigtiff' for larger data"
            )
            raise ProfileError(msg)

    def _process(
        self, arr: np.ndarray, seq: int, coord: Coord, extra: tuple[Tag, ...], bound: int
    ) -> None:
        """Worker: compress and hash one frame, then append every frame that is next in line."""
        item: Any
        try:
            data = self._codec.encode(arr)
            del arr
            item = (coord, data, _data_key(data), extra)
        except BaseException as exc:  # reported to the caller on save/flush/close
            item = exc
        with self._cond:
            self._deposit(seq, item, bound)

    def _deposit(self, seq: int, item: Any, bound: int) -> None:
        """Park a finished frame; append all frames now complete in save order. Lock held.

        Frames reach the file in the order they were saved, so a file saved in plane order
        needs no chain rewrite at close. Workers never wait for each other: whoever finishes
        the frame next in line appends it and any parked successors.
        """
        self._ready[seq] = (item, bound)
        while self._write_seq in self._ready:
            item, bound = self._ready.pop(self._write_seq)
            self._write_seq += 1
            try:
                if isinstance(item, BaseException):
                    raise item
                if self._error is None:
                    self._append(*item)
            except BaseException as exc:
                if self._error is None:
                    self._error = exc
            finally:
                self._pending -= 1
                self._inflight_bytes -= bound
        self._cond.notify_all()

    def _raise_error(self) -> None:
        err = self._error
        if err is None:
            return
        if isinstance(err, WriterError):
            raise err
        msg = (
            f"writing {self.path} failed: {err!r}. The file is a valid TIFF holding "
            f"{len(self._planes)} frames; mmtiffsink.repair() turns it into a hyperstack"
        )
        raise WriterError(msg) from err

    # ---------------------------------------------------------------- the byte level
    def _static_tags(self) -> tuple[Tag, ...]:
        """Tags every IFD of this file carries (rebuilt when a setting changes)."""
        if self._static is None:
            h, w = self._frame_shape or (0, 0)
            dt = self._dtype
            tags = [
                Tag.long(254, [0]),
                Tag.long(256, [w]),
                Tag.long(257, [h]),
                Tag.short(258, [dt.itemsize * 8]),
                Tag.short(259, [self._codec.tiff_code]),
                Tag.short(262, [1]),
                Tag.short(277, [1]),
                Tag.long(278, [self._rows_per_strip()]),
                Tag.short(284, [1]),
                Tag.ascii(305, f"mmtiffsink {__version__}"),
                Tag.short(339, [_SAMPLE_FORMAT[dt.kind]]),
                Tag.ascii(SETTINGS_TAG, json.dumps(self._settings(), sort_keys=True)),
                *self._extratags,
            ]
            if self._pxsize is not None:
                tags += [
                    Tag.rational(282, [1.0 / self._pxsize]),
                    Tag.rational(283, [1.0 / self._pxsize]),
                    Tag.short(296, [1]),
                ]
            self._static = tuple(tags)
        return self._static

    def _rows_per_strip(self) -> int:
        """Uncompressed frames are two adjacent strips (all rows but one, then one row).

        tifffile reads an uncompressed ImageJ file whose first plane is one contiguous block
        as a "virtual" stack of contiguous planes. Two strips let the final first IFD point
        its last row at a copy stored apart, which tells tifffile the planes are separate.
        """
        h = self._frame_shape[0] if self._frame_shape else 1
        return h - 1 if self._codec.name == "none" and not self._in_place and h > 1 else h

    def _strips(self, offset: int, nbytes: int) -> tuple[list[int], list[int]]:
        rows = self._rows_per_strip()
        h = self._frame_shape[0] if self._frame_shape else 1
        if rows == h:
            return [offset], [nbytes]
        head = nbytes // h * rows
        return [offset, offset + head], [head, nbytes - head]

    def _settings(self) -> dict[str, Any]:
        """What :func:`repair` needs to finish the file; stored once in the file."""
        return {
            "writer": "mmtiffsink",
            "version": 1,
            "profile": self._profile,
            "shape": self._shape,
            "pxsize": self._pxsize,
            "deltaz": self._deltaz,
            "timeinterval": self._timeinterval,
            "colors": None if self._colors is None else [str(c) for c in self._colors],
            "colormap": self._colormap,
            "channel_names": self._channel_names,
            "comment": self._comment,
        }

    def _append(self, coord: Coord, data: bytes, digest: int, extra: Sequence[Tag]) -> None:
        """Append data, new tag values and the IFD of one frame; then link it. Lock held."""
        lay = self._layout
        new_values: dict[tuple[int, int, bytes], int] = {}
        tail = _Tail(self._end)
        alloc = tail.alloc

        slot_write: tuple[bytes, int] | None = None
        if self._in_place:
            assert self._shape is not None
            if self._slots_at is None:
                self._slots_at = tail.reserve(
                    self._shape[0] * self._shape[1] * self._shape[2] * len(data)
                )
            c, z, t = coord
            index = c + self._shape[0] * (z + self._shape[1] * t)
            stored = (self._slots_at + index * len(data), len(data))
            slot_write = (data, stored[0])
            new_data = True
        else:
            found = self._find_data(digest, data)
            new_data = found is None
            stored = (alloc(data), len(data)) if found is None else found
        offsets, counts = self._strips(*stored)
        if not self._arrival:  # see FIRST_METADATA_TAG
            extra = [
                Tag(FIRST_METADATA_TAG, t.dtype, t.count, t.value) if t.code == METADATA_TAG else t
                for t in extra
            ]

        def entry(tag: Tag, dedup: bool = True) -> tuple[int, bytes]:
            if len(tag.value) <= lay.inline_size:
                return tag.code, lay.encode_entry(tag, None)
            if not dedup:
                return tag.code, lay.encode_entry(tag, alloc(tag.value))
            key = (tag.dtype, len(tag.value), hashlib.blake2b(tag.value, digest_size=16).digest())
            offset = new_values.get(key)
            if offset is None:
                offset = self._find_value(key, tag.value)
            if offset is None:
                offset = new_values[key] = alloc(tag.value)
            return tag.code, lay.encode_entry(tag, offset)

        static = self._static_entries
        if static is None:  # first frame, or a setting changed: encode (and store) once
            static = [entry(tag) for tag in self._static_tags()]
        items = [
            *static,
            entry(lay.offset_tag(273, offsets)),
            entry(lay.offset_tag(279, counts)),
            entry(Tag.long(PLANE_TAG, list(coord)), dedup=False),
            *(entry(tag) for tag in extra),
        ]
        items.sort(key=lambda item: item[0])
        entries = [raw for _, raw in items]
        ifd = lay.encode_ifd(entries)
        ifd_offset = alloc(ifd)
        if tail.pos > lay.max_offset:
            msg = f"{self.path} would pass the 4 GiB limit of a classic TIFF"
            raise ProfileError(msg)
        try:
            if slot_write is not None:
                self._write_all([slot_write[0]], slot_write[1])
            self._write_all(tail.chunks, tail.start)
            # link the new IFD only once it is completely on disk
            self._write_all([lay.pack_offset(ifd_offset)], self._link_pos)
        except OSError:
            self._truncate_to_end()
            raise
        self._link_pos = ifd_offset + len(ifd) - lay.offset_size
        self._end = tail.pos
        for key, offset in new_values.items():
            self._value_index.put(key, offset)
        self._static_entries = static
        if new_data:
            if not self._in_place:
                self._data_index.put(digest, stored)
            self._frames_stored += 1
        self._planes[coord] = _pack(ifd_offset, len(ifd))
        self._claimed.discard(coord)
        self._arrival.append(coord)

    def _find_data(self, digest: int, data: bytes) -> tuple[int, int] | None:
        hit = self._data_index.get(digest)
        if hit is not None and hit[1] == len(data) and self._read(hit[0], hit[1]) == data:
            return hit
        return None

    def _find_value(self, key: tuple[int, int, bytes], value: bytes) -> int | None:
        offset = self._value_index.get(key)
        if offset is not None and self._read(offset, len(value)) == value:
            return offset
        return None

    def _read(self, offset: int, size: int) -> bytes:
        return os.pread(self._fd, size, offset)

    def _write_all(self, chunks: list[bytes], offset: int) -> None:
        """Write ``chunks`` contiguously at ``offset``, retrying short writes."""
        if len(chunks) > 64:  # pwritev takes at most IOV_MAX (1024) buffers
            chunks = [b"".join(chunks)]
        total = sum(len(c) for c in chunks)
        if len(chunks) > 1:
            written = os.pwritev(self._fd, chunks, offset)
        else:
            written = os.pwrite(self._fd, chunks[0], offset)
        if written < total:
            rest = memoryview(b"".join(chunks))[written:]
            while rest:
                n = os.pwrite(self._fd, rest, offset + written)
                written += n
                rest = rest[n:]

    def _truncate_to_end(self) -> None:
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, self._end)

    # ---------------------------------------------------------------- flush and close
    def _wait_idle(self) -> None:
        with self._cond:
            while self._pending:
                self._cond.wait()

    def flush(self) -> None:
        """Wait until every saved frame is in the file, then fsync: a durable point.

        After ``flush`` returns, a killed process or a power loss loses no frame saved
        before it: :func:`mmtiffsink.repair` (or tifffile) recovers every one of them.
        """
        if self._closed:
            msg = f"{self.path} is closed"
            raise WriterClosedError(msg)
        self._wait_idle()
        with self._cond:
            self._raise_error()
        os.fsync(self._fd)

    def close(self) -> None:
        """Finish the hyperstack (canonical plane order, ImageJ description) and close.

        Waits for frames in flight. Planes never saved are filled with one shared blank
        frame, with a :class:`MissingFramesWarning`. If a worker failed, the file is left as
        the valid TIFF it is (see :func:`mmtiffsink.repair`) and :class:`WriterError` raised.
        """
        if self._closed:
            return
        with self._cond:
            self._closing = True
        error: BaseException | None = None
        try:
            self._wait_idle()
            if self._error is None:
                self._finalize()
        except BaseException as exc:
            error = exc
        finally:
            self._closed = True
            try:
                os.close(self._fd)
            finally:
                if self._pool is not None:
                    self._pool = None
                    release_pool()
        if self._error is not None:
            self._raise_error()
        if error is not None:
            if isinstance(error, OSError):
                msg = f"finishing {self.path} failed: {error!r}; the file keeps its frames"
                raise WriterError(msg) from error
            raise error

    def __enter__(self) -> IJTiffFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        close_after_block(self.close, exc, str(self.path))

    def _finalize(self) -> None:
        if self._frame_shape is None:
            warnings.warn(
                f"no frame was saved to {self.path}; the file was removed",
                MissingFramesWarning,
                stacklevel=4,
            )
            os.unlink(self.path)
            return
        shape = self.shape
        canonical = [
            (c, z, t) for t in range(shape[2]) for z in range(shape[1]) for c in range(shape[0])
        ]
        missing = [p for p in canonical if p not in self._planes]
        if missing:
            warnings.warn(
                f"{len(missing)} of {len(canonical)} planes of {self.path} were never saved "
                "and hold a blank frame",
                MissingFramesWarning,
                stacklevel=4,
            )
            blank = self._codec.encode(np.zeros(self._frame_shape, dtype=self._dtype))
            digest = _data_key(blank)
            with self._cond:
                for coord in missing:
                    self._append(coord, blank, digest, ())
            self._blank_planes = len(missing)
        with self._cond:
            self._write_final_chain(canonical)
        os.fsync(self._fd)

    def _first_ifd_tags(self, shape: Coord) -> list[Tag]:
        c, _, _ = shape
        luts: list[np.ndarray] | None = None
        if self._luts is not None:
            luts = self._luts[:c]
        elif self._colormap_lut is not None:
            luts = [self._colormap_lut] * c
        mode = ("color" if luts else None) if c == 1 else "composite" if c <= 7 else "color"
        desc = imagej_description(
            shape,
            compressed=self._codec.name != "none",
            pxsize=self._pxsize,
            deltaz=self._deltaz,
            timeinterval=self._timeinterval,
            mode=mode,
        )
        labels = None
        info_lines = []
        if self._comment:
            info_lines.append(self._comment)
        if self._channel_names:
            names = list(self._channel_names) + [
                f"C{i}" for i in range(len(self._channel_names), c)
            ]
            labels = [names[i % c] for i in range(c * shape[1] * shape[2])]
            info_lines += [f"Channel{i}Name = {names[i]}" for i in range(c)]
        tags = [Tag.ascii(270, desc), Tag.ascii(SETTINGS_TAG, json.dumps(self._settings()))]
        if self._pxsize is not None:  # may have been set after plane 0 was written
            tags += [
                Tag.rational(282, [1.0 / self._pxsize]),
                Tag.rational(283, [1.0 / self._pxsize]),
                Tag.short(296, [1]),
            ]
        tags += imagej_metadata_tags(luts=luts, labels=labels, info="\n".join(info_lines) or None)
        return tags

    def _write_final_chain(self, canonical: list[Coord]) -> None:
        """Write the chain in canonical order and switch the header to it. Lock held."""
        lay = self._layout
        shape = self.shape
        first_extra = self._first_ifd_tags(shape)
        rewrite_all = self._arrival != canonical
        tail = _Tail(self._end)
        alloc = tail.alloc

        # Layout at the end of the file: [IFD 1..n-1 copies][first-IFD values][IFD 0].
        # The header is switched to IFD 0 last, so the old chain stays valid until then.
        nplanes = len(canonical)
        if rewrite_all and nplanes > 1:
            copies = [
                [
                    self._retag(e, FIRST_METADATA_TAG, METADATA_TAG)
                    for e in lay.parse_ifd(self._read(*_unpack(self._planes[p])))[0]
                ]
                for p in canonical[1:]
            ]
            at = tail.pos
            offsets = []
            for ents in copies:
                offsets.append(at)
                at += lay.ifd_size(len(ents)) + lay.ifd_size(len(ents)) % 2
            for ents, nxt in zip(copies, [*offsets[1:], 0], strict=True):
                alloc(lay.encode_ifd(ents, nxt))
            second = offsets[0]
        else:
            second = _unpack(self._planes[canonical[1]])[0] if nplanes > 1 else 0
        height = self._frame_shape[0] if self._frame_shape else 1
        first_off, first_size = _unpack(self._planes[canonical[0]])
        entries, _ = lay.parse_ifd(self._read(first_off, first_size))
        replaced = {tag.code for tag in first_extra} | {282, 283, 296}
        entries = [e for e in entries if lay.entry_code(e) not in replaced]
        for tag in first_extra:
            inline = len(tag.value) <= lay.inline_size
            entries.append(lay.encode_entry(tag, None if inline else alloc(tag.value)))
        if self._codec.name == "none" and nplanes > 1 and self._rows_per_strip() < height:
            # see _rows_per_strip: the last row of plane 0 moves to a copy stored apart
            strips = next(e for e in entries if lay.entry_code(e) == 273)
            counts = next(e for e in entries if lay.entry_code(e) == 279)
            head_at, tail_at = (int(v) for v in decode_values(*lay.entry_value(strips, self._read)))
            tail_size = int(decode_values(*lay.entry_value(counts, self._read))[1])
            copy_at = alloc(self._read(tail_at, tail_size))
            tag = lay.offset_tag(273, [head_at, copy_at])
            inline = len(tag.value) <= lay.inline_size
            new_entry = lay.encode_entry(tag, None if inline else alloc(tag.value))
            entries = [new_entry if lay.entry_code(e) == 273 else e for e in entries]
        entries = [self._retag(e, METADATA_TAG, FIRST_METADATA_TAG) for e in entries]
        entries.sort(key=lay.entry_code)
        first_at = alloc(lay.encode_ifd(entries, second))
        if tail.pos > lay.max_offset:
            msg = f"{self.path}: the final IFD chain does not fit in a classic TIFF"
            raise ProfileError(msg)
        try:
            self._write_all(tail.chunks, tail.start)
        except OSError:
            self._truncate_to_end()
            raise
        self._end = tail.pos
        os.fsync(self._fd)
        self._write_all([lay.pack_offset(first_at)], lay.first_ifd_pointer)

    @staticmethod
    def _retag(entry: bytes, old: int, new: int) -> bytes:
        """Give a raw IFD entry of tag ``old`` the code ``new`` (value unchanged)."""
        if struct.unpack_from("<H", entry)[0] == old:
            return struct.pack("<H", new) + entry[2:]
        return entry

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"<IJTiffFile {str(self.path)!r} {state} {self._profile} {self._dtype.name} "
            f"{self._codec.name} shape(C,Z,T)={self.shape}>"
        )
