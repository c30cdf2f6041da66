"""File profiles: the container, codecs, pixel types and size limit of each kind of file.

A :class:`Profile` owns its rules; the writer, the sink, replay and the run-file model all ask
it (``Profile.get(name).codec(compression)``) instead of restating them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal, final

import numpy as np

from ..errors import ConfigError, FrameError, ProfileError
from ._codecs import Codec, CompressionLike
from ._tags import Layout

__all__ = ["DEFAULT", "Profile", "ProfileName"]

ProfileName = Literal["bigtiff", "imagej", "ome"]


class _Default:
    """Sentinel type of :data:`DEFAULT`; picklable, one instance."""

    _instance: ClassVar[_Default | None] = None

    def __new__(cls) -> _Default:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __reduce__(self) -> str:
        return "DEFAULT"

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT: Any = _Default()
"""``compression=DEFAULT``: the profile's default codec."""


@final
@dataclass(frozen=True, slots=True)
class Profile:
    """What one kind of file may hold.

    Parameters
    ----------
    name
        ``"bigtiff"``, ``"imagej"`` or ``"ome"``.
    bigtiff
        The container: BigTIFF (64-bit offsets) or classic TIFF.
    codecs
        Codec names the profile's readers decode.
    dtypes
        Pixel types the profile's readers show as they are.
    default_codec
        The codec of ``compression=DEFAULT`` for :class:`IJTiffFile` and replays.
    live_codec
        The codec of ``compression=DEFAULT`` for live acquisitions (the sinks): the cheapest
        codec that still compresses well, so compression does not compete with the camera
        for the CPU (``benchmarks/bench_codecs.py``; see the README's codec table).
    uncompressed_needs_shape
        Uncompressed files need (C, Z, T) up front (ImageJ 1.x reads uncompressed planes in
        file order, so each plane gets a slot).
    predictor_refused
        Why the profile refuses the horizontal-differencing predictor (``None``: its readers
        decode it).
    readers
        Who opens it (for messages).
    rgb_dtypes
        Sample types of the RGB frames (``(Y, X, 3)``) its readers show as colour images.
    rgb_refused
        Why other RGB sample types are refused (for messages).
    ome
        The finished file's first IFD describes it in OME-XML (an OME-TIFF) instead of an
        ImageJ description.
    suffix
        The conventional file-name ending.

    """

    name: ProfileName
    bigtiff: bool
    codecs: frozenset[str]
    dtypes: frozenset[np.dtype[Any]]
    default_codec: Codec
    live_codec: Codec
    uncompressed_needs_shape: bool
    predictor_refused: str | None
    readers: str
    rgb_dtypes: frozenset[np.dtype[Any]]
    rgb_refused: str
    ome: bool = False
    suffix: str = ".tif"

    ALL: ClassVar[dict[str, Profile]]

    @property
    def max_bytes(self) -> int:
        """Largest file the container can address."""
        return Layout(bigtiff=self.bigtiff).max_offset

    @classmethod
    def get(cls, profile: str | Profile) -> Profile:
        """The profile of a name (or the profile itself).

        Raises
        ------
        ProfileError
            For an unknown name.

        """
        if isinstance(profile, Profile):
            return profile
        found = cls.ALL.get(profile) if isinstance(profile, str) else None
        if found is None:
            names = " or ".join(repr(n) for n in cls.ALL)
            msg = f"profile must be {names}, got {profile!r}"
            raise ProfileError(msg)
        return found

    def codec(
        self,
        compression: CompressionLike = DEFAULT,
        *,
        predictor: bool = False,
        dtype: Any = None,
        shape_known: bool = True,
        live: bool = False,
    ) -> Codec:
        """The codec for a ``compression`` argument, checked against this profile.

        Parameters
        ----------
        compression
            As :meth:`Codec.parse` takes it, or :data:`DEFAULT`.
        predictor
            Add the horizontal-differencing predictor to that codec (False: the codec as
            ``compression`` says, e.g. ``"zstd:1+predictor"``).
        dtype
            The file's pixel type, when known: the predictor is for integer pixels.
        shape_known
            Whether the writer will know (C, Z, T) up front (``IJTiffFile(shape=...)``);
            sinks, runs and replays do not.
        live
            ``DEFAULT`` means :attr:`live_codec` (a sink's default), not :attr:`default_codec`.

        Raises
        ------
        ConfigError
            For a compression that cannot be parsed, the predictor without a codec or with
            floating-point pixels.
        ProfileError
            For a codec this profile's readers cannot decode, the predictor in a profile
            whose readers decode it wrongly, or an uncompressed file whose shape this profile
            needs up front when ``shape_known`` is False.

        """
        if compression is DEFAULT:
            codec = self.live_codec if live else self.default_codec
            if dtype is not None and np.dtype(dtype).kind == "f":
                codec = codec.with_predictor(False)  # a default never refuses float pixels
        else:
            codec = Codec.parse(compression)
        if predictor is not False:
            if predictor is not True:
                msg = f"predictor is True or False, got {predictor!r}"
                raise ConfigError(msg)
            codec = codec.with_predictor()
        if codec.predictor and self.predictor_refused is not None:
            msg = (
                f"the {self.name!r} profile cannot use the predictor: {self.predictor_refused}; "
                "use profile='bigtiff' or 'ome' (Bio-Formats and tifffile decode it), or no "
                "predictor"
            )
            raise ProfileError(msg)
        if dtype is not None:
            codec.check_dtype(dtype)
        if codec.name not in self.codecs:
            allowed = ", ".join("None" if c == "none" else repr(c) for c in sorted(self.codecs))
            msg = (
                f"the {self.name!r} profile allows compression {allowed} ({self.readers} "
                f"cannot read {codec.name}); use profile='bigtiff' for {codec.name}"
            )
            raise ProfileError(msg)
        if not codec.compressed and self.uncompressed_needs_shape and not shape_known:
            msg = (
                f"profile={self.name!r} with compression=None needs each file's shape "
                "(C, Z, T) up front (ImageJ reads uncompressed planes in file order): give "
                f"shape=(C, Z, T), or use compression='deflate' (the {self.name} default) or "
                "profile='bigtiff'"
            )
            raise ProfileError(msg)
        return codec

    def dtype(self, dtype: Any) -> np.dtype[Any]:
        """The little-endian pixel type for ``dtype``, checked against this profile.

        Raises
        ------
        FrameError
            ``dtype`` is not a numpy dtype.
        ProfileError
            The profile cannot store it.

        """
        try:
            dt: np.dtype[Any] = np.dtype(dtype)
        except (TypeError, ValueError):
            msg = f"{dtype!r} is not a numpy dtype"
            raise FrameError(msg) from None
        if dt.kind == "b":
            dt = np.dtype("u1")
        dt = dt.newbyteorder("<") if dt.itemsize > 1 else dt
        if dt not in self.dtypes:
            order = sorted(self.dtypes, key=lambda d: ("uif".index(d.kind), d.itemsize))
            names = [d.name for d in order]
            listed = ", ".join(names[:-1]) + " or " + names[-1]
            msg = f"the {self.name!r} profile stores {listed}, not {dt.name}"
            if not self.bigtiff or self.ome:
                msg += ": convert the data, or use profile='bigtiff' (read by Fiji/Bio-Formats)"
            raise ProfileError(msg)
        return dt

    def check_rgb(self, dtype: np.dtype[Any]) -> None:
        """Refuse RGB frames of ``dtype`` samples if this profile's readers cannot show them.

        Raises
        ------
        ProfileError
            ``dtype`` is not one of :attr:`rgb_dtypes`.

        """
        if dtype in self.rgb_dtypes:
            return
        names = " or ".join(d.name for d in sorted(self.rgb_dtypes, key=lambda d: d.itemsize))
        msg = (
            f"the {self.name!r} profile stores RGB frames of {names} samples, not "
            f"{dtype.name}: {self.rgb_refused}"
        )
        raise ProfileError(msg)


