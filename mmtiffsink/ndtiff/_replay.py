"""Replay Micro-Manager NDTiff datasets into hyperstack TIFFs, frame by frame.

:func:`replay` reads a dataset with :class:`~mmtiffsink.ndtiff.NDTiffSource` (the source
stage: the index in acquisition order, one image at a time at its offsets; the format is
described in :mod:`mmtiffsink.ndtiff`) and writes it through a
:class:`~mmtiffsink.sink.TiffSink`: one hyperstack per position (per file-splitting axis),
channels in the order they first appear in the index, calibration from the dataset's summary
and per-image metadata, each image's metadata kept with its frame (tag 51123).

Damaged datasets: before anything is written, the whole index is checked against the files
and their own IFD chains (see :meth:`~mmtiffsink.ndtiff.NDTiffSource.scan`), and every entry's
place against :data:`~mmtiffsink.limits.MAX_PLANES`. Every image that can be placed is
converted, the others are left out (their planes are blank), and the conversion fails,
counting the images not placed and naming why. The files written are valid hyperstacks.

An image stored again at the same coordinates (Magellan's overwritten tiles) replaces the
earlier one, as ``ndstorage`` reads such a dataset: the last one is written, and a
:class:`~mmtiffsink.errors.SupersededImagesWarning` says how many were replaced.

:func:`replay_many` converts several datasets at once, on a thread pool here or on an existing
dask.distributed cluster (``scheduler=``, the optional extra ``mmtiffsink[cluster]``); one
dataset's failure is recorded in its :class:`ReplayResult` and never stops the others.
"""

from __future__ import annotations

import importlib
import math
import os
import socket
import threading
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import StrictBool, field_validator

from mmtiffsink._closing import close_after_block
from mmtiffsink._text import check_name, clean_text, xml_illegal
from mmtiffsink.errors import (
    ConfigError,
    CoordinateError,
    DatasetError,
    FileExistsError_,
    FrameError,
    MMTiffSinkError,
    SupersededImagesWarning,
)
from mmtiffsink.limits import MAX_PLANES
from mmtiffsink.sink import AxisMapper, FileKey, SinkOptions, TiffSink, file_name, split_position

from ._progress import Progress
from ._reader import IndexEntry, NDTiffSource, Scan, dataset_dir

__all__ = [
    "ReplayOptions",
    "ReplayResult",
    "replay",
    "replay_many",
]

#: Seconds to reach a dask scheduler (and to hear its greeting) before giving up.
_CONNECT_TIMEOUT_S = 15.0
#: Largest first frame a dask scheduler's greeting may announce (it sends about 60 bytes).
_MAX_GREETING = 1 << 26


# ==================================================================================== values
class ReplayOptions(SinkOptions):
    """How datasets are written: the fields of :class:`~mmtiffsink.sink.SinkOptions`, and more.

    Parameters
    ----------
    name
        File name prefix (the ``{name}`` field of ``template``); default: the dataset
        directory's name.
    keep_up
        Default False here: offline, the writer waits for the pool (every frame compressed).
    overwrite
        Accepted as ``if_exists="overwrite"`` (True) or ``"error"`` (False). With
        ``if_exists="error"`` (default) a dataset whose output exists is refused before
        anything is written; ``"rename"`` writes under ``name_1``, ``name_2``, ...

    Notes
    -----
    Frozen and picklable (sent to dask workers), ``compression=DEFAULT`` included.

    """

    LIVE: ClassVar[bool] = False  # offline: the profile's default codec (zstd 3), not zstd 1
    name: str | None = None
    keep_up: StrictBool = False  # offline: wait for the pool, the smallest files

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str | None) -> str | None:
        # the one rule for names of files (as a run file's output.name and TiffSink's name)
        return None if value is None else check_name("name", value)

    @property
    def overwrite(self) -> bool:
        """True when existing outputs are replaced."""
        return self.if_exists == "overwrite"


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


# ==================================================================================== replay
def _default_out(path: Path) -> Path:
    """Where a dataset's files go without an output directory: beside the dataset."""
    return dataset_dir(path).resolve().parent


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, (MMTiffSinkError, OSError)):
        return str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


def _check_options(options: ReplayOptions) -> None:
    """Options are checked when built; a plain SinkOptions is refused here."""
    if not isinstance(options, ReplayOptions):
        msg = f"options are a ReplayOptions, got {type(options).__name__}"
        raise ConfigError(msg)


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        msg = f"the output {out} exists and is not a directory"
        raise FileExistsError_(msg)


def _check_outputs(
    dataset: NDTiffSource,
    file_keys: dict[FileKey, None],
    out: Path,
    name: str,
    options: ReplayOptions,
) -> str:
    """Refuse, before writing anything, outputs that exist, collide or overwrite the input.

    Returns the dataset name to write under: ``name``, or with ``if_exists="rename"`` the first
    of ``name_1``, ``name_2``, ... under which no file of the dataset exists (one name for all
    its files).
    """
    paths = _output_paths(file_keys, out, name, options)
    if options.if_exists == "rename":
        n = 0
        while any(p.exists() for p in paths):
            n += 1
            paths = _output_paths(file_keys, out, f"{name}_{n}", options)
        name = f"{name}_{n}" if n else name
    _check_inputs_and_existing(dataset, paths, name, options)
    return name


