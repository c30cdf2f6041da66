"""Finishing a file: blank planes, the canonical IFD chain and the ImageJ description.

At close, planes never saved get one shared blank frame, and a chain in ImageJ's canonical
order (C fastest, then Z, then T) is written at the end of the file, its first IFD carrying the
ImageJ description and IJMetadata. The header's first-IFD pointer is switched to it last, with
one 4- or 8-byte write: before that write the old chain is intact, after it the new one is.
"""

from __future__ import annotations

import contextlib
import json
import struct
import warnings
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import MissingFramesWarning, ProfileError
from ._appender import Appender, Tail, data_key, unpack
from ._codecs import Codec
from ._frames import Coord, Key, samples_per_pixel
from ._imagej import imagej_description, imagej_metadata_tags
from ._ome import OmeImage, iter_plane_infos, ome_xml_chunks
from ._profiles import Profile
from ._series import Part, SeriesTable
from ._settings import Settings
from ._tags import (
    BLANK_TAG,
    FIRST_METADATA_TAG,
    METADATA_TAG,
    SETTINGS_TAG,
    Tag,
    decode_values,
    resolution_tags,
)

__all__ = ["canonical_order", "finish", "finish_file"]


def canonical_order(low: Coord, high: Coord) -> list[Coord]:
    """Every plane from ``low`` to ``high`` (inclusive), C fastest, then Z, then T."""
    return [
        (c, z, t)
        for t in range(low[2], high[2] + 1)
        for z in range(low[1], high[1] + 1)
        for c in range(low[0], high[0] + 1)
    ]


def blank_planes(appender: Appender, missing: Sequence[Key], codec: Codec, dtype: Any) -> int:
    """Append one shared blank frame for each of the ``missing`` planes; return their number."""
    if missing:
        assert appender.frame_shape is not None
        blank = codec.encode(np.zeros(appender.frame_shape, dtype=dtype))
        digest = data_key(blank)
        marker = (Tag.short(BLANK_TAG, [1]),)  # a reader tells filled planes from data
        for coord in missing:
            appender.append(coord, blank, digest, marker)
    return len(missing)


def first_ifd_tags(
    shape: Coord, settings: Settings, *, profile: str, images: bool, rgb: bool = False
) -> list[Tag]:
    """The ImageJ description, settings and IJMetadata of the finished file's first IFD.

    An RGB file (``rgb``) has no LUTs and no display mode: ImageJ 1.x opens it as an RGB
    hyperstack (its C, Z and T as written), whose pixels carry their own colours.
    """
    c, z, t = shape
    luts = None if rgb else settings.channel_luts(c)
    mode = ("color" if luts else None) if c == 1 else "composite" if c <= 7 else "color"
    if rgb:
        mode = None
    desc = imagej_description(
        shape,
        images=images,
        pxsize=settings.pxsize,
        deltaz=settings.deltaz,
        timeinterval=settings.timeinterval,
        mode=mode,
    )
    labels = None
    info_lines = []
    if settings.comment:
        info_lines.append(settings.comment)
    if settings.channel_names:
        names = list(settings.channel_names) + [
            f"C{i}" for i in range(len(settings.channel_names), c)
        ]
        labels = [names[i % c] for i in range(c * z * t)]
        info_lines += [f"Channel{i}Name = {names[i]}" for i in range(c)]
    tags = [Tag.ascii(270, desc), Tag.ascii(SETTINGS_TAG, json.dumps(settings.to_json(profile)))]
    tags += resolution_tags(settings.pxsize)  # may have been set after plane 0 was written
    info = "\n".join(info_lines) + "\n" if info_lines else None
    tags += imagej_metadata_tags(luts=luts, labels=labels, info=info)
    return tags


def ome_first_ifd_tags(
    appender: Appender,
    parts: Sequence[Part],
    settings: Settings,
    *,
    dtype: Any,
    profile: str,
    blank: Container[Key] = (),
) -> tuple[list[Tag], Iterator[str]]:
    """The settings and resolution tags of IFD 0, and its OME-XML description as a stream.

    The description (an Image per series) is made as it is consumed, reading each plane's
    values from its IFD (``blank``: the planes never saved); :func:`write_final_chain` writes
    it to the file piece by piece.
    """
    assert appender.frame_shape is not None
    images = (
        OmeImage(
            part.shape,
            iter_plane_infos(appender, part.plane_keys(), blank),
            name=part.name,
            stage=part.stage,
        )
        for part in parts
    )
    xml = ome_xml_chunks(
        path=appender.io.path,
        settings=settings,
        frame_shape=appender.frame_shape,
        dtype=np.dtype(dtype),
        images=images,
    )
    tags = [Tag.ascii(SETTINGS_TAG, json.dumps(settings.to_json(profile)))]
    return tags + resolution_tags(settings.pxsize), xml


