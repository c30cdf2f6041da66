"""IJTiffFile and tiffwrite(): round trips through tifffile, errors, dedup, pool, tiffwrite."""

from __future__ import annotations

import itertools
import random
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmtiffsink import (
    ConfigError,
    CoordinateError,
    FrameError,
    IJTiffFile,
    MissingFramesWarning,
    MMTiffSinkError,
    ProfileError,
    Tag,
    WriterClosedError,
    repair,
    tiffwrite,
)
from mmtiffsink.tiff._pool import pool_users
from tests.writer_support import (
    code,
    coded_frame,
    page_metadata,
    page_plane,
    read_hyperstack,
)

SHAPE = (2, 3, 4)  # C, Z, T
ALL = [(c, z, t) for t in range(SHAPE[2]) for z in range(SHAPE[1]) for c in range(SHAPE[0])]

PROFILES = [
    ("bigtiff", "zstd"),
    ("bigtiff", ("zstd", 9)),
    ("bigtiff", "deflate"),
    ("bigtiff", None),
    ("imagej", "deflate"),
    ("imagej", None),
]


def write_shuffled(path: Path, seed: int = 0, **kwargs: object) -> list[tuple[int, int, int]]:
    order = list(ALL)
    random.Random(seed).shuffle(order)
    with IJTiffFile(path, **kwargs) as tif:  # type: ignore[arg-type]
        for c, z, t in order:
            tif.save(coded_frame(c, z, t), c, z, t, metadata={"c": c, "z": z, "t": t})
    return order


def assert_pixels(data: np.ndarray, dtype: str = "uint16") -> None:
    for c, z, t in ALL:
        np.testing.assert_array_equal(data[t, z, c], coded_frame(c, z, t, dtype=dtype))


@pytest.mark.parametrize(("profile", "compression"), PROFILES)
def test_roundtrip_random_order(tmp_path: Path, profile: str, compression: object) -> None:
    path = tmp_path / "a.tif"
    write_shuffled(
        path,
        shape=SHAPE,
        profile=profile,
        compression=compression,
        pxsize=0.65,
        deltaz=0.5,
        timeinterval=2.5,
    )
    data, meta, tif = read_hyperstack(path)
    with tif:
        assert data.shape == (4, 3, 2, 24, 40)
        assert_pixels(data)
        assert (meta["channels"], meta["slices"], meta["frames"]) == (2, 3, 4)
        assert meta["spacing"] == 0.5
        assert meta["finterval"] == 2.5
        assert "interval" not in meta
        assert meta["unit"] == "micron"
        assert meta.get("hyperstack") is True
        assert tif.is_bigtiff == (profile == "bigtiff")
        page0 = tif.pages[0]
        num, den = page0.tags["XResolution"].value
        assert den / num == pytest.approx(0.65, rel=1e-9)
        # plane order is C fastest, then Z, then T; every frame keeps its coordinates
        for i, page in enumerate(tif.pages):
            c, z, t = ALL[i]
            assert page_plane(page) == (c, z, t)
            assert page_metadata(page) == {"c": c, "z": z, "t": t}
            assert (
                page.compression
                == {"zstd": 50000, "deflate": 8, None: 1}[
                    compression[0] if isinstance(compression, tuple) else compression
                ]
            )
        if profile == "imagej":  # images= always (uncompressed: the planes lie in their slots)
            assert meta["images"] == 24
        else:  # uncompressed bigtiff planes are de-duplicated: never images= there
            assert "images" not in meta or compression is not None


@pytest.mark.parametrize(
    "dtype",
    [
        "uint8",
        "int8",
        "uint16",
        "int16",
        "uint32",
        "int32",
        "uint64",
        "int64",
        "float32",
        "float64",
    ],
)
def test_bigtiff_dtypes(tmp_path: Path, dtype: str) -> None:
    path = tmp_path / "d.tif"
    with IJTiffFile(path, dtype=dtype) as tif:
        for c, z, t in reversed(ALL):
            tif.save(coded_frame(c, z, t, dtype=dtype), c, z, t)
    data, _, f = read_hyperstack(path)
    f.close()
    assert data.dtype == np.dtype(dtype)
    assert_pixels(data, dtype)


