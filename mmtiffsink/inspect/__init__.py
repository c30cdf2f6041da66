"""Looking at files: :func:`file_info` (``mmtiffsink info``) and :func:`preview`.

Reads TIFF files, ours (finished, unfinished or killed) and others'; never writes one. Reads
our private tags through :mod:`mmtiffsink.tiff.format`.
"""

from ._info import FileInfo, file_info, summary_table
from ._preview import preview, write_previews

__all__ = ["FileInfo", "file_info", "preview", "summary_table", "write_previews"]
