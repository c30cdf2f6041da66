"""NDTiff datasets written by ndstorage for the replay tests, and checks of what replay made."""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

# Planes left out of a damaged dataset are filled blank, with this warning from the writer.
allow_blank_planes = pytest.mark.filterwarnings("ignore::mmtiffsink.errors.MissingFramesWarning")


CHANNELS = ("FITC", "DAPI", "Cy5")  # arrival order, deliberately not alphabetical


HEIGHT, WIDTH = 12, 20


@dataclass
class Source:
    """A dataset written here, with every image and metadata dict kept for comparison."""

    path: Path
    frames: dict[tuple[Any, ...], tuple[np.ndarray, dict[str, Any]]] = field(default_factory=dict)
    order: list[dict[str, Any]] = field(default_factory=list)


def _frame(p: int, t: int, z: int, c: int, dtype: str) -> np.ndarray:
    """A frame that encodes its own coordinates (and differs pixel by pixel)."""
    base = 1000 * t + 100 * z + 10 * c + p if dtype == "uint16" else 40 * t + 12 * z + 3 * c + p
    ramp = np.arange(HEIGHT * WIDTH).reshape(HEIGHT, WIDTH) % 7
    return (base + ramp).astype(dtype)


def make_dataset(
    root: Path,
    name: str,
    *,
    positions: Sequence[int | str] = (0, 1),
    channels: Sequence[str | int] = CHANNELS,
    nz: int = 3,
    nt: int = 2,
    summary: dict[str, Any] | None = None,
    dtype: str = "uint16",
    pixel_size: float = 0.65,
    z_step: float = 1.5,
    interval_ms: float = 2500.0,
) -> Source:
    """Write an NDTiff dataset with ndstorage's writer, in acquisition order t > p > z > c.

    Per-image metadata are what pycro-manager writes (Axes, PixelSize_um, ElapsedTime-ms,
    ZPosition_um_Intended, ...); ``summary`` defaults to pycro-manager's summary keys.
    """
    from ndstorage import NDTiffDataset

    dataset = NDTiffDataset(str(root), name=name, writable=True)
    dataset.initialize(
        summary
        if summary is not None
        else {"PixelSize_um": pixel_size, "PixelType": "GRAY16", "Core-Camera": "Camera"}
    )
    source = Source(Path(dataset.path))
    for t in range(nt):
        for p, position in enumerate(positions):
            for z in range(nz):
                for c, channel in enumerate(channels):
                    axes: dict[str, Any] = {"time": t, "position": position, "z": z}
                    axes["channel"] = channel
                    image = _frame(p, t, z, c, dtype)
                    metadata = {
                        "Axes": dict(axes),
                        "PixelSize_um": pixel_size,
                        "ElapsedTime-ms": t * interval_ms + 10.0 * (p * nz + z),
                        "ZPosition_um_Intended": -2.0 + z_step * z,
                        "Exposure": 10.0,
                        "Camera": "Camera",
                        "Width": WIDTH,
                        "Height": HEIGHT,
                    }
                    dataset.put_image(axes, image, metadata)
                    source.frames[(position, t, z, channel)] = (image, metadata)
                    source.order.append(axes)
    writer = dataset.current_writer
    dataset.finish()
    dataset.close()
    writer.reader.close()  # ndstorage 0.1.18's writer never closes the reader it opens
    return source


@dataclass
class Output:
    data: np.ndarray  # (T, Z, C, Y, X)
    labels: list[str]
    pixel_size: float | None
    spacing: float | None
    finterval: float | None
    metadata: list[dict[str, Any] | None]  # per page, in the file's (canonical) page order


def read_output(path: Path) -> Output:
    """Read a replayed hyperstack with tifffile: pixels, calibration, per-page metadata."""
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        data = series.asarray()
        axes = series.axes
        ij = dict(tif.imagej_metadata or {})
        page0 = tif.pages[0]
        num, den = page0.tags["XResolution"].value
        metadata: list[dict[str, Any] | None] = []
        for i, page in enumerate(tif.pages):
            tag = page.tags.get(65423 if i == 0 else 51123)
            value = None if tag is None else tag.value
            if isinstance(value, (bytes, str)):
                value = json.loads(value)
            metadata.append(value)
    shape = {axis: data.shape[i] for i, axis in enumerate(axes)}
    data = data.reshape(
        shape.get("T", 1), shape.get("Z", 1), shape.get("C", 1), shape["Y"], shape["X"]
    )
    labels = ij.get("Labels") or []
    return Output(
        data=data,
        labels=list(labels) if not isinstance(labels, str) else [labels],
        pixel_size=den / num if num and num != den else None,
        spacing=ij.get("spacing"),
        finterval=ij.get("finterval"),
        metadata=metadata,
    )


def check_position(
    source: Source,
    path: Path,
    position: int | str,
    channels: Sequence[str | int],
    missing: set[tuple[Any, ...]] | None = None,
) -> Output:
    """Every plane of one position's file equals the source; metadata kept; gaps blank."""
    out = read_output(path)
    nt, nz, nc = out.data.shape[:3]
    assert nc == len(channels)
    for t in range(nt):
        for z in range(nz):
            for c, channel in enumerate(channels):
                key = (position, t, z, channel)
                page = (t * nz + z) * nc + c
                if missing is not None and key in missing:
                    assert not out.data[t, z, c].any(), key
                    continue
                image, metadata = source.frames[key]
                np.testing.assert_array_equal(out.data[t, z, c], image, err_msg=str(key))
                assert out.metadata[page] == metadata, key
    return out


def _tif(source: Source) -> Path:
    (tif,) = source.path.glob("*.tif")
    return tif


def two_file_dataset(root: Path, name: str) -> Source:
    """A dataset whose position 1 lives in a second tif (as a dataset past 4 GB has it).

    Written by ndstorage as two datasets, the second's tif and index entries then moved into
    the first under the name NDTiff gives a second file.
    """
    first = make_dataset(root / "a", name, positions=(0,), nt=1)
    second = make_dataset(root / "b", name, positions=(1,), nt=1)
    moved = f"{name}_NDTiffStack_1.tif"
    _tif(second).rename(first.path / moved)
    with (first.path / "NDTiff.index").open("ab") as fh:
        for axes, _filename, *fields in tifffile.read_ndtiff_index(second.path / "NDTiff.index"):
            raw_axes = json.dumps(axes).encode()
            fh.write(struct.pack("<I", len(raw_axes)) + raw_axes)
            fh.write(struct.pack("<I", len(moved)) + moved.encode())
            fh.write(struct.pack("<8I", *fields))
    first.frames.update(second.frames)
    first.order += second.order
    return first
