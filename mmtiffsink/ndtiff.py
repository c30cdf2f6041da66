"""The source stage: a streaming reader of Micro-Manager NDTiff datasets.

An NDTiff dataset (written by pycro-manager / ndstorage, or by Micro-Manager's AcqEngJ) is a
directory holding ``NDTiff.index`` and one or more ``*_NDTiffStack*.tif`` files; a
multi-resolution dataset keeps its full-resolution images in a ``Full resolution``
subdirectory laid out the same way. The format read here is NDTiff 2 and 3, the one
``ndstorage`` and ``tifffile.read_ndtiff_index`` read:

``NDTiff.index``
    A sequence of entries, one per image, in acquisition order. Each entry is a little-endian
    ``uint32`` axes length, the image's axes as a UTF-8 JSON object (axis name -> integer or
    text label), a ``uint32`` file name length, the name of the ``.tif`` file holding the
    image (a bare name in the index's directory), then eight ``uint32``: pixel offset, width,
    height, pixel type, pixel compression, metadata offset, metadata length and metadata
    compression. A zero axes length ends the index (an index its writer did not close).
``*.tif`` header
    A TIFF header (``II`` or ``MM``, the byte order of the whole file), then at byte 8 five
    ``uint32``: the NDTiff magic number 483729, the major and minor version, the summary
    metadata header 2355492 and the summary metadata length; the summary metadata (a JSON
    object) follows at byte 28.
Pixel types
    0: 8-bit; 1: 16-bit; 3, 4, 5, 6: 10, 12, 14 and 11-bit in 16-bit words; 2 (RGB) is not
    supported. Pixels are stored uncompressed, in the file's byte order, row by row; each
    image's metadata is a JSON object at its own offset.

:class:`NDTiffSource` reads the index as a stream (never whole into memory) and one image at a
time at the offsets it gives. :meth:`NDTiffSource.scan` first checks every entry against the
files without reading pixels (a missing tiff, an entry pointing past the end of its file, an
index cut off mid-entry, an unsupported pixel type); :meth:`NDTiffSource.images` then yields
the readable images in index order. Unreadable entries are recorded in :class:`Problems`,
never raised, so a damaged dataset still gives every image it holds.

Written here rather than with ``ndstorage``'s reader, which reads the whole index into memory,
prints progress to stdout, and raises bare ``Exception`` without checking offsets against the
files.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import numpy as np

from mmtiffsink.errors import DatasetError

__all__ = [
    "FULL_RESOLUTION",
    "INDEX_NAME",
    "IndexEntry",
    "NDTiffSource",
    "Problems",
    "Scan",
    "dataset_dir",
    "index_path",
    "is_ndtiff_dataset",
]

#: Name of a dataset's index file.
INDEX_NAME: Final = "NDTiff.index"
#: Subdirectory holding the full-resolution images of a multi-resolution dataset.
FULL_RESOLUTION: Final = "Full resolution"
_NDTIFF_MAGIC: Final = 483729
_SUMMARY_MD_HEADER: Final = 2355492
_HEADER_BYTES: Final = 28
#: Longest axes JSON / file name an index entry may hold before it is taken as corrupted.
_MAX_FIELD_BYTES: Final = 1 << 20
_ENTRY_TAIL = struct.Struct("<8I")
_LENGTH = struct.Struct("<I")
#: NDTiff pixel types -> bytes per pixel (8-bit; 16-bit; 10, 12, 14, 11-bit in 16-bit words).
_PIXEL_BYTES: Final = {0: 1, 1: 2, 3: 2, 4: 2, 5: 2, 6: 2}
_RGB_PIXEL_TYPE: Final = 2
#: Entries an image's IFD may hold before it is taken as corrupted (NDTiff writes 13).
_MAX_IFD_TAGS: Final = 64
#: Bad index entries described one by one in an error message; the rest are counted.
_MAX_PROBLEMS_SHOWN: Final = 5
_NATIVE: Final = "<" if sys.byteorder == "little" else ">"


# ==================================================================================== paths
def index_path(path: str | os.PathLike[str]) -> Path | None:
    """The ``NDTiff.index`` of a dataset.

    Parameters
    ----------
    path
        A dataset directory, its ``NDTiff.index``, or a multi-resolution dataset directory
        (whose index is in ``Full resolution``).

    Returns
    -------
    Path or None
        The index file, or None when ``path`` is not an NDTiff dataset.

    """
    path = Path(path)
    if path.name == INDEX_NAME and path.is_file():
        return path
    for candidate in (path / INDEX_NAME, path / FULL_RESOLUTION / INDEX_NAME):
        if candidate.is_file():
            return candidate
    return None


def is_ndtiff_dataset(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an NDTiff dataset (has an index, see :func:`index_path`)."""
    return index_path(path) is not None


