"""The ``sequence:`` section of a run file: a useq-schema ``MDASequence``, checked strictly.

useq's models ignore unknown keys (``extra="ignore"``), so ``z_plan: {range: 4, stpe: 1}`` would
be read as a z plan without a step, and useq's own error then lists every z-plan class but names
no typo. Here every key is checked against the fields of the useq models it can belong to first;
an unknown key is a problem located by line and key (``line 6: sequence.z_plan.stpe: unknown
key; did you mean 'step'?``), and useq's errors inside that mapping (its consequences) are left
out. useq itself (an optional dependency) is imported only when a run file has a sequence.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from ._yaml import Loc, located_error

__all__ = ["USEQ_HINT", "sequence_errors", "validate_sequence"]

#: How to get what a ``sequence`` needs.
USEQ_HINT = "install the pymmcore-plus extra: pip install 'mmtiffsink[pymmcore-plus]'"


def _sequence_model() -> type[BaseModel]:
    try:
        from useq import MDASequence
    except ImportError as exc:
        msg = f"a sequence needs useq-schema ({exc}); {USEQ_HINT}"
        raise located_error(msg) from None
    return MDASequence


def validate_sequence(value: Any) -> Any:
    """The ``MDASequence`` of a ``sequence`` section (a pydantic error for the first problem).

    :func:`mmtiffsink.runfile.load_config` reports every problem with :func:`sequence_errors`
    first; this is the check of ``RunConfig.model_validate``.
    """
    if value is None:
        return None
    model = _sequence_model()
    if isinstance(value, model):
        return value
    if not isinstance(value, Mapping):
        raise located_error(f"sequence is a mapping (useq's MDASequence), got {value!r}")
    for loc, message in _unknown_keys(value, [model], ()):
        where = ".".join(str(part) for part in loc)
        raise located_error(f"{where}: {message}")
    try:
        return model.model_validate(dict(value))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        raise located_error(f"{where}: {first['msg']}") from None


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models inside an annotation (``X | None``, ``tuple[X, ...]``, ...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    origin = typing.get_origin(annotation)
    if origin in (dict, Mapping) or annotation is Any:
        return []
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        args = args[:1]
    for arg in args:
        if arg is not Ellipsis and not isinstance(arg, (str, int, types.NoneType)):
            found.extend(m for m in _models(arg) if m not in found)
    return found


def _names(model: type[BaseModel]) -> set[str]:
    names: set[str] = set()
    for name, field in model.model_fields.items():
        names.add(name)
        for alias in (field.alias, field.validation_alias):
            if isinstance(alias, str):
                names.add(alias)
    return names


def _unknown_keys(
    value: Any, models: list[type[BaseModel]], loc: Loc
) -> list[tuple[Loc, str]]:
    """``(key path, message)`` of every key no candidate model has, depth first."""
    if not models:
        return []
    if isinstance(value, (list, tuple)):
        return [p for i, item in enumerate(value) for p in _unknown_keys(item, models, (*loc, i))]
    if not isinstance(value, Mapping):
        return []  # shorthand (a channel name, [x, y, z]): useq's validators read it
    keys = [str(key) for key in value]
    named = [(model, _names(model)) for model in models]
    fitting = [(m, n) for m, n in named if set(keys) <= n]
    best = fitting or sorted(named, key=lambda mn: -len(set(keys) & mn[1]))[:1]
    known = set().union(*(n for _, n in best)) if fitting else set().union(*(n for _, n in named))
    problems: list[tuple[Loc, str]] = []
    for key, sub in value.items():
        key = str(key)
        if key not in known:
            choices = sorted(best[0][1])
            close = difflib.get_close_matches(key, choices, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else f" (allowed: {', '.join(choices)})"
            problems.append(((*loc, key), f"unknown key{hint}"))
            continue
        inner: list[type[BaseModel]] = []
        for model, names in best:
            field = model.model_fields.get(key)
            if field is None:
                aliased = model.model_fields.values()
                field = next((f for f in aliased if key in (f.alias, f.validation_alias)), None)
            if field is not None and key in names:
                inner.extend(m for m in _models(field.annotation) if m not in inner)
        problems.extend(_unknown_keys(sub, inner, (*loc, key)))
    return problems


def sequence_errors(value: Any, loc: Loc = ("sequence",)) -> list[dict[str, Any]]:
    """Every problem of a ``sequence`` section, as pydantic-style error dicts at ``loc``.

    Unknown keys first (type ``config``, message ``unknown key; did you mean ...``), then
    useq's validation errors outside the mappings that hold an unknown key.
    """
    if value is None:
        return []
    try:
        model = _sequence_model()
    except Exception as exc:
        return [{"type": "config", "loc": loc, "msg": str(exc), "ctx": {"message": str(exc)}}]
    if not isinstance(value, Mapping):
        msg = f"sequence is a mapping (useq's MDASequence), got a {type(value).__name__}"
        return [{"type": "config", "loc": loc, "msg": msg, "ctx": {"message": msg}}]
    unknown = _unknown_keys(value, [model], ())
    errors: list[dict[str, Any]] = [
        {"type": "config", "loc": (*loc, *where), "msg": msg, "ctx": {"message": msg}}
        for where, msg in unknown
    ]
    damaged = {where[:-1] for where, _ in unknown if len(where) > 1}
    try:
        model.model_validate(dict(value))
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            where = tuple(error["loc"])
            plain = tuple(p for p in where if not (isinstance(p, str) and p[:1].isupper()))
            if any(plain[: len(d)] == d for d in damaged):
                continue
            errors.append({**error, "loc": (*loc, *where)})
    return errors
