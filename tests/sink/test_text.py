"""Names and text no file can hold: refused where a user gives them, replaced where data bring them.

Every route (IJTiffFile, TiffSink, replay, run files) and every text field; the files written
are read back with real parsers: tifffile's OME parser, ``xml.etree`` and ome-types' schema
check. A file is always finishable.
"""

from __future__ import annotations

import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from mmtiffsink import IJTiffFile
from mmtiffsink._text import check_name, check_text, clean_text, xml_safe
from mmtiffsink.cli import main
from mmtiffsink.errors import ConfigError, TextReplacedWarning
from mmtiffsink.ndtiff import ReplayOptions, replay
from mmtiffsink.runfile import load_config, planned_files
from mmtiffsink.sink import SinkOptions, TiffSink
from mmtiffsink.tiff._ome import OmeImage, ome_description
from mmtiffsink.tiff._settings import Settings
from tests.writer_support import check_ome_schema

#: One of each kind of character XML 1.0 (or UTF-8, for the surrogate) cannot hold.
BAD = ["\x00", "\x01", "\x08", "\x0b", "\x1f", "\ufffe", "\uffff", "\ud800", "\udfff"]
FRAME = np.arange(24, dtype=np.uint16).reshape(4, 6)


def _check_ome(path: Path, images: int = 1) -> str:
    """The file's OME-XML parses (xml.etree, tifffile's OME series, the OME schema)."""
    with tifffile.TiffFile(path) as tif:
        xml = tif.ome_metadata
        assert xml is not None
        assert tif.series[0].kind == "ome"  # tifffile's fallback is a flat "generic" stack
        assert len(tif.series) == images
    ET.fromstring(xml.encode("utf-8"))
    check_ome_schema(xml)
    return xml


def test_text_rules() -> None:
    for ch in BAD:
        assert xml_safe(f"a{ch}b") == "a\ufffdb"
        with pytest.raises(ConfigError, match=r"channel_names\[0\] holds a character"):
            check_text("channel_names[0]", f"a{ch}b")
    for ok in ("DAPI", "a\tb", "line\nline\r", "µm 🔬", "\ue000", "\U0010fffd"):
        assert xml_safe(ok) == ok and check_text("x", ok) == ok
    with pytest.warns(TextReplacedWarning, match=r"the channel name: U\+0001 at position 1"):
        assert clean_text("the channel name", "A\x01") == "A\ufffd"
    for name in ("", ".", "..", "../x", "a/b", "a\\b", "a\x00b", "a\nb", "a\tb", "x\ud800"):
        with pytest.raises(ConfigError, match="name"):
            check_name("name", name)
    assert check_name("name", "exp 1 (µ)") == "exp 1 (µ)"


# ------------------------------------------------------------------------------ IJTiffFile
SETTINGS: list[tuple[str, Any]] = [
    ("channel_names", lambda bad: [f"A{bad}"]),
    ("annotations", lambda bad: {"key": f"v{bad}"}),
    ("annotations", lambda bad: {f"k{bad}": "v"}),
    ("comment", lambda bad: f"c{bad}"),
    ("image_name", lambda bad: f"i{bad}"),
]


@pytest.mark.parametrize("profile", ["ome", "bigtiff", "imagej"])
@pytest.mark.parametrize("bad", BAD, ids=[f"U+{ord(b):04X}" for b in BAD])
def test_ijtifffile_refuses_and_stays_finishable(profile: str, bad: str, tmp_path: Path) -> None:
    """Each text setting refuses a character no file holds, naming it; the file finishes."""
    path = tmp_path / "f.tif"
    with IJTiffFile(path, shape=(1, 1, 1), profile=profile) as file:  # type: ignore[arg-type]
        file.save(FRAME, 0, 0, 0)
        for field, value in SETTINGS:
            with pytest.raises(ConfigError, match=field.rstrip("s")):
                setattr(file, field, value(bad))
        file.channel_names = ["DAPI"]
        if profile == "ome":
            with pytest.raises(ConfigError, match="series name"):
                file.set_series(0, name=f"s{bad}")
            with pytest.raises(ConfigError, match="stage label's name"):
                file.set_series(0, stage={"name": f"s{bad}", "x": 1.0})
    with tifffile.TiffFile(path) as tif:
        np.testing.assert_array_equal(tif.series[0].asarray().reshape(4, 6), FRAME)
    if profile == "ome":
        assert "DAPI" in _check_ome(path)


