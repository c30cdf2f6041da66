"""The README's main job: ``python -m mmtiffsink.demo``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import tifffile

from mmtiffsink.demo import demo_frame


def test_demo_writes_calibrated_hyperstack(tmp_path: Path) -> None:
    out = tmp_path / "demo.tif"
    done = subprocess.run(
        [sys.executable, "-m", "mmtiffsink.demo", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "wrote" in done.stdout
    with tifffile.TiffFile(out) as f:
        data = f.series[0].asarray()
        meta = f.imagej_metadata
    assert data.shape == (5, 10, 2, 256, 256)
    assert (meta["spacing"], meta["finterval"]) == (0.5, 30.0)
    np.testing.assert_array_equal(data[3, 4, 1], demo_frame(1, 4, 3))
