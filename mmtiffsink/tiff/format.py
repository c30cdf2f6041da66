"""The TIFF facts other stages read: our private tags, and one bounded IFD walker.

Tag numbers are declared once, in ``tiff/_tags.py`` (the writer's home), and re-exported here
for readers (``inspect``, ``ndtiff``, the live reader): :data:`PLANE_TAG` (65421, a frame's
(c, z, t), or (c, z, t, s) in series s > 0 of an OME-TIFF of several images),
:data:`SETTINGS_TAG` (65422, the writer's settings JSON), :data:`SERIES_TAG` (65425, its series'
name and stage label as JSON), :data:`METADATA_TAG` (51123, Micro-Manager's per-image JSON).
:func:`in_use` tells whether a writer marks a file as in use (``NAME.tif.lock``, ``_lock.py``).

:class:`IfdWalk` walks the IFD chain of any TIFF (classic or BigTIFF, either byte order) from
a binary file handle and a size, and is the one walker of the package: ``repair``, ``info``,
``preview``, NDTiff's reader and :func:`mmtiffsink.open` read through it. Every count it reads
from the file is bounded before it sizes a read, an allocation or a loop:

- an IFD is yielded only when all of it (count, entries, next pointer) lies inside the file;
- a link past the end is where a growing file's writer has not yet linked the next frame (or
  where a truncated file was cut): the walk stops there, at the last fully written, linked IFD,
  after asking ``grow`` (if given) once whether the file has grown meanwhile. A writer writes an
  IFD before it links it, so a link read after the IFD landed always finds it whole;
- an IFD of more than ``max_entries`` entries, a loop, or more than ``max_ifds`` IFDs stops the
  walk as corrupt (:attr:`IfdWalk.stop`, :attr:`IfdWalk.problem`).

Example, the frames a live writer has linked so far::

    with open(path, "rb") as fh:
        walk = IfdWalk.growing(fh)  # IfdWalk(fh, size, grow=...) with the file's own size
        for ifd in walk:
            key = plane_key(walk, ifd)  # (c, z, t[, s]) or None
        print(walk.stop)  # "end", "past_end" (still growing, or cut short), "corrupt"
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any, Literal, Protocol, final

from ..limits import MAX_PLANES
from ._lock import Mark, check, lock_path
from ._tags import (
    BLANK_TAG,
    FIRST_METADATA_TAG,
    METADATA_TAG,
    PLANE_INFO_TAG,
    PLANE_TAG,
    SERIES_TAG,
    SETTINGS_TAG,
)

__all__ = [
    "BLANK_TAG",
    "FIRST_METADATA_TAG",
    "METADATA_TAG",
    "PLANE_INFO_TAG",
    "PLANE_TAG",
    "SERIES_TAG",
    "SETTINGS_TAG",
    "TYPE_SIZES",
    "Entry",
    "Header",
    "Ifd",
    "IfdWalk",
    "Mark",
    "Source",
    "frame_tags",
    "in_use",
    "lock_path",
    "plane_key",
    "read_header",
    "series_name",
]

TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
"""Bytes per value of each TIFF field type (BigTIFF adds 16, 17, 18: 8 bytes)."""
TYPE_SIZES.update({16: 8, 17: 8, 18: 8})
MAX_ENTRIES = 4096
"""Entries an IFD may hold before it is taken as corrupt (writers write a few dozen)."""
MAX_VALUE = 1 << 24
"""Bytes of one tag value :meth:`IfdWalk.value` reads at most (16 MiB) unless told more."""
_MAX_LABEL = 1 << 20
Stop = Literal["", "end", "past_end", "corrupt"]


class Source(Protocol):
    """What a walk reads through: a binary file handle, or anything that seeks and reads.

    A file opened ``"rb"`` is one; so is an adapter over positional reads (the live reader
    walks its ``FileIO`` so, to hold no descriptor of its own). Only ``seek(offset)`` from the
    start is used; ``read`` returns fewer bytes only at the end of the file.
    """

    def seek(self, offset: int, /) -> int:
        """Move to ``offset`` bytes from the start."""
        ...

    def read(self, size: int, /) -> bytes:
        """Up to ``size`` bytes from the current position."""
        ...


@final
@dataclass(frozen=True)
class Header:
    """A TIFF's header: byte order, classic or BigTIFF, where the first IFD is."""

    byteorder: Literal["<", ">"]
    bigtiff: bool
    first: int
    """Offset of the first IFD (0: none)."""

    @property
    def offset_size(self) -> int:
        """Bytes of an offset (and of an entry's value field): 4, or 8 in a BigTIFF."""
        return 8 if self.bigtiff else 4

    @property
    def count_size(self) -> int:
        """Bytes of an IFD's entry count: 2, or 8 in a BigTIFF."""
        return 8 if self.bigtiff else 2

    @property
    def entry_size(self) -> int:
        """Bytes of one IFD entry: 12, or 20 in a BigTIFF."""
        return 20 if self.bigtiff else 12

    @property
    def first_pointer(self) -> int:
        """Where in the header the first IFD's offset is."""
        return 8 if self.bigtiff else 4

    def ifd_size(self, entries: int) -> int:
        """Bytes of an IFD of ``entries`` entries, its count and next pointer included."""
        return self.count_size + entries * self.entry_size + self.offset_size


