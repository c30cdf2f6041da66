"""OME-XML (schema 2016-06) for the ``ome`` profile: per-plane values and the description.

Per-plane values (DeltaT, exposure, stage position) travel with their frame: ``save(...,
plane=)`` stores them in a private tag of the frame's IFD (:data:`PLANE_INFO_TAG`), so the
writer's memory does not grow with them and a killed file keeps them for
:func:`~mmtiffsink.repair`. At close :func:`ome_description` reads them back from the IFDs of
the final chain and writes one OME-XML document: per series (position) an Image with
Pixels (XYCZT, the IFD order), Channels, a TiffData and a Plane per plane. Built with the
standard library's ElementTree: one pass, no model objects per plane (files of 10**5
planes), no runtime dependency.
"""

from __future__ import annotations

import math
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, final

import numpy as np

from mmtiffsink._values import LENGTH_UM, TIME_S, positive, require

from .._text import xml_safe
from ..errors import ConfigError, FrameError, TextReplacedWarning
from ._appender import Appender, unpack
from ._frames import Coord, Key, samples_per_pixel
from ._settings import Settings
from ._tags import PLANE_INFO_TAG, Tag, decode_values

__all__ = [
    "PLANE_INFO_TAG",
    "OmeImage",
    "OmeImageFacts",
    "PlaneInfo",
    "StageLabel",
    "ome_color",
    "ome_description",
    "parse_ome",
    "read_plane_infos",
    "rgb_of_ome_color",
]

OME_NS = "http://www.openmicroscopy.org/Schemas/OME/2016-06"
ET.register_namespace("", OME_NS)  # once: a process-wide setting of ElementTree
_XSI = "http://www.w3.org/2001/XMLSchema-instance"
_SCHEMA = f"{OME_NS} {OME_NS}/ome.xsd"
_PIXEL_TYPES = {
    "u1": "uint8",
    "u2": "uint16",
    "u4": "uint32",
    "i1": "int8",
    "i2": "int16",
    "i4": "int32",
    "f4": "float",
    "f8": "double",
}
_UM = "µm"


def _number(name: str, value: Any, *, non_negative: bool = False) -> float | None:
    sign = "non-negative" if non_negative else "any"
    return require(f"plane {name}", value, sign=sign, error=FrameError)


@final
@dataclass(frozen=True, slots=True)
class PlaneInfo:
    """What is known of one plane's acquisition (None: unknown).

    Parameters
    ----------
    delta_t
        Time since the acquisition started, in s (OME ``Plane DeltaT``).
    exposure_time
        Exposure in s (``ExposureTime``).
    position_x, position_y, position_z
        Stage position in µm (``PositionX/Y/Z``).

    """

    delta_t: float | None = None
    exposure_time: float | None = None
    position_x: float | None = None
    position_y: float | None = None
    position_z: float | None = None

    NAMES: ClassVar[tuple[str, ...]] = (
        "delta_t",
        "exposure_time",
        "position_x",
        "position_y",
        "position_z",
    )

    def __post_init__(self) -> None:
        for field in fields(self):
            value = _number(
                field.name, getattr(self, field.name), non_negative=field.name in ("exposure_time",)
            )
            object.__setattr__(self, field.name, value)

    @classmethod
    def of(cls, plane: PlaneInfo | Mapping[str, Any] | None) -> PlaneInfo | None:
        """A ``plane=`` argument checked: a PlaneInfo, a dict of its fields, or None.

        Raises
        ------
        FrameError
            For an unknown key or a value that is not a finite number.

        """
        if plane is None or isinstance(plane, PlaneInfo):
            return plane
        if not isinstance(plane, Mapping):
            msg = f"plane is a dict such as {{'delta_t': 0.5}} or a PlaneInfo, got {plane!r}"
            raise FrameError(msg)
        unknown = sorted(str(k) for k in plane if k not in cls.NAMES)
        if unknown:
            msg = f"unknown plane value {unknown[0]!r}; use {', '.join(cls.NAMES)}"
            raise FrameError(msg)
        return cls(**plane)

    def tag(self) -> Tag:
        """The frame's private tag."""
        values = [getattr(self, name) for name in self.NAMES]
        return Tag.double(PLANE_INFO_TAG, [math.nan if v is None else v for v in values])

    @classmethod
    def from_tag(cls, dtype: int, raw: bytes) -> PlaneInfo | None:
        """Inverse of :meth:`tag`; None for a damaged value (the plane then has no values)."""
        if dtype != 12 or len(raw) != 8 * len(cls.NAMES):
            return None
        values = [float(v) for v in decode_values(dtype, raw)]
        try:
            return cls(*(v if math.isfinite(v) else None for v in values))
        except FrameError:
            return None


