"""What a sink writes: one frozen options model shared by every route.

:class:`SinkOptions` is the single list of the choices a user makes about the files (profile,
codec, file-name template, channel names, colors, calibration overrides, what to do when a
file exists, the plane cap, one file per position or all positions as series of one file).
:class:`~mmtiffsink.sink.TiffSink`, the pycro-manager
:class:`~mmtiffsink.pycromanager.TiffAcquisition`, :func:`~mmtiffsink.ndtiff.replay` and the
``output`` section of a run file all take it; none of them re-lists or re-checks its fields.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from mmtiffsink._text import check_text
from mmtiffsink._values import require
from mmtiffsink.errors import ConfigError, MMTiffSinkError
from mmtiffsink.limits import MAX_PLANES
from mmtiffsink.tiff import DEFAULT, Codec, Profile, ProfileName

__all__ = [
    "TIFFWRITE_NAMES",
    "IfExists",
    "Positions",
    "SinkOptions",
    "if_exists_of",
    "tiffwrite_names",
]

IfExists = Literal["error", "overwrite", "rename"]
Positions = Literal["files", "series"]
_F = TypeVar("_F", bound=Callable[..., Any])

#: tiffwrite's keyword names, accepted by the Python API (never by run files), and the options
#: they stand for (``overwrite`` is a flag: see :func:`if_exists_of`).
TIFFWRITE_NAMES: dict[str, str] = {
    "pxsize": "pixel_size_um",
    "deltaz": "z_step_um",
    "timeinterval": "interval_s",
    "overwrite": "if_exists",
}


def if_exists_of(overwrite: object) -> IfExists:
    """Tiffwrite's ``overwrite`` flag as an ``if_exists`` value: the one rule for it.

    Raises
    ------
    ConfigError
        ``overwrite`` is not True or False.

    """
    if not isinstance(overwrite, bool):
        msg = f"overwrite is True or False, got {overwrite!r}"
        raise ConfigError(msg)
    return "overwrite" if overwrite else "error"


def tiffwrite_names(changes: Mapping[str, Any]) -> dict[str, Any]:
    """``changes`` with tiffwrite's names (:data:`TIFFWRITE_NAMES`) as the options' own.

    ``overwrite=None`` means "not given". A name given twice (``pxsize`` and
    ``pixel_size_um``, or ``overwrite`` and an ``if_exists`` that disagrees) is an error.
    """
    out: dict[str, Any] = {}
    renamed: dict[str, tuple[str, Any]] = {}
    for key, value in changes.items():
        field = TIFFWRITE_NAMES.get(key)
        if field is None:
            out[key] = value
        elif key != "overwrite" or value is not None:
            renamed[field] = (key, if_exists_of(value) if key == "overwrite" else value)
    for field, (key, value) in renamed.items():
        if field in out and out[field] != value:
            msg = f"{key}={changes[key]!r} and {field}={out[field]!r} disagree; give one of them"
            raise ConfigError(msg)
        out[field] = value
    return out


def _problem(exc: MMTiffSinkError, key: str | None = None) -> PydanticCustomError:
    """A validation error that keeps mmtiffsink's own error (and, for run files, its key)."""
    context: dict[str, Any] = {"message": str(exc), "error": exc}
    if key is not None:
        context["key"] = key
    return PydanticCustomError("config", "{message}", context)


