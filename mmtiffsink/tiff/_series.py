"""Several images (series) in one OME-TIFF: e.g. every position of an acquisition.

A frame of series ``s > 0`` is keyed ``(c, z, t, s)`` (:data:`~._frames.Key`) and its IFD's
plane tag holds those four values, so a killed file still tells which series each frame
belongs to; series 0 keeps the three-value key and tag of a single-image file, which stays
byte for byte what it was. Each series has its own (C, Z, T) span; every series shares the
frame shape, pixel type, codec and the file's settings (calibration, channel names, colours).
A series' name and :class:`~._ome.StageLabel` travel with its frames in a private tag
(:data:`SERIES_TAG`, JSON, stored once per distinct value), so :func:`~mmtiffsink.repair`
finds them too.

At close the chain holds series 0's planes in canonical order, then series 1's, ...; a series
that received no frame is left out (with a warning) and the others keep their order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, final

import numpy as np

from mmtiffsink._values import require

from .._text import check_text, xml_safe
from ..errors import ConfigError, CoordinateError, ProfileError
from ..limits import MAX_SERIES
from ._frames import NONE_SAVED, Coord, Key, widen
from ._ome import StageLabel
from ._profiles import Profile
from ._tags import SERIES_TAG, Tag

__all__ = ["SERIES_TAG", "Part", "SeriesTable", "parse_label", "series_index", "stage_label"]

"""Private tag of a frame's IFD: its series' name and stage label, as JSON."""
_EMPTY: tuple[Coord, Coord] = ((0, 0, 0), NONE_SAVED)
_MAX_NAME = 4096


def _planes(low: Coord, high: Coord) -> int:
    if high == NONE_SAVED:
        return 0
    return (high[0] - low[0] + 1) * (high[1] - low[1] + 1) * (high[2] - low[2] + 1)


def series_index(value: Any, profile: Profile) -> int:
    """A ``series=`` argument checked: an int from 0 below MAX_SERIES; > 0 only for ``ome``.

    Raises
    ------
    CoordinateError
        Not an integer, negative, or absurdly large.
    ProfileError
        A series above 0 in a file whose profile holds one image.

    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        msg = f"series must be an integer (0 for the first image), got {value!r}"
        raise CoordinateError(msg)
    if value < 0:
        msg = f"series={value} is negative; series are numbered from 0"
        raise CoordinateError(msg)
    if value >= MAX_SERIES:
        msg = (
            f"series={value} is absurd: one file holds series 0 to {MAX_SERIES - 1:,}; "
            "number the series (positions) from 0"
        )
        raise CoordinateError(msg)
    if value and not profile.ome:
        msg = (
            f"series={value}: only profile='ome' holds several images (series) in one file, "
            f"this file is {profile.name!r}; use profile='ome', or one file per series"
        )
        raise ProfileError(msg)
    return int(value)


def _coordinate(axis: str, value: Any) -> float | None:
    return require(f"stage {axis} (µm)", value, sign="any")


def _name(what: str, value: Any) -> str | None:
    if value is None:
        return None
    text = check_text(what, value)  # text any file can hold
    if len(text) > _MAX_NAME:
        msg = f"{what} is {len(text):,} characters long; keep it under {_MAX_NAME}"
        raise ConfigError(msg)
    return text


def stage_label(stage: Any, default_name: str | None) -> StageLabel | None:
    """A ``stage=`` argument checked: a StageLabel, a dict of its fields, or None.

    A stage label without a name takes ``default_name`` (the series' name).

    Raises
    ------
    ConfigError
        Unknown fields, a name that is not text, or coordinates that are not finite numbers.

    """
    if stage is None:
        return None
    if isinstance(stage, StageLabel):
        fields = {"name": stage.name, "x": stage.x, "y": stage.y, "z": stage.z}
    elif isinstance(stage, Mapping):
        unknown = sorted(str(k) for k in stage if k not in ("name", "x", "y", "z"))
        if unknown:
            msg = f"unknown stage field {unknown[0]!r}; use name, x, y, z (µm)"
            raise ConfigError(msg)
        fields = dict(stage)
    else:
        msg = f"stage is a StageLabel or a dict such as {{'x': 10.0, 'y': 5.0}}, got {stage!r}"
        raise ConfigError(msg)
    name = _name("the stage label's name", fields.get("name")) or default_name or ""
    x, y, z = (_coordinate(axis, fields.get(axis)) for axis in "xyz")
    return StageLabel(name, x, y, z)


def _label_tag(name: str | None, stage: StageLabel | None) -> Tag | None:
    data: dict[str, Any] = {}
    if name is not None:
        data["name"] = name
    if stage is not None:
        found = {"x": stage.x, "y": stage.y, "z": stage.z}
        data["stage"] = {"name": stage.name, **{k: v for k, v in found.items() if v is not None}}
    return Tag.ascii(SERIES_TAG, json.dumps(data, sort_keys=True)) if data else None


def parse_label(raw: bytes) -> tuple[str | None, StageLabel | None] | None:
    """Inverse of the series tag: (name, stage label); None when the value is damaged."""
    try:
        data = json.loads(raw.rstrip(b"\0").decode("utf-8"))
        if not isinstance(data, dict):
            return None
        name = data.get("name")  # as stored (an older version's text made writable: U+FFFD)
        name = _name("name", xml_safe(name) if isinstance(name, str) else name)
        stage = data.get("stage")
        if isinstance(stage, dict) and isinstance(stage.get("name"), str):
            stage = {**stage, "name": xml_safe(stage["name"])}
        return name, stage_label(stage, name) if isinstance(stage, dict) else None
    except (UnicodeDecodeError, ValueError, RecursionError):  # ConfigError is a ValueError
        return None


