"""Real acquisitions on the demo microscope through TiffSink: calibration, order, errors, memory.

Three routes into the sink, as a user plugs them (Python backend, DemoCamera):

* hook: ``Acquisition(directory=None, image_process_fn=...)`` calling ``sink.image_process_fn``;
* storage: :class:`~mmtiffsink.pycromanager.TiffStorage` as the Python backend's dataset;
* tiffacq: :class:`~mmtiffsink.pycromanager.TiffAcquisition` (the packaged storage route).

The Java backend's calling convention is checked without a microscope at the end of the file.

Frames are stamped with their own arrival number and (c, z, t) in their first pixels
(:class:`tests.acquisition_support.Recorder`) because the demo camera's wave pattern repeats every
8 frames: without the stamp a misplaced frame could go unseen.
"""

from __future__ import annotations

import itertools
import random
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import tifffile

from mmtiffsink.errors import CoordinateError, FileExistsError_, MissingFramesWarning
from mmtiffsink.pycromanager import TiffStorage
from mmtiffsink.sink import TiffSink
from tests.acquisition_support import (
    Recorder,
    assert_planes,
    read_hyperstack,
    stamp,
    storage_route,
)
from tests.microscope import (
    DEFAULT_HEIGHT,
    DEFAULT_WIDTH,
    multi_d_events,
    reset_demo,
    set_objective,
)
from tests.readers import bioformats_info

pytestmark = pytest.mark.timeout(120)

Route = Literal["hook", "storage", "tiffacq"]
#: hook: sink.image_process_fn; storage: TiffStorage as the engine's dataset; tiffacq: the
#: packaged TiffAcquisition (TiffStorage with abort-on-error).
ROUTES: tuple[Route, ...] = ("hook", "storage", "tiffacq")


@dataclass
class Run:
    """What an acquisition through one route left: frames seen, sink, storage, error raised."""

    recorder: Recorder
    sink: TiffSink
    storage: TiffStorage | None
    error: Exception | None


def _run(
    route: Route,
    directory: Path,
    name: str,
    events: Any,
    monkeypatch: pytest.MonkeyPatch,
    *,
    recorder: Recorder | None = None,
    started: list[Any] | None = None,
    **options: Any,
) -> Run:
    """Acquire ``events`` by ``route`` into files ``directory/name*.tif``.

    Every frame goes through ``recorder`` (stamped, recorded) first: the hook route forwards it
    to ``sink.image_process_fn``; the storage routes pass it on to the engine's dataset, a
    :class:`TiffStorage`. ``started`` receives the acquisition as soon as it exists (to abort
    it). ``options`` go to the sink. The error the ``with`` blocks raised, if any, is returned,
    not raised; the sink is closed either way.
    """
    from pycromanager import Acquisition

    from mmtiffsink.pycromanager import TiffAcquisition

    recorder = recorder if recorder is not None else Recorder()
    began = started.append if started is not None else (lambda acq: None)
    storage: TiffStorage | None = None
    if route == "tiffacq":
        # the sink's default for an existing file (TiffAcquisition's own default renames)
        options = {"if_exists": "error", **options}
        acquisition = TiffAcquisition(directory, name, image_process_fn=recorder, **options)
        sink, storage = acquisition.sink, acquisition.storage
    else:
        sink = TiffSink(directory, name, **options)
    try:
        if route == "tiffacq":
            with acquisition as acq:
                began(acq)
                acq.acquire(events)
        elif route == "hook":
            recorder.forward = sink.image_process_fn
            with sink, Acquisition(directory=None, image_process_fn=recorder) as acq:
                began(acq)
                acq.acquire(events)
        else:
            storage = TiffStorage(sink)
            with (
                sink,
                storage_route(storage, monkeypatch),
                Acquisition(directory=None, image_process_fn=recorder) as acq,
            ):
                began(acq)
                acq.acquire(events)
    except Exception as exc:
        return Run(recorder, sink, storage, exc)
    return Run(recorder, sink, storage, None)


def _events(
    order: list[tuple[int, str, int]], z_um: list[float], interval_s: float | None = None
) -> list[dict[str, Any]]:
    """Acquisition events for ``(t, channel, z index)`` in the given order."""
    events = []
    for t, channel, z in order:
        event: dict[str, Any] = {
            "axes": {"time": t, "channel": channel, "z": z},
            "config_group": ["Channel", channel],
            "z": z_um[z],
        }
        if interval_s is not None:
            event["min_start_time"] = t * interval_s
        events.append(event)
    return events


