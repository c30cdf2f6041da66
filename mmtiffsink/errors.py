"""Exceptions and warning categories of mmtiffsink.

Every error raised on purpose by mmtiffsink derives from :class:`MMTiffSinkError`, so
``except MMTiffSinkError`` catches all of them. Errors about the caller's input also derive
from :class:`ValueError` (or :class:`TypeError`) so generic handlers keep working.
"""

from __future__ import annotations

__all__ = [
    "CalibrationWarning",
    "CloseErrors",
    "ConfigError",
    "CoordinateError",
    "DatasetError",
    "FileExistsError_",
    "FrameError",
    "MMTiffSinkError",
    "MMTiffSinkWarning",
    "MicroscopeError",
    "MissingFramesWarning",
    "OutputExistsError",
    "ProfileError",
    "SupersededImagesWarning",
    "TextReplacedWarning",
    "UnclosedFileWarning",
    "WriterClosedError",
    "WriterError",
    "no_such_file",
]


class MMTiffSinkError(Exception):
    """Base class of every error raised by mmtiffsink."""


class FrameError(MMTiffSinkError, ValueError):
    """A frame cannot be stored: wrong dimensionality, shape, dtype or a lossy cast."""


class CoordinateError(MMTiffSinkError, ValueError):
    """A (c, z, t) coordinate is negative, outside the declared shape, or saved twice."""


class ProfileError(MMTiffSinkError, ValueError):
    """An option or a size is not allowed by the chosen file profile (e.g. ImageJ's 4 GiB)."""


class WriterError(MMTiffSinkError, OSError):
    """Writing failed (I/O error, full disk, failure in a worker); the cause is chained."""


class CloseErrors(WriterError):
    """Several files failed to close; each error is in :attr:`errors` (the first is the cause)."""

    def __init__(self, errors: list[Exception]) -> None:
        self.errors = list(errors)
        lines = "; ".join(f"{type(e).__name__}: {e}" for e in self.errors)
        super().__init__(f"{len(self.errors)} files failed to close: {lines}")

    def __reduce__(self) -> tuple[type, tuple[list[Exception]]]:
        return (type(self), (self.errors,))


class WriterClosedError(MMTiffSinkError):
    """The writer was used after it was closed."""


class OutputExistsError(MMTiffSinkError, FileExistsError):
    """An output file exists and overwriting was not allowed."""


FileExistsError_ = OutputExistsError
"""Former name of :class:`OutputExistsError`, kept for code written against 0.1."""


class ConfigError(MMTiffSinkError, ValueError):
    """A run configuration file, or an option given to a command or function, is invalid."""


class DatasetError(MMTiffSinkError):
    """An input dataset (e.g. NDTiff) is missing, unreadable or corrupted."""


def no_such_file(path: object) -> DatasetError:
    """The error of an input that does not exist.

    One wording for ``info``, ``preview``, ``repair`` and ``replay``.
    """
    return DatasetError(f"{path}: no such file")


class MicroscopeError(MMTiffSinkError):
    """The microscope could not be started, reached or set up as the run file says."""


class MMTiffSinkWarning(UserWarning):
    """Base class of every warning issued by mmtiffsink."""


class MissingFramesWarning(MMTiffSinkWarning):
    """Planes of the hyperstack were never saved and were filled with a blank frame."""


class CalibrationWarning(MMTiffSinkWarning):
    """Calibration metadata were missing, inconsistent or absurd and were left out."""


class SupersededImagesWarning(MMTiffSinkWarning):
    """A dataset stores images more than once at the same coordinates; the last one was kept."""


class TextReplacedWarning(MMTiffSinkWarning):
    """Text that came with the data held characters no file can hold; they were replaced."""


class UnclosedFileWarning(MMTiffSinkWarning):
    """A file was still open at interpreter exit: mmtiffsink finished it then."""