def _dtypes(*codes: str) -> frozenset[np.dtype[Any]]:
    return frozenset(np.dtype(c) for c in codes)


Profile.ALL = {
    "bigtiff": Profile(
        name="bigtiff",
        bigtiff=True,
        codecs=frozenset({"zstd", "deflate", "none"}),
        dtypes=_dtypes("<u1", "<u2", "<u4", "<u8", "i1", "<i2", "<i4", "<i8", "<f4", "<f8"),
        default_codec=Codec("zstd", 3),
        live_codec=Codec("zstd", 1, predictor=True),
        uncompressed_needs_shape=False,
        predictor_refused=None,
        readers="Fiji/Bio-Formats, tifffile",
        rgb_dtypes=_dtypes("u1", "<u2"),
        rgb_refused=(
            "RGB is 8 or 16 bits per sample (Micro-Manager's 32bitRGB and 64bitRGB); give "
            "dtype='uint8' or 'uint16'"
        ),
    ),
    "imagej": Profile(
        name="imagej",
        bigtiff=False,
        codecs=frozenset({"deflate", "none"}),
        dtypes=_dtypes("u1", "<u2", "<f4"),
        default_codec=Codec("deflate", 1),
        live_codec=Codec("deflate", 1),
        uncompressed_needs_shape=True,
        predictor_refused=(
            "ImageJ 1.x opens such files without a message but undoes the predictor of "
            "16-bit pixels wrongly (wrong pixel values)"
        ),
        readers="ImageJ 1.x",
        rgb_dtypes=_dtypes("u1"),
        rgb_refused=(
            "ImageJ 1.x opens 16-bit RGB (64bitRGB) as one 3-channel stack and loses C, Z and "
            "T; give dtype='uint8' for 8-bit RGB, or use profile='bigtiff' or 'ome' for "
            "16-bit RGB"
        ),
    ),
    "ome": Profile(
        name="ome",
        bigtiff=True,
        codecs=frozenset({"zstd", "deflate", "none"}),
        # OME-XML 2016-06 has no 64-bit integer pixel type
        dtypes=_dtypes("<u1", "<u2", "<u4", "i1", "<i2", "<i4", "<f4", "<f8"),
        default_codec=Codec("zstd", 3),
        live_codec=Codec("zstd", 1, predictor=True),
        uncompressed_needs_shape=False,
        predictor_refused=None,
        readers="Fiji/Bio-Formats, tifffile, bioio, OMERO, QuPath",
        rgb_dtypes=_dtypes("u1", "<u2"),
        rgb_refused=(
            "RGB is 8 or 16 bits per sample (Micro-Manager's 32bitRGB and 64bitRGB); give "
            "dtype='uint8' or 'uint16'"
        ),
        ome=True,
        suffix=".ome.tif",
    ),
}
