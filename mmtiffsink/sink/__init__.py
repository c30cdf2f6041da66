"""The sink: Micro-Manager-style frames (axes, metadata) to hyperstack files.

Stages: :mod:`._mapping` (axes -> file and (c, z, t)), :mod:`._calibration` (pixel size, z step,
interval from metadata), :mod:`._options` (what is written: one frozen model shared by every
source), :mod:`._sink` (:class:`TiffSink`, which owns the open :class:`~mmtiffsink.IJTiffFile`
objects). Knows nothing of the engines; the engines and runs depend on it, never the reverse.
"""

from ._calibration import Calibration, CalibrationTracker
from ._mapping import AxisMapper, FileKey, Placement, file_name, split_position
from ._options import SinkOptions
from ._sink import TiffSink, sink_options

__all__ = [
    "AxisMapper",
    "Calibration",
    "CalibrationTracker",
    "FileKey",
    "Placement",
    "SinkOptions",
    "TiffSink",
    "file_name",
    "sink_options",
    "split_position",
]
