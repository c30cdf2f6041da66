"""IJTiffFile: the parallel, incremental, crash-safe ImageJ hyperstack writer.

One class composed of its stages, one module each:

- options and settings (:mod:`._settings`, :mod:`._profiles`, :mod:`._codecs`), checked here;
- frame preparation in the saving thread (:mod:`._frames`: coordinates and their caps, casts
  that never change values, metadata JSON; who owns the frame's memory);
- the process-wide in-flight budget and the compression pool (:mod:`._pool`,
  :mod:`._encoder`);
- the owner of the file's bytes (:mod:`._writer`: the hand-over, the writer thread, save
  order, the error latch) and its appender (:mod:`._appender`, :mod:`._io`);
- finishing at close (:mod:`._finish`) and reading back (:mod:`._readback`).

``save`` checks the frame and hands it over; by the codec:

- compressed: the frame (the writer's own copy unless it made the array itself) goes to the
  pool; the writer thread appends it in save order;
- compressed, ``keep_up`` and the budget full: the saving thread stores the frame
  uncompressed in the codec's format (a new buffer) and hands it over; it is appended at once,
  outside the save order;
- uncompressed: no copy; ``save`` hands over the caller's memory and returns once the writer
  thread has written it.

State: the fields set in ``__init__`` are the file's options (``_settings`` and ``_codec`` may
change until close, under the writer's lock, see the setters); the writer's own fields are
documented in :class:`~._writer.FileWriter`; ``_closed`` and ``_inherited`` are set under
``_close_lock`` (read without it: a stale read is re-checked under the writer's lock).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar, final

import numpy as np

from .._closing import ClosesAtBlockEnd
from .._values import require
from ..errors import (
    ConfigError,
    CoordinateError,
    ProfileError,
    WriterClosedError,
    WriterError,
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
from ._codecs import Codec, CompressionLike
from ._encoder import EncodeQueue
from ._finish import finish_file
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
    coordinate,
)
from ._frames import metadata_json as _metadata_json
from ._io import FileIO
from ._lock import open_output_marked
from ._ome import PlaneInfo, StageLabel
from ._profiles import DEFAULT, Profile, ProfileName
from ._readback import read_plane
from ._series import SeriesTable, series_index
from ._settings import Settings, optional_text
from ._tags import METADATA_TAG, Layout, Tag, TagsLike, normalize_tags
from ._view import OwnFile
from ._writer import FileWriter, Job, Kind

__all__ = ["IJTiffFile"]

_CALIBRATION_ALIASES = {
    "pxsize": "pixel_size_um",
    "deltaz": "z_step_um",
    "timeinterval": "interval_s",
}

_T = TypeVar("_T")

@final
class IJTiffFile(ClosesAtBlockEnd):
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
    pixel_size_um
        Pixel size in µm (tiffwrite's ``pxsize``, also accepted, is the same setting).
    z_step_um
        Z step in µm (tiffwrite's ``deltaz``).
    interval_s
        Time between time points in seconds (tiffwrite's ``timeinterval``).
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
    pxsize, deltaz, timeinterval
        tiffwrite's names of ``pixel_size_um``, ``z_step_um`` and ``interval_s`` (give one
        name of each, not both).

    Examples
    --------
    >>> with IJTiffFile("stack.tif", pixel_size_um=0.65, z_step_um=0.5, interval_s=2.0) as tif:
    ...     for t, z, c, frame in acquire():
    ...         tif.save(frame, c, z, t)

    """

    __slots__ = (
        "__weakref__",
        "_app",
        "_budget",
        "_cast",
        "_close_lock",
        "_closed",
        "_codec",
        "_dtype",
        "_encoder",
        "_extratags",
        "_finalizer",
        "_inherited",
        "_io",
        "_keep_up",
        "_layout",
        "_max_inflight",
        "_max_planes",
        "_negative",
        "_profile",
        "_series",
        "_settings",
        "_static",
        "_w",
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
        pixel_size_um: float | None = None,
        z_step_um: float | None = None,
        interval_s: float | None = None,
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
        pxsize: float | None = None,
        deltaz: float | None = None,
        timeinterval: float | None = None,
    ) -> None:
        calibration = _calibration(
            pixel_size_um=pixel_size_um,
            z_step_um=z_step_um,
            interval_s=interval_s,
            pxsize=pxsize,
            deltaz=deltaz,
            timeinterval=timeinterval,
        )
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
            pxsize=calibration[0],
            deltaz=calibration[1],
            timeinterval=calibration[2],
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
        io = open_output_marked(self.path, overwrite=overwrite)  # in use: NAME.tif.lock
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
        """The stages of an open file (also for :func:`~._repair.repair`'s resumed files)."""
        self._io = io
        self._close_lock = threading.Lock()
        self._closed = False
        self._inherited = False
        self._static: tuple[Tag, ...] | None = None
        self._series = SeriesTable()  # series > 0 (profile "ome"), series names and stages
        self.blank_planes = 0
        self._budget = _pool.budget()
        # the stages call back into the file through weak references: a file dropped unclosed
        # is collected (its finalizer then stops its writer), never kept alive by its own parts
        self._app = Appender(
            io, self._layout, _weak(self._static_tags), end=end, link_pos=link_pos, slots=slots
        )
        pool = _pool.acquire_pool()
        self._w = FileWriter(self._app, self._budget, _weak(self._start_encoding), self._series)
        self._encoder = EncodeQueue(pool, _pool.pool_workers(), self._codec, self._w.deliver)
        self._w.backlog = self._encoder.backlog
        self._finalizer = weakref.finalize(self, _pool.abandoned, self._w)
        _pool.register_file(self)

    def _start_encoding(self, jobs: list[Job]) -> None:
        self._encoder.put(jobs)

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
        """Hand a 2-D frame for plane (c, z, t) to the file; the buffer may be reused at once.

        Parameters
        ----------
        frame
            A 2-D array (Y, X), or an RGB frame (Y, X, 3), or anything ``numpy.asarray``
            turns into one (a view, a ``memoryview`` or other buffer, an object with
            ``__array_interface__`` or ``__array__``, a memory map); the file never reads it
            after ``save`` returns. The first frame makes the file grey or RGB; RGB frames are
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
        w = self._w
        if w.closing:
            raise self._closed_error()
        coord = self._coord(c, z, t)
        key: Key = coord
        if series.__class__ is not int or series:
            key = self._series_key(coord, series)
        declared = self._settings.shape
        if declared is not None and (
            coord[0] >= declared[0] or coord[1] >= declared[1] or coord[2] >= declared[2]
        ):
            msg = f"(c, z, t)={coord} is outside the declared shape (C, Z, T)={declared}"
            raise CoordinateError(msg)
        if key is coord and not self._series.planes:
            lo, hi = w.low, w.high
            if not (  # inside the span: it does not grow, its plane count was checked
                lo[0] <= coord[0] <= hi[0]
                and lo[1] <= coord[1] <= hi[1]
                and lo[2] <= coord[2] <= hi[2]
            ):
                low, high = w.span(coord)
                planes = (
                    (high[0] - low[0] + 1) * (high[1] - low[1] + 1) * (high[2] - low[2] + 1)
                )
                if planes > self._max_planes:  # raises, saying why
                    where = f"plane (c, z, t)={coord} of {self.path}"
                    check_plane_count(low, high, self._max_planes, where)
        else:
            self._series.check(key, w.low, w.high, self._max_planes, self.path, declared)
        # who owns the frame's memory decides the copy, never the input's type (see as_frame)
        arr, owned = as_frame(frame, self._dtype, self._cast)
        if arr.ndim == 3:  # RGB: 8 bits per sample, or 16 where the profile's readers show it
            self._profile.check_rgb(self._dtype)
        extra: list[Tag] = []
        if extratags is not None:
            extra += normalize_tags(extratags, bigtiff=self._layout.bigtiff)
        if metadata is not None:
            extra.append(Tag.ascii(METADATA_TAG, _metadata_json(metadata)))
        if plane is not None:
            info = PlaneInfo.of(plane)
            if info is not None:
                extra.append(info.tag())
        if self._series.tags:
            extra += self._series.extra(key)
        codec = self._codec
        compressed = codec.compressed
        bound = size_bound(self._app, arr.nbytes, compressed, extra)
        job = Job(key, Kind.QUEUED if compressed else Kind.READY, bound, tuple(extra))
        charge = arr.nbytes + bound
        shape = arr.shape
        try:
            if self._keep_up and compressed:
                if not self._budget.try_acquire(job, charge, self._full):
                    # the pool is behind: store this frame uncompressed (in the codec's own
                    # format, a new buffer) instead of waiting for the pool
                    job.kind = Kind.STORED
                    job.data = codec.encode_stored(arr)
                    job.digest = data_key(job.data)
                    self._charge(job, len(job.data) + bound, over=2)
            else:
                self._charge(job, charge)
            if job.kind is not Kind.STORED:
                # the caller may fill its buffer again once save returns: the job holds a
                # copy (QUEUED: compressed on the pool; READY: written as it is)
                own = arr if owned else _pool.spares().copy(arr)
                job.arr = own  # given back to the spares once encoded or written
                if job.kind is Kind.READY:
                    job.data = codec.encode(own)  # a byte view of the copy ("none")
                    # keyed here, not by the writer thread: its write is an uncompressed
                    # stream's serial part, and this thread waits on nothing meanwhile
                    job.digest = data_key(job.data)
                del own
            del arr
            with w.lock:  # the hand-over: checks, then one store
                w.raise_error(self.path)
                if w.closing:
                    raise self._closed_error()
                if w.in_flight(key) or key in self._app.planes:
                    msg = f"plane {self._where(key)} was already saved to {self.path}"
                    raise CoordinateError(msg)
                self._app.check_frame_shape(shape, compressed=compressed)
                if not self._layout.bigtiff:
                    self._check_classic_room(key, bound)
                start = w.hand_over(job)
            if start:
                w.kick()
        except BaseException:
            w.withdraw(job)
            raise

    def _charge(self, job: Job, nbytes: int, over: int = 1) -> None:
        """Charge the budget (waiting for room); raise if the file fails or closes meanwhile."""
        w = self._w
        blocked = self._full if over == 1 else _never
        if not self._budget.acquire(job, nbytes, blocked, self._stopping, over=over):
            with w.lock:
                w.raise_error(self.path)
            raise self._closed_error()

    def _stopping(self) -> bool:
        """The file closes or has failed: a save waiting for the budget gives up."""
        return self._w.closing or self._w.error is not None

    def _check_classic_room(self, key: Key, bound: int) -> None:
        """Refuse a frame that would push a classic file past 4 GiB (writer's lock held)."""
        w = self._w
        declared = self._settings.shape
        lo, hi = w.span(key)
        span = declared or (hi[0] - lo[0] + 1, hi[1] - lo[1] + 1, hi[2] - lo[2] + 1)
        inflight = w.inflight_bytes + sum(j.bound for j in w.inbox.values())
        check_classic_room(self._app, span, self._dtype.itemsize, inflight, bound)

    def _full(self) -> bool:
        return self._max_inflight is not None and self._w.pending >= self._max_inflight

    def _static_tags(self) -> tuple[Tag, ...]:
        """Tags every IFD of this file carries (rebuilt when a setting changed)."""
        with self._w.lock:
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
        w = self._w
        w.kick()
        with w.lock:
            while True:
                packed = self._app.planes.get(key)
                if packed is not None:
                    break
                if self._inherited:  # in flight in the parent: never appended in this child
                    raise self._closed_error()
                if not w.in_flight(key) or self._closed:
                    msg = f"plane {self._where(key)} was not saved to {self.path}"
                    raise CoordinateError(msg)
                w.raise_error(self.path)
                w.cond.wait()
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
        w = self._w
        if self._closed or w.closing:
            raise self._closed_error()
        w.wait_idle()
        with w.lock:
            w.raise_error(self.path)
        self._check_identity()
        try:
            self._io.sync()
        except (OSError, ValueError) as exc:
            if w.closing:
                raise self._closed_error() from None
            msg = f"syncing {self.path} failed: {exc}"
            raise WriterError(msg) from exc

    def close(self) -> None:
        """Finish the hyperstack (canonical plane order, ImageJ description) and close.

        Waits for frames in flight; a ``save`` in another thread either lands before close
        finishes or raises :class:`WriterClosedError`. Planes never saved are filled with one
        shared blank frame, with a :class:`MissingFramesWarning`. If a frame failed, the file
        is left as the valid TIFF it is (see :func:`mmtiffsink.repair`) and
        :class:`WriterError` raised; also when the file was deleted or replaced meanwhile.
        In a process forked while the file was open, ``close`` only releases the child's copy.
        Interrupted (KeyboardInterrupt) while it waits for the frames in flight, the file stays
        open and refuses saves; the frames keep landing, and ``close`` again finishes it.
        """
        w = self._w
        with self._close_lock:
            if self._closed:
                return
            if self._inherited:
                self._closed = True
                self._finalizer.detach()
                self._io.close()
                return
            with w.lock:
                w.closing = True
            self._budget.wake()
            # an interrupt while waiting propagates and leaves the file open, refusing saves:
            # the frames in flight still land, and close again finishes the file
            w.wait_idle()
            w.stop()  # the writer thread is joined: this thread owns the bytes from here
            error: BaseException | None = None
            remove = False
            try:
                if w.error is None:
                    self._check_identity()
                    remove = self._finalize()
            except BaseException as exc:
                error = exc
            finally:
                with w.lock:
                    self._closed = True
                    w.cond.notify_all()
                self._release()
            if remove:
                os.unlink(self.path)
        if error is not None and not isinstance(error, Exception):
            raise error  # an interrupt while finishing: itself, not what followed from it
        with w.lock:
            w.raise_error(self.path)
        if error is not None:
            if isinstance(error, OSError) and not isinstance(error, WriterError):
                msg = f"finishing {self.path} failed: {error!r}; the file keeps its frames"
                raise WriterError(msg) from error
            raise error

    def _finalize(self) -> bool:
        """Finish the file; True when no frame was saved (the file is then removed)."""
        w = self._w
        blanks = finish_file(
            self._app,
            self._settings,
            low=w.low,
            high=w.high,
            series=self._series,
            codec=self._codec,
            dtype=self._dtype,
            profile=self.profile,
        )
        self.blank_planes = blanks or 0
        return blanks is None

    def _release(self) -> None:
        """Give back the pool and the descriptor (once; the writer thread has ended)."""
        self._finalizer.detach()
        try:
            self._io.close()
        finally:
            if not self._inherited:
                _pool.release_pool()

    def _detach_after_fork(self) -> None:
        """In a fork child: this file belongs to the parent; the child never writes it."""
        self._close_lock = threading.Lock()
        self._w.detach_after_fork()
        self._io.reset_lock_after_fork()
        self._inherited = True  # the child's pool count was reset: nothing to release

    def _check_identity(self) -> None:
        if not self._io.is_at_path():
            msg = f"{self.path} was deleted or replaced while it was written; its frames are lost"
            raise WriterError(msg)

    def _closed_error(self) -> WriterClosedError:
        why = " (it was opened before this process forked)" if self._inherited else ""
        msg = f"{self.path} is closed{why}; cannot save more frames"
        return WriterClosedError(msg)

    def _closing_what(self) -> str:
        return str(self.path)

    # ---------------------------------------------------------------- properties
    @property
    def dtype(self) -> np.dtype[Any]:
        """The file's pixel type."""
        return self._dtype

    @property
    def profile(self) -> ProfileName:
        """``"bigtiff"``, ``"imagej"`` or ``"ome"``."""
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
        """``(C, Z, T)`` of series 0: declared, or implied by the frames saved so far."""
        if self._settings.shape is not None:
            return self._settings.shape
        w = self._w
        if w.high == NONE_SAVED:
            return (0, 0, 0)
        lo, hi = w.low, w.high
        return (hi[0] - lo[0] + 1, hi[1] - lo[1] + 1, hi[2] - lo[2] + 1)

    @property
    def series_shapes(self) -> dict[int, Coord]:
        """Series -> ``(C, Z, T)``, of every series that has frames so far."""
        with self._w.lock:
            return self._series.shapes(self._w.low, self._w.high, self._settings.shape)

    @property
    def frames_written(self) -> int:
        """Frames whose IFD is linked into the file (durable on the OS level)."""
        return len(self._app.planes)

    @property
    def frames_kept_up(self) -> int:
        """Frames ``keep_up`` stored uncompressed (the pool was behind)."""
        return self._w.frames_kept_up

    def _setting(name: str, field: str, doc: str) -> Any:  # type: ignore[misc]
        def fget(self: IJTiffFile) -> float | None:
            return getattr(self._settings, field)  # type: ignore[no-any-return]

        def fset(self: IJTiffFile, value: float | None) -> None:
            checked = require(name, value)
            with self._w.lock:
                self._check_settable(name)
                setattr(self._settings, field, checked)
                self._static = None

        return property(fget, fset, doc=doc)

    pixel_size_um = _setting(
        "pixel_size_um", "pxsize", "Pixel size in µm (``None``: none). Settable until close."
    )
    z_step_um = _setting("z_step_um", "deltaz", "Z step in µm. Settable until close.")
    interval_s = _setting(
        "interval_s", "timeinterval", "Time between time points in s. Settable until close."
    )
    # tiffwrite's names of the same settings (< 2024.10 and >= 2024.10)
    pxsize = _setting("pxsize", "pxsize", "tiffwrite's name of :attr:`pixel_size_um`.")
    deltaz = _setting("deltaz", "deltaz", "tiffwrite's name of :attr:`z_step_um`.")
    timeinterval = _setting("timeinterval", "timeinterval", "tiffwrite's :attr:`interval_s`.")
    px_size = _setting("px_size", "pxsize", "tiffwrite's name of :attr:`pixel_size_um`.")
    delta_z = _setting("delta_z", "deltaz", "tiffwrite's name of :attr:`z_step_um`.")
    time_interval = _setting("time_interval", "timeinterval", "tiffwrite's :attr:`interval_s`.")
    del _setting

    def _set(self, name: str, setter: Any, value: Any) -> None:
        with self._w.lock:
            self._check_settable(name)
            setter(value)
            self._static = None

    def _check_settable(self, name: str) -> None:
        """Settings go into the file when it is finished: after that, a change would be lost."""
        if self._closed or self._w.closing:
            msg = (
                f"{self.path} is {'closed' if self._closed else 'closing'}: {name} can no longer "
                "change (settings are written when the file is finished)"
            )
            raise WriterClosedError(msg)

    @property
    def channel_names(self) -> list[str] | None:
        """Channel names, in channel order. Settable until close."""
        names = self._settings.channel_names
        return None if names is None else list(names)

    @channel_names.setter
    def channel_names(self, names: Sequence[str] | None) -> None:
        self._set("channel_names", self._settings.set_channel_names, names)

    @property
    def colors(self) -> list[Any] | None:
        """One color per channel. Settable until close."""
        colors = self._settings.colors
        return None if colors is None else list(colors)

    @colors.setter
    def colors(self, colors: Sequence[str | Sequence[float]] | None) -> None:
        self._set("colors", self._settings.set_colors, colors)

    @property
    def colormap(self) -> str | None:
        """One colorcet colormap for every channel. Settable until close."""
        return self._settings.colormap

    @colormap.setter
    def colormap(self, name: str | None) -> None:
        self._set("colormap", self._settings.set_colormap, name)

    @property
    def image_name(self) -> str | None:
        """OME-XML's Image Name (None: the file name). Settable until close."""
        return self._settings.image_name

    @image_name.setter
    def image_name(self, name: str | None) -> None:
        text = optional_text("image_name", name)
        self._set("image_name", lambda v: setattr(self._settings, "image_name", v), text)

    @property
    def acquisition_date(self) -> str | None:
        """OME-XML's AcquisitionDate, ISO 8601 text (set a datetime or text). Settable."""
        return self._settings.acquisition_date

    @acquisition_date.setter
    def acquisition_date(self, value: Any) -> None:
        self._set("acquisition_date", self._settings.set_acquisition_date, value)

    @property
    def annotations(self) -> dict[str, str] | None:
        """Key -> text pairs kept as an OME MapAnnotation. Settable until close."""
        found = self._settings.annotations
        return None if found is None else dict(found)

    @annotations.setter
    def annotations(self, value: Any) -> None:
        self._set("annotations", self._settings.set_annotations, value)

    @property
    def comment(self) -> str | None:
        """Free text stored in the ImageJ ``Info`` field. Settable until close."""
        return self._settings.comment

    @comment.setter
    def comment(self, text: str | None) -> None:
        checked = optional_text("comment", text)
        self._set("comment", lambda v: setattr(self._settings, "comment", v), checked)

    def set_series(
        self,
        series: int,
        *,
        name: str | None = None,
        stage: StageLabel | Mapping[str, Any] | None = None,
    ) -> None:
        """Name a series (an OME Image) and give it a stage label; settable until close.

        Only for ``profile="ome"``. Frames of the series saved afterwards carry the name and
        label (so :func:`~mmtiffsink.repair` keeps them); the OME-XML written at close uses
        the last values set.

        Parameters
        ----------
        series
            The series, from 0, as given to :meth:`save`.
        name
            The Image's Name (None: the file name, with ``" #n"`` for series ``n > 0``).
        stage
            Its StageLabel: a :class:`StageLabel` or a dict with ``name`` and ``x``, ``y``,
            ``z`` in µm (each may be missing); its name defaults to ``name``.

        Raises
        ------
        CoordinateError
            ``series`` is not an integer from 0 below :data:`~mmtiffsink.limits.MAX_SERIES`.
        ConfigError
            A name that is not text, or stage coordinates that are not finite numbers.
        ProfileError
            The file's profile is not ``"ome"``.

        """
        s = series_index(series, self._profile)
        if not self._profile.ome:
            msg = (
                f"series names and stage labels are OME-XML; {self.path} has profile "
                f"{self.profile!r}: use profile='ome'"
            )
            raise ProfileError(msg)
        with self._w.lock:
            if self._w.closing:
                raise self._closed_error()
            self._series.set_label(s, name, stage)

    def _series_key(self, coord: Coord, series: Any) -> Key:
        return self._series.key(coord, series, self._profile)

    @staticmethod
    def _where(key: Key) -> str:
        where = f"(c, z, t)={key[:3]}"
        return where if len(key) == 3 else f"{where} of series {key[3]}"

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
        with self._w.lock:
            if czt is None:
                if self._w.pending or self._w.inbox or self._app.planes:
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
            if self._w.in_flight(coord) or coord in self._app.planes:
                msg = f"plane {coord} was already saved: pass its tags to save(..., extratags=)"
                raise ConfigError(msg)
            self._w.plane_tags.setdefault(coord, []).extend(tags)

    def _pick_codec(self, compression: Any, predictor: bool, shape_known: bool) -> Codec:
        """The profile's codec for ``compression`` (with the predictor), checked for the dtype."""
        return self._profile.codec(
            compression, predictor=predictor, dtype=self._dtype, shape_known=shape_known
        )

    def set_compression(self, compression: int | str, level: int | None = None) -> None:
        """Change the codec before the first save (tiffwrite's call form: code or name, level).

        The file's predictor stays on for a new codec (not for ``"none"``).
        """
        with self._w.lock:
            if self._w.pending or self._w.inbox or self._app.planes:
                msg = "the compression can only be changed before the first save"
                raise ConfigError(msg)
            codec = Codec.parse(compression if level is None else (compression, level))
            predictor = self._codec.predictor and codec.compressed
            self._codec = self._pick_codec(codec, predictor, self._settings.shape is not None)
            self._encoder.codec = self._codec
            if self._app.slots is not None and self._codec.compressed:
                self._app.slots = None
            self._static = None

    def _coord(self, c: Any, z: Any, t: Any) -> Coord:
        if (  # plain ints (not bool: its class is bool), not negative: the common case
            c.__class__ is int
            and z.__class__ is int
            and t.__class__ is int
            and c >= 0
            and z >= 0
            and t >= 0
        ):
            return (c, z, t)
        neg = self._negative
        return (
            coordinate("c", c, negative=neg),
            coordinate("z", z, negative=neg),
            coordinate("t", t, negative=neg),
        )

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"<IJTiffFile {str(self.path)!r} {state} {self.profile} {self._dtype.name} "
            f"{self._codec} shape(C,Z,T)={self.shape}>"
        )


def _weak(method: Callable[..., _T]) -> Callable[..., _T]:
    """``method`` (bound to a file) called through a weak reference to its file."""
    ref = weakref.WeakMethod(method)

    def call(*args: Any, **kwargs: Any) -> _T:
        bound = ref()
        if bound is None:
            msg = "the file was collected without close(); its frames in flight are lost"
            raise WriterClosedError(msg)
        return bound(*args, **kwargs)

    return call


def _never() -> bool:
    return False


def _calibration(**given: Any) -> tuple[float | None, float | None, float | None]:
    """Pixel size, z step and interval from ``IJTiffFile``'s names or tiffwrite's aliases."""
    for alias, name in _CALIBRATION_ALIASES.items():
        if given[alias] is not None:
            if given[name] is not None:
                msg = f"give {name} or tiffwrite's {alias}, not both"
                raise ConfigError(msg)
            given[name] = given[alias]
    return (
        require("pixel_size_um", given["pixel_size_um"]),
        require("z_step_um", given["z_step_um"]),
        require("interval_s", given["interval_s"]),
    )