def _output_paths(
    file_keys: dict[FileKey, None], out: Path, name: str, options: ReplayOptions
) -> dict[Path, FileKey]:
    """The file of each file key under dataset name ``name``; two keys, one file: refused."""
    paths: dict[Path, FileKey] = {}
    for key in file_keys:
        if options.positions == "series":  # every position a series of one file
            key = split_position(key)[0]
        path = out / file_name(options.template, name, key)
        other = paths.get(path)
        if other is not None and other != key:
            msg = (
                f"the images with axes {dict(key)!r} and {dict(other)!r} would both go to "
                f"{path}; use a template with a field for each file-splitting axis"
            )
            raise CoordinateError(msg)
        paths[path] = key
    return paths


def _check_inputs_and_existing(
    dataset: NDTiffSource, paths: dict[Path, FileKey], name: str, options: ReplayOptions
) -> None:
    """Refuse outputs that would overwrite the dataset, or exist (``if_exists="error"``)."""
    inputs = {f.resolve() for f in dataset.files}
    clobbered = [p for p in paths if p.resolve() in inputs]
    if clobbered:
        msg = f"the output {clobbered[0]} would overwrite the dataset's own file"
        raise FileExistsError_(msg)
    if options.if_exists != "error":
        return
    existing = [p for p in paths if p.exists()]
    if existing:
        shown = ", ".join(str(p) for p in existing[:3])
        more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        msg = (
            f"the output exists: {shown}{more}; nothing was written (use --overwrite, "
            'if_exists="overwrite", to replace it, or if_exists="rename" to write the dataset '
            f"under a new name: {name}_1, ...)"
        )
        raise FileExistsError_(msg)


class _Places:
    """The scan's check of each entry's place: its file, in a hyperstack within MAX_PLANES.

    A legal but absurd coordinate (``time: 10**9``) is refused here, before anything is written,
    rather than letting the writer build that many planes at close.
    """

    def __init__(self) -> None:
        self.mapper = AxisMapper()
        self.files: dict[FileKey, list[tuple[int, int]]] = {}  # (lowest, highest) of c, z, t
        self.names: dict[str, int] = {}  # channel name -> index, in order of arrival

    def __call__(self, entry: IndexEntry) -> str | None:
        try:
            key = self.mapper.file_key(entry.axes)
        except CoordinateError as exc:
            return f"{entry.describe()}: {exc}"
        channel = entry.axes.get("channel")
        c = self.names.get(channel, len(self.names)) if isinstance(channel, str) else channel
        place = [v if isinstance(v, int) else 0 for v in (c, *map(entry.axes.get, ("z", "time")))]
        known = self.files.get(key, [(0, 0)] * 3)
        spans = [(min(a, v), max(b, v)) for (a, b), v in zip(known, place, strict=True)]
        sizes = [hi - lo + 1 for lo, hi in spans]  # a non-integer is 0 here: the sink refuses it
        if math.prod(sizes) > MAX_PLANES:
            where = f"the file of {dict(key)}" if key else "its file"
            return (
                f"{entry.describe()}: it would make {where} a hyperstack of {math.prod(sizes)} "
                f"planes (C, Z, T = {tuple(sizes)}), more than {MAX_PLANES} "
                "(mmtiffsink.limits.MAX_PLANES)"
            )
        self.files[key] = spans
        if isinstance(channel, str):
            self.names.setdefault(channel, len(self.names))
        return None


