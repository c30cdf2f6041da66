"""Replay Micro-Manager NDTiff datasets into hyperstack TIFFs, frame by frame.

An NDTiff dataset (written by pycro-manager / ndstorage, or by Micro-Manager's AcqEngJ) is a
directory holding ``NDTiff.index`` and one or more ``*_NDTiffStack*.tif`` files. The index lists
every image in acquisition order: its axes, the file holding it, and the byte offsets of its
pixels and its JSON metadata. :func:`replay` walks the index in that order, reads one image at
a time at those offsets, and writes it through a :class:`~mmtiffsink.sink.TiffSink`: one
hyperstack per position (per file-splitting axis), channels in the order they first appear in
the index, calibration from the dataset's summary and per-image metadata, each image's metadata
kept with its frame (tag 51123).

Damaged datasets: before anything is written, the whole index is checked against the files
(a missing tiff, an entry pointing past the end of its file, an index cut off mid-entry, an
unsupported pixel type). Every readable image is converted, the unreadable ones are left out
(their planes are blank), and the conversion is reported as failed, naming the bad entries and
the files written. Those files are complete, valid hyperstacks.

:func:`replay_many` converts several datasets at once, on a thread pool here or on an existing
dask.distributed cluster (``scheduler=``, the optional extra ``mmtiffsink[cluster]``); one
dataset's failure is recorded in its :class:`ReplayResult` and never stops the others.

The NDTiff index and headers are read here rather than with ``ndstorage``'s reader, which reads
the whole index into memory, prints progress to stdout, and raises bare ``Exception`` without
checking offsets against the files; the format (NDTiff 2 and 3, including the
``Full resolution`` directory of multi-resolution datasets) is the one ``ndstorage`` and
``tifffile.read_ndtiff_index`` read.
"""

from __future__ import annotations

import importlib
import json
import os
import struct
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import numpy as np

from mmtiffsink._closing import close_after_block
from mmtiffsink.errors import (
    ConfigError,
    CoordinateError,
    DatasetError,
    FileExistsError_,
    FrameError,
    MMTiffSinkError,
    ProfileError,
)
from mmtiffsink.mapping import AxisMapper, FileKey, file_name
from mmtiffsink.sink import DEFAULT, TiffSink
from mmtiffsink.tiff import Profile, parse_compression

__all__ = [
    "ReplayOptions",
    "ReplayResult",
    "format_results",
    "replay",
    "replay_many",
    "split_replay_paths",
]

INDEX_NAME: Final = "NDTiff.index"
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
#: Bad index entries described one by one in an error message; the rest are counted.
_MAX_PROBLEMS_SHOWN: Final = 5
#: Seconds to reach a dask scheduler before giving up.
_CONNECT_TIMEOUT_S = 15.0


# ==================================================================================== values
def _rebuild_options(
    name: str | None,
    template: str,
    profile: Profile,
    compression: Any,
    default_compression: bool,
    overwrite: bool,
) -> ReplayOptions:
    """Unpickle :class:`ReplayOptions` (the ``DEFAULT`` sentinel is not picklable by identity)."""
    return ReplayOptions(
        name=name,
        template=template,
        profile=profile,
        compression=DEFAULT if default_compression else compression,
        overwrite=overwrite,
    )


@dataclass(frozen=True)
class ReplayOptions:
    """How datasets are written.

    Parameters
    ----------
    name
        File name prefix (the ``{name}`` field of ``template``); default: the dataset
        directory's name.
    template
        File name template, as :class:`~mmtiffsink.sink.TiffSink`'s.
    profile
        ``"bigtiff"`` (default) or ``"imagej"``.
    compression
        Compression of every file; :data:`mmtiffsink.sink.DEFAULT`: the profile's default.
    overwrite
        Replace output files that exist; when False (default) a dataset whose output exists
        is refused before anything is written.

    Notes
    -----
    Picklable (sent to dask workers), keeping ``compression=DEFAULT`` as the default.

    """

    name: str | None = None
    template: str = "{name}_{position}.tif"
    profile: Profile = "bigtiff"
    compression: Any = DEFAULT
    overwrite: bool = False

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        default = self.compression is DEFAULT
        return (
            _rebuild_options,
            (
                self.name,
                self.template,
                self.profile,
                None if default else self.compression,
                default,
                self.overwrite,
            ),
        )


