"""The run skeleton both engines plug into, and the small protocol they implement.

:func:`run_with` is every run of ``mmtiffsink run``: it chooses the dataset name
(``output.if_exists``, once, before the microscope starts), builds the sink options, shows the
progress bar, starts the microscope, hands the acquisition to the engine, waits for it (the one
Ctrl-C loop: abort, wait, re-raise), always finishes the files, and returns a :class:`RunResult`.
An :class:`Engine` (pycro-manager: :mod:`._pycromanager`; pymmcore-plus: :mod:`._mda`) says only
what differs: its plan, its microscope, and how one acquisition is started and aborted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mmtiffsink.errors import ConfigError, FileExistsError_
from mmtiffsink.sink import FileKey, SinkOptions

from ._models import RunConfig

__all__ = [
    "Engine",
    "EngineRun",
    "PlannedFile",
    "RunResult",
    "Worker",
    "distinct_files",
    "output_name",
    "run_with",
]


@dataclass(frozen=True)
class PlannedFile:
    """One output file of a run and the hyperstack it will hold.

    Parameters
    ----------
    path
        The file.
    key
        Its file-splitting axes (e.g. ``(('position', 'A1'),)``).
    shape
        ``(C, Z, T)``.
    frames
        Frames planned for it.

    """

    path: Path
    key: FileKey
    shape: tuple[int, int, int]
    frames: int


def distinct_files(planned: list[PlannedFile]) -> list[PlannedFile]:
    """``planned``, checked: no two of its files get one name (positions ``A/1`` and ``A_1``).

    Every engine's plan passes through it, so ``--dry-run`` refuses such a plan too, before
    anything is acquired.

    Raises
    ------
    ConfigError
        Two files would get the same name.

    """
    seen: dict[Path, PlannedFile] = {}
    for file in planned:
        other = seen.setdefault(file.path, file)
        if other is not file:
            msg = (
                f"the files of {dict(other.key)!r} and {dict(file.key)!r} would both be "
                f"{file.path.name!r} (a file name keeps letters, digits and . _ + -, the rest "
                "becomes _): give the positions labels that differ there"
            )
            raise ConfigError(msg)
    return planned


@dataclass(frozen=True)
class RunResult:
    """What a run did.

    Parameters
    ----------
    files
        The files written, in order of their first frame.
    frames
        Frames handed to the writer (a writer failure can keep the last few out of the file).
    expected_frames
        Frames planned.
    elapsed_s
        Wall time of the run, microscope start and stop included.
    error
        Why the run failed or is incomplete; None when it succeeded.

    """

    files: list[Path]
    frames: int
    expected_frames: int
    elapsed_s: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when every planned frame was written and nothing failed."""
        return self.error is None and self.frames == self.expected_frames


class Worker:
    """The thread an acquisition runs on, whose end a Ctrl-C cannot hide.

    On CPython before 3.13, a ``Thread.join(timeout)`` that Ctrl-C interrupts marks the thread
    as ended though it still runs (python/cpython#90882: ``is_alive()`` is False from then on
    and ``join()`` returns at once): the run then stopped the microscope under an engine
    thread that was still snapping. The end here is an event the thread sets when ``target``
    has returned; waiting on an event that Ctrl-C interrupts leaves it as it was.

    Parameters
    ----------
    target
        What the thread runs (it should not raise: what it raises is lost).
    name
        The thread's name.

    """

    def __init__(self, target: Callable[[], object], name: str) -> None:
        self._target = target
        self._ended = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name)

    def _run(self) -> None:
        try:
            self._target()
        finally:
            self._ended.set()

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    @property
    def ended(self) -> bool:
        """True once ``target`` has returned."""
        return self._ended.is_set()

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for ``target`` to return; True once it has."""
        if not self._ended.wait(timeout):
            return False
        self._thread.join()  # only the thread's last steps are left
        return True


class EngineRun(Protocol):
    """One acquisition of an engine, started by :meth:`Engine.acquisition`."""

    @property
    def files(self) -> list[Path]:
        """The files written so far."""

    def begin(self) -> None:
        """Start acquiring (returns while the acquisition runs)."""

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; True once the acquisition has ended."""

    def abort(self) -> None:
        """Stop acquiring as soon as possible (Ctrl-C); :meth:`wait` tells when it ended."""

    def close(self) -> BaseException | None:
        """Finish every file (never raises); the error that ended the acquisition, if any."""