def _checked(fn: _F) -> _F:
    """Turn an mmtiffsink error raised by a validator into a pydantic error that keeps it."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MMTiffSinkError as exc:
            raise _problem(exc) from None

    return wrapper  # type: ignore[return-value]


@_checked
def _color(value: Any) -> Any:
    """One channel color, checked (CSS name, ``#rrggbb`` or an RGB triple)."""
    from mmtiffsink.tiff import parse_color

    parse_color(value)
    return value if isinstance(value, str) else tuple(value)


class SinkOptions(BaseModel):
    """How a sink writes its files (frozen; build changed copies with :meth:`replace`).

    Parameters
    ----------
    template
        File name template: ``{name}`` and axis fields such as ``{position}``; a field the
        images lack is dropped with its separator (see :func:`mmtiffsink.sink.file_name`).
        Default ``{name}_{position}.tif``; ``{name}_{position}.ome.tif`` for ``profile="ome"``.
    profile
        ``"bigtiff"`` (default; Fiji/Bio-Formats, tifffile, napari), ``"imagej"`` (classic
        TIFF of at most 4 GiB that plain ImageJ 1.x also opens) or ``"ome"`` (OME-TIFF:
        BigTIFF with OME-XML; Bio-Formats' OME reader, bioio, OMERO, QuPath).
    compression
        ``"zstd"``, ``"zstd:9"``, ``("zstd", 9)``, ``"deflate"``, ``"zstd:1+predictor"``,
        ``None`` (none) or :data:`~mmtiffsink.tiff.DEFAULT`: the profile's codec for live
        acquisitions, zstd 1 with the predictor for bigtiff and ome (without it for float
        pixels), deflate 1 for imagej; replays (:class:`~mmtiffsink.ndtiff.ReplayOptions`)
        take zstd 3 instead. Stored as a :class:`~mmtiffsink.tiff.Codec` (or ``DEFAULT``).
    predictor
        True adds TIFF's horizontal-differencing predictor to the codec (files about 4%
        smaller; zstd 1 runs at 0.7-0.8x its speed, deflate 1 at about its speed; Bio-Formats
        and tifffile decode it), False removes it (also from the default codec), None
        (default) leaves the codec as ``compression`` says. Integer pixels only; the
        ``imagej`` profile refuses it (ImageJ 1.x decodes it into wrong values).
    channel_names
        Channel names in the wanted channel order; without them, named channels are indexed
        in order of first arrival.
    colors
        One color per channel (CSS names such as ``"magenta"``, ``"#rrggbb"``, RGB triples).
    colormap
        One colorcet colormap for every channel instead (e.g. ``"glasbey"``).
    pixel_size_um, z_step_um, interval_s
        Calibration that wins over the images' metadata (None: from the metadata).
    if_exists
        When a file exists: ``"error"`` (default), ``"overwrite"``, or ``"rename"`` (the
        dataset name gets ``_1``, ``_2``, ... as Micro-Manager and pycro-manager do).
    max_planes
        Cap on the planes (C x Z x T) of one file (default 10**7; with ``positions="series"``
        summed over its series).
    keep_up
        Never hold the camera for compression (default True): a frame that finds the
        process's in-flight budget full is stored uncompressed at once (in the codec's own
        format, so every reader still reads the file) instead of waiting for the pool. False:
        the acquisition waits for the pool (the smallest files; replay's default).
    positions
        ``"files"`` (default): one file per position. ``"series"`` (``profile="ome"`` only):
        every position of the acquisition as its own OME Image (series) of one file, named
        by the template without its ``{position}`` field, each series named after its
        position and given its StageLabel; the form OMERO and QuPath import in one step.

    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    LIVE: ClassVar[bool] = True
    """Options of a live acquisition (see :meth:`codec_for`)."""
    ACCEPTS_TIFFWRITE_NAMES: ClassVar[bool] = True
    """Accept tiffwrite's names (:data:`TIFFWRITE_NAMES`); run files do not."""

    template: StrictStr = "{name}_{position}.tif"
    profile: ProfileName = "bigtiff"
    compression: Any = DEFAULT
    predictor: StrictBool | None = None
    channel_names: tuple[StrictStr, ...] | None = None
    colors: tuple[Annotated[Any, BeforeValidator(_color)], ...] | None = None
    colormap: Annotated[StrictStr, Field(min_length=1)] | None = None
    pixel_size_um: float | None = None
    z_step_um: float | None = None
    interval_s: float | None = None
    if_exists: IfExists = "error"
    max_planes: Annotated[int, Field(ge=1, strict=True)] = MAX_PLANES
    keep_up: StrictBool = True
    positions: Positions = "files"

    def __init__(self, /, **data: Any) -> None:
        # built in Python: mmtiffsink's own errors (a run file validates with line numbers)
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _first_error(exc) from None

    @model_validator(mode="before")
    @classmethod
    @_checked
    def _tiffwrite_names(cls, data: Any) -> Any:
        if cls.ACCEPTS_TIFFWRITE_NAMES and isinstance(data, Mapping):
            return tiffwrite_names(data)
        return data

    @field_validator("template")
    @classmethod
    @_checked
    def _check_template(cls, value: str) -> str:
        from ._mapping import file_name

        check_text("template", value)
        if "\t" in value or "\n" in value or "\r" in value:
            msg = f"template makes file names: no tab or newline; got {value!r}"
            raise ConfigError(msg)
        try:
            specs = "".join(spec or "" for _, _, spec, _ in string.Formatter().parse(value))
            if any(len(digits) > 3 for digits in re.findall(r"\d+", specs)):
                msg = "a field width of more than 3 digits"
                raise ValueError(msg)
            sample = file_name(value, "name", (("position", 0),))
        except (ValueError, IndexError, KeyError) as exc:
            msg = f"bad template {value!r}: {exc}"
            raise ConfigError(msg) from None
        if "/" in sample or "\\" in sample:
            msg = f"template makes file names, not paths; got {value!r}"
            raise ConfigError(msg)
        if not sample.lower().endswith((".tif", ".tiff")):
            msg = f"template must end with .tif or .tiff, got {value!r}"
            raise ConfigError(msg)
        return value

    @field_validator("channel_names")
    @classmethod
    @_checked
    def _check_channel_names(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for i, name in enumerate(value or ()):
            check_text(f"channel_names[{i}]", name)
        return value

    @field_validator("profile", mode="before")
    @classmethod
    @_checked
    def _check_profile_name(cls, value: Any) -> Any:
        return Profile.get(value).name

    @field_validator("compression", mode="before")
    @classmethod
    @_checked
    def _parse_compression(cls, value: Any) -> Any:
        if value is DEFAULT or isinstance(value, Codec):
            return value
        return Codec.parse(value)

    @field_validator("colors", mode="before")
    @classmethod
    @_checked
    def _check_colors(cls, value: Any) -> Any:
        listed = isinstance(value, (list, tuple))
        if value is not None and not listed:
            msg = f"colors is a list with one color per channel, got {value!r}"
            raise ConfigError(msg)
        return value

    @field_validator("colormap")
    @classmethod
    @_checked
    def _check_colormap(cls, value: str | None) -> str | None:
        if value is not None:
            from mmtiffsink.tiff import colormap_lut

            colormap_lut(value)
        return value

    @field_validator("pixel_size_um", "z_step_um", "interval_s", mode="before")
    @classmethod
    @_checked
    def _check_positive(cls, value: Any, info: ValidationInfo) -> Any:
        return require(str(info.field_name), value)

    @model_validator(mode="after")
    def _check_profile(self) -> SinkOptions:
        if "template" not in self.model_fields_set:  # the profile's conventional suffix
            suffix = Profile.get(self.profile).suffix
            if suffix != ".tif":
                object.__setattr__(self, "template", "{name}_{position}" + suffix)
        if self.colors is not None and self.colormap is not None:
            msg = "give colors (one per channel) or colormap (for all channels), not both"
            raise _problem(ConfigError(msg), "colormap")
        profile = Profile.get(self.profile)
        try:
            profile.codec(self.compression, shape_known=False)
        except MMTiffSinkError as exc:
            raise _problem(exc, "compression") from None
        try:
            self.codec_for(None)
        except MMTiffSinkError as exc:
            raise _problem(exc, "predictor") from None
        if self.positions == "series" and not Profile.get(self.profile).ome:
            msg = (
                f"positions='series' writes the positions as OME Images of one file, which "
                f"needs profile='ome' (got profile={self.profile!r}); use profile='ome', or "
                "positions='files' (one file per position)"
            )
            raise _problem(ConfigError(msg), "positions")
        return self

    # ------------------------------------------------------------------ building
    @classmethod
    def of(cls, options: SinkOptions | None = None, /, **changes: Any) -> SinkOptions:
        """Options from keyword arguments (on top of ``options``), with mmtiffsink's errors.

        Raises
        ------
        ConfigError, ProfileError
            For a bad value: the first one, with the option's name in the message.

        """
        # only the fields set explicitly: a default (the template) follows the profile
        data = {} if options is None else options.sink_fields()
        data.update(tiffwrite_names(changes) if cls.ACCEPTS_TIFFWRITE_NAMES else changes)
        return cls(**data)

    def replace(self, **changes: Any) -> SinkOptions:
        """A copy with some options changed (checked like :meth:`of`)."""
        return SinkOptions.of(self, **changes)

    def sink_fields(self) -> dict[str, Any]:
        """The sink's own fields that were set explicitly (a subclass's extra fields left out).

        Defaults are left out so that they follow the other fields when rebuilt (the default
        template follows the profile).
        """
        return {
            name: getattr(self, name)
            for name in self.model_fields_set
            if name in SinkOptions.model_fields
        }

    @property
    def codec(self) -> Codec:
        """The codec of every file (the profile's default resolved, the predictor added)."""
        return self.codec_for(None)

    def codec_for(self, dtype: Any) -> Codec:
        """The codec of a file of ``dtype`` pixels (None: not known yet).

        A default (``compression=DEFAULT``) is the profile's codec for live acquisitions
        (zstd 1 with the predictor for ``bigtiff`` and ``ome``), without the predictor for
        float pixels; :class:`~mmtiffsink.ndtiff.ReplayOptions` use the offline default.
        """
        profile = Profile.get(self.profile)
        codec = profile.codec(
            self.compression,
            predictor=self.predictor is True,
            shape_known=False,
            live=self.LIVE,
            dtype=dtype,
        )
        return codec.with_predictor(False) if self.predictor is False else codec

    def writer_arguments(self, dtype: Any = None) -> dict[str, Any]:
        """Keyword arguments of :class:`~mmtiffsink.tiff.IJTiffFile` for these options."""
        return {
            "profile": self.profile,
            "compression": self.codec_for(dtype),
            "colors": None if self.colors is None else list(self.colors),
            "colormap": self.colormap,
            "max_planes": self.max_planes,
            "keep_up": self.keep_up,
        }


def _first_error(exc: ValidationError) -> MMTiffSinkError:
    """The first problem of a ValidationError as mmtiffsink's own error type."""
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first.get("loc", ()))
    original = (first.get("ctx") or {}).get("error")
    if isinstance(original, MMTiffSinkError):
        text = f"{loc}: {original}" if loc and loc not in str(original) else str(original)
        return type(original)(text)
    message = first.get("msg", str(exc))
    if first.get("type") == "extra_forbidden":
        message = "is not an option of a sink"
    return ConfigError(f"{loc}: {message}" if loc else message)
