"""Replay of datasets whose index lies: it ends before the data, or points at the wrong image.

Datasets are written by ndstorage (tests/replay/test_replay.py's ``make_dataset``), then their
``NDTiff.index`` is damaged byte by byte (parsed and rewritten with tifffile's independent
reader where entries change). A dataset whose index does not account for every image in its
files is damaged: the replay writes what it can place, names the rest, and fails (exit 1).
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any

import pytest
import tifffile

from mmtiffsink.cli import main
from mmtiffsink.errors import DatasetError
from mmtiffsink.limits import MAX_PLANES
from mmtiffsink.ndtiff import replay
from tests.replay_support import CHANNELS, Source, allow_blank_planes, check_position, make_dataset

pytestmark = allow_blank_planes
ENTRIES = 18  # 1 position x 2 time points x 3 z x 3 channels


def _dataset(tmp_path: Path) -> Source:
    return make_dataset(tmp_path / "src", "d", positions=(0,), nt=2)


def _entry_offsets(index: Path) -> list[int]:
    """Byte offset of each entry of an index."""
    data = index.read_bytes()
    offsets, at = [], 0
    while at + 4 <= len(data):
        (n,) = struct.unpack_from("<I", data, at)
        if n == 0:
            break
        offsets.append(at)
        (m,) = struct.unpack_from("<I", data, at + 4 + n)
        at += 4 + n + 4 + m + 32
    return offsets


def _rewrite(index: Path, change: dict[int, dict[str, Any]]) -> None:
    """Rewrite the index; ``change[n]`` replaces entry n's ``axes`` and/or its 8 ``fields``."""
    entries = list(tifffile.read_ndtiff_index(index))
    with index.open("wb") as fh:
        for number, (axes, filename, *fields) in enumerate(entries):
            axes = change.get(number, {}).get("axes", axes)
            fields = change.get(number, {}).get("fields", fields)
            raw = json.dumps(axes).encode()
            fh.write(struct.pack("<I", len(raw)) + raw)
            fh.write(struct.pack("<I", len(filename)) + filename.encode())
            fh.write(struct.pack("<8I", *fields))


def _key(axes: dict[str, Any]) -> tuple[Any, ...]:
    return (axes["position"], axes["time"], axes["z"], axes["channel"])


def _fails(source: Source, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Replay by the API and the CLI: both fail, the CLI with exit 1; the message."""
    with pytest.raises(DatasetError) as info:
        replay(source.path, tmp_path / "api", progress=False)
    status = main(["replay", str(source.path), str(tmp_path / "cli"), "--no-progress"])
    out, err = capsys.readouterr()
    assert status == 1, out + err
    assert "FAILED" in out and "Traceback" not in out + err
    return str(info.value)


def test_zeroed_length_mid_index(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """4 zero bytes where entry 6's axes length was: the 12 images after it are not placed."""
    source = _dataset(tmp_path)
    index = source.path / "NDTiff.index"
    at = _entry_offsets(index)[6]
    data = bytearray(index.read_bytes())
    data[at : at + 4] = bytes(4)
    index.write_bytes(bytes(data))
    message = _fails(source, tmp_path, capsys)
    assert "12 of 18 images could not be read or placed" in message
    assert "12 images of d_NDTiffStack.tif are in no index entry" in message
    assert "corrupted in entry 6" in message and "6 frames were written" in message
    missing = {_key(axes) for axes in source.order[6:]}
    for out in ("api", "cli"):
        check_position(source, tmp_path / out / "d_1_0.tif", 0, CHANNELS, missing)


@pytest.mark.parametrize("keep", [0, 5, 17])
def test_index_ends_before_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keep: int
) -> None:
    """The index ends cleanly at an entry boundary (or holds nothing) but the tif goes on."""
    source = _dataset(tmp_path)
    index = source.path / "NDTiff.index"
    cut = _entry_offsets(index)[keep] if keep else 0
    index.write_bytes(index.read_bytes()[:cut] + bytes(100 if keep == 5 else 0))
    if keep == 0:  # nothing indexed: nothing written, and the images are counted
        with pytest.raises(DatasetError, match="holds no images"):
            replay(source.path, tmp_path / "api", progress=False)
        return
    lost = ENTRIES - keep
    message = _fails(source, tmp_path, capsys)
    assert f"{lost} of 18 images could not be read or placed" in message
    assert "in no index entry" in message
    missing = {_key(axes) for axes in source.order[keep:]}
    check_position(source, tmp_path / "api" / "d_1_0.tif", 0, CHANNELS, missing)


