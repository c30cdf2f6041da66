"""Compression codecs: one value type, one parser, one table.

:class:`Codec` is what every module asks: ``Codec.parse`` is the only parser of the user's
``compression`` argument (``"zstd"``, ``"zstd:9"``, ``("zstd", 9)``, ``50000``, ``None``), and
``Codec.from_tiff`` the only reader of a file's Compression tag.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal, final

import imagecodecs
import numpy as np

from ..errors import ConfigError

__all__ = ["Codec", "CodecName", "CompressionLike", "parse_compression"]

CodecName = Literal["zstd", "deflate", "none"]
CompressionLike = Any  # None | str | int | tuple[str | int, int] | Codec

_ALIASES: dict[str, CodecName] = {
    "zstd": "zstd",
    "zstandard": "zstd",
    "50000": "zstd",
    "deflate": "deflate",
    "zlib": "deflate",
    "adobe_deflate": "deflate",
    "8": "deflate",
    "none": "none",
    "raw": "none",
    "1": "none",
}


@final
@dataclass(frozen=True, slots=True)
class Codec:
    """A whole-frame compressor and its level.

    Parameters
    ----------
    name
        ``"zstd"``, ``"deflate"`` or ``"none"``.
    level
        The codec's level (0 for ``"none"``).

    """

    name: CodecName
    level: int

    TIFF_CODES: ClassVar[dict[str, int]] = {"none": 1, "deflate": 8, "zstd": 50000}
    DEFAULT_LEVELS: ClassVar[dict[str, int]] = {"none": 0, "deflate": 1, "zstd": 3}
    LEVELS: ClassVar[dict[str, tuple[int, int]]] = {
        "none": (0, 0),
        "deflate": (0, 12),
        "zstd": (-131072, 22),
    }

    def __post_init__(self) -> None:
        if self.name not in self.TIFF_CODES:
            msg = f"unknown codec {self.name!r}: use 'zstd', 'deflate' or None"
            raise ConfigError(msg)
        lo, hi = self.LEVELS[self.name]
        if isinstance(self.level, bool) or not isinstance(self.level, int):
            msg = f"a {self.name} level is an integer, got {self.level!r}"
            raise ConfigError(msg)
        if not lo <= self.level <= hi:
            msg = f"{self.name} level must be in {lo}..{hi}, got {self.level}"
            raise ConfigError(msg)

    @property
    def tiff_code(self) -> int:
        """The value of the TIFF Compression tag."""
        return self.TIFF_CODES[self.name]

    @property
    def compressed(self) -> bool:
        """False for ``"none"``."""
        return self.name != "none"

    def __str__(self) -> str:
        return self.name if self.name == "none" else f"{self.name}:{self.level}"

    # ------------------------------------------------------------------ parsing
    @classmethod
    def parse(cls, compression: CompressionLike) -> Codec:
        """Parse the user's ``compression`` argument.

        Accepts ``None``/``False``/``"none"`` (no compression), a name (``"zstd"``,
        ``"deflate"``, ``"zlib"``), a name with a level (``"zstd:9"``, ``("zstd", 9)``), a TIFF
        code (``50000``, ``8``, ``1``) or a :class:`Codec`.

        Raises
        ------
        ConfigError
            For an unknown codec, or a level that is not an integer in the codec's range.

        """
        if isinstance(compression, Codec):
            return compression
        level: Any = None
        written = ""  # "the level after ':'" of a "name:level" text, for its error message
        if isinstance(compression, (tuple, list)):
            if not 1 <= len(compression) <= 2:
                msg = f"compression is a name or (name, level), got {compression!r}"
                raise ConfigError(msg)
            if len(compression) == 2:
                level = compression[1]
            compression = compression[0]
        elif isinstance(compression, str) and ":" in compression:
            compression, _, level = compression.partition(":")
            written = " after ':'"
        if compression is None or compression is False:
            key = "none"
        elif isinstance(compression, (str, int)) and not isinstance(compression, bool):
            key = str(compression).strip().lower()
        else:
            msg = f"compression is a codec name such as 'zstd', not {compression!r}"
            raise ConfigError(msg)
        name = _ALIASES.get(key)
        if name is None:
            msg = f"unknown compression {compression!r}: use 'zstd', 'deflate' or None"
            raise ConfigError(msg)
        if level is None or (isinstance(level, str) and not level.strip()):
            return cls(name, cls.DEFAULT_LEVELS[name])
        if name == "none":
            msg = f"compression None takes no level, got {level!r}"
            raise ConfigError(msg)
        return cls(name, _level(name, level, written))

    @classmethod
    def from_tiff(cls, code: int) -> Codec:
        """The codec of a file's Compression tag value (the default level: it is not stored).

        Raises
        ------
        ConfigError
            For a compression mmtiffsink does not write.

        """
        for name, tiff_code in cls.TIFF_CODES.items():
            if tiff_code == code:
                return cls(name, cls.DEFAULT_LEVELS[name])  # type: ignore[arg-type]
        msg = f"compression {code} is not one mmtiffsink writes (1, 8 or 50000)"
        raise ConfigError(msg)

    # ------------------------------------------------------------------ bytes
    def encode(self, frame: np.ndarray) -> bytes | memoryview:
        """Compress a C-contiguous frame. Releases the GIL for the codec work.

        ``"none"`` returns a byte view of ``frame`` itself (no copy): the caller keeps the
        frame unchanged until the bytes are written.
        """
        if self.name == "zstd":
            return bytes(imagecodecs.zstd_encode(frame, level=self.level))  # type: ignore[arg-type]
        if self.name == "deflate":
            # libdeflate (zlib container, as TIFF's Adobe deflate needs) is ~2x stdlib zlib
            return bytes(imagecodecs.deflate_encode(frame, level=self.level))  # type: ignore[arg-type]
        return frame.data.cast("B")

    def encode_stored(self, frame: np.ndarray) -> bytes | memoryview:
        """The frame in this codec's format without compressing it: the cheapest valid form.

        zstd: a zstd frame of raw blocks (part of the zstd format every decoder reads);
        deflate: deflate's stored blocks (level 0); none: the frame's bytes. The Compression
        tag stays the codec's own, so a file holding such frames among compressed ones is
        uniform for every reader (``keep_up``).
        """
        if self.name == "zstd":
            return _zstd_raw_frame(frame.data.cast("B"))
        if self.name == "deflate":
            return bytes(imagecodecs.deflate_encode(frame, level=0))  # type: ignore[arg-type]
        return frame.data.cast("B")

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

    @classmethod
    def from_dict(cls, data: Any) -> Codec:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(data, dict):
            msg = f"a codec is a dict with name and level, got {data!r}"
            raise ConfigError(msg)
        return cls.parse((data.get("name"), data.get("level")))


_ZSTD_MAGIC = 0xFD2FB528
_ZSTD_BLOCK = 1 << 17  # the largest block the format allows


def _zstd_raw_frame(data: memoryview) -> bytes:
    """A zstd frame holding ``data`` in raw (uncompressed) blocks (RFC 8878, 3.1.1).

    Single segment, the content size in the header, no checksum; each block is a 3-byte
    header (last flag, type 0 = raw, size) and up to 128 KiB of the data.
    """
    n = len(data)
    wide = n >= 1 << 32
    parts: list[bytes | memoryview] = [
        _ZSTD_MAGIC.to_bytes(4, "little"),
        bytes([(3 if wide else 2) << 6 | 1 << 5]),  # content size field of 8 or 4 bytes
        n.to_bytes(8 if wide else 4, "little"),
    ]
    if n == 0:
        parts.append((1).to_bytes(3, "little"))  # one empty last block
    for offset in range(0, n, _ZSTD_BLOCK):
        size = min(_ZSTD_BLOCK, n - offset)
        last = offset + size >= n
        parts += [(size << 3 | last).to_bytes(3, "little"), data[offset : offset + size]]
    return b"".join(parts)


def _level(name: str, level: Any, written: str = "") -> int:
    given = level
    if isinstance(level, bool):
        level = None
    elif isinstance(level, str):
        try:
            level = int(level.strip())
        except ValueError:
            level = None
    elif isinstance(level, (int, np.integer)) or (isinstance(level, float) and level.is_integer()):
        level = int(level)
    else:
        level = None
    if level is None:
        lo, hi = Codec.LEVELS[name]
        msg = f"the level{written} must be an integer in {lo}..{hi} for {name}, got {given!r}"
        raise ConfigError(msg)
    return int(level)


def parse_compression(compression: CompressionLike) -> Codec:
    """Parse a ``compression`` argument; see :meth:`Codec.parse`."""
    return Codec.parse(compression)