@pytest.mark.parametrize("field", ["channel_names", "comment", "image_name", "annotations"])
def test_ijtifffile_constructor_refuses(field: str, tmp_path: Path) -> None:
    value = {"annotations": {"k": "\ud800"}, "channel_names": ["\x00"]}.get(field, "\x01")
    with pytest.raises(ConfigError, match=field.rstrip("s")):
        IJTiffFile(tmp_path / "f.tif", profile="ome", **{field: value})
    assert not (tmp_path / "f.tif").exists()


def test_ome_writer_is_the_last_line_of_defence() -> None:
    """Text that bypassed every check is still written as XML a parser reads, and said so."""
    settings = Settings(channel_names=["A"], annotations={"k": "v"})
    settings.channel_names = ["A\x01", "B\ud800"]  # as if a future route forgot the check
    settings.annotations = {"k\x00": "v\ufffe"}
    with pytest.warns(TextReplacedWarning, match="U\\+FFFD in its OME-XML"):
        xml = ome_description(
            path=Path("x.ome.tif"),
            settings=settings,
            frame_shape=(4, 6),
            dtype=np.dtype(np.uint16),
            images=[OmeImage((2, 1, 1), [None, None], name="s\x1f")],
        )
    xml.encode("utf-8")
    root = ET.fromstring(xml.encode("utf-8"))
    names = [
        c.get("Name")
        for c in root.iter("{http://www.openmicroscopy.org/Schemas/OME/2016-06}Channel")
    ]
    assert names == ["A\ufffd", "B\ufffd"]
    check_ome_schema(xml)


# ------------------------------------------------------------------------------ TiffSink
@pytest.mark.parametrize("name", ["x\x00y", "../x", "a/b", "..", "", "n\ud800"])
def test_sink_name_refused_before_writing(name: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="name"):
        TiffSink(tmp_path / "out", name)
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.parent.glob("x")) == []


def test_sink_options_refuse(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"channel_names\[1\]"):
        SinkOptions(channel_names=("A", "B\x01"))
    with pytest.raises(ConfigError, match="template"):
        SinkOptions(template="{name}\x00_{position}.tif")


@pytest.mark.parametrize(
    "bad", ["\x01", "\x00", "\ufffe", "\ud800"], ids=["01", "00", "FFFE", "D800"]
)
def test_sink_data_text_replaced_and_said(bad: str, tmp_path: Path) -> None:
    """Labels and summary values that come with the images are written as U+FFFD, said once."""
    sink = TiffSink(tmp_path, "exp", profile="ome", positions="series")
    with pytest.warns(TextReplacedWarning) as caught:
        sink.update_summary({"Note": f"x{bad}y", f"K{bad}": 1, "PixelSize_um": 0.5})
        for p in (f"P{bad}", "Q"):
            for c in (f"A{bad}", "B"):
                sink.put(FRAME, {"position": p, "channel": c}, {"Axes": {"channel": c}})
        sink.close()
    said = " ".join(str(w.message) for w in caught)
    for what in (
        "summary metadata value of 'Note'",
        "summary metadata key",
        "channel name",
        "position name",
    ):
        assert what in said
    (path,) = sink.files
    xml = _check_ome(path, images=2)
    assert "A\ufffd" in xml and "P\ufffd" in xml and "x\ufffdy" in xml
    with tifffile.TiffFile(path) as tif:
        assert [s.name for s in tif.series] == ["P\ufffd", "Q"]
        data = tif.series[0].asarray()
    np.testing.assert_array_equal(data.reshape(-1, 4, 6)[0], FRAME)


