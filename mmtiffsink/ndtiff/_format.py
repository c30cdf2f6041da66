"""The NDTiff byte format: index entries, and each ``.tif``'s header and IFD chain.

The format read is NDTiff 2 and 3, the one ``ndstorage`` and ``tifffile.read_ndtiff_index``
read:

``NDTiff.index``
    A sequence of entries, one per image, in acquisition order. Each entry is a little-endian
    ``uint32`` axes length, the image's axes as a UTF-8 JSON object (axis name -> integer or
    text label), a ``uint32`` file name length, the name of the ``.tif`` file holding the
    image (a bare name in the index's directory), then eight ``uint32``: pixel offset, width,
    height, pixel type, pixel compression, metadata offset, metadata length and metadata
    compression. A zero axes length followed only by zeros ends the index (one its writer
    did not close); followed by anything else it is a damaged entry.
``*.tif`` header
    A TIFF header (``II`` or ``MM``, the byte order of the whole file), then at byte 8 five
    ``uint32``: the NDTiff magic number 483729, the major and minor version, the summary
    metadata header 2355492 and the summary metadata length; the summary metadata (a JSON
    object) follows at byte 28. NDTiff 2 has no minor version: its summary metadata header
    is at byte 16, the length at 20 and the summary at 24 (as ``ndstorage``'s v2 reader
    reads it: a major version below 3 selects that layout).
Pixel types
    0: 8-bit; 1: 16-bit; 3, 4, 5, 6: 10, 12, 14 and 11-bit in 16-bit words; 2: 8-bit RGB,
    three bytes per pixel, read as ``(height, width, 3)`` ``uint8`` as ``ndstorage`` reads
    it. Pixels are stored uncompressed, in the file's byte order, row by row; each image's
    metadata is a JSON object at its own offset.
Image IFDs
    Every image also has a classic TIFF IFD (StripOffsets at its pixels, tag 51123 at its
    metadata), linked in file order; a file whose writer died links past its end.

Everything here reads bounded amounts, checking what it reads; :mod:`mmtiffsink.ndtiff` uses it.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

import numpy as np

from mmtiffsink.errors import DatasetError
from mmtiffsink.tiff.format import Ifd, IfdWalk

__all__ = [
    "INDEX_NAME",
    "PIXEL_BYTES",
    "RGB_PIXEL_TYPE",
    "Images",
    "IndexBroken",
    "IndexEntry",
    "TiffHeader",
    "iter_index",
    "iter_index_prefix",
    "read_header",
]

#: Name of a dataset's index file.
INDEX_NAME: Final = "NDTiff.index"
_NDTIFF_MAGIC: Final = 483729
_SUMMARY_MD_HEADER: Final = 2355492
_HEADER_BYTES: Final = 28
#: Longest axes JSON / file name an index entry may hold before it is taken as corrupted.
_MAX_FIELD_BYTES: Final = 1 << 20
_ENTRY_TAIL = struct.Struct("<8I")
_LENGTH = struct.Struct("<I")
#: NDTiff pixel types -> bytes per pixel (8-bit; 16-bit; 8-bit RGB; 10, 12, 14, 11-bit in
#: 16-bit words).
PIXEL_BYTES: Final = {0: 1, 1: 2, 2: 3, 3: 2, 4: 2, 5: 2, 6: 2}
#: The pixel type of 8-bit RGB images (three samples per pixel).
RGB_PIXEL_TYPE: Final = 2
#: The first major version whose header has a minor version (NDTiff 2 has none).
_MINOR_VERSION_SINCE: Final = 3
#: Entries an image's IFD may hold before it is taken as corrupted (NDTiff writes 13).
_MAX_IFD_TAGS: Final = 64


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One entry of ``NDTiff.index``: where one image and its metadata are.

    Parameters
    ----------
    number
        Position of the entry in the index, from 0.
    offset
        Byte offset of the entry in the index file.
    axes
        The image's axes (name -> integer or text label).
    filename
        The ``.tif`` file holding the image, in the index's directory.
    pixel_offset
        Byte offset of the pixels in ``filename``.
    width, height
        Image size in pixels.
    pixel_type
        NDTiff pixel type (see the module notes).
    pixel_compression
        0: uncompressed (the only one supported).
    metadata_offset, metadata_length
        Byte range of the image's JSON metadata in ``filename``.
    metadata_compression
        0: uncompressed (the only one supported).

    """

    number: int
    offset: int
    axes: dict[str, int | str]
    filename: str
    pixel_offset: int
    width: int
    height: int
    pixel_type: int
    pixel_compression: int
    metadata_offset: int
    metadata_length: int
    metadata_compression: int

    @property
    def pixel_bytes(self) -> int:
        """Size of the pixels in bytes (0 for an unknown pixel type)."""
        return self.width * self.height * PIXEL_BYTES.get(self.pixel_type, 0)

    def describe(self) -> str:
        """The entry as named in messages: its number and axes."""
        return f"index entry {self.number} (axes {self.axes})"