@final
@dataclass(frozen=True)
class Entry:
    """One IFD entry, as stored: its value field is the value (inline) or where it is."""

    code: int
    dtype: int
    count: int
    field: bytes
    """The raw value field (4 or 8 bytes)."""

    @property
    def nbytes(self) -> int:
        """Bytes of the value (0 for an unknown field type)."""
        return self.count * TYPE_SIZES.get(self.dtype, 0)

    @property
    def inline(self) -> bool:
        """True when the value is in the field itself."""
        return self.nbytes <= len(self.field)


@final
@dataclass(frozen=True)
class Ifd:
    """One IFD of the chain: where it is, its entries by tag code, and its link."""

    offset: int
    size: int
    """Bytes from ``offset`` to the end of its next pointer."""
    entries: dict[int, Entry]
    """Tag code -> entry (the last one of a code repeated)."""
    next: int
    """Offset of the next IFD (0: the chain ends here)."""
    link_pos: int
    """Where the next pointer is (a writer patches it to link the next IFD)."""


def read_header(fh: Source) -> Header | None:
    """The header of the TIFF behind ``fh``, or None if it is not a TIFF (or is cut short)."""
    fh.seek(0)
    head = fh.read(16)
    order: Literal["<", ">"]
    if head[:2] == b"II":
        order = "<"
    elif head[:2] == b"MM":
        order = ">"
    else:
        return None
    if len(head) < 8:
        return None
    (magic,) = struct.unpack(order + "H", head[2:4])
    if magic == 42:
        return Header(order, False, struct.unpack(order + "I", head[4:8])[0])
    if magic == 43 and len(head) == 16:
        size, zero = struct.unpack(order + "HH", head[4:8])
        if size == 8 and zero == 0:
            return Header(order, True, struct.unpack(order + "Q", head[8:16])[0])
    return None


