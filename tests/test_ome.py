"""Issue 9: the OME-TIFF profile, and the imagej profile's colour and Info fixes.

Oracles: Bio-Formats 7.3.1 (OMETiffReader, its schema validation), ImageJ 1.x, tifffile, ome-types
(schema validation), bioio-ome-tiff when installed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mmtiffsink import IJTiffFile
from tests.readers import bioformats_info, imagej_read
from tests.writer_support import coded_frame

C, Z, T = 2, 3, 4
ALL = [(c, z, t) for t in range(T) for z in range(Z) for c in range(C)]


# ------------------------------------------------------------------ imagej profile fixes
@pytest.mark.readers
def test_imagej_uncompressed_keeps_channel_colours(tmp_path: Path, imagej_jar: Path) -> None:
    """images=N on the slot layout: ImageJ opens the composite with its LUTs, pixels exact."""
    path = tmp_path / "ij.tif"
    with IJTiffFile(
        path, shape=(C, Z, T), profile="imagej", compression=None, colors=["magenta", "lime"]
    ) as tif:
        for c, z, t in reversed(ALL):
            tif.save(coded_frame(c, z, t), c, z, t)
    info = imagej_read(path, ALL, imagej_jar, points=((5, 7), (3, 0)))
    assert info.opened, info.error
    assert (info.channels, info.slices, info.frames) == (C, Z, T)
    assert info.composite_mode == "composite"
    assert info.channel_colors[:2] == ((255, 0, 255), (0, 255, 0))
    for c, z, t in ALL:
        frame = coded_frame(c, z, t)
        plane = info.planes[(c, z, t)]
        assert plane.values == (float(frame[7, 5]), float(frame[0, 3]))
        assert plane.mean == pytest.approx(frame.mean())


@pytest.mark.readers
def test_imagej_info_channel_names_not_glued(tmp_path: Path, bioformats_jar: Path) -> None:
    """The Info text ends with a newline: Bio-Formats reads the last name as it is."""
    path = tmp_path / "names.tif"
    with IJTiffFile(path, profile="imagej", channel_names=["DAPI", "FITC"]) as tif:
        for c in range(2):
            for z in range(2):
                tif.save(coded_frame(c, z, 0), c, z, 0)
    xml = bioformats_info(path, bioformats_jar).ome_xml
    found = dict(
        re.findall(r"<Key>(Channel\dName)</Key>\s*<Value>([^<]*)</Value>", xml, flags=re.S)
    )
    assert found == {"Channel0Name": "DAPI", "Channel1Name": "FITC"}
