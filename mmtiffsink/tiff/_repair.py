"""Finish a file left unfinished by a killed process or a failed writer."""

from __future__ import annotations

import json
import math
import os
import re
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, final

import numpy as np

from mmtiffsink._values import positive

from ..errors import ConfigError, DatasetError, MissingFramesWarning, no_such_file
from ..limits import MAX_PLANES, MAX_SERIES
from ._appender import pack, rows_per_strip
from ._codecs import Codec
from ._colors import color_lut, colormap_lut
from ._file import IJTiffFile
from ._frames import RGB_SAMPLES, Key
from ._io import FileIO
from ._lock import FileMark, take
from ._ome import StageLabel
from ._profiles import Profile
from ._series import parse_label
from ._settings import Settings
from ._tags import _TYPES, PLANE_TAG, SERIES_TAG, SETTINGS_TAG, Layout, decode_values
from .format import Ifd, IfdWalk

__all__ = ["RepairReport", "repair"]

_CODECS = frozenset(Codec.TIFF_CODES.values())
_KINDS = {1: "u", 2: "i", 3: "f"}


@final
@dataclass(frozen=True)
class RepairReport:
    """What :func:`repair` found and did."""

    path: Path
    frames: int
    """Frames recovered from the file."""
    shape: tuple[int, int, int]
    """The (C, Z, T) of the finished hyperstack (of its first series)."""
    blank_planes: int
    """Planes that were never written and now hold a blank frame."""
    already_finished: bool
    """The file was already a finished hyperstack and was left unchanged."""
    series: int = 1
    """Series (OME Images) of the finished file."""


_MAX_TAGS = 1000
"""Entries an IFD may hold before it is taken as corrupt (the writer writes about 20)."""
_SPARSE_LIMIT = 64  # planes per frame found before a file's plane tags are taken as damaged
_SPARSE_SLACK = 100_000
_INTEGER_TYPES = frozenset({1, 3, 4, 9, 16})  # BYTE, SHORT, LONG, SLONG (planes), LONG8
# the types the writer gives the tags repair reads (a damaged type is damage, not a value: a
# SHORT flipped to BYTE reads as a number here but as bytes in tifffile, so the repaired file
# would carry the damage on)
_TYPES_OF = {
    256: frozenset({3, 4}),  # ImageWidth: SHORT or LONG
    257: frozenset({3, 4}),
    258: frozenset({3}),  # BitsPerSample
    259: frozenset({3}),  # Compression
    273: frozenset({4, 16}),  # StripOffsets: LONG or LONG8
    277: frozenset({3}),  # SamplesPerPixel
    279: frozenset({4, 16}),
    317: frozenset({3}),  # Predictor
    339: frozenset({3}),  # SampleFormat
    262: frozenset({3}),  # PhotometricInterpretation
    278: frozenset({3, 4}),  # RowsPerStrip
    284: frozenset({3}),  # PlanarConfiguration
}


def _corrupt(path: Path, offset: int, what: str) -> DatasetError:
    return DatasetError(f"{path}: corrupt TIFF: the IFD at byte {offset} {what}")


