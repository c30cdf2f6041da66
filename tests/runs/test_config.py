"""Run files: loading, line-numbered errors, path resolution, planning (in-process, no microscope).

The acquisitions themselves run in fresh processes in test_run.py; the one check here that needs
the demo microscope (a run refuses to start a second headless core in a process) is marked.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from mmtiffsink.errors import ConfigError, MMTiffSinkError
from mmtiffsink.runfile import RunResult, format_plan, format_result, plan_events, planned_files
from mmtiffsink.runfile._models import DEFAULT_JAVA_PORT, RunConfig, load_config
from mmtiffsink.tiff import Codec, IJTiffFile

EXAMPLES = Path(__file__).parents[2] / "mmtiffsink" / "examples"  # `mmtiffsink example NAME`
CONFIGS = sorted(EXAMPLES.glob("*.yaml"))


def _write(folder: Path, text: str, name: str = "run.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def _problem(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    return message


def _adapters() -> Path:
    mm_test_adapters = pytest.importorskip("mm_test_adapters")
    return Path(mm_test_adapters.device_adapter_path())


# -- the examples -------------------------------------------------------------------------------


def test_there_are_examples() -> None:
    names = {path.name for path in CONFIGS}
    assert {"demo.yaml", "positions.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_example_loads(path: Path) -> None:
    config = load_config(path)
    assert config.microscope.kind == "demo"
    # relative output folders are relative to the YAML file, wherever pytest runs
    assert config.output.directory.is_absolute()
    assert config.output.directory.parent == path.parent


def test_demo_yaml_content() -> None:
    config = load_config(CONFIGS[[p.name for p in CONFIGS].index("demo.yaml")])
    acq = config.acquisition
    assert (acq.num_time_points, acq.num_z_slices, acq.channels) == (
        3,
        5,
        ["DAPI", "FITC", "Rhodamine"],
    )
    assert config.microscope.presets == {"Objective": "20X"}
    assert config.microscope.properties[1].value == "256"  # a YAML int sent as text


# -- errors name the file, the line and the key ---------------------------------------------------


def test_typo_names_line_and_key(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        acquisition:
          num_time_points: 2
          z_start_um: 0
          z_end_um: 2
          z_stpe_um: 1
        """,
    )
    message = _problem(path)
    assert "line 5: acquisition.z_stpe_um: unknown key; did you mean 'z_step_um'?" in message
    assert "1 problem" in message