@pytest.mark.parametrize("dtype", ["int16", "uint32", "float64", "int8"])
def test_imagej_profile_rejects_dtypes(tmp_path: Path, dtype: str) -> None:
    with pytest.raises(ProfileError, match="uint8, uint16 or float32"):
        IJTiffFile(tmp_path / "x.tif", dtype=dtype, profile="imagej")
    assert not (tmp_path / "x.tif").exists()


def test_imagej_profile_rejects_zstd_and_needs_shape_uncompressed(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="zstd"):
        IJTiffFile(tmp_path / "x.tif", profile="imagej", compression="zstd")
    with pytest.raises(ProfileError, match="shape"):
        IJTiffFile(tmp_path / "x.tif", profile="imagej", compression=None)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_order_any_subset(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    """Random orders and subsets: saved planes exact, the rest blank, counted in a warning."""
    profile, compression = data.draw(st.sampled_from(PROFILES))
    subset = data.draw(st.lists(st.sampled_from(ALL), min_size=1, unique=True))
    declare = (profile == "imagej" and compression is None) or data.draw(st.booleans())
    path = tmp_path_factory.mktemp("h") / "h.tif"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with IJTiffFile(
            path, shape=SHAPE if declare else None, profile=profile, compression=compression
        ) as tif:
            for c, z, t in subset:
                tif.save(coded_frame(c, z, t), c, z, t)
    shape = SHAPE if declare else tuple(max(p[i] for p in subset) + 1 for i in range(3))
    n_planes = shape[0] * shape[1] * shape[2]
    missing = n_planes - len(subset)
    found = [w for w in caught if issubclass(w.category, MissingFramesWarning)]
    if missing:
        assert len(found) == 1
        assert f"{missing} of {n_planes} planes" in str(found[0].message)
    else:
        assert not found
    arr, _, tif_r = read_hyperstack(path)
    with tif_r:
        assert arr.shape[:3] == (shape[2], shape[1], shape[0])
        assert len(tif_r.pages) == n_planes
        for t, z, c in itertools.product(*(range(n) for n in arr.shape[:3])):
            expected = coded_frame(c, z, t) if (c, z, t) in subset else 0
            np.testing.assert_array_equal(arr[t, z, c], expected)


def test_identical_frames_and_tag_values_stored_once(tmp_path: Path) -> None:
    path = tmp_path / "dup.tif"
    frame = np.random.default_rng(1).integers(0, 4000, (256, 256), dtype=np.uint16)
    meta = {"Camera": "Demo", "Note": "x" * 2000}  # a long, repeated tag value
    with IJTiffFile(path, compression=None) as tif:
        for t in range(20):
            tif.save(frame, 0, 0, t, metadata=meta)
    with tifffile.TiffFile(path) as f:
        offsets = {p.dataoffsets[0] for p in f.pages}  # page 0 keeps a copy of its last row
        meta_offsets = {p.tags[51123].valueoffset for p in f.pages[1:]}
        assert len(f.pages) == 20
        assert len(offsets) == 1
        assert len(meta_offsets) == 1
        np.testing.assert_array_equal(f.series[0].asarray()[7], frame)
    assert path.stat().st_size < 2 * frame.nbytes + 40_000


def test_frame_buffer_may_be_reused_after_save(tmp_path: Path) -> None:
    path = tmp_path / "reuse.tif"
    buf = np.zeros((64, 64), np.uint16)
    with IJTiffFile(path) as tif:
        for t in range(30):
            buf[:] = t + 1
            tif.save(buf, 0, 0, t)
    data, _, f = read_hyperstack(path)
    f.close()
    assert [int(data[t, 0, 0, 5, 5]) for t in range(30)] == list(range(1, 31))


def test_colors_and_channel_names(tmp_path: Path) -> None:
    path = tmp_path / "col.tif"
    write_shuffled(
        path,
        shape=SHAPE,
        colors=["magenta", "#00ff00"],
        channel_names=["DAPI", "FITC"],
        comment="hello",
    )
    with tifffile.TiffFile(path) as f:
        meta = f.imagej_metadata
        assert meta is not None
        luts = meta["LUTs"]
        assert len(luts) == 2
        np.testing.assert_array_equal(luts[0][:, 255], [255, 0, 255])
        np.testing.assert_array_equal(luts[1][:, 255], [0, 255, 0])
        np.testing.assert_array_equal(luts[1][:, 0], [0, 0, 0])
        assert meta["mode"] == "composite"
        assert meta["Labels"][:4] == ["DAPI", "FITC", "DAPI", "FITC"]
        assert len(meta["Labels"]) == 24
        assert "hello" in meta["Info"] and "DAPI" in meta["Info"]
        # IJMetadata only in the first IFD (ImageJ 1.x shifts pages otherwise)
        assert all(50839 not in p.tags for p in f.pages[1:])


def test_colormap_from_colorcet(tmp_path: Path) -> None:
    import colorcet

    path = tmp_path / "cm.tif"
    with IJTiffFile(path, colormap="glasbey") as tif:
        tif.save(coded_frame(0, 0, 0), 0, 0, 0)
    with tifffile.TiffFile(path) as f:
        lut = np.asarray(f.imagej_metadata["LUTs"]).reshape(-1, 3, 256)[0]
    first = colorcet.palette["glasbey"][0]
    assert "#{:02x}{:02x}{:02x}".format(*tuple(lut[:, 0])) == first


def test_color_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not both"):
        IJTiffFile(tmp_path / "a.tif", colors=["red"], colormap="fire")
    with pytest.raises(ValueError, match="unknown colorcet colormap"):
        IJTiffFile(tmp_path / "a.tif", colormap="no_such_map")
    with pytest.raises(ValueError, match="unknown color"):
        IJTiffFile(tmp_path / "a.tif", colors=["reddish"])
    assert not (tmp_path / "a.tif").exists()


def test_extratags_global_and_per_frame(tmp_path: Path) -> None:
    path = tmp_path / "tags.tif"
    with IJTiffFile(path, extratags={"Artist": "Jane Doe", 33000: [1, 2, 3]}) as tif:
        tif.save(coded_frame(0, 0, 0), 0, 0, 0, extratags=[Tag.double(33001, [0.5, 1.5])])
        tif.save(coded_frame(0, 0, 1), 0, 0, 1, extratags={"DocumentName": "second"})
    with tifffile.TiffFile(path) as f:
        p0, p1 = f.pages[0], f.pages[1]
        assert p0.tags["Artist"].value == "Jane Doe" == p1.tags["Artist"].value
        assert tuple(p0.tags[33000].value) == (1, 2, 3)
        assert tuple(p0.tags[33001].value) == (0.5, 1.5)
        assert 33001 not in p1.tags
        assert p1.tags["DocumentName"].value == "second"
    with pytest.raises(ValueError, match="tag 256"):
        IJTiffFile(tmp_path / "b.tif", extratags={"ImageWidth": 5})


def test_settings_can_be_set_until_close(tmp_path: Path) -> None:
    path = tmp_path / "late.tif"
    with IJTiffFile(path) as tif:
        tif.save(coded_frame(0, 0, 0), 0, 0, 0)
        tif.pxsize = 0.25
        tif.deltaz = 1.5
        tif.timeinterval = 0.1
        tif.channel_names = ["Cy5"]
        tif.save(coded_frame(0, 1, 0), 0, 1, 0)
    with tifffile.TiffFile(path) as f:
        meta = f.imagej_metadata
        assert meta["spacing"] == 1.5 and meta["finterval"] == 0.1
        num, den = f.pages[0].tags["XResolution"].value
        assert den / num == pytest.approx(0.25)
        assert meta["Labels"] == ["Cy5", "Cy5"]
    with pytest.raises(ValueError, match="positive"):
        IJTiffFile(tmp_path / "n.tif", pxsize=0)


def test_bad_input_errors_leave_file_valid(tmp_path: Path) -> None:
    path = tmp_path / "bad.tif"
    with IJTiffFile(path, shape=(1, 2, 3)) as tif:
        tif.save(coded_frame(0, 0, 0), 0, 0, 0)
        tif.flush()
        with pytest.raises(FrameError, match="differs"):
            tif.save(np.zeros((5, 5), np.uint16), 0, 0, 1)
        with pytest.raises(FrameError, match="2-D"):
            tif.save(np.zeros((2, 24, 40), np.uint16), 0, 0, 1)
        with pytest.raises(FrameError, match="do not fit"):
            tif.save(np.full((24, 40), 70000, np.int64), 0, 0, 1)
        with pytest.raises(FrameError, match="do not fit"):
            tif.save(np.full((24, 40), -1, np.int32), 0, 0, 1)
        with pytest.raises(FrameError, match="NaN"):
            tif.save(np.full((24, 40), np.nan), 0, 0, 1)
        with pytest.raises(CoordinateError, match="negative"):
            tif.save(coded_frame(0, 0, 1), 0, -1, 1)
        with pytest.raises(CoordinateError, match="outside the declared shape"):
            tif.save(coded_frame(0, 0, 1), 0, 2, 0)
        with pytest.raises(CoordinateError, match="already saved"):
            tif.save(coded_frame(0, 0, 0), 0, 0, 0)
        with pytest.raises(CoordinateError, match="integer"):
            tif.save(coded_frame(0, 0, 0), 0, 0.5, 0)  # type: ignore[arg-type]
        # a lossless cast is fine
        tif.save(coded_frame(0, 1, 0).astype(np.float64), 0, 1, 0)
        # every error is an MMTiffSinkError and a ValueError
        with pytest.raises(MMTiffSinkError):
            tif.save(coded_frame(0, 0, 0), 0, 0, 0)
        with pytest.raises(ValueError):
            tif.save(coded_frame(0, 0, 0), 0, 0, 0)
        with pytest.warns(MissingFramesWarning, match="4 of 6"):
            tif.close()
    with pytest.raises(WriterClosedError):
        tif.save(coded_frame(0, 0, 2), 0, 0, 2)
    data, _, f = read_hyperstack(path)
    f.close()
    np.testing.assert_array_equal(data[0, 0, 0], coded_frame(0, 0, 0))
    np.testing.assert_array_equal(data[0, 1, 0], coded_frame(0, 1, 0))


def test_exception_in_block_still_finishes_file(tmp_path: Path) -> None:
    path = tmp_path / "exc.tif"
    with pytest.raises(RuntimeError, match="boom"), IJTiffFile(path) as tif:
        tif.save(coded_frame(0, 0, 0), 0, 0, 0)
        tif.save(coded_frame(0, 0, 1), 0, 0, 1)
        raise RuntimeError("boom")
    data, meta, f = read_hyperstack(path)
    f.close()
    assert data.shape[:3] == (2, 1, 1)
    assert meta["frames"] == 2


def test_overwrite_false(tmp_path: Path) -> None:
    path = tmp_path / "o.tif"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="exists"):
        IJTiffFile(path, overwrite=False)
    assert path.read_bytes() == b"precious"


