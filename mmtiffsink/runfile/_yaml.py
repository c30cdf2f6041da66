"""YAML files into pydantic models: bounded reading, and problems located by line.

A YAML document is a program of sorts: a few hundred bytes of nested anchors and aliases
 ("billion laughs") expand to 10**9 values, ``&a [*a]`` is a structure that contains itself, and
``1:2:3:...`` or a 5,000-digit integer makes Python compute for a long time or raise an error that
is not a YAML one. :func:`read_yaml` bounds every dimension of the work before doing it: the
bytes read, the values after expanding aliases, the nesting depth and the characters of a
number. Every refusal is a :class:`YAMLLimitError` with the line where the limit was crossed;
every other problem is a :class:`yaml.MarkedYAMLError` (or a ``yaml.YAMLError``) as PyYAML makes
them, including the errors of the value constructors (a 13th month, ``!!int abc``).

The document is parsed by libyaml when PyYAML has it (composed here, in Python, so that the
limits hold while composing) and by PyYAML's pure-Python parser otherwise.

:func:`describe_errors` turns a pydantic ``ValidationError`` of the value into lines such as
``line 14: acquisition.z_stpe_um: unknown key; did you mean 'z_step_um'?``.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictStr,
    ValidationError,
    ValidationInfo,
)
from pydantic_core import PydanticCustomError
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import AliasEvent, Event
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from mmtiffsink._text import check_text
from mmtiffsink.errors import ConfigError

__all__ = [
    "BASE_DIR",
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_NODES",
    "MAX_NUMBER_CHARS",
    "MAX_PROBLEMS_SHOWN",
    "FileModel",
    "FiniteFloat",
    "Loc",
    "PositiveFloat",
    "Text",
    "YAMLLimitError",
    "YAMLText",
    "describe_errors",
    "dotted",
    "load_model",
    "located_error",
    "read_yaml",
    "resolve_path",
    "yaml_problem",
]

#: Bytes of a document (run files are a few kB; a list of 10,000 stage positions is ~400 kB).
MAX_BYTES: Final = 1 << 20
#: Values (scalars, lists and mappings) of a document once every alias is expanded.
MAX_NODES: Final = 50_000
#: Nesting depth of a document once every alias is expanded (a run file needs 5).
MAX_DEPTH: Final = 20
#: Characters of one number (digits, sign, point, exponent, underscores).
MAX_NUMBER_CHARS: Final = 64

#: Problems listed in a :class:`~mmtiffsink.errors.ConfigError` (then "... and N more").
MAX_PROBLEMS_SHOWN: Final = 20
#: The validation context key of the folder that relative paths are relative to.
BASE_DIR: Final = "base_dir"
M = TypeVar("M", bound=BaseModel)
#: A key path in a document: mapping keys (as text) and list indices.
Loc = tuple[str | int, ...]
_NUMBER_TAGS = frozenset({"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"})


class YAMLLimitError(yaml.MarkedYAMLError):
    """The document is too large, too deep, expands to too much, or has an absurd number."""


class _PythonEvents(Reader, Scanner, Parser):
    """PyYAML's pure-Python event parser, when libyaml is missing."""

    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)


def _event_parser(text: str) -> Any:
    try:
        from yaml._yaml import CParser
    except ImportError:  # PyYAML built without libyaml
        return _PythonEvents(text)
    return CParser(text)


