"""Frames of an OME-TIFF with several series that encode (s, c, z, t)."""

from __future__ import annotations

import numpy as np

from tests.writer_support import coded_frame


def series_frame(s: int, c: int, z: int, t: int, shape: tuple[int, int] = (24, 40)) -> np.ndarray:
    """A frame whose pixels say its series and plane."""
    return coded_frame(c, z, t, shape) + np.uint16(10_000 * s)
