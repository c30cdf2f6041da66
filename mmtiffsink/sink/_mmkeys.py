"""Micro-Manager's metadata keys: the one table, and the reading of such metadata into records.

pycro-manager's images (``image_process_fn``, a storage's ``put_image``), NDTiff datasets and
Micro-Manager Studio's files all speak this vocabulary; :func:`mm_frame` and :func:`mm_summary`
turn it into the sink's neutral :class:`~mmtiffsink.sink.Frame` and
:class:`~mmtiffsink.sink.Summary`. No other module reads these keys.

Where each value comes from (first key found wins; top level first, then a nested ``Summary``):

* pixel size: ``PixelSize_um`` (pycro-manager, NDTiff) or ``PixelSizeUm`` (Studio, MMCoreJ);
  ``0`` is "uncalibrated";
* z step / interval as stated: ``z-step_um``, ``Interval_ms`` (Studio's summary);
* stage position: ``X/Y/ZPosition_um_Intended`` (pycro-manager), ``X/Y/ZPosition_um``,
  ``X/Y/ZPositionUm`` (Studio), ``X-Position``/``Y-Position``/``Z-Position`` (MMCoreJ);
* time: ``ElapsedTime-ms``; ``TimeReceivedByCore`` (the buffer's time stamp, text);
* exposure: ``Exposure`` or ``Exposure-ms`` (ms);
* start of the acquisition: ``StartTime``, ``DateAndTime`` or ``Date`` (summary).

Values may arrive as text (sequenced acquisitions send most tags as text).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
from collections.abc import Mapping
from typing import Any, Final

from mmtiffsink._values import finite

from ._frame import Calibration, Frame, Summary

__all__ = [
    "ELAPSED_MS",
    "EXPOSURE_MS",
    "INTERVAL_MS",
    "PIXEL_SIZE_UM",
    "POSITION_UM",
    "RECEIVED_TIME",
    "START_TIME",
    "Z_STEP_UM",
    "acquisition_start",
    "lookup",
    "mm_frame",
    "mm_summary",
    "summary_annotations",
]

PIXEL_SIZE_UM: Final = ("PixelSize_um", "PixelSizeUm")
Z_STEP_UM: Final = ("z-step_um",)
INTERVAL_MS: Final = ("Interval_ms",)
POSITION_UM: Final[dict[str, tuple[str, ...]]] = {
    axis: (
        f"{axis}Position_um_Intended",
        f"{axis}Position_um",
        f"{axis}PositionUm",
        f"{axis}-Position",
    )
    for axis in "XYZ"
}
ELAPSED_MS: Final = ("ElapsedTime-ms",)
RECEIVED_TIME: Final = ("TimeReceivedByCore",)
EXPOSURE_MS: Final = ("Exposure", "Exposure-ms")
START_TIME: Final = ("StartTime", "DateAndTime", "Date")
_NESTED: Final = "Summary"

_EPOCH: Final = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_TIMESTAMP = re.compile(
    r"^\s*(\d{4})-(\d{1,2})-(\d{1,2})[ T](\d{1,2}):(\d{2}):(\d{2})(?:[.,](\d+))?\s*$"
)


def lookup(metadata: Mapping[str, Any], keys: tuple[str, ...]) -> tuple[bool, Any]:
    """``(found, raw value)`` of the first key present, top level first, then ``Summary``."""
    scopes: list[Mapping[str, Any]] = [metadata]
    nested = metadata.get(_NESTED)
    if isinstance(nested, Mapping):
        scopes.append(nested)
    for scope in scopes:
        for key in keys:
            if key in scope and scope[key] is not None:
                return True, scope[key]
    return False, None


def _number(metadata: Mapping[str, Any], keys: tuple[str, ...]) -> float | None:
    """The value of the first key present as a float; NaN when present but not a number."""
    found, raw = lookup(metadata, keys)
    if not found:
        return None
    number = finite(raw)
    return math.nan if number is None else number


def _plain(metadata: Mapping[str, Any], keys: tuple[str, ...], scale: float) -> float | None:
    """A finite value of the first key present, scaled; None when absent or not a number."""
    number = finite(lookup(metadata, keys)[1])
    return None if number is None else number * scale


def timestamp_us(value: object) -> int | None:
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


def stated_calibration(metadata: Mapping[str, Any]) -> Calibration:
    """The calibration metadata states (NaN: stated, but not a number)."""
    z_step = _number(metadata, Z_STEP_UM)
    interval_ms = _number(metadata, INTERVAL_MS)
    return Calibration(
        pixel_size_um=_number(metadata, PIXEL_SIZE_UM),
        z_step_um=None if z_step is None else abs(z_step),  # a sign is a direction
        interval_s=None if interval_ms is None else interval_ms / 1000.0,
    )


def mm_frame(axes: Mapping[str, Any], metadata: Mapping[str, Any] | None) -> Frame:
    """The :class:`~mmtiffsink.sink.Frame` of an image with Micro-Manager metadata.

    Parameters
    ----------
    axes
        The image's axes (pycro-manager's ``metadata['Axes']``, an NDTiff index entry's).
    metadata
        Its metadata (kept in the frame as it is, stored with the image).

    """
    meta: Mapping[str, Any] = metadata or {}
    exposure = _plain(meta, EXPOSURE_MS, 1e-3)
    elapsed = _plain(meta, ELAPSED_MS, 1e-3)
    x, y, z = (_plain(meta, POSITION_UM[axis], 1.0) for axis in "XYZ")
    return Frame(
        axes=axes,
        metadata=metadata,
        stated=stated_calibration(meta),
        x_um=x,
        y_um=y,
        z_um=z,
        elapsed_s=elapsed,
        received_us=timestamp_us(lookup(meta, RECEIVED_TIME)[1]),
        exposure_s=exposure if exposure is not None and exposure >= 0 else None,
    )


def acquisition_start(summary: Mapping[str, Any]) -> _dt.datetime | None:
    """The acquisition's start from summary metadata (``StartTime`` or ``DateAndTime``)."""
    for key in START_TIME:
        text = summary.get(key)
        if not isinstance(text, str):
            continue
        text = text.strip()
        for form in ("%Y-%m-%d %H:%M:%S.%f %z", "%Y-%m-%d %H:%M:%S %z"):
            try:
                return _dt.datetime.strptime(text, form)
            except ValueError:
                pass
        try:
            return _dt.datetime.fromisoformat(text.replace(" ", "T", 1))
        except ValueError:
            continue
    return None


def summary_annotations(summary: Mapping[str, Any]) -> dict[str, str]:
    """Summary metadata as key -> text (JSON for values that are not text)."""
    return {
        str(k): v if isinstance(v, str) else json.dumps(v, default=str) for k, v in summary.items()
    }


def mm_summary(summary: Mapping[str, Any]) -> Summary:
    """The :class:`~mmtiffsink.sink.Summary` of Micro-Manager summary metadata."""
    return Summary(
        stated=stated_calibration(summary),
        start=acquisition_start(summary),
        annotations=summary_annotations(summary),
    )