@dataclass(frozen=True)
class ReplayResult:
    """What the replay of one dataset did.

    Parameters
    ----------
    dataset
        The dataset's path, as given.
    files
        The files written (complete or, after a failure, partial but valid hyperstacks).
    frames
        Frames written.
    elapsed_s
        Wall time of the conversion, in seconds.
    error
        None when the dataset converted completely, else what went wrong.

    """

    dataset: Path
    files: list[Path] = field(default_factory=list)
    frames: int = 0
    elapsed_s: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the dataset converted completely."""
        return self.error is None


# ==================================================================================== reading
@dataclass(frozen=True, slots=True)
class _IndexEntry:
    """One entry of ``NDTiff.index``."""

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
        return self.width * self.height * _PIXEL_BYTES.get(self.pixel_type, 0)

    def describe(self) -> str:
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


def _iter_index(path: Path) -> Iterator[_IndexEntry]:
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
                return
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
            yield _IndexEntry(number, offset, axes, filename, *fields)
            number += 1


def _index_path(path: Path) -> Path | None:
    """The ``NDTiff.index`` of a dataset directory (or the index file itself), or None."""
    if path.name == INDEX_NAME and path.is_file():
        return path
    for candidate in (path / INDEX_NAME, path / FULL_RESOLUTION / INDEX_NAME):
        if candidate.is_file():
            return candidate
    return None


def _dataset_dir(path: Path) -> Path:
    """The dataset directory of a path given as the directory or as its ``NDTiff.index``."""
    return path.parent if path.name == INDEX_NAME else path


def _default_out(path: Path) -> Path:
    """Where a dataset's files go without an output directory: beside the dataset."""
    return _dataset_dir(path).resolve().parent


def _is_dataset(path: Path) -> bool:
    return _index_path(path) is not None


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


class _Problems:
    """Index entries left out, with the first few described."""

    def __init__(self) -> None:
        self.count = 0
        self.shown = 0
        self.messages: list[str] = []
        self.truncated: str | None = None

    def add(self, message: str, count: int = 1) -> None:
        self.count += count
        if len(self.messages) < _MAX_PROBLEMS_SHOWN:
            self.messages.append(message)
            self.shown += count

    def __bool__(self) -> bool:
        return self.count > 0 or self.truncated is not None

    def describe(self, total: int) -> str:
        parts: list[str] = []
        if self.count:
            more = self.count - self.shown
            listed = "; ".join(self.messages)
            extra = f"; and {more} more" if more > 0 else ""
            parts.append(
                f"{self.count} of {total} images could not be read and were left out: "
                f"{listed}{extra}"
            )
        if self.truncated is not None:
            parts.append(self.truncated)
        return "; ".join(parts)


@dataclass
class _Scan:
    """The checked index: what will be written and what cannot be."""

    entries: int = 0
    """Entries parsed (the index may end early at a broken entry)."""
    frames: int = 0
    """Entries that look readable."""
    channel_names: list[str] = field(default_factory=list)
    bad_files: dict[str, str] = field(default_factory=dict)
    bad_entries: set[int] = field(default_factory=set)
    file_keys: dict[FileKey, None] = field(default_factory=dict)
    problems: _Problems = field(default_factory=_Problems)