def test_every_problem_is_listed_in_line_order(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        output:
          overwrite: true
          colors: [blue, notacolor]
        acquisition:
          num_time_points: three
          positions:
            - {label: A1, x_um: 0}
        acqusition: {}
        """,
    )
    message = _problem(path)
    lines = [line.strip() for line in message.splitlines()[1:]]
    assert lines == [
        "line 2: output.overwrite: unknown key; did you mean 'if_exists: overwrite'?",
        "line 3: output.colors[1]: unknown color 'notacolor': use a CSS color name "
        "(e.g. 'magenta') or '#rrggbb'",
        "line 5: acquisition.num_time_points: Input should be a valid integer (got 'three')",
        "line 7: acquisition.positions[0].y_um: required key is missing",
        "line 8: acqusition: unknown key; did you mean 'acquisition'?",
    ]


BAD_VALUES: list[tuple[str, str, str]] = [
    # (YAML, "line N: key", part of the message)
    (
        "acquisition:\n  num_time_points: 0\n",
        "line 2: acquisition.num_time_points",
        "greater than or equal to 1",
    ),
    (
        "acquisition:\n  z_start_um: 0\n  z_end_um: 2\n  z_step_um: -0.5\n",
        "line 4: acquisition.z_step_um",
        "greater than 0",
    ),
    (
        "acquisition:\n  z_start_um: 0\n  z_end_um: 2\n  z_step_um: 0.00001\n",
        "line 4: acquisition.z_step_um",
        "200001 slices",
    ),
    (
        "acquisition:\n  z_start_um: 4\n  z_end_um: 0\n  z_step_um: 1\n",
        "line 3: acquisition.z_end_um",
        "below z_start_um",
    ),
    (
        "acquisition:\n  z_start_um: 0\n  z_end_um: 4\n",
        "line 1: acquisition.z_step_um",
        "needs z_start_um, z_end_um and z_step_um",
    ),
    (
        "acquisition:\n  num_time_points: 2\n  time_interval_s: -1\n",
        "line 3: acquisition.time_interval_s",
        "greater than or equal to 0",
    ),
    (
        "acquisition:\n  time_interval_s: 1\n",
        "line 2: acquisition.time_interval_s",
        "needs num_time_points",
    ),
    ("acquisition:\n  num_time_points: 2.5\n", "line 2: acquisition.num_time_points", "integer"),
    ("acquisition:\n  num_time_points: true\n", "line 2: acquisition.num_time_points", "integer"),
    (
        "acquisition:\n  channel_group: Channel\n  channels: [DAPI, FITC]\n"
        "  channel_exposures_ms: [10]\n",
        "line 4: acquisition.channel_exposures_ms",
        "1 values for 2 channels",
    ),
    ("acquisition:\n  channels: [DAPI]\n", "line 2: acquisition.channels", "channel_group"),
    (
        "acquisition:\n  channel_group: Channel\n  channels: [DAPI, DAPI]\n",
        "line 3: acquisition.channels",
        "unique",
    ),
    (
        "acquisition:\n  positions:\n    - {x_um: 0, y_um: 0, z_um: 1}\n    - {x_um: 1, y_um: 1}\n",
        "line 2: acquisition.positions",
        "every position or for none",
    ),
    ("acquisition:\n  order: tzp\n", "line 2: acquisition.order", "p (position) before z"),
    ("acquisition:\n  order: tpq\n", "line 2: acquisition.order", "letters t, p, c, z"),
    ("microscope:\n  exposure_ms: yes\n", "line 2: microscope.exposure_ms", "valid number"),
    ("microscope:\n  exposure_ms: .nan\n", "line 2: microscope.exposure_ms", "finite"),
    (
        "microscope:\n  properties:\n    - [Camera, Binning]\n",
        "line 3: microscope.properties[0]",
        "[device, property, value]",
    ),
    (
        "microscope:\n  properties:\n    - [Camera, UseExposureSequences, No]\n",
        "line 3: microscope.properties[0].value",
        "quote the value",
    ),
    ("microscope:\n  kind: javaa\n", "line 2: microscope.kind", "'demo', 'micromanager' or 'java'"),
    (
        "microscope:\n  kind: java\n  path: /opt/mm\n",
        "line 3: microscope.path",
        "only with kind 'micromanager'",
    ),
    ("microscope:\n  kind: java\n  port: 70000\n", "line 3: microscope.port", "65535"),
    ("microscope:\n  kind: micromanager\n", "line 1: microscope.path", "needs 'path'"),
    ("output:\n  profile: imagej\n  compression: zstd\n", "line 3: output.compression", "zstd"),
    ("output:\n  profile: imagej\n  compression: none\n", "line 3: output.compression", "deflate"),
    ("output:\n  compression: lzw\n", "line 2: output.compression", "unknown compression"),
    ("output:\n  compression: zstd:x\n", "line 2: output.compression", "integer"),
    ("output:\n  profile: imagej\n  predictor: true\n", "line 3: output.predictor", "ImageJ 1.x"),
    ("output:\n  compression: none\n  predictor: true\n", "line 3: output.predictor", "None has"),
    ("output:\n  predictor: 1\n", "line 2: output.predictor", "boolean"),
    (
        "output:\n  profile: imagej\n  compression: deflate+predictor\n",
        "line 3: output.compression",
        "wrong pixel values",
    ),
    ("output:\n  template: '{name}_{position}.png'\n", "line 2: output.template", ".tif"),
    ("output:\n  template: '{name'\n", "line 2: output.template", "bad template"),
    ("output:\n  name: a/b\n", "line 2: output.name", "not a path"),
    ("output:\n  colormap: notacolormap\n", "line 2: output.colormap", "colorcet"),
    ("output:\n  pixel_size_um: 0\n", "line 2: output.pixel_size_um", "positive"),
    ("output:\n  if_exists: replace\n", "line 2: output.if_exists", "'overwrite'"),
    (
        "acquisition:\n  channel_group: Channel\n  channels: [DAPI, FITC]\n"
        "output:\n  colors: [red]\n",
        "line 5: output.colors",
        "1 colors for 2 channels",
    ),
    ("output:\n  directory: out\n  directory: out2\n", "line 3: output.directory", "duplicate"),
]


@pytest.mark.parametrize(("text", "where", "fragment"), BAD_VALUES, ids=[b[1] for b in BAD_VALUES])
def test_bad_value_names_line_and_key(tmp_path: Path, text: str, where: str, fragment: str) -> None:
    message = _problem(_write(tmp_path, text))
    line = next((line for line in message.splitlines() if line.strip().startswith(where)), None)
    assert line is not None, message
    assert fragment in line, message


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "acquisition:\n  num_time_points: 2\n  channels: [DAPI\n")
    message = _problem(path)
    assert "not valid YAML, line" in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"run file .*nope\.yaml does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_not_a_mapping(tmp_path: Path) -> None:
    message = _problem(_write(tmp_path, "- acquisition\n"))
    assert "must be a mapping" in message


def test_empty_file_is_one_frame_on_the_demo(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, "# nothing\n"))
    assert config.microscope.kind == "demo"
    assert config.output.directory == tmp_path
    assert list(plan_events(config)) == [{"axes": {}}]


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, "output:\n  name: x\n"))
    with pytest.raises(ValidationError):
        config.output.name = "y"  # type: ignore[misc]


# -- paths ----------------------------------------------------------------------------------------


def test_relative_paths_follow_the_yaml_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "runs"
    folder.mkdir()
    path = _write(folder, "output:\n  directory: ../data/today\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(Path("..") / "runs" / "run.yaml")
    assert config.output.directory.resolve() == (tmp_path / "data" / "today").resolve()
    absolute = _write(folder, f"output:\n  directory: {tmp_path / 'abs'}\n", "abs.yaml")
    assert load_config(absolute).output.directory == tmp_path / "abs"
    assert load_config(path).output.directory.resolve() == (tmp_path / "data/today").resolve()


def test_model_validate_without_file_uses_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = RunConfig.model_validate({"output": {"directory": "out"}})
    assert config.output.directory == tmp_path / "out"


def test_micromanager_installation(tmp_path: Path) -> None:
    adapters = _adapters()  # mm-test-adapters has the layout of an installation's adapters
    path = _write(
        tmp_path,
        f"microscope:\n  kind: micromanager\n  path: {adapters}\n  config: MMConfig_demo.cfg\n",
    )
    mic = load_config(path).microscope
    assert mic.config_path == adapters / "MMConfig_demo.cfg"
    assert "with kind 'micromanager'" not in format_plan(load_config(path))


@pytest.mark.parametrize(
    ("where", "fragment"),
    [("missing", "does not exist"), ("empty", "no Micro-Manager device adapters")],
)
def test_micromanager_bad_installation(tmp_path: Path, where: str, fragment: str) -> None:
    folder = tmp_path / where
    if where == "empty":
        folder.mkdir()
        (folder / "MMConfig_demo.cfg").write_text("")
    path = _write(
        tmp_path,
        f"microscope:\n  kind: micromanager\n  path: {where}\n  config: MMConfig_demo.cfg\n",
    )
    message = _problem(path)
    assert "line 3: microscope.path: " in message
    assert fragment in message
    assert str(folder) in message


def test_micromanager_missing_cfg(tmp_path: Path) -> None:
    adapters = _adapters()
    path = _write(
        tmp_path, f"microscope:\n  kind: micromanager\n  path: {adapters}\n  config: nope.cfg\n"
    )
    message = _problem(path)
    assert "line 4: microscope.config: configuration file" in message
    assert str(adapters / "nope.cfg") in message


def test_java_kind_validates_without_a_microscope(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, "microscope:\n  kind: java\n"))
    assert config.microscope.java_port == DEFAULT_JAVA_PORT
    config = load_config(_write(tmp_path, "microscope:\n  kind: java\n  port: 5000\n"))
    assert config.microscope.java_port == 5000
    assert "running Micro-Manager on port 5000" in format_plan(config)


# -- planning -------------------------------------------------------------------------------------


def _normalise(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, np.generic):
            return value.item()
        return value

    return [plain(event) for event in events]


def test_plan_is_pycromanagers_events(tmp_path: Path) -> None:
    pycromanager = pytest.importorskip("pycromanager")
    path = _write(
        tmp_path,
        """
        acquisition:
          num_time_points: 2
          time_interval_s: 1.5
          z_start_um: -1
          z_end_um: 1
          z_step_um: 0.5
          channel_group: Channel
          channels: [DAPI, FITC]
          channel_exposures_ms: [10, 20]
          positions:
            - {label: A1, x_um: 0, y_um: 0, z_um: 100}
            - {label: B2, x_um: 10, y_um: 20, z_um: 200}
          order: tpcz
        """,
    )
    events = list(plan_events(load_config(path)))
    expected = pycromanager.multi_d_acquisition_events(
        num_time_points=2,
        time_interval_s=1.5,
        z_start=-1,
        z_end=1,
        z_step=0.5,
        channel_group="Channel",
        channels=["DAPI", "FITC"],
        channel_exposures_ms=[10, 20],
        xyz_positions=[[0, 0, 100], [10, 20, 200]],
        position_labels=["A1", "B2"],
        order="tpcz",
    )
    assert events == _normalise(expected)
    assert len(events) == 2 * 2 * 2 * 5
    assert {event["z"] for event in events if event["axes"]["position"] == "B2"} == {
        199.0,
        199.5,
        200.0,
        200.5,
        201.0,
    }
    files = planned_files(load_config(path))
    assert [(f.path.name, f.shape, f.frames) for f in files] == [
        ("acq_A1.tif", (2, 5, 2), 20),
        ("acq_B2.tif", (2, 5, 2), 20),
    ]


def test_format_plan(tmp_path: Path) -> None:
    pytest.importorskip("pycromanager")
    demo = CONFIGS[[p.name for p in CONFIGS].index("demo.yaml")]
    copy = tmp_path / "demo.yaml"
    copy.write_text(demo.read_text())
    config = load_config(copy)
    text = format_plan(config)
    assert "Events: 45 (45 frames expected)" in text
    assert "3 time points every 0.5 s" in text
    assert "5 z slices from -2 to 2 um in steps of 1 um" in text
    assert "Channel: DAPI 5 ms, FITC 10 ms, Rhodamine 15 ms" in text
    assert f"{tmp_path / 'output' / 'demo.tif'}  C=3 Z=5 T=3, 45 frames" in text
    event_lines = [line for line in text.splitlines() if re.match(r"\s+\d+ \{", line)]
    assert [int(line.split()[0]) for line in event_lines] == [1, 2, 3, 43, 44, 45]
    assert '"axes": {"time": 2, "channel": "Rhodamine", "z": 4}' in event_lines[-1]
    assert text.endswith("Dry run: nothing was acquired.")
    assert "EXISTS" not in text
    (tmp_path / "output").mkdir()
    (tmp_path / "output" / "demo.tif").write_bytes(b"x")
    assert "exists: a free name would be chosen (if_exists: rename)" in format_plan(config)
    copy.write_text(demo.read_text().replace("if_exists: rename", "if_exists: error"))
    assert "EXISTS: the run would stop before acquiring" in format_plan(load_config(copy))
    assert sorted(p.name for p in (tmp_path / "output").iterdir()) == ["demo.tif"]


def test_output_predictor(tmp_path: Path) -> None:
    """``output.predictor: true`` adds the predictor to the codec the run's files get."""
    text = "output:\n  compression: zstd:1\n  predictor: true\n"
    config = load_config(_write(tmp_path, text))
    assert config.output.options().codec == Codec("zstd", 1, predictor=True)
    assert config.output.options().writer_arguments()["compression"].predictor
    assert "compression zstd:1+predictor" in format_plan(config)
    config = load_config(_write(tmp_path, "output:\n  compression: deflate:6+predictor\n"))
    assert config.output.options().codec == Codec("deflate", 6, predictor=True)
    config = load_config(_write(tmp_path, "output:\n  profile: ome\n  predictor: true\n"))
    assert config.output.options().codec == Codec("zstd", 1, predictor=True)  # live default
    default = load_config(_write(tmp_path, "output: {}\n")).output.options()
    assert default.codec == Codec("zstd", 1, predictor=True)
    assert default.codec_for("float32") == Codec("zstd", 1)  # the predictor is for integers


# -- the result -----------------------------------------------------------------------------------


def test_run_result_format(tmp_path: Path) -> None:
    path = tmp_path / "r.tif"
    with IJTiffFile(
        path, shape=(2, 1, 1), pxsize=0.5, deltaz=2.0, timeinterval=1.5, channel_names=["A", "B"]
    ) as tif:
        tif.save(np.ones((8, 8), np.uint16), 0, 0, 0)
        tif.save(np.zeros((8, 8), np.uint16), 1, 0, 0)
    good = RunResult(files=[path], frames=2, expected_frames=2, elapsed_s=1.25)
    assert good.ok
    text = format_result(good)
    assert text.startswith("Done: 2 of 2 frames in 1 file, 1.2 s") or text.startswith(
        "Done: 2 of 2 frames in 1 file, 1.3 s"
    )
    assert str(path) in text
    assert "r.tif: pixel 0.5 um, z step 2 um, interval 1.5 s; channels A, B" in text
    short = RunResult(files=[path], frames=1, expected_frames=2, elapsed_s=1.0)
    assert not short.ok
    failed = RunResult([path], 1, 2, 1.0, error="the acquisition failed: boom")
    assert not failed.ok
    assert format_result(failed).startswith("FAILED: 1 of 2 frames")
    assert "error: the acquisition failed: boom" in format_result(failed)
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"not a tiff")
    assert "cannot be read back" in format_result(RunResult([broken], 0, 0, 0.0))


@pytest.mark.acquisition
def test_run_refuses_a_second_core_in_one_process(demo_core: Any, tmp_path: Path) -> None:
    """The pytest process already runs the demo microscope: a run must not start another."""
    from mmtiffsink.errors import MicroscopeError
    from mmtiffsink.runfile import run

    config = load_config(_write(tmp_path, "acquisition:\n  num_time_points: 1\n"))
    with pytest.raises(MicroscopeError, match="already runs in this process"):
        run(config, progress=False)
    assert not (tmp_path / "acq.tif").exists()
    assert isinstance(MicroscopeError("x"), MMTiffSinkError)
    demo_core.snap_image()  # the running core was left alone
    assert demo_core.get_image() is not None
