"""Preview test helpers: frames with a spot per channel, and reading the PNG back."""

from __future__ import annotations

from pathlib import Path

import imagecodecs
import numpy as np

from mmtiffsink import IJTiffFile
from mmtiffsink.inspect._sheet import BACKGROUND, HATCH, MISSING

H, W = 96, 128  # small frames are shown 1:1 (no binning, no enlarging)


SPOTS = [(24, 32), (70, 40), (30, 100)]  # (y, x) of channel c's spot; bottom-right kept clear


MAGENTA, LIME, CYAN = (255, 0, 255), (0, 255, 0), (0, 255, 255)


def spot_frame(c: int, z: int = 0, t: int = 0, *, dy: int = 0) -> np.ndarray:
    """Background 100 plus noise, and a bright disc at channel ``c``'s spot (moved by dy)."""
    rng = np.random.default_rng(1000 * t + 10 * z + c)
    frame = (100 + rng.integers(0, 20, (H, W))).astype(np.uint16)
    yy, xx = np.mgrid[0:H, 0:W]
    y, x = SPOTS[c]
    frame[(yy - y - dy) ** 2 + (xx - x) ** 2 < 49] = 4000
    return frame


def decode(png: Path) -> np.ndarray:
    rgb = imagecodecs.png_decode(png.read_bytes())
    assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8
    return np.asarray(rgb)


def at(rgb: np.ndarray, box: tuple[int, int, int, int], y: int, x: int) -> tuple[int, ...]:
    """The colour at image pixel (y, x) of a 1:1 tile."""
    bx, by, _, _ = box
    return tuple(int(v) for v in rgb[by + y, bx + x])


def region(rgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x, y, w, h = box
    return rgb[y : y + h, x : x + w]


def inked(rgb: np.ndarray, box: tuple[int, int, int, int]) -> int:
    """How many pixels of a box differ from the background (text drawn there)."""
    return int(np.any(region(rgb, box) != BACKGROUND, axis=-1).sum())


def is_missing(rgb: np.ndarray, box: tuple[int, int, int, int]) -> bool:
    pixels = region(rgb, box).reshape(-1, 3)
    missing = np.all(pixels == MISSING, axis=1).mean()
    hatch = np.all(pixels == HATCH, axis=1).mean()
    return bool(missing > 0.5 and hatch > 0.05)


def near(color: tuple[int, ...], expected: tuple[int, int, int], tol: int = 40) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(color, expected, strict=True))


def write_spots(path: Path, **kwargs: object) -> None:
    options: dict[str, object] = {
        "shape": (2, 3, 2),
        "pxsize": 0.5,
        "deltaz": 1.0,
        "timeinterval": 2.0,
        "colors": ["magenta", "lime"],
        "channel_names": ["DAPI", "FITC"],
    }
    options.update(kwargs)
    with IJTiffFile(path, **options) as tif:  # type: ignore[arg-type]
        c_size, z_size, t_size = options["shape"]  # type: ignore[misc]
        for t in range(t_size):
            for z in range(z_size):
                for c in range(c_size):
                    tif.save(spot_frame(c, z, t), c, z, t)
