"""The source stage: a streaming reader of Micro-Manager NDTiff datasets.

An NDTiff dataset (written by pycro-manager / ndstorage, or by Micro-Manager's AcqEngJ) is a
directory holding ``NDTiff.index`` and one or more ``*_NDTiffStack*.tif`` files; a
multi-resolution dataset keeps its full-resolution images in a ``Full resolution``
subdirectory laid out the same way. The byte format (NDTiff 2 and 3) is described and parsed
in :mod:`mmtiffsink._ndtiff_format`.

:class:`NDTiffSource` reads the index as a stream (never whole into memory) and one image at a
time at the offsets it gives. :meth:`NDTiffSource.scan` first checks every entry against the
files without reading pixels (a missing tiff, an entry pointing past the end of its file or
at no image of its file's own IFD chain, an index cut off or zeroed mid-entry, an unsupported
pixel type) and counts the images of each file that no entry points at: an index that ends
before the data do is damage, not the end. :meth:`NDTiffSource.images` then yields the
readable images in index order, leaving out any whose own ``Axes`` metadata disagree with
its entry. Unreadable entries are recorded in :class:`Problems`, never raised, so a damaged
dataset still gives every image it holds.

Two rules follow ``ndstorage``'s own reader:

* an image stored again at the same axes (Magellan's overwritten tiles) replaces the earlier
  one: the last entry is read, the earlier ones are counted in :attr:`Scan.superseded`;
* channel names, when the channel axis is an integer or absent, are the summary's ``ChNames``
  or else each channel's first image's ``Channel`` metadata (one metadata read per channel).

Written here rather than with ``ndstorage``'s reader, which reads the whole index into memory,
prints progress to stdout, and raises bare ``Exception`` without checking offsets against the
files.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import numpy as np

from mmtiffsink.errors import DatasetError, no_such_file

from ._format import (
    INDEX_NAME,
    PIXEL_BYTES,
    RGB_PIXEL_TYPE,
    Images,
    IndexBroken,
    IndexEntry,
    TiffHeader,
    iter_index,
    iter_index_prefix,
    read_header,
)

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

#: Subdirectory holding the full-resolution images of a multi-resolution dataset.
FULL_RESOLUTION: Final = "Full resolution"
#: Bad index entries described one by one in an error message; the rest are counted.
_MAX_PROBLEMS_SHOWN: Final = 5
#: Longest image metadata read for its ``Channel`` during the scan (Micro-Manager writes ~4 kB).
_MAX_CHANNEL_METADATA: Final = 1 << 20
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


def _labels_in_order(labels: dict[int, str | None]) -> list[str]:
    """Names of channels 0, 1, ... from their images' metadata, if every one is usable."""
    names = [labels.get(c) for c in range(len(labels))]
    if all(names) and len(set(names)) == len(names):
        return [n for n in names if n]
    return []


def _axes_key(axes: dict[str, int | str]) -> str:
    """An entry's axes as canonical text (None values dropped): equal axes, equal keys."""
    return json.dumps(sorted(_set_axes(axes).items()), separators=(",", ":"))


