"""What a user of the wheel gets: the example run files (`mmtiffsink example`), one version,
the license. The built wheel and sdist themselves are checked by ``scripts/test.sh`` (its
"packages" run installs the wheel into a fresh venv and runs the demo there).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import mmtiffsink
from mmtiffsink import cli
from mmtiffsink.runfile import load_config

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "mmtiffsink" / "examples"


def _examples_on_disk() -> dict[str, str]:
    return {p.stem: p.read_text(encoding="utf-8") for p in sorted(EXAMPLES.glob("*.yaml"))}


def test_example_lists_every_packaged_run_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["example"]) == 0
    lines = capsys.readouterr().out.splitlines()
    on_disk = _examples_on_disk()
    assert {"demo", "demo_pymmcore_plus", "positions"} <= set(on_disk)
    assert [line.split()[0] for line in lines] == sorted(on_disk)
    for line, text in zip(lines, (on_disk[n] for n in sorted(on_disk)), strict=True):
        title = text.splitlines()[0].removeprefix("# ")
        assert line.split(maxsplit=1)[1] == title  # the file's first comment line


@pytest.mark.parametrize("name", sorted(_examples_on_disk()))
def test_example_prints_the_file(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["example", name]) == 0
    assert capsys.readouterr().out == _examples_on_disk()[name]
    assert cli.main(["example", f"{name}.yaml"]) == 0  # the file name works too
    assert capsys.readouterr().out == _examples_on_disk()[name]


def test_unknown_example_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["example", "demo2"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "no example 'demo2'" in err and "demo, demo_pymmcore_plus, positions" in err


def test_printed_demo_writes_beside_itself_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`mmtiffsink example demo > demo.yaml && mmtiffsink run demo.yaml` from anywhere."""
    assert cli.main(["example", "demo"]) == 0
    folder = tmp_path / "user"
    folder.mkdir()
    run_file = folder / "demo.yaml"
    run_file.write_text(capsys.readouterr().out, encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(run_file)
    assert config.output.directory == folder / "output"
    assert config.output.name == "demo"
    assert config.output.if_exists == "rename"  # a second run writes demo_1.tif
    assert config.microscope.kind == "demo"


def test_run_help_points_at_the_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    assert "mmtiffsink example" in out and "configs/" not in out


def test_one_version_and_the_license() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in project["project"]
    assert project["project"]["dynamic"] == ["version"]
    attr = project["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "mmtiffsink._version.__version__"
    from mmtiffsink._version import __version__

    assert mmtiffsink.__version__ == __version__
    assert project["project"]["license"] == "BSD-3-Clause"
    assert project["project"]["license-files"] == ["LICENSE"]
    license_text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert license_text.startswith("BSD 3-Clause License")
    assert "mmtiffsink developers" in license_text
    package_data = project["tool"]["setuptools"]["package-data"]["mmtiffsink"]
    assert "examples/*.yaml" in package_data


def test_sdist_manifest_takes_what_the_tests_need() -> None:
    lines = (REPO / "MANIFEST.in").read_text(encoding="utf-8").splitlines()
    for needed in ("graft tests", "graft docs", "graft benchmarks", "graft scripts"):
        assert needed in lines
    assert any(line.startswith("include LICENSE") for line in lines)
