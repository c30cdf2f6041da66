"""TiffSink: images -> one ImageJ hyperstack TIFF per position.

Every image arrives as a neutral :class:`~mmtiffsink.sink.Frame` (:meth:`TiffSink.append`; or
with Micro-Manager metadata, :meth:`TiffSink.put`, read by :func:`~mmtiffsink.sink.mm_frame`);
:class:`~mmtiffsink.sink.AxisMapper` turns its axes into a file key (position, camera, ...) and a
(c, z, t) place. One :class:`~mmtiffsink.tiff.IJTiffFile` is opened per file key, lazily, and
its calibration (pixel size, z step, interval) follows a
:class:`~mmtiffsink.sink.CalibrationTracker` fed with the frames; explicit values given to the
sink win. A :class:`~mmtiffsink.sink.Summary` (:meth:`TiffSink.set_summary`) is kept in every
file, whatever its profile. With ``positions="series"`` the
position leaves the file key: each position becomes a series (an OME Image) of its file,
numbered in order of its first image.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from mmtiffsink._closing import ClosesAtBlockEnd, add_note
from mmtiffsink._text import check_name, clean_text
from mmtiffsink.errors import (
    CloseErrors,
    ConfigError,
    CoordinateError,
    OutputExistsError,
    WriterClosedError,
    WriterError,
)
from mmtiffsink.tiff import DEFAULT, Following, IJTiffFile, Profile, StageLabel

from ._calibration import CalibrationTracker
from ._frame import Calibration, Frame, Summary
from ._mapping import AxisMapper, FileKey, Placement, file_name, split_position
from ._mmkeys import mm_frame, mm_summary
from ._options import SinkOptions

__all__ = ["DEFAULT", "TiffSink"]

def sink_options(options: SinkOptions | None, changes: Mapping[str, Any]) -> SinkOptions:
    """``options`` with keyword changes; also tiffwrite's names (``pxsize``, ``overwrite``)."""
    return SinkOptions.of(options, **changes)


def info_text(annotations: Mapping[str, str]) -> str | None:
    """Annotations as ImageJ ``Info`` lines, ``key = value`` (line breaks escaped as JSON)."""
    lines = []
    for key, value in annotations.items():
        text = json.dumps(value) if "\n" in value or "\r" in value else value
        lines.append(f"{key} = {text}")
    return "\n".join(lines) or None


def series_name(position: str | int | None) -> str | None:
    """A position's series name: its label, or ``Pos<n>`` (Micro-Manager's) for an index."""
    if position is None or isinstance(position, str):
        return position
    return f"Pos{position}"


def position_stage_label(name: str, frame: Frame) -> StageLabel | None:
    """A position's StageLabel from its first image's stage x/y (and z, without a z stack)."""
    x, y = frame.x_um, frame.y_um
    z = frame.z_um if frame.axes.get("z") is None else None
    if x is None and y is None and z is None:
        return None
    return StageLabel(name, x, y, z)


class _Entry:
    """One open file with its calibration tracker and, per position, its series."""

    __slots__ = ("file", "key", "series", "tracker")

    def __init__(self, key: FileKey, file: IJTiffFile) -> None:
        self.key = key
        self.file = file
        self.tracker = CalibrationTracker()
        self.series: dict[str | int | None, int] = {}


