"""Frame preparation: coordinates and their caps, pixel casts that never change values, metadata.

Everything here runs in the saving thread before a frame is queued, so bad input is refused
before anything is written.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from ..errors import CoordinateError, FrameError

__all__ = [
    "RGB_SAMPLES",
    "Cast",
    "Coord",
    "Key",
    "cast_frame",
    "check_plane_count",
    "coordinate",
    "frame_kind",
    "metadata_json",
    "samples_per_pixel",
]

Coord = tuple[int, int, int]
Key = tuple[int, ...]
"""A plane's key in a file: its (c, z, t) in series 0, (c, z, t, s) in series s > 0 (an
OME-TIFF holding several images); the IFD's plane tag holds the same values."""
NONE_SAVED: Coord = (-(2**62), -(2**62), -(2**62))
"""The largest coordinates of a file before its first frame (any coordinate is larger)."""
Cast = Literal["exact", "round", "truncate"]
_CASTS = ("exact", "round", "truncate")
_MAX_METADATA_DEPTH = 64
RGB_SAMPLES = 3
"""Samples of an RGB pixel: an RGB frame is ``(Y, X, 3)``, stored contiguous (RGBRGB...)."""


def samples_per_pixel(frame_shape: tuple[int, ...]) -> int:
    """Samples per pixel of a frame of ``frame_shape``: 1 for ``(Y, X)``, 3 for ``(Y, X, 3)``."""
    return frame_shape[2] if len(frame_shape) > 2 else 1


def frame_kind(frame_shape: tuple[int, ...]) -> str:
    """``"RGB (Y, X, 3)"`` or ``"grey (Y, X)"``, for messages."""
    return "RGB (Y, X, 3)" if samples_per_pixel(frame_shape) > 1 else "grey (Y, X)"