class Engine(Protocol):
    """What differs between the engines of ``mmtiffsink run``."""

    def planned_files(self, name: str | None) -> list[PlannedFile]:
        """The files a run under dataset ``name`` makes (None: ``output.name``)."""

    def expected_frames(self) -> int:
        """Frames planned."""

    def channel_names(self) -> tuple[str, ...] | None:
        """The channels in file order, when the plan names them."""

    def microscope(self) -> AbstractContextManager[Any]:
        """The started and set-up microscope; stopped on the way out."""

    def acquisition(
        self, core: Any, name: str, options: SinkOptions, on_frame: Callable[[], None]
    ) -> EngineRun:
        """An acquisition on ``core`` into files named ``name`` (``on_frame`` per frame)."""


def output_name(
    config: RunConfig, planned: Callable[[str | None], Sequence[PlannedFile]]
) -> str:
    """The dataset name to use, after ``output.if_exists``: the one place of that rule.

    Parameters
    ----------
    config
        The run configuration.
    planned
        The files a run makes under a dataset name (``None``: the file's own).

    Raises
    ------
    FileExistsError_
        ``if_exists: error`` and an output file exists.

    """
    out = config.output
    if out.if_exists == "overwrite":
        return out.name
    if out.if_exists == "rename":
        for n in range(100_000):
            name = out.name if n == 0 else f"{out.name}_{n}"
            if not any(f.path.exists() for f in planned(name)):
                return name
        msg = f"no free name for {out.name!r} in {out.directory}"  # pragma: no cover
        raise FileExistsError_(msg)  # pragma: no cover
    existing = [f.path for f in planned(None) if f.path.exists()]
    if existing:
        listing = ", ".join(str(path) for path in existing)
        msg = (
            f"output file exists: {listing}; nothing was acquired and the file was left as it "
            "is. Set output.if_exists to overwrite or rename, or change output.name"
        )
        raise FileExistsError_(msg)
    return out.name


def _wait(acquisition: EngineRun) -> None:
    """Wait for the acquisition; Ctrl-C aborts it, waits for its end, and re-raises.

    A second Ctrl-C stops the waiting (the files are still finished by the caller).
    """
    try:
        acquisition.begin()
        while not acquisition.wait(0.1):
            pass
    except KeyboardInterrupt:
        acquisition.abort()
        while not acquisition.wait(0.1):
            pass
        raise


def run_with(engine: Engine, config: RunConfig, *, progress: bool = True) -> RunResult:
    """Run ``config``'s acquisition with ``engine``; see :func:`mmtiffsink.runfile.run`."""
    from tqdm import tqdm

    started = time.monotonic()
    name = output_name(config, engine.planned_files)
    options = config.output.options()
    if options.if_exists == "rename":  # the free name was chosen above, before acquiring
        options = options.replace(if_exists="error")
    channels = engine.channel_names()
    if options.channel_names is None and channels:
        options = options.replace(channel_names=channels)
    expected = engine.expected_frames()
    bar = tqdm(total=expected, unit="frame", desc=name, disable=not progress, leave=True)
    frames = 0

    def on_frame() -> None:
        nonlocal frames
        frames += 1
        bar.update(1)

    acquisition: EngineRun | None = None
    failure: BaseException | None = None
    try:
        with engine.microscope() as core:
            acquisition = engine.acquisition(core, name, options, on_frame)
            _wait(acquisition)
    finally:
        bar.close()
        if acquisition is not None:
            failure = acquisition.close()
    assert acquisition is not None
    error: str | None = None
    if failure is not None:
        error = f"the acquisition failed: {failure}"
    elif frames != expected:
        error = f"the acquisition ended after {frames} of {expected} frames"
    return RunResult(
        files=acquisition.files,
        frames=frames,
        expected_frames=expected,
        elapsed_s=time.monotonic() - started,
        error=error,
    )
