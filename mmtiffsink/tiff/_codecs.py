"""Compression codecs: one value type, one parser, one table.

:class:`Codec` is what every module asks: ``Codec.parse`` is the only parser of the user's
``compression`` argument (``"zstd"``, ``"zstd:9"``, ``"zstd:1+predictor"``, ``("zstd", 9)``,
``50000``, ``None``), and ``Codec.from_tiff`` the only reader of a file's Compression and
Predictor tags.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
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
_X = 1
"""The X axis of a frame, (Y, X) or (Y, X, samples): the predictor differences along it."""
_PREDICTOR = re.compile(r"\s*\+\s*predictor\s*$", re.IGNORECASE)
"""The ``+predictor`` suffix of a compression text (``"zstd:1+predictor"``)."""
PREDICTOR_HORIZONTAL = 2
"""TIFF tag 317 (Predictor) value of horizontal differencing."""


@final
@dataclass(frozen=True, slots=True)
class Codec:
    """A whole-frame compressor, its level, and whether the predictor comes first.

    Parameters
    ----------
    name
        ``"zstd"``, ``"deflate"`` or ``"none"``.
    level
        The codec's level (0 for ``"none"``).
    predictor
        TIFF's horizontal-differencing predictor (tag 317 = 2) before the codec: each pixel
        is stored as its difference from its left neighbour (integer pixels, with
        wrap-around), which makes microscopy frames compress about 4% smaller (zstd 1 then
        runs at 0.7-0.8x its speed, deflate 1 at about its speed). Integer pixels only, and
        only with a codec (not ``"none"``); written as ``"zstd:1+predictor"``.

    """

    name: CodecName
    level: int
    predictor: bool = False

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
        if not isinstance(self.predictor, bool):
            msg = f"predictor is True or False, got {self.predictor!r}"
            raise ConfigError(msg)
        if self.predictor and self.name == "none":
            msg = (
                "the predictor prepares pixels for a codec and compression=None has none: "
                "use a codec such as 'zstd:1+predictor', or no predictor"
            )
            raise ConfigError(msg)

    @property
    def tiff_code(self) -> int:
        """The value of the TIFF Compression tag."""
        return self.TIFF_CODES[self.name]

    @property
    def compressed(self) -> bool:
        """False for ``"none"``."""
        return self.name != "none"

    @property
    def tiff_predictor(self) -> int:
        """The value of the TIFF Predictor tag (1: none, 2: horizontal differencing)."""
        return PREDICTOR_HORIZONTAL if self.predictor else 1

    def with_predictor(self, predictor: bool = True) -> Codec:
        """The same codec with the predictor on (or off).

        Raises
        ------
        ConfigError
            The predictor with ``"none"``.

        """
        return self if predictor is self.predictor else replace(self, predictor=predictor)

    def check_dtype(self, dtype: Any) -> None:
        """Refuse the predictor for pixels it is not defined for (floats).

        Raises
        ------
        ConfigError
            The predictor with floating-point pixels.

        """
        dt = np.dtype(dtype)
        if self.predictor and dt.kind not in "uib":
            msg = (
                f"the predictor (horizontal differencing, TIFF predictor 2) is for integer "
                f"pixels, not {dt.name}: store {dt.name} frames without the predictor"
            )
            raise ConfigError(msg)

    def __str__(self) -> str:
        text = self.name if self.name == "none" else f"{self.name}:{self.level}"
        return text + "+predictor" if self.predictor else text

    # ------------------------------------------------------------------ parsing
    @classmethod
    def parse(cls, compression: CompressionLike) -> Codec:
        """Parse the user's ``compression`` argument.

        Accepts ``None``/``False``/``"none"`` (no compression), a name (``"zstd"``,
        ``"deflate"``, ``"zlib"``), a name with a level (``"zstd:9"``, ``("zstd", 9)``), a TIFF
        code (``50000``, ``8``, ``1``) or a :class:`Codec`. A text may end with
        ``+predictor`` for the horizontal-differencing predictor (``"zstd:1+predictor"``,
        ``"deflate+predictor"``): ``str(codec)`` parses back to the same codec.

        Raises
        ------
        ConfigError
            For an unknown codec, or a level that is not an integer in the codec's range.

        """
        if isinstance(compression, Codec):
            return compression
        level: Any = None
        written = ""  # "the level after ':'" of a "name:level" text, for its error message
        predictor = False
        if isinstance(compression, str):
            text = _PREDICTOR.sub("", compression)
            predictor = text != compression
            compression = text
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
            msg = (
                f"unknown compression {compression!r}: use 'zstd', 'deflate' or None (a level "
                "as in 'zstd:9', the predictor as in 'zstd:1+predictor')"
            )
            raise ConfigError(msg)
        if level is None or (isinstance(level, str) and not level.strip()):
            return cls(name, cls.DEFAULT_LEVELS[name], predictor)
        if name == "none":
            msg = f"compression None takes no level, got {level!r}"
            raise ConfigError(msg)
        return cls(name, _level(name, level, written), predictor)

    @classmethod
    def from_tiff(cls, code: int, predictor: int = 1) -> Codec:
        """The codec of a file's Compression and Predictor tag values.

        The level is the codec's default: files do not store it.

        Raises
        ------
        ConfigError
            For a compression or predictor mmtiffsink does not write.

        """
        if predictor not in (1, PREDICTOR_HORIZONTAL):
            msg = f"predictor {predictor} is not one mmtiffsink writes (1 or 2)"
            raise ConfigError(msg)
        for name, tiff_code in cls.TIFF_CODES.items():
            if tiff_code == code:
                level = cls.DEFAULT_LEVELS[name]
                return cls(name, level, predictor == PREDICTOR_HORIZONTAL)  # type: ignore[arg-type]
        msg = f"compression {code} is not one mmtiffsink writes (1, 8 or 50000)"
        raise ConfigError(msg)

    # ------------------------------------------------------------------ bytes
    def encode(self, frame: np.ndarray) -> bytes | memoryview:
        """Compress a C-contiguous frame, (Y, X) or RGB (Y, X, 3). Releases the GIL.

        ``"none"`` returns a byte view of ``frame`` itself (no copy): the caller keeps the
        frame unchanged until the bytes are written. With the predictor, each row is
        differenced first, along X (TIFF predictor 2: each sample minus the same sample of the
        pixel to its left, for one or three contiguous samples per pixel: what tifffile,
        libtiff and Bio-Formats undo).
        """
        if self.predictor:
            frame = imagecodecs.delta_encode(frame, axis=_X)
        # the codecs take the frame's bytes: an ndarray costs imagecodecs 2 µs more per call,
        # with the GIL held (a small frame's stream is held by the GIL, see _pool.Spares.copy)
        data = frame.data.cast("B") if frame.flags.c_contiguous else frame
        if self.name == "zstd":
            return bytes(imagecodecs.zstd_encode(data, level=self.level))  # type: ignore[arg-type]
        if self.name == "deflate":
            # libdeflate (zlib container, as TIFF's Adobe deflate needs) is ~2x stdlib zlib
            return bytes(imagecodecs.deflate_encode(data, level=self.level))  # type: ignore[arg-type]
        return frame.data.cast("B")

    def encode_stored(self, frame: np.ndarray) -> bytes | memoryview:
        """The frame in this codec's format without compressing it: the cheapest valid form.

        zstd: a zstd frame of raw blocks (part of the zstd format every decoder reads);
        deflate: deflate's stored blocks (level 0); none: the frame's bytes. The Compression
        tag stays the codec's own, so a file holding such frames among compressed ones is
        uniform for every reader (``keep_up``). The predictor (when on) is applied all the
        same: every IFD of the file says Predictor = 2.
        """
        if self.predictor:
            frame = imagecodecs.delta_encode(frame, axis=_X)
        if self.name == "zstd":
            return _zstd_raw_frame(frame.data.cast("B"))
        if self.name == "deflate":
            return bytes(imagecodecs.deflate_encode(frame, level=0))  # type: ignore[arg-type]
        return frame.data.cast("B")

    def decode(self, data: bytes, dtype: np.dtype[Any], shape: tuple[int, ...]) -> np.ndarray:
        """Decompress a whole frame written by :meth:`encode` into an array of ``shape``.

        ``shape`` is (Y, X) or (Y, X, samples). The output is bounded by ``shape``: data that
        decodes to more (a damaged or hostile frame) raises instead of filling memory.

        Raises
        ------
        ValueError
            The data does not decode to exactly ``shape``.

        """
        nbytes = int(np.prod(shape)) * dtype.itemsize
        raw: Any
        try:
            if self.name == "zstd":
                raw = imagecodecs.zstd_decode(data, out=bytearray(nbytes))
            elif self.name == "deflate":
                raw = imagecodecs.zlib_decode(data, out=bytearray(nbytes))
            else:
                raw = data
        except (imagecodecs.ZstdError, imagecodecs.ZlibError) as exc:
            msg = f"a frame does not decode to {shape} {dtype}: {exc}"
            raise ValueError(msg) from None
        if len(raw) != nbytes:
            msg = f"a frame decodes to {len(raw)} bytes, not the {nbytes} of {shape} {dtype}"
            raise ValueError(msg)
        image: np.ndarray = np.frombuffer(raw, dtype=dtype).reshape(shape)
        if not image.flags.writeable:  # the caller's bytes (no codec): a copy of its own
            image = image.copy()
        if self.predictor:
            imagecodecs.delta_decode(image, axis=_X, out=image)
        return image

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"name": self.name, "level": self.level, "predictor": self.predictor}

    @classmethod
    def from_dict(cls, data: Any) -> Codec:
        """Inverse of :meth:`to_dict` (``predictor`` may be left out: False)."""
        if not isinstance(data, dict):
            msg = f"a codec is a dict with name, level and predictor, got {data!r}"
            raise ConfigError(msg)
        return cls.parse((data.get("name"), data.get("level"))).with_predictor(
            data.get("predictor", False)
        )


_ZSTD_MAGIC = 0xFD2FB528
_ZSTD_BLOCK = 1 << 17  # the largest block the format allows
_ZSTD_WINDOW_128K = 7 << 3  # window descriptor: exponent 7 (2**(10 + 7) bytes), mantissa 0


def _zstd_raw_frame(data: memoryview) -> bytes:
    """A zstd frame holding ``data`` in raw (uncompressed) blocks (RFC 8878, 3.1.1).

    Not single-segment: a window descriptor of 128 KiB (``0x38``: raw blocks need no window,
    and a decoder that caps its window, 128 MiB by default, accepts frames of any size), then
    the content size in 4 or 8 bytes, no checksum; each block is a 3-byte header (last flag,
    type 0 = raw, size) and up to 128 KiB of the data.
    """
    n = len(data)
    wide = n >= 1 << 32
    parts: list[bytes | memoryview] = [
        _ZSTD_MAGIC.to_bytes(4, "little"),
        bytes([(3 if wide else 2) << 6, _ZSTD_WINDOW_128K]),
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
