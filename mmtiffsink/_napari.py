"""napari reader (npe2 manifest ``napari.yaml``): hyperstack TIFFs as one layer per channel.

Opens files through :func:`mmtiffsink.open`, so files still being written open too (with the
frames they hold when opened; frames not yet written show as zeros). Each channel becomes an
image layer named after it, coloured by the file's channel colour, scaled in µm; the data is a
lazy dask array (one chunk per plane) that reads planes as napari shows them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mmtiffsink.errors import DatasetError
from mmtiffsink.inspect import open_hyperstack

__all__ = ["get_reader", "layer_data"]

LayerData = tuple[Any, dict[str, Any], str]
_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8")


def get_reader(path: str | os.PathLike[str] | Sequence[str]) -> Callable[..., Any] | None:
    """The reader hook napari calls: :func:`read` for TIFF paths, None for anything else."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths or not all(str(p).lower().endswith(_SUFFIXES) for p in paths):
        return None
    return read


def read(path: str | os.PathLike[str] | Sequence[str]) -> list[LayerData]:
    """The layers of each file (see :func:`layer_data`)."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    layers: list[LayerData] = []
    for p in paths:
        layers += layer_data(p)
    return layers


def _colormap(rgb: tuple[int, int, int]) -> dict[str, Any]:
    """A black-to-colour napari colormap (what ``Colormap(**dict)`` takes)."""
    r, g, b = rgb
    return {
        "name": f"mmtiffsink-{r:02x}{g:02x}{b:02x}",
        "colors": [[0.0, 0.0, 0.0, 1.0], [r / 255, g / 255, b / 255, 1.0]],
    }


def layer_data(path: str | os.PathLike[str], series: int = 0) -> list[LayerData]:
    """One napari image layer per channel of a file: ``[(data, kwargs, "image")]``.

    ``data`` is the (T, Z, C, Y, X[, S]) dask array, split by napari at ``channel_axis=2``;
    ``kwargs`` hold the channel names (``name``), colours (``colormap``), the scale in µm of
    Z, Y and X (1 where the file has none; T in time points), additive blending for several
    channels and, in ``metadata``, the path, the interval in s and which planes were written.

    Raises
    ------
    DatasetError
        The file cannot be read (see :func:`mmtiffsink.open`).

    """
    h = open_hyperstack(path, series)  # stays open: the dask array reads through it
    try:
        data = h.to_dask()
        channels = h.shape[2]
        z_step = h.z_step_um or 1.0
        pixel = h.pixel_size_um or 1.0
        kwargs: dict[str, Any] = {
            "channel_axis": 2,
            "name": h.channel_names if channels > 1 else [Path(path).name],
            "scale": (1.0, z_step, pixel, pixel),
            "rgb": len(h.frame_shape) == 3,
            "metadata": {
                "path": str(h.path),
                "interval_s": h.interval_s,
                "pixel_size_um": h.pixel_size_um,
                "z_step_um": h.z_step_um,
                "finished": h.finished,
                "written": h.written,
            },
        }
        colors = h.colors
        if colors is not None and len(colors) >= channels:
            kwargs["colormap"] = [_colormap(c) for c in colors[:channels]]
        elif channels == 1:
            kwargs["colormap"] = ["gray"]
        if channels > 1:
            kwargs["blending"] = ["additive"] * channels
    except (DatasetError, ValueError):
        h.close()
        raise
    return [(data, kwargs, "image")]
