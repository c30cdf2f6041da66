"""Hostile run files: bounded YAML, and ``load_config`` raising ConfigError and nothing else.

Each refusal names the file and the line, in one line, well under a second; the fuzz tests
mutate the example run files (mmtiffsink/examples/) and small hand-written run files (byte
flips, truncations, random keys and values, deep nesting, huge numbers, NaN/inf, wrong types)
and accept only a RunConfig or a ConfigError.
"""

from __future__ import annotations

import contextlib
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmtiffsink.cli import main
from mmtiffsink.errors import ConfigError
from mmtiffsink.runfile import RunConfig, load_config
from mmtiffsink.runfile._yaml import MAX_BYTES, MAX_DEPTH, MAX_NODES, MAX_NUMBER_CHARS

EXAMPLES = Path(__file__).parents[2] / "mmtiffsink" / "examples"  # `mmtiffsink example NAME`
CONFIGS = sorted(EXAMPLES.glob("*.yaml"))
#: Wall-clock bound of one refusal (they take milliseconds; the machine is shared).
QUICK_S = 0.5


def _laughs(levels: int = 10, width: int = 9) -> str:
    """The "billion laughs": each anchor is a list of ``width`` aliases of the previous one."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


#: (name, document, the line named, part of the one-line message)
HOSTILE: list[tuple[str, bytes, int, str | tuple[str, ...]]] = [
    ("billion laughs", _laughs().encode(), 5, f"expands to more than {MAX_NODES} values"),
    (
        "laughs inside a section",
        b"acquisition:\n  positions: &p [{x_um: 0, y_um: 0}]\n"
        + b"".join(
            b"  p%d: &p%d [" % (i, i)
            + b", ".join([b"*p" if i == 0 else b"*p%d" % (i - 1)] * 10)
            + b"]\n"
            for i in range(8)
        ),
        6,  # p3: 10**4 positions of 5 values
        "expands to more than",
    ),
    (
        "5000-digit integer",
        b"acquisition:\n  num_time_points: " + b"9" * 5000 + b"\n",
        2,
        f"a number of 5000 characters (at most {MAX_NUMBER_CHARS})",
    ),
    ("5000-digit float", b"output:\n  pixel_size_um: 0." + b"1" * 5000 + b"\n", 2, "a number of"),
    ("long sexagesimal", b"x: " + b":".join([b"59"] * 2000) + b"\n", 1, "a number of"),
    ("explicit !!int", b"x: !!int " + b"7" * 100 + b"\n", 1, "a number of 100 characters"),
    # PyYAML >= 6.0.4's own parser stops such a document first, with its own words
    (
        "deep flow lists",
        b"x: " + b"[" * 100_000 + b"\n",
        1,
        (f"more than {MAX_DEPTH} levels", "maximum nesting depth"),
    ),
    ("deep mappings", b"x: " + b"{a: " * 50 + b"1" + b"}" * 50 + b"\n", 1, "levels deep"),
    (
        "deep through an alias",
        b"a: &a " + b"[" * 15 + b"1" + b"]" * 15 + b"\nb: " + b"[" * 10 + b"*a" + b"]" * 10 + b"\n",
        2,
        "levels deep",
    ),
    ("recursive alias", b"a: &a [1, *a]\n", 1, "the alias *a is inside the value it names"),
    ("too large", b"# padding\n" * (MAX_BYTES // 10 + 10), MAX_BYTES // 10 + 1, "larger than"),
    ("a 13th month", b"acquisition:\n  num_time_points: 2001-13-01\n", 2, "month must be in"),
    ("!!float on text", b"output:\n  pixel_size_um: !!float abc\n", 2, "cannot read this value"),
    ("NUL character", b"acquisition:\n  num_time_points: 3\x00\n", 2, "control characters"),
    ("not UTF-8", b"output:\n  name: \xff\xfe\n", 0, "cannot read run file"),
]


@pytest.mark.parametrize(("name", "data", "line", "fragment"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_yaml_is_refused_quickly_naming_the_line(
    tmp_path: Path, name: str, data: bytes, line: int, fragment: str | tuple[str, ...]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(data)
    started = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        load_config(path)
    elapsed = time.perf_counter() - started
    message = str(info.value)
    assert elapsed < QUICK_S, (name, elapsed)
    assert message.startswith(f"run file {path} ") or message.startswith(
        f"cannot read run file {path}"
    )
    assert "\n" not in message, message
    if line:
        assert f", line {line}: " in message, message
    fragments = fragment if isinstance(fragment, tuple) else (fragment,)
    assert any(f in message for f in fragments), message


@pytest.mark.parametrize(
    ("name", "data", "line", "fragment"), HOSTILE[:4], ids=[h[0] for h in HOSTILE[:4]]
)
def test_cli_dry_run_of_hostile_yaml_is_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    data: bytes,
    line: int,
    fragment: str | tuple[str, ...],
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(data)
    assert main(["run", "--dry-run", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith(f"mmtiffsink run: error: run file {path}")
    fragments = fragment if isinstance(fragment, tuple) else (fragment,)
    assert any(f in captured.err for f in fragments), captured.err
    assert "Traceback" not in captured.err


def test_console_script_refuses_the_billion_laughs(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(_laughs(levels=30), encoding="utf-8")  # 9**30 values once expanded
    done = subprocess.run(
        [sys.executable, "-m", "mmtiffsink", "run", "--dry-run", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert "expands to more than" in done.stderr
    assert "Traceback" not in done.stderr


def test_limits_leave_real_run_files_alone(tmp_path: Path) -> None:
    """Aliases that expand a little, and a plate of 2,000 positions, are still fine."""
    positions = "".join(f"    - {{label: P{i}, x_um: {i}.5, y_um: -{i}}}\n" for i in range(2000))
    path = tmp_path / "plate.yaml"
    path.write_text(
        "microscope:\n  properties:\n    - &x [Camera, OnCameraCCDXSize, 64]\n    - *x\n"
        f"acquisition:\n  positions:\n{positions}",
        encoding="utf-8",
    )
    started = time.perf_counter()
    config = load_config(path)
    assert time.perf_counter() - started < 5
    assert config.acquisition.positions is not None
    assert len(config.acquisition.positions) == 2000
    assert len(config.microscope.properties) == 2


def test_merge_key_override_is_not_a_duplicate(tmp_path: Path) -> None:
    """``<<: *p`` then ``label: B`` is YAML's way to override; it was reported as a duplicate."""
    path = tmp_path / "merge.yaml"
    path.write_text(
        "acquisition:\n  positions:\n    - &p {x_um: 0, y_um: 1, label: A}\n"
        "    - {<<: *p, label: B}\n",
        encoding="utf-8",
    )
    positions = load_config(path).acquisition.positions
    assert positions is not None
    assert [(p.label, p.x_um, p.y_um) for p in positions] == [("A", 0, 1), ("B", 0, 1)]