class IndexBroken(DatasetError):
    """``NDTiff.index`` cannot be parsed past some entry."""

    def __init__(self, message: str, number: int) -> None:
        super().__init__(message)
        self.number = number


def _read_exact(fh: IO[bytes], size: int, number: int, offset: int, what: str) -> bytes:
    data = fh.read(size)
    if len(data) != size:
        msg = (
            f"{INDEX_NAME} is truncated in entry {number} (at byte {offset}): its {what} "
            f"needs {size} bytes, {len(data)} are left"
        )
        raise IndexBroken(msg, number)
    return data


def _parse_axes(raw: bytes, number: int, offset: int) -> dict[str, int | str]:
    try:
        axes = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"{INDEX_NAME} is corrupted in entry {number} (at byte {offset}): axes {exc}"
        raise IndexBroken(msg, number) from None
    valid = isinstance(axes, dict) and all(
        isinstance(k, str)
        and (isinstance(v, str) or (isinstance(v, int) and v is not True))
        and v is not False
        for k, v in axes.items()
    )
    if not valid:
        msg = (
            f"{INDEX_NAME} is corrupted in entry {number} (at byte {offset}): the axes "
            f"{raw[:200]!r} are not a mapping of names to integers or labels"
        )
        raise IndexBroken(msg, number)
    return axes  # type: ignore[no-any-return]


def _nonzero_after(fh: IO[bytes]) -> int | None:
    """Offset of the first non-zero byte from the current position on, or None."""
    while True:
        at = fh.tell()
        chunk = fh.read(1 << 16)
        if not chunk:
            return None
        stripped = chunk.lstrip(b"\0")
        if stripped:
            return at + len(chunk) - len(stripped)


