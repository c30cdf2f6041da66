"""Helpers for the real-acquisition robustness tests (``test_acquisition_robustness.py``).

* :func:`stamp`: a copy of a camera frame with its own coordinates written into its first
  pixels, so that frames the demo camera makes identical (its wave pattern repeats every 8 frames)
  can still be told apart in the file.
* :class:`Recorder`: a 2-argument ``image_process_fn`` wrapper that stamps each frame, keeps a
  copy of what it handed on successfully, and forwards it to the sink (hook route) or passes it
  on to the engine's dataset (storage routes).
* :func:`storage_route`: plugs a :class:`~mmtiffsink.pycromanager.TiffStorage` in as the Python
  backend's dataset (what ``Acquisition(directory=None)`` would build).
* :func:`read_hyperstack`, :func:`assert_planes`: tifffile read-back as (T, Z, C, Y, X) with the
  calibration, and the frame-by-frame comparison by ``Axes``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from mmtiffsink.pycromanager import TiffStorage

Frame = tuple[np.ndarray, dict[str, Any]]
Forward = Callable[[Any, dict[str, Any]], Any]


def stamp(image: np.ndarray, *values: int) -> np.ndarray:
    """A copy of ``image`` whose first pixels (row 0) hold ``values``.

    Parameters
    ----------
    image
        A 2-D camera frame.
    values
        Small non-negative integers (e.g. the arrival number and the axes' indices).

    Returns
    -------
    numpy.ndarray
        The stamped copy (same dtype and shape).

    """
    out = np.array(image, copy=True)
    out[0, : len(values)] = values
    return out


@dataclass
class Recorder:
    """A pycro-manager ``image_process_fn`` that stamps, records and forwards every frame.

    Parameters
    ----------
    forward
        Called with the stamped frame and its metadata; its result is returned to pycro-manager.
        None: return ``(image, metadata)`` (pass the frame on to the dataset, storage route).
    fail_from
        0-based arrival number from which every call raises ``RuntimeError`` instead of
        forwarding (the user's own function failing); None: never.
    on_frame
        Called with the arrival number before anything else (e.g. to abort the acquisition).

    Notes
    -----
    Each frame gets ``(arrival number, c, z, t)`` stamped in its first pixels, where c is the
    channel's index in :attr:`channels` (order of first arrival) and missing axes count as 0.

    """

    forward: Forward | None = None
    fail_from: int | None = None
    frames: list[Frame] = field(default_factory=list)
    calls: int = 0
    channels: list[str] = field(default_factory=list)
    on_frame: Callable[[int], None] | None = None

    def __call__(self, image: np.ndarray, metadata: dict[str, Any]) -> Any:
        """Stamp, record and forward one frame (the ``image_process_fn`` signature)."""
        number = self.calls
        self.calls += 1
        if self.on_frame is not None:
            self.on_frame(number)
        if self.fail_from is not None and number >= self.fail_from:
            msg = f"user processing failed at frame {number}"
            raise RuntimeError(msg)
        axes = metadata.get("Axes") or {}
        channel = axes.get("channel", 0)
        if isinstance(channel, str):
            if channel not in self.channels:
                self.channels.append(channel)
            c = self.channels.index(channel)
        else:
            c = int(channel)
        stamped = stamp(image, number % 65536, c, int(axes.get("z", 0)), int(axes.get("time", 0)))
        result = (
            self.forward(stamped, metadata) if self.forward is not None else (stamped, metadata)
        )
        self.frames.append((stamped, dict(metadata)))
        return result


@contextlib.contextmanager
def storage_route(storage: TiffStorage, monkeypatch: pytest.MonkeyPatch) -> Iterator[TiffStorage]:
    """Make ``Acquisition(directory=None)`` use ``storage`` as its dataset within the block.

    pycromanager 1.0.2 has no argument for a dataset: its Python backend calls
    ``NDRAMDataset()``; this replaces that name in its module (as
    ``test_storage_adapter_acquisition`` does).
    """
    from pycromanager.acquisition import python_backend_acquisitions

    with monkeypatch.context() as patch:
        patch.setattr(python_backend_acquisitions, "NDRAMDataset", lambda: storage)
        yield storage


@dataclass(frozen=True)
class Hyperstack:
    """A file read back by tifffile: pixels as (T, Z, C, Y, X), calibration and labels."""

    data: np.ndarray
    pixel_size: float | None
    spacing: float | None
    finterval: float | None
    labels: list[str]
    n_pages: int


def read_hyperstack(path: Path, shape: tuple[int, int, int]) -> Hyperstack:
    """Read a whole file with tifffile as (T, Z, C, Y, X).

    Parameters
    ----------
    path
        The file.
    shape
        The expected (T, Z, C); asserted against the ImageJ description.

    """
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej, f"{path} is not an ImageJ hyperstack"
        meta = dict(tif.imagej_metadata or {})
        series = tif.series[0]
        data = series.asarray()
        n_pages = len(tif.pages)
        tags = tif.pages.first.tags
        resolution = tags["XResolution"].value if "XResolution" in tags else None
    n_t, n_z, n_c = shape
    assert (meta.get("frames", 1), meta.get("slices", 1), meta.get("channels", 1)) == shape, meta
    assert n_pages == n_t * n_z * n_c
    data = data.reshape(n_t, n_z, n_c, *data.shape[-2:])
    pixel_size = resolution[1] / resolution[0] if resolution and resolution[0] else None
    return Hyperstack(
        data=data,
        pixel_size=pixel_size if meta.get("unit") in ("micron", "um", "µm") else None,
        spacing=meta.get("spacing"),
        finterval=meta.get("finterval"),
        labels=list(meta.get("Labels", [])),
        n_pages=n_pages,
    )


def place(axes: Mapping[str, Any], channels: Sequence[str]) -> tuple[int, int, int]:
    """(t, z, c) of a frame's axes, with ``channels`` giving the file's channel order."""
    channel = axes.get("channel", 0)
    c = channels.index(channel) if isinstance(channel, str) else int(channel)
    return int(axes.get("time", 0)), int(axes.get("z", 0)), c


def assert_planes(
    stack: Hyperstack,
    frames: Sequence[Frame],
    channels: Sequence[str],
    *,
    blank_elsewhere: bool = True,
) -> None:
    """Every frame is on the plane its ``Axes`` give; with ``blank_elsewhere`` all others are 0."""
    seen: set[tuple[int, int, int]] = set()
    for image, metadata in frames:
        t, z, c = place(metadata["Axes"], channels)
        assert (t, z, c) not in seen, f"two frames for {(t, z, c)}"
        seen.add((t, z, c))
        np.testing.assert_array_equal(
            stack.data[t, z, c], image, err_msg=f"plane t={t} z={z} c={c} ({metadata['Axes']})"
        )
    if blank_elsewhere:
        n_t, n_z, n_c = stack.data.shape[:3]
        for index in np.ndindex(n_t, n_z, n_c):
            if index not in seen:
                assert not stack.data[index].any(), f"plane (t, z, c) = {index} is not blank"
