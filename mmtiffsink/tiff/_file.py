"""IJTiffFile: the parallel, incremental, crash-safe ImageJ hyperstack writer.

How bytes reach the disk, one module per stage
----------------------------------------------
``save`` checks the coordinate (:mod:`._frames`: caps, casts that never change values,
metadata JSON) in the caller's thread and takes room in the process-wide in-flight budget
(:mod:`._pool`). Then, by the codec:

- compressed: the frame is copied and put in the file's encode queue (:mod:`._encoder`),
  from which pool tasks take batches; the file's :class:`~._order.Sequencer` puts encoded
  frames back in save order and gives the appender role to one thread at a time, outside the
  saving lock;
- compressed, ``keep_up`` and the budget full: the saving thread stores the frame at once,
  uncompressed in the codec's format, out of the save order (``Sequencer.append_unordered``);
- uncompressed: no copy; the saving thread appends the caller's array before ``save``
  returns.

The :class:`~._appender.Appender` writes a frame's bytes and IFD at the end of the file and
links it (:mod:`._io` does the portable positional I/O). ``flush`` and ``close``
(:mod:`._lifecycle`) wait for the frames in flight; at close :mod:`._finish` fills
never-saved planes and writes the canonical chain with the ImageJ description or OME-XML;
:mod:`._readback` reads planes back on a descriptor of its own.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, final

import numpy as np

from .._closing import close_after_block
from ..errors import (
    ConfigError,
    CoordinateError,
)
from ..limits import MAX_PLANES
from . import _pool
from ._appender import (
    Appender,
    check_classic_room,
    data_key,
    size_bound,
    static_tags,
)
from ._codecs import CompressionLike
from ._encoder import EncodeQueue
from ._frames import (
    NONE_SAVED,
    Cast,
    Coord,
    Key,
    as_frame,
    check_cap,
    check_cast,
    check_plane_count,
    check_shape,
    widen,
)
from ._frames import metadata_json as _metadata_json
from ._io import FileIO, open_output
from ._lifecycle import FileLifecycle
from ._ome import PlaneInfo
from ._order import Job, Sequencer
from ._profiles import DEFAULT, Profile, ProfileName
from ._readback import read_plane
from ._series import SeriesTable
from ._settings import Settings
from ._tags import METADATA_TAG, Layout, Tag, TagsLike, normalize_tags
from ._view import OwnFile

__all__ = ["IJTiffFile"]


@final
class IJTiffFile(FileLifecycle):
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
        RGB frames (Y, X, 3) need ``"uint8"`` (or ``"uint16"`` in ``bigtiff`` and ``ome``).
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
    compression, predictor
        ``"zstd"``, ``"zstd:9"``, ``("zstd", 9)``, ``"deflate"`` or ``None`` (default: zstd 3,
        deflate 1 for ``imagej``); ``predictor=True`` (or ``"zstd:1+predictor"``) adds TIFF's
        differencing predictor: integer pixels, ``bigtiff``/``ome`` (ImageJ reads it wrongly).
    profile
        ``"bigtiff"`` (any size; Fiji/Bio-Formats, tifffile), ``"imagej"`` (classic TIFF of
        at most 4 GiB that plain ImageJ 1.x opens; no compression or deflate) or ``"ome"``
        (an OME-TIFF: BigTIFF with OME-XML, written at close; name it ``.ome.tif``).
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
    keep_up
        Never make ``save`` wait for the compression pool: when the in-flight budget is
        full (the pool is behind the source), the frame is stored uncompressed, in the
        codec's own format (zstd raw blocks, deflate stored blocks: the file's Compression
        tag stays one, so every reader reads it), by the saving thread at once.
        ``frames_kept_up`` counts them. Default off (``save`` waits: back-pressure, the
        smallest file); the acquisition sinks turn it on.
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
        Accept negative coordinates (e.g. z below the focus): an axis with negative
        coordinates is numbered from its smallest one at close (-3..3 become planes 0..6).
        Only without ``shape``.
    image_name, acquisition_date, annotations
        OME-XML's Image Name (default: the file name), AcquisitionDate (a datetime or ISO
        8601 text; default for ``"ome"``: when the file was created) and key -> text pairs
        kept as a MapAnnotation. Settable until close.

    Examples
    --------
    >>> with IJTiffFile("stack.tif", pxsize=0.65, deltaz=0.5, timeinterval=2.0) as tif:
    ...     for t, z, c, frame in acquire():
    ...         tif.save(frame, c, z, t)

    """

    __slots__ = ()

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
        predictor: bool = False,
        overwrite: bool = True,
        max_inflight: int | None = None,
        keep_up: bool = False,
        cast: Cast = "exact",
        max_planes: int = MAX_PLANES,
        allow_negative: bool = False,
        image_name: str | None = None,
        acquisition_date: Any = None,
        annotations: Mapping[str, str] | None = None,
    ) -> None:
        self._profile = Profile.get(profile)
        self._layout = Layout(bigtiff=self._profile.bigtiff)
        self._dtype = self._profile.dtype(dtype)
        self._cast = check_cast(cast)
        self._max_planes = check_cap(max_planes)
        declared = check_shape(shape, self._max_planes)
        self._codec = self._pick_codec(compression, predictor, shape_known=declared is not None)
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
            image_name=image_name,
            acquisition_date=acquisition_date,
            annotations=annotations,
        )
        if self._profile.ome and acquisition_date is None:
            self._settings.set_acquisition_date(datetime.now(timezone.utc).astimezone())
        self._extratags = normalize_tags(extratags, bigtiff=self._layout.bigtiff)
        if max_inflight is not None and (
            isinstance(max_inflight, bool) or not isinstance(max_inflight, int) or max_inflight < 1
        ):
            msg = f"max_inflight is a number of frames >= 1, got {max_inflight!r}"
            raise ConfigError(msg)
        self._max_inflight = max_inflight
        if not isinstance(keep_up, bool):
            msg = f"keep_up is True or False, got {keep_up!r}"
            raise ConfigError(msg)
        self._keep_up = keep_up
        self.path = Path(path)
        io = open_output(self.path, overwrite=overwrite)
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
    def _setup(self, io: FileIO, *, end: int, link_pos: int, slots: Coord | None) -> None:
        self._io = io
        self._lock = threading.Lock()  # see Sequencer: blocks hold the lock, never the condition
        self._cond = threading.Condition(self._lock)
        self._close_lock = threading.Lock()
        self._app = Appender(
            io, self._layout, self._static_tags, end=end, link_pos=link_pos, slots=slots
        )
        self._seq = Sequencer(
            self._lock,
            self._cond,
            self._append_job,
            self._landed,
            self._job_finished,
            self._handoff,
        )
        self._claimed: set[Key] = set()  # saved, not yet in the file (in flight)
        # the span of the saved coordinates: from 0 (or, with negative coordinates, from the
        # smallest) to the largest
        self._low: Coord = (0, 0, 0)
        self._high: Coord = NONE_SAVED
        self._inflight_bytes = 0
        self._closing = False
        self._closed = False
        self._inherited = False
        self._static: tuple[Tag, ...] | None = None
        self._plane_tags: dict[Key, list[Tag]] = {}
        self._series = SeriesTable()  # series > 0 (profile "ome"), series names and stages
        self.blank_planes = 0
        self.frames_kept_up = 0
        self._budget = _pool.budget()
        self._pool = _pool.acquire_pool()
        self._encoder = EncodeQueue(
            self._lock, self._pool, _pool.pool_workers(self._pool), self._encode, self._deposit
        )
        self._holds_pool = [True]
        self._finalizer = weakref.finalize(self, _pool.abandoned, io, self._holds_pool)
        _pool.register_file(self)

    # ---------------------------------------------------------------- saving
    def save(
        self,
        frame: Any,
        c: int,
        z: int,
        t: int,
        extratags: TagsLike = None,
        metadata: Mapping[str, Any] | None = None,
        plane: PlaneInfo | Mapping[str, float | None] | None = None,
        series: int = 0,
    ) -> None:
        """Queue a 2-D frame for plane (c, z, t) and return; the buffer may be reused at once.

        Parameters
        ----------
        frame
            A 2-D array (Y, X), or an RGB frame (Y, X, 3), or anything ``numpy.asarray``
            turns into one. The first frame makes the file grey or RGB; RGB frames are
            8 bits per sample (``dtype="uint8"``), or 16 (``"uint16"``, Micro-Manager's
            64bitRGB) in the ``bigtiff`` and ``ome`` profiles.
        c, z, t
            The plane's channel, slice and time point, from 0.
        extratags
            Tags for this frame only (``{name_or_code: value}`` or :class:`Tag` objects).
        metadata
            A JSON-able dict stored in this frame's tag 51123 (Micro-Manager's convention).
        plane
            What is known of this plane's acquisition, for the OME-XML Plane: a
            :class:`PlaneInfo` or a dict of its fields (``delta_t`` and ``exposure_time`` in
            s, ``position_x/y/z`` in µm). Stored in the frame's IFD.
        series
            The image (e.g. position) the plane belongs to, from 0; above 0 only for
            ``profile="ome"``, whose file then holds one OME Image per series (see
            :meth:`set_series`). Each series has its own (C, Z, T).

        Raises
        ------
        FrameError
            Wrong dimensionality, shape or dtype, a grey frame into an RGB file or an RGB
            frame into a grey one, a cast that would change values, or
            metadata that cannot be stored as JSON.
        CoordinateError
            Negative, out-of-shape, repeated or absurd coordinates (beyond ``max_planes``)
            or series.
        ProfileError
            RGB samples of a type the profile's readers cannot show (16-bit RGB in
            ``imagej``, any RGB dtype but uint8/uint16); the frame would push an ``imagej``
            file past 4 GiB; a series above 0 in a file whose profile is not ``"ome"``.
        WriterClosedError
            The file is closed (or closing in another thread).
        WriterError
            An earlier frame failed (I/O error, full disk); the cause is chained.

        """
        if self._closing:
            raise self._closed_error()
        coord = self._coord(c, z, t)
        key: Key = coord
        if series.__class__ is not int or series:
            key = self._series_key(coord, series)
        declared = self._settings.shape
        if declared is not None and any(v >= s for v, s in zip(coord, declared, strict=True)):
            msg = f"(c, z, t)={coord} is outside the declared shape (C, Z, T)={declared}"
            raise CoordinateError(msg)
        if key is coord and not self._series.planes:
            low, high = widen(self._low, self._high, coord)
            where = f"plane (c, z, t)={coord} of {self.path}"
            check_plane_count(low, high, self._max_planes, where)
        else:
            args = (self._low, self._high, self._max_planes, self.path, declared)
            self._series.check(key, *args)
        # frames written before save returns (uncompressed, or stored by keep_up) need no copy
        # of the caller's memory; a frame queued for the pool is copied below unless the
        # writer made it (a cast, a contiguous copy): whatever the input's type, memory the
        # writer did not make may be the caller's, to be filled again once save returns
        compressed = self._codec.compressed
        arr, owned = as_frame(frame, self._dtype, self._cast)
        if arr.ndim == 3:  # RGB: 8 bits per sample, or 16 where the profile's readers show it
            self._profile.check_rgb(self._dtype)
        extra = list(normalize_tags(extratags, bigtiff=self._layout.bigtiff))
        if metadata is not None:
            extra.append(Tag.ascii(METADATA_TAG, _metadata_json(metadata)))
        info = PlaneInfo.of(plane)
        if info is not None:
            extra.append(info.tag())
        if self._series.tags:
            extra += self._series.extra(key)
        bound = size_bound(self._app, arr.nbytes, self._codec.compressed, extra)
        charge = arr.nbytes + bound
        held = [0]  # the budget bytes this call took, until a job carries them
        stored = False
        job: Job | None = None
        try:
            if self._keep_up and compressed:
                # the pool is behind: store this frame (uncompressed, in the codec's format)
                # in this thread now instead of waiting for room in the budget
                stored = not self._budget.try_acquire(charge, self._full, held)
            elif not self._budget.acquire(
                charge, self._full, lambda: self._closing or self._seq.error is not None, held
            ):
                with self._lock:
                    self._raise_error()
                raise self._closed_error()
            with self._lock:
                self._seq.free_orphans()
                self._raise_error()
                if self._closing:
                    raise self._closed_error()
                if key in self._claimed or key in self._app.planes:
                    msg = f"plane {self._where(key)} was already saved to {self.path}"
                    raise CoordinateError(msg)
                app = self._app
                app.check_frame_shape(arr.shape, compressed=self._codec.compressed)
                if not self._layout.bigtiff:
                    lo, hi = widen(self._low, self._high, coord)
                    span = declared or (hi[0] - lo[0] + 1, hi[1] - lo[1] + 1, hi[2] - lo[2] + 1)
                    itemsize = self._dtype.itemsize
                    check_classic_room(app, span, itemsize, self._inflight_bytes, bound)
                extra += self._plane_tags.pop(key, [])
                self._claimed.add(key)
                self._extend(key)
                self._inflight_bytes += bound
                if stored:
                    job = self._seq.reserve_unordered(key, bound, tuple(extra))
                else:
                    job = self._seq.reserve(key, held, bound, tuple(extra))
            if stored:
                self._store_now(job, arr)
            elif not compressed:
                # nothing to compress: appending here costs less than a hand-off to the pool;
                # the frame (maybe the caller's own array) is in the file before save returns
                self._process(job, arr)
                del arr
                self._seq.wait_passed(job)
                with self._lock:
                    self._raise_error()
            else:
                if not owned:  # the caller may reuse its buffer as soon as save returns
                    arr = np.array(arr, order="C", copy=True)
                with self._lock:  # to the file's encode queue (see _encoder): a worker deposits
                    self._encoder.put(job, arr)
                    self._seq.handed(job)
                del arr
                self._encoder.start()
        except BaseException:
            self._abandon(key, job, held)
            raise

    def _abandon(self, key: Key, job: Job | None, held: list[int]) -> None:
        """A save failed or was interrupted: free what it holds (see Sequencer.abandon)."""
        with self._lock:
            if job is None:  # reserved, and the interrupt struck before ``job`` was set?
                job = self._seq.owned(key)
        if job is not None:
            self._seq.abandon(job)  # a job gives its budget bytes back when its turn passes
        nbytes, held[0] = held[0], 0
        if nbytes:  # taken, and no job carries them
            self._budget.release(nbytes)

    def _full(self) -> bool:
        return self._max_inflight is not None and self._seq.pending >= self._max_inflight

    def _extend(self, key: Key) -> None:
        if len(key) == 3:
            self._low, self._high = widen(self._low, self._high, (key[0], key[1], key[2]))
        else:
            self._series.extend(key)

    def _encode(self, job: Job, arr: np.ndarray) -> None:
        """Compress and hash one frame into its job (a pool worker); failures go in the job."""
        try:
            job.data = self._codec.encode(arr)
            job.digest = data_key(job.data)
        except BaseException as exc:  # reported to the caller on save/flush/close
            job.error = exc

    def _store_now(self, job: Job, arr: np.ndarray) -> None:
        """keep_up: append a frame uncompressed in this thread, out of the save order."""
        try:
            job.data = self._codec.encode_stored(arr)
            job.digest = data_key(job.data)
        except Exception as exc:  # reported below, as for any frame
            job.error = exc
        del arr
        self._seq.append_unordered(job)
        with self._lock:
            self._raise_error()

    def _handoff(self) -> None:
        """Have a worker append the parked jobs (a thread gave up the role leaving some)."""
        with contextlib.suppress(Exception):  # no pool (shutting down): close appends them
            self._pool.submit(self._pump)

    def _pump(self) -> None:
        self._seq.pump()

    def _deposit(self, jobs: list[Job]) -> None:
        self._seq.deposit_many(jobs)

    def _process(self, job: Job, arr: np.ndarray) -> None:
        """Store one uncompressed frame in the saving thread, then take its turn."""
        try:
            job.data = self._codec.encode(arr)
            del arr
            job.digest = data_key(job.data)
        except Exception as exc:  # reported to the caller on save/flush/close
            job.error = exc
        self._seq.deposit(job)

    def _append_job(self, job: Job) -> None:
        self._app.append(job.coord, job.data, job.digest, job.extra)

    def _landed(self, job: Job) -> bool:
        return job.coord in self._app.planes

    def _job_finished(self, job: Job, landed: bool) -> None:
        """A job's turn passed (lock held): it gives back its budget bytes, here and once.

        Here, not by whoever ran the sequencer: an exception (an interrupt in the saving
        thread) would lose the list of passed jobs, and their bytes with it.
        """
        if job.charge:  # may run twice (see Sequencer.pump): every step is idempotent
            self._budget.release(job.charge)
            job.charge = 0
        self._inflight_bytes -= job.bound
        job.bound = 0
        self._claimed.discard(job.coord)
        if landed and job.unordered:
            self.frames_kept_up += 1
        job.data = b""

    def _static_tags(self) -> tuple[Tag, ...]:
        """Tags every IFD of this file carries (rebuilt when a setting changed)."""
        with self._lock:
            if self._static is None:
                args = (self._dtype, self._codec, self._settings, self.profile, self._extratags)
                self._static = static_tags(self._app, *args)
            return self._static

    # ---------------------------------------------------------------- reading back
    def read_frame(
        self, c: int, z: int, t: int, series: int = 0
    ) -> tuple[np.ndarray, dict[str, Any] | None]:
        """Read back a saved plane (of ``series``) and its metadata, once it is in the file.

        Works while the file is written and after :meth:`close`, on a descriptor of its own.
        Reads only this plane: memory stays flat.

        Returns
        -------
        image : numpy.ndarray
            The frame as stored: (Y, X), or (Y, X, 3) in an RGB file.
        metadata : dict or None
            The frame's ``metadata`` (tag 51123), or None when it had none.

        Raises
        ------
        CoordinateError
            The plane was never saved.
        WriterError
            Writing failed before the plane reached the file.

        """
        key = self._series_key(self._coord(c, z, t), series)
        self._encoder.kick()
        while True:
            with self._lock:
                packed = self._app.planes.get(key)
                if packed is not None:
                    break
                if key not in self._claimed or self._closed:
                    msg = f"plane {self._where(key)} was not saved to {self.path}"
                    raise CoordinateError(msg)
                if self._inherited:  # in flight in the parent: never appended in this child
                    raise self._closed_error()
                self._raise_error()
                if not self._seq.can_pump():
                    self._cond.wait()
                    continue
            self._seq.pump()
        assert self._app.frame_shape is not None
        return read_plane(
            self.path, self._layout, packed, self._codec, self._dtype, self._app.frame_shape
        )

    def view(self, series: int = 0) -> OwnFile:
        """A live, read-only view of the file (of ``series``) as a (T, Z, C, Y, X) array.

        It follows the file as frames land: each linked frame makes the view read the new
        IFDs at its next use and emit its ``coords_changed`` signal, in the writer's thread.
        Reads the file on a descriptor of its own (compressed files too) and stays usable
        after :meth:`close`. See :func:`mmtiffsink.open` for what a view offers.
        """
        view = OwnFile(self.path, series)
        view.follow_writer()
        ref = weakref.ref(view)

        def linked(key: Key) -> None:
            found = ref()
            if found is None or found.closed:
                self._app.listeners.remove(linked)
            elif (len(key) == 3 and series == 0) or (len(key) == 4 and key[3] == series):
                found.frame_linked(key)

        self._app.listeners.append(linked)
        return view

    def __enter__(self) -> IJTiffFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        close_after_block(self.close, exc, str(self.path))