#: Bytes of streamed description text gathered before one write.
_TEXT_WRITE_BYTES = 1 << 18


def _write_text(appender: Appender, chunks: Iterable[str], offset: int) -> int:
    """Write ``chunks`` as one NUL-terminated UTF-8 ASCII value at ``offset``; its count."""
    pending: list[bytes] = []
    size = 0
    at = offset
    for text in chunks:
        data = text.encode("utf-8")
        pending.append(data)
        size += len(data)
        if size >= _TEXT_WRITE_BYTES:
            appender.io.write(pending, at)
            at += size
            pending, size = [], 0
    pending.append(b"\0")
    appender.io.write(pending, at)
    return at + size + 1 - offset


def _retag(entry: bytes, old: int, new: int) -> bytes:
    """Give a raw IFD entry of tag ``old`` the code ``new`` (value unchanged)."""
    if struct.unpack_from("<H", entry)[0] == old:
        return struct.pack("<H", new) + entry[2:]
    return entry


def write_final_chain(
    appender: Appender,
    canonical: Sequence[Key],
    first_extra: Sequence[Tag],
    *,
    two_strips: bool,
    description: Iterable[str] | None = None,
) -> None:
    """Write the chain in canonical order, then switch the header to it.

    Layout at the end of the file: [description][IFD 1..n-1 copies][first-IFD values][IFD 0].
    A ``description`` given as a stream of text (the OME-XML) is written first, piece by
    piece, as it is made; IFD 0's ImageDescription then points at it with its byte count. On
    any failure the file is cut back to its old end: the old chain stays the file's.
    """
    tail = Tail(appender.end)
    old_end = appender.end
    try:
        extra = list(first_extra)
        if description is not None:
            count = _write_text(appender, description, tail.pos)
            at = tail.reserve(count + count % 2)
            extra.append(Tag(270, 2, count, b""))  # its value is at ``at``, not in memory
            _chain(appender, canonical, extra, tail, two_strips=two_strips, values={270: at})
        else:
            _chain(appender, canonical, extra, tail, two_strips=two_strips, values={})
    except BaseException:
        with contextlib.suppress(OSError, ValueError):
            appender.io.truncate(old_end)
        raise


def _chain(
    appender: Appender,
    canonical: Sequence[Key],
    first_extra: Sequence[Tag],
    tail: Tail,
    *,
    two_strips: bool,
    values: Mapping[int, int],
) -> None:
    """:func:`write_final_chain` after the description (``values``: tags already written)."""
    lay = appender.layout
    read = appender.read
    planes = appender.planes
    rewrite_all = appender.arrival != list(canonical)
    alloc = tail.alloc

    nplanes = len(canonical)
    if rewrite_all and nplanes > 1:
        # the first saved frame keeps its metadata in 65423 (see FIRST_METADATA_TAG): its
        # copy gets 51123 back, and the entries are sorted again (TIFF: ascending tag order)
        copies = [
            sorted(
                (
                    _retag(e, FIRST_METADATA_TAG, METADATA_TAG)
                    for e in lay.parse_ifd(read(*unpack(planes[p])))[0]
                ),
                key=lay.entry_code,
            )
            for p in canonical[1:]
        ]
        at = tail.pos
        offsets = []
        for ents in copies:
            offsets.append(at)
            at += lay.ifd_size(len(ents)) + lay.ifd_size(len(ents)) % 2
        for ents, nxt in zip(copies, [*offsets[1:], 0], strict=True):
            alloc(lay.encode_ifd(ents, nxt))
        second = offsets[0]
    else:  # the chain on disk is already in canonical order: it ends at the last IFD
        second = unpack(planes[canonical[1]])[0] if nplanes > 1 else 0
        appender.io.write([lay.pack_offset(0)], appender.link_pos)
    first_off, first_size = unpack(planes[canonical[0]])
    entries, _ = lay.parse_ifd(read(first_off, first_size))
    replaced = {tag.code for tag in first_extra} | {282, 283, 296}
    entries = [e for e in entries if lay.entry_code(e) not in replaced]
    for tag in first_extra:
        if tag.code in values:
            entries.append(lay.encode_entry(tag, values[tag.code]))
            continue
        inline = len(tag.value) <= lay.inline_size
        entries.append(lay.encode_entry(tag, None if inline else alloc(tag.value)))
    if two_strips and nplanes > 1:
        # see rows_per_strip: the last row of plane 0 moves to a copy stored apart
        strips = next(e for e in entries if lay.entry_code(e) == 273)
        counts = next(e for e in entries if lay.entry_code(e) == 279)
        offsets_now = [int(v) for v in decode_values(*lay.entry_value(strips, read))]
        sizes_now = [int(v) for v in decode_values(*lay.entry_value(counts, read))]
        if len(offsets_now) == 2:
            copy_at = alloc(read(offsets_now[1], sizes_now[1]))
            tag = lay.offset_tag(273, [offsets_now[0], copy_at])
            inline = len(tag.value) <= lay.inline_size
            new_entry = lay.encode_entry(tag, None if inline else alloc(tag.value))
            entries = [new_entry if lay.entry_code(e) == 273 else e for e in entries]
    entries = [_retag(e, METADATA_TAG, FIRST_METADATA_TAG) for e in entries]
    entries.sort(key=lay.entry_code)
    first_at = alloc(lay.encode_ifd(entries, second))
    if tail.pos > lay.max_offset:
        msg = f"{appender.io.path}: the final IFD chain does not fit in a classic TIFF"
        raise ProfileError(msg)
    appender.write_tail(tail)
    appender.io.sync()
    appender.io.write([lay.pack_offset(first_at)], lay.first_ifd_pointer)


