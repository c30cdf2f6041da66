"""The profile contract: one set of checks that every profile x codec meets.

As zarr-python's store tests do for its stores: the cases are not listed by hand but drawn from
:attr:`mmtiffsink.tiff.Profile.ALL` (each profile's codecs, with and without the predictor
where it takes one), so a new profile or codec is held to the same contract the day it
appears. The oracles are tifffile (pixels, axes, ImageJ/OME metadata) and mmtiffsink's own
``file_info`` (what ``mmtiffsink info`` reports). The Java readers check each profile in
``test_writer_readers.py`` and the reader matrix.

The contract, per case:

1. frames saved in any order are read back exactly, as a (T, Z, C, Y, X) hyperstack;
2. calibration (pixel size, z step, interval), channel names and colours reach the file, and
   ``mmtiffsink.open`` reads them back;
3. a never-saved plane is a blank plane, with a :class:`MissingFramesWarning`, and
   ``mmtiffsink.open`` knows it was not written;
4. identical frames are stored once (except where the profile gives every plane a slot of its
   own: ImageJ 1.x reads an uncompressed ``imagej`` file's planes contiguously);
5. a file whose writer has flushed but not closed (the state a crash leaves) holds every
   flushed frame, and ``repair`` of a copy finishes it into a hyperstack with those frames;
6. tifffile reads every file of the contract without logging a warning or an error (it logs
   instead of raising on tags it misreads: a private tag on one of its reader tags, such as
   NDPI's 65426, was read as an offset on every blank plane).
"""

from __future__ import annotations

import itertools
import logging
import shutil
import struct
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile

import mmtiffsink
from mmtiffsink import IJTiffFile, MissingFramesWarning, repair
from mmtiffsink.inspect import file_info
from mmtiffsink.tiff import Profile
from tests.writer_support import coded_frame, read_hyperstack

SHAPE_CZT = (2, 3, 2)
NAMES = ["DAPI", "GFP"]
COLORS = ["blue", "lime"]


