"""Run files: the YAML that ``mmtiffsink run`` reads, as frozen pydantic models.

A run file has three sections, each optional (an empty file acquires one frame on the demo
microscope into ``acq.tif`` beside it)::

    microscope:   # which Micro-Manager, and its settings before acquiring
    acquisition:  # pycro-manager multi_d_acquisition_events() arguments, with units in the names
    output:       # where and how the hyperstacks are written

Every model forbids unknown keys, so a typo is an error. :func:`load_config` reports every
problem of a file at once, each with its line number and key path, e.g.::

    run file demo.yaml is invalid:
      line 14: acquisition.z_stpe_um: unknown key; did you mean 'z_step_um'?

Relative paths in a run file (``output.directory``, ``microscope.path``) are resolved against the
folder of the YAML file, not the current directory: a run file means the same wherever it is run
from. A relative ``microscope.config`` is looked up inside ``microscope.path`` (the Micro-Manager
installation), as pycro-manager does.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mmtiffsink._text import check_name
from mmtiffsink.errors import ConfigError
from mmtiffsink.limits import MAX_PLANES
from mmtiffsink.sink import TIFFWRITE_NAMES, SinkOptions
from mmtiffsink.tiff import DEFAULT

from ._yaml import (
    BASE_DIR,
    MAX_BYTES,
    MAX_PROBLEMS_SHOWN,
    FiniteFloat,
    PositiveFloat,
    Text,
    describe_errors,
    load_model,
    read_yaml,
    resolve_path,
)
from ._yaml import FileModel as _Model
from ._yaml import located_error as _error

__all__ = [
    "DEFAULT_JAVA_PORT",
    "MAX_Z_SLICES",
    "AcquisitionConfig",
    "MicroscopeConfig",
    "OutputConfig",
    "Position",
    "PropertySetting",
    "RunConfig",
    "load_config",
]

#: pycro-manager's default port of Micro-Manager's ZMQ server (``pyjavaz.DEFAULT_BRIDGE_PORT``).
DEFAULT_JAVA_PORT = 4827
#: More z slices than this in one stack is taken for a typo in the z range or step.
MAX_Z_SLICES = 10_000
_ORDER_LETTERS = frozenset("tpcz")


class PropertySetting(_Model):
    """A device property set before acquiring: ``[Camera, OnCameraCCDXSize, 512]``.

    Parameters
    ----------
    device, property, value
        Micro-Manager device label, property name and value (numbers are sent as text).

    """

    device: Text
    property: Text
    value: Text

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, data: Any) -> Any:
        if isinstance(data, (list, tuple)):
            if len(data) != 3:
                msg = f"a property is [device, property, value], got {list(data)!r}"
                raise _error(msg)
            return {"device": data[0], "property": data[1], "value": data[2]}
        return data


class MicroscopeConfig(_Model):
    """Which Micro-Manager runs the acquisition, and its settings before acquiring.

    Parameters
    ----------
    kind
        ``demo`` (default): Micro-Manager's demo configuration from the ``mm-test-adapters``
        package, started headless in this process (Python backend). ``micromanager``: the
        device adapters of a Micro-Manager installation (``path``) and a ``config`` file, started
        headless in this process (Python backend). ``java``: an already running Micro-Manager
        (its ZMQ server on ``port``), through pycro-manager's Java backend.
    path
        ``micromanager`` only: the installation folder holding the ``mmgr_dal_*`` device
        adapters. Relative: to the run file's folder.
    config
        ``micromanager`` only: the ``.cfg`` file; relative: inside ``path``.
    port
        ``java`` only: the port of Micro-Manager's ZMQ server (default 4827).
    buffer_size_mb
        Circular buffer of a headless core (``demo``/``micromanager``).
    presets
        Config-group presets applied first, in order, e.g. ``{Objective: 20X}``.
    properties
        Device properties set after the presets, in order, as ``[device, property, value]``.
    exposure_ms
        Camera exposure for channels without their own exposure.
    engine
        ``pycro-manager`` (default; the ``acquisition`` section) or ``pymmcore-plus``
        (``CMMCorePlus`` runs the ``sequence`` section, a useq ``MDASequence``; kinds ``demo``
        and ``micromanager``).

    """

    kind: Literal["demo", "micromanager", "java"] = "demo"
    engine: Literal["pycro-manager", "pymmcore-plus"] = "pycro-manager"
    path: Path | None = None
    config: Path | None = None
    port: Annotated[StrictInt, Field(ge=1, le=65535)] | None = None
    buffer_size_mb: Annotated[StrictInt, Field(ge=1, le=1_000_000)] = 256
    presets: dict[StrictStr, Text] = Field(default_factory=dict)
    properties: list[PropertySetting] = Field(default_factory=list)
    exposure_ms: PositiveFloat | None = None

    @field_validator("path")
    @classmethod
    def _resolve_path(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else resolve_path(value, info)

    @model_validator(mode="after")
    def _check_kind(self) -> MicroscopeConfig:
        given = self.model_fields_set
        for key, kind in (("path", "micromanager"), ("config", "micromanager"), ("port", "java")):
            if key in given and kind != self.kind:
                msg = f"'{key}' is not used with kind '{self.kind}' (only with kind '{kind}')"
                raise _error(msg, key)
        if self.engine == "pymmcore-plus" and self.kind == "java":
            msg = "engine 'pymmcore-plus' runs its own core: kind 'demo' or 'micromanager'"
            raise _error(msg, "engine")
        if self.kind == "java" and "buffer_size_mb" in given:
            msg = "'buffer_size_mb' is set in the running Micro-Manager, not here (kind 'java')"
            raise _error(msg, "buffer_size_mb")
        if self.kind == "micromanager":
            try:
                self._check_installation()
            except OSError as exc:  # a name too long, a folder we may not list
                msg = f"cannot look at {exc.filename or self.path}: {exc.strerror}"
                raise _error(msg, "path") from None
        return self

    def _check_installation(self) -> None:
        if self.path is None:
            raise _error("kind 'micromanager' needs 'path': the Micro-Manager installation", "path")
        if self.config is None:
            raise _error("kind 'micromanager' needs 'config': a .cfg file", "config")
        if not self.path.is_dir():
            msg = f"Micro-Manager installation folder {self.path} does not exist"
            raise _error(msg, "path")
        if not any("mmgr_dal_" in p.name for p in self.path.iterdir()):
            msg = (
                f"{self.path} holds no Micro-Manager device adapters (mmgr_dal_* files); "
                "give the folder of a Micro-Manager installation"
            )
            raise _error(msg, "path")
        if not self.config_path.is_file():
            raise _error(f"configuration file {self.config_path} does not exist", "config")

    @property
    def config_path(self) -> Path:
        """The ``.cfg`` file of kind ``micromanager``, absolute (relative ones are in ``path``)."""
        if self.config is None or self.path is None:
            msg = "only kind 'micromanager' has a config file"
            raise ValueError(msg)
        return self.config if self.config.is_absolute() else self.path / self.config

    @property
    def java_port(self) -> int:
        """The ZMQ port of kind ``java`` (default :data:`DEFAULT_JAVA_PORT`)."""
        return DEFAULT_JAVA_PORT if self.port is None else self.port


class Position(_Model):
    """One stage position.

    Parameters
    ----------
    label
        Its name: the ``{position}`` of output file names (default: its index 0, 1, ...).
    x_um, y_um
        XY stage position.
    z_um
        Focus position; then the z range is relative to it (pycro-manager's ``xyz_positions``).
        Give it for every position or for none.

    """

    label: Text | None = None
    x_um: FiniteFloat
    y_um: FiniteFloat
    z_um: FiniteFloat | None = None


class AcquisitionConfig(_Model):
    """The arguments of pycro-manager's ``multi_d_acquisition_events``, with units in the names.

    Parameters
    ----------
    num_time_points
        Time points (``num_time_points``); omit for no time axis.
    time_interval_s
        Minimum interval between time points (``time_interval_s``); 0: as fast as possible.
    z_start_um, z_end_um, z_step_um
        z stack from start to end inclusive (``z_start``, ``z_end``, ``z_step``), absolute
        focus positions, or relative to each position's ``z_um``. All three or none.
    channel_group
        The config group of the channels (``channel_group``), e.g. ``Channel``.
    channels
        Its presets, in the order of the file's channels (``channels``).
    channel_exposures_ms
        One exposure per channel (``channel_exposures_ms``).
    positions
        Stage positions (``xy_positions``/``xyz_positions`` and ``position_labels``); one file
        per position, or one series each of one file (``output.positions: series``).
    order
        Loop order, outermost first (``order``), letters of ``tpcz``; ``p`` before ``z``.

    """

    num_time_points: Annotated[StrictInt, Field(ge=1)] | None = None
    time_interval_s: Annotated[StrictFloat, Field(ge=0, allow_inf_nan=False)] = 0.0
    z_start_um: FiniteFloat | None = None
    z_end_um: FiniteFloat | None = None
    z_step_um: PositiveFloat | None = None
    channel_group: Text | None = None
    channels: Annotated[list[Text], Field(min_length=1)] | None = None
    channel_exposures_ms: list[PositiveFloat] | None = None
    positions: Annotated[list[Position], Field(min_length=1)] | None = None
    order: StrictStr = "tpcz"

    @field_validator("channels")
    @classmethod
    def _unique_channels(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise _error(f"channels must be unique, got {value!r}")
        return value

    @field_validator("order")
    @classmethod
    def _check_order(cls, value: str) -> str:
        order = value.lower()
        if not order or set(order) - _ORDER_LETTERS or len(set(order)) != len(order):
            msg = f"order is made of the letters t, p, c, z, each at most once; got {value!r}"
            raise _error(msg)
        if "p" in order and "z" in order and order.index("p") > order.index("z"):
            msg = f"order must have p (position) before z, as pycro-manager requires; got {value!r}"
            raise _error(msg)
        return order

    @model_validator(mode="after")
    def _check_combinations(self) -> AcquisitionConfig:
        z_keys = ("z_start_um", "z_end_um", "z_step_um")
        z_given = [key for key in z_keys if getattr(self, key) is not None]
        if z_given and len(z_given) < 3:
            missing = [key for key in z_keys if key not in z_given]
            msg = f"a z stack needs z_start_um, z_end_um and z_step_um; missing: {missing}"
            raise _error(msg, missing[0])
        if self.z_start_um is not None and self.z_end_um is not None and self.z_step_um:
            if self.z_end_um < self.z_start_um:
                msg = (
                    f"z_end_um ({self.z_end_um}) is below z_start_um ({self.z_start_um}); "
                    "the stack goes up from start to end with a positive step"
                )
                raise _error(msg, "z_end_um")
            if not math.isfinite(span := (self.z_end_um - self.z_start_um) / self.z_step_um):
                raise _error(f"the z range is too large ({span} steps)", "z_end_um")
            if self.num_z_slices > MAX_Z_SLICES:
                msg = (
                    f"the z range {self.z_start_um}..{self.z_end_um} um in steps of "
                    f"{self.z_step_um} um makes {self.num_z_slices} slices (more than "
                    f"{MAX_Z_SLICES}); check z_step_um"
                )
                raise _error(msg, "z_step_um")
        self._check_order_axes()
        self._check_planes()
        if self.num_time_points is None and "time_interval_s" in self.model_fields_set:
            msg = "time_interval_s needs num_time_points (how many time points)"
            raise _error(msg, "time_interval_s")
        if self.channels is not None and self.channel_group is None:
            raise _error("channels need a channel_group (e.g. Channel)", "channels")
        if self.channel_group is not None and self.channels is None:
            raise _error("channel_group needs channels (its presets)", "channel_group")
        if self.channel_exposures_ms is not None:
            n = len(self.channels or ())
            if len(self.channel_exposures_ms) != n:
                msg = (
                    f"channel_exposures_ms has {len(self.channel_exposures_ms)} values for "
                    f"{n} channels; give one exposure per channel"
                )
                raise _error(msg, "channel_exposures_ms")
        if self.positions:
            with_z = [p.z_um is not None for p in self.positions]
            if any(with_z) and not all(with_z):
                raise _error("give z_um for every position or for none", "positions")
            labels = self.position_labels
            if len(set(labels)) != len(labels):
                raise _error(f"position labels must be unique, got {labels!r}", "positions")
        return self

    def _check_order_axes(self) -> None:
        """Every axis given is in ``order`` (pycro-manager would skip it, or worse, see z)."""
        given = {
            "t": ("num_time_points", self.num_time_points is not None),
            "p": ("positions", bool(self.positions)),
            "c": ("channels", self.channels is not None),
            "z": ("z_step_um", self.z_step_um is not None),
        }
        for letter, (key, present) in given.items():
            if present and letter not in self.order:
                msg = f"order {self.order!r} has no {letter!r}, so {key} would not be acquired"
                raise _error(msg, "order")

    def _check_planes(self) -> None:
        """A file (one position) holds at most ``limits.MAX_PLANES`` planes: C x Z x T."""
        factors = [
            ("num_time_points", self.num_time_points or 1, "time points"),
            ("z_step_um", self.num_z_slices, "z slices"),
            ("channels", len(self.channels or ()), "channels"),
        ]
        planes = math.prod(max(n, 1) for _, n, _ in factors)
        if planes > MAX_PLANES:
            key = max(factors, key=lambda factor: factor[1])[0]
            product = " x ".join(f"{n} {what}" for _, n, what in factors if n > 1)
            msg = (
                f"{product} make {planes} planes in one file, more than {MAX_PLANES} "
                "(mmtiffsink.limits.MAX_PLANES)"
            )
            raise _error(msg, key)

    @property
    def num_z_slices(self) -> int:
        """Slices of the z stack as pycro-manager makes them (1 without a stack)."""
        if self.z_start_um is None or self.z_end_um is None or not self.z_step_um:
            return 1
        return math.floor((self.z_end_um - self.z_start_um) / self.z_step_um + 1e-9) + 1

    @property
    def position_labels(self) -> list[str | int]:
        """The label of each position (its index when it has none)."""
        return [p.label if p.label is not None else i for i, p in enumerate(self.positions or ())]


class OutputConfig(SinkOptions):
    """Where and how the hyperstacks are written (one file per position, or one OME-TIFF).

    Every field of :class:`~mmtiffsink.sink.SinkOptions` (``template``, ``profile``,
    ``compression`` such as ``zstd``, ``zstd:9``, ``deflate`` or ``none``, ``predictor``
    (true/false), ``colors`` or ``colormap``, ``pixel_size_um``, ``z_step_um``,
    ``interval_s``, ``if_exists``, ``max_planes``, ``keep_up``, ``positions``), plus:

    Parameters
    ----------
    directory
        Output folder, created if missing. Relative: to the run file's folder.
    name
        Dataset name: the ``{name}`` of ``template`` and the pycro-manager acquisition's name.
    preview
        Write a preview picture beside each file at the end of the run (default true).

    """

    ACCEPTS_TIFFWRITE_NAMES: ClassVar[bool] = False  # one name per option (see _HINTS)
    directory: Path = Field(default=Path("."), validate_default=True)
    name: Annotated[StrictStr, Field(min_length=1)] = "acq"
    preview: StrictBool = True

    # validated as part of a run file, with line numbers and the run file's folder: pydantic's
    # own __init__, not the one of SinkOptions that turns errors into mmtiffsink's
    __init__ = BaseModel.__init__

    @field_validator("directory")
    @classmethod
    def _resolve_directory(cls, value: Path, info: ValidationInfo) -> Path:
        return resolve_path(value, info)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        try:
            return check_name("name", value)  # the one rule, as for replay --name and TiffSink
        except ConfigError as exc:
            raise _error(str(exc)) from None

    @field_validator("compression", mode="before")
    @classmethod
    def _absent_is_default(cls, value: Any) -> Any:
        # in a run file, no compression (or null) means the profile's default; 'none' is none
        if value is None:
            return DEFAULT
        if isinstance(value, bool) or not isinstance(value, str):
            raise _error("write zstd, deflate, none, or with a level such as zstd:9")
        return value

    def options(self) -> SinkOptions:
        """The sink options of this section (without the run's own keys)."""
        return SinkOptions.of(**self.sink_fields())


class RunConfig(_Model):
    """A run file: ``microscope``, ``acquisition`` (or ``sequence``) and ``output`` sections.

    ``sequence`` is a useq-schema ``MDASequence`` as useq writes it (``MDASequence.yaml()``),
    run by pymmcore-plus (``microscope.engine: pymmcore-plus``) instead of ``acquisition``.

    Build it with :func:`load_config` (which resolves relative paths against the file's folder
    and reports line numbers), or ``RunConfig.model_validate(data)`` (relative to the cwd).
    """

    microscope: MicroscopeConfig = Field(default_factory=MicroscopeConfig)
    acquisition: AcquisitionConfig = Field(default_factory=AcquisitionConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    sequence: Any = None

    @field_validator("sequence")
    @classmethod
    def _check_sequence(cls, value: Any) -> Any:
        from ._useq import validate_sequence

        return validate_sequence(value)

    @model_validator(mode="before")
    @classmethod
    def _sections(cls, data: Any) -> Any:
        """Validate absent sections too, so their defaults see the run file's folder."""
        if isinstance(data, Mapping):
            data = dict(data)
            mic = data.get("microscope")
            engine = mic.get("engine") if isinstance(mic, Mapping) else None
            if engine == "pymmcore-plus" and data.get("acquisition"):
                msg = "engine 'pymmcore-plus' runs the 'sequence' section, not 'acquisition'"
                raise _error(msg, "acquisition")
            if engine != "pymmcore-plus" and data.get("sequence") is not None:
                msg = "a 'sequence' is run by pymmcore-plus: set microscope.engine: pymmcore-plus"
                raise _error(msg, "sequence")
            for section in ("microscope", "acquisition", "output"):
                if data.get(section) is None:
                    data[section] = {}
        return data

    @model_validator(mode="after")
    def _check_sections(self) -> RunConfig:
        channels = self.acquisition.channels
        if self.sequence is not None:
            channels = [str(ch.config) for ch in self.sequence.channels]
        n = len(channels) if channels else 1
        colors = self.output.colors
        if colors is not None and len(colors) != n:
            what = f"{n} channels" if channels else "1 channel (no channels are acquired)"
            msg = f"colors has {len(colors)} colors for {what}; give one color per channel"
            raise _error(msg, "output.colors")
        return self


# -- loading ----------------------------------------------------------------------------------

#: Keys people write from habit (tiffwrite, pycro-manager), and what they mean here.
_HINTS = {
    **{old: new for old, new in TIFFWRITE_NAMES.items() if old != "overwrite"},
    "overwrite": "if_exists: overwrite",
    "z_start": "z_start_um",
    "z_end": "z_end_um",
    "z_step": "z_step_um",
    "xy_positions": "positions",
    "xyz_positions": "positions",
    "position_labels": "positions",
}


def load_config(path: str | os.PathLike[str]) -> RunConfig:
    """Read and validate a YAML run file.

    Relative paths in the file (``output.directory``, ``microscope.path``) are resolved against
    the folder of the YAML file, not the current directory.

    Parameters
    ----------
    path
        The YAML file.

    Returns
    -------
    RunConfig
        The validated, frozen configuration.

    Raises
    ------
    ConfigError
        The file is missing, is not YAML, or has problems: the message names the file and, for
        every problem, its line and key path (unknown or duplicate keys, wrong types, absurd
        values such as a negative z step or zero time points).

    """
    from ._useq import sequence_errors

    problems = _sequence_problems(Path(path), sequence_errors)
    if problems:
        listing = "\n".join(f"  {problem}" for problem in problems[:MAX_PROBLEMS_SHOWN])
        if len(problems) > MAX_PROBLEMS_SHOWN:
            listing += f"\n  ... and {len(problems) - MAX_PROBLEMS_SHOWN} more"
        count = "1 problem" if len(problems) == 1 else f"{len(problems)} problems"
        msg = f"run file {path} is invalid ({count}):\n{listing}"
        raise ConfigError(msg)
    return load_model(
        path,
        RunConfig,
        what="run file",
        contents="the sections microscope, acquisition (or sequence) and output",
        hints=_HINTS,
    )


def _sequence_problems(path: Path, sequence_errors: Any) -> list[str]:
    """Every problem of a file whose ``sequence`` has problems (else none: load_model checks).

    useq ignores unknown keys, so the sequence is checked key by key here, and the rest of the
    file validated without it, to list every problem at once.
    """
    try:
        with path.open("rb") as file:
            text = read_yaml(file.read(MAX_BYTES + 1))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []  # load_model says why
    value = text.value
    if not isinstance(value, dict) or value.get("sequence") is None:
        return []
    errors = sequence_errors(value["sequence"])
    if not errors:
        return []
    rest = {**value, "sequence": None}
    mic = rest.get("microscope")
    if isinstance(mic, Mapping) and mic.get("engine") == "pymmcore-plus":
        rest.pop("sequence")
    try:
        RunConfig.model_validate(rest, context={BASE_DIR: path.parent.absolute()})
    except ValidationError as exc:
        errors = [*exc.errors(include_url=False), *errors]
    return describe_errors(errors, text, RunConfig, _HINTS)