def _missing_warning(appender: Appender, parts: Sequence[Part], canonical: int) -> str | None:
    """The one warning about never-saved planes (naming each series that has some)."""
    counts = [
        (part, sum(key not in appender.planes for key in part.plane_keys())) for part in parts
    ]
    missing = sum(n for _, n in counts)
    if not missing:
        return None
    text = (
        f"{missing} of {canonical} planes of {appender.io.path} were never saved "
        "and hold a blank frame"
    )
    if len(parts) > 1 or parts[0].series:
        each = ", ".join(
            f"series {part.series}" + (f" ({part.name})" if part.name else "") + f": {n}"
            for part, n in counts
            if n
        )
        text += f" ({each})"
    return text


def finish(
    appender: Appender,
    settings: Settings,
    *,
    parts: Sequence[Part],
    codec: Codec,
    dtype: Any,
    profile: str,
    stacklevel: int = 2,
) -> int:
    """Fill missing planes and write the final chain; return the number of blank planes.

    ``parts``: the series of the file, in order (one for a single-image file). Warns
    (:class:`~mmtiffsink.errors.MissingFramesWarning`) when planes were never saved.
    """
    canonical = [key for part in parts for key in part.plane_keys()]
    text = _missing_warning(appender, parts, len(canonical))
    if text is not None:
        warnings.warn(text, MissingFramesWarning, stacklevel=stacklevel)
    missing = [p for p in canonical if p not in appender.planes]
    blanks = blank_planes(appender, missing, codec, dtype)
    description = None
    if Profile.get(profile).ome:
        first_extra, description = ome_first_ifd_tags(
            appender, parts, settings, dtype=dtype, profile=profile, blank=set(missing)
        )
    else:
        # images= when the planes are compressed or lie in their slots, in plane order
        images = codec.compressed or appender.slots is not None
        rgb = samples_per_pixel(appender.frame_shape or (0, 0)) > 1
        first_extra = first_ifd_tags(
            parts[0].shape, settings, profile=profile, images=images, rgb=rgb
        )
    h = appender.frame_shape[0] if appender.frame_shape else 1
    write_final_chain(
        appender,
        canonical,
        first_extra,
        two_strips=appender.rows_per_strip < h,
        description=description,
    )
    appender.io.sync()
    return blanks


def finish_file(
    appender: Appender,
    settings: Settings,
    *,
    low: Coord,
    high: Coord,
    series: SeriesTable,
    codec: Codec,
    dtype: Any,
    profile: str,
) -> int | None:
    """Finish a file at close: the blank planes, or None when no frame was saved.

    A file without frames is to be removed (with a :class:`MissingFramesWarning`); so is a
    series without frames left out.
    """
    if appender.frame_shape is None or not appender.planes:
        warnings.warn(
            f"no frame was saved to {appender.io.path}; the file was removed",
            MissingFramesWarning,
            stacklevel=5,
        )
        return None
    parts, empty = series.parts(low, high, settings.shape)
    numbers = [part.series for part in parts]
    if empty or numbers != list(range(len(numbers))):
        absent = sorted(set(range(max(numbers) + 1)) - set(numbers)) + empty
        kept = ", ".join(f"series {n} as Image:{i}" for i, n in enumerate(numbers))
        warnings.warn(
            f"no frame was saved to series {', '.join(map(str, sorted(set(absent))))} of "
            f"{appender.io.path}; left out, the file holds {kept}",
            MissingFramesWarning,
            stacklevel=5,
        )
    return finish(
        appender,
        settings,
        parts=parts,
        codec=codec,
        dtype=dtype,
        profile=profile,
        stacklevel=6,
    )
