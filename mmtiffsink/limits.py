"""Limits that keep absurd input from turning into absurd work.

A coordinate or a plan that is legal but absurd (``save(frame, 10**9, 0, 0)``, a run file asking
for 10**9 time points) would make the writer build that many planes at close: minutes, then a
MemoryError. Every stage refuses such input where it first sees it, before any work is queued,
against the same numbers.
"""

from __future__ import annotations

from typing import Final

__all__ = ["MAX_DECODE_BYTES", "MAX_PLANES", "MAX_SERIES"]

MAX_PLANES: Final = 10_000_000
"""Default cap on the planes (C x Z x T) of one file, and so on each coordinate's span.

``IJTiffFile(..., max_planes=N)`` changes it for one file. 10**7 planes of the smallest frames
already make a file of many GB and a final IFD chain of about 5 GB in a BigTIFF.
"""

MAX_SERIES: Final = 100_000
"""Cap on the series index of an OME-TIFF holding several images (positions): series 0 to
99,999. Every series holds at least one plane, so ``max_planes`` bounds their number too.
"""

MAX_DECODE_BYTES: Final = 1 << 28
"""Bytes one image plane (a TIFF page) may decode to before a reader that only looks at it
(``preview``) refuses to decode it: 256 MiB, e.g. 16384 x 8192 uint16. A file states its
planes' size in a few bytes, and a compressed plane of a few kB may decode to gigabytes (a
60000 x 60000 zstd frame of 244 kB is 7.2 GB); the size is checked before decoding.
"""
