"""The TIFF writer: knows nothing of Micro-Manager. Bytes, codecs, plane order, the pool."""

from ._codecs import Codec, parse_compression
from ._colors import color_lut, colormap_lut, parse_color
from ._file import IJTiffFile
from ._ome import OmeImageFacts, PlaneInfo, StageLabel, parse_ome
from ._profiles import DEFAULT, Profile, ProfileName
from ._repair import RepairReport, repair
from ._tags import Tag
from ._tiffwrite import tiffwrite

__all__ = [
    "DEFAULT",
    "Codec",
    "IJTiffFile",
    "OmeImageFacts",
    "PlaneInfo",
    "Profile",
    "ProfileName",
    "RepairReport",
    "StageLabel",
    "Tag",
    "color_lut",
    "colormap_lut",
    "parse_color",
    "parse_compression",
    "parse_ome",
    "repair",
    "tiffwrite",
]
