"""The byte appender: a frame's data, new tag values and IFD at the end of the file, then linked.

Only the file's writer thread appends (see :mod:`._writer`), never holding the file's lock
while bytes go to disk. For a batch of frames, in one write: any tag value not stored
before, the pixel data (unless identical data is already stored), and the IFD; only then is
the previous IFD's next-pointer patched to it. So the file on disk is at every moment a valid
TIFF whose chain holds every frame appended so far, each IFD carrying its (c, z, t) in a
private tag (and its series, (c, z, t, s), in a file of several series).

An exception in the middle (a full disk, a KeyboardInterrupt in the saving thread) leaves the
file valid: whether the frame was linked is read back from the file, and the appender's state
made to agree with it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import struct
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import imagecodecs
import numpy as np

from .._version import __version__
from ..errors import FrameError, ProfileError
from ._codecs import Codec
from ._frames import Coord, Key, frame_kind
from ._io import FileIO
from ._settings import Settings
from ._tags import (
    FIRST_METADATA_TAG,
    METADATA_TAG,
    PLANE_TAG,
    SETTINGS_TAG,
    Layout,
    Tag,
    image_tags,
    int_tag,
    resolution_tags,
)

__all__ = ["Appender", "Batch", "data_key", "pack", "unpack"]

_log = logging.getLogger(__name__)

_DATA_INDEX_SIZE = 16384  # distinct frames remembered for dedup (about 2.5 MB at most)
_VALUE_INDEX_SIZE = 1024  # distinct out-of-line tag values remembered for dedup
_SIZE_BITS = 24  # an IFD is far below 16 MiB (it holds one frame's tags)
_TEMPLATES = True  # plain frames' IFDs from a template (False: the general path; for tests)

_K = TypeVar("_K")
_V = TypeVar("_V")


def pack(offset: int, size: int) -> int:
    """One int for an IFD's (offset, size): a third of a tuple's memory."""
    return offset << _SIZE_BITS | size


def unpack(packed: int) -> tuple[int, int]:
    """Inverse of :func:`pack`."""
    return packed >> _SIZE_BITS, packed & ((1 << _SIZE_BITS) - 1)


_SAMPLED_FROM = 1 << 16  # bytes from which the dedup key reads a sample, not every byte
# one 8-byte word in 61: a stride that is no power of two, so the samples drift across the
# columns of rows (frames differing in one column, as a constant offset does after the
# predictor, still give different keys)
_SAMPLE_STRIDE = 61
# zlib.crc32 releases the GIL above 5 KiB: taking it back behind the writer's other threads
# costs more than the CRC (a few µs), so smaller pieces keep it
_HELD_CRC = 5 * 1024


def data_key(data: bytes | memoryview) -> int:
    """Dedup key of an encoded frame: its length and a CRC-32.

    Up to 64 KiB the CRC covers every byte; beyond, one 8-byte word in 61, spread over the
    whole frame, and the last 64 bytes (512x512 uint16: 12 µs instead of 31; the key is in
    every frame's serial path). A key is only a hint: on a hit the appender compares full
    CRCs, then the stored bytes (see :meth:`Appender._find_data`), so frames that differ only
    between the sampled words cost a full CRC, never a wrong frame. (zlib's and libdeflate's
    CRC-32 are the same function; zlib's call costs less for small frames: 5 against 8 µs
    for 8 kB, where the key is a sizeable part of a frame's Python.)
    """
    n = len(data)
    if n <= _HELD_CRC:
        return n << 32 | zlib.crc32(data)
    if n <= _SAMPLED_FROM:  # in pieces that keep the GIL (see _HELD_CRC)
        view = memoryview(data).cast("B")
        crc = 0
        for start in range(0, n, _HELD_CRC):
            crc = zlib.crc32(view[start : start + _HELD_CRC], crc)
        return n << 32 | crc
    words = np.frombuffer(data, dtype=np.uint64, count=n // 8)
    crc = imagecodecs.deflate_crc32(np.ascontiguousarray(words[::_SAMPLE_STRIDE]))  # type: ignore[arg-type]
    tail = memoryview(data).cast("B")[n - 64 :]
    return n << 32 | int(imagecodecs.deflate_crc32(tail, crc))  # type: ignore[arg-type]


class LRU(Generic[_K, _V]):
    """A dict of at most ``size`` entries that forgets the least recently used one."""

    __slots__ = ("_data", "_size")

    def __init__(self, size: int) -> None:
        self._data: OrderedDict[_K, _V] = OrderedDict()
        self._size = size

    def get(self, key: _K) -> _V | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: _K, value: _V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        if len(self._data) > self._size:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


class Tail:
    """Bytes to append at the end of the file, allocated on even offsets, written at once."""

    def __init__(self, start: int) -> None:
        self.start = start
        self.pos = start
        self.chunks: list[bytes | bytearray | memoryview] = []

    def reserve(self, nbytes: int) -> int:
        """Skip ``nbytes`` (written elsewhere) before any allocation; return their offset."""
        offset = self.pos
        self.start = self.pos = offset + nbytes
        return offset

    def alloc(self, buf: bytes | bytearray | memoryview) -> int:
        """Queue ``buf`` and return the file offset it will have."""
        offset = self.pos
        self.chunks.append(buf)
        self.pos += len(buf)
        if self.pos % 2:
            self.chunks.append(b"\0")
            self.pos += 1
        return offset


class _Template:
    """A plain frame's (c, z, t) value and IFD, blank where they differ.

    A plain frame has no extra tag, and strips whose offsets and byte counts fit inline in their
    entries (one strip; two, an uncompressed frame's, in a BigTIFF below 4 GiB). Every such IFD
    of a file differs only in its strips' offsets and byte counts, the
    offset of its (c, z, t) value, and its next-IFD pointer: the entries are encoded and sorted
    once, and each frame fills a copy of ``blob`` (the value, then the IFD, stored together as
    the general path of :meth:`Appender.append_many` stores them one after the other) in four
    places. ``static`` is the static entries list it was built from: a new list (a setting
    changed) makes a new template.
    """

    __slots__ = (
        "blob",
        "coord",
        "count",
        "counts_at",
        "ifd_at",
        "ifd_size",
        "offset",
        "offsets_at",
        "plane",
        "plane_at",
        "static",
    )

    def __init__(
        self,
        lay: Layout,
        static: list[tuple[int, bytes]],
        offsets_type: int,
        counts_type: int,
        plane_type: int,
        ncoord: int,
        nstrips: int,
    ) -> None:
        self.static = static
        blank = [
            (273, lay.encode_entry(int_tag(273, offsets_type, [0] * nstrips), None)),
            (279, lay.encode_entry(int_tag(279, counts_type, [0] * nstrips), None)),
            (PLANE_TAG, lay.encode_entry(int_tag(PLANE_TAG, plane_type, [0] * ncoord), 0)),
        ]
        items = sorted([*static, *blank], key=lambda item: item[0])
        ifd = lay.encode_ifd([raw for _, raw in items])
        self.coord = struct.Struct(f"<{ncoord}{'i' if plane_type == 9 else 'I'}")
        # the value is out of line (3 or 4 values of 4 bytes: more than an entry holds) and
        # of even size: the IFD follows it at once, as after Tail.alloc of each
        assert self.coord.size > lay.inline_size and self.coord.size % 2 == 0
        self.ifd_at = self.coord.size
        self.ifd_size = len(ifd)
        self.blob = bytes(self.coord.size) + ifd
        codes = [code for code, _ in items]
        count_size, entry_size = (8, 20) if lay.bigtiff else (2, 12)
        value_at = self.ifd_at + entry_size - lay.inline_size  # an entry's last bytes

        def where(code: int) -> int:
            return count_size + codes.index(code) * entry_size + value_at

        self.offsets_at, self.counts_at, self.plane_at = where(273), where(279), where(PLANE_TAG)
        self.offset = struct.Struct(f"<{nstrips}{'I' if offsets_type == 4 else 'Q'}")
        self.count = struct.Struct(f"<{nstrips}{'I' if counts_type == 4 else 'Q'}")
        self.plane = struct.Struct("<Q" if lay.bigtiff else "<I")


class Batch:
    """Frames to append together: (key, encoded bytes, dedup key, extra tags) each."""

    __slots__ = ("frames",)

    def __init__(self) -> None:
        self.frames: list[tuple[Key, bytes | memoryview, int, Sequence[Tag]]] = []

    def add(self, key: Key, data: bytes | memoryview, digest: int, extra: Sequence[Tag]) -> None:
        """One more frame."""
        self.frames.append((key, data, digest, extra))


class Appender:
    """The end of one file: appends frames and links their IFDs (one thread at a time).

    Parameters
    ----------
    io
        The file, opened for writing.
    layout
        Classic TIFF or BigTIFF.
    static_tags
        Returns the tags every IFD carries now (a new tuple when a setting changed).
    rows_per_strip
        Rows of a frame's first strip (uncompressed frames have two strips, see
        :func:`rows_per_strip`).
    slots
        For files whose planes each have a slot (the uncompressed ``imagej`` profile): the
        (C, Z, T) shape; ``slots_at`` is where the slots start once laid out.

    """

    def __init__(
        self,
        io: FileIO,
        layout: Layout,
        static_tags: Callable[[], tuple[Tag, ...]],
        *,
        end: int,
        link_pos: int,
        slots: Coord | None = None,
        slots_at: int | None = None,
    ) -> None:
        self.io = io
        self.layout = layout
        self._static_tags = static_tags
        self._static_src: tuple[Tag, ...] | None = None
        self._static_entries: list[tuple[int, bytes]] = []
        # (offsets type, counts type, plane type, len(key), strips) -> a plain frame's IFD
        self._templates: dict[tuple[int, int, int, int, int], _Template] = {}
        self._wide = 2**32 if layout.bigtiff else math.inf  # LONG8 from here (Layout.offset_tag)
        self._pointer = struct.Struct("<Q" if layout.bigtiff else "<I")  # a next-IFD pointer
        self.end = end + end % 2
        self.link_pos = link_pos
        self.slots = slots
        self.slots_at = slots_at
        # (Y, X) for grey frames, (Y, X, 3) for RGB: fixed by the first frame
        self.frame_shape: tuple[int, ...] | None = None
        self.rows_per_strip = 1
        # coord -> IFD offset and size packed in one int (see pack): a few hundred bytes per
        # plane is all the memory that grows with the number of frames
        self.planes: dict[Key, int] = {}
        self.arrival: list[Key] = []
        self.frames_stored = 0
        # called with a frame's key once its IFD is linked (live views, see tiff/_view.py)
        self.listeners: list[Callable[[Key], None]] = []
        # dedup indexes, bounded: memory must not grow with every frame (per-frame metadata
        # such as ElapsedTime-ms makes every value new); the most recently used entries stay
        # key -> (offset, size, full CRC-32 or None when not computed)
        self._data_index: LRU[int, tuple[int, int, int | None]] = LRU(_DATA_INDEX_SIZE)
        self._value_index: LRU[tuple[int, int, bytes], int] = LRU(_VALUE_INDEX_SIZE)

    # ------------------------------------------------------------------ strips
    def check_frame_shape(self, shape: tuple[int, ...], *, compressed: bool) -> None:
        """Take the first frame's shape as the file's; refuse a later frame of another shape.

        The first frame also decides whether the file is grey, ``(Y, X)``, or RGB,
        ``(Y, X, 3)``: every later frame must be of the same kind.

        Raises
        ------
        FrameError
            The frame's shape (or kind, grey or RGB) differs from the file's.

        """
        if shape == self.frame_shape:  # every frame after the first (numpy's shape: ints)
            return
        full = tuple(int(n) for n in shape)
        if self.frame_shape is None:
            self.frame_shape = full
            self.rows_per_strip = rows_per_strip(
                full[0], compressed=compressed, slots=self.slots is not None
            )
        elif len(full) != len(self.frame_shape):
            msg = (
                f"a {frame_kind(full)} frame of shape {full} cannot go into {self.io.path}, "
                f"a file of {frame_kind(self.frame_shape)} frames {self.frame_shape}: a file "
                "is RGB or grey from its first frame"
            )
            raise FrameError(msg)
        elif full != self.frame_shape:
            msg = f"frame shape {full} differs from the file's frame shape {self.frame_shape}"
            raise FrameError(msg)

    def strips(self, offset: int, nbytes: int) -> tuple[list[int], list[int]]:
        """Strip offsets and byte counts of a frame's data stored at ``offset``."""
        h = self.frame_shape[0] if self.frame_shape else 1
        rows = self.rows_per_strip
        if rows >= h:
            return [offset], [nbytes]
        head = nbytes // h * rows
        return [offset, offset + head], [head, nbytes - head]

    def slot_offset(self, coord: Key, nbytes: int) -> int:
        """Offset of a plane's slot (files with slots)."""
        assert self.slots is not None and self.slots_at is not None
        c, z, t = coord
        index = c + self.slots[0] * (z + self.slots[1] * t)
        return self.slots_at + index * nbytes

    # ------------------------------------------------------------------ append
    def append(
        self, coord: Key, data: bytes | memoryview, digest: int, extra: Sequence[Tag]
    ) -> None:
        """Append one frame's bytes and IFD, then link it (see :meth:`append_many`)."""
        batch = Batch()
        batch.add(coord, data, digest, extra)
        self.append_many(batch)

    def append_many(self, batch: Batch) -> None:
        """Append frames' bytes and IFDs with one write, then link them with one more.

        The IFDs of the batch point at each other; the last IFD linked before points at the
        first of them only once every byte is written: the file is a valid TIFF holding every
        frame linked so far, at every moment, and a batch lands whole or not at all.

        Raises
        ------
        ProfileError
            A frame would pass a classic TIFF's 4 GiB.
        OSError
            Writing failed (the file keeps every frame linked before).

        """
        lay = self.layout
        tail = Tail(self.end)
        values: dict[tuple[int, int, bytes], int] = {}  # tag values new in this batch
        datas: dict[int, tuple[bytes | memoryview, int]] = {}  # frame data new in this batch
        slot_writes: list[tuple[bytes | memoryview, int]] = []
        if self.slots is not None and self.slots_at is None:  # before any allocation
            c, z, t = self.slots
            self.slots_at = tail.reserve(c * z * t * len(batch.frames[0][1]))
            self.end = tail.start
        static_src = self._static_tags()
        if static_src is not self._static_src:  # first frame, or a setting changed
            static = [self._entry(tag, tail, values) for tag in static_src]
        else:
            static = self._static_entries
        # (key, its IFD's bytes at the end of a buffer, the IFD's offset and size)
        ifds: list[tuple[Key, bytearray, int, int]] = []
        stored: list[tuple[bool, int, tuple[int, int], int | None]] = []
        first = not self.arrival
        pointer = self._pointer
        pointer_size = pointer.size
        for coord, data, digest, extra in batch.frames:
            full_crc: int | None = None
            if self.slots is not None:
                where = (self.slot_offset(coord, len(data)), len(data))
                slot_writes.append((data, where[0]))
                new_data = True
            else:
                found, full_crc = self._find_data(digest, data)
                if found is None:
                    mine = datas.get(digest)  # an equal frame earlier in this batch
                    if mine is not None and mine[0] == data:
                        found = (mine[1], len(data))
                new_data = found is None
                if found is None:
                    found = (tail.alloc(data), len(data))
                    datas[digest] = (data, found[0])
                where = found
            if first:  # see FIRST_METADATA_TAG
                first = False
                extra = [
                    Tag(FIRST_METADATA_TAG, t.dtype, t.count, t.value)
                    if t.code == METADATA_TAG
                    else t
                    for t in extra
                ]
            plane_type = 9 if min(coord) < 0 else 4
            offsets, counts = self.strips(*where)
            plain = None
            if _TEMPLATES and not extra:  # a plain frame: the template, where it applies
                plain = self._plain_ifd(static, tail, offsets, counts, plane_type, coord)
            if plain is not None:
                ifd, ifd_offset, ifd_size = plain
            else:
                items = [
                    *static,
                    self._entry(lay.offset_tag(273, offsets), tail, values),
                    self._entry(lay.offset_tag(279, counts), tail, values),
                    self._entry(int_tag(PLANE_TAG, plane_type, coord), tail, None),
                    *(self._entry(tag, tail, values) for tag in extra),
                ]
                items.sort(key=lambda item: item[0])
                ifd = bytearray(lay.encode_ifd([raw for _, raw in items]))
                ifd_offset, ifd_size = tail.alloc(ifd), len(ifd)
                if ifd_size >= 1 << _SIZE_BITS:
                    msg = f"{self.io.path}: an IFD of {ifd_size} bytes"
                    raise ProfileError(msg)
            if ifds:  # the previous IFD of the batch points at this one
                prev = ifds[-1][1]
                pointer.pack_into(prev, len(prev) - pointer_size, ifd_offset)
            ifds.append((coord, ifd, ifd_offset, ifd_size))
            stored.append((new_data, digest, where, full_crc))
        if tail.pos > lay.max_offset:
            msg = f"{self.io.path} would pass the 4 GiB limit of a classic TIFF"
            raise ProfileError(msg)
        first_ifd = ifds[0][2]
        try:
            for data, offset in slot_writes:
                self.io.write([data], offset)
            self.io.write(tail.chunks, tail.start)
            # link the batch only once it is completely on disk
            self.io.write([lay.pack_offset(first_ifd)], self.link_pos)
        except BaseException:
            if not self._linked(first_ifd):
                with contextlib.suppress(OSError, ValueError):
                    self.io.truncate(self.end)
                raise
            self._commit(ifds, tail.pos, values, static_src, static, stored)
            raise
        self._commit(ifds, tail.pos, values, static_src, static, stored)
        for listener in list(self.listeners):  # the frames are in the file: tell the views
            for coord, _, _, _ in ifds:
                try:
                    listener(coord)
                except Exception:  # a view never harms the writer
                    _log.exception("mmtiffsink: a listener of %s raised", self.io.path)

    def _plain_ifd(
        self,
        static: list[tuple[int, bytes]],
        tail: Tail,
        offsets: list[int],
        counts: list[int],
        plane_type: int,
        coord: Key,
    ) -> tuple[bytearray, int, int] | None:
        """The (c, z, t) value and IFD of a frame with no extra tag, from a template.

        Returns the buffer (the value, then the IFD), the IFD's offset and its size; None
        when the strips' values do not fit inline (the general path then stores them). Byte
        for byte what the general path of :meth:`append_many` stores
        (``tests/writer/test_writer.py`` compares both).
        """
        wide = self._wide
        nstrips = len(offsets)
        key = (
            16 if offsets[-1] >= wide else 4,  # the last strip's offset is the largest
            16 if max(counts) >= wide else 4,
            plane_type,
            len(coord),
            nstrips,
        )
        tpl = self._templates.get(key)
        if tpl is None or tpl.static is not static:
            widest = 8 if 16 in key[:2] else 4  # LONG8 or LONG
            if nstrips * widest > self.layout.inline_size:  # stored out of line
                return None
            tpl = self._templates[key] = _Template(self.layout, static, *key)
        buf = bytearray(tpl.blob)
        at = tail.alloc(buf)
        tpl.coord.pack_into(buf, 0, *coord)
        tpl.offset.pack_into(buf, tpl.offsets_at, *offsets)
        tpl.count.pack_into(buf, tpl.counts_at, *counts)
        tpl.plane.pack_into(buf, tpl.plane_at, at)
        return buf, at + tpl.ifd_at, tpl.ifd_size

    def _entry(
        self, tag: Tag, tail: Tail, values: dict[tuple[int, int, bytes], int] | None
    ) -> tuple[int, bytes]:
        """One IFD entry; an out-of-line value stored once (``values is None``: never shared)."""
        lay = self.layout
        if len(tag.value) <= lay.inline_size:
            return tag.code, lay.encode_entry(tag, None)
        if values is None:
            return tag.code, lay.encode_entry(tag, tail.alloc(tag.value))
        key = (tag.dtype, len(tag.value), hashlib.blake2b(tag.value, digest_size=16).digest())
        offset = values.get(key)
        if offset is None:
            offset = self._find_value(key, tag.value)
        if offset is None:
            offset = values[key] = tail.alloc(tag.value)
        return tag.code, lay.encode_entry(tag, offset)

    def _commit(
        self,
        ifds: list[tuple[Key, bytearray, int, int]],
        end: int,
        new_values: dict[tuple[int, int, bytes], int],
        static_src: tuple[Tag, ...],
        static: list[tuple[int, bytes]],
        stored: list[tuple[bool, int, tuple[int, int], int | None]],
    ) -> None:
        # the end first: a later batch must never overwrite a linked IFD
        self.end = end
        _, _, last_offset, last_size = ifds[-1]
        self.link_pos = last_offset + last_size - self.layout.offset_size
        planes, arrival = self.planes, self.arrival
        for coord, _, offset, size in ifds:
            planes[coord] = pack(offset, size)
            arrival.append(coord)
        for key, offset in new_values.items():
            self._value_index.put(key, offset)
        self._static_src, self._static_entries = static_src, static
        for new_data, digest, where, full_crc in stored:
            if new_data:
                if self.slots is None:
                    self._data_index.put(digest, (where[0], where[1], full_crc))
                self.frames_stored += 1
            else:  # shared: its entry is the most recently used one
                self._data_index.get(digest)

    def _linked(self, ifd_offset: int) -> bool:
        """Whether the pointer at ``link_pos`` on disk points at ``ifd_offset``."""
        size = self.layout.offset_size
        try:
            raw = self.io.read(self.link_pos, size)
        except (OSError, ValueError):
            return False
        return len(raw) == size and int.from_bytes(raw, "little") == ifd_offset

    def _find_data(
        self, digest: int, data: bytes | memoryview
    ) -> tuple[tuple[int, int] | None, int | None]:
        """Where identical bytes are stored (or None), and ``data``'s full CRC if computed.

        A key hit of a sampled key is first checked by full CRCs (the stored frame's is kept
        once known), so similar frames that share a sampled key cost a CRC, not a read of the
        stored frame; only equal CRCs are confirmed by comparing the bytes.
        """
        hit = self._data_index.get(digest)
        if hit is None or hit[1] != len(data):
            return None, None
        offset, size, stored_crc = hit
        crc = None
        if size > _SAMPLED_FROM:
            crc = int(imagecodecs.deflate_crc32(data))  # type: ignore[arg-type]
            if stored_crc is not None and stored_crc != crc:
                return None, crc
        if self.io.read(offset, size) == data:
            return (offset, size), crc
        return None, crc

    def _find_value(self, key: tuple[int, int, bytes], value: bytes) -> int | None:
        offset = self._value_index.get(key)
        if offset is not None and self.io.read(offset, len(value)) == value:
            return offset
        return None

    def write_tail(self, tail: Tail) -> None:
        """Write a prepared tail (the final chain) at the end; on failure cut it off again."""
        try:
            self.io.write(tail.chunks, tail.start)
        except BaseException:
            with contextlib.suppress(OSError, ValueError):
                self.io.truncate(self.end)
            raise
        self.end = tail.pos

    def read(self, offset: int, size: int) -> bytes:
        """Read bytes of the file (for the final chain)."""
        return self.io.read(offset, size)

    def __repr__(self) -> str:
        return f"<Appender {self.io.path} end={self.end} planes={len(self.planes)}>"


def rows_per_strip(height: int, *, compressed: bool, slots: bool) -> int:
    """Uncompressed frames are two adjacent strips (all rows but one, then one row).

    tifffile reads an uncompressed ImageJ file whose first plane is one contiguous block as a
    "virtual" stack of contiguous planes. Two strips let the final first IFD point its last
    row at a copy stored apart, which tells tifffile the planes are separate. Files with a
    slot per plane (read by ImageJ in order) and compressed frames have one strip.
    """
    return height - 1 if not compressed and not slots and height > 1 else height


_FINAL_RESERVE = 1 << 20  # bytes kept free in classic files for the final IFD chain's extras


def static_tags(
    appender: Appender,
    dtype: Any,
    codec: Codec,
    settings: Settings,
    profile: str,
    extratags: Sequence[Tag],
) -> tuple[Tag, ...]:
    """The tags every IFD of a file carries."""
    pxsize = settings.pxsize
    tags = [
        Tag.long(254, [0]),
        *image_tags(
            appender.frame_shape or (0, 0),
            np.dtype(dtype),
            compression=codec.tiff_code,
            predictor=codec.tiff_predictor,
            rows_per_strip=appender.rows_per_strip,
        ),
        Tag.ascii(305, f"mmtiffsink {__version__}"),
        Tag.ascii(SETTINGS_TAG, json.dumps(settings.to_json(profile), sort_keys=True)),
        *extratags,
    ]
    return (*tags, *resolution_tags(pxsize))


def size_bound(appender: Appender, nbytes: int, compressed: bool, extra: Sequence[Tag]) -> int:
    """Upper bound of the bytes one frame adds to the end of the file."""
    if appender.slots is not None:
        worst = 0  # the data goes to its slot, counted when the slots are laid out
    elif not compressed:
        worst = nbytes
    else:
        worst = nbytes + nbytes // 100 + 1024
    return worst + sum(len(t.value) + 2 for t in extra) + 1024


def check_classic_room(
    appender: Appender, planes: Coord, itemsize: int, inflight: int, bound: int
) -> None:
    """Refuse a frame that would push a classic TIFF past 4 GiB, final chain included."""
    if appender.layout.bigtiff:
        return
    nplanes = planes[0] * planes[1] * planes[2]
    frame = math.prod(appender.frame_shape or (0,)) * itemsize
    final = nplanes * 512 + _FINAL_RESERVE + frame + 2048
    slots = nplanes * frame if appender.slots is not None and appender.slots_at is None else 0
    projected = appender.end + slots + inflight + bound + final
    if projected > appender.layout.max_offset:
        msg = (
            f"the 'imagej' profile is a classic TIFF of at most 4 GiB and this frame would "
            f"not fit in {appender.io.path}; it holds every frame saved before. Use "
            "profile='bigtiff' for larger data"
        )
        raise ProfileError(msg)