@final
@dataclass(frozen=True, slots=True)
class StageLabel:
    """An Image's stage position (OME ``StageLabel``), e.g. of one position of a plate scan.

    Parameters
    ----------
    name
        The position's name.
    x, y, z
        Stage coordinates in µm (None: unknown).

    """

    name: str
    x: float | None = None
    y: float | None = None
    z: float | None = None


def ome_color(rgb: Sequence[int]) -> int:
    """OME's Color: RGBA packed in a signed 32-bit integer (lime -> 16711935, red -> -16776961)."""
    r, g, b = (int(v) & 255 for v in rgb[:3])
    packed = r << 24 | g << 16 | b << 8 | 255
    return packed - (1 << 32) if packed >= 1 << 31 else packed


def read_plane_infos(appender: Appender, canonical: Sequence[Key]) -> list[PlaneInfo | None]:
    """Each plane's :class:`PlaneInfo` from its IFD (None: none stored, e.g. a blank plane)."""
    lay = appender.layout
    read = appender.read
    out: list[PlaneInfo | None] = []
    for coord in canonical:
        entries, _ = lay.parse_ifd(read(*unpack(appender.planes[coord])))
        found = next((e for e in entries if lay.entry_code(e) == PLANE_INFO_TAG), None)
        out.append(None if found is None else PlaneInfo.from_tag(*lay.entry_value(found, read)))
    return out


def _fmt(value: float) -> str:
    return repr(float(value))


def _image_name(settings: Settings, path: Path) -> str:
    if settings.image_name:
        return settings.image_name
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


@final
@dataclass(frozen=True)
class OmeImage:
    """One Image of an OME-TIFF: its (C, Z, T), Plane values in IFD order, name, stage."""

    shape: Coord
    planes: Sequence[PlaneInfo | None]
    name: str | None = None
    stage: StageLabel | None = None


def ome_description(
    *,
    path: Path,
    settings: Settings,
    frame_shape: tuple[int, ...],
    dtype: np.dtype[Any],
    images: Sequence[OmeImage],
) -> str:
    """The OME-XML of a finished file: one Image per series, their planes one after another.

    Image ``n``'s TiffData count its IFDs from the end of image ``n - 1``'s; each image's
    ``planes`` are in IFD (XYCZT) order. Without a name, image 0 is named after the file
    (or ``settings.image_name``), image ``n`` after it with ``" #n"`` appended.

    Raises
    ------
    ConfigError
        A pixel type OME cannot describe (64-bit integers).

    """
    pixel_type = _PIXEL_TYPES.get(dtype.str.lstrip("<>|="))
    if pixel_type is None:
        msg = f"OME-XML has no pixel type for {dtype.name}; use profile='bigtiff'"
        raise ConfigError(msg)
    q = f"{{{OME_NS}}}"
    root = ET.Element(
        q + "OME",
        {
            "Creator": "mmtiffsink",
            f"{{{_XSI}}}schemaLocation": _SCHEMA,
        },
    )
    base = _image_name(settings, path)
    first_ifd = 0
    for index, spec in enumerate(images):
        name = spec.name or (base if index == 0 else f"{base} #{index}")
        _image(root, index, name, spec, settings, frame_shape, dtype, pixel_type, first_ifd)
        first_ifd += spec.shape[0] * spec.shape[1] * spec.shape[2]
    names = list(settings.channel_names or [])
    if settings.annotations or names:
        annotations = ET.SubElement(root, q + "StructuredAnnotations")
    if settings.annotations:
        mapping = ET.SubElement(
            annotations,
            q + "MapAnnotation",
            ID="Annotation:0",
            Namespace="micro-manager.org/summary-metadata",
        )
        pairs = ET.SubElement(mapping, q + "Value")
        for key, text in settings.annotations.items():
            ET.SubElement(pairs, q + "M", K=key).text = text
    # the channel names again as Bio-Formats' own "original metadata" (ChannelNName = ...):
    # Fiji's importer shows a file's original metadata in Image > Show Info, and nowhere else
    # the OME channel names (measured: benchmarks/reader_matrix.py)
    first_id = 1 if settings.annotations else 0
    for ch, channel_name in enumerate(names):
        xml = ET.SubElement(
            annotations,
            q + "XMLAnnotation",
            ID=f"Annotation:{first_id + ch}",
            Namespace="openmicroscopy.org/OriginalMetadata",
        )
        original = ET.SubElement(ET.SubElement(xml, q + "Value"), q + "OriginalMetadata")
        ET.SubElement(original, q + "Key").text = f"Channel{ch}Name"
        ET.SubElement(original, q + "Value").text = channel_name
    body = ET.tostring(root, encoding="unicode")
    safe = xml_safe(body)  # the last line of defence: every text was checked where it entered
    if safe != body:
        warnings.warn(
            f"{path.name}: characters no XML parser reads were written as U+FFFD in its OME-XML",
            TextReplacedWarning,
            stacklevel=2,
        )
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + safe


