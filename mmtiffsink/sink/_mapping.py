"""From an image's ``Axes`` dict to a file and a (c, z, t) place in that file's hyperstack.

pycro-manager labels every image with axes such as ``{'time': 1, 'channel': 'FITC', 'z': 2}``.
``channel``, ``z`` and ``time`` become the hyperstack's C, Z and T; every other axis
(``position``, ``row``/``column`` of a grid, ``camera``, custom ones) selects the file, so images
that differ in such an axis are never merged into one hyperstack.
"""

from __future__ import annotations

import operator
import re
import string
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias

from mmtiffsink.errors import ConfigError, CoordinateError

__all__ = [
    "HYPERSTACK_AXES",
    "POSITION_AXIS",
    "AxisMapper",
    "FileKey",
    "Placement",
    "file_name",
    "sanitize",
    "split_position",
]

CHANNEL_AXIS: Final = "channel"
Z_AXIS: Final = "z"
TIME_AXIS: Final = "time"
#: The axis that becomes the series of one file with ``positions="series"``.
POSITION_AXIS: Final = "position"
#: The axes mapped onto the hyperstack (C, Z, T); every other axis splits files.
HYPERSTACK_AXES: Final = frozenset({CHANNEL_AXIS, Z_AXIS, TIME_AXIS})

#: A file's identity: its file-splitting axes and their values, sorted by axis name.
FileKey: TypeAlias = tuple[tuple[str, str | int], ...]

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")
_SEPARATORS: Final = "_-. "
_DOUBLE_SUFFIXES: Final = (".ome.tif", ".ome.tiff")


@dataclass(frozen=True)
class Placement:
    """Where one image goes.

    Parameters
    ----------
    file_key
        The file-splitting axes and their values, sorted by axis name; ``()`` when there is none.
    c, z, t
        The plane's channel, slice and frame index in that file's hyperstack.

    """

    file_key: FileKey
    c: int
    z: int
    t: int


def _index(axis: str, value: object, *, negative: bool = False) -> int:
    """A hyperstack index; numpy integers are accepted, bools and others are not.

    ``negative``: z and time may be below 0 (pycro-manager explore/Magellan datasets and
    ndstorage's ``unordered_z_axis`` have negative z); the writer numbers each axis from its
    smallest index when it finishes the file.
    """
    if value is None:
        return 0
    if isinstance(value, (bool, str)):
        msg = f"axis {axis!r} must be an integer index, got {value!r}"
        raise CoordinateError(msg)
    try:
        index = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        msg = f"axis {axis!r} must be an integer index, got {value!r} ({type(value).__name__})"
        raise CoordinateError(msg) from None
    if index < 0 and not negative:
        msg = (
            f"axis {axis!r} has the negative index {index}; hyperstack indices start at 0 "
            "(pycro-manager's multi_d_acquisition_events never produces one, custom events can)"
        )
        raise CoordinateError(msg)
    return index


def _label(axis: str, value: object) -> str | int:
    """A file-splitting axis value: an int (numpy ints too) or a non-empty text label."""
    if isinstance(value, str):
        if not value:
            msg = f"axis {axis!r} has an empty label"
            raise CoordinateError(msg)
        return value
    if isinstance(value, bool):
        msg = f"axis {axis!r} must be an integer or a text label, got {value!r}"
        raise CoordinateError(msg)
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        msg = (
            f"axis {axis!r} must be an integer or a text label, got {value!r} "
            f"({type(value).__name__})"
        )
        raise CoordinateError(msg) from None