def dataset_dir(path: Path) -> Path:
    """The dataset directory of a path given as the directory or as its ``NDTiff.index``."""
    return path.parent if path.name == INDEX_NAME else path


# ==================================================================================== index
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
        return self.width * self.height * _PIXEL_BYTES.get(self.pixel_type, 0)

    def describe(self) -> str:
        """The entry as named in messages: its number and axes."""
        return f"index entry {self.number} (axes {self.axes})"


class _IndexBroken(DatasetError):
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
        raise _IndexBroken(msg, number)
    return data


def _parse_axes(raw: bytes, number: int, offset: int) -> dict[str, int | str]:
    try:
        axes = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"{INDEX_NAME} is corrupted in entry {number} (at byte {offset}): axes {exc}"
        raise _IndexBroken(msg, number) from None
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
        raise _IndexBroken(msg, number)
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


def _iter_index(path: Path) -> Iterator[IndexEntry]:
    """Stream the entries of an ``NDTiff.index`` file, in file (acquisition) order.

    Raises
    ------
    _IndexBroken
        At the first entry that is cut off or cannot be parsed; the entries before it were
        yielded. A zero axes length ends the index (an index not closed by its writer).

    """
    with path.open("rb") as fh:
        number = 0
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
                raise _IndexBroken(msg, number)
            (axes_length,) = _LENGTH.unpack(head)
            if axes_length == 0:
                rest = _nonzero_after(fh)
                if rest is None:
                    return  # the zeros an index not closed by its writer ends with
                msg = (
                    f"{INDEX_NAME} is corrupted in entry {number} (at byte {offset}): its axes "
                    f"length is 0, yet data follow at byte {rest}"
                )
                raise _IndexBroken(msg, number)
            if axes_length > _MAX_FIELD_BYTES:
                msg = (
                    f"{INDEX_NAME} is corrupted in entry {number} (at byte {offset}): "
                    f"axes length {axes_length}"
                )
                raise _IndexBroken(msg, number)
            axes = _parse_axes(_read_exact(fh, axes_length, number, offset, "axes"), number, offset)
            (name_length,) = _LENGTH.unpack(_read_exact(fh, 4, number, offset, "file name length"))
            if name_length == 0 or name_length > _MAX_FIELD_BYTES:
                msg = (
                    f"{INDEX_NAME} is corrupted in entry {number} (at byte {offset}): "
                    f"file name length {name_length}"
                )
                raise _IndexBroken(msg, number)
            raw_name = _read_exact(fh, name_length, number, offset, "file name")
            filename = raw_name.decode("utf-8", errors="replace")
            if os.path.basename(filename) != filename or filename in (".", ".."):
                msg = (
                    f"{INDEX_NAME} is corrupted in entry {number} (at byte {offset}): "
                    f"file name {filename!r}"
                )
                raise _IndexBroken(msg, number)
            fields = _ENTRY_TAIL.unpack(
                _read_exact(fh, _ENTRY_TAIL.size, number, offset, "offsets")
            )
            yield IndexEntry(number, offset, axes, filename, *fields)
            number += 1


def _iter_index_prefix(path: Path, count: int) -> Iterator[IndexEntry]:
    """The first ``count`` entries of the index (those the scan could parse)."""
    if count == 0:
        return
    for entry in _iter_index(path):
        yield entry
        if entry.number + 1 >= count:
            return


