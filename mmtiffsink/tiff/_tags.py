"""TIFF tags: typed values, encoding into IFD entries, and the IFD byte layout.

Everything here is little-endian. An IFD is position independent except for its next-IFD
pointer: out-of-line values live at absolute offsets elsewhere in the file. The writer relies
on that to copy IFDs into a new chain at close.
"""

from __future__ import annotations

import builtins
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, final

import numpy as np
import tifffile

from ..errors import ConfigError, WriterError

__all__ = ["Layout", "Tag", "TagsLike", "normalize_tags"]

# TIFF field types: code -> (numpy dtype, bytes per value)
_TYPES: dict[int, str] = {
    1: "u1",  # BYTE
    2: "u1",  # ASCII
    3: "<u2",  # SHORT
    4: "<u4",  # LONG
    5: "<u4",  # RATIONAL (2 x LONG)
    6: "i1",  # SBYTE
    7: "u1",  # UNDEFINED
    8: "<i2",  # SSHORT
    9: "<i4",  # SLONG
    10: "<i4",  # SRATIONAL (2 x SLONG)
    11: "<f4",  # FLOAT
    12: "<f8",  # DOUBLE
    13: "<u4",  # IFD
    16: "<u8",  # LONG8
    17: "<i8",  # SLONG8
    18: "<u8",  # IFD8
}
_BIGTIFF_ONLY = {16, 17, 18}

# Tags that say how pixels decode, and pointers to other IFDs: a user value would make the
# file unreadable, so the writer owns them (refused as extra tags, with the tag's name).
DECODING_TAGS = frozenset(
    {
        254,  # NewSubfileType
        255,  # SubfileType
        256,  # ImageWidth
        257,  # ImageLength
        258,  # BitsPerSample
        259,  # Compression
        262,  # PhotometricInterpretation
        266,  # FillOrder
        273,  # StripOffsets
        274,  # Orientation
        277,  # SamplesPerPixel
        278,  # RowsPerStrip
        279,  # StripByteCounts
        284,  # PlanarConfiguration
        292,  # T4Options
        293,  # T6Options
        317,  # Predictor
        320,  # ColorMap
        322,  # TileWidth
        323,  # TileLength
        324,  # TileOffsets
        325,  # TileByteCounts
        330,  # SubIFDs
        338,  # ExtraSamples
        339,  # SampleFormat
        340,  # SMinSampleValue
        341,  # SMaxSampleValue
        347,  # JPEGTables
        512,  # JPEGProc
        513,  # JPEGInterchangeFormat
        514,  # JPEGInterchangeFormatLength
        529,  # YCbCrCoefficients
        530,  # YCbCrSubSampling
        531,  # YCbCrPositioning
        532,  # ReferenceBlackWhite
        32997,  # ImageDepth
        32998,  # TileDepth
        34665,  # ExifIFD
        34853,  # GPSIFD
        40965,  # InteroperabilityIFD
    }
)
_POINTER_TYPES = {13, 18}  # IFD, IFD8: readers follow them

MAX_TAG_VALUE = 1 << 28
"""Bytes of one tag value the writer reads back at most (a StripOffsets array of 10**7 planes
is far smaller; a larger count was read from a damaged IFD)."""

PLANE_TAG = 65421
"""Private tag holding a frame's (c, z, t) as three LONGs, so a crashed file can be repaired;
(c, z, t, s) as four in series s > 0 of an OME-TIFF holding several images."""
SETTINGS_TAG = 65422
"""Private tag holding the writer's hyperstack settings as JSON (stored once, shared)."""
METADATA_TAG = 51123
"""Micro-Manager's per-image metadata JSON tag (tifffile: ``MicroManagerMetadata``)."""
FIRST_METADATA_TAG = 65423
"""Where the first IFD keeps its frame's metadata JSON: tifffile takes a file whose first page
has tag 51123 for a Micro-Manager MMStack file and logs errors reading its missing header."""
PLANE_INFO_TAG = 65424
"""Private tag of a frame's IFD: its ``PlaneInfo`` (``_ome.py``) as five DOUBLEs (NaN: unknown)."""
SERIES_TAG = 65425
"""Private tag of a series' name and stage label as JSON (``_series.py``), stored once per value."""
BLANK_TAG = 65427
"""Private tag (a SHORT 1) of an IFD the writer added at close for a plane never saved: its
blank frame is not data, and a reader (``mmtiffsink.open``'s ``written``) can tell. (Not 65426:
tifffile reads that one, NDPI's McuStarts, as an offset whatever its type, and logged an error
for every blank plane.)"""
PRIVATE_TAGS = (PLANE_TAG, SETTINGS_TAG, FIRST_METADATA_TAG, PLANE_INFO_TAG, SERIES_TAG, BLANK_TAG)
"""The writer's private tags (65000-65535, TIFF's reusable range). None may be a tag a reader
treats specially (tifffile's ``TIFF.TAG_READERS``; ``tests/profiles/test_tag_order.py``)."""
# Tags whose values the writer writes from its own options.
OWNED_TAGS = frozenset({270, 282, 283, 296, 305, 50838, 50839, METADATA_TAG, *PRIVATE_TAGS})
RESERVED_TAGS = DECODING_TAGS | OWNED_TAGS


