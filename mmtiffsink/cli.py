"""The ``mmtiffsink`` command: ``run``, ``replay``, ``info``, ``repair``, ``preview``, ``example``.

Every subcommand prints a readable message and exits non-zero on failure; a traceback is
shown only with ``--traceback``. Exit status: 0 success, 1 failure (some dataset or file
failed, or the run stopped), 2 bad command line, 130 interrupted.

The work is done by :mod:`mmtiffsink.runfile`, :mod:`mmtiffsink.ndtiff` and
:mod:`mmtiffsink.inspect`; this module only parses arguments and reports.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ._version import __version__
from .errors import MMTiffSinkError

if TYPE_CHECKING:
    from mmtiffsink.runfile import RunConfig

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    from .tiff import Profile

    parser.add_argument(
        "--profile",
        choices=tuple(Profile.ALL),
        default=None,
        help="file profile (default: bigtiff)",
    )
    parser.add_argument(
        "--compression",
        default=None,
        help="zstd, deflate, none, or NAME:LEVEL such as zstd:9 (default: the profile's)",
    )
    parser.add_argument(
        "--predictor",
        action="store_true",
        help="add TIFF's horizontal-differencing predictor to the codec (integer pixels; "
        "bigtiff and ome profiles): files about 4%% smaller",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace output files that exist"
    )
    _add_positions_option(parser)


def _add_positions_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--positions",
        choices=("files", "series"),
        default=None,
        help=(
            "files: one file per position (default); series: every position as a series "
            "(OME Image) of one file, with --profile ome"
        ),
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmtiffsink",
        description="Micro-Manager / pycro-manager frames to Fiji-ready hyperstack TIFFs.",
    )
    parser.add_argument("--version", action="version", version=f"mmtiffsink {__version__}")
    parser.add_argument(
        "--traceback", action="store_true", help="show the full traceback of an error"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run the acquisition a YAML file describes",
        description=(
            "Run the acquisition described by a YAML file (`mmtiffsink example` lists "
            "working ones; `mmtiffsink example demo > demo.yaml` writes one)."
        ),
    )
    run.add_argument("config", type=Path, help="the YAML run file")
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="validate the file and print the planned events; acquire nothing",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument(
        "--no-preview", action="store_true", help="no preview PNG beside each file at the end"
    )
    _add_positions_option(run)  # overrides the run file's output.positions

    replay = sub.add_parser(
        "replay",
        help="convert NDTiff datasets into hyperstack TIFFs",
        description=(
            "Convert Micro-Manager NDTiff datasets into one hyperstack TIFF per position. "
            "`replay DATASET [OUT]` converts one dataset into the directory OUT (default: "
            "the dataset's parent directory); `replay DS1 DS2 ... --out OUTDIR` converts "
            "several in parallel."
        ),
    )
    replay.add_argument("paths", nargs="+", type=Path, metavar="DATASET", help="NDTiff datasets")
    replay.add_argument("--out", type=Path, default=None, help="output directory")
    replay.add_argument(
        "--name", default=None, help="file name prefix (default: the dataset's name)"
    )
    replay.add_argument(
        "--workers", type=int, default=None, help="datasets converted at once on this machine"
    )
    replay.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="convert on this dask.distributed cluster (needs mmtiffsink[cluster])",
    )
    _add_output_options(replay)
    replay.add_argument("--no-progress", action="store_true", help="no progress bar")
    replay.add_argument(
        "--no-preview", action="store_true", help="no preview PNG beside each file at the end"
    )

    info = sub.add_parser(
        "info",
        help="show what a reader will see in a TIFF",
        description=(
            "Dimensions, dtype, profile, codec, calibration, channel names, frames stored "
            "vs planes, file size and compression ratio."
        ),
    )
    info.add_argument("files", nargs="+", type=Path, metavar="FILE")
    info.add_argument("--json", action="store_true", help="print JSON")

    repair = sub.add_parser(
        "repair",
        help="finish a file left by a killed process",
        description="Finish, in place, a hyperstack whose writer was killed.",
    )
    repair.add_argument("files", nargs="+", type=Path, metavar="FILE")

    preview = sub.add_parser(
        "preview",
        help="draw a PNG preview (contact sheet) of each TIFF",
        description=(
            "One PNG per file, beside it (FILE.preview.png, the .tif suffix dropped): a tile "
            "per channel in its colour and a composite, titled with the dimensions and "
            "calibration. Reads only the planes the picture needs."
        ),
    )
    preview.add_argument("files", nargs="+", type=Path, metavar="FILE")
    preview.add_argument(
        "-o", "--out", type=Path, default=None, metavar="OUT.png", help="the PNG (one FILE only)"
    )
    preview.add_argument(
        "--projection",
        choices=("max", "mid"),
        default="max",
        help="z maximum projection (default) or the middle slice",
    )
    preview.add_argument(
        "--time",
        choices=("first", "last", "all"),
        default="first",
        help="the first (default) or last time point, or a row per time point (at most 8)",
    )

    example = sub.add_parser(
        "example",
        help="list the example run files, or print one",
        description=(
            "Without NAME, list the example run files shipped with mmtiffsink; with NAME, "
            "print that run file (e.g. `mmtiffsink example demo > demo.yaml && mmtiffsink run "
            "demo.yaml`: its output folder is relative to the run file)."
        ),
    )
    example.add_argument("name", nargs="?", default=None, metavar="NAME", help="an example")
    return parser


def _compression(text: str | None) -> object:
    """``--compression`` as the options take it (the profile's default when not given).

    The text goes as it is: ``Codec.parse`` reads ``zstd``, ``zstd:9``, ``none``.
    """
    from .tiff import DEFAULT

    return DEFAULT if text is None else text


def _cmd_run(args: argparse.Namespace) -> int:
    from mmtiffsink.runfile import format_plan, format_result, load_config, run

    config = load_config(args.config)
    if args.positions is not None:
        config = _with_positions(config, args.positions)
    if args.dry_run:
        print(format_plan(config))
        return EXIT_OK
    result = run(config, progress=not args.no_progress)
    print(format_result(result))
    if not args.no_preview and config.output.preview:
        _previews("run", result.files)
    return EXIT_OK if result.ok else EXIT_FAILED


def _with_positions(config: RunConfig, positions: str) -> RunConfig:
    """The run file's configuration with ``output.positions`` from the command line."""
    output = config.output
    output.options().replace(positions=positions)  # the same checks as in the run file
    changed = output.model_copy(update={"positions": positions})
    return config.model_copy(update={"output": changed})


def _previews(command: str, files: Sequence[Path]) -> None:
    """Write a preview PNG beside each file; a failed preview is reported, never fatal."""
    from mmtiffsink.inspect import write_previews

    def failed(path: Path, exc: Exception) -> None:
        print(f"mmtiffsink {command}: no preview of {path}: {exc}", file=sys.stderr)

    for png in write_previews([f for f in files if Path(f).exists()], on_error=failed):
        print(f"preview: {png}")


def _cmd_replay(args: argparse.Namespace) -> int:
    from mmtiffsink.ndtiff import ReplayOptions, format_results, replay_many, split_replay_paths

    datasets, out = split_replay_paths(args.paths, args.out)
    options = ReplayOptions(
        name=args.name,
        profile=args.profile or "bigtiff",
        compression=_compression(args.compression),
        predictor=True if args.predictor else None,
        if_exists="overwrite" if args.overwrite else "error",
        positions=args.positions or "files",
    )
    results = replay_many(
        datasets,
        out,
        options,
        workers=args.workers,
        scheduler=args.scheduler,
        progress=not args.no_progress,
    )
    print(format_results(results, errors=False))  # each error is said once, on stderr
    if not args.no_preview:
        _previews("replay", [f for result in results for f in result.files])
    for result in results:
        if not result.ok:
            error = str(result.error)
            where = "" if error.startswith(str(result.dataset)) else f"{result.dataset}: "
            print(f"mmtiffsink replay: {where}{error}", file=sys.stderr)
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED


def _cmd_info(args: argparse.Namespace) -> int:
    import json

    from mmtiffsink.inspect import file_info

    status = EXIT_OK
    infos = []
    for path in args.files:
        try:
            infos.append(file_info(path))
        except MMTiffSinkError as exc:
            print(f"mmtiffsink info: {exc}", file=sys.stderr)
            status = EXIT_FAILED
    if args.json:
        print(json.dumps([i.to_dict() for i in infos], indent=2))
    else:
        print("\n\n".join(i.format() for i in infos))
    return status


def _cmd_repair(args: argparse.Namespace) -> int:
    import warnings

    from .errors import MissingFramesWarning
    from .tiff import repair

    status = EXIT_OK
    for path in args.files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MissingFramesWarning)  # reported below
                report = repair(path)
        except (MMTiffSinkError, OSError) as exc:
            where = "" if str(exc).startswith(str(path)) else f"{path}: "
            print(f"mmtiffsink repair: {where}{exc}", file=sys.stderr)
            status = EXIT_FAILED
            continue
        if report.already_finished:
            print(f"{path}: already a finished hyperstack; left unchanged")
        else:
            c, z, t = report.shape
            blank = f", {report.blank_planes} blank planes filled" if report.blank_planes else ""
            series = f", {report.series} series" if report.series > 1 else ""
            print(
                f"{path}: repaired: {report.frames} frames recovered, C={c} Z={z} T={t}"
                f"{series}{blank}"
            )
    return status