def test_sink_bigtiff_labels_replaced(tmp_path: Path) -> None:
    """ImageJ metadata (UTF-16) never meets a lone surrogate: the file closes, labels read."""
    sink = TiffSink(tmp_path, "exp")
    with pytest.warns(TextReplacedWarning, match="channel name"):
        sink.put(FRAME, {"channel": "A\ud800"})
        sink.close()
    with tifffile.TiffFile(sink.files[0]) as tif:
        assert tif.imagej_metadata is not None
        assert tif.imagej_metadata["Labels"] == "A\ufffd" or tif.imagej_metadata["Labels"] == [
            "A\ufffd"
        ]


# ------------------------------------------------------------------------------ replay
def _ndtiff(root: Path, channel: str, summary: dict[str, Any]) -> Path:
    from ndstorage import NDTiffDataset

    dataset = NDTiffDataset(str(root), name="ds", writable=True)
    dataset.initialize(summary)
    for t in range(2):
        axes = {"time": t, "channel": channel}
        dataset.put_image(axes, FRAME + t, {"Axes": axes})
    writer = dataset.current_writer
    dataset.finish()
    dataset.close()
    writer.reader.close()  # ndstorage 0.1.18's writer never closes the reader it opens
    return Path(dataset.path)


@pytest.mark.parametrize("name", ["../x", "a/b", "x\x00y", "..", "n\x01"])
def test_replay_name_is_the_run_files_rule(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``replay --name`` refuses what a run file's ``output.name`` refuses; nothing is written."""
    dataset = _ndtiff(tmp_path / "src", "A", {"PixelSize_um": 1.0})
    out = tmp_path / "deep" / "out"
    with pytest.raises(ConfigError, match="name"):
        ReplayOptions(name=name)
    code = main(["replay", str(dataset), "--out", str(out), "--name", name, "--no-preview"])
    assert code != 0
    assert "name" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "deep" / "x.tif").exists()
    run = tmp_path / "run.yaml"
    run.write_text(f"output:\n  name: {name!r}\n".replace("'", '"'), encoding="utf-8")
    with pytest.raises(ConfigError, match="name"):
        load_config(run)


def test_replay_summary_and_channel_text(tmp_path: Path) -> None:
    """One NDTiff summary value of "x\\x01y" and a channel "A\\x01": every file still reads."""
    dataset = _ndtiff(tmp_path / "src", "A\x01", {"PixelSize_um": 1.0, "Note": "x\x01y"})
    options = ReplayOptions(profile="ome")
    with pytest.warns(TextReplacedWarning):
        result = replay(dataset, tmp_path / "out", options, progress=False)
    assert result.ok, result.error
    xml = _check_ome(result.files[0])
    assert "x\ufffdy" in xml and 'Name="A\ufffd"' in xml
    with tifffile.TiffFile(result.files[0]) as tif:
        np.testing.assert_array_equal(tif.series[0].asarray().reshape(2, 4, 6)[1], FRAME + 1)


# ------------------------------------------------------------------------------ run files
def _run_file(folder: Path, text: str) -> Path:
    path = folder / "run.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


COLLIDING = """
acquisition:
  positions:
    - {label: "A/1", x_um: 0, y_um: 0}
    - {label: "A_1", x_um: 1, y_um: 1}
output:
  directory: out
"""
COLLIDING_SEQUENCE = """
microscope:
  engine: pymmcore-plus
sequence:
  stage_positions:
    - {x: 0, y: 0, name: "A/1"}
    - {x: 1, y: 1, name: "A_1"}
output:
  directory: out
"""