@final
@dataclass(frozen=True, slots=True)
class Tag:
    """A TIFF tag value: code, field type and the little-endian value bytes.

    Build tags with the constructors named after TIFF field types, as in tiffwrite::

        Tag.ascii(315, "Jane Doe"), Tag.short(33000, [1, 2]), Tag.double(33001, [0.5])

    or pass ``{name_or_code: value}`` to ``extratags`` and let the type be inferred.
    """

    code: int
    dtype: int
    count: int
    value: bytes

    def __post_init__(self) -> None:
        if not 0 < self.code < 65536:
            msg = f"TIFF tag code must be in 1..65535, got {self.code}"
            raise ConfigError(msg)
        if self.dtype not in _TYPES:
            msg = f"unknown TIFF field type {self.dtype}"
            raise ConfigError(msg)

    @classmethod
    def _numeric(cls, code: int, dtype: int, values: Any) -> Tag:
        arr = np.atleast_1d(np.asarray(values))
        if arr.ndim != 1:
            msg = f"tag {code}: values must be a scalar or a 1-D sequence"
            raise ConfigError(msg)
        np_dtype = np.dtype(_TYPES[dtype])
        if np_dtype.kind in "iu" and arr.size:
            if not np.issubdtype(arr.dtype, np.integer) and not np.all(arr == np.round(arr)):
                msg = f"tag {code}: integer field type {dtype} needs whole numbers"
                raise ConfigError(msg)
            info = np.iinfo(np_dtype)
            if arr.min() < info.min or arr.max() > info.max:
                msg = f"tag {code}: value out of range for field type {dtype}"
                raise ConfigError(msg)
        data = arr.astype(np_dtype).tobytes()
        return cls(code, dtype, int(arr.size), data)

    @classmethod
    def _rational(cls, code: int, dtype: int, values: Any) -> Tag:
        out: list[int] = []
        limit = 2**31 - 1 if dtype == 10 else 2**32 - 1
        for v in np.atleast_1d(np.asarray(values, dtype=float)):
            f = Fraction(float(v)).limit_denominator(limit)
            while abs(f.numerator) > limit:
                f = Fraction(round(f.numerator / 2), max(1, f.denominator // 2))
            out += [f.numerator, f.denominator]
        arr = np.asarray(out, dtype=_TYPES[dtype])
        return cls(code, dtype, len(out) // 2, arr.tobytes())

    @classmethod
    def byte(cls, code: int, byte: Sequence[int]) -> Tag:
        """BYTE (uint8) values."""
        return cls._numeric(code, 1, byte)

    @classmethod
    def ascii(cls, code: int, ascii: str) -> Tag:
        """An ASCII string (UTF-8 encoded, NUL terminated)."""
        data = str(ascii).encode("utf-8") + b"\0"
        return cls(code, 2, len(data), data)

    unicode = ascii

    @classmethod
    def short(cls, code: int, short: Sequence[int]) -> Tag:
        """SHORT (uint16) values."""
        return cls._numeric(code, 3, short)

    @classmethod
    def long(cls, code: int, long: Sequence[int]) -> Tag:
        """LONG (uint32) values."""
        return cls._numeric(code, 4, long)

    @classmethod
    def rational(cls, code: int, rational: Sequence[float]) -> Tag:
        """RATIONAL values, given as floats."""
        return cls._rational(code, 5, rational)

    @classmethod
    def sbyte(cls, code: int, sbyte: Sequence[int]) -> Tag:
        """SBYTE (int8) values."""
        return cls._numeric(code, 6, sbyte)

    @classmethod
    def undefined(cls, code: int, data: bytes) -> Tag:
        """Opaque bytes (UNDEFINED)."""
        return cls(code, 7, len(data), bytes(data))

    @classmethod
    def sshort(cls, code: int, sshort: Sequence[int]) -> Tag:
        """SSHORT (int16) values."""
        return cls._numeric(code, 8, sshort)

    @classmethod
    def slong(cls, code: int, slong: Sequence[int]) -> Tag:
        """SLONG (int32) values."""
        return cls._numeric(code, 9, slong)

    @classmethod
    def srational(cls, code: int, srational: Sequence[float]) -> Tag:
        """SRATIONAL values, given as floats."""
        return cls._rational(code, 10, srational)

    @classmethod
    def float(cls, code: int, float: Sequence[builtins.float]) -> Tag:
        """FLOAT (float32) values."""
        return cls._numeric(code, 11, float)

    @classmethod
    def double(cls, code: int, double: Sequence[builtins.float]) -> Tag:
        """DOUBLE (float64) values."""
        return cls._numeric(code, 12, double)

    @classmethod
    def ifd(cls, code: int, ifd: Sequence[int]) -> Tag:
        """IFD offsets (uint32)."""
        return cls._numeric(code, 13, ifd)

    @classmethod
    def long8(cls, code: int, long8: Sequence[int]) -> Tag:
        """LONG8 (uint64) values; BigTIFF only."""
        return cls._numeric(code, 16, long8)

    @classmethod
    def slong8(cls, code: int, slong8: Sequence[int]) -> Tag:
        """SLONG8 (int64) values; BigTIFF only."""
        return cls._numeric(code, 17, slong8)

    @classmethod
    def ifd8(cls, code: int, ifd8: Sequence[int]) -> Tag:
        """IFD8 offsets (uint64); BigTIFF only."""
        return cls._numeric(code, 18, ifd8)

    @classmethod
    def infer(cls, code: int | str, value: Any) -> Tag:
        """Build a tag from a name or code and a Python value, inferring the field type.

        ``str`` becomes ASCII, ``bytes`` UNDEFINED, whole numbers SHORT/LONG/LONG8 (or the
        signed types when negative), other numbers DOUBLE.
        """
        if isinstance(value, Tag):
            return value
        num = tag_code(code)
        if isinstance(value, str):
            return cls.ascii(num, value)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return cls.undefined(num, bytes(value))
        arr = np.atleast_1d(np.asarray(value))
        if arr.dtype.kind == "b":
            arr = arr.astype(np.uint8)
        if arr.dtype.kind in "iu":
            lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
            if lo >= 0:
                return cls._numeric(num, 3 if hi < 2**16 else 4 if hi < 2**32 else 16, arr)
            return cls._numeric(
                num,
                8 if lo >= -(2**15) and hi < 2**15 else 9 if lo >= -(2**31) and hi < 2**31 else 17,
                arr,
            )
        if arr.dtype.kind == "f":
            return cls._numeric(num, 12, arr)
        msg = f"cannot infer a TIFF field type for tag {code!r} from {type(value).__name__}"
        raise ConfigError(msg)


def tag_code(code: int | str) -> int:
    """Return the numeric code of a tag given by code or tifffile name (e.g. ``"Artist"``)."""
    if isinstance(code, (int, np.integer)) and not isinstance(code, bool):
        return int(code)
    if isinstance(code, str):
        if code.isdigit():
            return int(code)
        try:
            return int(tifffile.TIFF.TAGS[code])
        except KeyError:
            msg = f"unknown TIFF tag name {code!r}; give its numeric code instead"
            raise ConfigError(msg) from None
    msg = f"a tag is given by its code or name, not {type(code).__name__}"
    raise ConfigError(msg)


TagsLike = Mapping[int | str, Any] | Iterable[Tag] | None


def normalize_tags(tags: TagsLike, *, bigtiff: bool) -> tuple[Tag, ...]:
    """Turn user-given extra tags into a tuple of :class:`Tag`, rejecting writer-owned codes."""
    if tags is None:
        return ()
    if isinstance(tags, Tag):
        tags = [tags]
    items = (
        [Tag.infer(k, v) for k, v in tags.items()]
        if isinstance(tags, Mapping)
        else [Tag.infer(t.code, t) if isinstance(t, Tag) else _bad_tag(t) for t in tags]
    )
    seen: set[int] = set()
    for tag in items:
        name = tifffile.TIFF.TAGS.get(tag.code, "")
        label = f"tag {tag.code}{f' ({name})' if name else ''}"
        if tag.code in DECODING_TAGS:
            msg = (
                f"{label} says how the pixels decode (or points at other IFDs); the writer owns "
                "it, and a given value would make the file unreadable: leave it out"
            )
            raise ConfigError(msg)
        if tag.code in OWNED_TAGS:
            msg = (
                f"{label} is written by mmtiffsink itself and cannot be given as an extra tag "
                "(use comment=, metadata=, pxsize= ... instead)"
            )
            raise ConfigError(msg)
        if tag.dtype in _POINTER_TYPES:
            msg = f"{label}: field types IFD/IFD8 point at other IFDs; use LONG or LONG8"
            raise ConfigError(msg)
        if tag.dtype in _BIGTIFF_ONLY and not bigtiff:
            msg = f"{label}: 64-bit field types need the 'bigtiff' profile"
            raise ConfigError(msg)
        if tag.code in seen:
            msg = f"{label} given twice"
            raise ConfigError(msg)
        seen.add(tag.code)
    return tuple(items)


def _bad_tag(obj: object) -> Tag:
    msg = f"extra tags are Tag objects or a {{name_or_code: value}} dict, not {obj!r}"
    raise ConfigError(msg)


@final
@dataclass(frozen=True)
class Layout:
    """Byte layout of classic TIFF or BigTIFF: header, IFD entries and offsets."""

    bigtiff: bool

    @property
    def header_size(self) -> int:
        """Size of the file header in bytes."""
        return 16 if self.bigtiff else 8

    @property
    def first_ifd_pointer(self) -> int:
        """File offset of the header's first-IFD pointer."""
        return 8 if self.bigtiff else 4

    @property
    def inline_size(self) -> int:
        """Bytes a value may have and still be stored inside its IFD entry."""
        return 8 if self.bigtiff else 4

    @property
    def offset_size(self) -> int:
        """Size of an offset (and of the next-IFD pointer)."""
        return 8 if self.bigtiff else 4

    @property
    def max_offset(self) -> int:
        """Largest file offset the container can address."""
        return 2**64 - 1 if self.bigtiff else 2**32 - 1

    def header(self, first_ifd: int = 0) -> bytes:
        """Return the file header pointing at ``first_ifd``."""
        if self.bigtiff:
            return b"II" + struct.pack("<HHHQ", 43, 8, 0, first_ifd)
        return b"II" + struct.pack("<HI", 42, first_ifd)

    def pack_offset(self, offset: int) -> bytes:
        """Pack an offset (or next-IFD pointer)."""
        return struct.pack("<Q" if self.bigtiff else "<I", offset)

    def offset_tag(self, code: int, values: Sequence[int]) -> Tag:
        """A strip offsets/byte counts tag with the narrowest adequate type."""
        wide = self.bigtiff and max(values, default=0) >= 2**32
        return int_tag(code, 16 if wide else 4, values)

    def ifd_size(self, ntags: int) -> int:
        """Size in bytes of an IFD with ``ntags`` entries."""
        return (8 + 20 * ntags + 8) if self.bigtiff else (2 + 12 * ntags + 4)

    def encode_entry(self, tag: Tag, value_offset: int | None) -> bytes:
        """Encode one IFD entry; ``value_offset`` is where an out-of-line value is stored."""
        if self.bigtiff:
            head = struct.pack("<HHQ", tag.code, tag.dtype, tag.count)
        else:
            head = struct.pack("<HHI", tag.code, tag.dtype, tag.count)
        if value_offset is None:
            return head + tag.value.ljust(self.inline_size, b"\0")
        return head + self.pack_offset(value_offset)

    def encode_ifd(self, entries: Sequence[bytes], next_ifd: int = 0) -> bytes:
        """Join sorted, encoded entries into an IFD."""
        count = struct.pack("<Q" if self.bigtiff else "<H", len(entries))
        return count + b"".join(entries) + self.pack_offset(next_ifd)

    def parse_ifd(self, buf: bytes) -> tuple[list[bytes], int]:
        """Split an IFD into its raw entries and its next-IFD pointer.

        The entry count read from ``buf`` is checked against ``len(buf)`` before it sizes
        anything: an IFD overwritten by another process (a ``repair`` run beside the writer)
        raises :class:`~mmtiffsink.errors.WriterError`, never loops or allocates by a garbage
        count.
        """
        count_size, entry_size = (8, 20) if self.bigtiff else (2, 12)
        if len(buf) < count_size:
            msg = f"an IFD of {len(buf)} bytes has no entry count (the file was overwritten)"
            raise WriterError(msg)
        (n,) = struct.unpack_from("<Q" if self.bigtiff else "<H", buf, 0)
        if count_size + n * entry_size + self.offset_size > len(buf):
            msg = f"an IFD of {len(buf)} bytes claims {n} entries (the file was overwritten)"
            raise WriterError(msg)
        entries = [
            buf[count_size + entry_size * i : count_size + entry_size * (i + 1)] for i in range(n)
        ]
        (nxt,) = struct.unpack_from(
            "<Q" if self.bigtiff else "<I", buf, count_size + entry_size * n
        )
        return entries, nxt

    def entry_code(self, entry: bytes) -> int:
        """The tag code of a raw IFD entry."""
        return int(struct.unpack_from("<H", entry, 0)[0])

    def entry_value(self, entry: bytes, read: Any) -> tuple[int, bytes]:
        """Return (field type, value bytes) of a raw entry; ``read(offset, n)`` reads the file.

        Raises
        ------
        WriterError
            An unknown field type, or a value larger than :data:`MAX_TAG_VALUE` (a garbage
            count read from a damaged IFD), before anything is read or allocated.

        """
        if self.bigtiff:
            _, dtype, count = struct.unpack_from("<HHQ", entry, 0)
        else:
            _, dtype, count = struct.unpack_from("<HHI", entry, 0)
        if dtype not in _TYPES:
            msg = f"an IFD entry of unknown field type {dtype} (the file was overwritten)"
            raise WriterError(msg)
        nbytes = count * np.dtype(_TYPES[dtype]).itemsize * (2 if dtype in (5, 10) else 1)
        if nbytes > MAX_TAG_VALUE:
            msg = f"an IFD entry claims a value of {nbytes} bytes (the file was overwritten)"
            raise WriterError(msg)
        raw = entry[-self.inline_size :]
        if nbytes <= self.inline_size:
            return dtype, raw[:nbytes]
        (offset,) = struct.unpack("<Q" if self.bigtiff else "<I", raw)
        return dtype, read(offset, nbytes)


_SAMPLE_FORMAT = {"u": 1, "i": 2, "f": 3}
PHOTOMETRIC_MINISBLACK = 1
PHOTOMETRIC_RGB = 2


def image_tags(
    frame_shape: tuple[int, ...],
    dtype: np.dtype[Any],
    *,
    compression: int,
    predictor: int,
    rows_per_strip: int,
) -> list[Tag]:
    """The tags that say how a frame's pixels decode, for a frame of ``frame_shape``.

    The one home of these values: a grey frame ``(Y, X)`` is MinIsBlack with one sample per
    pixel; an RGB frame ``(Y, X, 3)`` is Photometric RGB with three samples per pixel,
    contiguous (PlanarConfiguration 1: RGBRGB...), BitsPerSample and SampleFormat given for
    each sample (as ImageJ 1.x, Bio-Formats and libtiff read them). ``predictor`` 2 then
    differences each sample with the same sample of the pixel to its left.
    """
    h, w = frame_shape[0], frame_shape[1]
    samples = frame_shape[2] if len(frame_shape) > 2 else 1
    rgb = samples > 1
    tags = [
        Tag.long(256, [w]),
        Tag.long(257, [h]),
        Tag.short(258, [dtype.itemsize * 8] * samples),
        Tag.short(259, [compression]),
        Tag.short(262, [PHOTOMETRIC_RGB if rgb else PHOTOMETRIC_MINISBLACK]),
        Tag.short(277, [samples]),
        Tag.long(278, [rows_per_strip]),
        Tag.short(284, [1]),
        Tag.short(339, [_SAMPLE_FORMAT[dtype.kind]] * samples),
    ]
    if predictor != 1:
        tags.append(Tag.short(317, [predictor]))
    return tags


def resolution_tags(pxsize: float | None) -> list[Tag]:
    """XResolution, YResolution (pixels per µm) and ResolutionUnit for a pixel size in µm."""
    if pxsize is None:
        return []
    return [
        Tag.rational(282, [1.0 / pxsize]),
        Tag.rational(283, [1.0 / pxsize]),
        Tag.short(296, [1]),
    ]


_STRUCT_CODES = {1: "B", 3: "H", 4: "I", 6: "b", 8: "h", 9: "i", 13: "I", 16: "Q", 17: "q", 18: "Q"}


def int_tag(code: int, dtype: int, values: Sequence[int]) -> Tag:
    """An integer tag from Python ints, packed by ``struct`` (the per-frame tags: no numpy).

    Raises
    ------
    ConfigError
        A value out of the field type's range (as :meth:`Tag.short` and the others do).

    """
    try:
        data = struct.pack(f"<{len(values)}{_STRUCT_CODES[dtype]}", *values)
    except (struct.error, KeyError):
        return Tag._numeric(code, dtype, values)  # its error says what is wrong
    return Tag(code, dtype, len(values), data)


def decode_values(dtype: int, value: bytes) -> np.ndarray:
    """Decode value bytes of a field type into a numpy array."""
    return np.frombuffer(value, dtype=_TYPES[dtype])