class _BoundedLoader(Composer, SafeConstructor, Resolver):
    """``yaml.SafeLoader`` whose composer counts, measures and refuses as it goes."""

    def __init__(self, text: str) -> None:
        self._events = _event_parser(text)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self._depth = 0
        self._expanded = 0
        self._open: set[str] = set()
        #: (expanded size, expanded height) of each composed node, by id
        self._measures: dict[int, tuple[int, int]] = {}

    # the event stream, from the parser
    def check_event(self, *choices: type[Event]) -> bool:
        return bool(self._events.check_event(*choices))

    def peek_event(self) -> Event:
        return self._events.peek_event()  # type: ignore[no-any-return]

    def get_event(self) -> Event:
        return self._events.get_event()  # type: ignore[no-any-return]

    def dispose(self) -> None:
        self._events.dispose()

    def _grow(self, size: int, height: int, mark: Any) -> None:
        self._expanded += size
        if self._expanded > MAX_NODES:
            problem = f"the document expands to more than {MAX_NODES} values (aliases of aliases?)"
            raise YAMLLimitError(None, None, problem, mark)
        if self._depth + height > MAX_DEPTH:
            problem = f"the document is nested more than {MAX_DEPTH} levels deep"
            raise YAMLLimitError(None, None, problem, mark)

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            named = self.anchors.get(event.anchor) if event.anchor is not None else None
            if named is not None:  # an undefined alias is PyYAML's error, below
                if event.anchor in self._open:
                    problem = f"the alias *{event.anchor} is inside the value it names"
                    mark: Any = event.start_mark
                    raise YAMLLimitError(None, None, problem, mark)
                self._grow(*self._measures[id(named)], event.start_mark)
            return super().compose_node(parent, index)
        self._grow(1, 1, event.start_mark)
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            self._open.add(anchor)
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._open.discard(anchor or "")
        if node is not None:
            self._measure(node)
        return node

    def _measure(self, node: Node) -> None:
        children: list[Node] = []
        if isinstance(node, SequenceNode):
            children = list(node.value)
        elif isinstance(node, MappingNode):
            children = [item for pair in node.value for item in pair]
        elif (
            isinstance(node, ScalarNode)
            and node.tag in _NUMBER_TAGS
            and len(node.value) > MAX_NUMBER_CHARS
        ):
            problem = f"a number of {len(node.value)} characters (at most {MAX_NUMBER_CHARS})"
            raise YAMLLimitError(None, None, problem, node.start_mark)
        measures = [self._measures[id(child)] for child in children]
        self._measures[id(node)] = (
            1 + sum(size for size, _ in measures),
            1 + max((height for _, height in measures), default=0),
        )

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, OverflowError) as exc:  # e.g. a 13th month, !!int abc
            problem = f"cannot read this value: {exc}"
            raise ConstructorError(None, None, problem, node.start_mark) from None


@dataclass(frozen=True)
class YAMLText:
    """A parsed document: its value, and where each key and list item is.

    Parameters
    ----------
    value
        The constructed Python value (None for an empty document).
    lines
        The 1-based line of every mapping key and list item, by key path (the first occurrence
        of a duplicate key).
    duplicates
        ``(line, key path)`` of every key repeated within its mapping.

    """

    value: Any
    lines: dict[Loc, int]
    duplicates: list[tuple[int, Loc]]


def _walk(node: Node, loc: Loc, text: YAMLText) -> None:
    """Record the line of every key and list item under ``node``; note duplicate keys."""
    if isinstance(node, MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, ScalarNode) else "?"
            line = key_node.start_mark.line + 1
            if key in seen:
                text.duplicates.append((line, (*loc, key)))
            seen.add(key)
            text.lines.setdefault((*loc, key), line)
            _walk(value_node, (*loc, key), text)
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            item_loc: Loc = (*loc, index)
            text.lines[item_loc] = item.start_mark.line + 1
            _walk(item, item_loc, text)


def located_error(message: str, key: str | None = None) -> PydanticCustomError:
    """A validation error that :func:`describe_errors` shows as is.

    ``key`` (dotted, relative to the model that raises it) says which key it is about, so a
    model validator can point at one of its fields.
    """
    context: dict[str, Any] = {"message": message}
    if key is not None:
        context["key"] = key
    return PydanticCustomError("config", "{message}", context)


def _scalar_text(value: Any) -> Any:
    """Accept numbers where Micro-Manager wants text (``Binning: 2``); refuse YAML booleans."""
    if isinstance(value, bool):
        word = "true/yes/on" if value else "false/no/off"
        msg = f"YAML reads an unquoted {word} as a boolean; quote the value, e.g. 'No'"
        raise located_error(msg)
    if isinstance(value, (int, float)):
        return str(value)
    return value