class _Dataset:
    """An NDTiff dataset on disk, read one image at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():
            msg = f"{path} does not exist"
            raise DatasetError(msg)
        index = _index_path(path)
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
        self.index = index
        self.root = index.parent
        self.headers: dict[str, _TiffHeader] = {}
        self.summary: dict[str, Any] = {}

    @property
    def default_name(self) -> str:
        """The dataset directory's name."""
        return _dataset_dir(self.path).resolve().name or "dataset"

    # ------------------------------------------------------------------ scanning
    def _file_problem(self, entry: _IndexEntry) -> str | None:
        """Check an entry's file (its header once per file); None when usable."""
        name = entry.filename
        if name not in self.headers:
            try:
                header = _read_header(self.root / name)
            except DatasetError as exc:
                return str(exc)
            self.headers[name] = header
            if not self.summary:
                self.summary = header.summary
        return None

    def _entry_problem(self, entry: _IndexEntry) -> str | None:
        """Why an entry cannot be read, or None."""
        if entry.pixel_type == _RGB_PIXEL_TYPE:
            return f"{entry.describe()}: RGB images are not supported"
        if entry.pixel_type not in _PIXEL_BYTES:
            return f"{entry.describe()}: unknown pixel type {entry.pixel_type}"
        if entry.pixel_compression != 0 or entry.metadata_compression != 0:
            return f"{entry.describe()}: compressed NDTiff images are not supported"
        if entry.width == 0 or entry.height == 0:
            return f"{entry.describe()}: empty image ({entry.width}x{entry.height})"
        size = self.headers[entry.filename].size
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
        return None

    def scan(self, stop: threading.Event | None = None) -> _Scan:
        """Check every index entry against the files, without reading pixels."""
        scan = _Scan()
        mapper = AxisMapper()
        names: dict[str, None] = {}
        integer_channels = False
        file_entries: dict[str, int] = {}
        try:
            for entry in _iter_index(self.index):
                if stop is not None and stop.is_set():
                    raise KeyboardInterrupt
                scan.entries += 1
                if entry.filename in scan.bad_files:
                    file_entries[entry.filename] += 1
                    continue
                problem = self._file_problem(entry)
                if problem is not None:
                    scan.bad_files[entry.filename] = problem
                    file_entries[entry.filename] = 1
                    continue
                problem = self._entry_problem(entry)
                if problem is None:
                    try:
                        scan.file_keys.setdefault(mapper.file_key(entry.axes), None)
                    except CoordinateError as exc:
                        problem = f"{entry.describe()}: {exc}"
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
            scan.problems.add(
                f"{problem} ({count} image{'s' if count != 1 else ''} listed in it)", count
            )
        if scan.entries == 0 and scan.problems.truncated is None:
            msg = f"{self.path} holds no images (its {INDEX_NAME} is empty)"
            raise DatasetError(msg)
        if names:
            scan.channel_names = list(names)
        elif integer_channels:
            scan.channel_names = _summary_channel_names(self.summary)
        return scan

    # ------------------------------------------------------------------ reading
    def images(
        self, scan: _Scan, problems: _Problems
    ) -> Iterator[tuple[_IndexEntry, np.ndarray, dict[str, Any] | None]]:
        """Yield the readable images in index order: (entry, pixels, metadata).

        Images that fail to read now (the files changed since the scan) go to ``problems``.
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
                    problems.add(str(exc))
                    continue
                yield entry, image, metadata
        finally:
            for fh in handles.values():
                fh.close()

    def _read(self, fh: IO[bytes], entry: _IndexEntry) -> tuple[np.ndarray, dict[str, Any] | None]:
        header = self.headers[entry.filename]
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
            metadata = parsed
        return image, metadata


_NATIVE: Final = "<" if sys.byteorder == "little" else ">"


def _iter_index_prefix(path: Path, count: int) -> Iterator[_IndexEntry]:
    """The first ``count`` entries of the index (those the scan could parse)."""
    if count == 0:
        return
    for entry in _iter_index(path):
        yield entry
        if entry.number + 1 >= count:
            return


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


# ==================================================================================== progress
class _Progress:
    """One tqdm bar (on stderr) shared by the datasets being converted; thread-safe.

    The bar appears with the first work announced (:meth:`add_total`), so a run that fails
    before converting anything prints no empty bar.
    """

    def __init__(self, enabled: bool, unit: str = "frame", total: int = 0) -> None:
        self._lock = threading.Lock()
        self._enabled = enabled
        self._unit = unit
        self._bar: Any = None
        if total:
            self.add_total(total)

    def add_total(self, count: int) -> None:
        if not self._enabled or not count:
            return
        with self._lock:
            if self._bar is None:
                from tqdm import tqdm

                self._bar = tqdm(
                    total=count, unit=self._unit, desc="replay", file=sys.stderr, dynamic_ncols=True
                )
            else:
                self._bar.total += count
                self._bar.refresh()

    def advance(self, count: int = 1) -> None:
        if self._bar is not None:
            with self._lock:
                self._bar.update(count)

    def close(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.close()


# ==================================================================================== replay
def _error_text(exc: BaseException) -> str:
    if isinstance(exc, (MMTiffSinkError, OSError)):
        return str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


def _check_options(options: ReplayOptions) -> None:
    """Refuse options no dataset could be written with, before any work."""
    if options.profile not in ("bigtiff", "imagej"):
        msg = f"profile must be 'bigtiff' or 'imagej', got {options.profile!r}"
        raise ConfigError(msg)
    if options.compression is DEFAULT:
        return
    try:
        codec = parse_compression(options.compression)
    except (ValueError, TypeError) as exc:
        msg = f"bad compression {options.compression!r}: {exc}"
        raise ConfigError(msg) from None
    if options.profile == "imagej" and codec.name == "none":
        msg = (
            "replay cannot write uncompressed files of the imagej profile (the writer needs "
            "each file's shape up front for them); use deflate (the imagej default) or the "
            "bigtiff profile"
        )
        raise ProfileError(msg)


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        msg = f"the output {out} exists and is not a directory"
        raise FileExistsError_(msg)


def _check_outputs(
    dataset: _Dataset, scan: _Scan, out: Path, name: str, options: ReplayOptions
) -> None:
    """Refuse, before writing anything, outputs that exist, collide or overwrite the input."""
    paths: dict[Path, FileKey] = {}
    for key in scan.file_keys:
        path = out / file_name(options.template, name, key)
        other = paths.get(path)
        if other is not None:
            msg = (
                f"the images with axes {dict(key)!r} and {dict(other)!r} would both go to "
                f"{path}; use a template with a field for each file-splitting axis"
            )
            raise CoordinateError(msg)
        paths[path] = key
    inputs = {(dataset.root / f).resolve() for f in dataset.headers}
    clobbered = [p for p in paths if p.resolve() in inputs]
    if clobbered:
        msg = f"the output {clobbered[0]} would overwrite the dataset's own file"
        raise FileExistsError_(msg)
    if options.overwrite:
        return
    existing = [p for p in paths if p.exists()]
    if existing:
        shown = ", ".join(str(p) for p in existing[:3])
        more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        msg = (
            f"the output exists: {shown}{more}; nothing was written "
            "(use --overwrite / overwrite=True to replace it)"
        )
        raise FileExistsError_(msg)


def _written(files: list[Path], frames: int) -> str:
    if not files:
        return "no file was written"
    return (
        f"{frames} frame{'s' if frames != 1 else ''} were written to "
        f"{', '.join(str(f) for f in files)} (valid hyperstacks without the images left out)"
    )


def _replay_one(
    dataset: Path,
    out: Path | None,
    options: ReplayOptions,
    progress: _Progress | None,
    stop: threading.Event | None = None,
) -> tuple[ReplayResult, BaseException | None]:
    """Convert one dataset; never raises an ``Exception`` (it is returned with the result)."""
    start = time.perf_counter()
    files: list[Path] = []
    frames = 0
    error: BaseException | None = None
    try:
        source = _Dataset(dataset)
        target = out if out is not None else _default_out(dataset)
        _check_out(target)
        name = options.name if options.name is not None else source.default_name
        scan = source.scan(stop)
        _check_outputs(source, scan, target, name, options)
        if progress is not None:
            progress.add_total(scan.frames)
        problems = scan.problems
        sink_options: dict[str, Any] = {}
        if options.compression is not DEFAULT:
            sink_options["compression"] = options.compression
        sink = TiffSink(
            target,
            name,
            template=options.template,
            profile=options.profile,
            channel_names=scan.channel_names or None,
            overwrite=options.overwrite,
            **sink_options,
        )
        try:
            sink.update_summary(source.summary)
            for entry, image, metadata in source.images(scan, problems):
                if stop is not None and stop.is_set():
                    raise KeyboardInterrupt
                try:
                    sink.put(image, entry.axes, metadata)
                except (CoordinateError, FrameError) as exc:  # nothing written for it
                    problems.add(f"{entry.describe()}: {exc}")
                    continue
                frames += 1
                if progress is not None:
                    progress.advance()
        except BaseException as exc:
            files = sink.files
            close_after_block(sink.close, exc, "the TiffSink")  # the files stay valid
            files = [f for f in files if f.exists()]
            raise
        files = sink.files
        try:
            sink.close()
        finally:
            files = [f for f in files if f.exists()]  # a file whose every frame failed is gone
        if problems:
            msg = f"{dataset}: {problems.describe(scan.entries)}; {_written(files, frames)}"
            error = DatasetError(msg)
    except Exception as exc:
        error = exc
        if files and isinstance(exc, MMTiffSinkError) and hasattr(exc, "add_note"):
            exc.add_note(_written(files, frames))
    elapsed = time.perf_counter() - start
    text: str | None = None
    if error is not None:
        text = _error_text(error)
        if files and not isinstance(error, DatasetError):
            text = f"{text}; {_written(files, frames)}"
    result = ReplayResult(
        dataset=dataset, files=files, frames=frames, elapsed_s=elapsed, error=text
    )
    return result, error


def replay(
    dataset: str | os.PathLike[str],
    out: str | os.PathLike[str] | None,
    options: ReplayOptions = ReplayOptions(),
    *,
    progress: bool = True,
) -> ReplayResult:
    """Convert one NDTiff dataset into one hyperstack TIFF per position.

    Parameters
    ----------
    dataset
        The dataset directory (the one holding ``NDTiff.index``), or its ``NDTiff.index``.
    out
        Output directory, created if missing; None: the dataset's parent directory.
    options
        File names, profile, compression, overwriting.
    progress
        Show a progress bar (tqdm, on stderr).

    Returns
    -------
    ReplayResult
        The files written, the number of frames and the time taken (``error`` is None).

    Raises
    ------
    DatasetError
        ``dataset`` is not an NDTiff dataset or cannot be read; or it is damaged (a missing
        tiff, an index entry pointing past the end of its file, a truncated index): then every
        readable image was converted into valid hyperstacks, and the message names the bad
        entries and the files written.
    FileExistsError_
        An output file exists and ``options.overwrite`` is False; nothing was written.
    CoordinateError
        Two positions would go to one file (the template lacks a field).
    WriterError
        Writing failed (full disk, ...); the files keep the frames written before.
    ConfigError, ProfileError
        A bad profile or compression; or the ``imagej`` profile without compression, which
        replay cannot write (the writer needs each file's shape up front for it).

    Notes
    -----
    To get the result of a failed conversion (its partial files) rather than an exception,
    use :func:`replay_many` with one dataset.

    """
    _check_options(options)
    bar = _Progress(progress)
    try:
        result, error = _replay_one(Path(dataset), None if out is None else Path(out), options, bar)
    finally:
        bar.close()
    if error is not None:
        raise error
    return result


def _replay_task(dataset: str, out: str, options: ReplayOptions) -> ReplayResult:
    """One dataset on a dask worker (module-level, so workers import it by name)."""
    return _replay_one(Path(dataset), Path(out), options, None)[0]


def _duplicate_names(
    datasets: Sequence[Path], out: Path | None, options: ReplayOptions
) -> dict[int, str]:
    """Datasets whose files would get the names of an earlier one's: index -> error."""
    seen: dict[tuple[Path, str], Path] = {}
    errors: dict[int, str] = {}
    for i, path in enumerate(datasets):
        name = options.name if options.name is not None else _dataset_dir(path).resolve().name
        target = (out if out is not None else _default_out(path)).resolve()
        other = seen.get((target, name))
        if other is None:
            seen[(target, name)] = path
            continue
        if _dataset_dir(other).resolve() == _dataset_dir(path).resolve():
            errors[i] = f"{path} is listed twice; converted once"
        else:
            errors[i] = (
                f"its files would be named {name!r} in {target} like those of {other}; "
                "convert it separately with another --name or --out"
            )
    return errors


def replay_many(
    datasets: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str] | None,
    options: ReplayOptions = ReplayOptions(),
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
) -> list[ReplayResult]:
    """Convert several NDTiff datasets in parallel; one failure never stops the others.

    Parameters
    ----------
    datasets
        Dataset directories.
    out
        Output directory for all of them; None: each dataset's parent directory.
    options
        As for :func:`replay`. A ``name`` given here applies to every dataset: datasets
        whose files would get the same names as an earlier one's are not converted.
    workers
        Datasets converted at once on this machine (default: the number of CPUs, at most the
        number of datasets). Compression runs on the writer's shared pool whatever this is.
    scheduler
        Address of a dask.distributed scheduler (``tcp://host:8786``): every dataset becomes
        one task on that cluster, whose workers must see the same paths and have mmtiffsink
        installed. Needs the extra ``mmtiffsink[cluster]``.
    progress
        Show one progress bar (tqdm, on stderr): over frames here, over datasets on a cluster.

    Returns
    -------
    list of ReplayResult
        One per dataset, in the order given; a failure is in its ``error``.

    Raises
    ------
    ConfigError
        ``workers`` is not a positive integer, or a bad profile or compression.
    ProfileError
        The profile does not allow the compression (see :func:`replay`).
    MMTiffSinkError
        dask.distributed is missing, or the scheduler cannot be reached.
    FileExistsError_
        ``out`` exists and is not a directory.

    """
    paths = [Path(p) for p in datasets]
    target = None if out is None else Path(out)
    if workers is not None and workers < 1:
        msg = f"workers must be at least 1, got {workers}"
        raise ConfigError(msg)
    _check_options(options)
    if target is not None:
        _check_out(target)
    results: list[ReplayResult | None] = [None] * len(paths)
    for i, error in _duplicate_names(paths, target, options).items():
        results[i] = ReplayResult(dataset=paths[i], error=error)
    todo = [i for i, r in enumerate(results) if r is None]
    if scheduler is not None:
        done = _replay_on_cluster([paths[i] for i in todo], target, options, scheduler, progress)
    else:
        done = _replay_here([paths[i] for i in todo], target, options, workers, progress)
    for i, result in zip(todo, done, strict=True):
        results[i] = result
    return [r for r in results if r is not None]


