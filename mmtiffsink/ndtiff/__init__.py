"""NDTiff datasets (pycro-manager's and Micro-Manager's storage) replayed into hyperstacks.

Stages: :mod:`._format` (bounded readers of the index and TIFF headers), :mod:`._reader`
(:class:`NDTiffSource`: a dataset's images, checked), :mod:`._replay` (:func:`replay` through a
:class:`~mmtiffsink.sink.TiffSink`, locally or on dask), :mod:`._report` (what the CLI prints).
"""

from ._reader import (
    INDEX_NAME,
    IndexEntry,
    NDTiffSource,
    dataset_dir,
    index_path,
    is_ndtiff_dataset,
)
from ._replay import ReplayOptions, ReplayResult, replay, replay_many
from ._report import format_results, split_replay_paths

__all__ = [
    "INDEX_NAME",
    "IndexEntry",
    "NDTiffSource",
    "ReplayOptions",
    "ReplayResult",
    "dataset_dir",
    "format_results",
    "index_path",
    "is_ndtiff_dataset",
    "replay",
    "replay_many",
    "split_replay_paths",
]