def test_many_problems_are_listed_up_to_a_bound(tmp_path: Path) -> None:
    path = tmp_path / "typos.yaml"
    path.write_text("output:\n" + "".join(f"  key{i}: 1\n" for i in range(50)), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    lines = str(info.value).splitlines()
    assert "(50 problems)" in lines[0]
    assert lines[-1] == "  ... and 30 more"
    assert len(lines) == 22


def test_huge_values_in_messages_are_shortened(tmp_path: Path) -> None:
    path = tmp_path / "long.yaml"
    path.write_text("acquisition:\n  num_time_points: '" + "x" * 10_000 + "'\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert len(str(info.value)) < 500


# -- fuzzing --------------------------------------------------------------------------------------

SMALL_RUN_FILES = [
    "acquisition:\n  num_time_points: 2\n  time_interval_s: 0.5\n",
    "acquisition:\n  z_start_um: -1\n  z_end_um: 1\n  z_step_um: 0.5\n  order: tz\n",
    "acquisition:\n  channel_group: Channel\n  channels: [DAPI, FITC]\n"
    "  channel_exposures_ms: [10, 20]\noutput:\n  colors: [blue, red]\n",
    "acquisition:\n  positions:\n    - {label: A1, x_um: 0, y_um: 0, z_um: 10}\n"
    "  z_start_um: 0\n  z_end_um: 2\n  z_step_um: 1\n",
    "microscope:\n  kind: java\n  port: 4827\n",
    "microscope:\n  kind: micromanager\n  path: ~/mm\n  config: x.cfg\n",
    "microscope:\n  presets: {Objective: 20X}\n  properties:\n    - [Camera, Binning, 2]\n"
    "  exposure_ms: 10\n  buffer_size_mb: 64\n",
    "output:\n  directory: out\n  name: x\n  template: '{name}_{position:03d}.tif'\n"
    "  profile: imagej\n  compression: deflate:6\n  if_exists: rename\n  pixel_size_um: 0.5\n",
    "output:\n  colormap: glasbey\n  z_step_um: 1\n  interval_s: 2\n",
]
SEEDS = [path.read_bytes() for path in CONFIGS] + [text.encode() for text in SMALL_RUN_FILES]

#: Text that YAML reads as awkward values.
NASTY = [
    "",
    "~",
    "null",
    "yes",
    "No",
    ".nan",
    "-.inf",
    ".inf",
    "1e999",
    "-0",
    "0x1F",
    "0o17",
    "1_000",
    "190:20:30",
    "2001-12-14t21:59:43.10-05:00",
    "2001-02-30",
    "!!binary aGk=",
    "!!set {a, b}",
    "!!omap [a: 1]",
    "[]",
    "{}",
    "[[[[1]]]]",
    "'{name'",
    '"\\x00"',
    "*undefined",
    "&a [*a]",
    "!!python/object:os.system",
    "? [a, b]\n: 1",
    "9" * 70,
    "1" * 30,
    "-" + "9" * 40,
    "1e-400",
    "0." + "0" * 40 + "1",
    "{name:9999999999}",
    "'{name:>999999}.tif'",
    "~nobody/x",
    "/" + "x" * 5000,
    "'" + "é" * 300 + "'",
    "[DAPI, DAPI]",
    "{x_um: 0}",
    "<<: 1",
    "!!int x",
]
KEYS = [
    "microscope",
    "acquisition",
    "output",
    "kind",
    "path",
    "config",
    "port",
    "presets",
    "properties",
    "exposure_ms",
    "buffer_size_mb",
    "num_time_points",
    "time_interval_s",
    "z_start_um",
    "z_end_um",
    "z_step_um",
    "channel_group",
    "channels",
    "channel_exposures_ms",
    "positions",
    "order",
    "label",
    "x_um",
    "y_um",
    "z_um",
    "directory",
    "name",
    "template",
    "profile",
    "compression",
    "colors",
    "colormap",
    "if_exists",
    "pixel_size_um",
    "interval_s",
    "<<",
    "1",
    "true",
    "",
]


def _mutate(data: bytes, rng: random.Random) -> bytes:
    """One random damage of the document ``data``."""
    kind = rng.randrange(8)
    lines = data.split(b"\n")
    if kind == 0 and data:  # flip bytes
        buffer = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            buffer[rng.randrange(len(buffer))] ^= 1 << rng.randrange(8)
        return bytes(buffer)
    if kind == 1:  # truncate
        return data[: rng.randrange(len(data) + 1)]
    if kind == 2:  # replace a value
        i = rng.randrange(len(lines))
        head, sep, _ = lines[i].partition(b": ")
        if sep:
            lines[i] = head + sep + rng.choice(NASTY).encode()
        return b"\n".join(lines)
    if kind == 3:  # a random key with a random value, at a random indentation
        line = f"{'  ' * rng.randrange(4)}{rng.choice(KEYS)}: {rng.choice(NASTY)}"
        lines.insert(rng.randrange(len(lines) + 1), line.encode())
        return b"\n".join(lines)
    if kind == 4:  # deep nesting in place of a value
        depth = rng.choice([5, 19, 21, 60, 5000])
        i = rng.randrange(len(lines))
        head, sep, _ = lines[i].partition(b": ")
        if sep:
            lines[i] = head + sep + b"[" * depth + b"1" + b"]" * rng.randrange(depth + 1)
        return b"\n".join(lines)
    if kind == 5:  # a huge or odd number in place of a value
        i = rng.randrange(len(lines))
        head, sep, _ = lines[i].partition(b": ")
        digits = rng.choice([9, 19, 63, 64, 65, 400, 5000])
        number = rng.choice(["9" * digits, "1." + "5" * digits, "1e" + "9" * min(digits, 9)])
        if sep:
            lines[i] = head + sep + rng.choice(["", "-"]).encode() + number.encode()
        return b"\n".join(lines)
    if kind == 6:  # swap or duplicate lines
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines.insert(j, lines[i])
        return b"\n".join(lines)
    # insert random bytes
    i = rng.randrange(len(data) + 1)
    return data[:i] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 8))) + data[i:]