def test_no_frames_removes_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.tif"
    with pytest.warns(MissingFramesWarning, match="no frame"), IJTiffFile(path):
        pass
    assert not path.exists()


def test_valid_tiff_while_writing_and_repair(tmp_path: Path) -> None:
    path = tmp_path / "live.tif"
    tif = IJTiffFile(path, deltaz=2.0, channel_names=["A", "B"])
    order = [(1, 0, 0), (0, 1, 0), (1, 1, 1), (0, 0, 0)]
    for c, z, t in order:
        tif.save(coded_frame(c, z, t), c, z, t)
    tif.flush()
    # a second reader sees a valid TIFF holding every flushed frame, with its coordinates
    with tifffile.TiffFile(path) as f:
        assert len(f.pages) == 4
        for page in f.pages:
            c, z, t = page_plane(page)
            np.testing.assert_array_equal(page.asarray(), coded_frame(c, z, t))
    # finishing a copy of the unfinished file with repair() gives the hyperstack
    copy = tmp_path / "copy.tif"
    copy.write_bytes(path.read_bytes())
    with pytest.warns(MissingFramesWarning, match="4 of 8"):
        report = repair(copy)
    assert report.frames == 4 and report.shape == (2, 2, 2) and not report.already_finished
    data, meta, f = read_hyperstack(copy)
    f.close()
    assert meta["spacing"] == 2.0 and meta["Labels"][:2] == ["A", "B"]
    for c, z, t in order:
        np.testing.assert_array_equal(data[t, z, c], coded_frame(c, z, t))
    with pytest.warns(MissingFramesWarning):
        tif.close()
    assert repair(path).already_finished