def _replay_here(
    datasets: list[Path],
    out: Path | None,
    options: ReplayOptions,
    workers: int | None,
    progress: bool,
) -> list[ReplayResult]:
    """Convert on a bounded thread pool; Ctrl-C stops every dataset with its files closed."""
    if not datasets:
        return []
    count = workers or min(len(datasets), os.cpu_count() or 1)
    count = max(1, min(count, len(datasets)))
    bar = _Progress(progress)
    stop = threading.Event()
    results: dict[int, ReplayResult] = {}
    try:
        with ThreadPoolExecutor(count, thread_name_prefix="mmtiffsink-replay") as pool:
            futures: dict[Future[tuple[ReplayResult, BaseException | None]], int] = {
                pool.submit(_replay_one, path, out, options, bar, stop): i
                for i, path in enumerate(datasets)
            }
            try:
                pending = set(futures)
                while pending:
                    finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                    for future in finished:
                        results[futures[future]] = _outcome(future, datasets[futures[future]])
            except KeyboardInterrupt:
                stop.set()  # every dataset closes its files, then the pool is joined
                raise
    finally:
        bar.close()
    return [results[i] for i in range(len(datasets))]


def _outcome(
    future: Future[tuple[ReplayResult, BaseException | None]], dataset: Path
) -> ReplayResult:
    try:
        return future.result()[0]
    except BaseException as exc:  # KeyboardInterrupt inside a worker thread (stop was set)
        if not isinstance(exc, Exception):
            raise
        return ReplayResult(dataset=dataset, error=_error_text(exc))


