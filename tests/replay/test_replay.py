"""NDTiff replay: datasets written by ndstorage and by a real pycro-manager acquisition.

Sources are real NDTiff datasets (ndstorage's writer, or pycro-manager saving a demo-camera
acquisition with ``directory=``); outputs are read back with tifffile (pixels, calibration,
channel labels, per-image metadata) and, for the acquisition, with Bio-Formats. Damaged
datasets are made by cutting or deleting real files, and by rewriting the index with
tifffile's independent NDTiff index parser.
"""

from __future__ import annotations

import gc
import json
import pickle
import struct
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import pytest
import tifffile

from mmtiffsink.cli import main
from mmtiffsink.errors import (
    ConfigError,
    DatasetError,
    FileExistsError_,
    MissingFramesWarning,
    ProfileError,
)
from mmtiffsink.ndtiff import (
    ReplayOptions,
    ReplayResult,
    format_results,
    replay,
    replay_many,
    split_replay_paths,
)
from mmtiffsink.sink._sink import DEFAULT
from mmtiffsink.tiff import Codec
from tests.readers import bioformats_info
from tests.replay_support import (
    CHANNELS,
    HEIGHT,
    WIDTH,
    Source,
    _tif,
    allow_blank_planes,
    check_position,
    make_dataset,
    read_output,
    two_file_dataset,
)


# ------------------------------------------------------------------------------ good datasets
def test_replay_ndstorage_dataset(tmp_path: Path) -> None:
    """Two positions, named channels out of alphabetical order, z and time, pycro-manager keys."""
    source = make_dataset(tmp_path / "src", "exp")
    out = tmp_path / "out"
    result = replay(source.path, out, progress=False)
    assert result.ok and result.error is None
    assert result.dataset == source.path
    assert result.frames == 2 * 2 * 3 * 3
    assert result.files == [out / "exp_1_0.tif", out / "exp_1_1.tif"]
    assert result.elapsed_s > 0
    for p, path in enumerate(result.files):
        output = check_position(source, path, p, CHANNELS)
        assert output.data.shape == (2, 3, 3, HEIGHT, WIDTH)
        assert output.data.dtype == np.uint16
        assert output.labels == list(CHANNELS) * 6
        assert output.pixel_size == pytest.approx(0.65)
        assert output.spacing == pytest.approx(1.5)
        assert output.finterval == pytest.approx(2.5)


def test_replay_studio_summary_integer_channels_uint8(tmp_path: Path) -> None:
    """Micro-Manager Studio summary keys (PixelSizeUm, z-step_um, Interval_ms, ChNames) win."""
    summary = {
        "PixelSizeUm": 0.325,
        "z-step_um": 0.75,
        "Interval_ms": 500.0,
        "ChNames": ["GFP", "BF"],
        "PixelType": "GRAY8",
    }
    source = make_dataset(
        tmp_path / "src",
        "studio",
        positions=("Pos-A",),
        channels=(0, 1),
        summary=summary,
        dtype="uint8",
        pixel_size=0.0,  # Micro-Manager's "uncalibrated" in every image: the summary decides
        z_step=9.0,  # contradicted by z-step_um, which wins
        interval_ms=9000.0,  # contradicted by Interval_ms, which wins
    )
    result = replay(source.path / "NDTiff.index", tmp_path / "out", ReplayOptions(name="s"))
    assert result.files == [tmp_path / "out" / "s_Pos-A.tif"]
    output = check_position(source, result.files[0], "Pos-A", (0, 1))
    assert output.data.dtype == np.uint8
    assert output.labels == ["GFP", "BF"] * 6
    assert output.pixel_size == pytest.approx(0.325)
    assert output.spacing == pytest.approx(0.75)
    assert output.finterval == pytest.approx(0.5)


def test_full_resolution_layout(tmp_path: Path) -> None:
    """Multi-resolution datasets keep the full-resolution images in ``Full resolution/``."""
    source = make_dataset(tmp_path / "src", "pyr", positions=(0,), channels=("A", "B"), nt=1)
    full = source.path / "Full resolution"
    full.mkdir()
    for item in list(source.path.iterdir()):
        if item != full:
            item.rename(full / item.name)
    result = replay(source.path, tmp_path / "out", progress=False)
    assert result.files == [tmp_path / "out" / "pyr_1_0.tif"]
    check_position(source, result.files[0], 0, ("A", "B"))