# ==================================================================================== headers
@dataclass
class _TiffHeader:
    """What the NDTiff header of one ``.tif`` file says, and its size."""

    size: int
    byteorder: str
    version: tuple[int, int]
    summary: dict[str, Any]


def _read_header(path: Path) -> _TiffHeader:
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
            if magic != _NDTIFF_MAGIC or md_header != _SUMMARY_MD_HEADER:
                msg = f"{path.name} is not an NDTiff file (no NDTiff header)"
                raise DatasetError(msg)
            if _HEADER_BYTES + md_length > size:
                msg = (
                    f"{path.name} is truncated: its summary metadata ({md_length} bytes) "
                    f"runs past the end of the file ({size} bytes)"
                )
                raise DatasetError(msg)
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
    return _TiffHeader(size, order, (major, minor), summary)


class _Images:
    """The images an NDTiff ``.tif`` holds, from its own IFD chain, and which entry claims each.

    Every NDTiff image has an IFD (pixels at StripOffsets, metadata at tag 51123) linked in
    file order; the chain of a file whose writer died points past its end. Kept as arrays
    (about 30 bytes per image) so that every index entry can be checked against the image it
    points at, and every image no entry points at can be counted.
    """

    def __init__(self, fh: IO[bytes], header: _TiffHeader) -> None:
        order, size = header.byteorder, header.size
        found: list[tuple[int, int, int]] = []  # pixel offset, pixel bytes, metadata offset
        self.broken_at: int | None = None
        """Where the chain stops making sense: images past it are unknown (not checked)."""
        fh.seek(4)
        (offset,) = struct.unpack(order + "I", fh.read(4))
        while offset:
            if offset >= size:  # the link to an image its writer never wrote
                break
            fh.seek(offset)
            raw = fh.read(2)
            (n,) = struct.unpack(order + "H", raw) if len(raw) == 2 else (0,)
            block = fh.read(12 * n + 4) if 0 < n <= _MAX_IFD_TAGS else b""
            tags = _ifd_tags(block, n, order) if len(block) == 12 * n + 4 else None
            if tags is None or not {273, 279} <= tags.keys():
                self.broken_at = offset
                break
            found.append((tags[273], tags[279], tags.get(51123, -1)))
            (nxt,) = struct.unpack(order + "I", block[-4:])
            if nxt and nxt <= offset:  # NDTiff links forward only: a loop or garbage
                self.broken_at = offset
                break
            offset = nxt
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


def _ifd_tags(block: bytes, n: int, order: str) -> dict[int, int] | None:
    """The tags of one classic TIFF IFD that hold one SHORT or LONG (and 51123's offset)."""
    tags: dict[int, int] = {}
    for i in range(n):
        code, dtype, count = struct.unpack_from(order + "HHI", block, 12 * i)
        if dtype == 3 and count == 1:
            (tags[code],) = struct.unpack_from(order + "H", block, 12 * i + 8)
        elif (dtype == 4 and count == 1) or (code == 51123 and count > 4):
            (tags[code],) = struct.unpack_from(order + "I", block, 12 * i + 8)
    return tags


def _summary_channel_names(summary: dict[str, Any]) -> list[str]:
    """``ChNames`` of a Micro-Manager Studio summary (labels for integer channels), if valid."""
    names = summary.get("ChNames")
    if (
        isinstance(names, list)
        and names
        and all(isinstance(n, str) and n for n in names)
        and len(set(names)) == len(names)
    ):
        return list(names)
    return []