def test_trailing_zeros_of_an_unclosed_index_are_fine(tmp_path: Path) -> None:
    """Every image indexed, then the zeros a writer leaves in an index it did not close."""
    source = _dataset(tmp_path)
    index = source.path / "NDTiff.index"
    index.write_bytes(index.read_bytes() + bytes(4096))
    result = replay(source.path, tmp_path / "out", progress=False)
    assert result.ok and result.frames == ENTRIES
    check_position(source, result.files[0], 0, CHANNELS)


def test_entry_points_at_another_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Entry 7's offsets were replaced by entry 3's: entry 3 is placed, image 7 is not."""
    source = _dataset(tmp_path)
    index = source.path / "NDTiff.index"
    fields = [rest for _axes, _name, *rest in tifffile.read_ndtiff_index(index)]
    _rewrite(index, {7: {"fields": fields[3]}})
    message = _fails(source, tmp_path, capsys)
    assert "1 of 18 images could not be read or placed" in message
    assert "index entry 7" in message and "points at the image of entry 3" in message
    check_position(source, tmp_path / "api" / "d_1_0.tif", 0, CHANNELS, {_key(source.order[7])})


def test_entry_axes_disagree_with_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Entry 4 says time 1 where its image's own Axes say time 0: it is not placed."""
    source = _dataset(tmp_path)
    index = source.path / "NDTiff.index"
    wrong = dict(source.order[4], time=1, z=2, channel="Cy5")  # entry 17's plane
    _rewrite(index, {4: {"axes": wrong}})
    message = _fails(source, tmp_path, capsys)
    assert "index entry 4" in message and "the image it points at has the Axes" in message
    assert "1 of 18 images could not be read or placed" in message
    # plane 4 is blank; entry 17's plane holds entry 17's image, not entry 4's
    check_position(source, tmp_path / "api" / "d_1_0.tif", 0, CHANNELS, {_key(source.order[4])})


def test_later_entry_damaged_into_an_earlier_ones_axes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Entry 17 says entry 4's axes: not an overwrite (its image says otherwise), so entry 4's
    image is kept and entry 17 is reported, never the other way round."""
    source = _dataset(tmp_path)
    _rewrite(source.path / "NDTiff.index", {17: {"axes": dict(source.order[4])}})
    message = _fails(source, tmp_path, capsys)
    assert "index entry 17" in message and "the image it points at has the Axes" in message
    assert "1 of 18 images could not be read or placed" in message
    check_position(source, tmp_path / "api" / "d_1_0.tif", 0, CHANNELS, {_key(source.order[17])})


@pytest.mark.parametrize(
    "axes",
    [{"time": 10**9}, {"time": 2**32}, {"z": 4000, "time": 4000}, {"time": -(10**8)}],
)
def test_absurd_coordinates_are_bad_entries(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], axes: dict[str, int]
) -> None:
    """An entry that would need more than MAX_PLANES planes is named, and never written."""
    source = _dataset(tmp_path)
    index = source.path / "NDTiff.index"
    absurd = dict(source.order[10], **axes)
    _rewrite(index, {10: {"axes": absurd}})
    start = time.perf_counter()
    message = _fails(source, tmp_path, capsys)
    assert time.perf_counter() - start < 20
    assert "index entry 10" in message, message
    if min(axes.values()) >= 0:
        assert f"more than {MAX_PLANES}" in message
    check_position(source, tmp_path / "api" / "d_1_0.tif", 0, CHANNELS, {_key(source.order[10])})


def test_unindexed_second_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A second NDTiff tif the index never names (its entries lost) holds images: damaged."""
    from tests.replay_support import two_file_dataset

    source = two_file_dataset(tmp_path / "src", "two")
    index = source.path / "NDTiff.index"
    index.write_bytes(index.read_bytes()[: _entry_offsets(index)[9]])
    message = _fails(source, tmp_path, capsys)
    assert "9 of 18 images could not be read or placed" in message
    assert "9 images of two_NDTiffStack_1.tif are in no index entry" in message
    check_position(source, tmp_path / "api" / "two_1_0.tif", 0, CHANNELS)
