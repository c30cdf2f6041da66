"""Units as ImageJ and TIFF name them, in micrometres and seconds (for :mod:`mmtiffsink.inspect`)."""

from __future__ import annotations

__all__ = ["LENGTH_UM", "RESOLUTION_UNIT_UM", "TIME_S"]

# ImageJ length units -> micrometres; ImageJ time units -> seconds
LENGTH_UM: dict[str, float] = {
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
TIME_S: dict[str, float] = {
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
RESOLUTION_UNIT_UM = {2: 25_400.0, 3: 10_000.0}
