"""Frames at the edges of each dtype's range, for the predictor and codec tests."""

from __future__ import annotations

import numpy as np


def extreme_frames(dtype: str, n: int = 3, shape: tuple[int, int] = (21, 34)) -> np.ndarray:
    """Full-range random frames, the first with min/max alternating (every difference wraps)."""
    info = np.iinfo(dtype)
    rng = np.random.default_rng(317)
    frames = rng.integers(info.min, info.max, (n, *shape), dtype=dtype, endpoint=True)
    frames[0, :, ::2] = info.max
    frames[0, :, 1::2] = info.min
    return frames
