"""The ImageJ hyperstack description and IJMetadata (LUTs, labels, info) of the first IFD."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import tifffile

from .._text import xml_safe
from ._tags import Tag

__all__ = ["imagej_description", "imagej_metadata_tags"]


def _fmt(value: float) -> str:
    return repr(float(value))


def imagej_description(
    shape: tuple[int, int, int],
    *,
    images: bool,
    pxsize: float | None,
    deltaz: float | None,
    timeinterval: float | None,
    mode: str | None,
    vrange: tuple[float, float] | None = None,
) -> str:
    """Build the ImageJ description for a (C, Z, T) hyperstack.

    ``images=`` (``images=True``) is for compressed files and for uncompressed files whose
    planes lie contiguously in plane order (the ``imagej`` profile's slots): ImageJ 1.x uses it
    for uncompressed files, then assumes contiguous pixel data, and drops the channel LUTs
    without it. De-duplicated or interleaved uncompressed data must not have it.
    ``finterval=`` (not tiffwrite's ``interval=``) is the key ImageJ and Bio-Formats read.
    """
    c, z, t = shape
    lines = ["ImageJ=1.11a"]
    if images:
        lines.append(f"images={c * z * t}")
    if c > 1:
        lines.append(f"channels={c}")
    if z > 1:
        lines.append(f"slices={z}")
    if t > 1:
        lines.append(f"frames={t}")
    lines.append("hyperstack=true")
    if mode:
        lines.append(f"mode={mode}")
    if pxsize is not None:
        lines.append("unit=micron")
    if deltaz is not None:
        lines.append(f"spacing={_fmt(deltaz)}")
    if timeinterval is not None:
        lines.append(f"finterval={_fmt(timeinterval)}")
    if vrange is not None and all(math.isfinite(v) for v in vrange):
        lines += [f"min={_fmt(vrange[0])}", f"max={_fmt(vrange[1])}"]
    lines.append("loop=false")
    return "\n".join(lines) + "\n"


def imagej_metadata_tags(
    *,
    luts: Sequence[np.ndarray] | None,
    labels: Sequence[str] | None,
    info: str | None,
    ranges: Sequence[float] | None = None,
) -> tuple[Tag, ...]:
    """IJMetadataByteCounts (50838) and IJMetadata (50839) tags, or nothing when empty."""
    meta: dict[str, object] = {}
    if luts:
        meta["LUTs"] = [np.ascontiguousarray(lut, dtype=np.uint8) for lut in luts]
    # UTF-16 holds no lone surrogate: text is checked where it enters; this is the last defence
    if labels:
        meta["Labels"] = [xml_safe(label) for label in labels]
    if info:
        meta["Info"] = xml_safe(info)
    if ranges:
        meta["Ranges"] = tuple(float(r) for r in ranges)
    if not meta:
        return ()
    out = []
    for code, dtype, count, value, _ in tifffile.imagej_metadata_tag(meta, "<"):
        out.append(Tag(int(code), int(dtype), int(count), bytes(value)))
    return tuple(sorted(out, key=lambda tag: tag.code))
