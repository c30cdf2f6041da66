"""TiffSink: pycro-manager images -> one ImageJ hyperstack TIFF per position.

Every image arrives with its ``Axes`` dict; :class:`~mmtiffsink.mapping.AxisMapper` turns it into
a file key (position, camera, ...) and a (c, z, t) place. One
:class:`~mmtiffsink.tiff.IJTiffFile` is opened per file key, lazily, and its calibration (pixel
size, z step, interval) follows a :class:`~mmtiffsink.calibration.CalibrationTracker` fed with the
images' metadata; explicit values given to the sink win.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from mmtiffsink.calibration import Calibration, CalibrationTracker
from mmtiffsink.errors import CoordinateError, ProfileError, WriterClosedError
from mmtiffsink.mapping import AxisMapper, FileKey, Placement, file_name
from mmtiffsink.tiff import IJTiffFile, Profile, parse_compression

from ._closing import close_after_block

__all__ = ["DEFAULT", "TiffSink"]

#: Sentinel for "the writer's default for the profile" (``compression=DEFAULT``).
DEFAULT: Any = object()
_DEFAULT = DEFAULT


def _check_options(profile: str, compression: Any) -> None:
    """Refuse options the writer would refuse at the first image, before any image arrives."""
    if profile not in ("bigtiff", "imagej"):
        msg = f"profile must be 'bigtiff' or 'imagej', got {profile!r}"
        raise ProfileError(msg)
    if compression is DEFAULT:
        return
    codec = parse_compression(compression)  # ValueError for an unknown codec or level
    if profile == "imagej" and codec.name == "none":
        msg = (
            "profile='imagej' with compression=None needs each file's (C, Z, T) up front, "
            "which a TiffSink does not know; use compression='deflate' (the imagej default) "
            "or profile='bigtiff'"
        )
        raise ProfileError(msg)


class _Entry:
    """One open file with its calibration tracker."""

    __slots__ = ("file", "key", "tracker")

    def __init__(self, key: FileKey, file: IJTiffFile) -> None:
        self.key = key
        self.file = file
        self.tracker = CalibrationTracker()


class TiffSink:
    """Write pycro-manager images into one hyperstack TIFF per position (per file key).

    Parameters
    ----------
    directory
        Directory of the files; created if missing.
    name
        Dataset name, the ``{name}`` field of ``template``.
    template
        File name template (see :func:`mmtiffsink.mapping.file_name`): ``{name}`` and axis
        fields such as ``{position}``. Fields absent from an image's axes are dropped.
    profile
        ``"bigtiff"`` or ``"imagej"`` (see :class:`~mmtiffsink.tiff.IJTiffFile`).
    compression
        Compression of every file; default: the writer's default for ``profile``.
    channel_names
        Channel names in the wanted channel order (see :class:`~mmtiffsink.mapping.AxisMapper`).
        Without them, named channels are indexed in order of first arrival.
    pxsize, deltaz, timeinterval
        Pixel size (µm), z step (µm), interval (s). A value given here wins over the metadata;
        None: derived from the images' metadata.
    colors, colormap
        Channel colors or one colormap for all channels, as in ``IJTiffFile``.
    overwrite
        Replace existing files; default False raises
        :class:`~mmtiffsink.errors.FileExistsError_` when a file exists.
    pass_through
        When True, :meth:`image_process_fn` returns ``(image, metadata)`` so that pycro-manager
        also stores the image; when False (default) the image is consumed.

    Raises
    ------
    ValueError
        For bad ``channel_names`` or an unknown ``compression``.
    ProfileError
        For an unknown ``profile``, and for ``profile="imagej"`` with ``compression=None``
        (ImageJ's uncompressed layout needs each file's shape up front).

    Examples
    --------
    >>> with TiffSink("out", "exp") as sink:
    ...     with Acquisition(directory=None, image_process_fn=sink.image_process_fn) as acq:
    ...         acq.acquire(events)

    Notes
    -----
    Not thread-safe: call :meth:`put` from one thread (pycro-manager calls
    ``image_process_fn`` from its single processing thread).

    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        name: str = "acq",
        *,
        template: str = "{name}_{position}.tif",
        profile: Profile = "bigtiff",
        compression: Any = _DEFAULT,
        channel_names: Sequence[str] | None = None,
        pxsize: float | None = None,
        deltaz: float | None = None,
        timeinterval: float | None = None,
        colors: Sequence[str | Sequence[float]] | None = None,
        colormap: str | None = None,
        overwrite: bool = False,
        pass_through: bool = False,
    ) -> None:
        _check_options(profile, compression)
        self._directory = Path(directory)
        self._name = name
        self._template = template
        self._profile: Profile = profile
        self._compression = compression
        self._mapper = AxisMapper(channel_names)
        self._explicit = Calibration(
            pixel_size_um=pxsize, z_step_um=deltaz, interval_s=timeinterval
        )
        self._colors = None if colors is None else list(colors)
        self._colormap = colormap
        self._overwrite = overwrite
        self._pass_through = pass_through
        self._entries: dict[FileKey, _Entry] = {}
        self._paths: dict[Path, FileKey] = {}
        self._summary: dict[str, Any] | None = None
        self._closed = False
        self._hook_error: Exception | None = None

    # ------------------------------------------------------------------ properties
    @property
    def files(self) -> list[Path]:
        """Paths of the files opened so far, in order of their first image."""
        return [entry.file.path for entry in self._entries.values()]

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    @property
    def channel_names(self) -> list[str]:
        """Channel names known so far, in channel order (empty for integer channels)."""
        return self._mapper.channel_names

    # ------------------------------------------------------------------ writing
    def _open(self, key: FileKey, image: np.ndarray) -> _Entry:
        path = self._directory / file_name(self._template, self._name, key)
        other = self._paths.get(path)
        if other is not None:
            msg = (
                f"the images with axes {dict(key)!r} and {dict(other)!r} would both go to "
                f"{path}; use a template with a field for each file-splitting axis"
            )
            raise CoordinateError(msg)
        self._directory.mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, Any] = {}
        if self._compression is not _DEFAULT:
            kwargs["compression"] = self._compression
        file = IJTiffFile(
            path,
            dtype=image.dtype,
            colors=self._colors,
            colormap=self._colormap,
            profile=self._profile,
            overwrite=self._overwrite,
            **kwargs,
        )
        entry = _Entry(key, file)
        if self._summary is not None:
            entry.tracker.update_summary(self._summary)
        self._entries[key] = entry
        self._paths[path] = key
        self._apply(entry)
        return entry

    def _apply(self, entry: _Entry) -> None:
        """Set the file's calibration and channel names from the tracker and the mapper."""
        calibration = entry.tracker.result(self._explicit)
        file = entry.file
        file.pxsize = calibration.pixel_size_um
        file.deltaz = calibration.z_step_um
        file.timeinterval = calibration.interval_s
        names = self._mapper.channel_names
        file.channel_names = names or None

    def update_summary(self, summary: Mapping[str, Any]) -> None:
        """Take the stated calibration of summary metadata (a storage's ``initialize()``).

        Parameters
        ----------
        summary
            Summary metadata (``PixelSize_um``, ``z-step_um``, ``Interval_ms`` are used).

        """
        self._summary = dict(summary)
        for entry in self._entries.values():
            entry.tracker.update_summary(self._summary)

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
            A 2-D array (Y, X).
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
        if self._closed:
            msg = "the TiffSink is closed; cannot put more images"
            raise WriterClosedError(msg)
        placement = self._mapper.map(axes)
        entry = self._entries.get(placement.file_key)
        if entry is None:
            entry = self._open(placement.file_key, np.asarray(image))
        meta = dict(metadata) if metadata is not None else None
        entry.tracker.update(axes, meta or {})
        entry.file.save(image, placement.c, placement.z, placement.t, metadata=meta)
        return placement

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
        """Like :meth:`read`, for a :class:`~mmtiffsink.mapping.Placement` from :meth:`put`."""
        entry = self._entries.get(placement.file_key)
        if entry is None:
            msg = f"no image was stored in a file with axes {dict(placement.file_key)!r}"
            raise CoordinateError(msg)
        return entry.file.read_frame(placement.c, placement.z, placement.t)

    def image_process_fn(
        self, image: Any, metadata: dict[str, Any]
    ) -> tuple[Any, dict[str, Any]] | None:
        """A pycro-manager ``image_process_fn``: store the image by ``metadata['Axes']``.

        Parameters
        ----------
        image
            The image.
        metadata
            Its metadata, with the ``Axes`` dict.

        Returns
        -------
        tuple or None
            ``(image, metadata)`` with ``pass_through=True``, else None (the image is consumed).

        """
        axes = metadata.get("Axes") or {}
        try:
            self.put(image, axes, metadata)
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

        Every file is closed even if another one fails; then the first error is raised.
        """
        if self._closed:
            return
        self._closed = True
        error: BaseException | None = None
        for entry in self._entries.values():
            try:
                self._apply(entry)
            except Exception as exc:  # keep closing the other files
                error = error or exc
            try:
                entry.file.close()
            except Exception as exc:  # keep closing the other files
                error = error or exc
        if error is not None:
            raise error

    def __enter__(self) -> TiffSink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        close_after_block(self.close, exc, "the TiffSink")
        hook_error = self._hook_error
        if (
            exc is not None
            and hook_error is not None
            and exc is not hook_error
            and str(hook_error) in str(exc)  # pycro-manager's wrapper of the hook's error
        ):
            if sys.version_info >= (3, 11):
                hook_error.add_note(f"pycro-manager stopped the acquisition: {exc}")
            raise hook_error