def _file_text(value: str) -> str:
    """Text a file can hold (:func:`mmtiffsink._text.check_text`): it may end up in one."""
    try:
        return check_text("the text", value)
    except ConfigError as exc:
        raise located_error(str(exc)) from None


#: Text that may be written as a number in YAML (names, labels, values), and that any file
#: can hold (no NUL, control characters but tab and newlines, U+FFFE/U+FFFF, lone surrogates).
Text = Annotated[
    StrictStr, BeforeValidator(_scalar_text), Field(min_length=1), AfterValidator(_file_text)
]
PositiveFloat = Annotated[StrictFloat, Field(gt=0, allow_inf_nan=False)]
FiniteFloat = Annotated[StrictFloat, Field(allow_inf_nan=False)]


def resolve_path(path: Path, info: ValidationInfo) -> Path:
    """``path`` made absolute: relative to the file's folder (:data:`BASE_DIR`), else the cwd."""
    try:
        path = path.expanduser()
    except RuntimeError as exc:  # ~user that does not exist
        raise located_error(str(exc)) from None
    if path.is_absolute():
        return path
    context = info.context if isinstance(info.context, Mapping) else {}
    base = Path(context.get(BASE_DIR) or Path.cwd())
    return (base / path).absolute()


class FileModel(BaseModel):
    """Base of the models read from files: frozen, and an unknown key is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def read_yaml(data: bytes) -> YAMLText:
    """Parse one small YAML document within the limits of this module.

    Parameters
    ----------
    data
        The document's bytes (UTF-8); at most :data:`MAX_BYTES`.

    Returns
    -------
    YAMLText
        The value and the line of every key, as written (before merge keys ``<<`` are applied).

    Raises
    ------
    YAMLLimitError
        A limit was crossed; its ``problem_mark`` is where.
    UnicodeDecodeError
        The bytes are not UTF-8.
    yaml.YAMLError
        The document is not valid YAML, or a value cannot be constructed.

    """
    if len(data) > MAX_BYTES:
        line = data[:MAX_BYTES].count(b"\n") + 1
        mark = yaml.Mark("<document>", MAX_BYTES, line - 1, 0, "", 0)
        problem = f"the document is larger than {MAX_BYTES} bytes"
        raise YAMLLimitError(None, None, problem, mark)
    loader = _BoundedLoader(data.decode("utf-8"))
    try:
        node = loader.get_single_node()
        text = YAMLText(None, {}, [])
        if node is not None:
            _walk(node, (), text)  # before construction: merge keys rewrite the nodes
            text = YAMLText(loader.construct_document(node), text.lines, text.duplicates)
    finally:
        loader.dispose()
    return text


def dotted(loc: Loc) -> str:
    """``("acquisition", "positions", 0, "x_um")`` -> ``acquisition.positions[0].x_um``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def _model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``loc`` (None if not a model)."""
    model: Any = root
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


def _describe(
    error: Mapping[str, Any], text: YAMLText, root: type[BaseModel], hints: Mapping[str, str]
) -> tuple[int, str]:
    """``(line, "line N: key.path: message")`` for one pydantic error."""
    lines = text.lines
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
        model = _model_at(root, loc[:-1])
        if model is not None:
            names = list(model.model_fields)
            close = difflib.get_close_matches(str(loc[-1]), names, n=1, cutoff=0.6)
            hint = hints.get(str(loc[-1]))
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
                shown = repr(value)
                message += f" (got {shown if len(shown) <= 60 else shown[:57] + '...'})"
    where = f"line {line}: " if line else ""
    return line, f"{where}{dotted(loc)}: {message}"


def describe_errors(
    errors: Sequence[Mapping[str, Any]],
    text: YAMLText,
    root: type[BaseModel],
    hints: Mapping[str, str] | None = None,
) -> list[str]:
    """The problems of a document, in line order: duplicate keys, then ``errors``.

    Parameters
    ----------
    errors
        ``ValidationError.errors()`` of validating ``text.value`` with ``root``. An error whose
        context has a ``message`` (pydantic's custom error type ``config``) shows that message,
        and its ``key`` (dotted, relative to the error's location) is added to the path.
    text
        The document, for the lines.
    root
        The model that validated it (its fields suggest the key meant by an unknown one).
    hints
        Unknown keys people write from habit, and what to write instead.

    Returns
    -------
    list of str
        ``line N: key.path: message`` for each problem.

    """
    problems = [
        (line, f"line {line}: {dotted(loc)}: duplicate key") for line, loc in text.duplicates
    ]
    problems += [_describe(error, text, root, hints or {}) for error in errors]
    return [message for _, message in sorted(problems, key=lambda item: item[0])]


def yaml_problem(exc: yaml.YAMLError, data: bytes) -> str:
    """Why :func:`read_yaml` refused ``data``, in one line: ``is refused, line 3: ...``."""
    what = "is refused" if isinstance(exc, YAMLLimitError) else "is not valid YAML"
    line: int | None = None
    problem = str(exc)
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = None if mark is None else mark.line + 1
        problem = exc.problem or exc.context or "not valid YAML"
    elif isinstance(exc, yaml.reader.ReaderError):  # a control character, e.g. NUL
        if exc.encoding == "?":  # libyaml: a byte offset
            line = data[: exc.position].count(b"\n") + 1
        else:
            line = data.decode("utf-8", "replace")[: exc.position].count("\n") + 1
        problem = f"{exc.reason} (character {exc.character!r})"
    where = f", line {line}" if line is not None else ""
    return f"{what}{where}: {' '.join(problem.split())}"


def load_model(
    path: str | os.PathLike[str],
    model: type[M],
    *,
    what: str,
    contents: str,
    hints: Mapping[str, str] | None = None,
) -> M:
    """Read a YAML file and validate it with ``model``, reporting every problem by line.

    Parameters
    ----------
    path
        The file. Relative paths inside it (fields using :func:`resolve_path`) are relative to
        its folder.
    model
        The model of the whole document (a mapping).
    what, contents
        What the file is (``"run file"``) and what its mapping holds, for the messages.
    hints
        Unknown keys people write from habit, and what to write instead.

    Returns
    -------
    model
        The validated value.

    Raises
    ------
    ConfigError
        The file is missing or unreadable, too large or too complex (:func:`read_yaml`), not
        YAML, not a mapping, or invalid: one line naming the file, or ``is invalid (N
        problems):`` followed by a line per problem (the first :data:`MAX_PROBLEMS_SHOWN`).

    """
    path = Path(path)
    data = b""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_BYTES + 1)  # bounded: a device or a huge file too
        text = read_yaml(data)
    except FileNotFoundError:
        msg = f"{what} {path} does not exist"
        raise ConfigError(msg) from None
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"cannot read {what} {path}: {exc}"
        raise ConfigError(msg) from None
    except yaml.YAMLError as exc:
        msg = f"{what} {path} {yaml_problem(exc, data)}"
        raise ConfigError(msg) from None
    value = {} if text.value is None else text.value
    if not isinstance(value, dict):
        msg = f"{what} {path} must be a mapping with {contents}; it holds a {type(value).__name__}"
        raise ConfigError(msg)
    errors: list[Any] = []
    try:
        result = model.model_validate(value, context={BASE_DIR: path.parent.absolute()})
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    problems = describe_errors(errors, text, model, hints)
    if problems:
        listing = "\n".join(f"  {problem}" for problem in problems[:MAX_PROBLEMS_SHOWN])
        if len(problems) > MAX_PROBLEMS_SHOWN:
            listing += f"\n  ... and {len(problems) - MAX_PROBLEMS_SHOWN} more"
        count = "1 problem" if len(problems) == 1 else f"{len(problems)} problems"
        msg = f"{what} {path} is invalid ({count}):\n{listing}"
        raise ConfigError(msg)
    return result