def iter_index(path: Path, offset: int = 0, number: int = 0) -> Iterator[IndexEntry]:
    """Stream the entries of an ``NDTiff.index`` file, in file (acquisition) order.

    Parameters
    ----------
    path
        The index file.
    offset, number
        Where to start: the byte offset and number of an entry read before (default: the
        first entry).

    Raises
    ------
    IndexBroken
        At the first entry that is cut off or cannot be parsed; the entries before it were
        yielded. A zero axes length ends the index (an index not closed by its writer).

    """
    with path.open("rb") as fh:
        fh.seek(offset)
        while True:
            offset = fh.tell()
            head = fh.read(4)
            if not head:
                return
            if len(head) < 4:
                msg = (
                    f"{INDEX_NAME} is truncated in entry {number} (at byte {offset}): "
                    f"{len(head)} stray bytes at its end"
                )
                raise IndexBroken(msg, number)
            (axes_length,) = _LENGTH.unpack(head)
            if axes_length == 0:
                rest = _nonzero_after(fh)
                if rest is None:
                    return  # the zeros an index not closed by its writer ends with
                msg = (
                    f"{INDEX_NAME} is corrupted in entry {number} (at byte {offset}): its axes "
                    f"length is 0, yet data follow at byte {rest}"
                )
                raise IndexBroken(msg, number)
            if axes_length > _MAX_FIELD_BYTES:
                msg = (
                    f"{INDEX_NAME} is corrupted in entry {number} (at byte {offset}): "
                    f"axes length {axes_length}"
                )
                raise IndexBroken(msg, number)
            axes = _parse_axes(_read_exact(fh, axes_length, number, offset, "axes"), number, offset)
            (name_length,) = _LENGTH.unpack(_read_exact(fh, 4, number, offset, "file name length"))
            if name_length == 0 or name_length > _MAX_FIELD_BYTES:
                msg = (
                    f"{INDEX_NAME} is corrupted in entry {number} (at byte {offset}): "
                    f"file name length {name_length}"
                )
                raise IndexBroken(msg, number)
            raw_name = _read_exact(fh, name_length, number, offset, "file name")
            filename = raw_name.decode("utf-8", errors="replace")
            if (
                os.path.basename(filename) != filename
                or filename in (".", "..")
                or not filename.isprintable()
            ):
                msg = (
                    f"{INDEX_NAME} is corrupted in entry {number} (at byte {offset}): "
                    f"file name {filename!r}"
                )
                raise IndexBroken(msg, number)
            fields = _ENTRY_TAIL.unpack(
                _read_exact(fh, _ENTRY_TAIL.size, number, offset, "offsets")
            )
            yield IndexEntry(number, offset, axes, filename, *fields)
            number += 1


def iter_index_prefix(path: Path, count: int) -> Iterator[IndexEntry]:
    """The first ``count`` entries of the index (those the scan could parse)."""
    if count == 0:
        return
    for entry in iter_index(path):
        yield entry
        if entry.number + 1 >= count:
            return


@dataclass
class TiffHeader:
    """What the NDTiff header of one ``.tif`` file says, and its size."""

    size: int
    byteorder: str
    version: tuple[int, int]
    summary: dict[str, Any]


def read_header(path: Path) -> TiffHeader:
    """Read and check the header of one NDTiff ``.tif`` file.

    Raises
    ------
    DatasetError
        The file is missing, unreadable or not an NDTiff file; OSError is wrapped.

    """
    try:
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(_HEADER_BYTES)
            if len(head) < _HEADER_BYTES or head[:2] not in (b"II", b"MM"):
                msg = f"{path.name} is not an NDTiff file (no TIFF header)"
                raise DatasetError(msg)
            order = "<" if head[:2] == b"II" else ">"
            magic, major, minor, md_header, md_length = struct.unpack(order + "5I", head[8:28])
            start = _HEADER_BYTES
            if magic == _NDTIFF_MAGIC and major < _MINOR_VERSION_SINCE:  # NDTiff 2: no minor
                md_header, md_length = minor, md_header
                minor, start = 0, _HEADER_BYTES - 4
            if magic != _NDTIFF_MAGIC or md_header != _SUMMARY_MD_HEADER:
                msg = f"{path.name} is not an NDTiff file (no NDTiff header)"
                raise DatasetError(msg)
            if start + md_length > size:
                msg = (
                    f"{path.name} is truncated: its summary metadata ({md_length} bytes) "
                    f"runs past the end of the file ({size} bytes)"
                )
                raise DatasetError(msg)
            fh.seek(start)
            raw = fh.read(md_length)
    except FileNotFoundError:
        msg = f"{path.name} is missing"
        raise DatasetError(msg) from None
    except OSError as exc:
        msg = f"{path.name} cannot be read: {exc}"
        raise DatasetError(msg) from exc
    try:
        summary = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"{path.name}: the summary metadata is not valid JSON ({exc})"
        raise DatasetError(msg) from None
    if summary is None:
        summary = {}
    if not isinstance(summary, dict):
        msg = f"{path.name}: the summary metadata is not a JSON object"
        raise DatasetError(msg)
    return TiffHeader(size, order, (major, minor), summary)


