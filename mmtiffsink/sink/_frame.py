"""The neutral records a source hands the sink: one :class:`Frame` per image, one :class:`Summary`.

Every engine adapter builds these from its own vocabulary (pycro-manager's and Micro-Manager's
metadata keys: :mod:`mmtiffsink.sink._mmkeys`; pymmcore-plus's ``MDAEvent`` and ``FrameMetaV1``:
:mod:`mmtiffsink.pymmcore_plus`), so the sink reads typed values and never an engine's keys.

Numbers are floats in one unit per kind (µm, s); None means "not known". A value the source
stated but that is not a number is NaN: the calibration warns about it and leaves it out.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Calibration", "Frame", "Summary"]


@dataclass(frozen=True)
class Calibration:
    """Spatial and temporal calibration of a hyperstack; None means unknown.

    Parameters
    ----------
    pixel_size_um
        Size of a pixel in x and y, in µm.
    z_step_um
        Distance between z planes, in µm.
    interval_s
        Time between time points, in seconds.

    """

    pixel_size_um: float | None = None
    z_step_um: float | None = None
    interval_s: float | None = None


@dataclass(frozen=True)
class Frame:
    """What the sink needs to know about one image, in the sink's own terms.

    Parameters
    ----------
    axes
        The image's coordinates: ``time``, ``z``, ``channel`` (index or name), ``position``
        (index or label) and any file-splitting axis (``camera``, ``grid``, ...); see
        :class:`~mmtiffsink.sink.AxisMapper`.
    metadata
        Stored with the frame as JSON (tag 51123), as the source gave it; never read by the sink.
    stated
        Calibration the image states (pixel size; rarely z step or interval). Zero means "not
        set" (Micro-Manager's convention) and is ignored; NaN or a negative value is warned of.
    x_um, y_um, z_um
        Stage position (z: where the focus was; used for the z step and the OME plane).
    elapsed_s
        Time since the acquisition started (the interval; OME ``DeltaT``).
    received_us
        A clock of the camera's buffer in µs (any origin): the interval of hardware-sequenced
        frames whose ``elapsed_s`` is the same for all.
    exposure_s
        Exposure time (OME ``ExposureTime``).

    """

    axes: Mapping[str, Any]
    metadata: Mapping[str, Any] | None = None
    stated: Calibration = field(default_factory=Calibration)
    x_um: float | None = None
    y_um: float | None = None
    z_um: float | None = None
    elapsed_s: float | None = None
    received_us: int | None = None
    exposure_s: float | None = None

    def plane(self) -> dict[str, float]:
        """The OME Plane values known for this image (names of :class:`~mmtiffsink.PlaneInfo`)."""
        values = {
            "delta_t": self.elapsed_s,
            "exposure_time": self.exposure_s,
            "position_x": self.x_um,
            "position_y": self.y_um,
            "position_z": self.z_um,
        }
        return {k: v for k, v in values.items() if v is not None and v == v}


@dataclass(frozen=True)
class Summary:
    """What a source knows about the whole acquisition.

    Parameters
    ----------
    stated
        The acquisition's stated calibration (pixel size, the planned z step and interval).
    start
        When the acquisition started (the OME ``AcquisitionDate``).
    annotations
        Key -> text kept in every file: the OME ``MapAnnotation`` (profile ``ome``) and the
        ImageJ ``Info`` (``key = value`` lines; profiles ``bigtiff`` and ``imagej``), where
        tifffile (``imagej_metadata['Info']``, ``ome_metadata``) and Bio-Formats find them.

    """

    stated: Calibration = field(default_factory=Calibration)
    start: _dt.datetime | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