def test_shared_pool_is_joined_after_last_close(tmp_path: Path) -> None:
    assert pool_users() == 0
    a = IJTiffFile(tmp_path / "a.tif")
    b = IJTiffFile(tmp_path / "b.tif", compression="deflate")
    assert pool_users() == 2
    for t in range(5):
        a.save(coded_frame(0, 0, t), 0, 0, t)
        b.save(coded_frame(0, 0, t), 0, 0, t)
    a.close()
    assert pool_users() == 1
    b.close()
    assert pool_users() == 0
    assert not [t for t in threading.enumerate() if t.name.startswith("mmtiffsink")]


def test_compression_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown compression"):
        IJTiffFile(tmp_path / "c.tif", compression="lzw")
    with pytest.raises(ValueError, match="level"):
        IJTiffFile(tmp_path / "c.tif", compression=("zstd", 99))


# ------------------------------------------------------------------ tiffwrite()
@pytest.mark.parametrize(
    ("axes", "shape"),
    [
        ("YX", (24, 40)),
        ("CYX", (2, 24, 40)),
        ("ZCYX", (3, 2, 24, 40)),
        ("TZCYX", (4, 3, 2, 24, 40)),
        ("CTZYX", (2, 4, 3, 24, 40)),
        ("TZCXY", (4, 3, 2, 40, 24)),
    ],
)
def test_tiffwrite_axes(tmp_path: Path, axes: str, shape: tuple[int, ...]) -> None:
    full = np.stack(
        [
            np.stack([np.stack([coded_frame(c, z, t) for c in range(2)]) for z in range(3)])
            for t in range(4)
        ]
    )  # TZCYX
    letters = axes.replace("XY", "yx").replace("YX", "yx")
    index = tuple(slice(None) if a in "TZC" and a in axes else 0 for a in "TZC")
    sub = full[index]
    kept = "".join(a for a in "TZC" if a in axes) + "YX"
    data = np.transpose(sub, [kept.index(a) for a in axes.replace("XY", "YX")])
    if axes.endswith("XY"):
        data = np.swapaxes(data, -1, -2)
    assert data.shape == shape, letters
    path = tmp_path / "tw.tif"
    tiffwrite(path, data, axes, pxsize=0.5)
    out, _, f = read_hyperstack(path)
    f.close()
    np.testing.assert_array_equal(
        out, full[tuple(slice(None) if a in axes else slice(0, 1) for a in "TZC")]
    )


