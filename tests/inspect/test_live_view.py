"""Live views in the writing process: IJTiffFile.view, TiffSink.view, TiffHandler.get_view."""

from __future__ import annotations

import logging
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

from mmtiffsink import IJTiffFile, TiffSink
from mmtiffsink.tiff import Following
from tests.writer_support import coded_frame


@pytest.mark.parametrize(
    ("compression", "keep_up"), [("zstd", False), ("zstd:1+predictor", True), (None, False)]
)
def test_file_view_follows_the_frames(
    tmp_path: Path, compression: str | None, keep_up: bool
) -> None:
    path = tmp_path / "a.tif"
    with IJTiffFile(path, compression=compression, keep_up=keep_up, channel_names=["A"]) as tif:
        view = tif.view()
        assert view.shape == (0, 0, 0, 0, 0)
        seen: list[tuple[tuple[int, ...], int]] = []
        lock = threading.Lock()

        def changed() -> None:  # in the writer's thread, as a GUI's callback runs
            with lock:
                seen.append((view.shape, int(view.written.sum())))

        view.coords_changed.connect(changed)
        for t in range(6):
            for z in range(2):
                tif.save(coded_frame(0, z, t), 0, z, t)
            tif.flush()
            assert view.shape == (t + 1, 2, 1, 24, 40)
            assert view.written.sum() == 2 * (t + 1)
            np.testing.assert_array_equal(view[t, 1, 0], coded_frame(0, 1, t))
        view.coords_changed.disconnect(changed)
        assert len(seen) == 12  # one call per frame linked
        counts = [n for _, n in seen]  # each call sees its frame (and those linked with it)
        assert counts == sorted(counts) and all(n >= i + 1 for i, n in enumerate(counts))
        assert seen[-1][0] == (6, 2, 1, 24, 40)
    assert not view.closed
    assert view.finished
    for t in range(6):
        np.testing.assert_array_equal(view[t, :, 0], [coded_frame(0, z, t) for z in range(2)])
    assert view.channel_names == ["A"]
    view.close()


def test_a_failing_callback_never_harms_the_writer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "a.tif"
    calls = []

    def bad() -> None:
        calls.append(1)
        raise RuntimeError("a GUI bug")

    with caplog.at_level(logging.ERROR), IJTiffFile(path) as tif:
        view = tif.view()
        view.coords_changed.connect(bad)
        for t in range(3):
            tif.save(coded_frame(0, 0, t), 0, 0, t)
    assert len(calls) == 3
    assert "a GUI bug" in caplog.text
    np.testing.assert_array_equal(view[2, 0, 0], coded_frame(0, 0, 2))
    view.close()


def test_a_closed_view_stops_listening(tmp_path: Path) -> None:
    with IJTiffFile(tmp_path / "a.tif") as tif:
        view = tif.view()
        view.close()
        tif.save(coded_frame(0, 0, 0), 0, 0, 0)
        tif.flush()
        assert tif._app.listeners == []  # removed at the first frame after its close
        with pytest.raises(ValueError, match="closed"):
            view[0]


def test_series_views(tmp_path: Path) -> None:
    with IJTiffFile(tmp_path / "a.ome.tif", profile="ome") as tif:
        views = [tif.view(0), tif.view(1)]
        counts = [0, 0]
        for s in (0, 1):
            views[s].coords_changed.connect(lambda s=s: counts.__setitem__(s, counts[s] + 1))
        for t in range(3):
            tif.save(coded_frame(0, 0, t), 0, 0, t)
        tif.save(coded_frame(1, 0, 0), 0, 0, 0, series=1)
        tif.flush()
        assert counts == [3, 1]
        assert views[0].shape[:3] == (3, 1, 1) and views[1].shape[:3] == (1, 1, 1)
        np.testing.assert_array_equal(views[1][0, 0, 0], coded_frame(1, 0, 0))
    for v in views:
        v.close()


def test_sink_view_before_and_after_its_file(tmp_path: Path) -> None:
    with TiffSink(tmp_path, "exp", compression="zstd") as sink:
        first = sink.view()
        second = sink.view(1)
        assert isinstance(first, Following) and not first.attached
        assert first.shape == (0, 0, 0, 0, 0)
        hits: list[int] = []
        first.coords_changed.connect(lambda: hits.append(1))
        for t in range(2):
            for pos in ("A1", "B2"):
                for c, ch in enumerate(("DAPI", "FITC")):
                    value = coded_frame(c, 0, t) + (100 if pos == "B2" else 0)
                    sink.put(value, {"position": pos, "channel": ch, "time": t})
        sink.flush()
        assert first.attached and second.attached
        assert first.shape == (2, 1, 2, 24, 40)
        assert len(hits) == 1 + 4  # attached, then one per frame of its file
        by_path = sink.view(sink.files[1])
        for t in range(2):
            for c in range(2):
                np.testing.assert_array_equal(first[t, 0, c], coded_frame(c, 0, t))
                np.testing.assert_array_equal(by_path[t, 0, c], coded_frame(c, 0, t) + 100)
                np.testing.assert_array_equal(second[t, 0, c], by_path[t, 0, c])
    assert first.finished
    # the names the sink learnt are the file's from its finish (or a frame saved after them)
    assert first.channel_names == ["DAPI", "FITC"]
    for v in (first, second, by_path):
        v.close()


def test_ndv_follows_a_live_view(tmp_path: Path) -> None:
    """ndv (what pymmcore-gui shows a sink's view in) reads the view's dims, coords and planes,
    and sees it grow once told (``dims_changed``, as a coords_changed callback does)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ndv = pytest.importorskip("ndv")  # the viewers extra
        DataWrapper = ndv.DataWrapper

    with IJTiffFile(tmp_path / "a.tif") as tif:
        view = tif.view()
        tif.save(coded_frame(0, 0, 0), 0, 0, 0)
        tif.flush()
        wrapper = DataWrapper.create(view)
        assert wrapper.dims == ("T", "Z", "C", "Y", "X")
        assert wrapper.sizes() == {"T": 1, "Z": 1, "C": 1, "Y": 24, "X": 40}
        view.coords_changed.connect(wrapper.dims_changed.emit)
        tif.save(coded_frame(0, 0, 1), 0, 0, 1)
        tif.flush()
        assert wrapper.sizes()["T"] == 2
        np.testing.assert_array_equal(wrapper.isel({0: 1, 1: 0, 2: 0}), coded_frame(0, 0, 1))
    view.close()
