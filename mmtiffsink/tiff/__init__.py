"""The TIFF writer: knows nothing of Micro-Manager. Bytes, codecs, plane order, the pool."""

from ._codecs import Codec, parse_compression
from ._colors import color_lut, colormap_lut, parse_color
from ._file import IJTiffFile
from ._ome import OmeImageFacts, PlaneInfo, StageLabel, parse_ome
from ._profiles import DEFAULT, Profile, ProfileName
from ._repair import RepairReport, repair
from ._tags import Tag
from ._tiffwrite import tiffwrite
from ._view import Following, Hyperstack, OwnFile, Signal, is_own_file

__all__ = [
    "DEFAULT",
    "Codec",
    "Following",
    "Hyperstack",
    "IJTiffFile",
    "OmeImageFacts",
    "OwnFile",
    "PlaneInfo",
    "Profile",
    "ProfileName",
    "RepairReport",
    "Signal",
    "StageLabel",
    "Tag",
    "color_lut",
    "colormap_lut",
    "is_own_file",
    "parse_color",
    "parse_compression",
    "parse_ome",
    "repair",
    "tiffwrite",
]
