"""IJTiffFile: the parallel, incremental, crash-safe ImageJ hyperstack writer.

How bytes reach the disk, one module per stage
----------------------------------------------
``save`` checks the coordinate (:mod:`._frames`: caps, casts that never change values,
metadata JSON) and copies the frame in the caller's thread, takes room in the process-wide
in-flight budget (:mod:`._pool`), then hands the frame to the shared compression pool
(uncompressed frames skip the hand-off). The file's :class:`~._order.Sequencer` puts finished
frames back in save order and gives the appender role to one thread at a time, outside the
saving lock; the :class:`~._appender.Appender` writes the frame's bytes and IFD at the end of
the file and links it (:mod:`._io` does the portable positional I/O). At close,
:mod:`._finish` fills never-saved planes and writes the canonical chain with the ImageJ
description; :mod:`._readback` reads planes back on a descriptor of its own.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import warnings
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, final

import numpy as np

from .._closing import close_after_block
from .._version import __version__
from ..errors import (
    ConfigError,
    CoordinateError,
    FrameError,
    MissingFramesWarning,
    OutputExistsError,
    ProfileError,
    WriterClosedError,
    WriterError,
)
from ..limits import MAX_PLANES
from . import _pool
from ._appender import Appender, data_key, rows_per_strip
from ._codecs import Codec, CompressionLike
from ._finish import finish
from ._frames import Cast, Coord, cast_frame, check_cast, check_plane_count, coordinate
from ._frames import metadata_json as _metadata_json
from ._io import FileIO
from ._order import Job, Sequencer
from ._profiles import DEFAULT, Profile, ProfileName
from ._readback import read_plane
from ._settings import Settings, positive_or_none
from ._tags import METADATA_TAG, SETTINGS_TAG, Layout, Tag, TagsLike, normalize_tags

__all__ = ["IJTiffFile"]

_SAMPLE_FORMAT = {"u": 1, "i": 2, "f": 3}
_FINAL_RESERVE = 1 << 20  # bytes kept free in classic files for the final IFD chain's extras
_NO_COORD: Coord = (sys.maxsize, sys.maxsize, sys.maxsize)
_NONE_SAVED: Coord = (-sys.maxsize, -sys.maxsize, -sys.maxsize)


def _abandoned(io: FileIO, holds_pool: list[bool]) -> None:
    """Finalizer of a file that was never closed: release what it holds."""
    if holds_pool and holds_pool[0]:
        holds_pool[0] = False
        _pool.release_pool()
    if not io.closed:
        io.close()
        warnings.warn(
            f"IJTiffFile {io.path} was never closed; it is a valid TIFF, "
            "mmtiffsink.repair() finishes it",
            ResourceWarning,
            stacklevel=2,
        )


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
        ``(C, Z, T)`` when known. ``None``: taken from the saved coordinates at close.
    dtype
        Pixel type of the file. Frames of another type are cast; see ``cast``.
        ``bigtiff`` takes (u)int8/16/32/64 and float32/64, ``imagej`` uint8, uint16, float32.
    colors
        One color per channel: CSS names (``"magenta"``), ``"#rrggbb"`` or RGB triples.
    colormap
        A colorcet colormap name (e.g. ``"glasbey"``, ``"fire"``) for every channel.
    pxsize
        Pixel size in µm (tiffwrite's ``px_size`` attribute is the same setting).
    deltaz
        Z step in µm (``delta_z``).
    timeinterval
        Time between time points in seconds (``time_interval``).
    compression
        ``"zstd"``, ``"zstd:9"``, ``("zstd", level)``, ``"deflate"``, ``("deflate", level)``
        or ``None``. Default: zstd level 3 for ``bigtiff``, deflate level 1 for ``imagej``.
    profile
        ``"bigtiff"`` (any size; Fiji/Bio-Formats, tifffile) or ``"imagej"`` (classic TIFF of
        at most 4 GiB that plain ImageJ 1.x opens; no compression or deflate).
    comment
        Free text stored in the ImageJ ``Info`` field.
    extratags
        Tags for every frame: ``{name_or_code: value}`` or :class:`Tag` objects. Tags that
        change how pixels decode (Compression, BitsPerSample, strip layout, SubIFDs, ...) are
        refused: the writer owns them.
    channel_names
        Channel names, stored in the ``Info`` field (``ChannelNName = ...``) and as labels.
    overwrite
        Replace an existing file (default, like tiffwrite) or raise
        :class:`~mmtiffsink.errors.OutputExistsError`.
    max_inflight
        Frames of this file queued or being compressed before ``save`` blocks. Default: no
        per-file limit; every file shares the process's in-flight budget in bytes
        (``MMTIFFSINK_INFLIGHT_MB``, default 32 MiB per worker, at least 64 MiB).
    cast
        How frames of another dtype are stored. ``"exact"`` (default): a cast that would
        change any value (wrap, NaN into integers, fractions into integers, float precision)
        raises :class:`FrameError`. ``"round"``: fractions are rounded to the nearest integer
        (floats to the nearest representable value). ``"truncate"``: fractions are dropped,
        as numpy's ``astype`` and tiffwrite do. Out-of-range values are refused in every mode.
    max_planes
        Cap on the planes (C x Z x T) of this file, checked at every ``save`` before anything
        is queued (default :data:`mmtiffsink.limits.MAX_PLANES`, 10**7).
    allow_negative
        Accept negative coordinates (e.g. z below the focus): each axis is numbered from its
        smallest saved coordinate at close. Only without ``shape``.

    Examples
    --------
    >>> with IJTiffFile("stack.tif", pxsize=0.65, deltaz=0.5, timeinterval=2.0) as tif:
    ...     for t, z, c, frame in acquire():
    ...         tif.save(frame, c, z, t)

    """

    __slots__ = (
        "__weakref__",
        "_app",
        "_budget",
        "_cast",
        "_claimed",
        "_close_lock",
        "_closed",
        "_closing",
        "_codec",
        "_cond",
        "_dtype",
        "_extratags",
        "_finalizer",
        "_high",
        "_holds_pool",
        "_inflight_bytes",
        "_inherited",
        "_io",
        "_layout",
        "_low",
        "_max_inflight",
        "_max_planes",
        "_negative",
        "_plane_tags",
        "_pool",
        "_profile",
        "_seq",
        "_settings",
        "_static",
        "blank_planes",
        "path",
    )

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
        compression: CompressionLike = DEFAULT,
        profile: ProfileName | Profile = "bigtiff",
        comment: str | None = None,
        extratags: TagsLike = None,
        *,
        channel_names: Sequence[str] | None = None,
        overwrite: bool = True,
        max_inflight: int | None = None,
        cast: Cast = "exact",
        max_planes: int = MAX_PLANES,
        allow_negative: bool = False,
    ) -> None:
        self._profile = Profile.get(profile)
        self._layout = Layout(bigtiff=self._profile.bigtiff)
        self._dtype = self._profile.dtype(dtype)
        self._cast = check_cast(cast)
        self._max_planes = self._check_cap(max_planes)
        declared = self._check_shape(shape)
        self._codec: Codec = self._profile.codec(compression, shape_known=declared is not None)
        self._negative = bool(allow_negative) and declared is None
        self._settings = Settings(
            shape=declared,
            pxsize=pxsize,
            deltaz=deltaz,
            timeinterval=timeinterval,
            colors=colors,
            colormap=colormap,
            channel_names=channel_names,
            comment=comment,
        )
        self._extratags = normalize_tags(extratags, bigtiff=self._layout.bigtiff)
        if max_inflight is not None and (
            isinstance(max_inflight, bool) or not isinstance(max_inflight, int) or max_inflight < 1
        ):
            msg = f"max_inflight is a number of frames >= 1, got {max_inflight!r}"
            raise ConfigError(msg)
        self._max_inflight = max_inflight
        self.path = Path(path)
        try:
            io = FileIO(self.path, "create" if overwrite else "create_new")
        except FileExistsError:
            msg = f"{self.path} exists; pass overwrite=True to replace it"
            raise OutputExistsError(msg) from None
        except OSError as exc:
            msg = (
                f"cannot create {self.path}: {exc.strerror or exc}; choose a file in a "
                "folder you can write to"
            )
            raise WriterError(msg) from exc
        slots = (
            declared
            if self._profile.uncompressed_needs_shape and not self._codec.compressed
            else None
        )
        self._setup(
            io, end=self._layout.header_size, link_pos=self._layout.first_ifd_pointer, slots=slots
        )
        try:
            io.write([self._layout.header(0)], 0)
        except BaseException:
            self._release()
            raise

    # ---------------------------------------------------------------- set-up
    def _check_cap(self, max_planes: Any) -> int:
        if isinstance(max_planes, bool) or not isinstance(max_planes, int) or max_planes < 1:
            msg = f"max_planes is a positive integer, got {max_planes!r}"
            raise ConfigError(msg)
        return max_planes

    def _check_shape(self, shape: Sequence[int] | None) -> Coord | None:
        if shape is None:
            return None
        if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence) or len(shape) != 3:
            msg = f"shape is (C, Z, T), got {shape!r}"
            raise CoordinateError(msg)
        c, z, t = (coordinate(n, v) for n, v in zip("CZT", shape, strict=True))
        if min(c, z, t) < 1:
            msg = f"shape sizes must be >= 1, got {tuple(shape)!r}"
            raise CoordinateError(msg)
        check_plane_count((0, 0, 0), (c - 1, z - 1, t - 1), self._max_planes, f"shape {shape!r}")
        return (c, z, t)

    def _setup(self, io: FileIO, *, end: int, link_pos: int, slots: Coord | None) -> None:
        self._io = io
        self._cond = threading.Condition(threading.Lock())
        self._close_lock = threading.Lock()
        self._app = Appender(
            io, self._layout, self._static_tags, end=end, link_pos=link_pos, slots=slots
        )
        self._seq = Sequencer(self._cond, self._append_job, self._landed, self._job_finished)
        self._claimed: set[Coord] = set()  # saved, not yet in the file (in flight)
        # the span of the saved coordinates: from 0 (or, with negative coordinates, from the
        # smallest) to the largest
        self._low: Coord = _NO_COORD if self._negative else (0, 0, 0)
        self._high: Coord = _NONE_SAVED
        self._inflight_bytes = 0
        self._closing = False
        self._closed = False
        self._inherited = False
        self._static: tuple[Tag, ...] | None = None
        self._plane_tags: dict[Coord, list[Tag]] = {}
        self.blank_planes = 0
        self._budget = _pool.budget()
        self._pool = _pool.acquire_pool()
        self._holds_pool = [True]
        self._finalizer = weakref.finalize(self, _abandoned, io, self._holds_pool)
        _pool.register_file(self)

    def _release(self) -> None:
        """Give back the pool and the descriptor (once)."""
        self._finalizer.detach()
        try:
            self._io.close()
        finally:
            if self._holds_pool[0]:
                self._holds_pool[0] = False
                _pool.release_pool()

    @classmethod
    def _resume(
        cls,
        path: Path,
        *,
        profile: Profile,
        frame_shape: tuple[int, int],
        dtype: np.dtype[Any],
        codec: Codec,
        settings: Settings,
        planes: dict[Coord, tuple[int, int]],
        arrival: list[Coord],
        link_pos: int,
        end: int,
        slots_at: int | None,
    ) -> IJTiffFile:
        """Re-open a file left unfinished (see :func:`repair`) so that ``close`` finishes it."""
        from ._appender import pack

        self = cls.__new__(cls)
        self._profile = profile
        self._layout = Layout(bigtiff=profile.bigtiff)
        self._codec = codec
        self._dtype = dtype
        self._cast = "exact"
        self._max_planes = MAX_PLANES
        self._negative = any(min(coord) < 0 for coord in planes)
        self._settings = settings
        self._extratags = ()
        self._max_inflight = None
        self.path = Path(path)
        slots = settings.shape if slots_at is not None else None
        self._setup(FileIO(self.path, "update"), end=end, link_pos=link_pos, slots=slots)
        app = self._app
        app.slots_at = slots_at
        app.frame_shape = frame_shape
        app.rows_per_strip = rows_per_strip(
            frame_shape[0], compressed=codec.compressed, slots=slots is not None
        )
        app.planes = {coord: pack(*where) for coord, where in planes.items()}
        app.arrival = list(arrival)
        for coord in planes:
            self._extend(coord)
        return self

    def _detach_after_fork(self) -> None:
        """In a fork child: this file belongs to the parent; the child never writes it."""
        self._cond = threading.Condition(threading.Lock())
        self._close_lock = threading.Lock()
        self._seq.cond = self._cond
        self._io.reset_lock_after_fork()
        self._inherited = True
        self._holds_pool[0] = False  # the child's pool count was reset

    # ---------------------------------------------------------------- properties
    @property
    def dtype(self) -> np.dtype[Any]:
        """The file's pixel type."""
        return self._dtype

    @property
    def profile(self) -> ProfileName:
        """``"bigtiff"`` or ``"imagej"``."""
        return self._profile.name

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
        if self._settings.shape is not None:
            return self._settings.shape
        if self._high == _NONE_SAVED:
            return (0, 0, 0)
        lo, hi = self._low, self._high
        return (hi[0] - lo[0] + 1, hi[1] - lo[1] + 1, hi[2] - lo[2] + 1)

    @property
    def frames_written(self) -> int:
        """Frames whose IFD is linked into the file (durable on the OS level)."""
        return len(self._app.planes)

    def _setting(name: str, doc: str) -> Any:  # type: ignore[misc]
        def fget(self: IJTiffFile) -> float | None:
            return getattr(self._settings, name)  # type: ignore[no-any-return]

        def fset(self: IJTiffFile, value: float | None) -> None:
            checked = positive_or_none(name, value)
            with self._cond:
                setattr(self._settings, name, checked)
                self._static = None

        return property(fget, fset, doc=doc)

    pxsize = _setting("pxsize", "Pixel size in µm (``None``: uncalibrated). Settable until close.")
    deltaz = _setting("deltaz", "Z step in µm. Settable until close.")
    timeinterval = _setting("timeinterval", "Time-point interval in s. Settable until close.")
    # tiffwrite >= 2024.10 names of the same settings
    px_size = _setting("pxsize", "Pixel size in µm (tiffwrite's name of :attr:`pxsize`).")
    delta_z = _setting("deltaz", "Z step in µm (tiffwrite's name of :attr:`deltaz`).")
    time_interval = _setting("timeinterval", "Interval in s (tiffwrite's :attr:`timeinterval`).")
    del _setting

    def _set(self, setter: Any, value: Any) -> None:
        with self._cond:
            setter(value)
            self._static = None

    @property
    def channel_names(self) -> list[str] | None:
        """Channel names, in channel order. Settable until close."""
        names = self._settings.channel_names
        return None if names is None else list(names)

    @channel_names.setter
    def channel_names(self, names: Sequence[str] | None) -> None:
        self._set(self._settings.set_channel_names, names)

    @property
    def colors(self) -> list[Any] | None:
        """One color per channel. Settable until close."""
        colors = self._settings.colors
        return None if colors is None else list(colors)

    @colors.setter
    def colors(self, colors: Sequence[str | Sequence[float]] | None) -> None:
        self._set(self._settings.set_colors, colors)

    @property
    def colormap(self) -> str | None:
        """One colorcet colormap for every channel. Settable until close."""
        return self._settings.colormap

    @colormap.setter
    def colormap(self, name: str | None) -> None:
        self._set(self._settings.set_colormap, name)

    @property
    def comment(self) -> str | None:
        """Free text stored in the ImageJ ``Info`` field. Settable until close."""
        return self._settings.comment

    @comment.setter
    def comment(self, text: str | None) -> None:
        self._set(lambda v: setattr(self._settings, "comment", None if v is None else str(v)), text)

    # ---------------------------------------------------------------- tiffwrite's methods
    def append_extra_tag(self, tag: Tag, czt: tuple[int, int, int] | None = None) -> None:
        """Add a tag to every frame (``czt=None``, before the first save) or to one plane.

        tiffwrite's call form. A plane's tags are used when the plane is saved.

        Raises
        ------
        ConfigError
            A global tag after the first save, or a plane's tag after that plane was saved.

        """
        tags = normalize_tags([tag], bigtiff=self._layout.bigtiff)
        with self._cond:
            if czt is None:
                if self._seq.pending or self._app.planes:
                    msg = "global extra tags must be added before the first save"
                    raise ConfigError(msg)
                self._extratags = normalize_tags(
                    [*self._extratags, *tags], bigtiff=self._layout.bigtiff
                )
                self._static = None
                return
            coord = tuple(
                coordinate(n, v, negative=self._negative) for n, v in zip("czt", czt, strict=True)
            )
            if coord in self._claimed or coord in self._app.planes:
                msg = f"plane {coord} was already saved: pass its tags to save(..., extratags=)"
                raise ConfigError(msg)
            self._plane_tags.setdefault(coord, []).extend(tags)  # type: ignore[arg-type]

    def set_compression(self, compression: int | str, level: int | None = None) -> None:
        """Change the codec before the first save (tiffwrite's call form: code or name, level)."""
        with self._cond:
            if self._seq.pending or self._app.planes:
                msg = "the compression can only be changed before the first save"
                raise ConfigError(msg)
            spec = compression if level is None else (compression, level)
            self._codec = self._profile.codec(spec, shape_known=self._settings.shape is not None)
            if self._app.slots is not None and self._codec.compressed:
                self._app.slots = None
            self._static = None

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
            Wrong dimensionality, shape or dtype, a cast that would change values, or
            metadata that cannot be stored as JSON.
        CoordinateError
            Negative, out-of-shape, repeated or absurd coordinates (beyond ``max_planes``).
        ProfileError
            The frame would push an ``imagej`` file past 4 GiB.
        WriterClosedError
            The file is closed (or closing in another thread).
        WriterError
            An earlier frame failed (I/O error, full disk); the cause is chained.

        """
        if self._closing:
            raise self._closed_error()
        neg = self._negative
        coord = (
            coordinate("c", c, negative=neg),
            coordinate("z", z, negative=neg),
            coordinate("t", t, negative=neg),
        )
        declared = self._settings.shape
        if declared is not None and any(v >= s for v, s in zip(coord, declared, strict=True)):
            msg = f"(c, z, t)={coord} is outside the declared shape (C, Z, T)={declared}"
            raise CoordinateError(msg)
        low = tuple(min(a, b) for a, b in zip(self._low, coord, strict=True))
        high = tuple(max(a, b) for a, b in zip(self._high, coord, strict=True))
        check_plane_count(low, high, self._max_planes, f"plane (c, z, t)={coord} of {self.path}")  # type: ignore[arg-type]
        arr = self._prepare(frame)
        extra = list(normalize_tags(extratags, bigtiff=self._layout.bigtiff))
        if metadata is not None:
            extra.append(Tag.ascii(METADATA_TAG, _metadata_json(metadata)))
        bound = self._size_bound(arr.nbytes, extra)
        charge = arr.nbytes + bound
        if not self._budget.acquire(
            charge, self._full, lambda: self._closing or self._seq.error is not None
        ):
            with self._cond:
                self._raise_error()
            raise self._closed_error()
        try:
            with self._cond:
                self._raise_error()
                if self._closing:
                    raise self._closed_error()
                if coord in self._claimed or coord in self._app.planes:
                    msg = f"plane (c, z, t)={coord} was already saved to {self.path}"
                    raise CoordinateError(msg)
                shape2d = (int(arr.shape[0]), int(arr.shape[1]))
                app = self._app
                if app.frame_shape is None:
                    app.frame_shape = shape2d
                    app.rows_per_strip = rows_per_strip(
                        shape2d[0], compressed=self._codec.compressed, slots=app.slots is not None
                    )
                elif shape2d != app.frame_shape:
                    msg = (
                        f"frame shape {shape2d} differs from the file's frame shape "
                        f"{app.frame_shape}"
                    )
                    raise FrameError(msg)
                self._check_room(coord, bound)
                extra += self._plane_tags.pop(coord, [])
                self._claimed.add(coord)
                self._extend(coord)
                self._inflight_bytes += bound
                job = Job(self._seq.reserve(), coord, charge, bound, extra=tuple(extra))
        except BaseException:
            self._budget.release(charge)
            raise
        if not self._codec.compressed:
            # nothing to compress: appending here costs less than a hand-off to the pool
            self._process(job, arr, caller=True)
            with self._cond:
                self._raise_error()
            return
        try:
            self._pool.submit(self._process, job, arr, False)
        except BaseException as exc:  # pool gone (interpreter shutting down): keep order
            job.error = exc
            self._release_jobs(self._seq.deposit(job))
            raise

    def _closed_error(self) -> WriterClosedError:
        why = " (it was opened before this process forked)" if self._inherited else ""
        msg = f"{self.path} is closed{why}; cannot save more frames"
        return WriterClosedError(msg)

    def _full(self) -> bool:
        return self._max_inflight is not None and self._seq.pending >= self._max_inflight

    def _extend(self, coord: Coord) -> None:
        self._low = tuple(min(a, b) for a, b in zip(self._low, coord, strict=True))  # type: ignore[assignment]
        self._high = tuple(max(a, b) for a, b in zip(self._high, coord, strict=True))  # type: ignore[assignment]

    def _prepare(self, frame: Any) -> np.ndarray:
        try:
            arr = np.asarray(frame)
        except (TypeError, ValueError) as exc:
            msg = f"a frame is a 2-D array; {type(frame).__name__} cannot be one: {exc}"
            raise FrameError(msg) from None
        if arr.ndim != 2:
            msg = f"a frame is 2-D (Y, X); got an array of shape {arr.shape}"
            raise FrameError(msg)
        if 0 in arr.shape:
            msg = f"a frame cannot be empty; got shape {arr.shape}"
            raise FrameError(msg)
        return cast_frame(arr, self._dtype, self._cast)

    def _size_bound(self, nbytes: int, extra: Sequence[Tag]) -> int:
        """Upper bound of the bytes one frame adds to the end of the file."""
        if self._app.slots is not None:
            worst = 0  # the data goes to its slot, counted when the slots are laid out
        elif not self._codec.compressed:
            worst = nbytes
        else:
            worst = nbytes + nbytes // 100 + 1024
        return worst + sum(len(t.value) + 2 for t in extra) + 1024

    def _check_room(self, coord: Coord, bound: int) -> None:
        """Refuse a frame that would push a classic file past 4 GiB (lock held)."""
        if self._layout.bigtiff:
            return
        low = tuple(min(a, b) for a, b in zip(self._low, coord, strict=True))
        high = tuple(max(a, b) for a, b in zip(self._high, coord, strict=True))
        planes = self._settings.shape or tuple(h - lo + 1 for lo, h in zip(low, high, strict=True))
        nplanes = planes[0] * planes[1] * planes[2]
        fh, fw = self._app.frame_shape or (0, 0)
        frame = fh * fw * self._dtype.itemsize
        final = nplanes * 512 + _FINAL_RESERVE + frame + 2048
        slots = nplanes * frame if self._app.slots is not None and self._app.slots_at is None else 0
        projected = self._app.end + slots + self._inflight_bytes + bound + final
        if projected > self._layout.max_offset:
            msg = (
                f"the 'imagej' profile is a classic TIFF of at most 4 GiB and this frame would "
                f"not fit in {self.path}; it holds every frame saved before. Use "
                "profile='bigtiff' for larger data"
            )
            raise ProfileError(msg)

    def _process(self, job: Job, arr: np.ndarray, caller: bool) -> None:
        """Compress and hash one frame (worker or saving thread), then take its turn."""
        try:
            job.data = self._codec.encode(arr)
            del arr
            job.digest = data_key(job.data)
        except Exception as exc:  # reported to the caller on save/flush/close
            job.error = exc
        except BaseException as exc:
            if caller:  # KeyboardInterrupt in the saving thread: the plane stays free
                job.skip = True
                self._release_jobs(self._seq.deposit(job))
                raise
            job.error = exc
        self._release_jobs(self._seq.deposit(job))

    def _append_job(self, job: Job) -> None:
        self._app.append(job.coord, job.data, job.digest, job.extra)

    def _landed(self, job: Job) -> bool:
        return job.coord in self._app.planes

    def _job_finished(self, job: Job, landed: bool) -> None:
        """A job's turn passed (lock held)."""
        self._claimed.discard(job.coord)
        self._inflight_bytes -= job.bound
        job.data = b""

    def _release_jobs(self, jobs: list[Job]) -> None:
        for job in jobs:
            self._budget.release(job.charge)

    def _raise_error(self) -> None:
        err = self._seq.error
        if err is None:
            return
        if isinstance(err, WriterError):
            raise err
        msg = (
            f"writing {self.path} failed: {err!r}. The file is a valid TIFF holding "
            f"{len(self._app.planes)} frames; mmtiffsink.repair() turns it into a hyperstack"
        )
        raise WriterError(msg) from err

    def _static_tags(self) -> tuple[Tag, ...]:
        """Tags every IFD of this file carries (rebuilt when a setting changed)."""
        with self._cond:
            if self._static is None:
                self._static = self._build_static()
            return self._static

    def _build_static(self) -> tuple[Tag, ...]:
        h, w = self._app.frame_shape or (0, 0)
        dt = self._dtype
        settings = self._settings
        tags = [
            Tag.long(254, [0]),
            Tag.long(256, [w]),
            Tag.long(257, [h]),
            Tag.short(258, [dt.itemsize * 8]),
            Tag.short(259, [self._codec.tiff_code]),
            Tag.short(262, [1]),
            Tag.short(277, [1]),
            Tag.long(278, [self._app.rows_per_strip]),
            Tag.short(284, [1]),
            Tag.ascii(305, f"mmtiffsink {__version__}"),
            Tag.short(339, [_SAMPLE_FORMAT[dt.kind]]),
            Tag.ascii(SETTINGS_TAG, json.dumps(settings.to_json(self.profile), sort_keys=True)),
            *self._extratags,
        ]
        if settings.pxsize is not None:
            tags += [
                Tag.rational(282, [1.0 / settings.pxsize]),
                Tag.rational(283, [1.0 / settings.pxsize]),
                Tag.short(296, [1]),
            ]
        return tuple(tags)

    # ---------------------------------------------------------------- reading back
    def read_frame(self, c: int, z: int, t: int) -> tuple[np.ndarray, dict[str, Any] | None]:
        """Read back a saved plane and its metadata, waiting until it is in the file.

        Works while the file is written and after :meth:`close`, on a descriptor of its own.
        Reads only this plane: memory stays flat.

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
        neg = self._negative
        coord = (
            coordinate("c", c, negative=neg),
            coordinate("z", z, negative=neg),
            coordinate("t", t, negative=neg),
        )
        while True:
            with self._cond:
                packed = self._app.planes.get(coord)
                if packed is not None:
                    break
                if coord not in self._claimed or self._closed:
                    msg = f"plane (c, z, t)={coord} was not saved to {self.path}"
                    raise CoordinateError(msg)
                self._raise_error()
                if not self._seq.can_pump():
                    self._cond.wait()
                    continue
            self._release_jobs(self._seq.pump())
        assert self._app.frame_shape is not None
        return read_plane(
            self.path, self._layout, packed, self._codec, self._dtype, self._app.frame_shape
        )

    # ---------------------------------------------------------------- flush and close
    def flush(self) -> None:
        """Wait until every saved frame is in the file, then fsync: a durable point.

        After ``flush`` returns, a killed process or a power loss loses no frame saved
        before it: :func:`mmtiffsink.repair` (or tifffile) recovers every one of them.

        Raises
        ------
        WriterClosedError
            The file is closed.
        WriterError
            A frame failed, or the file was deleted or replaced while it was written.

        """
        if self._closed or self._closing:
            raise self._closed_error()
        self._seq.wait_idle(self._release_jobs)
        with self._cond:
            self._raise_error()
        self._check_identity()
        try:
            self._io.sync()
        except (OSError, ValueError) as exc:
            if self._closing:
                raise self._closed_error() from None
            msg = f"syncing {self.path} failed: {exc}"
            raise WriterError(msg) from exc

    def _check_identity(self) -> None:
        if not self._io.is_at_path():
            msg = (
                f"{self.path} was deleted or replaced while it was written; the frames saved "
                "to it are not in any file at that path"
            )
            raise WriterError(msg)

    def close(self) -> None:
        """Finish the hyperstack (canonical plane order, ImageJ description) and close.

        Waits for frames in flight; a ``save`` in another thread either lands before close
        finishes or raises :class:`WriterClosedError`. Planes never saved are filled with one
        shared blank frame, with a :class:`MissingFramesWarning`. If a frame failed, the file
        is left as the valid TIFF it is (see :func:`mmtiffsink.repair`) and
        :class:`WriterError` raised; also when the file was deleted or replaced meanwhile.
        In a process forked while the file was open, ``close`` only releases the child's copy.
        """
        with self._close_lock:
            if self._closed:
                return
            if self._inherited:
                self._closed = True
                self._finalizer.detach()
                self._io.close()
                return
            with self._cond:
                self._closing = True
            self._budget.wake()
            error: BaseException | None = None
            remove = False
            try:
                self._seq.wait_idle(self._release_jobs)
                if self._seq.error is None:
                    self._check_identity()
                    remove = self._finalize()
            except BaseException as exc:
                error = exc
            finally:
                with self._cond:
                    self._closed = True
                    self._cond.notify_all()
                self._release()
            if remove:
                os.unlink(self.path)
        with self._cond:
            self._raise_error()
        if error is not None:
            if isinstance(error, OSError) and not isinstance(error, WriterError):
                msg = f"finishing {self.path} failed: {error!r}; the file keeps its frames"
                raise WriterError(msg) from error
            raise error

    def _finalize(self) -> bool:
        """Finish the file; True when no frame was saved (the file is then removed)."""
        if self._app.frame_shape is None or not self._app.planes:
            warnings.warn(
                f"no frame was saved to {self.path}; the file was removed",
                MissingFramesWarning,
                stacklevel=4,
            )
            return True
        low, high = self._low, self._high
        if self._settings.shape is not None:
            low = (0, 0, 0)
            high = tuple(s - 1 for s in self._settings.shape)  # type: ignore[assignment]
        total = (high[0] - low[0] + 1) * (high[1] - low[1] + 1) * (high[2] - low[2] + 1)
        missing = total - len(self._app.planes)
        if missing:
            warnings.warn(
                f"{missing} of {total} planes of {self.path} were never saved and hold a "
                "blank frame",
                MissingFramesWarning,
                stacklevel=4,
            )
        self.blank_planes = finish(
            self._app,
            self._settings,
            low=low,
            high=high,
            codec=self._codec,
            dtype=self._dtype,
            profile=self.profile,
        )
        return False

    def __enter__(self) -> IJTiffFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        close_after_block(self.close, exc, str(self.path))

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"<IJTiffFile {str(self.path)!r} {state} {self.profile} {self._dtype.name} "
            f"{self._codec} shape(C,Z,T)={self.shape}>"
        )
