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

import difflib
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from mmtiffsink.errors import ConfigError

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
_BASE_DIR = "base_dir"


def _error(message: str, key: str | None = None) -> PydanticCustomError:
    """A validation error; ``key`` (dotted, relative to the model) says which key it is about."""
    context: dict[str, Any] = {"message": message}
    if key is not None:
        context["key"] = key
    return PydanticCustomError("config", "{message}", context)


def _scalar_text(value: Any) -> Any:
    """Accept numbers where Micro-Manager wants text (``Binning: 2``); refuse YAML booleans."""
    if isinstance(value, bool):
        word = "true/yes/on" if value else "false/no/off"
        msg = f"YAML reads an unquoted {word} as a boolean; quote the value, e.g. 'No'"
        raise _error(msg)
    if isinstance(value, (int, float)):
        return str(value)
    return value


#: Text that may be written as a number in YAML (preset names, property values, labels).
Text = Annotated[StrictStr, BeforeValidator(_scalar_text), Field(min_length=1)]
PositiveFloat = Annotated[StrictFloat, Field(gt=0, allow_inf_nan=False)]
FiniteFloat = Annotated[StrictFloat, Field(allow_inf_nan=False)]


def _check_color(value: str) -> str:
    from mmtiffsink.tiff._colors import parse_color

    try:
        parse_color(value)
    except ValueError as exc:
        raise _error(str(exc)) from None
    return value


#: A channel color: a CSS name (``magenta``) or ``#rrggbb``.
Color = Annotated[StrictStr, AfterValidator(_check_color)]