class Images:
    """The images an NDTiff ``.tif`` holds, from its own IFD chain, and which entry claims each.

    Every NDTiff image has an IFD (pixels at StripOffsets, metadata at tag 51123) linked in
    file order; the chain of a file whose writer died points past its end. Kept as arrays
    (about 30 bytes per image) so that every index entry can be checked against the image it
    points at, and every image no entry points at can be counted.
    """

    def __init__(self, fh: IO[bytes], header: TiffHeader) -> None:
        found: list[tuple[int, int, int]] = []  # pixel offset, pixel bytes, metadata offset
        self.broken_at: int | None = None
        """Where the chain stops making sense: images past it are unknown (not checked)."""
        try:  # forward links only: at most one IFD (of 18 bytes or more) per 18 bytes
            walk = IfdWalk(fh, header.size, max_entries=_MAX_IFD_TAGS, max_ifds=header.size // 18)
        except ValueError:  # an NDTiff header on no TIFF header: no chain to walk
            self.broken_at = 0
        else:
            self.broken_at = _walk_images(walk, found)
        found.sort()
        table = np.array(found, dtype=np.int64).reshape(-1, 3)
        self.pixels, self.nbytes, self.metadata = table[:, 0], table[:, 1], table[:, 2]
        self.claimed = np.full(len(found), -1, dtype=np.int64)
        """The number of the entry that points at each image; -1: none yet."""

    def claim(self, entry: IndexEntry) -> str | None:
        """Check that ``entry`` points at one image of the file, none claimed before."""
        i = int(np.searchsorted(self.pixels, entry.pixel_offset))
        if i == len(self.pixels) or self.pixels[i] != entry.pixel_offset:
            if self.broken_at is not None and entry.pixel_offset > self.broken_at:
                return None  # past a broken chain: only the bounds checks apply
            where = f"byte {entry.pixel_offset} of {entry.filename}"
            return f"{entry.describe()}: it points at {where}, where no image starts"
        if self.nbytes[i] != entry.pixel_bytes or self.metadata[i] not in (
            -1,
            entry.metadata_offset,
        ):
            return (
                f"{entry.describe()}: it does not match the image at byte {entry.pixel_offset} "
                f"of {entry.filename} (size or metadata offset differ)"
            )
        if self.claimed[i] >= 0:
            return f"{entry.describe()}: it points at the image of entry {self.claimed[i]}"
        self.claimed[i] = entry.number
        return None

    @property
    def unclaimed(self) -> int:
        """Images in the file that no index entry points at."""
        return int(np.count_nonzero(self.claimed < 0))


def _walk_images(walk: IfdWalk, found: list[tuple[int, int, int]]) -> int | None:
    """Add each image of the chain to ``found``; where the chain breaks (None: it does not)."""
    at = walk.header.first  # the IFD the walk reads next
    for ifd in walk:
        tags = _ifd_tags(walk, ifd)
        if not {273, 279} <= tags.keys():
            return ifd.offset
        found.append((tags[273], tags[279], tags.get(51123, -1)))
        if ifd.next and ifd.next <= ifd.offset:  # NDTiff links forward only: a loop or garbage
            return ifd.offset
        at = ifd.next
    if walk.stop == "corrupt":
        return at
    if walk.stop == "past_end" and walk.dangling < walk.size:
        return walk.dangling  # an IFD cut short (a link past the end is where its writer died)
    return None


def _ifd_tags(walk: IfdWalk, ifd: Ifd) -> dict[int, int]:
    """The tags of one IFD that hold one SHORT or LONG (and where 51123's value is)."""
    tags: dict[int, int] = {}
    for code, entry in ifd.entries.items():
        if entry.dtype in (3, 4) and entry.count == 1:
            values = walk.ints(entry)
            if values:
                tags[code] = values[0]
        elif code == 51123:
            where = walk.where(entry)
            if where is not None:
                tags[code] = where
    return tags
