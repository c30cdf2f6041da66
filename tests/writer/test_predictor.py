"""The horizontal-differencing predictor (TIFF tag 317 = 2) as a writer option.

Files are written by mmtiffsink and read back by tifffile (its own predictor decoding), by
the raw codec (the stored bytes must be TIFF predictor 2: each row differenced from its left
neighbour, with wrap-around), by the writer's own ``read_frame``, and through ``info`` and a
``TiffSink``. Bio-Formats checks live in ``tests/profiles/test_codec_readers.py``; repair of a
killed predictor file in ``tests/crash/test_crash.py``; previews in
``tests/inspect/test_preview.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import pytest
import tifffile

from mmtiffsink import IJTiffFile, MissingFramesWarning, repair
from mmtiffsink.errors import ConfigError, ProfileError
from mmtiffsink.inspect import file_info
from mmtiffsink.ndtiff import ReplayOptions
from mmtiffsink.sink import SinkOptions, TiffSink
from mmtiffsink.tiff import DEFAULT, Codec, Profile
from tests.predictor_support import extreme_frames
from tests.writer_support import page_plane

INTEGER_DTYPES = ["uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64"]
CODECS = ["zstd:1", "zstd:3", "deflate:1", "deflate:6"]


def smooth_frame(shape: tuple[int, int] = (128, 160)) -> np.ndarray:
    """A microscopy-like uint16 frame: offset, smooth profile, shot noise."""
    rng = np.random.default_rng(2)
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    image = 300.0 + 2000.0 * np.exp(-((y - 60) ** 2 + (x - 70) ** 2) / 2000.0)
    return rng.poisson(image).astype(np.uint16)


# ------------------------------------------------------------------------------ round trips
# OME has no 64-bit integer pixel type
PROFILE_DTYPES = [("bigtiff", d) for d in INTEGER_DTYPES] + [
    ("ome", d) for d in INTEGER_DTYPES if not d.endswith("64")
]


@pytest.mark.parametrize("compression", CODECS)
@pytest.mark.parametrize(("profile", "dtype"), PROFILE_DTYPES)
def test_roundtrip_every_integer_dtype_and_codec(
    tmp_path: Path, profile: str, dtype: str, compression: str
) -> None:
    path = tmp_path / "pred.tif"
    data = extreme_frames(dtype)
    options: dict[str, Any] = {"dtype": dtype, "profile": profile, "compression": compression}
    with IJTiffFile(path, predictor=True, **options) as tif:
        assert tif.compression == Codec.parse(compression + "+predictor")
        for t in (2, 0, 1):  # not plane order: the final chain copies the IFDs
            tif.save(data[t], 0, 0, t)
        frame, _ = tif.read_frame(0, 0, 2)
        np.testing.assert_array_equal(frame, data[2])
    frame, _ = tif.read_frame(0, 0, 0)  # after close too
    np.testing.assert_array_equal(frame, data[0])
    with tifffile.TiffFile(path) as f:
        assert len(f.pages) == 3
        for page in f.pages:
            assert page.predictor == 2
            t = page_plane(page)[2]
            np.testing.assert_array_equal(page.asarray(), data[t])
        np.testing.assert_array_equal(f.series[0].asarray().reshape(data.shape), data)
    assert file_info(path).codec == compression.split(":")[0] + "+predictor"


@pytest.mark.parametrize("compression", ["zstd:1", "deflate:1"])
def test_stored_bytes_are_tiff_predictor_2(tmp_path: Path, compression: str) -> None:
    """Undo the codec alone: the strip holds each row's differences, as TIFF 6.0 defines them."""
    path = tmp_path / "raw.tif"
    frame = smooth_frame()
    with IJTiffFile(path, compression=compression, predictor=True) as tif:
        tif.save(frame, 0, 0, 0)
    with tifffile.TiffFile(path) as f:
        page = f.pages[0]
        (offset,), (count,) = page.dataoffsets, page.databytecounts
        f.filehandle.seek(offset)
        raw = f.filehandle.read(count)
    decode = imagecodecs.zstd_decode if compression.startswith("zstd") else imagecodecs.zlib_decode
    stored = np.frombuffer(decode(raw), "<u2").reshape(frame.shape)
    expected = frame.copy()
    expected[:, 1:] = frame[:, 1:] - frame[:, :-1]  # uint16 arithmetic: wraps like TIFF's
    np.testing.assert_array_equal(stored, expected)


def test_predictor_makes_microscopy_frames_smaller(tmp_path: Path) -> None:
    frame = smooth_frame((256, 256))
    sizes = {}
    for predictor in (False, True):
        path = tmp_path / f"p{predictor}.tif"
        with IJTiffFile(path, compression="zstd:1", predictor=predictor) as tif:
            tif.save(frame, 0, 0, 0)
        with tifffile.TiffFile(path) as f:
            sizes[predictor] = f.pages[0].databytecounts[0]
    assert sizes[True] < 0.97 * sizes[False], sizes


