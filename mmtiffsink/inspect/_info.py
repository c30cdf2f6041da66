"""What a reader will see in a TIFF: dimensions, calibration, codec, storage and state.

:func:`file_info` reads a file's IFDs with tifffile (the reader users have), never its pixels,
so it is fast on files of many gigabytes. It works on any TIFF; for files written by mmtiffsink
it also reads the writer's private tags (65421: a frame's (c, z, t); 65422: the settings JSON)
to tell whether the writer finished the file (see :func:`mmtiffsink.repair`).
:func:`summary_table` formats many results as one table, for end-of-job summaries.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, final

import numpy as np
import tifffile

from mmtiffsink._text import xml_safe
from mmtiffsink._values import LENGTH_UM as _LENGTH_UM
from mmtiffsink._values import RESOLUTION_UNIT_UM as _RESOLUTION_UNIT_UM
from mmtiffsink._values import TIME_S as _TIME_S
from mmtiffsink._values import positive
from mmtiffsink.errors import DatasetError, no_such_file
from mmtiffsink.limits import MAX_PLANES, MAX_SERIES
from mmtiffsink.tiff import OmeImageFacts, parse_ome
from mmtiffsink.tiff.format import SETTINGS_TAG, IfdWalk, Mark, frame_tags, in_use

from ._tifflog import tifffile_log

__all__ = ["FileInfo", "SeriesInfo", "file_info", "summary_table"]

_CODEC_NAMES = {
    "NONE": "none",
    "ADOBE_DEFLATE": "deflate",
    "DEFLATE": "deflate",
    "ZSTD": "zstd",
}
_CHANNEL_NAME = re.compile(r"^\s*Channel(\d+)Name\s*=\s*(.*?)\s*$", re.MULTILINE)


@final
@dataclass(frozen=True)
class SeriesInfo:
    """One image series of a file of several (an OME Image: e.g. one position)."""

    name: str
    shape: dict[str, int]
    """Axis -> size, as :attr:`FileInfo.shape`."""


@final
@dataclass(frozen=True)
class FileInfo:
    """What a reader will see in one TIFF file, read from its IFDs only.

    Calibration is in micrometres and seconds; ``None`` where the file has none. For a file
    left unfinished by a killed mmtiffsink writer (``finished`` False), ``shape`` is what a
    reader sees now (a plain stack of the frames written), while calibration and channel
    names are those stored in the writer's settings, which :func:`mmtiffsink.repair` writes.
    """

    path: Path
    size_bytes: int
    """File size on disk."""
    profile: str
    """``"bigtiff"``, ``"imagej"`` (classic ImageJ hyperstack), ``"ome"`` (an OME-TIFF, ours
    or another writer's) or ``"tiff"`` (anything else)."""
    codec: str
    """``"zstd"``, ``"deflate"``, ``"none"`` or tifffile's name of another compression, then
    ``+predictor`` for horizontal differencing (``+p3``: another predictor's number)."""
    dtype: str
    """Numpy dtype name of the pixels."""
    shape: dict[str, int]
    """Axis -> size as a reader sees it, e.g. ``{"T": 3, "Z": 5, "C": 2, "Y": 512, "X": 512}``."""
    planes: int
    """Image planes (C*Z*T for a hyperstack; the IFDs of the file)."""
    frames_stored: int
    """Distinct pixel blocks actually stored (identical frames are stored once)."""
    raw_bytes: int
    """Bytes of the decoded pixels: planes * Y * X * itemsize (* samples)."""
    pixel_size_um: float | None
    z_step_um: float | None
    interval_s: float | None
    channel_names: list[str] = field(default_factory=list)
    frames_uncompressed: int = 0
    """Stored frames of a compressed file no smaller than raw: frames ``keep_up`` stored
    uncompressed, and frames the codec could not make smaller (noise)."""
    finished: bool = True
    """False for a file left by a killed writer (``mmtiffsink repair`` finishes it)."""
    written_by: str | None = None
    """``"mmtiffsink"`` when its settings tag is present, else the Software tag, if any."""
    series: list[SeriesInfo] = field(default_factory=list)
    """The image series of a file of several (an OME-TIFF of several positions), in order;
    empty for one. ``shape`` is then the first one's; ``planes`` counts every series'."""
    rgb: bool = False
    """The frames are RGB colour images (Photometric RGB, three samples per pixel: ``S`` in
    ``shape``), not grey ones."""
    in_use: bool = False
    """True while a writer that lives has the file open (its lock record ``NAME.tif.lock``):
    the file is growing, and what is shown is what its writer had linked when it was read."""
    writer: str = ""
    """Who marks the file as in use, or last did (``pid 12 on host x since ...``), if known."""
    writer_state: str = ""
    """The lock record's state: ``"live"``, ``"stale"`` (its writer stopped), ``"unknown"``
    (a record of another host, where this process cannot ask), or ``""`` (no record)."""

    @property
    def compression_ratio(self) -> float:
        """Decoded pixel bytes per byte on disk (``raw_bytes / size_bytes``)."""
        return self.raw_bytes / self.size_bytes if self.size_bytes else math.inf

    def format(self) -> str:
        """A readable multi-line block for the terminal."""
        dims = " ".join(f"{k}={v}" for k, v in self.shape.items())
        maker = f", written by {self.written_by}" if self.written_by else ""
        rgb = " RGB" if self.rgb else ""
        stored = f"{self.frames_stored} stored"
        if self.frames_stored < self.planes:
            stored += " (identical frames stored once)"
        if self.frames_uncompressed:
            stored += (
                f", {self.frames_uncompressed} of them not smaller than raw "
                "(stored uncompressed by keep_up, or incompressible)"
            )
        lines = [
            str(self.path),
            f"  format       {self.profile}, {self.codec}, {self.dtype}{rgb}{maker}",
            f"  dimensions   {dims}",
            f"  planes       {self.planes}, {stored}",
            f"  calibration  {_calibration_text(self)}",
        ]
        if self.channel_names:
            lines.append(f"  channels     {', '.join(self.channel_names)}")
        if self.series:
            each = ", ".join(
                f"{s.name or i} ({_dims_short(s.shape, frame=False)})"
                for i, s in enumerate(self.series)
            )
            lines.append(f"  series       {len(self.series)}: {each}")
        lines.append(
            f"  size         {_size(self.size_bytes)} on disk, {_size(self.raw_bytes)} of pixels, "
            f"ratio {self.compression_ratio:.2f}"
        )
        lines.append(f"  state        {self.state_text()}")
        return "\n".join(lines)

    def state_text(self) -> str:
        """One line: finished, being written, or unfinished and what to do about it."""
        if self.in_use:
            return f"being written, {self.planes} frames so far ({self.writer})"
        if self.finished:
            return "finished"
        if self.writer_state == "unknown":
            return (
                f"UNFINISHED, or being written on another host ({self.writer}): if that "
                "writer has stopped, delete the lock record "
                f"{self.path.name}.lock, then run `mmtiffsink repair {self.path}`"
            )
        stopped = f"its writer stopped: {self.writer}" if self.writer else "its writer was killed"
        return f"UNFINISHED ({stopped}): run `mmtiffsink repair {self.path}`"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every field plus ``compression_ratio``."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        ratio = self.compression_ratio
        out.update(
            path=str(self.path),
            shape=dict(self.shape),
            channel_names=list(self.channel_names),
            compression_ratio=ratio if math.isfinite(ratio) else None,
            series=[{"name": s.name, "shape": dict(s.shape)} for s in self.series],
        )
        return out


def _num(value: float) -> str:
    return f"{value:.6g}"


def _calibration_text(info: FileInfo) -> str:
    parts = []
    if info.pixel_size_um is not None:
        parts.append(f"pixel {_num(info.pixel_size_um)} µm")
    if info.z_step_um is not None:
        parts.append(f"z step {_num(info.z_step_um)} µm")
    if info.interval_s is not None:
        parts.append(f"interval {_num(info.interval_s)} s")
    return ", ".join(parts) if parts else "none"


def _size(nbytes: int) -> str:
    value = float(nbytes)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError  # pragma: no cover


# ------------------------------------------------------------------------------ reading
def file_info(path: str | os.PathLike[str]) -> FileInfo:
    """Describe a TIFF file as a reader will see it, reading only its IFDs.

    Parameters
    ----------
    path
        A TIFF file: any writer's, finished or left by a killed mmtiffsink writer.

    Returns
    -------
    FileInfo
        Dimensions, dtype, profile, codec, calibration, channel names, planes and frames
        stored, sizes and whether the file is finished.

    Raises
    ------
    DatasetError
        The file is missing, unreadable, not a TIFF, or corrupt/truncated (an IFD or pixel
        data past the end of the file).

    """
    p = Path(path)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise no_such_file(p) from None
    except OSError as exc:
        msg = f"{p}: cannot read it ({exc.strerror or exc})"
        raise DatasetError(msg) from None
    if p.is_dir():
        msg = f"{p}: is a directory, not a TIFF file"
        raise DatasetError(msg)
    if size == 0:
        msg = f"{p}: the file is empty, not a TIFF file"
        raise DatasetError(msg)
    for attempt in range(3):
        mark = in_use(p)  # before reading: a live writer's file is growing, not corrupt
        try:
            return _read(p, mark)
        except _Finished:  # its writer finished the file while it was read: read it again
            if attempt == 2:
                raise DatasetError(f"{p}: the file kept changing while it was read") from None
    raise AssertionError  # pragma: no cover


class _Finished(Exception):
    """The file's writer switched it to its final chain between the walk and tifffile."""


def _read(p: Path, mark: Mark | None) -> FileInfo:
    with tifffile_log() as records:
        try:
            with open(p, "rb") as fh:
                chain = _walk(fh, p, mark)
            with tifffile.TiffFile(p) as tif:
                return _inspect(tif, p, chain, mark, records)
        except (DatasetError, _Finished):
            raise
        except tifffile.TiffFileError as exc:
            msg = f"{p}: corrupt or truncated TIFF ({_first_line(str(exc))})"
            raise DatasetError(msg) from exc
        except struct.error as exc:
            msg = f"{p}: corrupt or truncated TIFF (the file ends inside its header or an IFD)"
            raise DatasetError(msg) from exc
        except RecursionError as exc:
            msg = f"{p}: corrupt TIFF metadata (nested too deeply to read)"
            raise DatasetError(msg) from exc
        except MemoryError as exc:
            msg = f"{p}: corrupt TIFF metadata (it asks for more memory than there is)"
            raise DatasetError(msg) from exc
        except (ValueError, IndexError, KeyError, TypeError, EOFError) as exc:
            msg = f"{p}: corrupt or truncated TIFF ({_cause(exc)})"
            raise DatasetError(msg) from exc
        except OSError as exc:
            msg = f"{p}: cannot read it ({exc.strerror or exc})"
            raise DatasetError(msg) from exc


@dataclass
class _Chain:
    """What the IFD walk found: IFDs linked, where it stopped, an unfinished file's frames."""

    count: int
    size: int
    """The file's size when the walk ended (a growing file's, re-checked)."""
    unfinished: bool
    tagged: list[tuple[tuple[int, ...] | None, str | None]]
    ome: list[OmeImageFacts] = field(default_factory=list)
    """The Images of the first IFD's OME-XML (none: not an OME-TIFF, or unreadable XML)."""


def _walk(fh: Any, path: Path, mark: Mark | None) -> _Chain:
    """Walk the IFD chain (the one walker, ``tiff.format``) up to its last linked IFD."""
    try:
        walk = IfdWalk.growing(fh)
    except ValueError:
        msg = f"{path}: not a TIFF file (it does not start with a TIFF header)"
        raise DatasetError(msg) from None
    unfinished = False
    tagged: list[tuple[tuple[int, ...] | None, str | None]] = []
    description = b""
    for ifd in walk:
        if walk.count == 1:
            desc = ifd.entries.get(270)
            head = (walk.head(desc, 16) or b"") if desc is not None else b""
            unfinished = SETTINGS_TAG in ifd.entries and not head.startswith((b"ImageJ=", b"<?xml"))
            if desc is not None and head.lstrip().startswith(b"<"):
                description = walk.text(desc, max_bytes=_MAX_OME_XML) or b""
        if unfinished:
            tagged.append(frame_tags(walk, ifd))
    live = mark is not None and mark.state == "live"
    if walk.stop == "corrupt":
        msg = f"{path}: corrupt TIFF: {walk.problem}"
        raise DatasetError(msg)
    if walk.count == 0:
        if live and mark is not None:
            msg = f"{path}: being written ({mark.writer()}), no frame linked yet"
        else:
            msg = f"{path}: corrupt or truncated TIFF, no readable image (IFD) in the file"
        raise DatasetError(msg)
    if walk.stop == "past_end" and not live:
        msg = (
            f"{path}: corrupt or truncated TIFF, the IFD chain breaks after plane "
            f"{walk.count - 1}: it links to byte {walk.dangling}, past the end of the file "
            f"({walk.size} bytes)"
        )
        raise DatasetError(msg)
    chain = _Chain(walk.count, walk.size, unfinished, tagged if unfinished else [])
    if description.rstrip().endswith(b"OME>"):  # as tifffile tells an OME-TIFF
        chain.ome = _bounded_ome(path, description, chain)
    return chain


_MAX_OME_XML = 1 << 24
"""Bytes of OME-XML read for its facts (16 MiB: about 10**5 planes of our Plane elements)."""


def _bounded_ome(path: Path, xml: bytes, chain: _Chain) -> list[OmeImageFacts]:
    """The OME-XML's Images, refused when they declare more planes than the file can hold.

    tifffile sizes its series from the declared SizeC x SizeZ x SizeT (about 16 bytes a
    plane, and as many loop turns) before it looks at the file: 10**8 planes declared in a
    file of 704 bytes cost 1.6 GB. A plane of one file is an IFD of at least 8 bytes, so a
    file of N bytes holds at most N / 8 of them; a dataset of several files (a TiffData naming
    another file) is bounded by :data:`~mmtiffsink.limits.MAX_PLANES`.
    """
    facts = parse_ome(xml)
    declared = sum(image.planes for image in facts)
    external = any(image.external for image in facts)
    room = MAX_PLANES if external else min(MAX_PLANES, max(chain.count, chain.size // 8))
    if len(facts) > MAX_SERIES or declared > room:
        held = (
            f"more than {MAX_PLANES:,}"
            if room == MAX_PLANES
            else f"a file of {chain.size:,} bytes holds at most {room:,}"
        )
        msg = (
            f"{path}: corrupt OME-TIFF: its OME-XML declares {declared:,} planes in "
            f"{len(facts):,} image{'s' if len(facts) != 1 else ''} ({held})"
        )
        raise DatasetError(msg)
    return facts


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(4)
    except OSError:
        return b""


#: tifffile's own object names in its messages (``<tifffile.TiffPages @8>``, ``<TiffTag.fromfile>
#: raised TiffFileError('...')``): internals a reader of our message has no use for.
_TIFFFILE_NAME = re.compile(r"<(?:tifffile\.)?Tiff\w*(?:\.\w+)?(?: [^<>]*)?>\s*")
_RAISED = re.compile(r"^raised \w+\((['\"])(.*)\1\)$")


def _cause(exc: BaseException) -> str:
    """A reader's exception in a message: its type and :func:`_first_line` of its text."""
    return f"{type(exc).__name__}: {_first_line(str(exc))}"


def _first_line(text: str) -> str:
    """The first line of a reader's message, without tifffile's internal object names."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    line = _TIFFFILE_NAME.sub("", line).strip()
    wrapped = _RAISED.match(line)
    if wrapped is not None:
        line = _TIFFFILE_NAME.sub("", wrapped.group(2)).strip()
    return line[:200] or "no detail"


def _corrupt(path: Path, records: Sequence[logging.LogRecord], what: str) -> DatasetError:
    errors = [r.getMessage() for r in records if r.levelno >= logging.ERROR]
    detail = f": {_first_line(errors[0])}" if errors else ""
    return DatasetError(f"{path}: corrupt or truncated TIFF, {what}{detail}")


def _inspect(
    tif: tifffile.TiffFile,
    path: Path,
    chain: _Chain,
    mark: Mark | None,
    records: list[logging.LogRecord],
) -> FileInfo:
    pages = tif.pages
    first = pages.first if len(pages) else None
    if first is None or not isinstance(first, tifffile.TiffPage):
        raise _corrupt(path, records, "no readable image (IFD) in the file")

    settings = _settings(first)
    written_by: str | None
    if settings is not None:
        written_by = "mmtiffsink"
    else:
        software = first.software.strip() if first.software else ""
        written_by = software or None
    description = first.description or ""
    finished = settings is None or description.startswith(("ImageJ=", "<?xml"))
    ome = settings is not None and settings.get("profile") == "ome" and tif.is_ome
    live = mark is not None and mark.state == "live" and not finished
    if chain.unfinished and finished:
        raise _Finished
    size = max(chain.size, int(tif.filehandle.size))  # tifffile's view is the later one

    # Every IFD of the main chain the walk found linked, as light TiffFrames (data offsets
    # and byte counts only): a growing file's frames linked after the walk are not counted
    pages.useframes = True
    pages.set_keyframe(0)
    npages = chain.count
    keys: set[object] = set()
    raw_keys: set[object] = set()  # frames of a compressed file stored uncompressed
    whole_frames = settings is not None  # mmtiffsink stores a frame as one contiguous block
    frame_raw = math.prod(first.shape) * np.dtype(first.dtype or "uint8").itemsize
    compressed = first.compression != 1
    tagged = chain.tagged if not finished else []  # an unfinished file's frames
    for index in range(npages):
        try:
            page = pages[index]
        except RuntimeError:  # tifffile's "incompatible keyframe": not the first page's layout
            msg = (
                f"{path}: corrupt TIFF: IFD {index} does not have the width or strip layout of "
                "the first image (or the file holds images of several sizes, not one stack)"
            )
            raise DatasetError(msg) from None
        except IndexError:  # tifffile took the size before the walk re-checked it
            npages = index
            break
        if page is None:
            raise _corrupt(path, records, f"IFD {index} cannot be read")
        offsets = tuple(int(o) for o in page.dataoffsets)
        counts = tuple(int(c) for c in page.databytecounts)
        if offsets and counts and max(o + c for o, c in zip(offsets, counts, strict=False)) > size:
            msg = (
                f"{path}: truncated TIFF: the pixels of plane {index} run past the end of "
                f"the file ({size} bytes)"
            )
            raise DatasetError(msg)
        if offsets:
            keys.add(offsets[0] if whole_frames else offsets)
            if compressed and sum(counts) >= frame_raw:
                raw_keys.add(offsets[0])
    tagged = tagged[:npages]

    dtype = np.dtype(first.dtype) if first.dtype is not None else np.dtype("uint8")
    frame_shape = tuple(int(n) for n in first.shape)  # (Y, X) or (Y, X, S)
    frame_axes = first.axes  # e.g. "YX", "YXS", "SYX"

    ij = tif.imagej_metadata if tif.is_imagej else None
    shape: dict[str, int] | None = None
    planes = npages
    if ij is not None:
        c, z, t = (int(ij.get(k, 1) or 1) for k in ("channels", "slices", "frames"))
        images = int(ij.get("images") or npages)
        if c * z * t == images and images >= npages:  # as ImageJ and Bio-Formats see it
            shape = {"T": t, "Z": z, "C": c, **dict(zip(frame_axes, frame_shape, strict=True))}
            planes = images
    if shape is None and ome:  # every OME dimension, also those of size 1
        shape = _unsqueezed(tif.series[0])
    if shape is None and not finished:  # the frames linked so far, as a plain stack
        shape = {"I": npages, **dict(zip(frame_axes, frame_shape, strict=True))}
    if shape is None:
        series = tif.series[0] if tif.series else None
        if series is not None and series.shape:
            shape = {ax: int(n) for ax, n in zip(series.axes, series.shape, strict=True)}
        else:
            shape = {"I": npages, **dict(zip(frame_axes, frame_shape, strict=True))}

    found = _series(tif, tagged, frame_axes, frame_shape) if tif.is_ome or not finished else []
    frames_stored = len(keys) + max(0, planes - npages)  # ImageJ "virtual" contiguous planes
    raw_bytes = planes * math.prod(frame_shape) * dtype.itemsize

    # an OME-TIFF's final settings are what its OME-XML was written from
    pixel_size, z_step, interval = _calibration(first, ij, settings, finished and not ome)
    facts = chain.ome[0] if chain.ome and settings is None else None  # another writer's OME
    channel_names = _channel_names(ij, settings, shape.get("C", 1), finished)
    if facts is not None:
        pixel_size = facts.pixel_size_um or pixel_size
        z_step = facts.z_step_um or z_step
        interval = facts.interval_s or interval
        if any(facts.channel_names) and len(facts.channel_names) == shape.get("C", 1):
            channel_names = list(facts.channel_names)
    return FileInfo(
        path=path,
        size_bytes=size,
        profile="ome" if chain.ome and settings is None else _profile(tif, settings),
        codec=_codec(first),
        dtype=dtype.name,
        shape=shape,
        planes=planes,
        frames_stored=frames_stored,
        frames_uncompressed=len(raw_keys),
        raw_bytes=raw_bytes,
        rgb=first.photometric == tifffile.PHOTOMETRIC.RGB and "S" in frame_axes,
        pixel_size_um=pixel_size,
        z_step_um=z_step,
        interval_s=interval,
        channel_names=channel_names,
        finished=finished,
        written_by=written_by,
        series=found,
        in_use=live,
        writer=mark.writer() if mark is not None else "",
        writer_state=mark.state if mark is not None else "",
    )


def _unsqueezed(series: tifffile.TiffPageSeries) -> dict[str, int]:
    """Axis -> size of an OME series, T, Z and C kept when 1 (S only when more than 1).

    tifffile up to 2026.3 gives the unsqueezed axes (``get_axes(False)``); later releases
    squeeze them away, so T, Z and C of size 1 are put back in OME's order.
    """
    if hasattr(series, "get_axes"):
        axes, sizes = series.get_axes(False), series.get_shape(False)
    else:
        axes, sizes = series.axes, series.shape
    found = {ax: int(n) for ax, n in zip(axes, sizes, strict=True) if ax != "S" or n > 1}
    full = {ax: found.pop(ax, 1) for ax in "TZC"}
    return {**full, **found}


def _series(
    tif: tifffile.TiffFile,
    tagged: Sequence[tuple[tuple[int, ...] | None, str | None]],
    frame_axes: str,
    frame_shape: tuple[int, ...],
) -> list[SeriesInfo]:
    """The series of an OME-TIFF of several, or of an unfinished file from its frames' tags."""
    frame = dict(zip(frame_axes, frame_shape, strict=True))
    if not tagged:
        if len(tif.series) < 2:
            return []
        found = []
        for series in tif.series:
            found.append(SeriesInfo(xml_safe(str(series.name or "")), _unsqueezed(series)))
        return found
    spans: dict[int, list[tuple[int, ...]]] = {}
    names: dict[int, str] = {}
    for key, name in tagged:
        if key is None:
            continue
        s = key[3] if len(key) > 3 else 0
        spans.setdefault(s, []).append(key[:3])
        if name is not None:
            names[s] = name
    if len(spans) < 2:
        return []
    out = []
    for s, keys in sorted(spans.items()):
        c, z, t = (1 + max(k[i] for k in keys) - min(0, *(k[i] for k in keys)) for i in range(3))
        out.append(SeriesInfo(names.get(s, ""), {"T": t, "Z": z, "C": c, **frame}))
    return out


def _settings(page: tifffile.TiffPage) -> dict[str, Any] | None:
    tag = page.tags.get(SETTINGS_TAG)
    if tag is None:
        return None
    value = tag.value
    if isinstance(value, bytes):
        value = value.rstrip(b"\0").decode("utf-8", "replace")
    try:
        settings = json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError:
        return {}
    return settings if isinstance(settings, dict) else {}


def _profile(tif: tifffile.TiffFile, settings: Mapping[str, Any] | None) -> str:
    if settings is not None and settings.get("profile") in ("bigtiff", "imagej", "ome"):
        return str(settings["profile"])
    if tif.is_bigtiff:
        return "bigtiff"
    return "imagej" if tif.is_imagej else "tiff"


def _codec(page: tifffile.TiffPage) -> str:
    name = tifffile.COMPRESSION(page.compression).name
    codec, predictor = _CODEC_NAMES.get(name, name.lower()), int(page.predictor)
    return codec + ("" if predictor == 1 else "+predictor" if predictor == 2 else f"+p{predictor}")


def _positive(value: Any) -> float | None:
    return positive(value)


def _calibration(
    page: tifffile.TiffPage,
    ij: Mapping[str, Any] | None,
    settings: Mapping[str, Any] | None,
    finished: bool,
) -> tuple[float | None, float | None, float | None]:
    """(pixel size in µm, z step in µm, interval in s) as a reader derives them."""
    if settings is not None and not finished:  # what repair() will write
        return (
            _positive(settings.get("pxsize")),
            _positive(settings.get("deltaz")),
            _positive(settings.get("timeinterval")),
        )
    xres = page.tags.get(282)
    per_unit: float | None = None  # pixels per unit of length
    if xres is not None:
        value = xres.value
        if isinstance(value, tuple) and len(value) == 2 and value[1]:
            per_unit = _positive(value[0] / value[1])
        elif not isinstance(value, tuple):
            per_unit = _positive(value)
    if ij is not None:
        unit = str(ij.get("unit", "")).strip()
        scale = _LENGTH_UM.get(unit) or _LENGTH_UM.get(unit.lower())
        pixel = scale / per_unit if scale and per_unit else None
        spacing = _positive(ij.get("spacing"))
        z_step = spacing * scale if spacing and scale else None
        tunit = str(ij.get("tunit", "s")).strip().lower()
        finterval = _positive(ij.get("finterval"))
        interval = finterval * _TIME_S[tunit] if finterval and tunit in _TIME_S else None
        return pixel, z_step, interval
    unit_tag = page.tags.get(296)
    res_unit = int(unit_tag.value) if unit_tag is not None else 2  # TIFF default: inch
    um = _RESOLUTION_UNIT_UM.get(res_unit)
    if um is None or per_unit is None:
        return None, None, None
    return um / per_unit, None, None


def _channel_names(
    ij: Mapping[str, Any] | None,
    settings: Mapping[str, Any] | None,
    channels: int,
    finished: bool,
) -> list[str]:
    """Channel names, printable: what no text can hold (a lone surrogate) as U+FFFD."""
    return [xml_safe(name) for name in _stored_channel_names(ij, settings, channels, finished)]


def _stored_channel_names(
    ij: Mapping[str, Any] | None,
    settings: Mapping[str, Any] | None,
    channels: int,
    finished: bool,
) -> list[str]:
    """Channel names from ImageJ's Info (``ChannelNName = x``), its labels, or our settings."""
    if ij is not None and finished:
        info = ij.get("Info")
        if isinstance(info, str):
            found = {int(i): name for i, name in _CHANNEL_NAME.findall(info)}
            if found and sorted(found) == list(range(len(found))):
                return [found[i] for i in range(len(found))]
        labels = ij.get("Labels")
        if isinstance(labels, list) and labels and channels > 1 and len(labels) >= channels:
            names = [str(x) for x in labels[:channels]]
            if all(str(x) == names[i % channels] for i, x in enumerate(labels)):
                return names
    if settings is not None:
        names_setting = settings.get("channel_names")
        if isinstance(names_setting, list):
            return [str(x) for x in names_setting]
    return []


# ------------------------------------------------------------------------------ summary
def _dims_short(shape: Mapping[str, int], *, frame: bool = True) -> str:
    """``{"T": 4, "Z": 3, "C": 2, "Y": 32, "X": 48}`` -> ``T=4 Z=3 C=2 32x48``."""
    parts = [f"{k}={v}" for k, v in shape.items() if k not in ("Y", "X")]
    if frame and "Y" in shape and "X" in shape:
        parts.append(f"{shape['Y']}x{shape['X']}")
    return " ".join(parts)


def summary_table(infos: Sequence[FileInfo]) -> str:
    """One line per file and a total line, for end-of-job summaries.

    Parameters
    ----------
    infos
        Results of :func:`file_info`.

    Returns
    -------
    str
        An aligned text table: file, dimensions, dtype, codec, planes stored/total, size on
        disk, compression ratio and state; the last line sums sizes over all files.

    """
    header = ("file", "dimensions", "dtype", "codec", "stored/planes", "size", "ratio", "state")
    rows = [
        (
            str(info.path),
            _dims_short(info.shape),
            info.dtype,
            info.codec,
            f"{info.frames_stored}/{info.planes}",
            _size(info.size_bytes),
            f"{info.compression_ratio:.2f}",
            "being written" if info.in_use else "finished" if info.finished else "UNFINISHED",
        )
        for info in infos
    ]
    size = sum(info.size_bytes for info in infos)
    raw = sum(info.raw_bytes for info in infos)
    stored = sum(info.frames_stored for info in infos)
    planes = sum(info.planes for info in infos)
    unfinished = sum(not info.finished for info in infos)
    total = (
        f"total: {len(infos)} file{'s' if len(infos) != 1 else ''}",
        "",
        "",
        "",
        f"{stored}/{planes}",
        _size(size),
        f"{raw / size:.2f}" if size else "-",
        f"{unfinished} UNFINISHED" if unfinished else "",
    )
    table = [header, *rows, total]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    right = {4, 5, 6}

    def line(row: Sequence[str]) -> str:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        return "  ".join(cells).rstrip()

    rule = "-" * len(line(header))
    return "\n".join([line(header), rule, *(line(r) for r in rows), rule, line(total)])