# ==================================================================================== scan
class Problems:
    """Index entries left out, with the first few described.

    Attributes
    ----------
    count
        Images left out.
    shown
        Images left out that :attr:`messages` describe.
    messages
        The first few problems, described.
    truncated
        Why the index could not be read to its end, or None.

    """

    def __init__(self) -> None:
        self.count = 0
        self.shown = 0
        self.messages: list[str] = []
        self.truncated: str | None = None
        self.damaged = False

    def add(self, message: str, count: int = 1) -> None:
        """Record ``count`` images left out (or a damage that lost none) for one reason."""
        self.damaged = True
        self.count += count
        if len(self.messages) < _MAX_PROBLEMS_SHOWN:
            self.messages.append(message)
            self.shown += count

    def __bool__(self) -> bool:
        return self.damaged or self.truncated is not None

    def describe(self, images: int, placed: int) -> str:
        """The problems in one sentence: ``placed`` of the dataset's ``images`` were written."""
        more = self.count - self.shown
        parts = ["; ".join(self.messages) + (f"; and {more} more" if more > 0 else "")]
        if images > placed:
            parts[0] = (
                f"{images - placed} of {images} images could not be read or placed and were "
                f"left out: {parts[0]}"
            )
        if self.truncated is not None:
            parts.append(self.truncated)
        return "; ".join(p for p in parts if p)


@dataclass
class Scan:
    """The checked index: what can be read and what cannot be."""

    entries: int = 0
    """Entries parsed (the index may end early at a broken entry)."""
    images: int = 0
    """Images the dataset holds as far as can be told: those of each file's own IFD chain
    (the entries pointing into it where the chain is broken, or the file unreadable)."""
    frames: int = 0
    """Entries that look readable."""
    channel_names: list[str] = field(default_factory=list)
    """Channel labels in order of first appearance (or the summary's ``ChNames`` for
    integer channels); empty when unknown."""
    bad_files: dict[str, str] = field(default_factory=dict)
    """Files that cannot be read -> why."""
    bad_entries: set[int] = field(default_factory=set)
    """Numbers of the entries that cannot be read (in readable files)."""
    problems: Problems = field(default_factory=Problems)
    """Everything left out, for the report."""