def _cmd_preview(args: argparse.Namespace) -> int:
    from mmtiffsink.inspect import preview

    if args.out is not None and len(args.files) > 1:
        print("mmtiffsink preview: error: -o/--out takes one FILE only", file=sys.stderr)
        return EXIT_USAGE
    status = EXIT_OK
    for path in args.files:
        try:
            png = preview(path, args.out, projection=args.projection, time=args.time)
        except MMTiffSinkError as exc:
            print(f"mmtiffsink preview: error: {exc}", file=sys.stderr)
            status = EXIT_FAILED
            continue
        print(f"{path} -> {png}")
    return status


def _examples() -> dict[str, str]:
    """The example run files shipped in ``mmtiffsink/examples``: name -> text."""
    from importlib.resources import files

    folder = files("mmtiffsink").joinpath("examples")
    found = (f for f in folder.iterdir() if f.name.endswith(".yaml"))
    return {f.name.removesuffix(".yaml"): f.read_text(encoding="utf-8") for f in found}


def _cmd_example(args: argparse.Namespace) -> int:
    examples = _examples()
    if args.name is None:
        for name, text in sorted(examples.items()):
            title = text.splitlines()[0].lstrip("# ") if text else ""
            print(f"{name:<20} {title}")
        return EXIT_OK
    name = str(args.name).removesuffix(".yaml")
    if name not in examples:
        known = ", ".join(sorted(examples))
        message = f"mmtiffsink example: error: no example {name!r} (there are: {known})"
        print(message, file=sys.stderr)
        return EXIT_USAGE
    sys.stdout.write(examples[name])
    return EXIT_OK