def _image(
    root: ET.Element,
    index: int,
    name: str,
    spec: OmeImage,
    settings: Settings,
    frame_shape: tuple[int, ...],
    dtype: np.dtype[Any],
    pixel_type: str,
    first_ifd: int,
) -> None:
    """One Image element (its Pixels, Channels, TiffData and Planes) under ``root``."""
    q = f"{{{OME_NS}}}"
    image = ET.SubElement(root, q + "Image", ID=f"Image:{index}", Name=name)
    if settings.acquisition_date:
        ET.SubElement(image, q + "AcquisitionDate").text = settings.acquisition_date
    stage = spec.stage
    if stage is not None:
        label = {"Name": stage.name}
        for axis, value in (("X", stage.x), ("Y", stage.y), ("Z", stage.z)):
            if value is not None:
                label[axis], label[axis + "Unit"] = _fmt(value), _UM
        ET.SubElement(image, q + "StageLabel", label)
    c, z, t = spec.shape
    # an RGB file: each Channel has 3 samples, interleaved (RGBRGB...) in one IFD; SizeC
    # counts samples (OME's rule, as tifffile and Bio-Formats write it), TheC channels
    samples = samples_per_pixel(frame_shape)
    attrs = {
        "ID": f"Pixels:{index}",
        "DimensionOrder": "XYCZT",
        "Type": pixel_type,
        "SignificantBits": str(dtype.itemsize * 8),
        "Interleaved": "true" if samples > 1 else "false",
        "BigEndian": "false",
        "SizeX": str(frame_shape[1]),
        "SizeY": str(frame_shape[0]),
        "SizeC": str(c * samples),
        "SizeZ": str(z),
        "SizeT": str(t),
    }
    if settings.pxsize is not None:
        for axis in "XY":
            attrs[f"PhysicalSize{axis}"] = _fmt(settings.pxsize)
            attrs[f"PhysicalSize{axis}Unit"] = _UM
    if settings.deltaz is not None:
        attrs["PhysicalSizeZ"], attrs["PhysicalSizeZUnit"] = _fmt(settings.deltaz), _UM
    if settings.timeinterval is not None:
        attrs["TimeIncrement"], attrs["TimeIncrementUnit"] = _fmt(settings.timeinterval), "s"
    pixels = ET.SubElement(image, q + "Pixels", attrs)
    names = settings.channel_names or []
    luts = (settings.channel_luts(c) if samples == 1 else None) or []
    for ch in range(c):
        channel = {"ID": f"Channel:{index}:{ch}", "SamplesPerPixel": str(samples)}
        if ch < len(names):
            channel["Name"] = names[ch]
        if ch < len(luts):
            channel["Color"] = str(ome_color([int(v) for v in luts[ch][:, 255]]))
        ET.SubElement(pixels, q + "Channel", channel)
    order = [(cc, zz, tt) for tt in range(t) for zz in range(z) for cc in range(c)]
    for ifd, (cc, zz, tt) in enumerate(order, start=first_ifd):
        ET.SubElement(
            pixels,
            q + "TiffData",
            IFD=str(ifd),
            FirstC=str(cc),
            FirstZ=str(zz),
            FirstT=str(tt),
            PlaneCount="1",
        )
    for (cc, zz, tt), info in zip(order, spec.planes, strict=True):
        plane = {"TheZ": str(zz), "TheT": str(tt), "TheC": str(cc)}
        if info is not None:
            if info.delta_t is not None:
                plane["DeltaT"], plane["DeltaTUnit"] = _fmt(info.delta_t), "s"
            if info.exposure_time is not None:
                plane["ExposureTime"] = _fmt(info.exposure_time)
                plane["ExposureTimeUnit"] = "s"
            for axis, value in (
                ("X", info.position_x),
                ("Y", info.position_y),
                ("Z", info.position_z),
            ):
                if value is not None:
                    plane[f"Position{axis}"], plane[f"Position{axis}Unit"] = _fmt(value), _UM
        ET.SubElement(pixels, q + "Plane", plane)
    if settings.annotations:
        ET.SubElement(image, q + "AnnotationRef", ID="Annotation:0")