def _resolve(path: Path, info: ValidationInfo) -> Path:
    """``path`` made absolute: relative to the run file's folder (or the cwd without one)."""
    path = path.expanduser()
    if path.is_absolute():
        return path
    context = info.context if isinstance(info.context, Mapping) else {}
    base = Path(context.get(_BASE_DIR) or Path.cwd())
    return (base / path).absolute()


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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

    """

    kind: Literal["demo", "micromanager", "java"] = "demo"
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
        return None if value is None else _resolve(value, info)

    @model_validator(mode="after")
    def _check_kind(self) -> MicroscopeConfig:
        given = self.model_fields_set
        allowed = {
            "demo": set(),
            "micromanager": {"path", "config"},
            "java": {"port"},
        }[self.kind]
        for key in ("path", "config", "port"):
            if key in given and key not in allowed:
                msg = f"'{key}' is not used with kind '{self.kind}'"
                if key in ("path", "config"):
                    msg += " (only with kind 'micromanager')"
                else:
                    msg += " (only with kind 'java')"
                raise _error(msg, key)
        if self.kind == "java" and "buffer_size_mb" in given:
            msg = "'buffer_size_mb' is set in the running Micro-Manager, not here (kind 'java')"
            raise _error(msg, "buffer_size_mb")
        if self.kind == "micromanager":
            self._check_installation()
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
        per position.
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
            if self.num_z_slices > MAX_Z_SLICES:
                msg = (
                    f"the z range {self.z_start_um}..{self.z_end_um} um in steps of "
                    f"{self.z_step_um} um makes {self.num_z_slices} slices (more than "
                    f"{MAX_Z_SLICES}); check z_step_um"
                )
                raise _error(msg, "z_step_um")
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

    def event_arguments(self) -> dict[str, Any]:
        """The keyword arguments of ``pycromanager.multi_d_acquisition_events``."""
        kwargs: dict[str, Any] = {"order": self.order}
        if self.num_time_points is not None:
            kwargs["num_time_points"] = self.num_time_points
            kwargs["time_interval_s"] = self.time_interval_s
        if self.z_step_um is not None:
            kwargs.update(z_start=self.z_start_um, z_end=self.z_end_um, z_step=self.z_step_um)
        if self.channels is not None:
            kwargs["channel_group"] = self.channel_group
            kwargs["channels"] = list(self.channels)
            if self.channel_exposures_ms is not None:
                kwargs["channel_exposures_ms"] = list(self.channel_exposures_ms)
        if self.positions:
            if self.positions[0].z_um is not None:
                kwargs["xyz_positions"] = [[p.x_um, p.y_um, p.z_um] for p in self.positions]
            else:
                kwargs["xy_positions"] = [[p.x_um, p.y_um] for p in self.positions]
            kwargs["position_labels"] = self.position_labels
        return kwargs


class OutputConfig(_Model):
    """Where and how the hyperstacks are written (one file per position).

    Parameters
    ----------
    directory
        Output folder, created if missing. Relative: to the run file's folder.
    name
        Dataset name: the ``{name}`` of ``template`` and the pycro-manager acquisition's name.
    template
        File name template: ``{name}`` and axis fields such as ``{position}``; a field the
        acquisition lacks is dropped with its separator.
    profile
        ``bigtiff`` (default; Fiji/Bio-Formats, tifffile, napari) or ``imagej`` (classic TIFF,
        also plain ImageJ 1.x, at most 4 GiB).
    compression
        ``zstd``, ``deflate``, ``none``, or with a level ``zstd:9``; default: the profile's
        (zstd level 3 for bigtiff, deflate level 1 for imagej).
    colors
        One color per channel (CSS name such as ``magenta`` or ``#rrggbb``).
    colormap
        One colorcet colormap for all channels instead (e.g. ``glasbey``).
    if_exists
        When an output file exists: ``error`` (default; nothing is acquired), ``overwrite``,
        or ``rename`` (``name_1``, ``name_2``, ... as Micro-Manager does).
    pixel_size_um, z_step_um, interval_s
        Calibration that wins over the metadata (default: from the microscope's metadata).

    """

    directory: Path = Field(default=Path("."), validate_default=True)
    name: Annotated[StrictStr, Field(min_length=1)] = "acq"
    template: StrictStr = "{name}_{position}.tif"
    profile: Literal["bigtiff", "imagej"] = "bigtiff"
    compression: Text | None = None
    colors: list[Color] | None = None
    colormap: Annotated[StrictStr, Field(min_length=1)] | None = None
    if_exists: Literal["error", "overwrite", "rename"] = "error"
    pixel_size_um: PositiveFloat | None = None
    z_step_um: PositiveFloat | None = None
    interval_s: PositiveFloat | None = None

    @field_validator("directory")
    @classmethod
    def _resolve_directory(cls, value: Path, info: ValidationInfo) -> Path:
        return _resolve(value, info)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if any(ch in value for ch in "/\\") or value in (".", ".."):
            raise _error(f"name is a file name part, not a path; got {value!r}")
        return value

    @field_validator("template")
    @classmethod
    def _check_template(cls, value: str) -> str:
        from mmtiffsink.mapping import file_name

        try:
            sample = file_name(value, "name", (("position", 0),))
        except (ValueError, IndexError, KeyError) as exc:
            raise _error(f"bad template {value!r}: {exc}") from None
        if "/" in sample or "\\" in sample:
            raise _error(f"template makes file names, not paths; got {value!r}")
        if not sample.lower().endswith((".tif", ".tiff")):
            raise _error(f"template must end with .tif or .tiff, got {value!r}")
        return value

    @field_validator("compression")
    @classmethod
    def _check_compression(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from mmtiffsink.tiff import parse_compression

        try:
            parse_compression(_compression_argument(value))
        except ValueError as exc:
            msg = f"{exc} (write zstd, deflate, none, or with a level such as zstd:9)"
            raise _error(msg) from None
        return value

    @field_validator("colormap")
    @classmethod
    def _check_colormap(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from mmtiffsink.tiff._colors import colormap_lut

        try:
            colormap_lut(value)
        except ValueError as exc:
            raise _error(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _check_profile(self) -> OutputConfig:
        if self.colors is not None and self.colormap is not None:
            raise _error("give colors or colormap, not both", "colormap")
        if self.profile == "imagej" and self.compression is not None:
            from mmtiffsink.tiff import parse_compression

            parsed = parse_compression(self.codec()).name
            if parsed == "zstd":
                msg = (
                    "the imagej profile cannot use zstd (ImageJ 1.x cannot read it); use "
                    "deflate, or profile bigtiff"
                )
                raise _error(msg, "compression")
            if parsed == "none":
                msg = (
                    "uncompressed imagej files need their size up front, which a run does not "
                    "give; use deflate (the imagej default), or profile bigtiff"
                )
                raise _error(msg, "compression")
        return self

    def codec(self) -> Any:
        """The writer's ``compression`` argument: ``"zstd"``, ``("zstd", 9)``, None (none).

        Returns the string ``"default"`` when the profile's default is meant.
        """
        if self.compression is None:
            return "default"
        return _compression_argument(self.compression)


def _compression_argument(text: str) -> Any:
    """``zstd`` -> "zstd"; ``zstd:9`` -> ("zstd", 9); ``none`` -> None."""
    name, sep, level = text.partition(":")
    if name.strip().lower() in ("none", "raw"):
        return None
    if sep:
        try:
            return (name.strip(), int(level))
        except ValueError:
            msg = f"the level after ':' must be an integer, got {text!r}"
            raise ValueError(msg) from None
    return name.strip()


class RunConfig(_Model):
    """A run file: ``microscope``, ``acquisition`` and ``output`` sections.

    Build it with :func:`load_config` (which resolves relative paths against the file's folder
    and reports line numbers), or ``RunConfig.model_validate(data)`` (relative to the cwd).
    """

    microscope: MicroscopeConfig = Field(default_factory=MicroscopeConfig)
    acquisition: AcquisitionConfig = Field(default_factory=AcquisitionConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)

    @model_validator(mode="before")
    @classmethod
    def _sections(cls, data: Any) -> Any:
        """Validate absent sections too, so their defaults see the run file's folder."""
        if isinstance(data, Mapping):
            data = dict(data)
            for section in ("microscope", "acquisition", "output"):
                if data.get(section) is None:
                    data[section] = {}
        return data

    @model_validator(mode="after")
    def _check_sections(self) -> RunConfig:
        channels = self.acquisition.channels
        n = len(channels) if channels else 1
        colors = self.output.colors
        if colors is not None and len(colors) != n:
            what = f"{n} channels" if channels else "1 channel (no channels are acquired)"
            msg = f"colors has {len(colors)} colors for {what}; give one color per channel"
            raise _error(msg, "output.colors")
        return self


# -- loading ----------------------------------------------------------------------------------

Loc = tuple[str | int, ...]
#: Keys people write from habit (tiffwrite, pycro-manager), and what they mean here.
_HINTS = {
    "overwrite": "if_exists: overwrite",
    "pxsize": "pixel_size_um",
    "deltaz": "z_step_um",
    "timeinterval": "interval_s",
    "z_start": "z_start_um",
    "z_end": "z_end_um",
    "z_step": "z_step_um",
    "xy_positions": "positions",
    "xyz_positions": "positions",
    "position_labels": "positions",
}


def _lines(node: yaml.Node, loc: Loc, lines: dict[Loc, int], problems: list[str]) -> None:
    """Record the line of every key and list item under ``node``; note duplicate keys."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                problems.append(f"line {line}: {_dotted((*loc, key))}: duplicate key")
            seen.add(key)
            lines.setdefault((*loc, key), line)
            _lines(value_node, (*loc, key), lines, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            item_loc: Loc = (*loc, index)
            lines[item_loc] = item.start_mark.line + 1
            _lines(item, item_loc, lines, problems)


def _dotted(loc: Loc) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``loc`` (None if not a model)."""
    model: Any = RunConfig
    for part in loc:
        if isinstance(part, int):
            continue
        if not isinstance(model, type) or not issubclass(model, BaseModel):
            return None
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        model = _inner_model(field.annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _inner_model(annotation: Any) -> Any:
    """The BaseModel inside ``X``, ``list[X]`` or ``X | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _describe(error: Mapping[str, Any], lines: Mapping[Loc, int]) -> tuple[int, str]:
    """``(line, "line N: key.path: message")`` for one pydantic error."""
    loc: Loc = tuple(error["loc"])
    context = error.get("ctx") or {}
    key = context.get("key")
    if key:
        loc = (*loc, *str(key).split("."))
    # drop parts that are not in the file (pydantic's union/tag names), except a final key
    kept: list[str | int] = []
    for i, part in enumerate(loc):
        candidate = (*kept, part)
        if candidate in lines or i == len(loc) - 1:
            kept.append(part)
    loc = tuple(kept)
    line = 0
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            line = lines[loc[:end]]
            break
    kind = error["type"]
    if kind == "extra_forbidden":
        message = "unknown key"
        model = _model_at(loc[:-1])
        if model is not None:
            names = list(model.model_fields)
            close = difflib.get_close_matches(str(loc[-1]), names, n=1, cutoff=0.6)
            hint = _HINTS.get(str(loc[-1]))
            if hint is not None and hint.split(":")[0] in names:
                message += f"; did you mean '{hint}'?"
            elif close:
                message += f"; did you mean '{close[0]}'?"
            else:
                message += f" (allowed: {', '.join(names)})"
    elif kind == "missing":
        message = "required key is missing"
    elif kind == "config":
        message = str(context.get("message", error["msg"]))
    else:
        message = str(error["msg"])
        if "input" in error and kind not in ("missing",):
            value = error["input"]
            if not isinstance(value, (dict, list)):
                message += f" (got {value!r})"
    where = f"line {line}: " if line else ""
    return line, f"{where}{_dotted(loc)}: {message}"


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
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        msg = f"run file {path} does not exist"
        raise ConfigError(msg) from None
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"cannot read run file {path}: {exc}"
        raise ConfigError(msg) from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f", line {mark.line + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "not valid YAML"
        msg = f"run file {path} is not valid YAML{where}: {problem}"
        raise ConfigError(msg) from None
    except yaml.YAMLError as exc:
        msg = f"run file {path} is not valid YAML: {exc}"
        raise ConfigError(msg) from None
    finally:
        loader.dispose()
    if data is None:
        data = {}
    if not isinstance(data, dict):
        msg = (
            f"run file {path} must be a mapping with the sections microscope, acquisition "
            f"and output; it holds a {type(data).__name__}"
        )
        raise ConfigError(msg)
    lines: dict[Loc, int] = {}
    problems: list[str] = []
    if node is not None:
        _lines(node, (), lines, problems)
    config: RunConfig | None = None
    try:
        config = RunConfig.model_validate(data, context={_BASE_DIR: path.parent.absolute()})
    except ValidationError as exc:
        described = [_describe(error, lines) for error in exc.errors(include_url=False)]
        problems += [text for _, text in sorted(described, key=lambda item: item[0])]
    if problems or config is None:
        listing = "\n".join(f"  {problem}" for problem in problems)
        count = "1 problem" if len(problems) == 1 else f"{len(problems)} problems"
        msg = f"run file {path} is invalid ({count}):\n{listing}"
        raise ConfigError(msg)
    return config