_COMMANDS = {
    "run": _cmd_run,
    "replay": _cmd_replay,
    "info": _cmd_info,
    "repair": _cmd_repair,
    "preview": _cmd_preview,
    "example": _cmd_example,
}


def _end_interrupted_run() -> None:
    """End the process of an interrupted ``mmtiffsink run`` now, with status 130.

    By then the run has finished its files and stopped its microscope; what may be left are
    the engines' threads (pycro-manager's, a camera's or the core's C++ threads). Python's
    shutdown would stop them mid-call: a thread inside C++ then aborts the process (SIGABRT,
    "FATAL: exception not rethrown") and pycro-manager's threads print their tracebacks.
    ``os._exit`` (every platform) skips that shutdown; the output streams are flushed first.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(EXIT_INTERRUPTED)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``mmtiffsink`` command line; returns the exit status.

    Parameters
    ----------
    argv
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 1 on failure, 2 for a bad command line, 130 when interrupted.
        As the program (``argv`` None), an interrupted ``run`` ends the process with 130
        once its files are finished, without Python's shutdown (see
        :func:`_end_interrupted_run`).

    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error
        return int(exc.code or 0)
    try:
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print(f"mmtiffsink {args.command}: interrupted", file=sys.stderr)
        if argv is None and args.command == "run":
            _end_interrupted_run()
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `mmtiffsink info *.tif | head`: the reader left; not an error
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps the exit flush quiet
        return EXIT_OK
    except (MMTiffSinkError, OSError) as exc:
        if args.traceback:
            traceback.print_exc()
        print(f"mmtiffsink {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
