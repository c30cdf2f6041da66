"""Pixel size, z step and time interval of a hyperstack, from what its frames tell.

A small accumulator over the neutral :class:`~mmtiffsink.sink.Frame` records, no I/O:

* pixel size: the first one stated (summary or frame); ``0`` is "uncalibrated";
* z step: stated, else derived from each frame's stage z (``z_um``) across distinct z indices;
* interval: stated, else derived from ``elapsed_s`` across distinct time indices, else from
  ``received_us`` (the buffer's clock of hardware-sequenced frames whose elapsed time is 0.0 for
  all).

:meth:`CalibrationTracker.update` and :meth:`CalibrationTracker.update_summary` also take
Micro-Manager metadata, read by :mod:`mmtiffsink.sink._mmkeys` (the one table of its keys).
"""

from __future__ import annotations

import itertools
import math
import operator
import statistics
import warnings
from collections.abc import Mapping
from typing import Final, Literal

from mmtiffsink._values import finite, positive
from mmtiffsink.errors import CalibrationWarning

from ._frame import Calibration, Frame
from ._mmkeys import INTERVAL_MS, PIXEL_SIZE_UM, Z_STEP_UM, lookup, mm_frame, stated_calibration

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

#: A number as a finite float, or None (:func:`mmtiffsink._values.finite`).
parse_float = finite


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
    value = positive(lookup(metadata, PIXEL_SIZE_UM)[1])
    return value if value is not None and value <= MAX_PIXEL_SIZE_UM else None


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
    value = finite(lookup(metadata, Z_STEP_UM)[1])
    return positive(abs(value)) if value is not None else None


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
    value = positive(lookup(metadata, INTERVAL_MS)[1])
    return value / 1000.0 if value is not None else None


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

    def _checked(self, kind: _Kind, value: float | None) -> float | None:
        """A stated value, or None; queue a warning when it is present but not usable.

        Zero is Micro-Manager's "not set" and gives None silently.
        """
        if value is None or value == 0:
            return None
        if not math.isfinite(value):
            self._warn(kind, f"the stated value {value!r} is not a finite number")
            return None
        if value < 0 or (kind == "pixel_size" and value > MAX_PIXEL_SIZE_UM):
            self._warn(kind, f"the stated value {value!r} is not believable")
            return None
        return value

    # -- feeding ----------------------------------------------------------------------------

    def _stated(self, stated: Calibration) -> None:
        value = self._checked("pixel_size", stated.pixel_size_um)
        if value is not None:
            if self._pixel_size is None:
                self._pixel_size = value
            elif not math.isclose(value, self._pixel_size, rel_tol=1e-9):
                self._warn(
                    "pixel_size",
                    f"changed from {self._pixel_size} to {value} during the acquisition; "
                    f"keeping {self._pixel_size} and ignoring later values",
                )
        if self._stated_z_step is None and stated.z_step_um is not None:
            self._stated_z_step = self._checked("z_step", stated.z_step_um)
        if self._stated_interval is None and stated.interval_s is not None:
            self._stated_interval = self._checked("interval", stated.interval_s)

    def state(self, stated: Calibration) -> None:
        """Take a calibration the acquisition states (a :class:`~mmtiffsink.sink.Summary`'s).

        Parameters
        ----------
        stated
            Pixel size, planned z step and interval; None: not stated, 0: "not set".

        """
        self._stated(stated)
        self._flush()

    def update_summary(self, summary: Mapping[str, object]) -> None:
        """Take the stated values (pixel size, ``z-step_um``, ``Interval_ms``) of summary metadata.

        Parameters
        ----------
        summary
            Micro-Manager summary metadata (a storage's ``initialize()``, an NDTiff/MMStack
            summary).

        """
        self._stated(stated_calibration(summary))
        self._flush()

    def update(self, axes: Mapping[str, object], metadata: Mapping[str, object]) -> None:
        """Take the evidence of one image with Micro-Manager metadata (see :meth:`add`).

        Parameters
        ----------
        axes
            The image's axes (``metadata['Axes']`` in pycro-manager).
        metadata
            The image's metadata.

        """
        self._add(mm_frame(axes, metadata))
        self._flush()

    def add(self, frame: Frame) -> None:
        """Take the evidence of one image.

        Parameters
        ----------
        frame
            The image's record: its ``z`` and ``time`` indices are used, other axes only group
            z stacks; its stated calibration, ``z_um``, ``elapsed_s`` and ``received_us``.

        """
        self._add(frame)
        self._flush()

    def _add(self, frame: Frame) -> None:
        self._stated(frame.stated)
        axes = frame.axes
        z_index = _as_index(axes.get("z"))
        if z_index is not None and self._stated_z_step is None:
            self._z_sample(axes, z_index, frame.z_um)
        t_index = _as_index(axes.get("time"))
        if t_index is not None and self._stated_interval is None:
            if frame.elapsed_s is not None:
                self._time_sample(self._elapsed_ms, t_index, frame.elapsed_s * 1000.0)
            micros = frame.received_us
            if micros is not None:
                # relative to the first stamp: keeps microsecond precision in a float
                if self._received_origin_us is None:
                    self._received_origin_us = micros
                received_ms = (micros - self._received_origin_us) / 1000.0
                self._time_sample(self._received_ms, t_index, received_ms)

    def _z_sample(
        self, axes: Mapping[str, object], z_index: int, position: float | None
    ) -> None:
        """Keep the z position of this image in its stack (all axes but z equal)."""
        if self._z_count >= _MAX_Z_SAMPLES or position is None or not math.isfinite(position):
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
    def _time_sample(samples: dict[int, float], index: int, value: float) -> None:
        if not math.isfinite(value):
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
        number = finite(value)
        if number is None or number <= 0 or (kind == "pixel_size" and number > MAX_PIXEL_SIZE_UM):
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