class AxisMapper:
    """Map pycro-manager ``Axes`` dicts to a :class:`Placement`, keeping the channel registry.

    Parameters
    ----------
    channel_names
        Channel names in the order wanted in the files. Named channels get their index in this
        list; names not in it are appended in order of first arrival. Integer channels are used
        as they are (these names then label them). Without names, channels named by text are
        indexed in order of first arrival, and mixing text and integer channels is an error
        (the two numberings could collide).
    file_axes
        The axes allowed to split files. None (default) allows every axis other than
        ``channel``, ``z`` and ``time``. When given, an image with another axis raises
        :class:`~mmtiffsink.errors.CoordinateError` instead of silently opening a new file.

    Raises
    ------
    ValueError
        When ``channel_names`` holds duplicates or empty names, or ``file_axes`` names a
        hyperstack axis.

    Notes
    -----
    Not thread-safe: call :meth:`map` from one thread (the sink's).

    """

    def __init__(
        self,
        channel_names: Sequence[str] | None = None,
        *,
        file_axes: Collection[str] | None = None,
    ) -> None:
        names = list(channel_names) if channel_names is not None else []
        if any(not isinstance(name, str) or not name for name in names):
            msg = f"channel names must be non-empty strings, got {names!r}"
            raise ConfigError(msg)
        if len(set(names)) != len(names):
            msg = f"channel names must be unique, got {names!r}"
            raise ConfigError(msg)
        if file_axes is not None:
            clash = HYPERSTACK_AXES.intersection(file_axes)
            if clash:
                msg = f"file_axes cannot hold the hyperstack axes {sorted(clash)}"
                raise ConfigError(msg)
        self._named = channel_names is not None
        self._channels: dict[str, int] = {name: i for i, name in enumerate(names)}
        self._file_axes = frozenset(file_axes) if file_axes is not None else None
        self._seen_int_channel = False
        self._seen_text_channel = False

    @property
    def channel_names(self) -> list[str]:
        """The channel names known so far, in index order (empty for integer channels)."""
        return list(self._channels)

    def channel_index(self, channel: object) -> int:
        """The C index of a channel (a name or an integer), registering a new name.

        Parameters
        ----------
        channel
            The ``channel`` axis value; None (no channel axis) is channel 0.

        Returns
        -------
        int
            The channel index.

        Raises
        ------
        CoordinateError
            For negative or non-integer, non-text values, and for text and integer channels mixed
            without ``channel_names``.

        """
        if channel is None:
            return 0
        if isinstance(channel, str):
            if not channel:
                msg = "the channel axis has an empty name"
                raise CoordinateError(msg)
            if self._seen_int_channel and not self._named:
                msg = (
                    f"channel {channel!r} is a name but earlier images had integer channels; "
                    "give channel_names to say which index each name has"
                )
                raise CoordinateError(msg)
            self._seen_text_channel = True
            index = self._channels.get(channel)
            if index is None:
                index = self._channels[channel] = len(self._channels)
            return index
        index = _index(CHANNEL_AXIS, channel)
        if self._seen_text_channel and not self._named:
            msg = (
                f"channel {index} is an integer but earlier images had named channels; "
                "give channel_names to say which index each name has"
            )
            raise CoordinateError(msg)
        self._seen_int_channel = True
        return index

    def file_key(self, axes: Mapping[str, object]) -> FileKey:
        """The sorted file-splitting axes of ``axes`` (all but channel, z and time).

        Parameters
        ----------
        axes
            The image's axes; axes whose value is None are absent.

        Returns
        -------
        FileKey
            ``((axis, value), ...)`` sorted by axis name, ``()`` when there is none.

        Raises
        ------
        CoordinateError
            For a value that is neither an integer nor a text label, or an axis outside
            ``file_axes``.

        """
        items: list[tuple[str, str | int]] = []
        for axis, value in axes.items():
            if axis in HYPERSTACK_AXES or value is None:
                continue
            if not isinstance(axis, str) or not axis:
                msg = f"axis names must be non-empty strings, got {axis!r}"
                raise CoordinateError(msg)
            if self._file_axes is not None and axis not in self._file_axes:
                msg = (
                    f"unexpected axis {axis!r}={value!r}: allowed file-splitting axes are "
                    f"{sorted(self._file_axes)}"
                )
                raise CoordinateError(msg)
            items.append((axis, _label(axis, value)))
        items.sort(key=lambda item: item[0])
        return tuple(items)

    def map(self, axes: Mapping[str, object]) -> Placement:
        """Place one image.

        Parameters
        ----------
        axes
            The image's axes, e.g. ``{'time': 1, 'channel': 'FITC', 'z': 2, 'position': 0}``.
            Missing ``channel``/``z``/``time`` mean index 0.

        Returns
        -------
        Placement
            The file key and the (c, z, t) of the plane.

        Raises
        ------
        CoordinateError
            For negative or non-integer ``z``/``time``, a bad channel or file axis value.

        """
        file_key = self.file_key(axes)
        z = _index(Z_AXIS, axes.get(Z_AXIS), negative=True)
        t = _index(TIME_AXIS, axes.get(TIME_AXIS), negative=True)
        c = self.channel_index(axes.get(CHANNEL_AXIS))
        return Placement(file_key=file_key, c=c, z=z, t=t)

    def find(self, axes: Mapping[str, object]) -> Placement | None:
        """Place an image like :meth:`map` without registering anything new.

        Parameters
        ----------
        axes
            The image's axes.

        Returns
        -------
        Placement or None
            None when the channel is a name never seen (so no image can have these axes).

        Raises
        ------
        CoordinateError
            For values :meth:`map` would refuse.

        """
        channel = axes.get(CHANNEL_AXIS)
        if isinstance(channel, str):
            c = self._channels.get(channel)
            if c is None:
                return None
        else:
            c = 0 if channel is None else _index(CHANNEL_AXIS, channel)
        file_key = self.file_key(axes)
        z = _index(Z_AXIS, axes.get(Z_AXIS), negative=True)
        t = _index(TIME_AXIS, axes.get(TIME_AXIS), negative=True)
        return Placement(file_key=file_key, c=c, z=z, t=t)