class TiffSink(ClosesAtBlockEnd):
    """Write pycro-manager images into one hyperstack TIFF per position (per file key).

    Parameters
    ----------
    directory
        Directory of the files; created if missing.
    name
        Dataset name, the ``{name}`` field of the template.
    options
        How the files are written: a :class:`~mmtiffsink.sink.SinkOptions`.
    pass_through
        When True, :meth:`image_process_fn` returns ``(image, metadata)`` so that pycro-manager
        also stores the image; when False (default) the image is consumed.
    **changes
        Any field of :class:`~mmtiffsink.sink.SinkOptions` (``profile``, ``compression``
        (default: zstd 1 with the predictor), ``predictor``, ``keep_up`` (default True),
        ``template``, ``channel_names``, ``colors``, ``colormap``, ``pixel_size_um``,
        ``z_step_um``, ``interval_s``, ``if_exists``, ``max_planes``, ``positions``), on top
        of ``options``;
        also the writer's names ``pxsize``, ``deltaz``, ``timeinterval`` and
        ``overwrite=True`` (``if_exists="overwrite"``).

    Raises
    ------
    ConfigError
        For an unknown or bad option (the message names it), ``positions="series"`` without
        ``profile="ome"``, the predictor without a codec.
    ProfileError
        For an unknown ``profile``, a codec the profile cannot hold, the predictor in the
        ``imagej`` profile, and ``profile="imagej"`` with ``compression=None`` (ImageJ's
        uncompressed layout needs each file's shape up front).

    Examples
    --------
    >>> with TiffSink("out", "exp") as sink:
    ...     with Acquisition(directory=None, image_process_fn=sink.image_process_fn) as acq:
    ...         acq.acquire(events)

    Notes
    -----
    Not thread-safe: call :meth:`put` from one thread (pycro-manager calls
    ``image_process_fn`` from its single processing thread). :meth:`read` may be called from
    any thread.

    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        name: str = "acq",
        options: SinkOptions | None = None,
        *,
        pass_through: bool = False,
        **changes: Any,
    ) -> None:
        self.options = sink_options(options, changes)
        self._directory = Path(directory)
        self._name = check_name("name", name if isinstance(name, str) else str(name))
        self._file_name = self._name  # with a suffix when if_exists="rename" found a clash
        self._mapper = AxisMapper(self.options.channel_names)
        self._explicit = Calibration(
            pixel_size_um=self.options.pixel_size_um,
            z_step_um=self.options.z_step_um,
            interval_s=self.options.interval_s,
        )
        self._pass_through = pass_through
        self._ome = Profile.get(self.options.profile).ome
        self._series = self.options.positions == "series"
        self._entries: dict[FileKey, _Entry] = {}
        self._paths: dict[Path, FileKey] = {}
        self._summary: Summary | None = None
        self._closed = False
        self._hook_error: Exception | None = None
        # live views waiting for their file: (index or path, series, view)
        self._followers: list[tuple[int | Path, int, Following]] = []

    # ------------------------------------------------------------------ properties
    @property
    def files(self) -> list[Path]:
        """Paths of the files opened so far, in order of their first image."""
        return [entry.file.path for entry in self._entries.values()]

    def _split(self, file_key: FileKey) -> tuple[FileKey, str | int | None]:
        """The key of an image's file and its position (None: not a series of the file)."""
        if not self._series:
            return file_key, None
        return split_position(file_key)

    def file_of(self, placement: Placement) -> Path:
        """The file an image of this :class:`~mmtiffsink.sink.Placement` went to.

        Raises
        ------
        CoordinateError
            No image went to such a file.

        """
        entry = self._entries.get(self._split(placement.file_key)[0])
        if entry is None:
            msg = f"no image was stored in a file with axes {dict(placement.file_key)!r}"
            raise CoordinateError(msg)
        return entry.file.path

    @property
    def blank_planes(self) -> int:
        """Planes filled with a blank frame at close, over every file (0 before close)."""
        return sum(entry.file.blank_planes for entry in self._entries.values())

    @property
    def blank_planes_by_file(self) -> dict[Path, int]:
        """Each file's :attr:`~mmtiffsink.IJTiffFile.blank_planes` (known once it is closed)."""
        return {entry.file.path: entry.file.blank_planes for entry in self._entries.values()}

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    @property
    def channel_names(self) -> list[str]:
        """Channel names known so far, in channel order (empty for integer channels)."""
        return self._mapper.channel_names

    # ------------------------------------------------------------------ writing
    def _path(self, key: FileKey) -> Path:
        """The file of a key; with ``if_exists="rename"`` a new dataset name on a clash."""
        template = self.options.template
        path = self._directory / file_name(template, self._file_name, key)
        if self.options.if_exists != "rename" or not path.exists():
            return path
        n = 1
        while True:  # as Micro-Manager and pycro-manager name a repeated acquisition: name_1
            candidate = f"{self._name}_{n}"
            path = self._directory / file_name(template, candidate, key)
            if not path.exists() and not any(
                (self._directory / file_name(template, candidate, k)).exists()
                for k in self._entries
            ):
                self._file_name = candidate
                return path
            n += 1

    def _open(self, key: FileKey, image: np.ndarray) -> _Entry:
        path = self._path(key)
        other = self._paths.get(path)
        if other is not None:
            msg = (
                f"the images with axes {dict(key)!r} and {dict(other)!r} would both go to "
                f"{path}; use a template with a field for each file-splitting axis"
            )
            raise CoordinateError(msg)
        try:
            self._directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            msg = f"cannot create the folder {self._directory}: {exc.strerror or exc}"
            raise WriterError(msg) from exc
        try:
            file = IJTiffFile(
                path,
                dtype=image.dtype,
                overwrite=self.options.if_exists == "overwrite",
                allow_negative=True,
                **self.options.writer_arguments(image.dtype),
            )
        except OutputExistsError as exc:
            msg = (
                f'{exc}, or if_exists="rename" to write the dataset under a new name '
                f"({self._name}_1, ...)"
            )
            raise OutputExistsError(msg) from None
        entry = _Entry(key, file)
        if self._summary is not None:
            entry.tracker.state(self._summary.stated)
            self._describe(file)
        self._entries[key] = entry
        self._paths[path] = key
        self._apply(entry)
        self._attach_followers()
        return entry

    def _apply(self, entry: _Entry) -> None:
        """Set the file's calibration and channel names from the tracker and the mapper."""
        calibration = entry.tracker.result(self._explicit)
        file = entry.file
        file.pxsize = calibration.pixel_size_um
        file.deltaz = calibration.z_step_um
        file.timeinterval = calibration.interval_s
        # labels that came with the images: a character no file can hold is written as U+FFFD
        names = [clean_text(f"the channel name {n!r}", n) for n in self._mapper.channel_names]
        file.channel_names = names or None

    def update_summary(self, summary: Mapping[str, Any]) -> None:
        """Take Micro-Manager summary metadata (a storage's ``initialize()``, an NDTiff's).

        Parameters
        ----------
        summary
            Summary metadata: its stated calibration (``PixelSize_um``, ``z-step_um``,
            ``Interval_ms``) and start time are used, and every key is kept in the files
            (see :meth:`set_summary`).

        """
        self.set_summary(mm_summary(summary))

    def set_summary(self, summary: Summary) -> None:
        """Take what the source knows of the whole acquisition, for every file (also later ones).

        Parameters
        ----------
        summary
            Its stated calibration (metadata of the frames and explicit options win over it
            as :class:`~mmtiffsink.sink.CalibrationTracker` says), start time and annotations
            (kept in the OME ``MapAnnotation`` of profile ``ome``, in the ImageJ ``Info`` as
            ``key = value`` lines in the others).

        """
        # text that came with the metadata: U+FFFD (and a warning) for what no file can hold
        annotations = {
            clean_text(f"the summary metadata key {key!r}", key): clean_text(
                f"the summary metadata value of {key!r}", value
            )
            for key, value in summary.annotations.items()
        }
        self._summary = dataclasses.replace(summary, annotations=annotations)
        for entry in self._entries.values():
            entry.tracker.state(summary.stated)
            self._describe(entry.file)

    def _describe(self, file: IJTiffFile) -> None:
        """A file's acquisition date and summary annotations."""
        summary = self._summary
        if summary is None:
            return
        if self._ome:
            if summary.start is not None:
                file.acquisition_date = summary.start
            file.annotations = dict(summary.annotations) or None
        else:
            file.comment = info_text(summary.annotations)

    def put(
        self,
        image: Any,
        axes: Mapping[str, Any],
        metadata: Mapping[str, Any] | None = None,
    ) -> Placement:
        """Save one image at the place its axes give.

        Parameters
        ----------
        image
            A frame: (Y, X), or RGB (Y, X, 3).
        axes
            The image's axes, e.g. ``{'time': 1, 'channel': 'FITC', 'z': 2, 'position': 0}``.
        metadata
            The image's metadata: used for the calibration and stored with the frame (tag 51123).

        Returns
        -------
        Placement
            Where the image went: its file key and (c, z, t).

        Raises
        ------
        WriterClosedError
            The sink is closed.
        CoordinateError
            Bad axes, a repeated coordinate, or two file keys giving the same file name.
        FileExistsError_
            A file exists and ``overwrite`` is False.
        FrameError, WriterError
            From the writer.

        """
        meta = dict(metadata) if metadata is not None else None
        return self.append(image, mm_frame(axes, meta))

    def append(self, image: Any, frame: Frame) -> Placement:
        """Save one image at the place its :class:`~mmtiffsink.sink.Frame` gives.

        Parameters
        ----------
        image
            A frame: (Y, X), or RGB (Y, X, 3).
        frame
            Its axes, calibration, per-plane values and metadata (stored with it).

        Returns
        -------
        Placement
            Where the image went: its file key and (c, z, t).

        Raises
        ------
        WriterClosedError, CoordinateError, FileExistsError_, FrameError, WriterError
            As :meth:`put`.

        """
        if self._closed:
            msg = "the TiffSink is closed; cannot put more images"
            raise WriterClosedError(msg)
        placement = self._mapper.map(frame.axes)
        key, position = self._split(placement.file_key)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._open(key, np.asarray(image))
        entry.tracker.add(frame)
        plane = frame.plane() if self._ome else None
        series = entry.series.get(position) if self._series else 0
        if series is None or (self._ome and not entry.series):
            series = self._new_series(entry, position, placement.file_key, frame)
        entry.file.save(
            image,
            placement.c,
            placement.z,
            placement.t,
            metadata=None if frame.metadata is None else dict(frame.metadata),
            plane=plane or None,
            series=series,
        )
        return placement

    def _new_series(
        self,
        entry: _Entry,
        position: str | int | None,
        file_key: FileKey,
        frame: Frame,
    ) -> int:
        """Number a file's new position (its series) and give it its name and StageLabel.

        One file per position: the file's only image gets the position's StageLabel.
        """
        series = len(entry.series) if self._series else 0
        if not self._series:
            position = dict(file_key).get("position")
        name = series_name(position)
        if name is not None:  # a label that came with the images: U+FFFD for what no file holds
            name = clean_text(f"the position name {name!r}", name)
        stage = position_stage_label(name, frame) if self._ome and name is not None else None
        if self._series and (name is not None or stage is not None):
            entry.file.set_series(series, name=name, stage=stage)
        elif stage is not None:
            entry.file.set_series(series, stage=stage)
        entry.series[position] = series
        return series

    def view(self, file: int | str | os.PathLike[str] = 0, *, series: int = 0) -> Following:
        """A live, read-only view of one file as a (T, Z, C, Y, X) array.

        The view follows the file as frames land (its shape grows; ``coords_changed`` is
        emitted for each frame, in the writer's thread), compressed files included, and stays
        readable after :meth:`close`. Asked for before the file exists (before its first
        image), it is empty (shape all zeros) until the file is opened.

        Parameters
        ----------
        file
            Which file: its index in the order of first images (0: the first; with one file
            per position, the first position's), or its path.
        series
            With ``positions="series"``: the position's series in the file (numbered in
            order of each position's first image).

        Returns
        -------
        Following
            A :class:`~mmtiffsink.tiff.Hyperstack` view (see :func:`mmtiffsink.open`).

        """
        view = Following()
        self.follow(view, file, series=series)
        return view

    def follow(
        self, view: Following, file: int | str | os.PathLike[str] = 0, *, series: int = 0
    ) -> None:
        """Attach ``view`` to a file of this sink (see :meth:`view`) now or when it opens."""
        if isinstance(file, bool) or (isinstance(file, int) and file < 0):
            msg = f"file is an index from 0 or a path, got {file!r}"
            raise ConfigError(msg)
        which = file if isinstance(file, int) else Path(file)
        self._followers.append((which, series, view))
        self._attach_followers()

    def _attach_followers(self) -> None:
        entries = list(self._entries.values())
        waiting = []
        for which, series, view in self._followers:
            if isinstance(which, int):
                entry = entries[which] if which < len(entries) else None
            else:
                entry = next((e for e in entries if e.file.path == which), None)
            if entry is None:
                waiting.append((which, series, view))
            elif not view.closed:
                view.attach(entry.file.view(series))
        self._followers = waiting

    def read(self, axes: Mapping[str, Any]) -> tuple[np.ndarray, dict[str, Any] | None]:
        """Read back a stored image and its metadata, from the file (open or closed).

        Waits until the image's frame is in the file. Safe to call from another thread than
        the one calling :meth:`put`.

        Parameters
        ----------
        axes
            The image's axes, as given to :meth:`put`.

        Returns
        -------
        image : numpy.ndarray
            The frame.
        metadata : dict or None
            The metadata stored with it.

        Raises
        ------
        CoordinateError
            No image with these axes was stored.

        """
        placement = self._mapper.find(axes)
        if placement is None:
            msg = f"no image with axes {dict(axes)!r} was stored"
            raise CoordinateError(msg)
        return self.read_placement(placement)

    def read_placement(self, placement: Placement) -> tuple[np.ndarray, dict[str, Any] | None]:
        """Like :meth:`read`, for a :class:`~mmtiffsink.sink.Placement` from :meth:`put`."""
        key, position = self._split(placement.file_key)
        entry = self._entries.get(key)
        series = (
            None if entry is None else entry.series.get(position, 0 if not self._series else None)
        )
        if entry is None or series is None:
            msg = f"no image was stored in a file with axes {dict(placement.file_key)!r}"
            raise CoordinateError(msg)
        return entry.file.read_frame(placement.c, placement.z, placement.t, series=series)

    def image_process_fn(
        self, image: Any, metadata: dict[str, Any]
    ) -> tuple[Any, dict[str, Any]] | None:
        """A pycro-manager ``image_process_fn``: store the image by ``metadata['Axes']``.

        Parameters
        ----------
        image
            The image: grey (Y, X), or colour (Y, X, 3) from a camera whose ``PixelType``
            is ``RGB32`` (pycro-manager's Java backend gives its samples in B, G, R order:
            stored as R, G, B).
        metadata
            Its metadata, with the ``Axes`` dict.

        Returns
        -------
        tuple or None
            ``(image, metadata)`` with ``pass_through=True``, else None (the image is consumed).

        """
        axes = metadata.get("Axes") or {}
        stored = image
        if metadata.get("PixelType") == "RGB32" and getattr(image, "ndim", 0) == 3:
            # pycro-manager's Java backend: Micro-Manager's RGB32 bytes (B, G, R, A) with the
            # alpha cut off, i.e. B, G, R; stored as R, G, B
            stored = np.asarray(image)[..., ::-1]
        try:
            self.put(stored, axes, metadata)
        except Exception as exc:
            # pycro-manager turns this into Exception("exception in image processor: ...");
            # __exit__ raises the original, with its type and traceback
            if self._hook_error is None:
                self._hook_error = exc
            raise
        return (image, metadata) if self._pass_through else None

    def flush(self) -> None:
        """Update every file's calibration and wait until its saved frames are on disk."""
        for entry in self._entries.values():
            self._apply(entry)
            entry.file.flush()

    def close(self) -> None:
        """Set the final calibration and close every file; idempotent.

        Every file is closed even if another one fails. One failure is raised as itself;
        several as one :class:`~mmtiffsink.errors.WriterError` that names each file's error
        (all kept in its ``errors`` attribute, the first chained as its cause).
        """
        if self._closed:
            return
        self._closed = True
        errors: list[Exception] = []
        for entry in self._entries.values():
            try:
                self._apply(entry)
            except Exception as exc:  # keep closing the other files
                errors.append(exc)
            try:
                entry.file.close()
            except Exception as exc:  # keep closing the other files
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise CloseErrors(errors) from errors[0]

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        super().__exit__(exc_type, exc, tb)  # close; a close error a note on the block's error
        hook_error = self._hook_error
        if (
            exc is not None
            and hook_error is not None
            and exc is not hook_error
            and str(hook_error) in str(exc)  # pycro-manager's wrapper of the hook's error
        ):
            add_note(hook_error, f"pycro-manager stopped the acquisition: {exc}")
            raise hook_error