class _Chain:
    """What the IFD chain of an unfinished file holds, every value checked against the file."""

    def __init__(self, path: Path, io: FileIO, size: int, bigtiff: bool) -> None:
        self.path, self.io, self.size = path, io, size
        self.first: dict[int, tuple[int, bytes]] | None = None
        self.lay = Layout(bigtiff=bigtiff)
        self.planes: dict[Key, tuple[int, int]] = {}
        self.arrival: list[Key] = []
        self.labels: dict[int, tuple[str | None, StageLabel | None]] = {}
        self.settings: dict[str, Any] | None = None
        self.link_pos = self.lay.first_ifd_pointer
        self.cut_at = 0
        """The first frame of a file cut short whose pixels run past its end (0: none)."""
        # width, height, bits, codec, kind, strips, predictor, samples per pixel
        self.frame: tuple[int, ...] | None = None

    def read(self, offset: int, nbytes: int) -> bytes:
        """``nbytes`` at ``offset``, checked against the file's size before allocating.

        Every count and offset read from the file reaches the disk through here.
        """
        if offset < 0 or nbytes < 0 or offset + nbytes > self.size:
            msg = (
                f"{self.path}: truncated or corrupt TIFF: {nbytes} bytes at offset {offset} "
                f"run past the end of the file ({self.size} bytes)"
            )
            raise DatasetError(msg)
        data = self.io.read(offset, nbytes)
        if len(data) != nbytes:
            msg = f"{self.path}: the file shrank while it was read"
            raise DatasetError(msg)
        return data

    def ifd(self, ifd: Ifd) -> dict[int, tuple[int, bytes]]:
        """Tag code -> (field type, value bytes) of one IFD the walker found whole."""
        values: dict[int, tuple[int, bytes]] = {}
        for code, entry in ifd.entries.items():
            if entry.dtype not in _TYPES:
                raise _corrupt(
                    self.path, ifd.offset, f"gives tag {code} the unknown type {entry.dtype}"
                )
            raw = entry.field[: entry.nbytes] if entry.inline else None
            if raw is None:
                (at,) = struct.unpack("<Q" if self.lay.bigtiff else "<I", entry.field)
                raw = self.read(at, entry.nbytes)  # checked against the size before reading
            values[code] = (entry.dtype, raw)
        return values

    def ints(self, values: dict[int, tuple[int, bytes]], code: int, offset: int) -> list[int]:
        """The integer values of a tag the writer always writes."""
        if code not in values:
            raise _corrupt(self.path, offset, f"lacks tag {code}")
        dtype, raw = values[code]
        if dtype not in _TYPES_OF.get(code, _INTEGER_TYPES) or not raw:
            raise _corrupt(self.path, offset, f"holds tag {code} of type {dtype}")
        return [int(v) for v in decode_values(dtype, raw)]

    def add(self, values: dict[int, tuple[int, bytes]], offset: int, ifd_size: int) -> None:
        """Check one frame's IFD against the first and the file, then record its plane."""
        if PLANE_TAG not in values:
            msg = f"{self.path} has an IFD without mmtiffsink's plane tag; it was not written by us"
            raise DatasetError(msg)
        coord = self.ints(values, PLANE_TAG, offset)
        if (
            len(coord) not in (3, 4)
            or max(abs(v) for v in coord[:3]) >= MAX_PLANES
            or (len(coord) == 4 and not 0 < coord[3] < MAX_SERIES)
        ):
            raise _corrupt(self.path, offset, f"holds the plane {coord}")
        key = tuple(coord)
        if key in self.planes:
            raise _corrupt(self.path, offset, f"repeats the plane (c, z, t[, s]) = {key}")
        for code in (262, 278, 284):  # carried over as they are: their type must be right
            if code in values and values[code][0] not in _TYPES_OF[code]:
                raise _corrupt(self.path, offset, f"holds tag {code} of type {values[code][0]}")
        one = [self.ints(values, code, offset) for code in (256, 257, 259)]
        if any(len(v) != 1 for v in one):
            raise _corrupt(self.path, offset, "holds several values in a one-value tag")
        width, height, codec = (v[0] for v in one)
        samples = self.ints(values, 277, offset)[0] if 277 in values else 1
        # BitsPerSample and SampleFormat: one value per sample, all the same (an RGB frame)
        per_sample = [self.ints(values, 258, offset)]
        if 339 in values:
            per_sample.append(self.ints(values, 339, offset))
        if any(len(v) != samples or len(set(v)) != 1 for v in per_sample):
            raise _corrupt(self.path, offset, f"describes samples unlike each other: {per_sample}")
        bits = per_sample[0][0]
        kind = per_sample[1][0] if 339 in values else 1
        predictor = self.ints(values, 317, offset)[0] if 317 in values else 1
        strips, counts = self.ints(values, 273, offset), self.ints(values, 279, offset)
        frame = (width, height, bits, codec, kind, len(strips), predictor, samples)
        if self.frame is None:
            self._check_frame(frame, offset)
            self.frame = frame
        elif frame != self.frame:
            raise _corrupt(self.path, offset, f"describes a frame unlike the first: {frame}")
        if len(counts) != len(strips) or any(
            o + n > self.size or n <= 0 for o, n in zip(strips, counts, strict=False)
        ):
            raise _corrupt(self.path, offset, "has pixel strips past the end of the file")
        if codec == 1 and sum(counts) != width * height * samples * (bits // 8):
            raise _corrupt(self.path, offset, f"stores {sum(counts)} bytes of raw pixels")
        if SETTINGS_TAG in values and self.settings is None:
            self.settings = _parse_settings(self.path, values[SETTINGS_TAG][1])
        if SERIES_TAG in values:  # the series' name and stage label; the last one wins
            label = parse_label(values[SERIES_TAG][1])
            if label is not None:
                self.labels[key[3] if len(key) > 3 else 0] = label
        if self.first is None:
            self.first = values
        self.planes[key] = (offset, ifd_size)
        self.arrival.append(key)

    def _check_frame(self, frame: tuple[int, ...], offset: int) -> None:
        width, height, bits, codec, kind, nstrips, predictor, samples = frame
        if not (0 < width < 1 << 31 and 0 < height < 1 << 31) or codec not in _CODECS:
            raise _corrupt(self.path, offset, f"describes a {width}x{height} frame, codec {codec}")
        if samples not in (1, RGB_SAMPLES) or (samples > 1 and (kind != 1 or bits > 16)):
            what = f"{samples} samples per pixel of {bits}-bit pixels of kind {kind}"
            raise _corrupt(self.path, offset, f"describes {what}")
        if kind not in _KINDS or bits not in (8, 16, 32, 64) or (kind == 3 and bits < 32):
            raise _corrupt(self.path, offset, f"describes {bits}-bit pixels of kind {kind}")
        if predictor not in (1, 2) or (predictor == 2 and (codec == 1 or kind == 3)):
            what = f"predictor {predictor} for codec {codec}, pixels of kind {kind}"
            raise _corrupt(self.path, offset, f"describes {what}")
        if nstrips not in (1, 2):
            raise _corrupt(self.path, offset, f"has {nstrips} strips")

    def shape_check(self) -> None:
        """The hyperstack the planes and settings ask for stays within MAX_PLANES."""
        by_series: dict[int, list[Key]] = {}
        for key in self.planes:
            by_series.setdefault(key[3] if len(key) > 3 else 0, []).append(key)
        extents = [
            [1 + max(p[i] for p in keys) - min(0, *(p[i] for p in keys)) for i in range(3)]
            for keys in by_series.values()
        ]
        shape = (self.settings or {}).get("shape")
        if shape is not None:
            if any(not 0 <= p[i] < shape[i] for p in self.planes for i in range(3)):
                msg = f"{self.path}: corrupt TIFF: a plane lies outside the shape {shape}"
                raise DatasetError(msg)
            extents = [shape] * len(by_series)
        total = sum(math.prod(extent) for extent in extents)
        if len(extents) == 1:
            dims = f"C, Z, T = {tuple(extents[0])}"
        else:
            dims = f"C x Z x T summed over {len(extents)} series"
        if total > MAX_PLANES:
            msg = (
                f"{self.path}: corrupt TIFF: its planes ask for a hyperstack of "
                f"{total} planes ({dims}), more than {MAX_PLANES}"
            )
            raise DatasetError(msg)
        frames = len(self.planes)
        if shape is None and total > _SPARSE_LIMIT * frames + _SPARSE_SLACK:
            # a writer fills planes as they come; a few frames spread over millions of planes
            # means damaged plane tags, and finishing would write millions of blank planes
            msg = (
                f"{self.path}: corrupt TIFF: {frames} frames span a hyperstack of "
                f"{total:,} planes ({dims}); the frames' plane "
                "tags look damaged, so the file was left as it is"
            )
            raise DatasetError(msg)


def _is_size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_positive(value: Any) -> bool:
    return positive(value) is not None


def _is_texts(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(x, str) for x in value)


_SETTING_CHECKS: dict[str, Callable[[Any], bool]] = {
    "shape": lambda v: isinstance(v, list) and len(v) == 3 and all(map(_is_size, v)),
    "pxsize": _is_positive,
    "deltaz": _is_positive,
    "timeinterval": _is_positive,
    "colors": _is_texts,
    "channel_names": _is_texts,
    "colormap": lambda v: isinstance(v, str),
    "comment": lambda v: isinstance(v, str),
    "image_name": lambda v: isinstance(v, str),
}
"""The settings ``_resume`` uses -> the check of a value that is not None."""


def _parse_settings(path: Path, raw: bytes) -> dict[str, Any]:
    """The writer's settings JSON (tag 65422), each value checked as ``_resume`` will use it."""
    bad = DatasetError(f"{path}: corrupt TIFF: mmtiffsink's settings (tag {SETTINGS_TAG})")
    try:
        settings = json.loads(raw.rstrip(b"\0").decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise bad from None
    if not isinstance(settings, dict):
        raise bad

    for key, value in settings.items():
        check = _SETTING_CHECKS.get(key)
        if value is not None and check is not None and not check(value):
            raise bad
    try:
        for color in settings.get("colors") or ():
            color_lut(color)
        if settings.get("colormap") is not None:
            colormap_lut(settings["colormap"])
    except (ValueError, TypeError):
        raise bad from None
    return settings


def _walk_frames(
    path: Path, chain: _Chain, walk: IfdWalk, *, cut_short: bool
) -> RepairReport | None:
    """Record every frame of ``walk``; a report if the file is already finished and whole.

    ``cut_short``: the walk follows the frames' own chain of a finished file whose end was
    lost; a frame whose pixels run past the end is where the file was cut (the walk stops).
    """
    frames = iter(walk)
    for ifd in frames:
        values = chain.ifd(ifd)
        desc = values.get(270)
        if not chain.planes and desc is not None and desc[1].startswith((b"ImageJ=", b"<?xml")):
            for _ in frames:  # the rest of its chain: a finished file is whole
                pass
            if walk.stop == "end":
                return RepairReport(path, walk.count, (0, 0, 0), 0, True)
            if PLANE_TAG not in values:  # another writer's file, damaged: nothing to recover
                msg = (
                    f"{path}: damaged ({_damage(walk)}), and not written by mmtiffsink (its "
                    "frames carry no plane coordinates): repair recovers only mmtiffsink's files"
                )
                raise DatasetError(msg)
            chain.planes.clear()  # its final chain is damaged: repair from the frames' chain
            return None
        try:
            chain.add(values, ifd.offset, ifd.size)
        except DatasetError:
            if not cut_short:
                raise
            chain.cut_at = ifd.offset  # the pixels of this frame and those after it are lost
            return None
        chain.link_pos = ifd.link_pos
    return None


def _damage(walk: IfdWalk) -> str:
    if walk.stop == "corrupt":
        return walk.problem
    return f"its IFD chain breaks after {walk.count} IFDs: cut short"


def _read_first(path: Path, lay: Layout) -> int:
    """The header's first-IFD pointer."""
    with open(path, "rb") as fh:
        fh.seek(lay.first_ifd_pointer)
        raw = fh.read(lay.offset_size)
    return int.from_bytes(raw, "little") if len(raw) == lay.offset_size else 0


_SCAN_CHUNK = 1 << 20


def _first_frame(path: Path, io: FileIO, size: int, lay: Layout) -> int | None:
    """The IFD of the first frame our writer appended (the head of the frames' own chain).

    A writer appends each frame's pixels, then its IFD, then links it, so the first IFD in
    the file carrying mmtiffsink's plane tag (65421) is the first frame's. Found by scanning
    for that tag's entry (bounded chunks), each hit checked as a whole IFD inside the file.
    """
    pattern = re.compile(  # code, type LONG or SLONG, count 3 or 4 (little-endian)
        re.escape(PLANE_TAG.to_bytes(2, "little"))
        + b"[\x04\x09]\x00[\x03\x04]"
        + b"\x00" * (7 if lay.bigtiff else 3)
    )
    entry = 20 if lay.bigtiff else 12
    count_size = 8 if lay.bigtiff else 2
    at = lay.header_size
    with open(path, "rb") as fh:
        while at < size:
            chunk = io.read(at, min(_SCAN_CHUNK + entry, size - at))
            for hit in pattern.finditer(chunk):
                pos = at + hit.start()
                for k in range(_MAX_TAGS):
                    ifd_at = pos - count_size - k * entry
                    if ifd_at < lay.header_size:
                        break
                    if ifd_at % 2 == 0 and _is_frame_ifd(fh, size, ifd_at, k):
                        return ifd_at
            at += _SCAN_CHUNK
    return None


def _is_frame_ifd(fh: Any, size: int, ifd_at: int, index: int) -> bool:
    """Whether a whole IFD of our frame starts at ``ifd_at``, its entry ``index`` the plane tag."""
    try:
        walk = IfdWalk(fh, size, max_entries=_MAX_TAGS, first=ifd_at)
        ifd = next(iter(walk), None)
    except (ValueError, struct.error):
        return False
    if ifd is None or len(ifd.entries) <= index:
        return False
    codes = list(ifd.entries)
    return (
        codes[index] == PLANE_TAG
        and codes == sorted(codes)
        and all(code in ifd.entries for code in (256, 257, 258, 273, 279))
    )


def _relink_header(path: Path, lay: Layout, first: int) -> None:
    """Point the header at the frames' own chain (the final chain it named is lost)."""
    io = FileIO(path, "update")
    try:
        io.write([lay.pack_offset(first)], lay.first_ifd_pointer)
        io.sync()
    finally:
        io.close()
    warnings.warn(
        f"{path} was finished, then cut short (its final IFD chain is lost): its frames are "
        "recovered from their own chain",
        MissingFramesWarning,
        stacklevel=3,
    )


def _cut_chain(path: Path, chain: _Chain, dangling: int) -> None:
    """End the chain at its last readable IFD, so the file is a valid TIFF from now on."""
    io = FileIO(path, "update")
    try:
        io.write([chain.lay.pack_offset(0)], chain.link_pos)
        io.sync()
    finally:
        io.close()
    warnings.warn(
        f"the IFD chain of {path} points past the end of the file (to byte {dangling}) after "
        f"{len(chain.planes)} frames: the file was cut short, the frames after them are lost",
        MissingFramesWarning,
        stacklevel=3,
    )


def repair(path: str | os.PathLike[str]) -> RepairReport:
    """Turn a file left by a killed process into the finished hyperstack, in place.

    Every frame whose IFD was linked when the process died is kept, with its (c, z, t) (and
    series, in an OME-TIFF of several); planes never written are filled with a blank frame
    (with a warning) and the ImageJ description (or OME-XML, with each series' name and stage
    label) is written from the settings stored in the file. A finished file is left unchanged.

    Raises
    ------
    DatasetError
        The file is not a TIFF written by mmtiffsink, holds no frame, or is corrupt (every
        count, offset and value read from it is checked before it is used).

    """
    path = Path(path)
    mark = _take_mark(path)
    try:
        return _repair(path)
    finally:
        if mark is not None:
            mark.release()


def _take_mark(path: Path) -> FileMark | None:
    """Mark ``path`` as in use by this repair, or refuse if a writer that lives has it."""
    try:
        mark = take(path)
    except OSError:
        return None  # no record can be made beside it (a read-only folder): nothing to guard
    if isinstance(mark, FileMark):
        return mark
    if mark.state == "unknown":
        msg = (
            f"{path} may be being written on another host ({mark.writer()}), where this "
            f"process cannot ask: repair refused. If that writer has stopped, delete "
            f"{mark.path} and run repair again"
        )
    else:
        msg = (
            f"{path} is being written ({mark.writer()}): repair refused, it would damage "
            "the acquisition. Let the writer close the file (a closed file is finished); "
            f"if its process is stuck, end it: its lock record {mark.path.name} then goes stale "
            "and repair proceeds"
        )
    raise DatasetError(msg)


def _repair(path: Path) -> RepairReport:
    try:
        io = FileIO(path, "read")
    except FileNotFoundError:
        raise no_such_file(path) from None
    except OSError as exc:
        msg = f"cannot open {path}: {exc.strerror or exc}"
        raise DatasetError(msg) from exc
    try:
        size = io.size()
        head = io.read(0, 16)
        if len(head) < 8 or head[:2] != b"II" or head[2:4] not in (b"*\0", b"+\0"):
            msg = f"{path} is not a little-endian TIFF written by mmtiffsink"
            raise DatasetError(msg)
        bigtiff = head[2:4] == b"+\0"
        chain = _Chain(path, io, size, bigtiff)
        lay = chain.lay
        if len(head) < lay.header_size:
            msg = f"{path}: truncated TIFF: the file ends inside its header"
            raise DatasetError(msg)
        dangling = 0
        start: int | None = None  # the frames' own chain, when the final one is lost
        with open(path, "rb") as fh:
            while True:
                try:
                    walk = IfdWalk(
                        fh, size, max_ifds=MAX_PLANES, max_entries=_MAX_TAGS, first=start
                    )
                except ValueError:
                    msg = f"{path}: corrupt TIFF: its header is damaged"
                    raise DatasetError(msg) from None
                final = _walk_frames(path, chain, walk, cut_short=start is not None)
                if final is not None:
                    return final
                if chain.planes or start is not None or walk.stop not in ("past_end", "end"):
                    break
                # no frame in the chain the header names: a finished file cut short (the final
                # chain, written last at its end, is lost), or one whose final chain is damaged
                start = _first_frame(path, io, size, lay)
                if start is None:
                    break
        if walk.stop == "corrupt":
            msg = f"{path}: corrupt TIFF: {walk.problem}"
            raise DatasetError(msg)
        if walk.stop == "past_end":  # a link past the end of a truncated file: cut it there
            dangling = walk.dangling
        dangling = chain.cut_at or dangling
    finally:
        io.close()
    if not chain.planes or chain.frame is None or chain.first is None:
        if size <= lay.header_size or _read_first(path, lay) >= size:
            msg = (
                f"{path}: truncated TIFF: its first IFD lies past the end of the file ({size} "
                "bytes) and no frame of mmtiffsink was found in it: nothing to repair"
            )
        else:
            msg = f"{path} holds no frame: nothing to repair"
        raise DatasetError(msg)
    if start is not None:  # the header names the frames' own chain again
        _relink_header(path, lay, start)
    chain.shape_check()
    profile = _profile(bigtiff, chain.settings)
    if not profile.ome and any(len(key) > 3 for key in chain.planes):
        msg = f"{path}: corrupt TIFF: frames of several series in a {profile.name!r} file"
        raise DatasetError(msg)
    if dangling:
        _cut_chain(path, chain, dangling)
    width, height, bits, compression, kind, _, predictor, samples = chain.frame
    dtype = np.dtype(f"<{_KINDS[kind]}{bits // 8}")
    try:
        codec = Codec.from_tiff(compression, predictor)
    except ConfigError:
        msg = f"{path}: unexpected compression {compression}"
        raise DatasetError(msg) from None
    stored = Settings.from_json(chain.settings or {})
    frame_shape = (height, width) if samples == 1 else (height, width, samples)
    frame_bytes = height * width * samples * dtype.itemsize
    slots_at = _slots_start(chain.first, chain.planes, stored, codec, chain.lay, frame_bytes)
    tif = _resume(
        path,
        profile=profile,
        labels=chain.labels,
        frame_shape=frame_shape,
        dtype=dtype,
        codec=codec,
        settings=stored,
        planes=chain.planes,
        arrival=chain.arrival,
        link_pos=chain.link_pos,
        end=size,
        slots_at=slots_at,
    )
    tif.close()
    shapes = list(tif.series_shapes.values())
    return RepairReport(path, len(chain.planes), shapes[0], tif.blank_planes, False, len(shapes))


def _profile(bigtiff: bool, settings: dict[str, Any] | None) -> Profile:
    """The profile the file was written with: its container, and the stored name."""
    if not bigtiff:
        return Profile.get("imagej")
    name = (settings or {}).get("profile")
    return Profile.get("ome" if name == "ome" else "bigtiff")


def _resume(
    path: Path,
    *,
    profile: Profile,
    labels: dict[int, tuple[str | None, StageLabel | None]],
    frame_shape: tuple[int, ...],
    dtype: np.dtype[Any],
    codec: Codec,
    settings: Settings,
    planes: dict[Key, tuple[int, int]],
    arrival: list[Key],
    link_pos: int,
    end: int,
    slots_at: int | None,
) -> IJTiffFile:
    """Re-open a file left unfinished so that its ``close`` finishes it."""
    tif = IJTiffFile.__new__(IJTiffFile)
    tif._profile = profile
    tif._layout = Layout(bigtiff=profile.bigtiff)
    tif._codec = codec
    tif._dtype = dtype
    tif._cast = "exact"
    tif._max_planes = MAX_PLANES
    tif._negative = any(min(coord) < 0 for coord in planes)
    tif._settings = settings
    tif._extratags = ()
    tif._max_inflight = None
    tif._keep_up = False
    tif.path = Path(path)
    slots = settings.shape if slots_at is not None else None
    tif._setup(FileIO(tif.path, "update"), end=end, link_pos=link_pos, slots=slots)
    app = tif._app
    app.slots_at = slots_at
    app.frame_shape = frame_shape
    app.rows_per_strip = rows_per_strip(
        frame_shape[0], compressed=codec.compressed, slots=slots is not None
    )
    app.planes = {coord: pack(*where) for coord, where in planes.items()}
    app.arrival = list(arrival)
    for coord in planes:
        tif._w.extend(coord)
    for series, (name, stage) in labels.items():
        tif._series.set_label(series, name, stage)
    return tif


def _slots_start(
    first: dict[int, tuple[int, bytes]],
    planes: dict[Key, tuple[int, int]],
    settings: Settings,
    codec: Codec,
    lay: Layout,
    frame_bytes: int,
) -> int | None:
    """Where the plane slots of an uncompressed imagej-profile file start (None: no slots).

    Such files keep one slot per plane, in plane order, laid out at the first frame; the
    first IFD's single strip and its (c, z, t) give the start.
    """
    shape = settings.shape
    if lay.bigtiff or codec.compressed or shape is None or 273 not in first:
        return None
    offsets = decode_values(*first[273])
    if len(offsets) != 1:
        return None
    c, z, t = (int(v) for v in decode_values(*first[PLANE_TAG]))
    index = c + shape[0] * (z + shape[1] * t)
    start = int(offsets[0]) - index * frame_bytes
    if start < lay.header_size or any(
        not (0 <= p[0] < shape[0] and 0 <= p[1] < shape[1] and 0 <= p[2] < shape[2]) for p in planes
    ):
        return None
    return start
