"""Pixel size, z step and time interval from Micro-Manager / pycro-manager metadata.

Pure functions and a small accumulator, no I/O. Where the numbers come from:

* pixel size: ``PixelSize_um`` (pycro-manager, NDTiff) or ``PixelSizeUm`` (Micro-Manager
  Studio, MMCoreJ), at the top level or inside a nested ``Summary`` mapping. ``0`` is
  Micro-Manager's "uncalibrated".
* z step: ``z-step_um`` when present, else derived from the stage position of each image
  (``ZPosition_um_Intended``, ``ZPosition_um`` or ``ZPositionUm``) across distinct ``Axes['z']``
  indices.
* interval: ``Interval_ms`` when present and positive, else derived from ``ElapsedTime-ms`` across
  distinct ``Axes['time']`` indices, else from ``TimeReceivedByCore`` (the circular buffer's
  timestamp, present on hardware-sequenced frames whose ``ElapsedTime-ms`` is 0.0 for all).

Values may arrive as strings (sequenced acquisitions send most tags as text): every number is
parsed with :func:`parse_float`.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import math
import operator
import re
import statistics
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from mmtiffsink.errors import CalibrationWarning

__all__ = [
    "MAX_PIXEL_SIZE_UM",
    "Calibration",
    "CalibrationTracker",
    "interval_s",
    "parse_float",
    "pixel_size_um",
    "z_step_um",
]

#: Largest pixel size (µm) taken as real; beyond it the value is treated as a unit mistake.
MAX_PIXEL_SIZE_UM: Final = 1000.0

PIXEL_SIZE_KEYS: Final = ("PixelSize_um", "PixelSizeUm")
Z_STEP_KEYS: Final = ("z-step_um",)
INTERVAL_MS_KEYS: Final = ("Interval_ms",)
Z_POSITION_KEYS: Final = ("ZPosition_um_Intended", "ZPosition_um", "ZPositionUm")
ELAPSED_MS_KEYS: Final = ("ElapsedTime-ms",)
RECEIVED_TIME_KEYS: Final = ("TimeReceivedByCore",)
SUMMARY_KEYS: Final = ("Summary",)

# Bounds on what the tracker keeps, so a days-long acquisition does not grow it without limit.
_MAX_Z_STACKS: Final = 256
_MAX_Z_SAMPLES: Final = 16_384
_MAX_TIME_POINTS: Final = 100_000

_Kind = Literal["pixel_size", "z_step", "interval"]
_KIND_TEXT: Final[dict[_Kind, str]] = {
    "pixel_size": "pixel size (um)",
    "z_step": "z step (um)",
    "interval": "time interval (s)",
}

_EPOCH: Final = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_TIMESTAMP = re.compile(
    r"^\s*(\d{4})-(\d{1,2})-(\d{1,2})[ T](\d{1,2}):(\d{2}):(\d{2})(?:[.,](\d+))?\s*$"
)


def parse_float(value: object) -> float | None:
    """Return ``value`` as a finite float, or None when it is not a finite number.

    Parameters
    ----------
    value
        A number (Python or numpy) or its text (``"0.5"``, ``" 1e-3 "``). Booleans, None, empty or
        non-numeric text, NaN and infinities give None.

    Returns
    -------
    float or None
        The finite value, or None.

    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            return None
    return number if math.isfinite(number) else None


def _lookup(metadata: Mapping[str, object], keys: Iterable[str]) -> tuple[bool, object]:
    """Return ``(found, raw value)`` for the first key present, top level first, then summary."""
    keys = tuple(keys)
    scopes: list[Mapping[str, object]] = [metadata]
    for summary_key in SUMMARY_KEYS:
        nested = metadata.get(summary_key)
        if isinstance(nested, Mapping):
            scopes.append(nested)
    for scope in scopes:
        for key in keys:
            if key in scope and scope[key] is not None:
                return True, scope[key]
    return False, None


def _valid_pixel_size(value: float | None) -> float | None:
    if value is None or value <= 0 or value > MAX_PIXEL_SIZE_UM:
        return None
    return value


def _positive(value: float | None) -> float | None:
    return value if value is not None and value > 0 else None


