"""Reading a plane back from a file, open or closed, on a descriptor of its own.

A reader never uses the writer's descriptor: closing the file while a plane is read cannot
make the read go to another file that reuses the descriptor number.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError
from ._appender import unpack
from ._codecs import Codec
from ._io import FileIO
from ._tags import FIRST_METADATA_TAG, METADATA_TAG, Layout, decode_values

__all__ = ["read_plane"]


def read_plane(
    path: Path,
    layout: Layout,
    packed_ifd: int,
    codec: Codec,
    dtype: np.dtype[Any],
    frame_shape: tuple[int, ...],
) -> tuple[np.ndarray, dict[str, Any] | None]:
    """Decode the frame and metadata of the IFD at ``packed_ifd`` (see :func:`pack`).

    Raises
    ------
    DatasetError
        The file changed under the reader (cut short, replaced).

    """
    ifd_at, ifd_size = unpack(packed_ifd)
    try:
        io = FileIO(path, "read")
    except OSError as exc:
        msg = f"cannot read {path} back: {exc}"
        raise DatasetError(msg) from exc
    try:

        def read(offset: int, size: int) -> bytes:
            data = io.read(offset, size)
            if len(data) != size:
                msg = f"{path} was cut short while it was read"
                raise DatasetError(msg)
            return data

        entries, _ = layout.parse_ifd(read(ifd_at, ifd_size))
        values = {layout.entry_code(e): e for e in entries}
        offsets = decode_values(*layout.entry_value(values[273], read))
        counts = decode_values(*layout.entry_value(values[279], read))
        data = b"".join(read(int(o), int(n)) for o, n in zip(offsets, counts, strict=True))
        meta_entry = values.get(METADATA_TAG, values.get(FIRST_METADATA_TAG))
        meta_raw = None if meta_entry is None else layout.entry_value(meta_entry, read)[1]
    finally:
        io.close()
    image = codec.decode(data, dtype.newbyteorder("<"), frame_shape)
    metadata = None
    if meta_raw is not None:
        metadata = json.loads(meta_raw.rstrip(b"\0").decode("utf-8"))
    return image, metadata
