"""The one home of the rules for numbers and units that every stage reads or checks.

Two kinds of caller, one rule:

- *lenient* readers of metadata that may hold anything (Micro-Manager's JSON, a foreign
  file's tags): :func:`finite` and :func:`positive` give a float or None, never raise;
- *strict* checks of what a user asked for (``IJTiffFile(pixel_size_um=...)``,
  ``SinkOptions``, a run file): :func:`require` gives a float or None (not given) and raises a
  :class:`~mmtiffsink.errors.ConfigError` (or the error class asked for) that names the field.

Both accept Python and numpy numbers alike (``np.float32(0.65)`` is 0.65 everywhere); booleans
are never numbers; NaN and infinities are never values.
"""

from __future__ import annotations

import math
from typing import Final

from mmtiffsink.errors import ConfigError, MMTiffSinkError

__all__ = ["LENGTH_UM", "RESOLUTION_UNIT_UM", "TIME_S", "finite", "positive", "require"]


def _float(value: object) -> float | None:
    """``float(value)`` for numbers and numeric text; None for bools and anything else."""
    if value is None or isinstance(value, bool) or type(value).__name__ == "bool_":
        return None
    if isinstance(value, str):
        value = value.strip()
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None


def finite(value: object) -> float | None:
    """``value`` as a finite float (a number, numpy scalar or numeric text), else None."""
    number = _float(value)
    return number if number is not None and math.isfinite(number) else None


def positive(value: object) -> float | None:
    """``value`` as a positive, finite float, else None."""
    number = finite(value)
    return number if number is not None and number > 0 else None


def require(
    name: str,
    value: object,
    *,
    sign: str = "positive",
    error: type[MMTiffSinkError] = ConfigError,
) -> float | None:
    """A user's number, checked: None stays None, anything else must be a number.

    Parameters
    ----------
    name
        The field, as the user wrote it (named in the error).
    value
        None (not given), a Python or numpy number. Text and booleans are refused: a number in
        the Python API is a number.
    sign
        ``"positive"`` (> 0, the default), ``"non-negative"`` (>= 0) or ``"any"``.
    error
        The error class raised (``ConfigError`` unless a stage has its own, e.g. ``FrameError``).

    Returns
    -------
    float or None
        The value as a float.

    Raises
    ------
    MMTiffSinkError
        ``error``, naming ``name``, for a value that is not a finite number of that sign.

    """
    if value is None:
        return None
    number = None if isinstance(value, (str, bytes)) else _float(value)
    if number is None:
        msg = f"{name} must be a number, got {value!r}"
        raise error(msg)
    bad = (
        not math.isfinite(number)
        or (sign == "positive" and number <= 0)
        or (sign == "non-negative" and number < 0)
    )
    if bad:
        kind = {"positive": "a positive, finite", "non-negative": "a non-negative, finite"}
        msg = f"{name} must be {kind.get(sign, 'a finite')} number, got {value!r}"
        raise error(msg)
    return number


# ImageJ and OME length units -> micrometres; ImageJ time units -> seconds
LENGTH_UM: Final[dict[str, float]] = {
    "micron": 1.0,
    "microns": 1.0,
    "um": 1.0,
    "µm": 1.0,
    "μm": 1.0,
    "\\u00B5m": 1.0,  # ImageJ escapes the micro sign in descriptions
    "nm": 1e-3,
    "nanometer": 1e-3,
    "mm": 1e3,
    "millimeter": 1e3,
    "cm": 1e4,
    "centimeter": 1e4,
    "m": 1e6,
    "meter": 1e6,
    "inch": 25_400.0,
}
TIME_S: Final[dict[str, float]] = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "ms": 1e-3,
    "msec": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
    "min": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
}
# TIFF ResolutionUnit -> micrometres per unit (2: inch, 3: centimetre)
RESOLUTION_UNIT_UM: Final[dict[int, float]] = {2: 25_400.0, 3: 10_000.0}