def coordinate(name: str, value: Any, *, negative: bool = False) -> int:
    """One of c, z, t as an int; refuses bools, fractions and (unless allowed) negatives."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        msg = f"{name} must be an integer, got {value!r}"
        raise CoordinateError(msg)
    if value < 0 and not negative:
        msg = f"{name}={value} is negative; coordinates start at 0"
        raise CoordinateError(msg)
    return int(value)


def widen(low: Coord, high: Coord, coord: Coord) -> tuple[Coord, Coord]:
    """The span ``low..high`` grown to hold ``coord``."""
    return (
        (min(low[0], coord[0]), min(low[1], coord[1]), min(low[2], coord[2])),
        (max(high[0], coord[0]), max(high[1], coord[1]), max(high[2], coord[2])),
    )


def check_plane_count(low: Coord, high: Coord, max_planes: int, where: str) -> None:
    """Refuse a (C, Z, T) span of more than ``max_planes`` planes (before anything is queued)."""
    sizes = [hi - lo + 1 for lo, hi in zip(low, high, strict=True)]
    planes = sizes[0] * sizes[1] * sizes[2]
    if planes > max_planes:
        msg = (
            f"{where} would need {sizes[0]} x {sizes[1]} x {sizes[2]} = {planes:,} planes "
            f"(C x Z x T), more than the cap of {max_planes:,} planes per file; check the "
            "coordinates, or raise the cap with max_planes="
        )
        raise CoordinateError(msg)


def cast_frame(arr: np.ndarray, dst: np.dtype[Any], cast: Cast) -> tuple[np.ndarray, bool]:
    """``arr`` as a C-contiguous array of ``dst``, and whether this function made it.

    The flag says who owns the memory: True when the result is a new array made here (a cast
    or a contiguous copy), which nothing else refers to; False when it is ``arr`` itself, whose
    memory belongs to the caller (who may fill it again once ``save`` returns). Never a
    silent change of values.

    ``cast="exact"`` (default) refuses any cast that changes a value: out of range (a wrap),
    NaN or infinity into integers, fractions into integers, float precision lost.
    ``"round"`` rounds fractions to the nearest integer (and floats to the nearest
    representable value); ``"truncate"`` drops fractions as ``numpy.astype`` (and tiffwrite)
    do. Out-of-range values and NaN into integers are refused in every mode.

    Raises
    ------
    FrameError
        For a cast that would change values.

    """
    src = arr.dtype
    if src == dst:
        if arr.flags.c_contiguous:
            return arr, False
        return np.ascontiguousarray(arr), True  # a strided view: copied here
    if src.kind not in "biuf":
        msg = f"cannot store a frame of dtype {src} in a {dst} file"
        raise FrameError(msg)
    if dst.kind in "iu":
        if src.kind == "f":
            arr = _float_to_integers(arr, dst, cast)
        else:
            info = np.iinfo(dst)
            lo, hi = int(arr.min()), int(arr.max())
            if lo < info.min or hi > info.max:
                msg = (
                    f"frame values {lo}..{hi} do not fit {dst} ({info.min}..{info.max}); a cast "
                    "would wrap them. Choose a wider dtype or rescale the data"
                )
                raise FrameError(msg)
        with np.errstate(invalid="ignore", over="ignore"):
            return np.ascontiguousarray(arr.astype(dst)), True  # astype copies
    with np.errstate(invalid="ignore", over="ignore"):
        out = np.ascontiguousarray(arr.astype(dst))
        if src.kind == "f" and dst.itemsize < src.itemsize:
            overflow = np.isinf(out) & np.isfinite(arr)
            if overflow.any():
                big = np.abs(arr[overflow]).max()
                msg = f"frame values up to {big} overflow {dst}; use a wider dtype"
                raise FrameError(msg)
        if cast == "exact":
            back = out.astype(src)
            same = np.array_equal(back, arr, equal_nan=src.kind == "f")
            if not same:
                msg = (
                    f"storing {src} values as {dst} would change some of them (precision); "
                    "use dtype={src}, or pass cast='round' to accept the nearest {dst} value"
                ).format(src=src, dst=dst)
                raise FrameError(msg)
    return out, True


def _float_to_integers(arr: np.ndarray, dst: np.dtype[Any], cast: Cast) -> np.ndarray:
    if not np.all(np.isfinite(arr)):
        msg = (
            f"frame holds NaN or infinity, which a {dst} file cannot store; use "
            "dtype='float32' or replace them first"
        )
        raise FrameError(msg)
    if cast == "round":
        arr = np.rint(arr)
    elif cast == "truncate":
        arr = np.trunc(arr)
    elif not np.array_equal(arr, np.trunc(arr)):
        msg = (
            f"frame holds fractional values, which a {dst} file cannot store exactly; round "
            "them first, or pass cast='round' (nearest integer) or cast='truncate' "
            "(as numpy's astype and tiffwrite do)"
        )
        raise FrameError(msg)
    info = np.iinfo(dst)
    # bounds as exact powers of two: info.max itself (2**63 - 1 ...) rounds up in a float
    lo, hi = float(arr.min()), float(arr.max())
    upper = math.ldexp(1.0, info.bits - (1 if dst.kind == "i" else 0))
    if lo < info.min or hi >= upper:
        msg = (
            f"frame values {lo:g}..{hi:g} do not fit {dst} ({info.min}..{info.max}); a cast "
            "would wrap them. Choose a wider dtype or rescale the data"
        )
        raise FrameError(msg)
    return arr


def check_cast(cast: Any) -> Cast:
    """Check a ``cast`` argument."""
    if cast not in _CASTS:
        from ..errors import ConfigError

        msg = f"cast must be 'exact', 'round' or 'truncate', got {cast!r}"
        raise ConfigError(msg)
    return cast  # type: ignore[no-any-return]


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of dicts and lists, up to ``limit`` (iterative: no RecursionError)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    seen = 0
    while stack:
        item, depth = stack.pop()
        seen += 1
        if depth > limit:
            return depth
        deepest = max(deepest, depth)
        if isinstance(item, Mapping):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend((v, depth + 1) for v in item)
        if seen > 1_000_000:
            break
    return deepest


def metadata_json(metadata: Any) -> str:
    """A frame's metadata as JSON text, or a :class:`FrameError` that says what to fix."""
    if not isinstance(metadata, Mapping):
        msg = f"metadata must be a dict, got {type(metadata).__name__}"
        raise FrameError(msg)
    if _depth(metadata, _MAX_METADATA_DEPTH) > _MAX_METADATA_DEPTH:
        msg = (
            f"metadata is nested more than {_MAX_METADATA_DEPTH} levels deep (or refers to "
            "itself); flatten it"
        )
        raise FrameError(msg)
    try:
        return json.dumps(metadata, default=str, allow_nan=False)
    except ValueError as exc:  # NaN/inf, a circular reference
        msg = (
            f"metadata cannot be stored as JSON: {exc}; replace NaN/infinity (e.g. by None) "
            "and remove references to itself"
        )
        raise FrameError(msg) from None
    except (TypeError, RecursionError) as exc:  # keys that are not str/int/float/bool/None
        msg = f"metadata cannot be stored as JSON: {exc}; use string keys"
        raise FrameError(msg) from None