def test_tiffwrite_lazy_inputs_and_bar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import dask.array as da

    mm = np.lib.format.open_memmap(
        tmp_path / "big.npy", mode="w+", dtype=np.uint16, shape=(6, 2, 64, 64)
    )
    for t in range(6):
        for c in range(2):
            mm[t, c] = coded_frame(c, 0, t, (64, 64))
    mm.flush()
    ro = np.load(tmp_path / "big.npy", mmap_mode="r")
    tiffwrite(tmp_path / "m.tif", ro, "TCYX", bar=True)
    assert "Saving tiff" in capsys.readouterr().err
    lazy = da.from_array(ro, chunks=(1, 1, 64, 64))
    tiffwrite(tmp_path / "d.tif", lazy, "TCYX", dtype="float32", compression="deflate")
    for name, dtype in (("m.tif", np.uint16), ("d.tif", np.float32)):
        out, _, f = read_hyperstack(tmp_path / name)
        f.close()
        assert out.dtype == dtype
        np.testing.assert_array_equal(out[:, 0], np.asarray(ro).astype(dtype))


def test_tiffwrite_bad_axes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at most once"):
        tiffwrite(tmp_path / "x.tif", np.zeros((2, 3, 4, 5)), "TTYX")
    with pytest.raises(ValueError, match="plane"):
        tiffwrite(tmp_path / "x.tif", np.zeros((2, 3, 4)), "YXC")