def test_blank_planes_of_a_predictor_file(tmp_path: Path) -> None:
    path = tmp_path / "gaps.tif"
    data = extreme_frames("uint16", 2)
    warns = pytest.warns(MissingFramesWarning, match="2 of 4")
    with warns, IJTiffFile(path, shape=(1, 2, 2), predictor=True) as tif:
        tif.save(data[0], 0, 0, 0)
        tif.save(data[1], 0, 1, 1)
    with tifffile.TiffFile(path) as f:
        stack = f.series[0].asarray().reshape(2, 2, *data.shape[1:])
        assert all(page.predictor == 2 for page in f.pages)
    np.testing.assert_array_equal(stack[0, 0], data[0])
    np.testing.assert_array_equal(stack[1, 1], data[1])
    assert not stack[0, 1].any() and not stack[1, 0].any()


def test_repair_of_an_unfinished_predictor_file(tmp_path: Path) -> None:
    """A copy of a flushed, open file (what a kill leaves; a real kill is in test_crash.py)."""
    path = tmp_path / "live.tif"
    data = extreme_frames("uint16", 3)
    tif = IJTiffFile(path, compression="deflate:1", predictor=True, pxsize=0.5)
    for t in (1, 0, 2):
        tif.save(data[t], 0, 0, t)
    tif.flush()
    copy = tmp_path / "copy.tif"
    copy.write_bytes(path.read_bytes())
    tif.close()
    assert file_info(copy).finished is False
    assert file_info(copy).codec == "deflate+predictor"
    report = repair(copy)
    assert report.frames == 3 and report.shape == (1, 1, 3)
    info = file_info(copy)
    assert info.finished and info.codec == "deflate+predictor"
    with tifffile.TiffFile(copy) as f:
        assert [p.predictor for p in f.pages] == [2, 2, 2]
        np.testing.assert_array_equal(f.series[0].asarray(), data)


# ------------------------------------------------------------------------------ the option
def test_codec_text_form_parses_back() -> None:
    codec = Codec.parse("zstd:1+predictor")
    assert codec == Codec("zstd", 1, predictor=True)
    assert str(codec) == "zstd:1+predictor"
    assert Codec.parse(str(codec)) == codec
    assert Codec.parse(" Deflate + PREDICTOR ") == Codec("deflate", 1, predictor=True)
    assert Codec.parse("zstd:-5") == Codec("zstd", -5)  # '+' or '-' of a level is a sign
    assert Codec.parse("zstd:+5") == Codec("zstd", 5)
    assert Codec.from_dict(codec.to_dict()) == codec
    assert Codec.from_dict({"name": "zstd", "level": 1}) == Codec("zstd", 1)
    assert Codec.from_tiff(50000, 2) == Codec("zstd", 3, predictor=True)
    assert Codec.from_tiff(8) == Codec("deflate", 1)
    assert codec.tiff_predictor == 2 and Codec("zstd", 1).tiff_predictor == 1


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("none+predictor", "compression=None has none"),
        ("zstd+pred", "unknown compression 'zstd\\+pred'.*'zstd:1\\+predictor'"),
        ("zstd:1+predictor+predictor", "level after ':' must be an integer"),
        (("zstd+predictor", 1), "unknown compression"),
    ],
)
def test_bad_predictor_texts(value: Any, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        Codec.parse(value)


def test_bad_predictor_values() -> None:
    with pytest.raises(ConfigError, match="predictor is True or False"):
        Codec("zstd", 1, predictor=1)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="predictor 3 is not one mmtiffsink writes"):
        Codec.from_tiff(50000, 3)
    with pytest.raises(ConfigError, match="predictor is True or False"):
        Profile.get("bigtiff").codec("zstd", predictor="yes")  # type: ignore[arg-type]


