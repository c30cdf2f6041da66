"""Frames that encode their own (c, z, t), and readers of what the writer stored."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

PLANE_TAG = 65421
FIRST_METADATA_TAG = 65423


def code(c: int, z: int, t: int) -> int:
    """A plane's identifying value: fits uint8 for the small shapes the tests use."""
    return (t * 7 + z) * 5 + c + 1


def coded_frame(
    c: int, z: int, t: int, shape: tuple[int, int] = (24, 40), dtype: Any = "uint16"
) -> np.ndarray:
    """A frame whose pixels say which plane it is: value code(c,z,t) plus a column ramp."""
    dt = np.dtype(dtype)
    h, w = shape
    frame = np.full(shape, code(c, z, t), dtype=np.float64)
    frame[0, :] = np.arange(w) % 7  # a row that differs inside the frame
    frame[h // 2, w // 3] = 3
    if dt.kind == "f":
        frame += 0.25
    return frame.astype(dt)


def rgb_frame(
    c: int, z: int, t: int, shape: tuple[int, int] = (24, 40), dtype: Any = "uint8"
) -> np.ndarray:
    """An RGB frame (Y, X, 3) whose samples say which plane it is, and which sample each is.

    Red holds code(c, z, t) (its low 8 bits, the high ones in green's offset), green a level
    of its own, blue a column ramp: a swapped sample order (BGR) or a predictor undone along
    the wrong axis changes the values.
    """
    dt = np.dtype(dtype)
    h, w = shape
    scale = 257 if dt.itemsize > 1 else 1  # 16-bit samples use their whole range
    value = code(c, z, t)
    frame = np.empty((h, w, 3), dtype=np.int64)
    frame[..., 0] = value % 256
    frame[..., 1] = 100 + (value // 256) % 100
    frame[..., 2] = (np.arange(w) % 7) * 30
    frame[h // 2, w // 3] = (3, 250, 7)
    return (frame * scale).astype(dt)


def read_hyperstack(path: Path) -> tuple[np.ndarray, dict[str, Any], tifffile.TiffFile]:
    """Return the (T, Z, C, Y, X) array, ImageJ metadata and the open TiffFile (caller closes)."""
    tif = tifffile.TiffFile(path)
    series = tif.series[0]
    data = series.asarray()
    axes = series.axes
    meta = tif.imagej_metadata or {}
    # put back the singleton axes tifffile squeezes
    full = "TZCYX"
    for i, ax in enumerate(full):
        if ax not in axes:
            data = np.expand_dims(data, i)
            axes = axes[:i] + ax + axes[i:]
    assert axes == full, axes
    return data, meta, tif


def page_plane(page: tifffile.TiffPage) -> tuple[int, int, int]:
    """The (c, z, t) the writer stored in a page's private tag."""
    c, z, t = page.tags[PLANE_TAG].value
    return int(c), int(z), int(t)


def page_metadata(page: tifffile.TiffPage) -> dict[str, Any] | None:
    """The per-frame metadata JSON (tag 51123, or 65423 on the first page)."""
    for tag_code in (51123, FIRST_METADATA_TAG):
        if tag_code in page.tags:
            value = page.tags[tag_code].value
            return value if isinstance(value, dict) else json.loads(value)
    return None


def check_ome_schema(xml: str) -> None:
    """Validate OME-XML against the OME 2016-06 schema with ome-types (and lxml).

    The test extra installs ome-types on Python >= 3.11, where its absence is a failure (a
    silent skip would let invalid XML pass); only on 3.10, which ome-types 0.7 does not
    support, the check is skipped.
    """
    try:
        import lxml  # noqa: F401  (ome-types validates with it)
        import ome_types
    except ImportError:
        if sys.version_info >= (3, 11):
            raise
        pytest.skip("ome-types[lxml] (the schema check) needs Python >= 3.11")
    ome_types.from_xml(xml, validate=True)  # raises on a schema violation
