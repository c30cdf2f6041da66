"""The TIFF writer: knows nothing of Micro-Manager. Bytes, codecs, plane order, the pool."""

from ._codecs import Codec, parse_compression
from ._file import IJTiffFile, Profile
from ._repair import RepairReport, repair
from ._tags import Tag
from ._tiffwrite import tiffwrite

__all__ = [
    "Codec",
    "IJTiffFile",
    "Profile",
    "RepairReport",
    "Tag",
    "parse_compression",
    "repair",
    "tiffwrite",
]