def pixel_size_um(metadata: Mapping[str, object]) -> float | None:
    """Pixel size in µm from image or summary metadata, None when absent or not believable.

    Parameters
    ----------
    metadata
        Per-image or summary metadata. ``PixelSize_um`` or ``PixelSizeUm`` is read at the top level,
        then inside a nested ``Summary`` mapping. Numbers may be given as text.

    Returns
    -------
    float or None
        The pixel size; None when it is missing, 0 (Micro-Manager's "uncalibrated"), negative,
        NaN, infinite, not a number, or absurd (> :data:`MAX_PIXEL_SIZE_UM`).

    """
    return _valid_pixel_size(parse_float(_lookup(metadata, PIXEL_SIZE_KEYS)[1]))


def z_step_um(metadata: Mapping[str, object]) -> float | None:
    """The z step (µm) stated by the metadata (``z-step_um``), None when absent or not > 0.

    Parameters
    ----------
    metadata
        Summary or per-image metadata (Micro-Manager Studio writes ``z-step_um`` in the summary).

    Returns
    -------
    float or None
        The absolute value of the step, or None when missing, zero or not a finite number.

    """
    value = parse_float(_lookup(metadata, Z_STEP_KEYS)[1])
    return _positive(abs(value)) if value is not None else None


def interval_s(metadata: Mapping[str, object]) -> float | None:
    """The time-lapse interval (s) stated by the metadata (``Interval_ms``), None if not > 0.

    Parameters
    ----------
    metadata
        Summary or per-image metadata (Micro-Manager Studio writes ``Interval_ms`` in the
        summary; 0 there means "as fast as possible" and gives None).

    Returns
    -------
    float or None
        The interval in seconds, or None.

    """
    value = _positive(parse_float(_lookup(metadata, INTERVAL_MS_KEYS)[1]))
    return value / 1000.0 if value is not None else None


def _timestamp_us(value: object) -> int | None:
    """Microseconds since the epoch of a ``2024-01-31 12:00:00.123456`` text (zone ignored)."""
    if not isinstance(value, str):
        return None
    match = _TIMESTAMP.match(value)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    try:
        stamp = _dt.datetime(year, month, day, hour, minute, second, tzinfo=_dt.timezone.utc)
    except ValueError:
        return None
    micros = int((match.group(7) or "0")[:6].ljust(6, "0"))
    return (stamp - _EPOCH) // _dt.timedelta(microseconds=1) + micros


def _as_index(value: object) -> int | None:
    """An axis index as int (numpy ints too); None for text labels, bools and other types."""
    if isinstance(value, (bool, str)) or value is None:
        return None
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        return None


def _slopes(samples: Mapping[int, float]) -> list[float]:
    """``|Δvalue| / |Δindex|`` between neighbouring indices of ``samples``."""
    indices = sorted(samples)
    return [abs(samples[b] - samples[a]) / (b - a) for a, b in itertools.pairwise(indices)]


def _median_slope(samples: Mapping[int, float]) -> float | None:
    """Median of |Δvalue| / |Δindex| over neighbouring indices; None with fewer than 2 indices."""
    if len(samples) < 2:
        return None
    return statistics.median(_slopes(samples))


def _is_absurd(value: float) -> bool:
    return not math.isfinite(value) or value <= 0


@dataclass(frozen=True)
class Calibration:
    """Spatial and temporal calibration of a hyperstack; None means unknown.

    Parameters
    ----------
    pixel_size_um
        Size of a pixel in x and y, in µm.
    z_step_um
        Distance between z planes, in µm.
    interval_s
        Time between time points, in seconds.

    """

    pixel_size_um: float | None = None
    z_step_um: float | None = None
    interval_s: float | None = None


