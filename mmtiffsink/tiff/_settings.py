"""A file's hyperstack settings: calibration, colors, channel names, comment, OME image facts.

They are checked when given (text by :func:`mmtiffsink._text.check_text`: a character no
file can hold is refused, naming the field), may change until the file is closed (a sink learns the
calibration from the images), and are stored once in the file as JSON (tag 65422) so that
:func:`mmtiffsink.repair` can finish a file its writer never closed.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mmtiffsink._values import require

from .._text import check_text, xml_safe
from ..errors import ConfigError
from ._colors import color_lut, colormap_lut
from ._frames import Coord

__all__ = ["Settings", "acquisition_date", "optional_text", "positive_or_none"]

SETTINGS_VERSION = 1


def positive_or_none(name: str, value: Any) -> float | None:
    """A positive, finite float, or None; a :class:`ConfigError` naming ``name`` otherwise."""
    return require(name, value)


def acquisition_date(value: Any) -> str | None:
    """An ``acquisition_date`` argument as ISO 8601 (xsd:dateTime) text, or None.

    Raises
    ------
    ConfigError
        Neither a :class:`datetime.datetime` nor an ISO 8601 string.

    """
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = _dt.datetime.fromisoformat(value.strip())
        except ValueError:
            msg = f"acquisition_date is an ISO 8601 date and time, got {value!r}"
            raise ConfigError(msg) from None
    if not isinstance(value, _dt.datetime):
        msg = f"acquisition_date is a datetime or ISO 8601 text, got {value!r}"
        raise ConfigError(msg)
    return value.isoformat()


def _annotations(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        msg = f"annotations is a dict of key -> text, got {value!r}"
        raise ConfigError(msg)
    return {
        check_text("an annotations key", str(k)): check_text(f"annotations[{k!r}]", str(v))
        for k, v in value.items()
    }


def optional_text(what: str, value: Any) -> str | None:
    """A text setting (``comment``, ``image_name``): None, or text any file can hold."""
    return None if value is None else check_text(what, str(value))


def _names(names: Any, what: str) -> list[str] | None:
    if names is None:
        return None
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence):
        msg = f"{what} is a list of names, got {names!r}"
        raise ConfigError(msg)
    return [check_text(f"{what}[{i}]", str(n)) for i, n in enumerate(names)]


class Settings:
    """The settable, stored part of a file's options (not thread-safe: the file locks)."""

    __slots__ = (
        "acquisition_date",
        "annotations",
        "channel_names",
        "colormap",
        "colormap_lut",
        "colors",
        "comment",
        "deltaz",
        "image_name",
        "luts",
        "pxsize",
        "shape",
        "timeinterval",
    )

    def __init__(
        self,
        *,
        shape: Coord | None = None,
        pxsize: Any = None,
        deltaz: Any = None,
        timeinterval: Any = None,
        colors: Any = None,
        colormap: Any = None,
        channel_names: Any = None,
        comment: Any = None,
        image_name: Any = None,
        acquisition_date: Any = None,
        annotations: Any = None,
    ) -> None:
        self.shape = shape
        self.pxsize = positive_or_none("pxsize", pxsize)
        self.deltaz = positive_or_none("deltaz", deltaz)
        self.timeinterval = positive_or_none("timeinterval", timeinterval)
        if colors is not None and colormap is not None:
            msg = "give colors (one per channel) or colormap (for all channels), not both"
            raise ConfigError(msg)
        self.colors: list[Any] | None = None
        self.luts: list[np.ndarray] | None = None
        self.colormap: str | None = None
        self.colormap_lut: np.ndarray | None = None
        self.set_colors(colors)
        self.set_colormap(colormap)
        self.channel_names = _names(channel_names, "channel_names")
        self.comment = optional_text("comment", comment)
        self.image_name = optional_text("image_name", image_name)
        self.acquisition_date: str | None = None
        self.set_acquisition_date(acquisition_date)
        self.annotations = _annotations(annotations)

    def set_acquisition_date(self, value: Any) -> None:
        """Set the acquisition's start (a datetime or ISO 8601 text), or None."""
        self.acquisition_date = acquisition_date(value)

    def set_annotations(self, value: Any) -> None:
        """Set key -> text annotations (the OME MapAnnotation), or None."""
        self.annotations = _annotations(value)

    def set_colors(self, colors: Any) -> None:
        """Set one color per channel (CSS names, ``#rrggbb``, RGB triples) or None."""
        if colors is None:
            self.colors = self.luts = None
            return
        if isinstance(colors, (str, bytes)) or not isinstance(colors, Sequence):
            msg = f"colors is a list with one color per channel, got {colors!r}"
            raise ConfigError(msg)
        colors = list(colors)
        luts = [color_lut(color) for color in colors]
        if self.shape is not None and len(colors) < self.shape[0]:
            msg = f"{len(colors)} colors given for {self.shape[0]} channels"
            raise ConfigError(msg)
        self.colors, self.luts = colors, luts

    def set_colormap(self, colormap: Any) -> None:
        """Set one colorcet colormap for every channel, or None."""
        if colormap is None:
            self.colormap = self.colormap_lut = None
            return
        if not isinstance(colormap, str):
            msg = f"colormap is a colorcet name such as 'glasbey', got {colormap!r}"
            raise ConfigError(msg)
        self.colormap_lut = colormap_lut(colormap)
        self.colormap = colormap

    def set_channel_names(self, names: Any) -> None:
        """Set the channel names, in channel order."""
        self.channel_names = _names(names, "channel_names")

    def channel_luts(self, channels: int) -> list[np.ndarray] | None:
        """The LUT of each of ``channels`` channels, or None without colors."""
        if self.luts is not None:
            return self.luts[:channels]
        if self.colormap_lut is not None:
            return [self.colormap_lut] * channels
        return None

    def to_json(self, profile: str) -> dict[str, Any]:
        """What :func:`repair` needs to finish the file."""
        data = {
            "writer": "mmtiffsink",
            "version": SETTINGS_VERSION,
            "profile": profile,
            "shape": self.shape,
            "pxsize": self.pxsize,
            "deltaz": self.deltaz,
            "timeinterval": self.timeinterval,
            "colors": None if self.colors is None else [_color_json(c) for c in self.colors],
            "colormap": self.colormap,
            "channel_names": self.channel_names,
            "comment": self.comment,
        }
        # the OME image facts only when set: other files keep the settings they always had
        ome = {
            "image_name": self.image_name,
            "acquisition_date": self.acquisition_date,
            "annotations": self.annotations,
        }
        data.update({k: v for k, v in ome.items() if v is not None})
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Settings:
        """Settings stored by :meth:`to_json`; damaged or unknown values are left out.

        A file being repaired must be finished even when its stored settings were damaged:
        each value that does not pass its check is dropped (the hyperstack keeps its planes).
        """
        out = cls()
        shape = data.get("shape")
        if (
            isinstance(shape, list)
            and len(shape) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape)
        ):
            out.shape = (shape[0], shape[1], shape[2])
        for name in ("pxsize", "deltaz", "timeinterval"):
            with contextlib.suppress(ConfigError):
                setattr(out, name, positive_or_none(name, data.get(name)))
        stored = dict(data)  # text as stored by an older version, made writable (U+FFFD)
        names = stored.get("channel_names")
        if isinstance(names, list):
            stored["channel_names"] = [xml_safe(str(n)) for n in names]
        notes = stored.get("annotations")
        if isinstance(notes, Mapping):
            stored["annotations"] = {xml_safe(str(k)): xml_safe(str(v)) for k, v in notes.items()}
        for setter, key in (
            (out.set_colors, "colors"),
            (out.set_colormap, "colormap"),
            (out.set_channel_names, "channel_names"),
            (out.set_acquisition_date, "acquisition_date"),
            (out.set_annotations, "annotations"),
        ):
            with contextlib.suppress(ConfigError, ValueError, TypeError):
                setter(stored.get(key))
        comment = data.get("comment")  # as stored, made writable (an older version's file)
        out.comment = None if comment is None else xml_safe(str(comment))
        image_name = data.get("image_name")
        out.image_name = xml_safe(image_name) if isinstance(image_name, str) else None
        return out


def _color_json(color: Any) -> Any:
    if isinstance(color, str):
        return color
    return [float(v) if isinstance(v, float) else int(v) for v in color]
