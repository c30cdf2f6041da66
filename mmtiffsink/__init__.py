"""mmtiffsink: Micro-Manager / pycro-manager frames to Fiji-ready hyperstack TIFFs.

Frames arrive one at a time, tagged with (c, z, t); mmtiffsink compresses them in parallel
and writes BigTIFF (or classic ImageJ) hyperstacks that Fiji, ImageJ and tifffile open with
the right dimensions and calibration. The file on disk stays valid while it is written.
"""

from ._version import __version__
from .errors import (
    CalibrationWarning,
    CloseErrors,
    ConfigError,
    CoordinateError,
    DatasetError,
    FileExistsError_,
    FrameError,
    MicroscopeError,
    MissingFramesWarning,
    MMTiffSinkError,
    MMTiffSinkWarning,
    OutputExistsError,
    ProfileError,
    SupersededImagesWarning,
    TextReplacedWarning,
    UnclosedFileWarning,
    WriterClosedError,
    WriterError,
)
from .inspect import FileInfo, file_info, preview
from .inspect import open_hyperstack as open
from .limits import MAX_PLANES
from .sink import SinkOptions, TiffSink
from .tiff import (
    Codec,
    Hyperstack,
    IJTiffFile,
    PlaneInfo,
    Profile,
    RepairReport,
    StageLabel,
    Tag,
    repair,
    tiffwrite,
)

__all__ = [
    "MAX_PLANES",
    "CalibrationWarning",
    "CloseErrors",
    "Codec",
    "ConfigError",
    "CoordinateError",
    "DatasetError",
    "FileExistsError_",
    "FileInfo",
    "FrameError",
    "Hyperstack",
    "IJTiffFile",
    "MMTiffSinkError",
    "MMTiffSinkWarning",
    "MicroscopeError",
    "MissingFramesWarning",
    "OutputExistsError",
    "PlaneInfo",
    "Profile",
    "ProfileError",
    "RepairReport",
    "SinkOptions",
    "StageLabel",
    "SupersededImagesWarning",
    "Tag",
    "TextReplacedWarning",
    "TiffSink",
    "UnclosedFileWarning",
    "WriterClosedError",
    "WriterError",
    "__version__",
    "file_info",
    "open",
    "preview",
    "repair",
    "tiffwrite",
]
