"""Looking at files: ``info``, ``preview`` and ``mmtiffsink.open``.

:func:`file_info` (``mmtiffsink info``), :func:`preview` and :func:`open_hyperstack`
(``mmtiffsink.open``).
Reads TIFF files, ours (finished, unfinished or killed) and others'; never writes one. Reads
our private tags through :mod:`mmtiffsink.tiff.format`.
"""

from ._info import FileInfo, file_info, summary_table
from ._preview import preview, write_previews
from ._reader import ForeignFile, open_hyperstack

__all__ = [
    "FileInfo",
    "ForeignFile",
    "file_info",
    "open_hyperstack",
    "preview",
    "summary_table",
    "write_previews",
]