def _replay_on_cluster(
    datasets: list[Path],
    out: Path | None,
    options: ReplayOptions,
    scheduler: str,
    progress: bool,
) -> list[ReplayResult]:
    """One task per dataset on a dask.distributed cluster, gathered as they finish."""
    if not datasets:
        return []
    try:
        distributed: Any = importlib.import_module("distributed")
    except ImportError as exc:
        msg = (
            f"--scheduler needs dask.distributed, which is not installed ({exc}); "
            "install it with: pip install 'mmtiffsink[cluster]'"
        )
        raise MMTiffSinkError(msg) from None
    try:
        client = distributed.Client(scheduler, set_as_default=False, timeout=_CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError) as exc:
        msg = f"cannot connect to the dask scheduler at {scheduler}: {exc}"
        raise MMTiffSinkError(msg) from None
    results: dict[int, ReplayResult] = {}
    bar = _Progress(progress, unit="dataset", total=len(datasets))
    try:
        futures = {}
        for i, path in enumerate(datasets):
            absolute = path.absolute()
            target = out.absolute() if out is not None else _default_out(absolute)
            future = client.submit(_replay_task, str(absolute), str(target), options, pure=False)
            futures[future] = i
        # gathered as they finish; as_completed takes the loop of the given (not default) client
        for future in distributed.as_completed(list(futures), loop=client.loop):
            i = futures[future]
            try:
                result = future.result()
                results[i] = ReplayResult(
                    dataset=datasets[i],
                    files=list(result.files),
                    frames=result.frames,
                    elapsed_s=result.elapsed_s,
                    error=result.error,
                )
            except Exception as exc:  # the task or its worker failed
                results[i] = ReplayResult(
                    dataset=datasets[i],
                    error=f"failed on the cluster: {_error_text(exc)}",
                )
            bar.advance()
    finally:
        bar.close()
        client.close()
    return [results[i] for i in range(len(datasets))]


