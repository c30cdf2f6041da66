"""The documentation: its code runs, its generated references are complete, README stays short.

Every ``python`` code block of README.md, the Getting started page, the two engine pages and the
Python page runs (on the demo microscope), one page as one script (blocks in order, as a reader
would paste them), in a fresh folder, in a fresh interpreter. The site itself is built with
``mkdocs build --strict`` by ``scripts/test.sh``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import tifffile

from mmtiffsink import cli
from mmtiffsink.runfile import RunConfig

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
# the pages whose python blocks run, and the files each leaves (relative to its folder)
RUNNABLE = {
    "README.md": ["data/exp1.tif", "data/mda.tif", "cells.tif"],
    "docs/getting-started.md": [
        "data/first.tif",
        "data/first_mda.tif",
        "data/first.preview.png",
    ],
    "docs/pycromanager.md": ["data/exp1_0.tif", "data/exp1_1.tif", "data/exp3.ome.tif"],
    "docs/pymmcore-plus.md": ["data/exp1_A1.tif", "data/exp1_B2.tif", "data/plate.ome.tif"],
    "docs/python.md": ["cells.tif", "stack.tif"],
}
FENCE = re.compile(r"^```python\n(.*?)^```$", flags=re.S | re.M)


def python_blocks(page: Path) -> list[str]:
    return FENCE.findall(page.read_text(encoding="utf-8"))


def _load_hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the code blocks ---------------------------------------------------------------------------


@pytest.mark.parametrize("page", sorted(RUNNABLE))
def test_page_has_code_that_compiles(page: str) -> None:
    blocks = python_blocks(REPO / page)
    assert blocks, f"{page}: no python code block"
    for i, block in enumerate(blocks):
        compile(block, f"{page} block {i + 1}", "exec")


def _require_engines() -> None:
    for module in ("mm_test_adapters", "pycromanager", "pymmcore_plus", "useq"):
        if importlib.util.find_spec(module) is None:
            message = f"the docs' examples need {module} (the test extra and [pycromanager])"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)


@pytest.mark.acquisition
@pytest.mark.timeout(240)
@pytest.mark.parametrize("page", sorted(RUNNABLE))
def test_page_code_runs_on_the_demo_microscope(page: str, tmp_path: Path) -> None:
    _require_engines()
    script = tmp_path / "page.py"
    script.write_text("\n\n".join(python_blocks(REPO / page)), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "error::ResourceWarning"}
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
    )
    assert done.returncode == 0, f"{page}:\n{done.stdout}\n{done.stderr}"
    for name in RUNNABLE[page]:
        path = tmp_path / name
        assert path.is_file(), f"{page} did not write {name}: {sorted(tmp_path.rglob('*'))}"
        if path.suffix == ".tif":
            with tifffile.TiffFile(path) as tif:
                assert len(tif.pages) > 1 and tif.series[0].asarray().any()


# -- the generated references ------------------------------------------------------------------


def test_cli_reference_has_every_command() -> None:
    text = _load_hooks().cli_reference()
    for command in cli._COMMANDS:
        usage = f"usage: mmtiffsink {command} "
        assert f"## `mmtiffsink {command}`" in text and usage in text, command
    assert "mmtiffsink example demo > demo.yaml" in text


def test_run_file_reference_has_every_key() -> None:
    hooks = _load_hooks()
    text = hooks.run_file_reference()
    classes = hooks._model_classes()
    assert {"RunConfig", "MicroscopeConfig", "AcquisitionConfig", "OutputConfig"} <= set(classes)
    for name, cls in classes.items():
        section = text.split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
        for field in cls.model_fields:
            row = re.search(rf"^\| `{field}` \|[^\n]*$", section, flags=re.M)
            assert row, f"{name}.{field} is not in the run-file reference"
            if name != "RunConfig":  # RunConfig's sections are described by their own tables
                assert not row.group(0).endswith("|  |"), f"{name}.{field} has no description"
    assert '"$defs"' in text  # the whole JSON schema
    assert RunConfig.__name__ in text


def test_docstring_parameters_parser() -> None:
    parse = _load_hooks()._parameters
    doc = """Summary.

    Parameters
    ----------
    a, b
        Two ``things``
        on two lines.
    c : int
        One | pipe.

    Returns
    -------
    x
        Not a parameter.
    """
    assert parse(doc) == {
        "a": "Two `things` on two lines.",
        "b": "Two `things` on two lines.",
        "c": "One \\| pipe.",
    }


# -- README ------------------------------------------------------------------------------------


def test_readme_is_short_and_links_to_pages_that_exist() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    links = re.findall(r"\]\(((?:docs/)?[\w./-]+\.(?:md|png))(?:#[\w-]*)?\)", text)
    assert len(links) >= 10
    for link in links:
        assert (REPO / link).is_file(), f"README links to {link}, which does not exist"
