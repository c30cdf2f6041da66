"""RGB files for the tests: a hyperstack of coded RGB frames, written in scrambled order."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np

from mmtiffsink import (
    IJTiffFile,
)
from tests.writer_support import rgb_frame

C, Z, T = 2, 3, 2


ALL = [(c, z, t) for t in range(T) for z in range(Z) for c in range(C)]


SHAPE = (20, 36)


def write_rgb(
    path: Path,
    profile: str,
    compression: object,
    predictor: bool = False,
    dtype: str = "uint8",
    **kw: Any,
) -> None:
    order = list(ALL)
    random.Random(5).shuffle(order)
    with IJTiffFile(
        path,
        shape=(C, Z, T),
        dtype=dtype,
        profile=profile,  # type: ignore[arg-type]
        compression=compression,  # type: ignore[arg-type]
        predictor=predictor,
        pxsize=0.5,
        **kw,
    ) as tif:
        for c, z, t in order:
            tif.save(rgb_frame(c, z, t, SHAPE, dtype), c, z, t, metadata={"c": c})
        back, meta = tif.read_frame(1, 2, 1)
        np.testing.assert_array_equal(back, rgb_frame(1, 2, 1, SHAPE, dtype))
        assert meta == {"c": 1}
