"""A camera-like frame for the keep_up tests (smooth spot drifting with i, Poisson noise)."""

from __future__ import annotations

import numpy as np

SHAPE = (256, 256)


def frame(i: int) -> np.ndarray:
    rng = np.random.default_rng(i)
    y, x = np.mgrid[: SHAPE[0], : SHAPE[1]]
    spot = 800 * np.exp(-((x - 7 * i % 256) ** 2 + (y - 128) ** 2) / 300)
    return (100 + spot + rng.poisson(20, SHAPE)).astype(np.uint16)