def test_drop_in_for_tiffwrite(tmp_path: Path) -> None:
    """tiffwrite's own calls work unchanged and give the same pixels as tiffwrite's file."""
    import tiffwrite as tw_module

    frames = {(c, z, t): coded_frame(c, z, t) for c, z, t in ALL}
    for module, name in ((tw_module, "theirs.tif"), (None, "ours.tif")):
        cls = module.IJTiffFile if module is not None else IJTiffFile
        tag = (
            module.Tag.ascii(315, "John Doe") if module is not None else Tag.ascii(315, "John Doe")
        )
        with cls(
            tmp_path / name,
            dtype="uint16",
            colors=("red", "green"),
            pxsize=0.2,
            deltaz=0.5,
            timeinterval=3.0,
            compression=("zstd", 10),
            comment="made by me",
            extratags=(tag,),
        ) as tif:
            for (c, z, t), frame in frames.items():
                tif.save(frame, c, z, t)
    theirs = tifffile.imread(tmp_path / "theirs.tif")
    ours = tifffile.imread(tmp_path / "ours.tif")
    np.testing.assert_array_equal(ours, theirs.reshape(ours.shape))
    with tifffile.TiffFile(tmp_path / "ours.tif") as f:
        assert f.pages[0].tags["Artist"].value == "John Doe"
        assert f.imagej_metadata["finterval"] == 3.0
    assert code(1, 2, 3) == int(ours[3, 2, 1, 5, 5])


@pytest.mark.parametrize(("profile", "compression"), PROFILES)
def test_read_frame_while_writing_and_after(tmp_path: Path, profile: str, compression: str) -> None:
    """read_frame returns each plane and its metadata, during writing and after close."""
    shape = (2, 2, 2)
    path = tmp_path / "rb.tif"
    frames = {p: coded_frame(*p) for p in itertools.product(*map(range, shape))}
    with IJTiffFile(path, shape=shape, profile=profile, compression=compression) as tif:
        for (c, z, t), frame in frames.items():
            tif.save(frame, c, z, t, metadata={"plane": [c, z, t]})
            image, metadata = tif.read_frame(c, z, t)  # waits for the worker
            np.testing.assert_array_equal(image, frame)
            assert metadata == {"plane": [c, z, t]}
        with pytest.raises(CoordinateError, match="not saved"):
            tif.read_frame(1, 1, 5)
    for (c, z, t), frame in frames.items():
        image, metadata = tif.read_frame(c, z, t)
        np.testing.assert_array_equal(image, frame)
        assert metadata == {"plane": [c, z, t]}
    with tifffile.TiffFile(path) as reader:  # and the file says the same
        data = reader.series[0].asarray()
    for (c, z, t), frame in frames.items():
        np.testing.assert_array_equal(data[t, z, c], frame)