@pytest.mark.parametrize("text", [COLLIDING, COLLIDING_SEQUENCE], ids=["pycromanager", "useq"])
def test_positions_sharing_a_file_name_fail_the_plan(
    text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Labels that become one file name are refused by --dry-run, before anything is acquired."""
    if "sequence" in text:
        pytest.importorskip("useq")
    config = load_config(_run_file(tmp_path, text))
    with pytest.raises(ConfigError, match=r"would both be 'acq_A_1\.tif'"):
        planned_files(config)
    assert main(["run", "--dry-run", str(tmp_path / "run.yaml")]) != 0
    assert "would both be 'acq_A_1.tif'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("output.name", 'output:\n  name: "a\\0b"\n'),
        ("output.name", 'output:\n  name: "../x"\n'),
        ("acquisition.channels[0]", 'acquisition:\n  channel_group: C\n  channels: ["A\\x01"]\n'),
        (
            "acquisition.positions[0].label",
            'acquisition:\n  positions:\n    - {label: "P\\x1f", x_um: 0, y_um: 0}\n',
        ),
        ("output.channel_names", 'output:\n  channel_names: ["\\uFFFE"]\n'),
    ],
)
def test_run_file_refuses_text(key: str, text: str, tmp_path: Path) -> None:
    """Text no file can hold is refused by the run file's validation, naming its key."""
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        load_config(_run_file(tmp_path, text))


def test_ijtifffile_path_with_nul(tmp_path: Path) -> None:
    """A NUL in the path is a ConfigError naming it, not the OS's bare ValueError."""
    with pytest.raises(ConfigError, match="NUL character"):
        IJTiffFile(tmp_path / "a\x00b.tif")


def test_replay_channel_name_from_image_metadata(tmp_path: Path) -> None:
    """An NDTiff image's ``Channel`` holding U+0008: written as U+FFFD, said, the file reads."""
    import shutil

    dataset = tmp_path / "ds"
    shutil.copytree(Path(__file__).parents[1] / "data/ndstorage/v3/ndtiffv3.0_test", dataset)
    tif = dataset / "ndtiffv3.0_test_NDTiffStack.tif"
    data = tif.read_bytes()
    assert data.count(b'"Channel":"DAPI"') == 5
    tif.write_bytes(data.replace(b'"Channel":"DAPI"', b'"Channel": "\\b" '))  # same length
    with pytest.warns(TextReplacedWarning, match="the channel name '\\\\x08'"):
        result = replay(dataset, tmp_path / "out", ReplayOptions(profile="ome"), progress=False)
    assert result.ok, result.error
    xml = _check_ome(result.files[0])
    assert 'Name="\ufffd"' in xml and 'Name="FITC"' in xml


def test_unfinished_file_of_an_older_version_with_a_lone_surrogate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file left unfinished with a lone surrogate in its stored channel names (as older
    versions accepted): ``info`` prints it, ``repair`` finishes it, the result parses."""
    import os
    import subprocess
    import sys

    path = tmp_path / "old.tif"
    child = (
        "import os, numpy as np\n"
        "from mmtiffsink import IJTiffFile\n"
        f"f = IJTiffFile({str(path)!r}, shape=(1, 1, 2), profile='ome')\n"
        "f.channel_names = ['Aqqqqqq']\n"
        "f.save(np.ones((4, 6), np.uint16), 0, 0, 0)\n"
        "f.flush()\n"
        "os._exit(0)  # killed: never closed\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    subprocess.run([sys.executable, "-c", child], check=True, env=env, timeout=60)
    data = path.read_bytes()
    assert data.count(b'"Aqqqqqq"') == 1  # the settings tag (JSON, ASCII)
    path.write_bytes(data.replace(b'"Aqqqqqq"', b'"A\\ud800"'))  # same length
    assert main(["info", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "A\ufffd" in out and "UNFINISHED" in out and "Traceback" not in err
    assert main(["repair", str(path)]) == 0
    capsys.readouterr()
    xml = _check_ome(path)  # the finished file's OME-XML, from the stored names
    assert 'Name="A\ufffd"' in xml
    with tifffile.TiffFile(path) as tif:
        np.testing.assert_array_equal(tif.series[0].asarray().reshape(-1, 4, 6)[0], 1)
