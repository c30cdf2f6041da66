"""The settable attributes of an open file and tiffwrite's methods (a base of IJTiffFile).

Calibration, colors, channel names and comment may change until the file is closed (a sink
learns the calibration from the images); each change rebuilds the tags every later IFD carries.
tiffwrite >= 2024.10 names the calibration ``px_size``, ``delta_z`` and ``time_interval``: the
same settings here. ``IJTiffFile`` has ``__slots__``, so a misspelt attribute is an
``AttributeError``, never a silent no-op.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, ProfileError, WriterClosedError, WriterError
from ._appender import Appender
from ._codecs import Codec
from ._frames import NONE_SAVED, Coord, Key, coordinate
from ._io import FileIO
from ._ome import StageLabel
from ._order import Sequencer
from ._profiles import Profile, ProfileName
from ._series import SeriesTable, series_index
from ._settings import Settings, optional_text, positive_or_none
from ._tags import Layout, Tag, normalize_tags

__all__ = ["FileAttributes"]


class FileAttributes:
    """Properties and tiffwrite's methods of :class:`~mmtiffsink.tiff.IJTiffFile`."""

    # every attribute of IJTiffFile (which adds none): a typo is an AttributeError
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
        "_encoder",
        "_extratags",
        "_finalizer",
        "_high",
        "_holds_pool",
        "_inflight_bytes",
        "_inherited",
        "_io",
        "_keep_up",
        "_layout",
        "_lock",
        "_low",
        "_max_inflight",
        "_max_planes",
        "_negative",
        "_plane_tags",
        "_pool",
        "_profile",
        "_seq",
        "_series",
        "_settings",
        "_static",
        "blank_planes",
        "frames_kept_up",
        "path",
    )

    # set by IJTiffFile
    _app: Appender
    _claimed: set[Key]
    _closed: bool
    _closing: bool
    _inherited: bool
    _io: FileIO
    _codec: Codec
    _cond: threading.Condition
    _dtype: np.dtype[Any]
    _extratags: tuple[Tag, ...]
    _high: Coord
    _layout: Layout
    _lock: threading.Lock
    _low: Coord
    path: Path
    _negative: bool
    _plane_tags: dict[Key, list[Tag]]
    _profile: Profile
    _seq: Sequencer
    _series: SeriesTable
    _settings: Settings
    _static: tuple[Tag, ...] | None

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
        if self._high == NONE_SAVED:
            return (0, 0, 0)
        lo, hi = self._low, self._high
        return (hi[0] - lo[0] + 1, hi[1] - lo[1] + 1, hi[2] - lo[2] + 1)

    @property
    def series_shapes(self) -> dict[int, Coord]:
        """Series -> ``(C, Z, T)``, of every series that has frames so far."""
        with self._lock:
            return self._series.shapes(self._low, self._high, self._settings.shape)

    @property
    def frames_written(self) -> int:
        """Frames whose IFD is linked into the file (durable on the OS level)."""
        return len(self._app.planes)

    def _setting(name: str, doc: str) -> Any:  # type: ignore[misc]
        def fget(self: FileAttributes) -> float | None:
            return getattr(self._settings, name)  # type: ignore[no-any-return]

        def fset(self: FileAttributes, value: float | None) -> None:
            checked = positive_or_none(name, value)
            with self._lock:
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
        with self._lock:
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
    def image_name(self) -> str | None:
        """OME-XML's Image Name (None: the file name). Settable until close."""
        return self._settings.image_name

    @image_name.setter
    def image_name(self, name: str | None) -> None:
        text = optional_text("image_name", name)
        self._set(lambda v: setattr(self._settings, "image_name", v), text)

    @property
    def acquisition_date(self) -> str | None:
        """OME-XML's AcquisitionDate, ISO 8601 text (set a datetime or text). Settable."""
        return self._settings.acquisition_date

    @acquisition_date.setter
    def acquisition_date(self, value: Any) -> None:
        self._set(self._settings.set_acquisition_date, value)

    @property
    def annotations(self) -> dict[str, str] | None:
        """Key -> text pairs kept as an OME MapAnnotation. Settable until close."""
        found = self._settings.annotations
        return None if found is None else dict(found)

    @annotations.setter
    def annotations(self, value: Any) -> None:
        self._set(self._settings.set_annotations, value)

    @property
    def comment(self) -> str | None:
        """Free text stored in the ImageJ ``Info`` field. Settable until close."""
        return self._settings.comment

    @comment.setter
    def comment(self, text: str | None) -> None:
        checked = optional_text("comment", text)
        self._set(lambda v: setattr(self._settings, "comment", v), checked)

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
        with self._lock:
            if self._closing:
                raise self._closed_error()
            self._series.set_label(s, name, stage)

    def _series_key(self, coord: Coord, series: Any) -> Key:
        return self._series.key(coord, series, self._profile)

    @staticmethod
    def _where(key: Key) -> str:
        where = f"(c, z, t)={key[:3]}"
        return where if len(key) == 3 else f"{where} of series {key[3]}"

    def _closed_error(self) -> WriterClosedError:
        why = " (it was opened before this process forked)" if self._inherited else ""
        msg = f"{self.path} is closed{why}; cannot save more frames"
        return WriterClosedError(msg)

    def _check_identity(self) -> None:
        if not self._io.is_at_path():
            msg = f"{self.path} was deleted or replaced while it was written; its frames are lost"
            raise WriterError(msg)

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
        with self._lock:
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
            self._plane_tags.setdefault(coord, []).extend(tags)

    def _pick_codec(self, compression: Any, predictor: bool, shape_known: bool) -> Codec:
        """The profile's codec for ``compression`` (with the predictor), checked for the dtype."""
        return self._profile.codec(
            compression, predictor=predictor, dtype=self._dtype, shape_known=shape_known
        )

    def set_compression(self, compression: int | str, level: int | None = None) -> None:
        """Change the codec before the first save (tiffwrite's call form: code or name, level).

        The file's predictor stays on for a new codec (not for ``"none"``).
        """
        with self._lock:
            if self._seq.pending or self._app.planes:
                msg = "the compression can only be changed before the first save"
                raise ConfigError(msg)
            codec = Codec.parse(compression if level is None else (compression, level))
            predictor = self._codec.predictor and codec.compressed
            self._codec = self._pick_codec(codec, predictor, self._settings.shape is not None)
            if self._app.slots is not None and self._codec.compressed:
                self._app.slots = None
            self._static = None

    def _coord(self, c: Any, z: Any, t: Any) -> Coord:
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
