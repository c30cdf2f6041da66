"""OME-XML (schema 2016-06) for the ``ome`` profile: per-plane values and the description.

Per-plane values (DeltaT, exposure, stage position) travel with their frame: ``save(...,
plane=)`` stores them in a private tag of the frame's IFD (:data:`PLANE_INFO_TAG`), so the
writer's memory does not grow with them and a killed file keeps them for
:func:`~mmtiffsink.repair`. At close :func:`ome_xml_chunks` reads them back from the IFDs of
the final chain, one plane at a time, and makes one OME-XML document as a stream of text
pieces that the finish writes to the file as they come: per series (position) an Image with
Pixels (XYCZT, the IFD order), Channels, one TiffData covering its planes and a Plane per
plane. Text made directly (every attribute and text escaped with :mod:`xml.sax.saxutils`), no
element or model object per plane: memory does not grow with the planes (10**6 and more), no
runtime dependency.
"""

from __future__ import annotations

import math
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Final, final
from xml.sax.saxutils import escape

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
    "iter_plane_infos",
    "ome_color",
    "ome_description",
    "ome_xml_chunks",
    "parse_ome",
    "rgb_of_ome_color",
]

OME_NS = "http://www.openmicroscopy.org/Schemas/OME/2016-06"
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


_NO_VALUES: Final = PlaneInfo()


def iter_plane_infos(
    appender: Appender, keys: Iterable[Key], blank: Container[Key] = ()
) -> Iterator[PlaneInfo | None]:
    """Each plane's :class:`PlaneInfo`, read from its IFD one plane at a time.

    Yields None for a plane in ``blank`` (never saved: it holds the shared blank frame) and an
    empty PlaneInfo for a saved plane that stored no values (or a damaged value).
    """
    lay = appender.layout
    read = appender.read
    for key in keys:
        if key in blank:
            yield None
            continue
        entries, _ = lay.parse_ifd(read(*unpack(appender.planes[key])))
        found = next((e for e in entries if lay.entry_code(e) == PLANE_INFO_TAG), None)
        info = None if found is None else PlaneInfo.from_tag(*lay.entry_value(found, read))
        yield _NO_VALUES if info is None else info


def _fmt(value: float) -> str:
    return repr(float(value))