def test_dedup_indexes_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unique per-frame metadata and frames must not grow the dedup indexes without bound."""
    from mmtiffsink.tiff import _appender

    monkeypatch.setattr(_appender, "_DATA_INDEX_SIZE", 8)
    monkeypatch.setattr(_appender, "_VALUE_INDEX_SIZE", 8)
    blank = np.zeros((8, 8), np.uint16)
    with IJTiffFile(tmp_path / "lru.tif", compression="zstd") as tif:
        for t in range(60):
            frame = blank if t % 2 else coded_frame(0, 0, t, shape=(8, 8))
            tif.save(frame, 0, 0, t, metadata={"ElapsedTime-ms": t * 1.5, "pad": "x" * 64})
        tif.flush()
        assert len(tif._app._data_index) <= 8
        assert len(tif._app._value_index) <= 8
        stored = tif._app.frames_stored
    assert stored == 31  # 30 distinct frames + one blank: the recently used entry stays
    data = tifffile.imread(tmp_path / "lru.tif")
    for t in range(60):
        expected = blank if t % 2 else coded_frame(0, 0, t, shape=(8, 8))
        np.testing.assert_array_equal(data[t], expected)


def test_calibration_names_and_tiffwrite_aliases(tmp_path: Path) -> None:
    """One vocabulary (pixel_size_um, z_step_um, interval_s); tiffwrite's names as aliases;
    numpy scalars wherever numbers are."""
    path = tmp_path / "cal.tif"
    with IJTiffFile(
        path, pixel_size_um=np.float32(0.65), z_step_um=np.float64(0.5), interval_s=2
    ) as tif:
        assert tif.pixel_size_um == pytest.approx(0.65) and tif.pxsize == tif.pixel_size_um
        assert tif.z_step_um == 0.5 and tif.deltaz == tif.delta_z == 0.5
        assert tif.interval_s == 2.0 and tif.timeinterval == tif.time_interval == 2.0
        tif.interval_s = np.float32(3.0)
        assert tif.timeinterval == 3.0
        tif.save(coded_frame(0, 0, 0), 0, 0, 0)
    _, meta, f = read_hyperstack(path)
    f.close()
    assert meta["finterval"] == 3.0 and meta["spacing"] == 0.5
    with IJTiffFile(
        tmp_path / "alias.tif", pxsize=np.float32(0.25), deltaz=1, timeinterval=4
    ) as tif:
        assert (tif.pixel_size_um, tif.z_step_um, tif.interval_s) == (0.25, 1.0, 4.0)
        tif.save(coded_frame(0, 0, 0), 0, 0, 0)
    with pytest.raises(ConfigError, match="pixel_size_um or tiffwrite's pxsize"):
        IJTiffFile(tmp_path / "both.tif", pixel_size_um=1, pxsize=1)
    with pytest.raises(ConfigError, match="z_step_um"):
        IJTiffFile(tmp_path / "bad.tif", z_step_um=-1)
    with pytest.raises(ConfigError, match="interval_s"):
        tif.interval_s = float("nan")


@pytest.mark.parametrize(
    ("profile", "compression", "rgb"),
    [
        ("bigtiff", "zstd", False),
        ("bigtiff", None, False),
        ("imagej", "deflate", False),
        ("imagej", None, False),
        ("ome", "zstd", False),
        ("ome", None, False),
        ("bigtiff", "zstd", True),
        ("bigtiff", None, True),
    ],
)
def test_ifd_template_writes_what_the_general_path_writes(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    profile: str,
    compression: str | None,
    rgb: bool,
) -> None:
    """A plain frame's IFD comes from a template filled in place; the file it makes is byte
    for byte the one the general IFD encoder makes (frames out of order, a repeated frame,
    frames with metadata among plain ones, and in ``ome`` a second series). Uncompressed
    frames have two strips: inline in a BigTIFF (the template), out of line in a classic TIFF
    (the general path)."""
    from mmtiffsink.tiff import _appender

    used: list[int] = []

    def write(path: Path) -> bytes:
        with IJTiffFile(
            path,
            profile=profile,  # type: ignore[arg-type]
            compression=compression,
            dtype="uint8" if rgb else "uint16",
            shape=(2, 2, 2) if profile == "imagej" and compression is None else None,
            acquisition_date="2026-12-07T10:00:00+00:00" if profile == "ome" else None,
        ) as tif:
            for i, (c, z, t) in enumerate(ORDER):
                frame = coded_frame(c, z, t)
                if rgb:
                    frame = np.stack([frame.astype(np.uint8)] * 3, axis=-1)
                metadata = {"i": i} if i % 3 == 2 else None
                blank = i in (5, 7)  # the same frame twice: stored once
                tif.save(np.zeros_like(frame) if blank else frame, c, z, t, metadata=metadata)
            if profile == "ome":
                tif.save(np.zeros_like(frame), 0, 0, 0, series=1)
                tif.save(coded_frame(1, 1, 1), 1, 0, 0, series=1)
        used.append(len(tif._app._templates))
        return path.read_bytes()

    ORDER = [(1, 0, 0), (0, 0, 0), (0, 1, 0), (1, 1, 1), (0, 0, 1), (1, 0, 1), (0, 1, 1), (1, 1, 0)]

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    templated = write(tmp_path / "a" / "f.tif")  # one name: the OME-XML holds it
    monkeypatch.setattr(_appender, "_TEMPLATES", False)
    general = write(tmp_path / "b" / "f.tif")
    assert templated == general
    assert used[0] > 0 and used[1] == 0  # the template was used, and then not
