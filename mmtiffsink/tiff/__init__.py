"""The TIFF writer: knows nothing of Micro-Manager. Bytes, codecs, plane order, the pool."""

from ._codecs import Codec, parse_compression
from ._file import IJTiffFile
from ._ome import PlaneInfo, StageLabel
from ._profiles import DEFAULT, Profile, ProfileName
from ._repair import RepairReport, repair
from ._tags import Tag
from ._tiffwrite import tiffwrite
from ._view import Following, Hyperstack, OwnFile, Signal

__all__ = [
    "DEFAULT",
    "Codec",
    "Following",
    "Hyperstack",
    "IJTiffFile",
    "OwnFile",
    "PlaneInfo",
    "Profile",
    "ProfileName",
    "RepairReport",
    "Signal",
    "StageLabel",
    "Tag",
    "parse_compression",
    "repair",
    "tiffwrite",
]
