"""The sink: Micro-Manager-style frames (axes, metadata) to hyperstack files.

Stages: :mod:`._frame` (the neutral :class:`Frame` and :class:`Summary` every source hands
over), :mod:`._mmkeys` (Micro-Manager's metadata keys, read into those records),
:mod:`._mapping` (axes -> file and (c, z, t)), :mod:`._calibration` (pixel size, z step,
interval from metadata), :mod:`._options` (what is written: one frozen model shared by every
source), :mod:`._sink` (:class:`TiffSink`, which owns the open :class:`~mmtiffsink.IJTiffFile`
objects). Knows nothing of the engines; the engines and runs depend on it, never the reverse.
"""

from ._calibration import CalibrationTracker
from ._frame import Calibration, Frame, Summary
from ._mapping import AxisMapper, FileKey, Placement, file_name, split_position
from ._mmkeys import mm_frame, mm_summary, summary_annotations
from ._options import TIFFWRITE_NAMES, SinkOptions, if_exists_of
from ._sink import TiffSink, sink_options

__all__ = [
    "TIFFWRITE_NAMES",
    "AxisMapper",
    "Calibration",
    "CalibrationTracker",
    "FileKey",
    "Frame",
    "Placement",
    "SinkOptions",
    "Summary",
    "TiffSink",
    "file_name",
    "if_exists_of",
    "mm_frame",
    "mm_summary",
    "sink_options",
    "split_position",
    "summary_annotations",
]
