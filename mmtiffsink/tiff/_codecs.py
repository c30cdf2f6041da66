"""Compression codecs: parsing the user's ``compression`` argument and encoding frames."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, final

import imagecodecs
import numpy as np

__all__ = ["Codec", "CompressionLike", "parse_compression"]

CompressionLike = Any  # None | str | int | tuple[str | int, int]

_NAMES = {
    "zstd": "zstd",
    "zstandard": "zstd",
    "50000": "zstd",
    "deflate": "deflate",
    "zlib": "deflate",
    "adobe_deflate": "deflate",
    "8": "deflate",
    "none": "none",
    "1": "none",
    "raw": "none",
}
_TIFF_CODE = {"none": 1, "deflate": 8, "zstd": 50000}
_DEFAULT_LEVEL = {"none": 0, "deflate": 1, "zstd": 3}
_LEVELS = {"none": (0, 0), "deflate": (0, 12), "zstd": (-131072, 22)}


@final
@dataclass(frozen=True, slots=True)
class Codec:
    """A whole-frame compressor: ``name`` is ``"zstd"``, ``"deflate"`` or ``"none"``."""

    name: Literal["zstd", "deflate", "none"]
    level: int

    @property
    def tiff_code(self) -> int:
        """The value of the TIFF Compression tag."""
        return _TIFF_CODE[self.name]

    def encode(self, frame: np.ndarray) -> bytes:
        """Compress a C-contiguous frame. Releases the GIL for the codec work."""
        if self.name == "zstd":
            return bytes(imagecodecs.zstd_encode(frame, level=self.level))  # type: ignore[arg-type]
        if self.name == "deflate":
            # libdeflate (zlib container, as TIFF's Adobe deflate needs) is ~2x stdlib zlib
            return bytes(imagecodecs.deflate_encode(frame, level=self.level))  # type: ignore[arg-type]
        return frame.tobytes()

    def decode(self, data: bytes, dtype: np.dtype[Any], shape: tuple[int, int]) -> np.ndarray:
        """Decompress a whole frame written by :meth:`encode` into an array of ``shape``."""
        if self.name == "zstd":
            raw: Any = imagecodecs.zstd_decode(data)
        elif self.name == "deflate":
            raw = imagecodecs.zlib_decode(data)
        else:
            raw = data
        image: np.ndarray = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
        return image

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, stored in the file's settings."""
        return {"name": self.name, "level": self.level}


def parse_compression(compression: CompressionLike) -> Codec:
    """Parse ``"zstd"``, ``("zstd", 9)``, ``"deflate"``, ``("deflate", 1)``, ``50000``, ``None``.

    Raises
    ------
    ValueError
        For an unknown codec or a level out of range.

    """
    level: int | None = None
    if isinstance(compression, (tuple, list)):
        if not 1 <= len(compression) <= 2:
            msg = f"compression is a name or (name, level), got {compression!r}"
            raise ValueError(msg)
        if len(compression) == 2:
            level = int(compression[1])
        compression = compression[0]
    key = "none" if compression is None or compression is False else str(compression).lower()
    if key not in _NAMES:
        msg = f"unknown compression {compression!r}: use 'zstd', 'deflate' or None"
        raise ValueError(msg)
    name = _NAMES[key]
    if level is None:
        level = _DEFAULT_LEVEL[name]
    lo, hi = _LEVELS[name]
    if name != "none" and not lo <= level <= hi:
        msg = f"{name} level must be in {lo}..{hi}, got {level}"
        raise ValueError(msg)
    return Codec(name, level if name != "none" else 0)  # type: ignore[arg-type]