def test_options_pickle_keeps_default_compression() -> None:
    """ReplayOptions travel to dask workers; DEFAULT must stay the sink's sentinel."""
    options = pickle.loads(pickle.dumps(ReplayOptions(profile="imagej")))
    assert options.compression is DEFAULT
    assert options.profile == "imagej"
    explicit = pickle.loads(pickle.dumps(ReplayOptions(compression=None, overwrite=True)))
    assert explicit.compression == Codec("none", 0) and explicit.overwrite
    assert explicit.if_exists == "overwrite"


@pytest.mark.parametrize(
    ("compression", "profile", "codec"),
    [("deflate", "imagej", 8), (("zstd", 9), "bigtiff", 50000), (None, "bigtiff", 1)],
)
def test_replay_profile_and_compression(
    tmp_path: Path, compression: Any, profile: Any, codec: int
) -> None:
    source = make_dataset(tmp_path / "src", "c", positions=(0,), channels=("A",), nz=2, nt=1)
    options = ReplayOptions(profile=profile, compression=compression, template="{name}.tif")
    result = replay(source.path, tmp_path, options, progress=False)
    with tifffile.TiffFile(result.files[0]) as tif:
        assert tif.is_bigtiff == (profile == "bigtiff")
        assert tif.pages[0].compression == codec
    check_position(source, result.files[0], 0, ("A",))


def test_bad_options_refused_before_writing(tmp_path: Path) -> None:
    source = make_dataset(tmp_path / "src", "o", positions=(0,), channels=("A",), nz=1, nt=1)
    out = tmp_path / "out"
    with pytest.raises(ProfileError, match="needs each file's shape"):
        replay(source.path, out, ReplayOptions(profile="imagej", compression=None))
    with pytest.raises(ConfigError, match="unknown compression 'lzw'"):
        replay_many([source.path], out, ReplayOptions(compression="lzw"), progress=False)
    with pytest.raises(ConfigError, match="bogus"):
        ReplayOptions(bogus=1)
    with pytest.raises(ConfigError, match="workers must be at least 1"):
        replay_many([source.path], out, workers=0, progress=False)
    assert not out.exists()


# ------------------------------------------------------------------------------ a real acquisition
@pytest.mark.acquisition
@pytest.mark.readers
def test_replay_demo_acquisition(microscope: Any, tmp_path: Path, bioformats_jar: Path) -> None:
    """A demo-camera acquisition saved by pycro-manager as NDTiff, replayed and compared."""
    from ndstorage import Dataset
    from pycromanager import Acquisition, multi_d_acquisition_events

    from tests.microscope import set_objective

    set_objective(microscope, "20X")
    events = multi_d_acquisition_events(
        num_time_points=2,
        time_interval_s=0.2,
        z_start=0,
        z_end=2,
        z_step=1,
        channel_group="Channel",
        channels=["FITC", "DAPI"],
    )
    with warnings.catch_warnings():
        # ndstorage 0.1.18's writer never closes the reader it opens on its own file; the
        # file object is dropped in the acquisition's thread at finish()
        warnings.simplefilter("ignore", ResourceWarning)
        with Acquisition(directory=str(tmp_path), name="demo", show_display=False) as acq:
            acq.acquire(events)
        gc.collect()
    acq_path = Path(acq.get_dataset().path)
    acq.get_dataset().close()

    result = replay(acq_path, tmp_path / "out", progress=False)
    assert result.ok, result.error
    assert result.frames == 12
    assert result.files == [tmp_path / "out" / f"{acq_path.name}.tif"]
    output = read_output(result.files[0])
    assert output.data.shape[:3] == (2, 3, 2)
    assert output.labels == ["FITC", "DAPI"] * 6
    assert output.pixel_size == pytest.approx(0.5)
    assert output.spacing == pytest.approx(1.0)
    assert output.finterval == pytest.approx(0.2, rel=0.3)

    # the source, read by ndstorage's own reader
    source = Dataset(str(acq_path))
    try:
        for t in range(2):
            for z in range(3):
                for c, channel in enumerate(["FITC", "DAPI"]):
                    image = source.read_image(channel=channel, z=z, time=t)
                    metadata = source.read_metadata(channel=channel, z=z, time=t)
                    np.testing.assert_array_equal(output.data[t, z, c], image)
                    assert output.metadata[(t * 3 + z) * 2 + c] == metadata
    finally:
        source.close()

    info = bioformats_info(result.files[0], bioformats_jar)
    assert info.shape == (2, 3, 2, *output.data.shape[3:])
    assert info.physical_size_x == pytest.approx(0.5)
    assert info.physical_size_z == pytest.approx(1.0)
    assert info.time_increment == pytest.approx(output.finterval)


