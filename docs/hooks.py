"""mkdocs hooks: the reference pages generated from the code, so they cannot go stale.

A page holds a placeholder comment that the build replaces:

- ``<!-- generated:cli -->``: the help of ``mmtiffsink`` and of every subcommand, from the
  argument parser the command itself builds (``mmtiffsink.cli``);
- ``<!-- generated:run-file -->``: every key of a run file, from the JSON schema of the
  run-file models (``RunConfig.model_json_schema()``) and the models' numpy docstrings.

``mkdocs.yml`` names this file under ``hooks:``; it is excluded from the site itself.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

# the one place that says where the run-file models live
from mmtiffsink.runfile import RunConfig

__all__ = ["cli_reference", "on_page_markdown", "run_file_reference"]


# -- the command line --------------------------------------------------------------------------


@contextmanager
def _columns(width: int) -> Iterator[None]:
    """Help wrapped to the same width on every machine (argparse reads COLUMNS)."""
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)
    try:
        yield
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def cli_reference() -> str:
    """Markdown: ``mmtiffsink --help`` and ``mmtiffsink COMMAND --help`` for every command."""
    from mmtiffsink import cli

    parser = cli._parser()
    parts = []
    with _columns(96):
        parts.append(f"## `mmtiffsink`\n\n```text\n{parser.format_help().rstrip()}\n```\n")
        for name, sub in _subcommands(parser).items():
            parts.append(f"## `mmtiffsink {name}`\n\n```text\n{sub.format_help().rstrip()}\n```\n")
    return "\n".join(parts)


# -- the run file ------------------------------------------------------------------------------


def _plain(text: str) -> str:
    """A docstring's reST roles and literals as Markdown, on one line."""
    text = re.sub(r":(?:class|func|meth|data|attr|mod):`~?([\w.]+)`", r"`\1`", text)
    text = text.replace("``", "`")
    return " ".join(text.split()).replace("|", "\\|")


def _parameters(doc: str | None) -> dict[str, str]:
    """The numpy ``Parameters`` section of a docstring: name -> description."""
    if not doc:
        return {}
    lines = inspect.cleandoc(doc).splitlines()
    found: dict[str, str] = {}
    try:
        start = lines.index("Parameters") + 2
    except ValueError:
        return found
    names: list[str] = []
    text: list[str] = []
    for line in [*lines[start:], ""]:
        if line and not line.startswith(" "):
            if names and line.strip("-") == "":  # the next section's underline
                break
            if names:
                for name in names:
                    found[name] = _plain(" ".join(text))
            names = [n.strip() for n in line.split(":")[0].split(",")]
            text = []
        elif line.strip():
            text.append(line.strip())
        elif names and text:
            for name in names:
                found[name] = _plain(" ".join(text))
    return found


def _type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{schema['const']}`"
    if "anyOf" in schema:
        kinds = [_type(s) for s in schema["anyOf"] if s.get("type") != "null"]
        optional = any(s.get("type") == "null" for s in schema["anyOf"])
        return " \\| ".join(kinds) + (" (optional)" if optional else "")
    kind = schema.get("type")
    if kind == "array":
        items = schema.get("items")
        if isinstance(items, dict) and items:
            return f"list of {_type(items)}"
        if "prefixItems" in schema:
            return "[" + ", ".join(_type(s) for s in schema["prefixItems"]) + "]"
        return "list"
    if kind == "object":
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            return f"mapping of {_type(extra) or 'any'}"
        return "mapping"
    names = {"string": "text", "integer": "integer", "number": "number", "boolean": "bool"}
    return names.get(str(kind), "any") if kind else "any"


def _limits(schema: dict[str, Any]) -> str:
    found = []
    for option in [schema, *schema.get("anyOf", [])]:
        for key, text in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<=")):
            if key in option:
                found.append(f"{text} {option[key]}")
        if "minLength" in option and option.get("type") == "string":
            found.append("not empty")
        if "minItems" in option:
            found.append(f"at least {option['minItems']} items")
    return ", ".join(found)


def _model_classes() -> dict[str, type]:
    """Every model class the schema names, by name: RunConfig and the models of its fields."""
    found: dict[str, type] = {}

    def walk(cls: type) -> None:
        if cls.__name__ in found:
            return
        found[cls.__name__] = cls
        for field in getattr(cls, "model_fields", {}).values():
            for arg in _flat_types(field.annotation):
                if isinstance(arg, type) and hasattr(arg, "model_fields"):
                    walk(arg)

    walk(RunConfig)
    return found


def _flat_types(annotation: Any) -> Iterator[Any]:
    yield annotation
    for arg in getattr(annotation, "__args__", ()):
        yield from _flat_types(arg)


def _descriptions(cls: type) -> dict[str, str]:
    """Field descriptions from the class's docstring and those of its bases."""
    found: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        found.update(_parameters(klass.__doc__))
    return found


def run_file_reference() -> str:
    """Markdown: a table per section of the run file, and the whole JSON schema."""
    with warnings.catch_warnings():
        # the `compression` default (the profile's codec) is a sentinel JSON cannot write
        warnings.simplefilter("ignore")
        schema = RunConfig.model_json_schema()
    classes = _model_classes()
    defs: dict[str, Any] = schema.get("$defs", {})
    models = [("RunConfig", schema), *sorted(defs.items())]
    parts = []
    for name, model in models:
        described = _descriptions(classes[name]) if name in classes else {}
        doc = inspect.cleandoc(model.get("description", "")).split("Parameters\n---")[0]
        summary = "\n\n".join(_plain(part) for part in doc.split("\n\n") if part.strip())
        rows = ["| key | type | default | description |", "|---|---|---|---|"]
        for key, prop in model.get("properties", {}).items():
            default = prop.get("default", "the profile's")
            shown = default if key == "compression" else f"`{json.dumps(default)}`"
            if "default" not in prop and key != "compression":
                shown = ""
            kind = _type(prop)
            limits = _limits(prop)
            if limits:
                kind += f" ({limits})"
            rows.append(f"| `{key}` | {kind} | {shown} | {described.get(key, '')} |")
        parts.append(f"## {name}\n\n{summary}\n\n" + "\n".join(rows) + "\n")
    whole = json.dumps(schema, indent=2, ensure_ascii=False)
    parts.append(
        "## The JSON schema\n\nAs `RunConfig.model_json_schema()` gives it (editors that read "
        'JSON schemas can check a run file with it).\n\n??? note "JSON schema"\n\n'
        + "\n".join("    " + line for line in ["```json", *whole.splitlines(), "```"])
        + "\n"
    )
    return "\n".join(parts)


# -- the hook ----------------------------------------------------------------------------------

GENERATORS: dict[str, Callable[[], str]] = {
    "<!-- generated:cli -->": cli_reference,
    "<!-- generated:run-file -->": run_file_reference,
}


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Replace each placeholder of a page by its generated Markdown."""
    for placeholder, generate in GENERATORS.items():
        if placeholder in markdown:
            markdown = markdown.replace(placeholder, generate())
    return markdown
