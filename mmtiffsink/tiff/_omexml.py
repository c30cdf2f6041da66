"""The few OME-XML facts a preview needs: per image, its name, channel names and colours."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import final

from mmtiffsink._values import LENGTH_UM, positive

__all__ = ["Image", "parse"]



@final
@dataclass(frozen=True)
class Image:
    """One OME ``Image``: what a preview row shows about it."""

    name: str
    channel_names: tuple[str, ...]
    colors: tuple[tuple[int, int, int] | None, ...]
    pixel_size_um: float | None


def parse(xml: str) -> list[Image]:
    """The ``Image`` elements of an OME-XML document, in order; empty if it is unreadable."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return []
    images = []
    for image in root.iter():
        if _local(image.tag) != "Image":
            continue
        pixels = next((p for p in image if _local(p.tag) == "Pixels"), None)
        names: list[str] = []
        colors: list[tuple[int, int, int] | None] = []
        size: float | None = None
        if pixels is not None:
            for channel in (ch for ch in pixels if _local(ch.tag) == "Channel"):
                names.append(channel.get("Name", ""))
                colors.append(_color(channel.get("Color")))
            size = _size(pixels.get("PhysicalSizeX"), pixels.get("PhysicalSizeXUnit", "µm"))
        images.append(Image(image.get("Name", ""), tuple(names), tuple(colors), size))
    return images


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _color(value: str | None) -> tuple[int, int, int] | None:
    """OME's signed 32-bit RGBA integer -> (r, g, b)."""
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