def _observed_intervals(frames: list[tuple[np.ndarray, dict[str, Any]]]) -> list[float]:
    """Seconds between consecutive time points of the same (channel, z), as the camera ran."""
    elapsed = {
        (f[1]["Axes"]["time"], f[1]["Axes"]["channel"], f[1]["Axes"]["z"]): f[1]["ElapsedTime-ms"]
        for f in frames
    }
    return [
        (elapsed[(t + 1, c, z)] - ms) / 1000.0
        for (t, c, z), ms in elapsed.items()
        if (t + 1, c, z) in elapsed
    ]


# ------------------------------------------------------------------ 1. calibration, Bio-Formats


@pytest.mark.acquisition
@pytest.mark.readers
@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    ("profile", "compression"), [("bigtiff", "zstd"), ("imagej", "deflate")], ids=["bigtiff", "ij"]
)
def test_calibration_read_back(
    microscope: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    bioformats_jar: Path,
    route: Route,
    profile: Literal["bigtiff", "imagej"],
    compression: str,
) -> None:
    """40X, z step 0.5 um, 0.25 s interval: tifffile and Bio-Formats read what the scope did."""
    pixel_size = set_objective(microscope, "40X")
    microscope.set_exposure(1.0)
    channels = ["FITC", "DAPI"]  # not alphabetical: names must keep the acquisition's order
    events = multi_d_events(
        num_time_points=3,
        time_interval_s=0.25,
        z_start=0,
        z_end=1.0,
        z_step=0.5,
        channel_group="Channel",
        channels=channels,
    )
    run = _run(
        route, tmp_path, "cal", events, monkeypatch, profile=profile, compression=compression
    )
    assert run.error is None
    recorder = run.recorder
    path = tmp_path / "cal.tif"
    assert run.sink.files == [path]
    assert len(recorder.frames) == 18
    assert {f[1]["PixelSize_um"] for f in recorder.frames} == {pixel_size}

    stack = read_hyperstack(path, (3, 3, 2))
    assert_planes(stack, recorder.frames, channels)
    assert stack.labels == channels * 9
    assert stack.pixel_size == pytest.approx(0.25)
    assert stack.spacing == pytest.approx(0.5)
    observed = _observed_intervals(recorder.frames)
    assert len(observed) == 12
    assert stack.finterval is not None
    assert min(observed) - 1e-6 <= stack.finterval <= max(observed) + 1e-6
    assert stack.finterval == pytest.approx(0.25, rel=0.3)

    info = bioformats_info(path, bioformats_jar)
    assert info.shape == (3, 3, 2, DEFAULT_HEIGHT, DEFAULT_WIDTH)
    assert info.pixel_type == "uint16"
    assert info.physical_size_x == pytest.approx(pixel_size)
    assert info.physical_size_y == pytest.approx(pixel_size)
    assert info.physical_size_z == pytest.approx(0.5)
    assert info.time_increment == pytest.approx(stack.finterval, rel=1e-6)


# ------------------------------------------------------------------ 2. out-of-order arrival

_CHANNELS = ("DAPI", "FITC")
_Z_UM = [0.0, 1.5, 3.0, 4.5]


def _order(kind: str) -> list[tuple[int, str, int]]:
    """(t, channel, z) in an order that is not the file's plane order."""
    if kind == "shuffled":
        order = list(itertools.product(range(3), _CHANNELS, range(4)))
        random.Random(20240611).shuffle(order)
        return order
    if kind == "z_descending":
        return [(t, c, z) for t in range(3) for c in _CHANNELS for z in reversed(range(4))]
    # time points out of order, each interleaving channels and z its own way
    return (
        [(2, c, z) for z in range(4) for c in _CHANNELS]
        + [(0, c, z) for c in reversed(_CHANNELS) for z in range(4)]
        + [(1, c, z) for z in reversed(range(4)) for c in reversed(_CHANNELS)]
    )