_ATTR_ENTITIES: Final = {'"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#09;"}


def _attrs(attrs: Mapping[str, str]) -> str:
    """`` K="V"`` for each attribute, escaped as XML attribute values (double-quoted)."""
    return "".join(f' {k}="{escape(v, _ATTR_ENTITIES)}"' for k, v in attrs.items())


def _empty(tag: str, attrs: Mapping[str, str]) -> str:
    return f"<{tag}{_attrs(attrs)} />"


def _text(tag: str, text: str, attrs: Mapping[str, str] | None = None) -> str:
    return f"<{tag}{_attrs(attrs or {})}>{escape(text)}</{tag}>"


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
    """One Image of an OME-TIFF: its (C, Z, T), Plane values in IFD order, name, stage.

    ``planes`` may be an iterator (read once, one plane at a time): a value per plane, None
    for a plane never acquired, as :func:`iter_plane_infos` yields them.
    """

    shape: Coord
    planes: Iterable[PlaneInfo | None]
    name: str | None = None
    stage: StageLabel | None = None


#: Planes whose Plane elements make one piece of the streamed text.
_PLANES_PER_CHUNK: Final = 1024


def ome_xml_chunks(
    *,
    path: Path,
    settings: Settings,
    frame_shape: tuple[int, ...],
    dtype: np.dtype[Any],
    images: Iterable[OmeImage],
) -> Iterator[str]:
    """The OME-XML of a finished file as pieces of text, made as they are consumed.

    One Image per series, their planes one after another in the file: image ``n``'s TiffData
    starts at the IFD after image ``n - 1``'s last and covers its C x Z x T planes in XYCZT
    order (one TiffData per image, ``PlaneCount`` planes). Its Plane elements are made from
    ``planes`` a few thousand at a time, so memory does not grow with the number of planes.
    Without a name, image 0 is named after the file (or ``settings.image_name``), image ``n``
    after it with ``" #n"`` appended.

    A plane's DeltaT is the measured one (``save(..., plane=)``); a plane saved without one,
    in an image with a ``TimeIncrement``, gets the nominal ``TheT * TimeIncrement`` (readers
    such as bioio take the interval only from DeltaT); a plane never acquired gets none.

    Every piece goes through :func:`~mmtiffsink._text.xml_safe`, the last line of defence:
    a character no XML parser reads is written as U+FFFD, with a
    :class:`~mmtiffsink.errors.TextReplacedWarning` once the text is complete.

    Raises
    ------
    ConfigError
        A pixel type OME cannot describe (64-bit integers); raised at once, before any text.

    """
    pixel_type = _PIXEL_TYPES.get(dtype.str.lstrip("<>|="))
    if pixel_type is None:
        msg = f"OME-XML has no pixel type for {dtype.name}; use profile='bigtiff'"
        raise ConfigError(msg)
    return _safe_chunks(path, _ome_chunks(path, settings, frame_shape, dtype, pixel_type, images))


def ome_description(
    *,
    path: Path,
    settings: Settings,
    frame_shape: tuple[int, ...],
    dtype: np.dtype[Any],
    images: Iterable[OmeImage],
) -> str:
    """The OME-XML of :func:`ome_xml_chunks` as one string (for small files and tests).

    Raises
    ------
    ConfigError
        A pixel type OME cannot describe (64-bit integers).

    """
    chunks = ome_xml_chunks(
        path=path, settings=settings, frame_shape=frame_shape, dtype=dtype, images=images
    )
    return "".join(chunks)


def _safe_chunks(path: Path, chunks: Iterable[str]) -> Iterator[str]:
    replaced = False
    for text in chunks:
        safe = xml_safe(text)  # every text was checked where it entered: the last defence
        replaced = replaced or safe != text
        yield safe
    if replaced:
        warnings.warn(
            f"{path.name}: characters no XML parser reads were written as U+FFFD in its OME-XML",
            TextReplacedWarning,
            stacklevel=2,
        )


def _ome_chunks(
    path: Path,
    settings: Settings,
    frame_shape: tuple[int, ...],
    dtype: np.dtype[Any],
    pixel_type: str,
    images: Iterable[OmeImage],
) -> Iterator[str]:
    yield '<?xml version="1.0" encoding="UTF-8"?>\n'
    yield (
        f'<OME xmlns="{OME_NS}" xmlns:xsi="{_XSI}" Creator="mmtiffsink" '
        f'xsi:schemaLocation="{_SCHEMA}">'
    )
    base = _image_name(settings, path)
    first_ifd = 0
    for index, spec in enumerate(images):
        name = spec.name or (base if index == 0 else f"{base} #{index}")
        yield from _image(index, name, spec, settings, frame_shape, dtype, pixel_type, first_ifd)
        first_ifd += spec.shape[0] * spec.shape[1] * spec.shape[2]
    names = list(settings.channel_names or [])
    if settings.annotations or names:
        yield "<StructuredAnnotations>"
    if settings.annotations:
        pairs = "".join(_text("M", text, {"K": key}) for key, text in settings.annotations.items())
        yield (
            '<MapAnnotation ID="Annotation:0" Namespace="micro-manager.org/summary-metadata">'
            f"<Value>{pairs}</Value></MapAnnotation>"
        )
    # the channel names again as Bio-Formats' own "original metadata" (ChannelNName = ...):
    # Fiji's importer shows a file's original metadata in Image > Show Info, and nowhere else
    # the OME channel names (measured: benchmarks/reader_matrix.py)
    first_id = 1 if settings.annotations else 0
    for ch, channel_name in enumerate(names):
        original = _text("Key", f"Channel{ch}Name") + _text("Value", channel_name)
        yield (
            f'<XMLAnnotation ID="Annotation:{first_id + ch}" '
            'Namespace="openmicroscopy.org/OriginalMetadata">'
            f"<Value><OriginalMetadata>{original}</OriginalMetadata></Value></XMLAnnotation>"
        )
    if settings.annotations or names:
        yield "</StructuredAnnotations>"
    yield "</OME>"


def _image(
    index: int,
    name: str,
    spec: OmeImage,
    settings: Settings,
    frame_shape: tuple[int, ...],
    dtype: np.dtype[Any],
    pixel_type: str,
    first_ifd: int,
) -> Iterator[str]:
    """One Image element (its Pixels, Channels, TiffData and Planes), piece by piece."""
    head = [f"<Image{_attrs({'ID': f'Image:{index}', 'Name': name})}>"]
    if settings.acquisition_date:
        head.append(_text("AcquisitionDate", settings.acquisition_date))
    stage = spec.stage
    if stage is not None:
        label = {"Name": stage.name}
        for axis, value in (("X", stage.x), ("Y", stage.y), ("Z", stage.z)):
            if value is not None:
                label[axis], label[axis + "Unit"] = _fmt(value), _UM
        head.append(_empty("StageLabel", label))
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
    interval = settings.timeinterval
    if interval is not None:
        attrs["TimeIncrement"], attrs["TimeIncrementUnit"] = _fmt(interval), "s"
    head.append(f"<Pixels{_attrs(attrs)}>")
    names = settings.channel_names or []
    luts = (settings.channel_luts(c) if samples == 1 else None) or []
    for ch in range(c):
        channel = {"ID": f"Channel:{index}:{ch}", "SamplesPerPixel": str(samples)}
        if ch < len(names):
            channel["Name"] = names[ch]
        if ch < len(luts):
            channel["Color"] = str(ome_color([int(v) for v in luts[ch][:, 255]]))
        head.append(_empty("Channel", channel))
    # one TiffData for the image: its c*z*t IFDs from first_ifd on, in DimensionOrder
    head.append(_empty("TiffData", {"IFD": str(first_ifd), "PlaneCount": str(c * z * t)}))
    yield "".join(head)
    order = ((cc, zz, tt) for tt in range(t) for zz in range(z) for cc in range(c))
    batch: list[str] = []
    for (cc, zz, tt), info in zip(order, spec.planes, strict=True):
        batch.append(_plane(cc, zz, tt, info, interval))
        if len(batch) == _PLANES_PER_CHUNK:
            yield "".join(batch)
            batch.clear()
    tail = "</Pixels>"
    if settings.annotations:
        tail += '<AnnotationRef ID="Annotation:0" />'
    yield "".join(batch) + tail + "</Image>"


def _plane(cc: int, zz: int, tt: int, info: PlaneInfo | None, interval: float | None) -> str:
    """One Plane element: the plane's measured values, or a nominal DeltaT (see above)."""
    text = f'<Plane TheZ="{zz}" TheT="{tt}" TheC="{cc}"'
    if info is None:  # never acquired: nothing invented
        return text + " />"
    delta_t = info.delta_t
    if delta_t is None and interval is not None:
        delta_t = tt * interval
    if delta_t is not None:
        text += f' DeltaT="{_fmt(delta_t)}" DeltaTUnit="s"'
    if info.exposure_time is not None:
        text += f' ExposureTime="{_fmt(info.exposure_time)}" ExposureTimeUnit="s"'
    for axis, value in (("X", info.position_x), ("Y", info.position_y), ("Z", info.position_z)):
        if value is not None:
            text += f' Position{axis}="{_fmt(value)}" Position{axis}Unit="{_UM}"'
    return text + " />"


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