# ==================================================================================== CLI help
def split_replay_paths(paths: Sequence[Path], out: Path | None) -> tuple[list[Path], Path]:
    """Tell the datasets from the output directory in ``replay DATASET [OUT]``.

    Parameters
    ----------
    paths
        The positional paths of the command line.
    out
        The ``--out`` directory, or None.

    Returns
    -------
    datasets : list of Path
        The datasets.
    out : Path
        The output directory: ``out`` when given; else the second path when there are two
        and it is not an NDTiff dataset; else, for one dataset, its parent directory.

    Raises
    ------
    DatasetError
        No path, or several datasets without ``--out`` (where the files should go is
        ambiguous).

    """
    items = list(paths)
    if not items:
        msg = "no dataset given"
        raise DatasetError(msg)
    if out is not None:
        return items, out
    if len(items) == 1:
        return items, _default_out(items[0])
    if len(items) == 2 and not _is_dataset(items[1]):
        return [items[0]], items[1]
    if len(items) == 2:
        msg = (
            f"{items[1]} is an NDTiff dataset, not an output directory: to convert both "
            "datasets give the output directory with --out OUTDIR"
        )
    else:
        msg = (
            f"{len(items)} paths given without --out: convert several datasets with "
            "`mmtiffsink replay DS1 DS2 ... --out OUTDIR`, one with `replay DATASET [OUT]`"
        )
    raise DatasetError(msg)