@pytest.fixture(autouse=True)
def tifffile_says_nothing(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Contract point 6: no warning or error from tifffile's logger in any test of the module."""
    caplog.set_level(logging.WARNING, logger="tifffile")
    yield
    records = caplog.get_records("setup") + caplog.get_records("call")  # not teardown's own
    said = [r.getMessage() for r in records if r.name == "tifffile"]
    assert not said, f"tifffile logged: {said[:3]}"


def _cases() -> list[tuple[str, str, bool]]:
    cases = []
    for name, profile in sorted(Profile.ALL.items()):
        for codec in sorted(profile.codecs):
            cases.append((name, codec, False))
            if codec != "none" and profile.predictor_refused is None:
                cases.append((name, codec, True))
    return cases


CASES = _cases()
IDS = [f"{p}-{c}{'+predictor' if pred else ''}" for p, c, pred in CASES]


def _path(tmp_path: Path, profile: str) -> Path:
    return tmp_path / ("f.ome.tif" if profile == "ome" else "f.tif")


def _open(path: Path, profile: str, codec: str, predictor: bool, **kwargs: object) -> IJTiffFile:
    shape = kwargs.pop("shape", SHAPE_CZT)
    return IJTiffFile(
        path,
        shape=shape,  # type: ignore[arg-type]
        profile=profile,  # type: ignore[arg-type]
        compression=codec if codec != "none" else None,
        predictor=predictor,
        **kwargs,  # type: ignore[arg-type]
    )


def _scrambled() -> list[tuple[int, int, int]]:
    planes = list(itertools.product(*(range(n) for n in SHAPE_CZT)))
    rng = np.random.default_rng(7)
    return [planes[i] for i in rng.permutation(len(planes))]


def test_cases_cover_every_profile_and_codec() -> None:
    assert {p for p, _, _ in CASES} == set(Profile.ALL)
    for name, profile in Profile.ALL.items():
        assert {c for p, c, _ in CASES if p == name} == set(profile.codecs)


@pytest.mark.parametrize(("profile", "codec", "predictor"), CASES, ids=IDS)
def test_round_trip_in_any_order(tmp_path: Path, profile: str, codec: str, predictor: bool) -> None:
    path = _path(tmp_path, profile)
    with _open(
        path,
        profile,
        codec,
        predictor,
        pxsize=0.25,
        deltaz=1.5,
        timeinterval=2.0,
        channel_names=NAMES,
        colors=COLORS,
    ) as tif:
        for c, z, t in _scrambled():
            tif.save(coded_frame(c, z, t), c, z, t)
    data, _, tf = read_hyperstack(path)
    tf.close()
    n_c, n_z, n_t = SHAPE_CZT
    assert data.shape == (n_t, n_z, n_c, 24, 40)
    for c, z, t in itertools.product(range(n_c), range(n_z), range(n_t)):
        np.testing.assert_array_equal(data[t, z, c], coded_frame(c, z, t), err_msg=f"{(c, z, t)}")

    info = file_info(path)
    assert info.finished
    assert info.profile == profile
    expected_codec = codec + ("+predictor" if predictor else "")
    assert info.codec == expected_codec
    assert info.shape == {"T": n_t, "Z": n_z, "C": n_c, "Y": 24, "X": 40}
    assert info.pixel_size_um == pytest.approx(0.25)
    assert info.z_step_um == pytest.approx(1.5)
    assert info.interval_s == pytest.approx(2.0)
    assert info.channel_names == NAMES
    with mmtiffsink.open(path) as view:  # the reader sees the same, colours included
        assert view.channel_names == NAMES
        assert view.pixel_size_um == pytest.approx(0.25)
        assert view.z_step_um == pytest.approx(1.5)
        assert view.interval_s == pytest.approx(2.0)
        assert view.colors is not None and len(view.colors) == 2
        assert bool(view.written.all())


@pytest.mark.parametrize(("profile", "codec", "predictor"), CASES, ids=IDS)
def test_missing_planes_are_blank_and_said(
    tmp_path: Path, profile: str, codec: str, predictor: bool
) -> None:
    path = _path(tmp_path, profile)
    with (
        pytest.warns(MissingFramesWarning, match="1 "),
        _open(path, profile, codec, predictor) as tif,
    ):
        for c, z, t in _scrambled():
            if (c, z, t) != (1, 2, 0):
                tif.save(coded_frame(c, z, t), c, z, t)
    data, _, tf = read_hyperstack(path)
    tf.close()
    with tifffile.TiffFile(path) as whole:  # every IFD parsed with all its tags (point 6)
        assert all(page.tags for page in whole.pages)
    assert not data[0, 2, 1].any()
    np.testing.assert_array_equal(data[1, 2, 1], coded_frame(1, 2, 1))
    with mmtiffsink.open(path) as view:  # the filled plane is zeros, and known not written
        assert view.shape == (2, 3, 2, 24, 40)
        assert not view.is_written(0, 2, 1)
        assert int(view.written.sum()) == np.prod(SHAPE_CZT) - 1
        assert not np.asarray(view[0, 2, 1]).any()
        np.testing.assert_array_equal(view[1, 2, 1], coded_frame(1, 2, 1))


@pytest.mark.parametrize(("profile", "codec", "predictor"), CASES, ids=IDS)
def test_identical_frames_stored_once(
    tmp_path: Path, profile: str, codec: str, predictor: bool
) -> None:
    path = _path(tmp_path, profile)
    slots = codec == "none" and Profile.get(profile).uncompressed_needs_shape
    same = coded_frame(0, 0, 0)
    with _open(path, profile, codec, predictor) as tif:
        for c, z, t in _scrambled():
            tif.save(same if t == 1 else coded_frame(c, z, t), c, z, t)
    with tifffile.TiffFile(path) as tf:
        offsets = [page.dataoffsets[0] for page in tf.pages]  # type: ignore[union-attr]
        assert len(offsets) == np.prod(SHAPE_CZT)
        repeated = 0 if slots else SHAPE_CZT[0] * SHAPE_CZT[1]  # the planes of t = 1
        assert len(set(offsets)) == len(offsets) - repeated
    assert file_info(path).frames_stored == len(offsets) - repeated
    data, _, tf = read_hyperstack(path)
    tf.close()
    for c, z in itertools.product(range(SHAPE_CZT[0]), range(SHAPE_CZT[1])):
        np.testing.assert_array_equal(data[1, z, c], same)


def _first_ifd_offset(raw: bytes) -> int:
    order = "<" if raw[:2] == b"II" else ">"
    (magic,) = struct.unpack(order + "H", raw[2:4])
    if magic == 43:
        return int(struct.unpack(order + "Q", raw[8:16])[0])
    return int(struct.unpack(order + "I", raw[4:8])[0])


@pytest.mark.parametrize(("profile", "codec", "predictor"), CASES, ids=IDS)
def test_flushed_frames_survive_and_repair(
    tmp_path: Path, profile: str, codec: str, predictor: bool
) -> None:
    path = _path(tmp_path, profile)
    copy = tmp_path / ("crashed.ome.tif" if profile == "ome" else "crashed.tif")
    saved = [(0, 0, 0), (1, 0, 0), (0, 2, 1), (1, 1, 0)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingFramesWarning)
        with _open(path, profile, codec, predictor) as tif:
            for c, z, t in saved:
                tif.save(coded_frame(c, z, t), c, z, t)
            tif.flush()
            shutil.copyfile(path, copy)  # what a crash right now would leave on disk
            tif.save(coded_frame(0, 1, 1), 0, 1, 1)

    assert _first_ifd_offset(copy.read_bytes()) > 0
    info = file_info(copy)
    assert not info.finished
    with tifffile.TiffFile(copy) as tf:
        assert len(tf.pages) == len(saved)

    with pytest.warns(MissingFramesWarning):
        repair(copy)
    data, _, tf = read_hyperstack(copy)
    tf.close()
    assert file_info(copy).finished
    for c, z, t in saved:
        np.testing.assert_array_equal(data[t, z, c], coded_frame(c, z, t), err_msg=f"{(c, z, t)}")
    assert not data[1, 1, 0].any()  # saved after the crash: not in the copy