@pytest.mark.acquisition
@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("kind", ["shuffled", "z_descending", "interleaved"])
def test_out_of_order_arrival(
    microscope: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, route: Route, kind: str
) -> None:
    """Frames arriving in any order land on their planes; channel order follows first arrival."""
    microscope.set_exposure(1.0)
    order = _order(kind)
    run = _run(route, tmp_path, kind, _events(order, _Z_UM), monkeypatch)
    assert run.error is None
    arrived = [
        (m["Axes"]["time"], m["Axes"]["channel"], m["Axes"]["z"]) for _, m in run.recorder.frames
    ]
    assert arrived == order  # the engine kept the requested order
    first_channel = order[0][1]
    channels = run.sink.channel_names
    assert channels == [first_channel, *(c for c in _CHANNELS if c != first_channel)]
    stack = read_hyperstack(tmp_path / f"{kind}.tif", (3, 4, 2))
    assert_planes(stack, run.recorder.frames, channels)
    assert stack.labels == channels * 12
    assert stack.spacing == pytest.approx(1.5)
    assert stack.pixel_size == pytest.approx(1.0)


@pytest.mark.acquisition
def test_out_of_order_with_stated_channel_order(
    microscope: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """channel_names fixes the channel order however the channels arrive (FITC first here)."""
    microscope.set_exposure(1.0)
    order = [(t, c, z) for t in reversed(range(2)) for c in ("FITC", "DAPI") for z in range(2)]
    events = _events(order, _Z_UM)
    run = _run("hook", tmp_path, "stated", events, monkeypatch, channel_names=["DAPI", "FITC"])
    assert run.error is None
    stack = read_hyperstack(tmp_path / "stated.tif", (2, 2, 2))
    assert_planes(stack, run.recorder.frames, ["DAPI", "FITC"])
    assert stack.labels == ["DAPI", "FITC"] * 4


# ------------------------------------------------------------------ 3. errors and aborts


def _two_positions(order: str = "tpcz") -> list[dict[str, Any]]:
    events = multi_d_events(
        xy_positions=[[0, 0], [10, 10]],
        z_start=0,
        z_end=2,
        z_step=1,
        channel_group="Channel",
        channels=list(_CHANNELS),
        order=order,
    )
    return events


@pytest.mark.acquisition
def test_user_hook_error_leaves_valid_files(microscope: Any, tmp_path: Path) -> None:
    """The user's function raises at frame 9: pycro-manager's error, every file finished."""
    from pycromanager import Acquisition

    microscope.set_exposure(1.0)
    events = _two_positions(order="tpzc")  # position 1: z0 DAPI, z0 FITC, z1 DAPI | z1 FITC...
    sink = TiffSink(tmp_path, "err")
    recorder = Recorder(forward=sink.image_process_fn, fail_from=9)
    failed = "exception in image processor: user processing failed at frame 9"
    with (
        pytest.warns(MissingFramesWarning, match=r"1 of 4 planes .*err_1\.tif") as warned,
        pytest.raises(Exception, match=failed) as raised,
        sink,
        Acquisition(directory=None, image_process_fn=recorder) as acq,
    ):
        acq.acquire(events)
    assert type(raised.value) is Exception  # pycro-manager's wrapper, not ours
    assert len(warned) == 1
    assert sink.closed
    assert sink.files == [tmp_path / "err_0.tif", tmp_path / "err_1.tif"]
    assert len(recorder.frames) == 9
    assert recorder.calls >= 9
    by_position: dict[int, list[tuple[np.ndarray, dict[str, Any]]]] = {0: [], 1: []}
    for frame in recorder.frames:
        by_position[frame[1]["Axes"]["position"]].append(frame)
    full = read_hyperstack(tmp_path / "err_0.tif", (1, 3, 2))
    assert_planes(full, by_position[0], list(_CHANNELS))
    partial = read_hyperstack(tmp_path / "err_1.tif", (1, 2, 2))
    assert len(by_position[1]) == 3
    assert_planes(partial, by_position[1], list(_CHANNELS))  # z1 FITC is the blank plane


@pytest.fixture
def failing_case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A writer failure at position 1: its file exists (``exists``) or a repeated coordinate."""
    kind = request.param
    events = _two_positions()
    if kind == "exists":
        blocker = tmp_path / f"{kind}_1.tif"
        blocker.write_bytes(b"somebody else's data")
        yield {
            "kind": kind,
            "events": events,
            "error": FileExistsError_,
            "match": r"exists_1\.tif exists; pass overwrite=True",
            "saved": {0: 6, 1: 0},
        }
        assert blocker.read_bytes() == b"somebody else's data"
    else:
        repeat = dict(events[-2])  # position 1, FITC, z 1 again
        yield {
            "kind": kind,
            "events": [*events, repeat],
            "error": CoordinateError,
            "match": r"plane \(c, z, t\)=\(1, 1, 0\) was already saved to .*repeat_1\.tif",
            "saved": {0: 6, 1: 6},
        }


@pytest.mark.acquisition
@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("failing_case", ["exists", "repeat"], indirect=True)
def test_writer_error_reaches_user(
    microscope: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    failing_case: dict[str, Any],
    route: Route,
) -> None:
    """A writer error stops the acquisition and reaches the user, naming its cause.

    hook: pycro-manager aborts and its ``with`` raises its own ``Exception`` carrying the
    message; ``with sink`` raises the writer's error instead, the wrapper as its context;
    storage: the engine finishes, ``TiffStorage.close()`` raises the writer's error;
    tiffacq: ``with TiffAcquisition`` raises the writer's error itself. Nothing hangs (the
    test's timeout and a 30 s bound), and the files written before are complete and valid.
    """
    microscope.set_exposure(1.0)
    kind, error, match = failing_case["kind"], failing_case["error"], failing_case["match"]
    start = time.monotonic()
    run = _run(route, tmp_path, kind, failing_case["events"], monkeypatch)
    assert time.monotonic() - start < 30
    if route == "hook":
        # pycro-manager wraps the hook's error in a bare Exception; `with sink` raises ours
        assert isinstance(run.error, error), repr(run.error)
        assert re.search(match, str(run.error))
        wrapper = run.error.__context__
        assert type(wrapper) is Exception
        assert re.search("exception in image processor: .*" + match, str(wrapper))
    elif route == "storage":
        assert run.error is None
        assert run.storage is not None
        assert isinstance(run.storage.error, error)
        with pytest.raises(error, match=match):
            run.storage.close()
        with pytest.raises(error, match=match):  # and again: the error stays
            run.storage.close()
    else:
        assert isinstance(run.error, error), repr(run.error)
        assert re.search(match, str(run.error))
    assert run.sink.closed
    saved = failing_case["saved"]
    names = [tmp_path / f"{kind}_{p}.tif" for p in (0, 1) if saved[p]]
    assert run.sink.files == names
    for position, path in enumerate(names):
        # hook: the recorder keeps only the frames the sink accepted; storage routes: every
        # frame passed on, the failing one and any dropped after it included
        frames = [f for f in run.recorder.frames if f[1]["Axes"]["position"] == position]
        if route == "hook":
            assert len(frames) == saved[position]
        stack = read_hyperstack(path, (1, 3, 2))
        assert_planes(stack, frames[: saved[position]], list(_CHANNELS))


@pytest.mark.acquisition
@pytest.mark.parametrize("route", ROUTES)
def test_abort_leaves_valid_file(
    microscope: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, route: Route
) -> None:
    """acq.abort() after 20 frames (storage route: from the hook; others: from a thread)."""
    events = multi_d_events(num_time_points=400, time_interval_s=0.001)
    started: list[Any] = []
    reached = threading.Event()
    recorder = Recorder()
    aborter: threading.Thread | None = None
    if route == "storage":
        recorder.on_frame = lambda n: started[0].abort() if n == 20 else None
    else:
        recorder.on_frame = lambda n: reached.set() if n == 20 else None

        def abort_when_reached() -> None:
            if reached.wait(timeout=60):
                started[0].abort()

        aborter = threading.Thread(target=abort_when_reached, daemon=True)
        aborter.start()
    run = _run(route, tmp_path, "abort", events, monkeypatch, recorder=recorder, started=started)
    assert run.error is None
    if aborter is not None:
        aborter.join(timeout=10)
        assert not aborter.is_alive()
    assert run.sink.closed
    n = len(recorder.frames)
    assert 21 <= n < 400, n
    if run.storage is not None:
        run.storage.close()
        stored = run.storage.get_image_coordinates_list()
        assert stored == [m["Axes"] for _, m in recorder.frames[: len(stored)]]
        n = len(stored)
    times = [m["Axes"]["time"] for _, m in recorder.frames[:n]]
    assert times == list(range(n))
    stack = read_hyperstack(tmp_path / "abort.tif", (n, 1, 1))
    assert_planes(stack, recorder.frames[:n], [])


# ------------------------------------------------------------------ 4. memory

MEMORY_FRAMES = 2000
MEMORY_SIDE = 512
MEMORY_BOUND_MB = 64
SAMPLE_EVERY = 100
BASELINE_FRAME = 300


@pytest.mark.acquisition
def test_memory_flat_over_2000_frames(microscope: Any, tmp_path: Path) -> None:
    """2,000 frames of 512x512 uint16 (1 GiB raw) through the hook with zstd: RSS stays flat."""
    import psutil
    from pycromanager import Acquisition

    reset_demo(microscope, width=MEMORY_SIDE, height=MEMORY_SIDE, exposure_ms=0.1)
    process = psutil.Process()
    samples: list[tuple[int, float]] = []
    keep_at = {0, 777, 1500, MEMORY_FRAMES - 1}
    kept: dict[int, np.ndarray] = {}
    count = 0
    start = time.monotonic()
    with TiffSink(tmp_path, "mem", compression="zstd") as sink:

        def hook(image: np.ndarray, metadata: dict[str, Any]) -> None:
            nonlocal count
            # the demo's wave repeats every 8 frames: stamp the frame number so that frames
            # differ (no de-duplication) and misplaced ones show
            stamped = stamp(image, count % 65536, count // 65536)
            if count in keep_at:
                kept[metadata["Axes"]["time"]] = stamped
            sink.image_process_fn(stamped, metadata)
            count += 1
            if count % SAMPLE_EVERY == 0:
                samples.append((count, process.memory_info().rss / 2**20))

        # a (tiny) interval makes the engine snap frame by frame instead of running a camera
        # sequence: a sequence overflows the 64 MB circular buffer (128 frames of 512x512) as
        # soon as a loaded machine consumes slower than the camera makes frames
        events = multi_d_events(num_time_points=MEMORY_FRAMES, time_interval_s=1e-4)
        with Acquisition(directory=None, image_process_fn=hook) as acq:
            acq.acquire(events)
    elapsed = time.monotonic() - start
    print(
        f"\nRSS (MB) every {SAMPLE_EVERY} frames of {MEMORY_SIDE}x{MEMORY_SIDE} uint16, zstd, "
        f"{elapsed:.1f} s: " + ", ".join(f"{n}: {rss:.0f}" for n, rss in samples)
    )
    assert count == MEMORY_FRAMES
    assert len(samples) == MEMORY_FRAMES // SAMPLE_EVERY
    baseline = dict(samples)[BASELINE_FRAME]
    growth = max(rss for n, rss in samples if n >= BASELINE_FRAME) - baseline
    assert growth <= MEMORY_BOUND_MB, (
        f"RSS grew by {growth:.0f} MB after frame {BASELINE_FRAME}: {samples}"
    )

    with tifffile.TiffFile(tmp_path / "mem.tif") as tif:
        assert tif.is_imagej
        assert tif.imagej_metadata is not None
        assert tif.imagej_metadata.get("frames", tif.imagej_metadata.get("images")) == (
            MEMORY_FRAMES
        )
        assert len(tif.pages) == MEMORY_FRAMES
        assert tif.series[0].shape == (MEMORY_FRAMES, MEMORY_SIDE, MEMORY_SIDE)
        assert sorted(kept) == sorted(keep_at)
        for t, image in kept.items():
            page = tif.pages[t]
            assert isinstance(page, tifffile.TiffPage)
            np.testing.assert_array_equal(page.asarray(), image, err_msg=f"frame {t}")


# ------------------------------------------------------------------ 5. Java backend convention


class _Sockets:
    """In-memory stand-ins for pyjavaz's ``PullSocket``/``PushSocket``.

    The Java backend needs a running Micro-Manager Java application (it talks to AcqEngJ over
    ZeroMQ), which cannot run here; only the two sockets are replaced, so pycro-manager's own
    ``_run_image_processor`` (reshape, ``_call_image_process_fn``, ``process_and_sendoff``) runs
    unchanged on messages shaped as AcqEngJ sends them.
    """

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.incoming = [*messages, {"special": "finished"}]
        self.sent: list[dict[str, Any]] = []

    def pull(self, port: int, debug: bool = False) -> Any:
        sockets = self

        class Pull:
            def receive(self, timeout: float = 0, suppress_debug_message: bool = False) -> Any:
                return sockets.incoming.pop(0)

            def close(self) -> None:
                pass

        return Pull()

    def push(self, port: int, debug: bool = False) -> Any:
        sockets = self

        class Push:
            def send(self, message: Any, suppress_debug_message: bool = False) -> None:
                sockets.sent.append(message)

            def close(self) -> None:
                pass

        return Push()


class _JavaAcquisition:
    """The attributes of ``JavaBackendAcquisition`` that ``_run_image_processor`` uses."""

    def __init__(self) -> None:
        from pycromanager.acquisition.acquisition_superclass import Acquisition

        self._event_queue = None
        self._process_fn: Any = None
        self.aborted: list[BaseException | None] = []
        self._call = Acquisition._call_image_process_fn

    def _call_image_process_fn(self, image: Any, metadata: Any) -> Any:
        return self._call(self, image, metadata)

    def abort(self, exception: BaseException | None = None) -> None:
        self.aborted.append(exception)


def _java_messages() -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """AcqEngJ image messages: t (2) x z (3) x channel (2), metadata as the Java side builds it."""
    rng = np.random.default_rng(7)
    messages, images = [], []
    for t, channel, z in itertools.product(range(2), _CHANNELS, range(3)):
        image = rng.integers(0, 4096, (DEFAULT_HEIGHT, DEFAULT_WIDTH), dtype=np.uint16)
        metadata = {
            "Axes": {"time": t, "channel": channel, "z": z},
            "Camera": "Camera",
            "Channel": channel,
            "PixelSizeUm": 0.25,  # MMCoreJ's key
            "PixelSize_um": 0.25,  # AcqEngJ's key
            "ZPosition_um_Intended": 0.75 * z,
            "Z-Position": 0.75 * z + 0.001,  # the stage device's property, as read back
            "ElapsedTime-ms": 2000.0 * t + 10.0 * (3 * _CHANNELS.index(channel) + z),
            "Exposure": 10.0,
            "Frame": 0,  # MMCoreJ's index keys: constant 0 in pycro-manager's Java backend
            "SliceIndex": 0,
            "ChannelIndex": 0,
            "PositionIndex": 0,
            "Width": DEFAULT_WIDTH,
            "Height": DEFAULT_HEIGHT,
            "PixelType": "GRAY16",
            "BitDepth": 16,
        }
        messages.append(
            {"metadata": metadata, "pixels": {"type": "short-array", "value": image.tobytes()}}
        )
        images.append(image)
    return messages, images


@pytest.mark.parametrize("pass_through", [False, True])
def test_java_backend_calling_convention(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pass_through: bool
) -> None:
    """``sink.image_process_fn`` under pycro-manager's Java-backend image processor loop.

    No microscope here: see :class:`_Sockets` for why the two sockets are stand-ins.
    """
    from pycromanager.acquisition import java_backend_acquisitions as java

    messages, images = _java_messages()
    sockets = _Sockets([dict(m, metadata=dict(m["metadata"])) for m in messages])
    monkeypatch.setattr(java, "PullSocket", sockets.pull)
    monkeypatch.setattr(java, "PushSocket", sockets.push)
    acquisition = _JavaAcquisition()
    with TiffSink(tmp_path, "java", pass_through=pass_through) as sink:
        java._run_image_processor(
            acquisition, 0, 0, threading.Event(), sink.image_process_fn, None, False
        )
    assert acquisition.aborted == []  # process_and_sendoff accepted every returned value
    assert sockets.sent[-1] == {"special": "finished"}
    sent = sockets.sent[:-1]
    if pass_through:
        assert len(sent) == len(images)
        for message, original, image in zip(sent, messages, images, strict=True):
            assert message["pixels"] == image.tobytes()
            assert message["metadata"]["Axes"] == original["metadata"]["Axes"]
            assert message["metadata"]["PixelType"] == "GRAY16"
    else:
        assert sent == []
    stack = read_hyperstack(tmp_path / "java.tif", (2, 3, 2))
    frames = [(image, m["metadata"]) for image, m in zip(images, messages, strict=True)]
    assert_planes(stack, frames, list(_CHANNELS))
    assert stack.pixel_size == pytest.approx(0.25)
    assert stack.spacing == pytest.approx(0.75)
    assert stack.finterval == pytest.approx(2.0)
    assert stack.labels == list(_CHANNELS) * 6


def test_java_convention_direct_call(tmp_path: Path) -> None:
    """The hook called directly as the Java backend does: returns a 2-tuple of the same dtype."""
    messages, images = _java_messages()
    with TiffSink(tmp_path, "direct", pass_through=True) as sink:
        for message, image in zip(messages, images, strict=True):
            metadata = dict(message["metadata"])
            returned = sink.image_process_fn(image, metadata)
            assert isinstance(returned, tuple)
            assert len(returned) == 2
            assert returned[0].dtype == image.dtype
            assert returned[1] is metadata
    stack = read_hyperstack(tmp_path / "direct.tif", (2, 3, 2))
    frames = [(image, m["metadata"]) for image, m in zip(images, messages, strict=True)]
    assert_planes(stack, frames, list(_CHANNELS))