@final
class IfdWalk:
    """The IFD chain of a TIFF, walked up to its last fully written, linked IFD.

    Parameters
    ----------
    fh
        A binary file handle, or any :class:`Source` (``seek``, ``read``); the walk moves its
        position (every read seeks first, so reads of its own between steps do no harm).
    size
        The file's size when the walk starts.
    grow
        Asked for the file's size again when a link points past ``size`` (a growing file:
        its writer wrote that IFD after the size was taken); None: the size is final.
    max_ifds
        IFDs walked at most before the chain is taken as corrupt.
    max_entries
        Entries an IFD may hold before it is taken as corrupt.
    first
        Where to start instead of the header's first IFD (``repair`` walks the frames' own
        chain of a finished file cut short, whose header points at a final chain now lost).

    Raises
    ------
    ValueError
        ``fh`` is not a TIFF (see :func:`read_header`).

    """

    def __init__(
        self,
        fh: Source,
        size: int,
        *,
        grow: Callable[[], int] | None = None,
        max_ifds: int = MAX_PLANES * 2,
        max_entries: int = MAX_ENTRIES,
        first: int | None = None,
    ) -> None:
        header = read_header(fh)
        if header is None:
            msg = "not a TIFF file (it does not start with a TIFF header)"
            raise ValueError(msg)
        if first is not None:
            header = Header(header.byteorder, header.bigtiff, first)
        self.fh, self.size, self.header = fh, size, header
        self._grow, self._max_ifds, self._max_entries = grow, max_ifds, max_entries
        self.stop: Stop = ""
        """Why the walk stopped: ``"end"`` (a next pointer of 0), ``"past_end"`` (a link past
        the end of the file: a writer still at work, or a file cut short), ``"corrupt"``."""
        self.problem = ""
        """What was wrong, when :attr:`stop` is ``"corrupt"``."""
        self.dangling = 0
        """The link not followed, when :attr:`stop` is ``"past_end"``."""
        self.count = 0
        """IFDs yielded so far."""
        self.last_link_pos = header.first_pointer
        """Where the last yielded IFD's next pointer is (the header's, before the first)."""

    @classmethod
    def growing(cls, fh: IO[bytes], **limits: int) -> IfdWalk:
        """A walk of a file that may be growing (its size asked again when a link points past it).

        ``limits``: ``max_ifds``, ``max_entries`` (see the class).
        """
        fd = fh.fileno()
        return cls(fh, os.fstat(fd).st_size, grow=lambda: os.fstat(fd).st_size, **limits)

    def _read(self, offset: int, nbytes: int) -> bytes | None:
        """``nbytes`` at ``offset`` if they lie inside the file (asking ``grow`` once)."""
        if offset < 0 or nbytes < 0:
            return None
        if offset + nbytes > self.size and self._grow is not None:
            self.size = max(self.size, self._grow())
        if offset + nbytes > self.size:
            return None
        self.fh.seek(offset)
        data = self.fh.read(nbytes)
        return data if len(data) == nbytes else None

    def __iter__(self) -> Iterator[Ifd]:
        head = self.header
        order = head.byteorder
        count_fmt = order + ("Q" if head.bigtiff else "H")
        off_fmt = order + ("Q" if head.bigtiff else "I")
        entry_fmt = order + ("HHQ" if head.bigtiff else "HHI")
        osz, esz = head.offset_size, head.entry_size
        offset = head.first
        seen: set[int] = set()
        while True:
            if offset == 0:
                self.stop = "end"
                return
            if offset in seen or self.count >= self._max_ifds:
                self.stop, self.problem = "corrupt", f"the IFD chain loops back to byte {offset}"
                if offset not in seen:
                    self.problem = f"the IFD chain holds more than {self._max_ifds} IFDs"
                return
            raw = self._read(offset, head.count_size)
            if raw is None:
                self.stop, self.dangling = "past_end", offset
                return
            (n,) = struct.unpack(count_fmt, raw)
            if not 0 < n <= self._max_entries:
                self.stop = "corrupt"
                self.problem = f"the IFD at byte {offset} claims {n} entries"
                return
            size = head.ifd_size(n)
            block = self._read(offset, size)
            if block is None:
                self.stop, self.dangling = "past_end", offset
                return
            entries: dict[int, Entry] = {}
            at = head.count_size
            for _ in range(n):
                code, dtype, count = struct.unpack_from(entry_fmt, block, at)
                entries[code] = Entry(code, dtype, count, block[at + esz - osz : at + esz])
                at += esz
            (nxt,) = struct.unpack_from(off_fmt, block, at)
            seen.add(offset)
            self.count += 1
            link_pos = offset + size - osz
            yield Ifd(offset, size, entries, int(nxt), link_pos)
            self.last_link_pos = link_pos
            offset = int(nxt)

    def where(self, entry: Entry) -> int | None:
        """Where the value of ``entry`` lies in the file (None: inline, or an unknown type).

        An offset as read, not checked against the file's size (:meth:`value` checks it).
        """
        if entry.dtype not in TYPE_SIZES or entry.inline:
            return None
        (offset,) = struct.unpack(
            self.header.byteorder + ("Q" if self.header.bigtiff else "I"), entry.field
        )
        return int(offset)

    def value(self, entry: Entry, *, max_bytes: int = MAX_VALUE) -> bytes | None:
        """The value bytes of ``entry`` (None: unknown type, too large, or past the end)."""
        nbytes = entry.nbytes
        if entry.dtype not in TYPE_SIZES or nbytes > max_bytes:
            return None
        at = self.where(entry)
        return entry.field[:nbytes] if at is None else self._read(at, nbytes)

    def head(self, entry: Entry, nbytes: int) -> bytes | None:
        """The first ``nbytes`` (at most) of an entry's value: a long text's start, read cheaply."""
        if entry.dtype not in TYPE_SIZES:
            return None
        nbytes = min(nbytes, entry.nbytes)
        at = self.where(entry)
        return entry.field[:nbytes] if at is None else self._read(at, nbytes)

    def ints(self, entry: Entry, *, max_count: int = 1 << 20) -> tuple[int, ...] | None:
        """The values of an integer entry (BYTE, SHORT, LONG, SLONG, LONG8, IFD, ...)."""
        codes = {1: "B", 3: "H", 4: "I", 6: "b", 8: "h", 9: "i", 13: "I", 16: "Q", 17: "q", 18: "Q"}
        code = codes.get(entry.dtype)
        if code is None or entry.count > max_count:
            return None
        raw = self.value(entry, max_bytes=max_count * 8)
        if raw is None:
            return None
        return struct.unpack(f"{self.header.byteorder}{entry.count}{code}", raw)

    def text(self, entry: Entry, *, max_bytes: int = MAX_VALUE) -> bytes | None:
        """The bytes of an ASCII, BYTE or UNDEFINED entry, trailing NULs removed."""
        if entry.dtype not in (1, 2, 7):
            return None
        raw = self.value(entry, max_bytes=max_bytes)
        return None if raw is None else raw.rstrip(b"\0")