@final
@dataclass(frozen=True, slots=True)
class Part:
    """One series of a finished file: its number, (C, Z, T) span, name and stage label."""

    series: int
    low: Coord
    high: Coord
    name: str | None = None
    stage: StageLabel | None = None

    @property
    def shape(self) -> Coord:
        """(C, Z, T) of the series."""
        lo, hi = self.low, self.high
        return (hi[0] - lo[0] + 1, hi[1] - lo[1] + 1, hi[2] - lo[2] + 1)

    def plane_keys(self) -> list[Key]:
        """The keys of every plane, C fastest, then Z, then T (the series' IFD order)."""
        lo, hi, s = self.low, self.high, self.series
        tail = (s,) if s else ()
        return [
            (c, z, t, *tail)
            for t in range(lo[2], hi[2] + 1)
            for z in range(lo[1], hi[1] + 1)
            for c in range(lo[0], hi[0] + 1)
        ]


class SeriesTable:
    """The series of one file beyond series 0, and every series' name and stage label.

    Not thread-safe: the file's lock guards it. Series 0's span stays in the file itself
    (its ``_low``/``_high``), so a single-image file never looks here while saving.
    """

    __slots__ = ("labels", "planes", "spans", "tags")

    def __init__(self) -> None:
        self.spans: dict[int, tuple[Coord, Coord]] = {}
        """Series > 0 -> the (low, high) of its saved coordinates."""
        self.planes = 0
        """Planes the spans of the series > 0 hold together."""
        self.labels: dict[int, tuple[str | None, StageLabel | None]] = {}
        self.tags: dict[int, Tag] = {}
        """Series -> the label tag its frames carry."""

    @staticmethod
    def key(coord: Coord, series: Any, profile: Profile) -> Key:
        """The plane key of ``coord`` in ``series`` (checked, see :func:`series_index`)."""
        s = series_index(series, profile)
        return coord if s == 0 else (*coord, s)

    def check(
        self,
        key: Key,
        low0: Coord,
        high0: Coord,
        max_planes: int,
        path: object,
        declared: Coord | None = None,
    ) -> None:
        """Refuse a frame that would make the file's series hold more than ``max_planes``.

        With a declared (C, Z, T), every series holds all of it.
        """
        s = key[3] if len(key) > 3 else 0
        coord = (key[0], key[1], key[2])
        low, high = (low0, high0) if s == 0 else self.spans.get(s, _EMPTY)
        if declared is not None:
            series = set(self.spans) | ({0} if high0 != NONE_SAVED else set()) | {s}
            total = len(series) * declared[0] * declared[1] * declared[2]
        else:
            lo, hi = widen(low, high, coord)
            others = _planes(low0, high0) + self.planes - _planes(low, high)
            total = others + _planes(lo, hi)
        if total > max_planes:
            msg = (
                f"plane (c, z, t)={coord} of series {s} of {path} would make its series hold "
                f"{total:,} planes (C x Z x T summed over the series), more than the cap of "
                f"{max_planes:,} planes per file; check the coordinates, or raise the cap "
                "with max_planes="
            )
            raise CoordinateError(msg)

    def extend(self, key: Key) -> None:
        """Grow the span of the key's series (> 0) to hold it."""
        s = key[3]
        low, high = self.spans.get(s, _EMPTY)
        lo, hi = widen(low, high, (key[0], key[1], key[2]))
        self.spans[s] = (lo, hi)
        self.planes += _planes(lo, hi) - _planes(low, high)

    def set_label(self, series: int, name: Any, stage: Any) -> None:
        """Name a series and give it a stage label (None: none); checked first."""
        text = _name("a series name", name)
        label = stage_label(stage, text)
        self.labels[series] = (text, label)
        tag = _label_tag(text, label)
        if tag is None:
            self.tags.pop(series, None)
        else:
            self.tags[series] = tag

    def extra(self, key: Key) -> list[Tag]:
        """The label tag a frame of ``key``'s series carries (none without a label)."""
        tag = self.tags.get(key[3] if len(key) > 3 else 0)
        return [] if tag is None else [tag]

    def parts(
        self, low0: Coord, high0: Coord, declared: Coord | None
    ) -> tuple[list[Part], list[int]]:
        """The series of the finished file, in order, and the labelled ones without frames.

        With a declared (C, Z, T), every series takes it.
        """
        spans = dict(self.spans)
        if high0 != NONE_SAVED:
            spans[0] = (low0, high0)
        if declared is not None:
            full = ((0, 0, 0), (declared[0] - 1, declared[1] - 1, declared[2] - 1))
            spans = dict.fromkeys(spans, full)
        parts = [
            Part(s, lo, hi, *self.labels.get(s, (None, None)))
            for s, (lo, hi) in sorted(spans.items())
        ]
        empty = sorted(s for s in self.labels if s not in spans and (s or self.spans))
        return parts, empty

    def shapes(self, low0: Coord, high0: Coord, declared: Coord | None) -> dict[int, Coord]:
        """Series -> (C, Z, T) of the series saved so far."""
        return {part.series: part.shape for part in self.parts(low0, high0, declared)[0]}
