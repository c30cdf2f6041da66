"""The frame the adversarial writer children save (coded by c, t, z)."""

from __future__ import annotations

import numpy as np

SHAPE = (128, 128)

BASE = np.random.default_rng(0).integers(0, 4000, SHAPE, dtype=np.uint16)


def frame(c: int, t: int, z: int = 0) -> np.ndarray:
    """A frame that zstd 19 works on (random) and that says which plane it is."""
    return BASE + np.uint16((c * 7919 + z * 104729 + t) % 60000)