def plane_key(walk: IfdWalk, ifd: Ifd) -> tuple[int, ...] | None:
    """The (c, z, t) or (c, z, t, s) an mmtiffsink frame's IFD carries (tag 65421), or None."""
    entry = ifd.entries.get(PLANE_TAG)
    if entry is None or entry.dtype not in (4, 9) or entry.count not in (3, 4):
        return None
    values = walk.ints(entry, max_count=4)
    return None if values is None else tuple(int(v) for v in values)


def series_name(walk: IfdWalk, ifd: Ifd) -> str | None:
    """The series name an mmtiffsink frame's IFD carries (tag 65425, JSON), or None."""
    entry = ifd.entries.get(SERIES_TAG)
    if entry is None:
        return None
    raw = walk.text(entry, max_bytes=_MAX_LABEL)
    if raw is None:
        return None
    try:
        label: Any = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    name = label.get("name") if isinstance(label, dict) else None
    return name if isinstance(name, str) else None


def frame_tags(walk: IfdWalk, ifd: Ifd) -> tuple[tuple[int, ...] | None, str | None]:
    """The plane key and series name of one frame's IFD (None for what it lacks)."""
    return plane_key(walk, ifd), series_name(walk, ifd)


def in_use(path: str | os.PathLike[str]) -> Mark | None:
    """Whether a writer marks ``path`` as in use: its lock record judged (see ``_lock.py``).

    Returns None when the file has no lock record (no writer has it open, or it was written
    before marks existed); else a :class:`Mark` whose ``state`` is ``"live"``, ``"stale"``
    (its writer stopped) or ``"unknown"`` (a record of another host, no lock to ask).
    """
    return check(path)