# --- reading: the few OME-XML facts inspect and the reader need ----------------------------


@final
@dataclass(frozen=True)
class OmeImageFacts:
    """What a reader needs of one OME ``Image``: its name, sizes, channels and calibration.

    Every number is read as text from the XML, so a count is only a count: callers bound
    :attr:`planes` against the file before it sizes anything.
    """

    name: str
    channel_names: tuple[str, ...]
    colors: tuple[tuple[int, int, int] | None, ...]
    pixel_size_um: float | None
    z_step_um: float | None = None
    """``PhysicalSizeZ`` in µm (its unit converted), None if absent or not a positive number."""
    interval_s: float | None = None
    """``TimeIncrement`` in s (its unit converted), None if absent or not a positive number."""
    sizes: tuple[int, int, int] = (1, 1, 1)
    """The declared (SizeC, SizeZ, SizeT); 1 for a size absent or unreadable."""
    external: bool = False
    """A ``TiffData`` names another file (a multi-file OME-TIFF dataset)."""

    @property
    def planes(self) -> int:
        """The planes the Image declares: SizeC x SizeZ x SizeT."""
        return self.sizes[0] * self.sizes[1] * self.sizes[2]


def parse_ome(xml: str | bytes) -> list[OmeImageFacts]:
    """The ``Image`` elements of an OME-XML document, in order; empty if it is unreadable.

    Standard library only; expat refuses external entities and limits entity expansion, so a
    hostile document costs about its own size.
    """
    try:
        root = ET.fromstring(xml)
    except (ET.ParseError, ValueError, RecursionError):
        return []
    images = []
    for image in root.iter():
        if _local(image.tag) != "Image":
            continue
        pixels = next((p for p in image if _local(p.tag) == "Pixels"), None)
        if pixels is None:
            images.append(OmeImageFacts(image.get("Name", ""), (), (), None))
            continue
        names: list[str] = []
        colors: list[tuple[int, int, int] | None] = []
        for channel in (ch for ch in pixels if _local(ch.tag) == "Channel"):
            names.append(channel.get("Name", ""))
            colors.append(rgb_of_ome_color(channel.get("Color")))
        external = any(
            _local(uuid.tag) == "UUID" and uuid.get("FileName")
            for data in pixels
            if _local(data.tag) == "TiffData"
            for uuid in data
        )
        images.append(
            OmeImageFacts(
                image.get("Name", ""),
                tuple(names),
                tuple(colors),
                _size(pixels.get("PhysicalSizeX"), pixels.get("PhysicalSizeXUnit", _UM)),
                _size(pixels.get("PhysicalSizeZ"), pixels.get("PhysicalSizeZUnit", _UM)),
                _seconds(pixels.get("TimeIncrement"), pixels.get("TimeIncrementUnit", "s")),
                (
                    _count(pixels.get("SizeC")),
                    _count(pixels.get("SizeZ")),
                    _count(pixels.get("SizeT")),
                ),
                external,
            )
        )
    return images


def _count(value: str | None) -> int:
    """A declared size: a positive integer of at most 18 digits, else 1."""
    text = (value or "").strip()
    return int(text) if text.isdigit() and 0 < len(text) <= 18 and int(text) > 0 else 1


def _seconds(value: str | None, unit: str) -> float | None:
    number = positive(value)
    if number is None or unit not in TIME_S:
        return None
    return number * TIME_S[unit]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def rgb_of_ome_color(value: str | None) -> tuple[int, int, int] | None:
    """OME's signed 32-bit RGBA integer (:func:`ome_color`) -> (r, g, b); None if unreadable."""
    if value is None:
        return None
    try:
        rgba = int(value) & 0xFFFFFFFF
    except ValueError:
        return None
    return (rgba >> 24) & 255, (rgba >> 16) & 255, (rgba >> 8) & 255


def _size(value: str | None, unit: str) -> float | None:
    number = positive(value)
    if number is None or unit not in LENGTH_UM:
        return None
    return number * LENGTH_UM[unit]