class CalibrationTracker:
    """Accumulate calibration evidence image by image, then give one :class:`Calibration`.

    Feed every image's ``(axes, metadata)`` to :meth:`update` (and the summary metadata, when there
    is one, to :meth:`update_summary`), then call :meth:`result`. Memory stays bounded: at most a
    few hundred z stacks (16,384 z samples) and one number per time point (up to 100,000) are
    kept.

    Rules:

    * pixel size: the first valid value (summary or image). A later, different value is ignored
      with a :class:`~mmtiffsink.errors.CalibrationWarning` (the objective changed mid-run).
    * z step: ``z-step_um`` when stated, else the median over z stacks of
      ``|Δposition| / |Δz index|`` between neighbouring z indices, where a stack is the set of
      images sharing every axis but ``z`` (so per-channel or per-position z offsets do not leak
      in). Images without a z position are ignored.
    * interval: ``Interval_ms`` when stated, else the median of ``|Δt| / |Δtime index|`` over the
      first arrival (smallest ``ElapsedTime-ms``) of each time index; when that median is 0
      (hardware-sequenced frames all carry 0.0) the same over ``TimeReceivedByCore``; else None.

    Values present but absurd (negative, non-finite, non-numeric, pixel size above
    :data:`MAX_PIXEL_SIZE_UM`) are dropped with a ``CalibrationWarning``, at most once per kind.
    Zeros are Micro-Manager's "not set" and are dropped silently.
    """

    def __init__(self) -> None:
        self._pixel_size: float | None = None
        self._stated_z_step: float | None = None
        self._stated_interval: float | None = None
        self._z_samples: dict[tuple[tuple[str, object], ...], dict[int, float]] = {}
        self._z_count = 0
        self._elapsed_ms: dict[int, float] = {}
        self._received_ms: dict[int, float] = {}
        self._received_origin_us: int | None = None
        self._warned: set[_Kind] = set()
        self._pending: list[str] = []

    # -- warnings ---------------------------------------------------------------------------

    def _warn(self, kind: _Kind, message: str) -> None:
        """Queue a warning of ``kind`` unless one was given already; public methods flush it."""
        if kind in self._warned:
            return
        self._warned.add(kind)
        self._pending.append(f"{_KIND_TEXT[kind]}: {message}; left out of the calibration")

    def _flush(self) -> None:
        """Issue the queued warnings, attributed to the caller of the public method."""
        pending, self._pending = self._pending, []
        for message in pending:
            warnings.warn(message, CalibrationWarning, stacklevel=3)

    def _checked(self, kind: _Kind, key: str, raw: object, *, signed: bool = False) -> float | None:
        """Parse a stated metadata number; queue a warning when present but not usable.

        Zero is Micro-Manager's "not set" and gives None silently. With ``signed`` a negative
        value is a direction and its absolute value is used.
        """
        value = parse_float(raw)
        if value is None:
            self._warn(kind, f"{key}={raw!r} is not a finite number")
            return None
        if signed:
            value = abs(value)
        if value == 0:
            return None
        if value < 0 or (kind == "pixel_size" and value > MAX_PIXEL_SIZE_UM):
            self._warn(kind, f"{key}={raw!r} is not believable")
            return None
        return value

    # -- feeding ----------------------------------------------------------------------------

    def _stated(self, metadata: Mapping[str, object]) -> None:
        found, raw = _lookup(metadata, PIXEL_SIZE_KEYS)
        if found:
            value = self._checked("pixel_size", "pixel size", raw)
            if value is not None:
                if self._pixel_size is None:
                    self._pixel_size = value
                elif not math.isclose(value, self._pixel_size, rel_tol=1e-9):
                    self._warn(
                        "pixel_size",
                        f"changed from {self._pixel_size} to {value} during the acquisition; "
                        f"keeping {self._pixel_size} and ignoring later values",
                    )
        if self._stated_z_step is None:
            found, raw = _lookup(metadata, Z_STEP_KEYS)
            if found:
                self._stated_z_step = self._checked("z_step", Z_STEP_KEYS[0], raw, signed=True)
        if self._stated_interval is None:
            found, raw = _lookup(metadata, INTERVAL_MS_KEYS)
            if found:
                value = self._checked("interval", INTERVAL_MS_KEYS[0], raw)
                self._stated_interval = value / 1000.0 if value is not None else None

    def update_summary(self, summary: Mapping[str, object]) -> None:
        """Take the stated values (pixel size, ``z-step_um``, ``Interval_ms``) of summary metadata.

        Parameters
        ----------
        summary
            The summary metadata given to a storage's ``initialize()``, or an NDTiff/MMStack
            summary.

        """
        self._stated(summary)
        self._flush()

    def update(self, axes: Mapping[str, object], metadata: Mapping[str, object]) -> None:
        """Take the evidence of one image.

        Parameters
        ----------
        axes
            The image's axes (``metadata['Axes']`` in pycro-manager): ``z`` and ``time`` indices
            are used; other axes only group z stacks.
        metadata
            The image's metadata.

        """
        self._stated(metadata)
        z_index = _as_index(axes.get("z"))
        if z_index is not None and self._stated_z_step is None:
            self._z_sample(axes, z_index, metadata)
        t_index = _as_index(axes.get("time"))
        if t_index is not None and self._stated_interval is None:
            self._time_sample(self._elapsed_ms, t_index, _lookup(metadata, ELAPSED_MS_KEYS)[1])
            found, raw = _lookup(metadata, RECEIVED_TIME_KEYS)
            micros = _timestamp_us(raw) if found else None
            if micros is not None:
                # relative to the first stamp: keeps microsecond precision in a float
                if self._received_origin_us is None:
                    self._received_origin_us = micros
                received_ms = (micros - self._received_origin_us) / 1000.0
                self._time_sample(self._received_ms, t_index, received_ms)
        self._flush()

    def _z_sample(
        self, axes: Mapping[str, object], z_index: int, metadata: Mapping[str, object]
    ) -> None:
        """Keep the z position of this image in its stack (all axes but z equal)."""
        if self._z_count >= _MAX_Z_SAMPLES:
            return
        found, raw = _lookup(metadata, Z_POSITION_KEYS)
        position = parse_float(raw) if found else None
        if position is None:
            return
        stack = tuple(sorted(((k, v) for k, v in axes.items() if k != "z"), key=lambda kv: kv[0]))
        try:
            samples = self._z_samples.get(stack)
        except TypeError:  # an unhashable axis value: not a pycro-manager axis
            return
        if samples is None:
            if len(self._z_samples) >= _MAX_Z_STACKS:
                return  # keep filling the stacks already started (z may be the outer loop)
            samples = self._z_samples[stack] = {}
        if z_index not in samples:
            samples[z_index] = position
            self._z_count += 1

    @staticmethod
    def _time_sample(samples: dict[int, float], index: int, raw: object) -> None:
        value = parse_float(raw)
        if value is None:
            return
        previous = samples.get(index)
        if previous is None:
            if len(samples) < _MAX_TIME_POINTS:
                samples[index] = value
        elif value < previous:
            samples[index] = value

    # -- results ----------------------------------------------------------------------------

    def _derived_z_step(self) -> float | None:
        if self._stated_z_step is not None:
            return self._stated_z_step
        slopes: list[float] = []
        for samples in self._z_samples.values():
            slopes.extend(_slopes(samples))
        if not slopes:
            return None
        step = statistics.median(slopes)
        if step <= 0:
            self._warn("z_step", "the z positions of different z indices are equal")
            return None
        return step

    def _derived_interval(self) -> float | None:
        if self._stated_interval is not None:
            return self._stated_interval
        for samples in (self._elapsed_ms, self._received_ms):
            slope = _median_slope(samples)
            if slope is not None and slope > 0:
                return slope / 1000.0
        return None

    def _explicit(self, kind: _Kind, value: float | None) -> float | None:
        if value is None:
            return None
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if _is_absurd(number) or (kind == "pixel_size" and number > MAX_PIXEL_SIZE_UM):
            self._warn(kind, f"the value given explicitly, {value!r}, is not believable")
            return None
        return number

    def result(self, explicit: Calibration | None = None) -> Calibration:
        """The calibration: explicit values first, then the values stated or derived so far.

        Parameters
        ----------
        explicit
            Values the user gave; each one that is not None wins over the metadata. An absurd
            explicit value (non-finite, <= 0, pixel size > :data:`MAX_PIXEL_SIZE_UM`) is dropped
            with a ``CalibrationWarning`` and the metadata's value is used instead.

        Returns
        -------
        Calibration
            A new frozen value; the tracker can keep accumulating afterwards.

        """
        explicit = explicit or Calibration()
        pixel = self._explicit("pixel_size", explicit.pixel_size_um)
        z_step = self._explicit("z_step", explicit.z_step_um)
        interval = self._explicit("interval", explicit.interval_s)
        calibration = Calibration(
            pixel_size_um=pixel if pixel is not None else self._pixel_size,
            z_step_um=z_step if z_step is not None else self._derived_z_step(),
            interval_s=interval if interval is not None else self._derived_interval(),
        )
        self._flush()
        return calibration