def test_predictor_keyword_adds_to_the_profiles_codec(tmp_path: Path) -> None:
    bigtiff = Profile.get("bigtiff")
    assert bigtiff.codec(DEFAULT, predictor=True) == bigtiff.default_codec.with_predictor()
    assert bigtiff.codec("deflate:6", predictor=True) == Codec("deflate", 6, predictor=True)
    assert bigtiff.codec("zstd:1+predictor") == Codec("zstd", 1, predictor=True)  # False: as said
    with IJTiffFile(tmp_path / "a.tif", predictor=True) as tif:
        assert tif.compression == Codec("zstd", 3, predictor=True)
        tif.set_compression("deflate", 6)  # tiffwrite's call: the predictor stays
        assert tif.compression == Codec("deflate", 6, predictor=True)
        tif.set_compression(1)  # none: no predictor
        assert tif.compression == Codec("none", 0)
        tif.save(np.ones((4, 4), np.uint16), 0, 0, 0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"predictor": True},
        {"compression": "deflate:1", "predictor": True},
        {"compression": "deflate+predictor"},
    ],
)
def test_imagej_profile_refuses_the_predictor(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    path = tmp_path / "ij.tif"
    with pytest.raises(ProfileError, match=r"ImageJ 1\.x") as info:
        IJTiffFile(path, profile="imagej", **kwargs)
    message = str(info.value)
    assert "wrong pixel values" in message and "profile='bigtiff'" in message
    assert not path.exists()
    with pytest.raises(ProfileError, match=r"ImageJ 1\.x"):
        SinkOptions.of(profile="imagej", **kwargs)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_float_pixels_refuse_the_predictor(tmp_path: Path, dtype: str) -> None:
    path = tmp_path / "f.tif"
    with pytest.raises(ConfigError, match=f"integer pixels, not {dtype}"):
        IJTiffFile(path, dtype=dtype, predictor=True)
    assert not path.exists()
    with IJTiffFile(path, dtype=dtype, compression="zstd") as tif:
        with pytest.raises(ConfigError, match="integer pixels"):
            tif.set_compression("zstd+predictor")
        assert tif.compression == Codec("zstd", 3)
        tif.save(np.ones((4, 4), dtype), 0, 0, 0)


def test_predictor_without_a_codec_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="compression=None has none"):
        IJTiffFile(tmp_path / "n.tif", compression=None, predictor=True)
    with pytest.raises(ConfigError, match="predictor"):
        SinkOptions.of(compression=None, predictor=True)


def test_sink_options_and_a_sink(tmp_path: Path) -> None:
    options = SinkOptions.of(compression="zstd:1", predictor=True)
    assert options.codec == Codec("zstd", 1, predictor=True)
    assert options.writer_arguments()["compression"] == Codec("zstd", 1, predictor=True)
    assert SinkOptions.of(profile="ome", predictor=True).codec.predictor
    # a sink's default is the live codec, zstd 1 with the predictor (integer pixels); a
    # replay's the profile's own default, zstd 3
    assert SinkOptions.of().codec == Codec("zstd", 1, predictor=True)
    assert SinkOptions.of().codec_for(np.float32) == Codec("zstd", 1)
    assert SinkOptions.of(profile="imagej").codec == Codec("deflate", 1)
    assert ReplayOptions().codec == Codec("zstd", 3)
    assert options.replace(compression="deflate").codec == Codec("deflate", 1, predictor=True)
    with pytest.raises(ConfigError, match="predictor"):
        SinkOptions.of(predictor="yes")

    data = extreme_frames("uint16", 4, (12, 16))
    with TiffSink(tmp_path, "exp", options=options) as sink:
        for t in range(2):
            for c, channel in enumerate(("DAPI", "FITC")):
                sink.put(data[2 * t + c], {"time": t, "channel": channel})
    (path,) = sorted(tmp_path.glob("exp*.tif"))
    with tifffile.TiffFile(path) as f:
        assert all(page.predictor == 2 for page in f.pages)
        stack = f.series[0].asarray().reshape(2, 2, 12, 16)
    for t in range(2):
        for c in range(2):
            np.testing.assert_array_equal(stack[t, c], data[2 * t + c])


def test_keep_up_frames_of_a_predictor_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frames keep_up stores uncompressed carry the predictor too: every IFD says Predictor=2.

    The process budget is one byte (one frame in flight) and the codec slow (zstd 19), so the
    pool is behind from the second frame on (as in tests/writer/test_keep_up.py).
    """
    from mmtiffsink.tiff import _pool

    monkeypatch.setattr(_pool, "_budget", _pool.Budget(1))
    path = tmp_path / "k.tif"
    frames = [smooth_frame((256, 256)) + np.uint16(t) for t in range(16)]
    with IJTiffFile(path, compression=("zstd", 19), predictor=True, keep_up=True) as tif:
        for t, frame in enumerate(frames):
            tif.save(frame, 0, 0, t)
    assert 0 < tif.frames_kept_up < 16
    for t in (0, 15):
        np.testing.assert_array_equal(tif.read_frame(0, 0, t)[0], frames[t])
    with tifffile.TiffFile(path) as f:
        assert {page.predictor for page in f.pages} == {2}
        for page in f.pages:
            np.testing.assert_array_equal(page.asarray(), frames[page_plane(page)[2]])
    info = file_info(path)
    assert info.codec == "zstd+predictor" and info.frames_uncompressed == tif.frames_kept_up


def test_predictor_false_removes_it_from_the_sinks_default() -> None:
    """``predictor: false`` is honoured: the live default (zstd 1 + predictor) loses it."""
    assert SinkOptions.of(predictor=False).codec == Codec("zstd", 1)
    assert SinkOptions.of(compression="zstd:3+predictor", predictor=False).codec == Codec("zstd", 3)
    assert SinkOptions.of(predictor=None).codec == Codec("zstd", 1, predictor=True)
    assert SinkOptions.of(compression=None, predictor=False).codec == Codec("none", 0)
    assert SinkOptions.of(profile="imagej", predictor=False).codec == Codec("deflate", 1)
