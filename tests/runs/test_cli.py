"""The command line's frame: help, version, usage errors, ``python -m mmtiffsink``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from mmtiffsink import IJTiffFile, __version__
from mmtiffsink.cli import main
from mmtiffsink.inspect import file_info


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("run", "replay", "info", "repair"):
        assert command in out


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err
    assert main(["acquire"]) == 2
    assert main(["replay"]) == 2


def test_bad_compression_is_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(tmp_path), "--compression", "zstd:high"]) == 1
    err = capsys.readouterr().err
    assert "the level after ':' must be an integer" in err
    assert "Traceback" not in err


def test_python_dash_m(tmp_path: Path) -> None:
    path = tmp_path / "m.tif"
    with IJTiffFile(path, pxsize=0.5) as tif:
        tif.save(np.ones((4, 5), np.uint16), 0, 0, 0)
    proc = subprocess.run(
        [sys.executable, "-m", "mmtiffsink", "info", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "pixel 0.5" in proc.stdout


def test_replay_predictor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``replay --predictor``: files with tag 317 = 2 holding the dataset's exact frames."""
    from tests.replay_support import CHANNELS, check_position, make_dataset

    source = make_dataset(tmp_path / "src", "exp", positions=(0,), nz=2, nt=2)
    out = tmp_path / "out"
    argv = ["replay", str(source.path), str(out), "--compression", "zstd:1", "--predictor"]
    assert main([*argv, "--no-progress", "--no-preview"]) == 0, capsys.readouterr().err
    (path,) = sorted(out.glob("*.tif"))
    assert file_info(path).codec == "zstd+predictor"
    with tifffile.TiffFile(path) as tif:
        assert {page.predictor for page in tif.pages} == {2}
    check_position(source, path, 0, CHANNELS)
    # the imagej profile refuses it, with the reason
    assert main([*argv, "--profile", "imagej", "--overwrite", "--no-progress"]) == 1
    assert "ImageJ 1.x" in capsys.readouterr().err