def _with_channel_names(
    options: SinkOptions, names: list[str], scan: Scan, dataset: Path
) -> SinkOptions:
    """The options with the dataset's channel names, as far as a file can hold them.

    Text labels of the channel axis are the channels' identity: with a character no file can
    hold they are left to the sink, which names the channels as they arrive and writes such
    characters as U+FFFD (saying so). Names of integer channels (from the summary or the
    images' metadata) are written so here, and left out if two become one.
    """
    if all(xml_illegal(name) is None for name in names):
        return options.replace(channel_names=tuple(names))
    if scan.channels_labelled:
        return options
    cleaned = [clean_text(f"{dataset}: the channel name {name!r}", name) for name in names]
    if len(set(cleaned)) != len(cleaned):
        return options
    return options.replace(channel_names=tuple(cleaned))


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
    progress: Progress | None,
    stop: threading.Event | None = None,
) -> tuple[ReplayResult, BaseException | None]:
    """Convert one dataset; never raises an ``Exception`` (it is returned with the result)."""
    start = time.perf_counter()
    files: list[Path] = []
    frames = 0
    error: BaseException | None = None
    try:
        source = NDTiffSource(dataset)
        target = out if out is not None else _default_out(dataset)
        _check_out(target)
        name = options.name if options.name is not None else source.name
        places = _Places()
        scan = source.scan(stop, places)
        if scan.superseded:
            count = len(scan.superseded)
            warnings.warn(
                f"{dataset}: {count} image{'s were' if count != 1 else ' was'} stored again at "
                f"the same coordinates (e.g. axes {scan.superseded_example}); the last one "
                "stored is kept, as ndstorage reads the dataset",
                SupersededImagesWarning,
                stacklevel=2,
            )
        name = _check_outputs(source, dict.fromkeys(places.files), target, name, options)
        if progress is not None:
            progress.add_total(scan.frames)
        problems = scan.problems
        fields = {**options.sink_fields(), "keep_up": options.keep_up}
        fields["compression"] = options.codec  # the offline default resolved
        if options.if_exists == "rename":
            fields["if_exists"] = "error"  # the free name was chosen above, for every file
        sink_options = SinkOptions.of(**fields)
        if sink_options.channel_names is None and scan.channel_names:
            sink_options = _with_channel_names(sink_options, scan.channel_names, scan, dataset)
        sink = TiffSink(target, name, sink_options)
        try:
            sink.update_summary(source.summary)
            for entry, image, metadata in source.images(scan):
                if stop is not None and stop.is_set():
                    raise KeyboardInterrupt
                try:
                    sink.put(image, entry.axes, metadata)
                except (CoordinateError, FrameError) as exc:  # nothing written for it
                    rgb = " (an RGB image)" if image.ndim == 3 else ""
                    problems.add(f"{entry.describe()}{rgb}: {exc}")
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
            msg = f"{dataset}: {problems.describe(scan.images, frames)}; {_written(files, frames)}"
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
    options: ReplayOptions | None = None,
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
        ``dataset`` is not an NDTiff dataset or cannot be read; or it is damaged (see the
        module notes): the message counts the images not placed, says why, and names the
        files written.
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
    :func:`replay_many` with one dataset returns a failed conversion's result instead.

    """
    options = ReplayOptions() if options is None else options
    _check_options(options)
    bar = Progress(progress)
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
        name = options.name if options.name is not None else dataset_dir(path).resolve().name
        target = (out if out is not None else _default_out(path)).resolve()
        other = seen.get((target, name))
        if other is None:
            seen[(target, name)] = path
            continue
        if dataset_dir(other).resolve() == dataset_dir(path).resolve():
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
    options: ReplayOptions | None = None,
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
    options = ReplayOptions() if options is None else options
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
    bar = Progress(progress)
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


def _check_scheduler(address: str, timeout: float) -> None:
    """Check that ``address`` is a dask scheduler's before dask.distributed is given it.

    dask's client, given an address that accepts TCP but never speaks dask, waits forever; given
    an HTTP service, it reads the reply as a frame length and allocates exabytes; given a
    malformed address, its connection thread raises a TimeoutError later. So the address is
    parsed here and, for ``tcp://``, the scheduler's greeting (it speaks first: an 8-byte
    frame length, then its handshake) is awaited for ``timeout`` seconds on a plain socket.

    Raises
    ------
    MMTiffSinkError
        The address is malformed, refuses or drops the connection, says nothing in time, or
        answers with something other than a dask greeting.

    """
    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        scheme, location = parse_address(address)
        host, port = parse_host_port(location)
    except (ValueError, TypeError) as exc:
        msg = f"--scheduler {address!r} is not a dask scheduler address ({exc}); write tcp://host:port"
        raise MMTiffSinkError(msg) from None
    if scheme != "tcp":
        return  # tls:// and others: dask's own connection, with its timeout
    if not host or not 0 < port < 65536:
        msg = f"--scheduler {address!r} is not a dask scheduler address; write tcp://host:port"
        raise MMTiffSinkError(msg)
    head = b""
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            while len(head) < 8:
                chunk = sock.recv(8 - len(head))
                if not chunk:
                    break
                head += chunk
    except TimeoutError:
        msg = (
            f"the address {address} {'accepts connections but ' if head == b'' else ''}"
            f"sent no dask greeting in {timeout:g} s: it is not a dask scheduler"
        )
        raise MMTiffSinkError(msg) from None
    except OSError as exc:
        msg = f"cannot connect to the dask scheduler at {address}: {exc.strerror or exc}"
        raise MMTiffSinkError(msg) from None
    length = int.from_bytes(head, "little") if len(head) == 8 else 0
    if not 0 < length <= _MAX_GREETING:
        what = f"answered {head!r}" if head else "closed the connection"
        msg = f"the address {address} {what}: it is not a dask scheduler"
        raise MMTiffSinkError(msg)


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
    _check_scheduler(scheduler, _CONNECT_TIMEOUT_S)
    try:
        client = distributed.Client(scheduler, set_as_default=False, timeout=_CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError) as exc:
        msg = f"cannot connect to the dask scheduler at {scheduler}: {exc}"
        raise MMTiffSinkError(msg) from None
    results: dict[int, ReplayResult] = {}
    bar = Progress(progress, unit="dataset", total=len(datasets))
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