def _axes_digest(axes: dict[str, int | str]) -> int:
    """A 64-bit digest of :func:`_axes_key` (equal axes, equal digests)."""
    text = _axes_key(axes)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


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
    channels_labelled: bool = False
    """True when :attr:`channel_names` are the channel axis' own text labels."""
    bad_files: dict[str, str] = field(default_factory=dict)
    """Files that cannot be read -> why."""
    bad_entries: set[int] = field(default_factory=set)
    """Numbers of the entries that cannot be read (in readable files)."""
    problems: Problems = field(default_factory=Problems)
    """Everything left out, for the report."""
    superseded: set[int] = field(default_factory=set)
    """Numbers of the readable entries whose axes a later readable entry repeats: the later
    image replaces them (as ``ndstorage`` reads a dataset); not counted in :attr:`frames`."""
    superseded_example: dict[str, int | str] | None = None
    """The axes of one image stored more than once, for messages."""


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
            raise no_such_file(path)
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
        self._headers: dict[str, TiffHeader] = {}
        self._images: dict[str, Images] = {}

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
                header = read_header(self.root / name)
                with (self.root / name).open("rb") as fh:
                    self._images[name] = Images(fh, header)
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
        if entry.pixel_type not in PIXEL_BYTES:
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
        labels: dict[int, str | None] = {}  # integer (or absent: 0) channel -> its Channel
        digests, offsets, numbers = array("Q"), array("Q"), array("Q")
        file_entries: dict[str, int] = {}
        try:
            for entry in iter_index(self.index):
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
                else:
                    integer_channels = integer_channels or channel is not None
                    c = 0 if channel is None else channel
                    if c not in labels:
                        labels[c] = self._channel_label(entry)
                digests.append(_axes_digest(entry.axes))
                offsets.append(entry.offset)
                numbers.append(entry.number)
                scan.frames += 1
        except IndexBroken as exc:
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
        self._supersede(scan, digests, offsets, numbers)
        if names:
            scan.channel_names = list(names)
            scan.channels_labelled = True
        else:
            summary_names = _summary_channel_names(self.summary) if integer_channels else []
            scan.channel_names = summary_names or _labels_in_order(labels)
        return scan

    def _channel_label(self, entry: IndexEntry) -> str | None:
        """The ``Channel`` an image's own metadata names, or None (unreadable, absent, empty)."""
        if not 0 < entry.metadata_length <= _MAX_CHANNEL_METADATA:
            return None
        try:
            with (self.root / entry.filename).open("rb") as fh:
                fh.seek(entry.metadata_offset)
                metadata = json.loads(fh.read(entry.metadata_length).decode("utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError):
            return None
        name = metadata.get("Channel") if isinstance(metadata, dict) else None
        return name if isinstance(name, str) and name else None

    def _is_own(self, entry: IndexEntry) -> bool:
        """Whether the image an entry points at says (by its own ``Axes``) it is the entry's.

        An entry whose axes were damaged into another's is not a superseded image: it is read,
        and its disagreement reported, as any other.
        """
        try:
            with (self.root / entry.filename).open("rb") as fh:
                self._read_metadata(fh, entry)
        except (DatasetError, OSError):
            return False
        return True

    def _supersede(
        self, scan: Scan, digests: array[int], offsets: array[int], numbers: array[int]
    ) -> None:
        """Mark every readable entry whose axes a later readable entry repeats as superseded.

        Digests (8 bytes per entry) find the candidates; the axes of each candidate are read
        again from the index and compared exactly, so a digest collision never drops an image;
        the earlier image's own ``Axes`` metadata must agree (see :meth:`_is_own`).
        """
        keys = np.frombuffer(digests, dtype=np.uint64)
        if len(keys) < 2:
            return
        order = np.argsort(keys, kind="stable")  # equal digests stay in index order
        ranked = keys[order]
        repeated = np.flatnonzero(ranked[1:] == ranked[:-1])
        if not len(repeated):
            return
        groups: dict[str, list[IndexEntry]] = {}  # exact axes -> its entries, in index order
        for i in np.unique(np.concatenate([repeated, repeated + 1])):  # the candidates only
            j = int(order[i])
            entry = next(iter_index(self.index, offsets[j], numbers[j]))
            groups.setdefault(_axes_key(entry.axes), []).append(entry)
        for entries in groups.values():
            entries.sort(key=lambda e: e.number)
            own = [entry for entry in entries if self._is_own(entry)]  # others: damage, reported
            for entry in own[:-1]:  # the last one stored is read, as ndstorage does
                scan.superseded.add(entry.number)
                scan.superseded_example = scan.superseded_example or entry.axes
        scan.frames -= len(scan.superseded)

    def _count_images(self, scan: Scan, file_entries: dict[str, int]) -> None:
        """Count the images of every file, and those no index entry points at."""
        for path in sorted(self.root.glob("*.tif")):  # NDTiff files the index never names
            if path.name in self._images or path.name in scan.bad_files:
                continue
            try:
                header = read_header(path)
                with path.open("rb") as fh:
                    self._images[path.name] = Images(fh, header)
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
            The pixels, ``(height, width)``, unsigned integers in native byte order; an RGB
            image is ``(height, width, 3)`` ``uint8``, as stored (and as ``ndstorage``
            reads it).
        metadata : dict or None
            The image's metadata, None when it has none.

        Notes
        -----
        Images that fail to read now (the files changed since the scan) are added to
        ``scan.problems``. The files are open only while the iterator runs.

        """
        handles: dict[str, IO[bytes]] = {}
        try:
            for entry in iter_index_prefix(self.index, scan.entries):
                if entry.filename in scan.bad_files or entry.number in scan.bad_entries:
                    continue
                fh = handles.get(entry.filename)
                if fh is None:
                    fh = handles[entry.filename] = (self.root / entry.filename).open("rb")
                if entry.number in scan.superseded:
                    continue
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
        image: np.ndarray
        if entry.pixel_type == RGB_PIXEL_TYPE:
            dtype = np.dtype(np.uint8)
            image = np.frombuffer(buffer, dtype=dtype).reshape(entry.height, entry.width, 3)
        else:
            dtype = np.dtype(f"{header.byteorder}u{PIXEL_BYTES[entry.pixel_type]}")
            image = np.frombuffer(buffer, dtype=dtype).reshape(entry.height, entry.width)
        if dtype.byteorder not in ("=", "|") and dtype.byteorder != _NATIVE:
            image = image.astype(dtype.newbyteorder("="))
        return image, self._read_metadata(fh, entry)

    def _read_metadata(self, fh: IO[bytes], entry: IndexEntry) -> dict[str, Any] | None:
        """An image's metadata, checked against its entry's axes (None when it has none).

        An entry whose image's own ``Axes`` differ is damaged, never a superseded image.
        """
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
        return metadata


def _set_axes(axes: dict[str, Any]) -> dict[str, Any]:
    """Axes as compared between an entry and its image's metadata: None values dropped."""
    return {k: v for k, v in axes.items() if v is not None}
