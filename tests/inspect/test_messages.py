"""What the tools say: one wording for a missing input, each error once, no tifffile internals."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import tifffile

from mmtiffsink.cli import main


@pytest.mark.parametrize("command", ["info", "preview", "repair", "replay"])
def test_missing_input_one_wording(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.tif"
    args = [command, str(missing)]
    if command == "replay":
        args += ["--no-progress", "--no-preview"]
    assert main(args) != 0
    out, err = capsys.readouterr()
    assert f"{missing}: no such file" in err
    assert (out + err).count("no such file") == 1  # said once (replay said it three times)
    assert (out + err).count(str(missing)) <= 2  # named in the error and, for replay, its report
    assert "Traceback" not in out + err


def test_no_tifffile_internals_in_messages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file whose IFD chain breaks: the message says so without ``<tifffile.TiffPages @8>``."""
    path = tmp_path / "f.tif"
    tifffile.imwrite(path, np.zeros((3, 16, 16), np.uint16), photometric="minisblack")
    data = bytearray(path.read_bytes())
    (first,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, first)
    struct.pack_into("<I", data, first + 2 + 12 * count, len(data) + 1000)  # next IFD: nowhere
    path.write_bytes(bytes(data))
    for command in ("info", "preview"):
        main([command, str(path)])
        out, err = capsys.readouterr()
        assert "corrupt" in out + err or "truncated" in out + err, out + err
        assert "<tifffile" not in out + err and "<Tiff" not in out + err, out + err