# ------------------------------------------------------------------------------ damaged datasets
def _cut(path: Path, nbytes: int) -> None:
    with path.open("r+b") as fh:
        fh.truncate(path.stat().st_size - nbytes)


def _cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    status = main(["replay", *(str(a) for a in args)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return status, captured.out, captured.err


def test_cli_writes_a_preview_beside_each_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = make_dataset(tmp_path / "src", "pv", positions=(0, 1), nt=1)
    status, out, _ = _cli(capsys, source.path, tmp_path / "with", "--no-progress")
    assert status == 0
    pngs = sorted((tmp_path / "with").glob("*.preview.png"))
    assert [p.name for p in pngs] == ["pv_1_0.preview.png", "pv_1_1.preview.png"]
    for png in pngs:
        assert f"preview: {png}" in out
        assert imagecodecs.png_decode(png.read_bytes()).any()
    status, out, _ = _cli(
        capsys, source.path, tmp_path / "without", "--no-progress", "--no-preview"
    )
    assert status == 0 and "preview:" not in out
    assert not list((tmp_path / "without").glob("*.png"))


@allow_blank_planes
def test_index_points_past_end_of_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The tif was cut (a copy interrupted): the last image lies past its end."""
    source = make_dataset(tmp_path / "src", "cut", positions=(0, 1), nt=1)
    _cut(_tif(source), 300)  # into the last image's metadata, pixels of the others intact
    last = source.order[-1]
    missing = {(last["position"], last["time"], last["z"], last["channel"])}

    with pytest.raises(DatasetError) as info:
        replay(source.path, tmp_path / "api", progress=False)
    message = str(info.value)
    assert "1 of 18 images could not be read" in message
    assert "index entry 17" in message and "past the end of cut_NDTiffStack.tif" in message
    assert "17 frames were written" in message and "api/cut_1_1.tif" in message
    for p in (0, 1):
        check_position(source, tmp_path / "api" / f"cut_1_{p}.tif", p, CHANNELS, missing)

    status, out, err = _cli(capsys, source.path, tmp_path / "cli", "--no-progress")
    assert status == 1
    assert "FAILED" in out + err and "past the end of cut_NDTiffStack.tif" in out + err
    assert "cli/cut_1_1.tif" in out + err  # partial files reported
    check_position(source, tmp_path / "cli" / "cut_1_1.tif", 1, CHANNELS, missing)


@allow_blank_planes
def test_truncated_index(tmp_path: Path) -> None:
    """The index is cut mid-entry (a crashed writer): every entry before it is converted."""
    source = make_dataset(tmp_path / "src", "trunc", positions=(0,), nt=2)
    _cut(source.path / "NDTiff.index", 7)
    (result,) = replay_many([source.path], tmp_path / "out", progress=False)
    assert not result.ok and result.error is not None
    assert "NDTiff.index is truncated in entry 17" in result.error
    assert "the 17 entries before it were converted" in result.error
    assert result.frames == 17
    last = source.order[-1]
    missing = {(0, last["time"], last["z"], last["channel"])}
    check_position(source, result.files[0], 0, CHANNELS, missing)


def _rewrite_index(index: Path, offsets: dict[int, int]) -> None:
    """Rewrite NDTiff.index (parsed by tifffile) with other pixel offsets for some entries."""
    entries = list(tifffile.read_ndtiff_index(index))
    with index.open("wb") as fh:
        for number, (axes, filename, *fields) in enumerate(entries):
            fields[0] = offsets.get(number, fields[0])
            raw_axes = json.dumps(axes).encode()
            raw_name = filename.encode()
            fh.write(struct.pack("<I", len(raw_axes)) + raw_axes)
            fh.write(struct.pack("<I", len(raw_name)) + raw_name)
            fh.write(struct.pack("<8I", *fields))


@allow_blank_planes
def test_missing_tiff(tmp_path: Path) -> None:
    """Position 1 lives in a second tif that was deleted: position 0 is still converted."""
    source = two_file_dataset(tmp_path / "src", "two")
    assert replay(source.path, tmp_path / "whole", progress=False).frames == 18
    (source.path / "two_NDTiffStack_1.tif").unlink()
    (result,) = replay_many([source.path], tmp_path / "out", progress=False)
    assert result.error is not None
    assert "9 of 18 images could not be read" in result.error
    assert "two_NDTiffStack_1.tif is missing (9 images listed in it)" in result.error
    assert result.files == [tmp_path / "out" / "two_1_0.tif"]
    check_position(source, result.files[0], 0, CHANNELS)

    # every tif gone: nothing is written, and the error says why
    (source.path / "two_NDTiffStack.tif").unlink()
    with pytest.raises(DatasetError, match=r"two_NDTiffStack\.tif is missing"):
        replay(source.path, tmp_path / "none", progress=False)
    assert not (tmp_path / "none").exists() or not any((tmp_path / "none").iterdir())


def test_not_a_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    a_file = tmp_path / "notes.txt"
    a_file.write_text("hello")
    empty_index = tmp_path / "noimages"
    empty_index.mkdir()
    (empty_index / "NDTiff.index").write_bytes(b"")
    cases = {
        empty: "is not an NDTiff dataset: it has no NDTiff.index",
        a_file: "is not an NDTiff dataset",
        tmp_path / "nowhere": "nowhere: no such file",
        empty_index: "holds no images",
    }
    for path, text in cases.items():
        with pytest.raises(DatasetError, match=text):
            replay(path, tmp_path / "out", progress=False)
        status, out, err = _cli(capsys, path, tmp_path / "out", "--no-progress")
        assert status == 1
        assert text in out + err
    assert not (tmp_path / "out").exists()


def test_output_exists(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = make_dataset(tmp_path / "src", "ex", positions=(0, 1), nt=1, nz=1)
    out = tmp_path / "out"
    first = replay(source.path, out, progress=False)
    # only the second position's file is in the way: still nothing may be written
    first.files[0].unlink()
    before = first.files[1].stat().st_mtime_ns
    with pytest.raises(FileExistsError_, match=r"the output exists: .*ex_1_1\.tif; nothing") as err:
        replay(source.path, out, progress=False)
    assert 'if_exists="rename" to write the dataset under a new name: ex_1_1, ...' in str(err.value)
    renamed = replay(source.path, out, ReplayOptions(if_exists="rename"), progress=False)
    assert [f.name for f in renamed.files] == ["ex_1_1_0.tif", "ex_1_1_1.tif"]
    assert not first.files[0].exists()
    assert first.files[1].stat().st_mtime_ns == before

    status, stdout, stderr = _cli(capsys, source.path, out, "--no-progress")
    assert status == 1 and "the output exists" in stdout + stderr
    status, stdout, stderr = _cli(capsys, source.path, out, "--no-progress", "--overwrite")
    assert status == 0, stdout + stderr
    for p, path in enumerate(first.files):
        check_position(source, path, p, CHANNELS)

    # an output directory that is a file
    with pytest.raises(FileExistsError_, match="not a directory"):
        replay(source.path, first.files[0], progress=False)


def test_split_replay_paths(tmp_path: Path) -> None:
    one = make_dataset(tmp_path, "one", positions=(0,), channels=("A",), nz=1, nt=1).path
    two = make_dataset(tmp_path, "two", positions=(0,), channels=("A",), nz=1, nt=1).path
    assert split_replay_paths([one], None) == ([one], one.resolve().parent)
    assert split_replay_paths([one, tmp_path / "o"], None) == ([one], tmp_path / "o")
    assert split_replay_paths([one, two], tmp_path / "o") == ([one, two], tmp_path / "o")
    with pytest.raises(DatasetError, match="is an NDTiff dataset, not an output directory"):
        split_replay_paths([one, two], None)
    with pytest.raises(DatasetError, match="3 paths given without --out"):
        split_replay_paths([one, two, tmp_path / "o"], None)

    # `replay DATASET` writes beside the dataset
    result = replay(one, None, progress=False)
    assert result.files == [tmp_path / "one_1_0.tif"]


# ------------------------------------------------------------------------------ many datasets
@pytest.fixture
def three(tmp_path: Path) -> Iterator[tuple[Source, Path, Source]]:
    """Two good datasets and, between them, one whose tif was deleted."""
    good_a = make_dataset(tmp_path / "src", "a", positions=(0, 1), nt=2)
    bad = make_dataset(tmp_path / "src", "bad", positions=(0,), nt=1, nz=1)
    _tif(bad).unlink()
    good_b = make_dataset(tmp_path / "src", "b", positions=(0,), channels=("DAPI", "BF"))
    yield good_a, bad.path, good_b


def _check_good(result: ReplayResult, source: Source, channels: Sequence[str]) -> None:
    assert result.ok, result.error
    assert result.frames == len(source.frames)
    positions = sorted({key[0] for key in source.frames})
    assert len(result.files) == len(positions)
    for position, path in zip(positions, result.files, strict=True):
        check_position(source, path, position, channels)


def test_replay_many_one_bad(
    tmp_path: Path, three: tuple[Source, Path, Source], capsys: pytest.CaptureFixture[str]
) -> None:
    good_a, bad, good_b = three
    results = replay_many(
        [good_a.path, bad, good_b.path], tmp_path / "out", workers=2, progress=False
    )
    assert [r.dataset for r in results] == [good_a.path, bad, good_b.path]
    _check_good(results[0], good_a, CHANNELS)
    _check_good(results[2], good_b, ("DAPI", "BF"))
    assert not results[1].ok and results[1].files == [] and results[1].frames == 0
    assert "bad_NDTiffStack.tif is missing" in (results[1].error or "")
    text = format_results(results)
    assert "3 datasets: 2 converted, 1 failed" in text
    assert f"{bad}: FAILED" in text and "bad_NDTiffStack.tif is missing" in text
    assert str(tmp_path / "out" / "a_1_1.tif") in text

    # the command line, with its progress bar on stderr
    status, out, err = _cli(
        capsys, good_a.path, bad, good_b.path, "--out", tmp_path / "cli", "--workers", "2"
    )
    assert status == 1
    assert "3 datasets: 2 converted, 1 failed" in out
    assert "48/48" in err  # one bar over the frames of the readable datasets (36 + 12)
    assert (tmp_path / "cli" / "b_1_0.tif").exists()


def test_replay_many_same_name(tmp_path: Path) -> None:
    """Two datasets that would write the same files: the second is refused, not clobbered."""
    a = make_dataset(tmp_path / "x", "same", positions=(0,), channels=("A",), nz=1, nt=1)
    b = make_dataset(tmp_path / "y", "same", positions=(0,), channels=("A",), nz=1, nt=1)
    first, second = replay_many([a.path, b.path], tmp_path / "out", progress=False)
    assert first.ok and first.files == [tmp_path / "out" / "same_1_0.tif"]
    assert second.error is not None and "would be named 'same_1' in" in second.error
    check_position(a, first.files[0], 0, ("A",))


def test_replay_many_local_cluster(tmp_path: Path, three: tuple[Source, Path, Source]) -> None:
    """One task per dataset on a dask.distributed LocalCluster (2 worker processes, loopback)."""
    distributed = pytest.importorskip("distributed")
    good_a, bad, good_b = three
    start = time.monotonic()
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",  # a free port: another cluster may hold 8787
    )
    try:
        results = replay_many(
            [good_a.path, bad, good_b.path],
            tmp_path / "out",
            scheduler=cluster.scheduler_address,
            progress=False,
        )
    finally:
        cluster.close()
    _check_good(results[0], good_a, CHANNELS)
    _check_good(results[2], good_b, ("DAPI", "BF"))
    assert "bad_NDTiffStack.tif is missing" in (results[1].error or "")
    assert time.monotonic() - start < 30


def test_unreachable_scheduler(
    tmp_path: Path, three: tuple[Source, Path, Source], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mmtiffsink.errors import MMTiffSinkError
    from mmtiffsink.ndtiff import _replay as replay_module

    monkeypatch.setattr(replay_module, "_CONNECT_TIMEOUT_S", 1.0)  # 15 s otherwise
    good_a, _, _ = three
    with pytest.raises(MMTiffSinkError, match="cannot connect to the dask scheduler"):
        replay_many([good_a.path], tmp_path / "out", scheduler="tcp://127.0.0.1:1", progress=False)


def test_blank_planes_warning(tmp_path: Path) -> None:
    """An unreadable image inside the hyperstack is a blank plane, and the writer says so."""
    source = make_dataset(tmp_path / "src", "w", positions=(0,), channels=("A",), nz=2, nt=1)
    _rewrite_index(source.path / "NDTiff.index", {0: 1 << 30})
    with pytest.warns(MissingFramesWarning, match="1 of 2 planes"):
        (result,) = replay_many([source.path], tmp_path / "out", progress=False)
    assert result.error is not None and "index entry 0" in result.error
    assert "(bytes 1073741824-1073742304) lie past the end" in result.error
    assert result.frames == 1
    check_position(source, result.files[0], 0, ("A",), missing={(0, 0, 0, "A")})


def test_negative_z_from_ndstorage_replays_in_order(tmp_path: Path) -> None:
    """ndstorage's unordered z axis (and explore datasets) store negative z: planes in order."""
    from ndstorage import NDTiffDataset

    dataset = NDTiffDataset(str(tmp_path / "src"), name="negz", writable=True)
    dataset.initialize({"PixelSize_um": 0.5, "PixelType": "GRAY16"})
    zs = [0, -2, 1, -1]  # acquired out of order, below and above the start
    for z in zs:
        image = np.full((6, 8), 100 + z, dtype=np.uint16)
        axes = {"z": z, "time": 0}
        dataset.put_image(
            axes, image, {"Axes": axes, "PixelSize_um": 0.5, "ZPosition_um_Intended": 0.5 * z}
        )
    writer = dataset.current_writer
    dataset.finish()
    dataset.close()
    writer.reader.close()  # ndstorage 0.1.18's writer never closes the reader it opens
    (result,) = replay_many([Path(dataset.path)], tmp_path / "out", progress=False)
    assert result.ok, result.error
    with tifffile.TiffFile(result.files[0]) as tif:
        data = tif.series[0].asarray()
        assert tif.imagej_metadata["slices"] == 4
        assert tif.imagej_metadata["spacing"] == pytest.approx(0.5)
    np.testing.assert_array_equal(data[:, 0, 0], [98, 99, 100, 101])  # z = -2, -1, 0, 1


class _Server:
    """A local TCP server for --scheduler: silent (accepts, never answers) or an HTTP service."""

    def __init__(self, kind: str) -> None:
        import http.server
        import socket
        import threading

        self.kind = kind
        self.held: list[Any] = []
        self.stop = threading.Event()
        if kind == "http":
            self.httpd = http.server.HTTPServer(
                ("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler
            )
            self.port = self.httpd.server_address[1]
            self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        else:
            self.sock = socket.create_server(("127.0.0.1", 0))
            self.port = self.sock.getsockname()[1]
            self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        self.sock.settimeout(0.05)  # a blocked accept() would outlive close()
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            if self.kind == "greets":
                conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
            self.held.append(conn)

    def close(self) -> None:
        if self.kind == "http":
            self.httpd.shutdown()
            self.httpd.server_close()
        self.stop.set()
        self.thread.join(5)
        assert not self.thread.is_alive()
        if self.kind != "http":
            self.sock.close()
        for conn in self.held:  # every connection it took, now that it takes no more
            conn.close()


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("silent", "accepts connections but sent no dask greeting in 1 s"),
        ("http", "accepts connections but sent no dask greeting in 1 s"),
        ("greets", r"answered b'SSH-2.0-': it is not a dask scheduler"),
    ],
)
def test_scheduler_that_does_not_speak_dask(
    kind: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TCP service that is not dask: a one-line error in about the timeout, never a hang."""
    pytest.importorskip("distributed")
    from mmtiffsink.errors import MMTiffSinkError
    from mmtiffsink.ndtiff import _replay as replay_module

    monkeypatch.setattr(replay_module, "_CONNECT_TIMEOUT_S", 1.0)
    dataset = Path(__file__).parents[1] / "data" / "ndstorage" / "v3" / "ndtiffv3.0_test"
    server = _Server(kind)
    try:
        start = time.monotonic()
        with pytest.raises(MMTiffSinkError, match=message):
            replay_many(
                [dataset],
                tmp_path / "out",
                scheduler=f"tcp://127.0.0.1:{server.port}",
                progress=False,
            )
        assert time.monotonic() - start < 10
    finally:
        server.close()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "address",
    ["tcp://nonsense:::1", "foo://bar", "tcp://127.0.0.1", "127.0.0.1:99999", "tcp://:8786"],
)
def test_malformed_scheduler_address(
    address: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A malformed address is one error line at once, and nothing runs on afterwards."""
    pytest.importorskip("distributed")
    import threading

    dataset = Path(__file__).parents[1] / "data" / "ndstorage" / "v3" / "ndtiffv3.0_test"
    threads = threading.active_count()
    start = time.monotonic()
    code = main(["replay", str(dataset), "--out", str(tmp_path), "--scheduler", address])
    assert code != 0 and time.monotonic() - start < 5
    err = capsys.readouterr().err
    assert "is not a dask scheduler address" in err and "Traceback" not in err
    assert threading.active_count() == threads  # no connection thread left to raise later
