r"""The one home of the rules for text a file holds: XML-safe text and dataset names.

Every name or value mmtiffsink writes into a file (channel names, series and position names,
annotations, summary values, comments) ends up in OME-XML, in the ImageJ metadata (UTF-16) or
in a file name. XML 1.0 forbids NUL, the control characters ``\x01``-``\x1f`` other than tab,
newline and carriage return, U+FFFE and U+FFFF; no UTF encoding holds a lone surrogate
(``"\ud800"``, which JSON can carry). Two kinds of caller, one rule (as in :mod:`._values`):

- *strict* checks of what a user gives (``IJTiffFile.channel_names``, ``SinkOptions``, a run
  file, ``replay --name``): :func:`check_text` and :func:`check_name` raise a
  :class:`~mmtiffsink.errors.ConfigError` naming the field, before anything is written;
- *lenient* handling of text that arrives with the data (axis labels, Micro-Manager metadata,
  an NDTiff dataset's channel names), and the OME-XML and ImageJ writers as the last line of
  defence: :func:`clean_text` writes each forbidden character as U+FFFD and says so with a
  :class:`~mmtiffsink.errors.TextReplacedWarning`. A file is always finishable.
"""

from __future__ import annotations

import re
import warnings
from typing import Any, Final

from mmtiffsink.errors import ConfigError, MMTiffSinkError, TextReplacedWarning

__all__ = ["REPLACEMENT", "check_name", "check_text", "clean_text", "xml_illegal", "xml_safe"]

#: What a character no file can hold is written as (the Unicode replacement character).
REPLACEMENT: Final = "\ufffd"
_XML_ILLEGAL: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
#: Characters a dataset name (part of a file name) may not hold beyond the XML-illegal ones.
_NAME_ILLEGAL: Final = re.compile("[\t\n\r/\\\\\x7f]")


def xml_illegal(text: str) -> str | None:
    r"""The first character of ``text`` that XML 1.0 and UTF-8 cannot hold, described; or None.

    Examples
    --------
    >>> xml_illegal("DAPI") is None
    True
    >>> xml_illegal("A\x01")
    "U+0001 at position 1 of 'A\\x01'"

    """
    found = _XML_ILLEGAL.search(text)
    if found is None:
        return None
    return f"U+{ord(found.group()):04X} at position {found.start()} of {text!r}"


def xml_safe(text: str) -> str:
    """``text`` with every character XML 1.0 and UTF-8 cannot hold replaced by U+FFFD."""
    return _XML_ILLEGAL.sub(REPLACEMENT, text)


def check_text(field: str, value: Any, *, error: type[MMTiffSinkError] = ConfigError) -> str:
    """A user's text, checked: it must be a ``str`` that any XML parser and UTF-8 can hold.

    Parameters
    ----------
    field
        The field's name, for the message (``"channel_names[1]"``).
    value
        The text.
    error
        The error class raised.

    Raises
    ------
    ConfigError
        ``value`` is not text, or holds NUL, a control character other than tab, newline and
        carriage return, U+FFFE, U+FFFF or a lone surrogate (the message names it).

    """
    if not isinstance(value, str):
        msg = f"{field} is text, got {value!r}"
        raise error(msg)
    bad = xml_illegal(value)
    if bad is not None:
        msg = (
            f"{field} holds a character no file can hold ({bad}): NUL, control characters "
            "other than tab and newlines, U+FFFE, U+FFFF and lone surrogates are refused"
        )
        raise error(msg)
    return value


def clean_text(field: str, value: str, *, stacklevel: int = 2) -> str:
    r"""Text that came with the data, made writable: forbidden characters become U+FFFD.

    Parameters
    ----------
    field
        What the text is, for the warning (``"the channel name 'A\x01'"``).
    value
        The text.
    stacklevel
        As for :func:`warnings.warn`, counted from the caller.

    Warns
    -----
    TextReplacedWarning
        When a character was replaced; the warning names the field and what is written.

    """
    safe = xml_safe(value)
    if safe != value:
        warnings.warn(
            f"{field}: {xml_illegal(value)} cannot be written to a file; written as {safe!r}",
            TextReplacedWarning,
            stacklevel=stacklevel + 1,
        )
    return safe


def check_name(field: str, value: Any, *, error: type[MMTiffSinkError] = ConfigError) -> str:
    r"""A dataset name, checked: a part of a file name, never a path.

    The one rule for every route that names files (``TiffSink(name=)``, ``output.name`` of a
    run file, ``replay --name`` and :class:`~mmtiffsink.ndtiff.ReplayOptions`).

    Parameters
    ----------
    field
        The field's name, for the message.
    value
        The name.
    error
        The error class raised.

    Raises
    ------
    ConfigError
        ``value`` is not text, is empty, ``.`` or ``..``, or holds ``/``, ``\``, a tab,
        newline, carriage return, DEL, or any character :func:`check_text` refuses.

    """
    text = check_text(field, value, error=error)
    if not text or text in (".", ".."):
        msg = f"{field} is a file name part, got {text!r}"
        raise error(msg)
    found = _NAME_ILLEGAL.search(text)
    if found is not None:
        msg = (
            f"{field} is a file name part, not a path, and holds no tab, newline or DEL; "
            f"got {text!r} (U+{ord(found.group()):04X} at position {found.start()})"
        )
        raise error(msg)
    return text