def split_position(file_key: FileKey) -> tuple[FileKey, str | int | None]:
    """A file key without its ``position`` axis, and that axis' value (None when absent).

    With ``positions="series"`` the rest of the key names the file and the position its
    series.

    Examples
    --------
    >>> split_position((("camera", "A"), ("position", 3)))
    ((('camera', 'A'),), 3)

    """
    rest = tuple(item for item in file_key if item[0] != POSITION_AXIS)
    found = [value for axis, value in file_key if axis == POSITION_AXIS]
    return rest, found[0] if found else None


def sanitize(label: str) -> str:
    """Make a label safe inside a file name.

    Runs of characters other than ASCII letters, digits and ``. _ + -`` become one ``_``; leading
    dots are removed (no hidden files, no ``..``).

    Parameters
    ----------
    label
        A position label, camera name, etc.

    Returns
    -------
    str
        The safe label; ``_`` if nothing is left. Distinct labels may give the same result
        (``'A 1'`` and ``'A/1'``): whoever opens the files must check for that.

    """
    safe = _UNSAFE.sub("_", label).lstrip(".")
    return safe or "_"


def _format_value(value: str | int, spec: str) -> str:
    if isinstance(value, str):
        return sanitize(value)
    if spec:
        try:
            return format(value, spec)
        except ValueError:
            pass
    return str(value)


def _split_suffix(name: str) -> tuple[str, str]:
    lowered = name.lower()
    for suffix in _DOUBLE_SUFFIXES:
        if lowered.endswith(suffix):
            return name[: -len(suffix)], name[-len(suffix) :]
    dot = name.rfind(".")
    if dot > 0 and not any(sep in name[dot:] for sep in "/\\"):
        return name[:dot], name[dot:]
    return name, ""


def file_name(template: str, name: str, file_key: FileKey) -> str:
    """Format a file name from a template, the dataset name and a file key.

    Parameters
    ----------
    template
        A ``str.format`` template with fields ``name`` and axis names, e.g.
        ``'{name}_{position}.tif'`` or ``'{name}_{position:03d}_{camera}.ome.tif'``. A format spec
        applies to integer values only. A field whose axis is not in the key is dropped together
        with one separator (``_ - .`` or space) next to it, the one before it if any.
    name
        The dataset name, used as given.
    file_key
        The file's key (:attr:`Placement.file_key`). Text values are :func:`sanitize`-d. Axes
        of the key that the template lacks are appended before the suffix as ``_{axis}{value}``
        (in key order), so two keys never give the same name through a missing field.

    Returns
    -------
    str
        The file name.

    Raises
    ------
    ValueError
        For a malformed template (unbalanced braces, positional or attribute fields).

    Examples
    --------
    >>> file_name("{name}_{position}.tif", "exp", (("position", "A1"),))
    'exp_A1.tif'
    >>> file_name("{name}.tif", "exp", (("camera", "Cam 2"), ("position", 0)))
    'exp_cameraCam_2_position0.tif'
    >>> file_name("{name}_{position}.tif", "exp", ())
    'exp.tif'

    """
    values = dict(file_key)
    parts: list[str] = []
    used: set[str] = set()
    strip_next = False
    for literal, field, spec, conversion in string.Formatter().parse(template):
        if strip_next and literal and literal[0] in _SEPARATORS:
            literal = literal[1:]
        strip_next = False
        parts.append(literal)
        if field is None:
            continue
        if not field.isidentifier() and not re.fullmatch(r"[A-Za-z_][\w-]*", field):
            msg = f"template field {{{field}}} must be 'name' or an axis name: {template!r}"
            raise ConfigError(msg)
        if conversion:
            msg = f"template conversions (!{conversion}) are not supported: {template!r}"
            raise ConfigError(msg)
        if field == "name":
            parts.append(format(name, spec or ""))
        elif field in values:
            parts.append(_format_value(values[field], spec or ""))
            used.add(field)
        elif parts[-1] and parts[-1][-1] in _SEPARATORS:
            parts[-1] = parts[-1][:-1]
        else:
            strip_next = True
    stem, suffix = _split_suffix("".join(parts))
    extra = "".join(
        f"_{sanitize(axis)}{_format_value(value, '')}"
        for axis, value in file_key
        if axis not in used
    )
    return f"{stem}{extra}{suffix}"