def as_frame(frame: Any, dtype: np.dtype[Any], cast: Cast) -> tuple[np.ndarray, bool]:
    """``frame`` as a C-contiguous array of ``dtype``, and whether the writer owns it.

    A frame is grey, ``(Y, X)``, or RGB, ``(Y, X, 3)`` (red, green, blue samples of each
    pixel, in that order).

    ``frame`` is anything :func:`numpy.asarray` takes: an ndarray or a view of one, a
    ``memoryview`` or other buffer-protocol object, an object with ``__array_interface__`` or
    ``__array__``, a memory map. Whatever its type, the result is owned (True) only when
    :func:`cast_frame` made it; otherwise it may be the caller's memory, and a frame that
    outlives ``save`` must be copied (see :meth:`IJTiffFile.save`).
    """
    try:
        arr = np.asarray(frame)
    except (TypeError, ValueError) as exc:
        msg = f"a frame is a 2-D array; {type(frame).__name__} cannot be one: {exc}"
        raise FrameError(msg) from None
    if arr.ndim == 3 and arr.shape[2] == 4:
        msg = (
            f"a frame of shape {arr.shape} has 4 samples per pixel (RGBA, or Micro-Manager's "
            "BGRA): store its colours as RGB, e.g. frame[..., :3] for RGBA or "
            "frame[..., 2::-1] for BGRA"
        )
        raise FrameError(msg)
    if arr.ndim != 2 and not (arr.ndim == 3 and arr.shape[2] == RGB_SAMPLES):
        msg = f"a frame is 2-D (Y, X) or RGB (Y, X, 3); got an array of shape {arr.shape}"
        raise FrameError(msg)
    if 0 in arr.shape:
        msg = f"a frame cannot be empty; got shape {arr.shape}"
        raise FrameError(msg)
    return cast_frame(arr, dtype, cast)


def check_cap(max_planes: Any) -> int:
    """Check a ``max_planes`` argument."""
    if isinstance(max_planes, bool) or not isinstance(max_planes, int) or max_planes < 1:
        from ..errors import ConfigError

        msg = f"max_planes is a positive integer, got {max_planes!r}"
        raise ConfigError(msg)
    return max_planes


def check_shape(shape: Any, max_planes: int) -> Coord | None:
    """Check a declared ``(C, Z, T)`` (or None) against the plane cap."""
    if shape is None:
        return None
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__len__") or len(shape) != 3:
        msg = f"shape is (C, Z, T), got {shape!r}"
        raise CoordinateError(msg)
    c, z, t = (coordinate(n, v) for n, v in zip("CZT", shape, strict=True))
    if min(c, z, t) < 1:
        msg = f"shape sizes must be >= 1, got {tuple(shape)!r}"
        raise CoordinateError(msg)
    check_plane_count((0, 0, 0), (c - 1, z - 1, t - 1), max_planes, f"shape {tuple(shape)!r}")
    return (c, z, t)
