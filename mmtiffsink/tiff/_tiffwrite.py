"""``tiffwrite()``: write a whole (possibly lazy) array as a hyperstack, frame by frame."""

from __future__ import annotations

import os
from itertools import product
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..errors import ConfigError
from ._file import IJTiffFile

__all__ = ["tiffwrite"]


def tiffwrite(
    file: str | os.PathLike[str],
    data: Any,
    axes: str = "TZCYX",
    dtype: Any = None,
    bar: bool = False,
    **kwargs: Any,
) -> None:
    """Write a 2-D to 5-D array as an ImageJ hyperstack, one frame at a time.

    Parameters
    ----------
    file
        The TIFF file to write.
    data
        The array: numpy, a ``numpy.memmap``, a dask/zarr array or anything indexable with
        ``.shape``; frames are read one at a time, so lazy arrays are never loaded whole.
    axes
        The letters of ``data``'s dimensions, from ``T``, ``Z``, ``C`` and the two plane
        letters ``YX`` (or ``XY`` for arrays stored x-first, which are transposed). Only the
        last ``data.ndim`` letters are used, so the default ``"TZCYX"`` fits 2-D to 5-D data.
    dtype
        Pixel type of the file; default: the array's.
    bar
        Show a tqdm progress bar.
    **kwargs
        Any :class:`IJTiffFile` argument (``colors``, ``pxsize``, ``compression``, ...).

    """
    shape = tuple(int(n) for n in data.shape)
    ndim = len(shape)
    if not 2 <= ndim <= 5:
        msg = f"tiffwrite takes 2-D to 5-D data, got shape {shape}"
        raise ConfigError(msg)
    letters = axes.upper()
    if len(letters) < ndim:
        msg = f"axes {axes!r} name fewer dimensions than data has ({ndim})"
        raise ConfigError(msg)
    letters = letters[-ndim:]
    if len(set(letters)) != ndim or not set(letters) <= set("TZCYX"):
        msg = f"axes {axes!r}: use each of T, Z, C, Y, X at most once"
        raise ConfigError(msg)
    if letters[-2:] not in ("YX", "XY"):
        msg = f"the last two axes must be the plane, YX or XY; got {letters!r}"
        raise ConfigError(msg)
    transpose = letters[-2:] == "XY"
    sizes = {letter: shape[i] for i, letter in enumerate(letters)}
    czt = (sizes.get("C", 1), sizes.get("Z", 1), sizes.get("T", 1))
    lead = letters[:-2]
    file_dtype = np.dtype(dtype) if dtype is not None else np.dtype(data.dtype)
    with IJTiffFile(file, shape=czt, dtype=file_dtype, **kwargs) as tif:
        for t, z, c in tqdm(
            product(range(czt[2]), range(czt[1]), range(czt[0])),
            total=czt[0] * czt[1] * czt[2],
            desc="Saving tiff",
            disable=not bar,
        ):
            where = {"C": c, "Z": z, "T": t}
            frame = np.asarray(data[tuple(where[letter] for letter in lead)])
            tif.save(frame.T if transpose else frame, c, z, t)
