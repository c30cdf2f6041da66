"""What ``mmtiffsink replay`` shows: the progress bar, the summary and the paths it takes.

The conversion itself is :mod:`mmtiffsink.ndtiff`; this module only reports on it (and tells
datasets from the output directory on the command line), for :mod:`mmtiffsink.cli`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mmtiffsink.errors import DatasetError, MMTiffSinkError

from ._reader import dataset_dir, is_ndtiff_dataset

if TYPE_CHECKING:
    from ._replay import ReplayResult

__all__ = ["format_results", "split_replay_paths"]


def split_replay_paths(paths: Sequence[Path], out: Path | None) -> tuple[list[Path], Path]:
    """Tell the datasets from the output directory in ``replay DATASET [OUT]``.

    Parameters
    ----------
    paths
        The positional paths of the command line.
    out
        The ``--out`` directory, or None.

    Returns
    -------
    datasets : list of Path
        The datasets.
    out : Path
        The output directory: ``out`` when given; else the second path when there are two
        and it is not an NDTiff dataset; else, for one dataset, its parent directory.

    Raises
    ------
    DatasetError
        No path, or several datasets without ``--out`` (where the files should go is
        ambiguous).

    """
    items = list(paths)
    if not items:
        msg = "no dataset given"
        raise DatasetError(msg)
    if out is not None:
        return items, out
    if len(items) == 1:
        return items, dataset_dir(items[0]).resolve().parent
    if len(items) == 2 and not is_ndtiff_dataset(items[1]):
        return [items[0]], items[1]
    if len(items) == 2:
        msg = (
            f"{items[1]} is an NDTiff dataset, not an output directory: to convert both "
            "datasets give the output directory with --out OUTDIR"
        )
    else:
        msg = (
            f"{len(items)} paths given without --out: convert several datasets with "
            "`mmtiffsink replay DS1 DS2 ... --out OUTDIR`, one with `replay DATASET [OUT]`"
        )
    raise DatasetError(msg)


def format_results(results: Sequence[ReplayResult], *, errors: bool = True) -> str:
    """The end-of-job summary: per dataset its files, frames and time; failures with errors.

    Parameters
    ----------
    results
        The results of :func:`replay_many` (or of :func:`replay`).
    errors
        Include each failure's error (the command line says them on stderr instead, once).

    Returns
    -------
    str
        Readable text; the last line counts converted and failed datasets.

    """
    blocks: list[str] = []
    for result in results:
        state = "converted" if result.ok else "FAILED"
        head = (
            f"{result.dataset}: {state}, {result.frames} frame"
            f"{'s' if result.frames != 1 else ''} in {result.elapsed_s:.1f} s"
        )
        lines = [head]
        if result.error is not None and errors:
            lines.append(f"  error: {result.error}")
        if result.files:
            lines.append(_indent(_files_table(result.files)))
        blocks.append("\n".join(lines))
    failed = [r for r in results if not r.ok]
    total = (
        f"{len(results)} dataset{'s' if len(results) != 1 else ''}: "
        f"{len(results) - len(failed)} converted, {len(failed)} failed"
    )
    if failed and len(results) > 1:
        total += " (" + ", ".join(str(r.dataset) for r in failed) + ")"
    blocks.append(total)
    return "\n\n".join(blocks)


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())


def _files_table(files: Sequence[Path]) -> str:
    """``summary_table`` of :mod:`mmtiffsink.inspect` over ``files``; a plain list if unreadable."""
    from mmtiffsink.inspect import file_info, summary_table

    infos = []
    unreadable: list[str] = []
    for path in files:
        try:
            infos.append(file_info(path))
        except (MMTiffSinkError, OSError) as exc:
            unreadable.append(f"{path}: cannot be described: {exc}")
    parts = [summary_table(infos)] if infos else []
    return "\n".join(parts + unreadable)