def _load_or_refuse(path: Path) -> None:
    started = time.perf_counter()
    try:
        load_config(path)
    except ConfigError as exc:
        assert str(exc)
    assert time.perf_counter() - started < 2, path.read_bytes()[:200]


@pytest.mark.parametrize("seed", range(8))
def test_fuzz_mutated_run_files(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    path = tmp_path / "fuzz.yaml"
    for _ in range(150):
        data = rng.choice(SEEDS)
        for _ in range(rng.randint(1, 3)):
            data = _mutate(data, rng)
        path.write_bytes(data)
        _load_or_refuse(path)


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["DAPI", "Channel", "tpcz", "zstd:9", "imagej", "java", "rename", "#ff00ff"]),
)
_values: st.SearchStrategy[Any] = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), inner, max_size=4),
    ),
    max_leaves=20,
)
_sections = st.fixed_dictionaries(
    {},
    optional={
        section: st.dictionaries(st.sampled_from(KEYS), _values, max_size=6) | _values
        for section in ("microscope", "acquisition", "output")
    },
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(document=_sections)
def test_fuzz_random_documents(tmp_path: Path, document: dict[str, Any]) -> None:
    path = tmp_path / "random.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    _load_or_refuse(path)


@settings(max_examples=200, deadline=None)
@given(document=_sections)
def test_fuzz_model_validate_raises_only_validation_errors(document: dict[str, Any]) -> None:
    from pydantic import ValidationError

    with contextlib.suppress(ValidationError):
        RunConfig.model_validate(document)


def test_num_z_slices_of_an_infinite_range(tmp_path: Path) -> None:
    """``z_end_um - z_start_um`` overflowing to inf raised OverflowError (a traceback)."""
    path = tmp_path / "z.yaml"
    path.write_text(
        "acquisition:\n  z_start_um: -1.5e+308\n  z_end_um: 1.5e+308\n  z_step_um: 1\n",
        encoding="utf-8",
    )
    with pytest.raises(
        ConfigError, match=r"line 3: acquisition\.z_end_um: the z range is too large"
    ):
        load_config(path)


NOT_A_TRACEBACK: list[tuple[str, str]] = [
    # values that made a validator raise something other than a ValueError
    (
        "microscope:\n  kind: micromanager\n  path: ~nobody_here_xyz/mm\n  config: a.cfg\n",
        "microscope.path",
    ),
    (
        "microscope:\n  kind: micromanager\n  path: /" + "x" * 5000 + "\n  config: a.cfg\n",
        "microscope.path",
    ),
    ("output:\n  template: '{name:>999999999}.tif'\n", "output.template"),
]


@pytest.mark.parametrize(("text", "key"), NOT_A_TRACEBACK, ids=["~user", "long path", "width"])
def test_odd_values_are_config_errors(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "odd.yaml"
    path.write_text(text, encoding="utf-8")
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(path)
    assert time.perf_counter() - started < QUICK_S