# ==================================================================================== source
class NDTiffSource:
    """An NDTiff dataset on disk, read one image at a time.

    Parameters
    ----------
    path
        The dataset directory (the one holding ``NDTiff.index``, or a multi-resolution
        dataset's), or its ``NDTiff.index``.

    Raises
    ------
    DatasetError
        ``path`` does not exist or is not an NDTiff dataset.

    Notes
    -----
    Call :meth:`scan` first, then :meth:`images` with its result. :attr:`summary` (the summary
    metadata of the first readable file) and :attr:`files` are known after the scan.

    """

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():
            msg = f"{path} does not exist"
            raise DatasetError(msg)
        index = index_path(path)
        if index is None:
            if path.is_dir():
                msg = (
                    f"{path} is not an NDTiff dataset: it has no {INDEX_NAME} (old NDTiff 1 "
                    "datasets and other formats are not supported)"
                )
            else:
                msg = (
                    f"{path} is not an NDTiff dataset (a dataset is a directory holding "
                    f"{INDEX_NAME})"
                )
            raise DatasetError(msg)
        self.index: Path = index
        """The ``NDTiff.index`` file."""
        self.root: Path = index.parent
        """The directory of the index and its ``.tif`` files."""
        self.summary: dict[str, Any] = {}
        """The summary metadata (of the first readable file; filled by :meth:`scan`)."""
        self._headers: dict[str, _TiffHeader] = {}
        self._images: dict[str, _Images] = {}

    @property
    def name(self) -> str:
        """The dataset directory's name (``"dataset"`` when it has none)."""
        return dataset_dir(self.path).resolve().name or "dataset"

    @property
    def files(self) -> list[Path]:
        """The readable ``.tif`` files the scan found, in order of first use."""
        return [self.root / name for name in self._headers]

    # ------------------------------------------------------------------ scanning
    def _file_problem(self, entry: IndexEntry) -> str | None:
        """Check an entry's file (its header once per file); None when usable."""
        name = entry.filename
        if name not in self._headers:
            try:
                header = _read_header(self.root / name)
                with (self.root / name).open("rb") as fh:
                    self._images[name] = _Images(fh, header)
            except DatasetError as exc:
                return str(exc)
            except OSError as exc:
                return f"{name} cannot be read: {exc}"
            self._headers[name] = header
            if not self.summary:
                self.summary = header.summary
        return None

    def _entry_problem(self, entry: IndexEntry) -> str | None:
        """Why an entry cannot be read, or None."""
        if entry.pixel_type == _RGB_PIXEL_TYPE:
            return f"{entry.describe()}: RGB images are not supported"
        if entry.pixel_type not in _PIXEL_BYTES:
            return f"{entry.describe()}: unknown pixel type {entry.pixel_type}"
        if entry.pixel_compression != 0 or entry.metadata_compression != 0:
            return f"{entry.describe()}: compressed NDTiff images are not supported"
        if entry.width == 0 or entry.height == 0:
            return f"{entry.describe()}: empty image ({entry.width}x{entry.height})"
        size = self._headers[entry.filename].size
        end = entry.pixel_offset + entry.pixel_bytes
        if end > size:
            return (
                f"{entry.describe()}: its pixels (bytes {entry.pixel_offset}-{end}) lie past "
                f"the end of {entry.filename} ({size} bytes)"
            )
        end = entry.metadata_offset + entry.metadata_length
        if end > size:
            return (
                f"{entry.describe()}: its metadata (bytes {entry.metadata_offset}-{end}) lie "
                f"past the end of {entry.filename} ({size} bytes)"
            )
        return self._images[entry.filename].claim(entry)

    def scan(
        self,
        stop: threading.Event | None = None,
        check: Callable[[IndexEntry], str | None] | None = None,
    ) -> Scan:
        """Check every index entry against the files, without reading pixels.

        Parameters
        ----------
        stop
            When set, the scan stops by raising KeyboardInterrupt.
        check
            Called with each entry the reader can read; a message it returns leaves the entry
            out as unreadable (the caller's own check, e.g. of the axes).

        Returns
        -------
        Scan
            What can be read; entries that cannot are in its ``problems``.

        Raises
        ------
        DatasetError
            The index holds no entry.

        """
        scan = Scan()
        names: dict[str, None] = {}
        integer_channels = False
        file_entries: dict[str, int] = {}
        try:
            for entry in _iter_index(self.index):
                if stop is not None and stop.is_set():
                    raise KeyboardInterrupt
                scan.entries += 1
                file_entries[entry.filename] = file_entries.get(entry.filename, 0) + 1
                if entry.filename in scan.bad_files:
                    continue
                problem = self._file_problem(entry)
                if problem is not None:
                    scan.bad_files[entry.filename] = problem
                    continue
                problem = self._entry_problem(entry)
                if problem is None and check is not None:
                    problem = check(entry)
                if problem is not None:
                    scan.bad_entries.add(entry.number)
                    scan.problems.add(problem)
                    continue
                channel = entry.axes.get("channel")
                if isinstance(channel, str):
                    names.setdefault(channel, None)
                elif channel is not None:
                    integer_channels = True
                scan.frames += 1
        except _IndexBroken as exc:
            scan.problems.truncated = f"{exc}; the {exc.number} entries before it were converted"
        for filename, problem in scan.bad_files.items():
            count = file_entries[filename]
            scan.images += count
            scan.problems.add(
                f"{problem} ({count} image{'s' if count != 1 else ''} listed in it)", count
            )
        self._count_images(scan, file_entries)
        if scan.entries == 0 and scan.problems.truncated is None:
            msg = f"{self.path} holds no images (its {INDEX_NAME} is empty)"
            raise DatasetError(msg)
        if names:
            scan.channel_names = list(names)
        elif integer_channels:
            scan.channel_names = _summary_channel_names(self.summary)
        return scan

    def _count_images(self, scan: Scan, file_entries: dict[str, int]) -> None:
        """Count the images of every file, and those no index entry points at."""
        for path in sorted(self.root.glob("*.tif")):  # NDTiff files the index never names
            if path.name in self._images or path.name in scan.bad_files:
                continue
            try:
                header = _read_header(path)
                with path.open("rb") as fh:
                    self._images[path.name] = _Images(fh, header)
            except (DatasetError, OSError):
                continue  # not an NDTiff file: not part of the dataset
        for name, images in self._images.items():
            found = len(images.pixels)
            listed = file_entries.get(name, 0)
            scan.images += found if images.broken_at is None else max(found, listed)
            lost = images.unclaimed
            if lost:
                scan.problems.add(
                    f"{lost} image{'s' if lost != 1 else ''} of {name} "
                    f"{'are' if lost != 1 else 'is'} in no index entry",
                    lost,
                )
            if images.broken_at is not None:
                scan.problems.add(
                    f"{name} is corrupted at byte {images.broken_at} (its images after it "
                    "cannot be counted)",
                    0,
                )

    # ------------------------------------------------------------------ reading
    def images(self, scan: Scan) -> Iterator[tuple[IndexEntry, np.ndarray, dict[str, Any] | None]]:
        """Yield the readable images in index order.

        Parameters
        ----------
        scan
            The result of :meth:`scan`: its unreadable entries are skipped.

        Yields
        ------
        entry : IndexEntry
            The image's index entry.
        image : numpy.ndarray
            The pixels, ``(height, width)``, unsigned integers in native byte order.
        metadata : dict or None
            The image's metadata, None when it has none.

        Notes
        -----
        Images that fail to read now (the files changed since the scan) are added to
        ``scan.problems``. The files are open only while the iterator runs.

        """
        handles: dict[str, IO[bytes]] = {}
        try:
            for entry in _iter_index_prefix(self.index, scan.entries):
                if entry.filename in scan.bad_files or entry.number in scan.bad_entries:
                    continue
                fh = handles.get(entry.filename)
                if fh is None:
                    fh = handles[entry.filename] = (self.root / entry.filename).open("rb")
                try:
                    image, metadata = self._read(fh, entry)
                except DatasetError as exc:
                    scan.problems.add(str(exc))
                    continue
                yield entry, image, metadata
        finally:
            for fh in handles.values():
                fh.close()

    def _read(self, fh: IO[bytes], entry: IndexEntry) -> tuple[np.ndarray, dict[str, Any] | None]:
        header = self._headers[entry.filename]
        fh.seek(entry.pixel_offset)
        buffer = bytearray(entry.pixel_bytes)
        if fh.readinto(buffer) != len(buffer):  # type: ignore[attr-defined]
            msg = f"{entry.describe()}: its pixels are cut off in {entry.filename}"
            raise DatasetError(msg)
        bytes_per_pixel = _PIXEL_BYTES[entry.pixel_type]
        dtype = np.dtype(f"{header.byteorder}u{bytes_per_pixel}")
        image = np.frombuffer(buffer, dtype=dtype).reshape(entry.height, entry.width)
        if dtype.byteorder not in ("=", "|") and dtype.byteorder != _NATIVE:
            image = image.astype(dtype.newbyteorder("="))
        metadata: dict[str, Any] | None = None
        if entry.metadata_length:
            fh.seek(entry.metadata_offset)
            raw = fh.read(entry.metadata_length)
            if len(raw) != entry.metadata_length:
                msg = f"{entry.describe()}: its metadata are cut off in {entry.filename}"
                raise DatasetError(msg)
            try:
                parsed = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                msg = f"{entry.describe()}: its metadata are not valid JSON ({exc})"
                raise DatasetError(msg) from None
            if not isinstance(parsed, dict):
                msg = f"{entry.describe()}: its metadata are not a JSON object"
                raise DatasetError(msg)
            axes = parsed.get("Axes")
            if isinstance(axes, dict) and _set_axes(axes) != _set_axes(entry.axes):
                msg = f"{entry.describe()}: the image it points at has the Axes {axes}"
                raise DatasetError(msg)
            metadata = parsed
        return image, metadata


def _set_axes(axes: dict[str, Any]) -> dict[str, Any]:
    """Axes as compared between an entry and its image's metadata: None values dropped."""
    return {k: v for k, v in axes.items() if v is not None}