def format_results(results: Sequence[ReplayResult]) -> str:
    """The end-of-job summary: per dataset its files, frames and time; failures with errors.

    Parameters
    ----------
    results
        The results of :func:`replay_many` (or of :func:`replay`).

    Returns
    -------
    str
        Readable text; the last line counts converted and failed datasets.

    """
    blocks: list[str] = []
    for result in results:
        state = "converted" if result.ok else "FAILED"
        head = (
            f"{result.dataset}: {state}, {result.frames} frame"
            f"{'s' if result.frames != 1 else ''} in {result.elapsed_s:.1f} s"
        )
        lines = [head]
        if result.error is not None:
            lines.append(f"  error: {result.error}")
        if result.files:
            lines.append(_indent(_files_table(result.files)))
        blocks.append("\n".join(lines))
    failed = [r for r in results if not r.ok]
    total = (
        f"{len(results)} dataset{'s' if len(results) != 1 else ''}: "
        f"{len(results) - len(failed)} converted, {len(failed)} failed"
    )
    if failed:
        total += " (" + ", ".join(str(r.dataset) for r in failed) + ")"
    blocks.append(total)
    return "\n\n".join(blocks)


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())


def _files_table(files: Sequence[Path]) -> str:
    """``summary_table`` of :mod:`mmtiffsink.info` over ``files``; a plain list if unreadable."""
    from mmtiffsink.info import file_info, summary_table

    infos = []
    unreadable: list[str] = []
    for path in files:
        try:
            infos.append(file_info(path))
        except (MMTiffSinkError, OSError) as exc:
            unreadable.append(f"{path}: cannot be described: {exc}")
    parts = [summary_table(infos)] if infos else []
    return "\n".join(parts + unreadable)
