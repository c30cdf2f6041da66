"""Reader matrix: what each reader shows of a file of each profile (docs/profiles.md).

Not a speed benchmark: a measurement of what readers show, kept beside the other measurement
scripts whose results the docs quote (and linted with them).

    python benchmarks/reader_matrix.py                  # Markdown table, about a minute
    python benchmarks/reader_matrix.py --json out.json  # also every measured value as JSON
    python benchmarks/reader_matrix.py --cases ome:zstd,bigtiff:zstd

Writes one small file per case (profile x codec: each profile's default codec and ``none``)
with known content: C=3 named channels with colours, Z=4, T=3, 24 x 40 uint16 frames whose
pixels say which plane they are, pixel size, z step and time interval, and per-plane DeltaT,
exposure and stage position (``save(..., plane=...)``) plus the frame's Micro-Manager JSON
(tag 51123) as a sink writes it. Each file is then opened with every reader available here:

* tifffile (``series[0]``, ``ome_metadata`` or ``imagej_metadata``, tag 51123),
* bioio with each installed plugin (bioio-ome-tiff, bioio-tifffile) and ``BioImage(path)``
  choosing its plugin itself,
* Bio-Formats (``showinf -omexml`` and ``bfconvert`` in ``tests/readers.py``'s JVM server),
* the Bio-Formats Importer inside ImageJ (what a Fiji user sees) and plain ImageJ 1.x
  (``tests/readers.py``'s ``imagej_read``, under Xvfb).

Every cell is derived from what the reader returned, compared with what was written: ``✓``
the value is right where the reader shows it, ``~`` right but only in a secondary place (Show
Info text, original metadata, a raw tag), ``✗`` absent or wrong, ``—`` the reader has no such
notion. The verdict compares ``ome`` with ``bigtiff`` per reader and property.

Needs the test extras and the Java readers (``bash scripts/test.sh`` installs them); a reader
that is missing is listed as such, not guessed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import logging
import math
import re
import sys
import tempfile
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # the checkout, installed or not; tests.readers
    sys.path.insert(0, str(REPO_ROOT))

import tifffile  # noqa: E402

from mmtiffsink import IJTiffFile  # noqa: E402
from mmtiffsink.tiff import Profile  # noqa: E402
from tests import readers  # noqa: E402

# ---------------------------------------------------------------- what every file holds
C, Z, T, Y, X = 3, 4, 3, 24, 40
PIXEL_UM, Z_STEP_UM, INTERVAL_S = 0.65, 0.5, 2.5
NAMES = ("DAPI", "FITC", "Cy5")
# none of them is a reader's default (red, green, blue): a default cannot pass for the file's
COLORS = ("cyan", "magenta", "yellow")
RGB = ((0, 255, 255), (255, 0, 255), (255, 255, 0))
PLANES = [(c, z, t) for t in range(T) for z in range(Z) for c in range(C)]
POINTS = ((0, 1), (5, 0), (X // 3, Y // 2))  # (x, y) sampled in ImageJ

#: (profile, codec): each profile's default codec, and none
CASES = (
    ("bigtiff", "zstd"),
    ("bigtiff", "none"),
    ("imagej", "deflate"),
    ("imagej", "none"),
    ("ome", "zstd"),
    ("ome", "none"),
)
PROPERTIES = (
    "dims",
    "pixel size",
    "z step",
    "interval",
    "names",
    "colours",
    "plane times",
    "pixels",
)


def plane_code(c: int, z: int, t: int) -> int:
    return 1000 + (t * Z + z) * C + c


def frame(c: int, z: int, t: int) -> np.ndarray:
    """A frame that says which plane it is: its code, a ramp in row 0, one odd pixel."""
    out = np.full((Y, X), plane_code(c, z, t), np.uint16)
    out[0, :] = np.arange(X) % 7
    out[Y // 2, X // 3] = 3
    return out


def delta_t(c: int, z: int, t: int) -> float:
    """Seconds since the start: distinct for every plane."""
    return t * INTERVAL_S + (z * C + c) * 0.05


def write_case(directory: Path, profile: str, codec: str) -> Path:
    """Write the test file of one case; return its path (named with the profile's suffix)."""
    path = directory / f"{profile}-{codec}{Profile.get(profile).suffix}"
    with IJTiffFile(
        path,
        shape=(C, Z, T),
        profile=profile,  # type: ignore[arg-type]
        compression=None if codec == "none" else codec,
        pxsize=PIXEL_UM,
        deltaz=Z_STEP_UM,
        timeinterval=INTERVAL_S,
        colors=list(COLORS),
        channel_names=list(NAMES),
    ) as tif:
        for c, z, t in PLANES:
            plane = {
                "delta_t": delta_t(c, z, t),
                "exposure_time": 0.01 * (c + 1),
                "position_x": 100.0,
                "position_y": -50.0,
                "position_z": 10.0 + z * Z_STEP_UM,
            }
            meta = {"ElapsedTime-ms": delta_t(c, z, t) * 1000.0, "Exposure": 10.0 * (c + 1)}
            tif.save(frame(c, z, t), c, z, t, metadata=meta, plane=plane)
    return path


def expected_stack() -> np.ndarray:
    """The written pixels, (T, Z, C, Y, X)."""
    out = np.zeros((T, Z, C, Y, X), np.uint16)
    for c, z, t in PLANES:
        out[t, z, c] = frame(c, z, t)
    return out


# ---------------------------------------------------------------- what a reader returned
@dataclass
class Shown:
    """What one reader returned for one file (None: nothing there)."""

    opened: bool
    error: str = ""
    sizes: tuple[int, int, int] | None = None  # C, Z, T
    pixel_size: float | None = None  # µm
    z_step: float | None = None  # µm
    interval: float | None = None  # s
    interval_where: str = ""
    names: list[str] | None = None
    names_where: str = ""
    names_secondary: bool = False
    colors: list[tuple[int, int, int]] | None = None
    colors_where: str = ""
    plane_times: dict[str, float] | None = None  # "c,z,t" -> s
    times_where: str = ""
    times_secondary: bool = False
    times_na: bool = False  # the reader has no per-plane time at all
    pixels: str = ""  # "exact", "sampled", "wrong: ...", "" (not read)
    notes: list[str] = field(default_factory=list)
    version: str = ""  # the reader's own version, when it tells


@dataclass(frozen=True)
class Cell:
    """A judged property: score 2 right, 1 right in a secondary place, 0 absent or wrong,
    None: the reader has no such notion."""

    score: int | None
    text: str


def _key(c: int, z: int, t: int) -> str:
    return f"{c},{z},{t}"


def _stack_tzcyx(data: np.ndarray, axes: str) -> np.ndarray | None:
    """``data`` with ``axes`` as (T, Z, C, Y, X), singleton axes added; None if impossible."""
    for ax in "TZCYX":
        if ax not in axes:
            data = data[np.newaxis]
            axes = ax + axes
    if sorted(axes) != sorted("TZCYX"):
        return None
    return np.transpose(data, [axes.index(a) for a in "TZCYX"])


def _compare_pixels(data: np.ndarray | None) -> str:
    if data is None:
        return "wrong: axes"
    want = expected_stack()
    if data.shape != want.shape:
        return f"wrong: shape {data.shape}"
    if not np.array_equal(data, want):
        return f"wrong: {int((data != want).sum())} values differ"
    return "exact"


# -- OME-XML (tifffile's ome_metadata, Bio-Formats' -omexml)
_LENGTH_UM = {"µm": 1.0, "μm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "m": 1e6}
_TIME_S = {"s": 1.0, "ms": 1e-3, "min": 60.0, "h": 3600.0}


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _kids(elem: ET.Element, name: str) -> list[ET.Element]:
    return [e for e in elem if _local(e.tag) == name]


def _quantity(attrs: dict[str, str], key: str, table: dict[str, float], unit: str) -> float | None:
    if key not in attrs:
        return None
    factor = table.get(attrs.get(key + "Unit", unit))
    return None if factor is None else float(attrs[key]) * factor


def ome_color(value: str) -> tuple[int, int, int]:
    """RGB of an OME Color (a signed 32-bit RGBA integer)."""
    v = int(value) & 0xFFFFFFFF
    return (v >> 24) & 255, (v >> 16) & 255, (v >> 8) & 255


def read_ome_xml(xml: str, shown: Shown, where: str) -> None:
    """Fill ``shown`` from the first Image of an OME-XML document."""
    root = ET.fromstring(xml)
    image = _kids(root, "Image")[0]
    pixels = _kids(image, "Pixels")[0]
    a = pixels.attrib
    shown.sizes = (int(a["SizeC"]), int(a["SizeZ"]), int(a["SizeT"]))
    shown.pixel_size = _quantity(a, "PhysicalSizeX", _LENGTH_UM, "µm")
    shown.z_step = _quantity(a, "PhysicalSizeZ", _LENGTH_UM, "µm")
    shown.interval = _quantity(a, "TimeIncrement", _TIME_S, "s")
    shown.interval_where = "Pixels TimeIncrement"
    channels = _kids(pixels, "Channel")
    names = [ch.get("Name") for ch in channels]
    if any(n is not None for n in names):
        shown.names, shown.names_where = [n or "" for n in names], "OME Channel Name"
    colors = [ch.get("Color") for ch in channels]
    if any(c is not None for c in colors):
        shown.colors = [ome_color(c) if c else (-1, -1, -1) for c in colors]
        shown.colors_where = "OME Channel Color"
    times = {}
    for plane in _kids(pixels, "Plane"):
        p = plane.attrib
        value = _quantity(p, "DeltaT", _TIME_S, "s")
        if value is not None:
            times[_key(int(p["TheC"]), int(p["TheZ"]), int(p["TheT"]))] = value
    if times:
        shown.plane_times, shown.times_where = times, f"{where} Plane DeltaT"


_INFO_NAME = re.compile(r"^\s*Channel(\d+)Name\s*[=:]\s*(.*?)\s*$")


def names_from_lines(lines: Sequence[str]) -> list[str] | None:
    """Channel names of ``ChannelNName = X`` lines (the ImageJ Info text), in channel order."""
    found = {}
    for line in lines:
        m = _INFO_NAME.match(line)
        if m:
            found[int(m.group(1))] = m.group(2)
    return [found.get(i, "") for i in range(max(found) + 1)] if found else None


# ---------------------------------------------------------------- the readers
def frame_json(page: Any) -> dict[str, Any] | None:
    """A page's frame metadata JSON: tag 51123, or 65423 on the first page (docs, *File
    layout*: tifffile takes a first page with 51123 for a Micro-Manager MMStack file)."""
    if not isinstance(page, tifffile.TiffPage):
        return None
    for code in (51123, 65423):
        tag = page.tags.get(code)
        if tag is None:
            continue
        value = tag.value
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace").rstrip("\0")
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = json.loads(value)
        return value if isinstance(value, dict) else None
    return None


def read_tifffile(path: Path) -> Shown:
    """tifffile: ``series[0]`` and the metadata it parses (OME-XML, ImageJ), tag 51123."""
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        axes, shape = series.axes, series.shape
        shown = Shown(opened=True)
        shown.sizes = tuple(  # type: ignore[assignment]
            shape[axes.index(a)] if a in axes else 1 for a in "CZT"
        )
        shown.pixels = _compare_pixels(_stack_tzcyx(series.asarray(), axes))
        shown.notes.append(f"series axes {axes}")
        if tif.is_ome and tif.ome_metadata:
            shown.notes.append("is_ome")
            read_ome_xml(tif.ome_metadata, shown, "ome_metadata")
        elif tif.is_imagej and tif.imagej_metadata is not None:
            shown.notes.append("is_imagej")
            ij = tif.imagej_metadata
            xres = tif.pages.first.tags.get("XResolution")
            unit = str(ij.get("unit", ""))
            if xres is not None and unit in ("micron", "um", "µm"):
                num, den = xres.value
                shown.pixel_size = den / num if num else None
            shown.z_step = float(ij["spacing"]) if "spacing" in ij else None
            if "finterval" in ij:
                shown.interval = float(ij["finterval"])
                shown.interval_where = "imagej_metadata finterval"
            labels = ij.get("Labels")
            if labels:
                shown.names = [str(v) for v in labels[:C]]
                shown.names_where = "imagej_metadata Labels"
            elif (lines := names_from_lines(str(ij.get("Info", "")).splitlines())) is not None:
                shown.names, shown.names_where = lines, "imagej_metadata Info text"
                shown.names_secondary = True
            luts = ij.get("LUTs")
            if luts:
                shown.colors = [tuple(int(v) for v in np.asarray(lut)[:, 255]) for lut in luts]
                shown.colors_where = "imagej_metadata LUTs"
        if shown.plane_times is None and shown.sizes == (C, Z, T):
            times = {}
            for i, (c, z, t) in enumerate(PLANES):  # IFD order: C fastest, then Z, then T
                value = frame_json(tif.pages[i])
                if value is not None and "ElapsedTime-ms" in value:
                    times[_key(c, z, t)] = float(value["ElapsedTime-ms"]) / 1000.0
            if times:
                shown.plane_times, shown.times_where = times, "tag 51123 JSON"
                shown.times_secondary = True
    return shown


def bioio_plugins() -> list[tuple[str, Any]]:
    """(label, reader class or None for bioio's own choice) of the bioio plugins installed."""
    if importlib.util.find_spec("bioio") is None:
        return []
    out: list[tuple[str, Any]] = [("bioio `BioImage(path)`", None)]
    for module, label in (
        ("bioio_ome_tiff", "bioio-ome-tiff"),
        ("bioio_tifffile", "bioio-tifffile"),
    ):
        if importlib.util.find_spec(module) is not None:
            out.append((label, importlib.import_module(module).Reader))
    return out


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """bioio and ome-types warn and log about things that are not the file's fault."""
    logger = logging.getLogger("bioio")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def read_bioio(path: Path, reader: Any) -> Shown:
    """bioio's public API: dims, channel_names, physical_pixel_sizes, intervals, ome_metadata."""
    from bioio import BioImage

    with _quiet():
        try:
            image = BioImage(path) if reader is None else BioImage(path, reader=reader)
        except Exception as exc:
            text = str(exc).strip().splitlines()
            first = text[0].split(". ")[0] if text else ""
            return Shown(opened=False, error=f"{type(exc).__name__}: {first[:120]}")
        shown = Shown(opened=True)
        if reader is None:
            shown.notes.append(f"picked {type(image.reader).__module__.split('.')[0]}")
        dims = image.dims
        shown.sizes = (dims.C, dims.Z, dims.T)
        sizes = image.physical_pixel_sizes
        shown.pixel_size, shown.z_step = sizes.X, sizes.Z
        interval = image.time_interval
        where = "time_interval"
        if interval is None:
            interval = image.standard_metadata.timelapse_interval
            where = "standard_metadata.timelapse_interval"
        if interval is not None:
            shown.interval = (
                interval.total_seconds() if hasattr(interval, "total_seconds") else float(interval)
            )
            shown.interval_where = where
        shown.names, shown.names_where = [str(n) for n in image.channel_names], "channel_names"
        try:
            ome = image.ome_metadata
        except Exception:  # bioio-tifffile: NotImplementedError
            ome = None
        if ome is not None and ome.images:
            pixels = ome.images[0].pixels
            colors = [ch.color for ch in pixels.channels]
            if any(c is not None for c in colors):
                shown.colors = [
                    tuple(c.as_rgb_tuple(alpha=False)) if c else (-1, -1, -1)  # type: ignore[misc]
                    for c in colors
                ]
                shown.colors_where = "ome_metadata Channel color"
            times = {
                _key(p.the_c, p.the_z, p.the_t): float(p.delta_t)
                * _TIME_S.get(getattr(p.delta_t_unit, "value", "s"), math.nan)
                for p in pixels.planes
                if p.delta_t is not None
            }
            if times:
                shown.plane_times, shown.times_where = times, "ome_metadata Plane delta_t"
        data = image.get_image_data("TZCYX")
        shown.pixels = _compare_pixels(np.asarray(data))
    return shown


def read_bioformats(path: Path, jar: Path, tmp: Path) -> Shown:
    """Bio-Formats ``showinf -omexml`` (its reader, schema check, OME-XML) and ``bfconvert``."""
    run = readers.bioformats_server(jar).run(
        ["info", "-nopix", "-omexml", "-no-upgrade", str(path)], readers.DEFAULT_TIMEOUT
    )
    if run.returncode != 0:
        tail = run.tail(200).strip().splitlines()
        return Shown(opened=False, error=tail[-1] if tail else f"exit {run.returncode}")
    shown = Shown(opened=True)
    m = re.search(r"(\w+Reader) initializing", run.stdout)
    shown.notes.append(m.group(1) if m else "reader unknown")
    if "No validation errors found." in run.stdout:
        shown.notes.append("schema valid")
    info = readers.bioformats_info(path, jar)
    read_ome_xml(info.ome_xml, shown, "OME")
    if shown.names is not None and not any(shown.names):
        shown.names = None
    if shown.names is None:
        pairs = re.findall(
            r"<Key>(Channel\d+Name)</Key>\s*<Value>([^<]*)</Value>", info.ome_xml, flags=re.S
        )
        found = names_from_lines([f"{k} = {v}" for k, v in pairs])
        if found is not None:
            shown.names, shown.names_where = found, "original metadata (ChannelNName keys)"
            shown.names_secondary = True
    try:
        pixels = readers.bioformats_pixels(path, jar, tmp)
        shown.pixels = _compare_pixels(pixels)
    except readers.ReaderError as exc:
        shown.pixels = f"wrong: {exc}"[:80]
    return shown


_TIME_UNITS_S = {"sec": 1.0, "s": 1.0, "ms": 1e-3, "msec": 1e-3, "min": 60.0}


def read_imagej(path: Path, ij_jar: Path, bf_jar: Path | None) -> Shown:
    """ImageJ 1.x, plain (``bf_jar`` None) or through the Bio-Formats Importer."""
    info = readers.imagej_read(path, PLANES, ij_jar, points=POINTS, bioformats_jar=bf_jar)
    if not info.opened:
        lines = [ln.strip().rstrip(":") for ln in info.error.splitlines()[1:]]
        lines = [ln for ln in lines if ln and str(path) not in ln]
        error = (lines[-1] if lines else info.error.splitlines()[0])[:120]
        return Shown(opened=False, error=error, version=info.version)
    shown = Shown(
        opened=True,
        times_na=True,
        sizes=(info.channels, info.slices, info.frames),
        version=info.version,
    )
    if info.composite_mode:
        shown.notes.append(f"{info.composite_mode} mode")
    calibrated = info.unit in ("µm", "um", "micron", "microns")
    shown.pixel_size = info.pixel_width if calibrated else None
    shown.z_step = info.voxel_depth if calibrated and info.slices > 1 else None
    scale = _TIME_UNITS_S.get(info.time_unit)
    if info.frame_interval and scale is not None:
        shown.interval, shown.interval_where = info.frame_interval * scale, "frame interval"
    labels = [info.planes[(c, 0, 0)].label for c in range(C) if (c, 0, 0) in info.planes]
    if len(labels) == C and all(
        re.search(rf"\b{re.escape(n)}\b", lb) for n, lb in zip(NAMES, labels, strict=True)
    ):
        shown.names, shown.names_where = list(NAMES), "slice labels"
    elif (found := names_from_lines(info.info)) is not None:
        shown.names, shown.names_where = found, "Show Info text only"
        shown.names_secondary = True
    if labels:
        shown.notes.append(f"label {labels[0]!r}" if labels[0] else "no slice labels")
    if info.channel_colors:
        shown.colors, shown.colors_where = list(info.channel_colors), "channel LUTs"
    wrong = []
    for c, z, t in PLANES:
        plane = info.planes.get((c, z, t))
        want = frame(c, z, t)
        if plane is None:
            wrong.append((c, z, t))
            continue
        values = tuple(float(want[y, x]) for x, y in POINTS)
        if plane.values != values or not math.isclose(plane.mean, float(want.mean()), rel_tol=1e-9):
            wrong.append((c, z, t))
    shown.pixels = "sampled" if not wrong else f"wrong: {len(wrong)} planes"
    return shown


# ---------------------------------------------------------------- judging
def _color_name(rgb: tuple[int, int, int]) -> str:
    names = {
        (255, 0, 0): "red",
        (0, 255, 0): "green",
        (0, 0, 255): "blue",
        (255, 255, 255): "grey",
        (0, 255, 255): "cyan",
        (255, 0, 255): "magenta",
        (255, 255, 0): "yellow",
    }
    return names.get(rgb, "#{:02x}{:02x}{:02x}".format(*rgb) if min(rgb) >= 0 else "none")


def _number(value: float | None, want: float) -> Cell:
    if value is None:
        return Cell(0, "✗")
    if math.isclose(value, want, rel_tol=1e-6):
        return Cell(2, "✓")
    return Cell(0, f"✗ {value:g}")


def judge(shown: Shown) -> dict[str, Cell]:
    """Each property's cell, from what the reader returned compared with what was written."""
    if not shown.opened:
        return {p: Cell(0, "refused" if p == "dims" else "") for p in PROPERTIES}
    cells: dict[str, Cell] = {}
    cells["dims"] = Cell(2, "✓") if shown.sizes == (C, Z, T) else Cell(0, f"✗ C,Z,T={shown.sizes}")
    cells["pixel size"] = _number(shown.pixel_size, PIXEL_UM)
    cells["z step"] = _number(shown.z_step, Z_STEP_UM)
    cells["interval"] = _number(shown.interval, INTERVAL_S)
    if shown.names is None:
        cells["names"] = Cell(0, "✗")
    elif tuple(shown.names[:C]) == NAMES and len(shown.names) == C:
        cells["names"] = (
            Cell(1, f"~ {shown.names_where}") if shown.names_secondary else Cell(2, "✓")
        )
    else:
        got = ", ".join(f"`{n}`" for n in shown.names[:2])
        cells["names"] = Cell(0, f"✗ {got}, …")
    if shown.colors is None:
        cells["colours"] = Cell(0, "✗")
    elif tuple(shown.colors[:C]) == RGB and len(shown.colors) == C:
        cells["colours"] = Cell(2, "✓")
    else:
        cells["colours"] = Cell(0, "✗ " + "/".join(_color_name(c) for c in shown.colors))
    if shown.times_na:
        cells["plane times"] = Cell(None, "—")
    elif shown.plane_times is None:
        cells["plane times"] = Cell(0, "✗")
    else:
        right = all(
            math.isclose(
                shown.plane_times.get(_key(c, z, t), math.nan),
                delta_t(c, z, t),
                rel_tol=1e-6,
                abs_tol=1e-9,
            )
            for c, z, t in PLANES
        )
        if not right:
            cells["plane times"] = Cell(0, "✗ wrong")
        elif shown.times_secondary:
            cells["plane times"] = Cell(1, f"~ {shown.times_where}")
        else:
            cells["plane times"] = Cell(2, "✓")
    pixels = shown.pixels
    cells["pixels"] = (
        Cell(2, "✓")
        if pixels == "exact"
        else Cell(2, "✓ (sampled)")
        if pixels == "sampled"
        else Cell(0, f"✗ {pixels}")
    )
    return cells


# ---------------------------------------------------------------- the matrix
@dataclass
class Row:
    reader: str
    profile: str
    codec: str
    shown: Shown
    cells: dict[str, Cell]


@dataclass
class Matrix:
    rows: list[Row]
    versions: dict[str, str]
    missing: dict[str, str]  # reader -> why it was not measured

    def row(self, reader: str, profile: str, codec: str) -> Row:
        for r in self.rows:
            if (r.reader, r.profile, r.codec) == (reader, profile, codec):
                return r
        raise KeyError((reader, profile, codec))

    @property
    def readers(self) -> list[str]:
        return list(dict.fromkeys(r.reader for r in self.rows))

    def behind(self) -> list[tuple[str, str, str]]:
        """(reader, property, codec) wherever ``ome`` scores below ``bigtiff`` (same codec)."""
        out = []
        for reader in self.readers:
            for codec in ("zstd", "none"):
                try:
                    big, ome = self.row(reader, "bigtiff", codec), self.row(reader, "ome", codec)
                except KeyError:
                    continue
                for prop in PROPERTIES:
                    if (big.cells[prop].score or 0) > (ome.cells[prop].score or 0):
                        out.append((reader, prop, codec))
        return out

    def verdict(self) -> list[str]:
        """:meth:`behind` in words: one line per reader, property and codec."""
        lines = []
        for reader, prop, codec in self.behind():
            b = self.row(reader, "bigtiff", codec).cells[prop].text
            o = self.row(reader, "ome", codec).cells[prop].text
            lines.append(f"{reader}, {prop} ({codec}): bigtiff {b}, ome {o}")
        return lines


Reader = Callable[[Path], Shown]


def available_readers(
    bf_jar: Path | None, ij_jar: Path | None, tmp: Path
) -> tuple[list[tuple[str, Reader]], dict[str, str], dict[str, str]]:
    """(label, function) of every reader installed here, the missing ones, and versions."""
    found: list[tuple[str, Reader]] = [("tifffile", read_tifffile)]
    versions = {"tifffile": tifffile.__version__}
    missing: dict[str, str] = {}
    for label, reader in bioio_plugins():
        found.append((label, lambda p, r=reader: read_bioio(p, r)))
    for dist in ("bioio", "bioio-ome-tiff", "bioio-tifffile"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[dist] = importlib.metadata.version(dist)
    if "bioio" not in versions:
        missing["bioio"] = "not installed"
    for dist in ("bioio-ome-tiff", "bioio-tifffile"):
        if dist not in versions:
            missing[dist] = "not installed"
    if bf_jar is not None:
        run = readers.bioformats_server(bf_jar).run(["info", "-version"], 120)
        m = re.search(r"Version: (\S+)", run.stdout)
        versions["Bio-Formats"] = m.group(1) if m else "?"
        found.append(
            ("Bio-Formats (showinf, bfconvert)", lambda p: read_bioformats(p, bf_jar, tmp))
        )
    else:
        missing["Bio-Formats"] = "java, javac or .tools/bioformats_package.jar missing"
    if ij_jar is not None and bf_jar is not None:
        found.append(("Fiji's Bio-Formats Importer", lambda p: read_imagej(p, ij_jar, bf_jar)))
    if ij_jar is not None:
        found.append(("ImageJ 1.x (File > Open)", lambda p: read_imagej(p, ij_jar, None)))
    else:
        missing["ImageJ 1.x"] = "java, xvfb-run or ij.jar missing"
    for module, why in (
        ("napari", "not installed (its TIFF reading goes through tifffile or bioio plugins)"),
        ("bioio_bioformats", "not installed (Bio-Formats is measured directly)"),
        ("aicsimageio", "not installed (bioio is its successor)"),
    ):
        if importlib.util.find_spec(module) is None:
            missing[module.replace("_", "-")] = why
    return found, missing, versions


def _java_tools() -> tuple[Path | None, Path | None]:
    import shutil

    bf = readers.DEFAULT_BIOFORMATS_JAR
    ij = readers.DEFAULT_IMAGEJ_JAR
    java = shutil.which("java") is not None
    bf_ok = java and bf.is_file() and readers.java_compiler() is not None
    ij_ok = java and shutil.which("xvfb-run") is not None and ij.is_file()
    return (bf if bf_ok else None), (ij if ij_ok else None)


def measure(
    directory: Path,
    *,
    cases: Sequence[tuple[str, str]] = CASES,
    bioformats_jar: Path | None = None,
    imagej_jar: Path | None = None,
) -> Matrix:
    """Write every case's file in ``directory`` and open it with every reader available.

    ``bioformats_jar`` / ``imagej_jar``: None leaves that Java reader out.
    """
    found, missing, versions = available_readers(bioformats_jar, imagej_jar, directory)
    rows: list[Row] = []
    for profile, codec in cases:
        path = write_case(directory, profile, codec)
        for label, read in found:
            shown = read(path)
            shown.error = shown.error.replace(str(path), path.name)
            rows.append(Row(label, profile, codec, shown, judge(shown)))
    ij_versions = [r.shown.version for r in rows if r.shown.version]
    if ij_versions:
        versions["ImageJ"] = ij_versions[0]
    return Matrix(rows, versions, missing)


def markdown(matrix: Matrix) -> str:
    """The matrix as a Markdown table; rows of one reader and profile merged when the codecs
    agree."""
    head = ["reader", "file", *PROPERTIES, "notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for reader in matrix.readers:
        rows = [r for r in matrix.rows if r.reader == reader]
        for profile in dict.fromkeys(r.profile for r in rows):
            group = [r for r in rows if r.profile == profile]
            merged: list[tuple[list[str], Row]] = []
            for r in group:
                texts = [r.cells[p].text for p in PROPERTIES]
                for codecs, first in merged:
                    if [first.cells[p].text for p in PROPERTIES] == texts:
                        codecs.append(r.codec)
                        break
                else:
                    merged.append(([r.codec], r))
            for codecs, r in merged:
                if r.shown.opened:
                    cells = [r.cells[p].text for p in PROPERTIES]
                    notes = "; ".join(r.shown.notes)
                else:
                    cells = ["refused", *[""] * (len(PROPERTIES) - 1)]
                    notes = r.shown.error.replace("|", "\\|")
                file = f"`{profile}` ({', '.join(codecs)})"
                lines.append("| " + " | ".join([reader, file, *cells, notes]) + " |")
    return "\n".join(lines)


def report(matrix: Matrix) -> str:
    """Table, versions, readers not measured and the verdict, as Markdown."""
    out = [markdown(matrix), ""]
    out.append("Measured with " + ", ".join(f"{k} {v}" for k, v in matrix.versions.items()) + ".")
    if matrix.missing:
        out.append(
            "Not measured: " + "; ".join(f"{k} ({v})" for k, v in matrix.missing.items()) + "."
        )
    behind = matrix.verdict()
    out.append("")
    if behind:
        out.append("`ome` is behind `bigtiff` in:")
        out.extend(f"- {line}" for line in behind)
    else:
        out.append("`ome` is at least as good as `bigtiff` in every reader measured.")
    return "\n".join(out)


def to_json(matrix: Matrix) -> dict[str, Any]:
    return {
        "written": {
            "sizes": {"C": C, "Z": Z, "T": T, "Y": Y, "X": X},
            "pixel_size_um": PIXEL_UM,
            "z_step_um": Z_STEP_UM,
            "interval_s": INTERVAL_S,
            "names": list(NAMES),
            "colors": [list(c) for c in RGB],
            "plane_times_s": {_key(*p): delta_t(*p) for p in PLANES},
        },
        "versions": matrix.versions,
        "not_measured": matrix.missing,
        "rows": [
            {
                "reader": r.reader,
                "profile": r.profile,
                "codec": r.codec,
                "shown": asdict(r.shown),
                "cells": {p: asdict(c) for p, c in r.cells.items()},
            }
            for r in matrix.rows
        ],
        "ome_behind_bigtiff": matrix.verdict(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="also write every measured value here")
    parser.add_argument(
        "--cases",
        help="profile:codec,... (default: " + ",".join(f"{p}:{c}" for p, c in CASES) + ")",
    )
    parser.add_argument("--no-java", action="store_true", help="leave Bio-Formats/ImageJ out")
    args = parser.parse_args(argv)
    cases = CASES
    if args.cases:
        cases = tuple(tuple(c.split(":", 1)) for c in args.cases.split(","))  # type: ignore[misc]
    bf_jar, ij_jar = (None, None) if args.no_java else _java_tools()
    try:
        with tempfile.TemporaryDirectory(prefix="mmts-matrix-") as tmp:
            matrix = measure(Path(tmp), cases=cases, bioformats_jar=bf_jar, imagej_jar=ij_jar)
    finally:
        readers.close_bioformats_servers()
    print(report(matrix))
    if args.json:
        args.json.write_text(json.dumps(to_json(matrix), indent=1, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
