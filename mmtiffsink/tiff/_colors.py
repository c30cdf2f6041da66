"""Channel colors and colormaps as ImageJ lookup tables (3 x 256 uint8)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError
from ._css_colors import CSS_COLORS

__all__ = ["color_lut", "colormap_lut", "parse_color"]

# ImageJ's own LUT names mean full-saturation primaries (CSS "green" is #008000, which is
# not what a microscopist means by a green channel).
_IMAGEJ_PRIMARIES = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "cyan": (0, 255, 255),
    "magenta": (255, 0, 255),
    "yellow": (255, 255, 0),
    "gray": (255, 255, 255),
    "grey": (255, 255, 255),
    "white": (255, 255, 255),
}


def parse_color(color: str | Sequence[float]) -> tuple[int, int, int]:
    """Parse a CSS/HTML color name, ``#rgb``/``#rrggbb`` hex string or an RGB triple.

    ``red``, ``green``, ``blue``, ``cyan``, ``magenta``, ``yellow`` and ``gray`` are ImageJ's
    full-saturation LUT colors; every other CSS name has its CSS value. RGB triples may be
    0..1 floats or 0..255 integers.
    """
    if isinstance(color, str):
        key = color.strip().lower().replace(" ", "")
        if key in _IMAGEJ_PRIMARIES:
            return _IMAGEJ_PRIMARIES[key]
        hexstr = CSS_COLORS.get(key, key)
        if hexstr.startswith("#") and len(hexstr) in (4, 7):
            digits = hexstr[1:]
            if len(digits) == 3:
                digits = "".join(ch * 2 for ch in digits)
            try:
                return (int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16))
            except ValueError:
                pass
        msg = f"unknown color {color!r}: use a CSS color name (e.g. 'magenta') or '#rrggbb'"
        raise ConfigError(msg)
    try:
        rgb = np.asarray(color, dtype=float)
    except (TypeError, ValueError, OverflowError):
        msg = f"a color is a CSS name, '#rrggbb' or three RGB values, got {color!r}"
        raise ConfigError(msg) from None
    if rgb.shape != (3,) or not np.all(np.isfinite(rgb)) or rgb.min() < 0:
        msg = f"an RGB color has three non-negative values, got {color!r}"
        raise ConfigError(msg)
    if rgb.max() <= 1.0 and not np.issubdtype(np.asarray(color).dtype, np.integer):
        rgb = rgb * 255
    if rgb.max() > 255:
        msg = f"RGB values must be <= 255, got {color!r}"
        raise ConfigError(msg)
    r, g, b = (round(float(v)) for v in rgb)
    return r, g, b


def color_lut(color: str | Sequence[float]) -> np.ndarray:
    """A linear black-to-color ImageJ LUT, shape (3, 256), uint8."""
    rgb = np.asarray(parse_color(color), dtype=float)
    ramp = np.arange(256, dtype=float) / 255.0
    return np.round(rgb[:, None] * ramp[None, :]).astype(np.uint8)


def colormap_lut(name: str) -> np.ndarray:
    """The colorcet colormap ``name`` (e.g. ``'glasbey'``, ``'fire'``) as a (3, 256) uint8 LUT."""
    import colorcet

    palette = colorcet.palette.get(name)
    if palette is None:
        close = sorted(k for k in colorcet.palette if name.lower() in k.lower())[:5]
        hint = f"; similar names: {', '.join(close)}" if close else ""
        msg = f"unknown colorcet colormap {name!r}{hint}"
        raise ConfigError(msg)
    rgb = np.array([parse_color(c) for c in palette], dtype=float)  # (n, 3)
    if len(rgb) != 256:
        x = np.linspace(0, len(rgb) - 1, 256)
        rgb = np.stack([np.interp(x, np.arange(len(rgb)), rgb[:, i]) for i in range(3)], 1)
    lut: np.ndarray = np.round(rgb.T).astype(np.uint8)
    return lut
