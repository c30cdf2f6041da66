"""AxisMapper, Placement and file_name: tables of cases, recorded demo metadata, properties."""

from __future__ import annotations

import string
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mmtiffsink.errors import CoordinateError
from mmtiffsink.sink._mapping import AxisMapper, Placement, file_name, sanitize
from tests.microscope import (
    DEMO_POSITIONS_FRAMES,
    DEMO_SEQUENCED_FRAMES,
    DEMO_TZC_FRAMES,
    DEMO_UNCALIBRATED_FRAMES,
)

# -- map(): one image at a time ----------------------------------------------------------------

MAP_CASES: list[tuple[str, dict[str, Any], Placement]] = [
    ("empty", {}, Placement((), 0, 0, 0)),
    ("time only", {"time": 4}, Placement((), 0, 0, 4)),
    ("z only", {"z": 2}, Placement((), 0, 2, 0)),
    ("named channel", {"time": 1, "channel": "DAPI", "z": 2}, Placement((), 0, 2, 1)),
    ("int channel", {"channel": 3}, Placement((), 3, 0, 0)),
    ("int position", {"position": 0, "z": 1}, Placement((("position", 0),), 0, 1, 0)),
    ("label position", {"position": "B 2"}, Placement((("position", "B 2"),), 0, 0, 0)),
    (
        "grid",
        {"row": -1, "column": 2, "time": 0},
        Placement((("column", 2), ("row", -1)), 0, 0, 0),
    ),
    (
        "camera and custom",
        {"custom": 7, "camera": "left", "position": 1},
        Placement((("camera", "left"), ("custom", 7), ("position", 1)), 0, 0, 0),
    ),
    ("None is absent", {"z": None, "position": None, "time": 2}, Placement((), 0, 0, 2)),
    (
        "numpy ints",
        {"z": np.int64(3), "time": np.int32(1), "position": np.int16(2)},
        Placement((("position", 2),), 0, 3, 1),
    ),
]


@pytest.mark.parametrize(
    ("axes", "expected"), [c[1:] for c in MAP_CASES], ids=[c[0] for c in MAP_CASES]
)
def test_map(axes: dict[str, Any], expected: Placement) -> None:
    placement = AxisMapper().map(axes)
    assert placement == expected
    assert all(type(v) is int for v in (placement.c, placement.z, placement.t))
    assert all(type(v) in (int, str) for _, v in placement.file_key)


BAD_AXES: list[tuple[str, dict[str, Any], str]] = [
    ("negative channel", {"channel": -1}, "negative index -1"),
    ("float z", {"z": 1.0}, "integer index"),
    ("text z", {"z": "top"}, "integer index"),
    ("text time", {"time": "0"}, "integer index"),
    ("bool z", {"z": True}, "integer index"),
    ("bool channel", {"channel": False}, "integer index"),
    ("float position", {"position": 1.5}, "integer or a text label"),
    ("bool position", {"position": True}, "integer or a text label"),
    ("empty label", {"position": ""}, "empty label"),
    ("empty channel", {"channel": ""}, "empty name"),
    ("list camera", {"camera": [1]}, "integer or a text label"),
]


@pytest.mark.parametrize(
    ("axes", "message"), [c[1:] for c in BAD_AXES], ids=[c[0] for c in BAD_AXES]
)
def test_map_rejects(axes: dict[str, Any], message: str) -> None:
    with pytest.raises(CoordinateError, match=message):
        AxisMapper().map(axes)


def test_coordinate_error_is_value_error() -> None:
    with pytest.raises(ValueError):
        AxisMapper().map({"channel": -1})


def test_negative_z_and_time_are_places() -> None:
    """Explore datasets and ndstorage's unordered z axis: the writer numbers them at close."""
    placement = AxisMapper().map({"z": -3, "time": -1})
    assert (placement.c, placement.z, placement.t) == (0, -3, -1)


# -- channel registry --------------------------------------------------------------------------


def test_channels_in_order_of_arrival() -> None:
    mapper = AxisMapper()
    assert mapper.channel_names == []
    got = [mapper.map({"channel": name}).c for name in ["FITC", "DAPI", "FITC", "Cy5", "DAPI"]]
    assert got == [0, 1, 0, 2, 1]
    assert mapper.channel_names == ["FITC", "DAPI", "Cy5"]


def test_channels_in_the_users_order_then_new_ones_appended() -> None:
    mapper = AxisMapper(["DAPI", "FITC", "Cy5"])
    assert mapper.channel_names == ["DAPI", "FITC", "Cy5"]
    assert mapper.map({"channel": "Cy5"}).c == 2
    assert mapper.map({"channel": "DAPI"}).c == 0
    assert mapper.map({"channel": "Rhodamine"}).c == 3  # unknown: appended, never merged
    assert mapper.channel_names == ["DAPI", "FITC", "Cy5", "Rhodamine"]


def test_channel_names_is_a_copy() -> None:
    mapper = AxisMapper(["DAPI"])
    mapper.channel_names.append("x")
    assert mapper.channel_names == ["DAPI"]


def test_int_channels_have_no_names() -> None:
    mapper = AxisMapper()
    assert [mapper.map({"channel": c}).c for c in (2, 0, 1)] == [2, 0, 1]
    assert mapper.channel_names == []


@pytest.mark.parametrize("first", ["DAPI", 0])
def test_mixing_int_and_named_channels_without_names(first: object) -> None:
    mapper = AxisMapper()
    mapper.map({"channel": first})
    with pytest.raises(CoordinateError, match="give channel_names"):
        mapper.map({"channel": 1 if isinstance(first, str) else "FITC"})


def test_mixing_int_and_named_channels_with_names() -> None:
    mapper = AxisMapper(["DAPI", "FITC"])
    assert mapper.map({"channel": 1}).c == 1
    assert mapper.map({"channel": "FITC"}).c == 1
    assert mapper.map({"channel": "DAPI"}).c == 0


@pytest.mark.parametrize(
    ("names", "message"),
    [(["DAPI", "DAPI"], "unique"), (["DAPI", ""], "non-empty"), ([1], "non-empty")],
)
def test_bad_channel_names(names: list[Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AxisMapper(names)


# -- file axes ---------------------------------------------------------------------------------


def test_file_axes_restrict_splitting() -> None:
    mapper = AxisMapper(file_axes={"position"})
    assert mapper.map({"position": "A1", "z": 0}).file_key == (("position", "A1"),)
    with pytest.raises(CoordinateError, match="unexpected axis 'camera'"):
        mapper.map({"position": "A1", "camera": 1})


def test_file_axes_cannot_hold_hyperstack_axes() -> None:
    with pytest.raises(ValueError, match="hyperstack axes"):
        AxisMapper(file_axes=["position", "z"])


def test_file_key_is_sorted_whatever_the_dict_order() -> None:
    mapper = AxisMapper()
    a = mapper.map({"row": 1, "column": 2, "position": 0})
    b = mapper.map({"position": 0, "column": 2, "row": 1})
    assert a.file_key == b.file_key == (("column", 2), ("position", 0), ("row", 1))


def test_placement_is_frozen_and_hashable() -> None:
    placement = AxisMapper().map({"position": 1, "z": 2})
    with pytest.raises(AttributeError):
        placement.z = 3  # type: ignore[misc]
    assert len({placement, AxisMapper().map({"z": 2, "position": 1})}) == 1


# -- the metadata recorded from the demo microscope --------------------------------------------


def test_recorded_tzc_acquisition() -> None:
    mapper = AxisMapper()
    placements = [mapper.map(md["Axes"]) for md in DEMO_TZC_FRAMES]
    assert mapper.channel_names == ["DAPI", "FITC"]
    assert {p.file_key for p in placements} == {()}
    assert sorted((p.t, p.c, p.z) for p in placements) == [
        (t, c, z) for t in range(3) for c in range(2) for z in range(3)
    ]
    assert [(p.t, p.c, p.z) for p in placements[:4]] == [(0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 1, 0)]


def test_recorded_tzc_acquisition_with_users_channel_order() -> None:
    mapper = AxisMapper(["FITC", "DAPI"])
    cs = {md["Axes"]["channel"]: mapper.map(md["Axes"]).c for md in DEMO_TZC_FRAMES}
    assert cs == {"FITC": 0, "DAPI": 1}


def test_recorded_positions_acquisition() -> None:
    mapper = AxisMapper()
    placements = [mapper.map(md["Axes"]) for md in DEMO_POSITIONS_FRAMES]
    keys = sorted({p.file_key for p in placements})
    assert keys == [(("position", "A1"),), (("position", "B 2"),)]
    assert [p.z for p in placements] == [0, 1, 2, 0, 1, 2]
    names = [file_name("{name}_{position}.tif", "exp", key) for key in keys]
    assert names == ["exp_A1.tif", "exp_B_2.tif"]


@pytest.mark.parametrize("frames", [DEMO_SEQUENCED_FRAMES, DEMO_UNCALIBRATED_FRAMES])
def test_recorded_time_only(frames: list[dict[str, Any]]) -> None:
    mapper = AxisMapper()
    placements = [mapper.map(md["Axes"]) for md in frames]
    assert [(p.file_key, p.c, p.z, p.t) for p in placements] == [
        ((), 0, 0, t) for t in range(len(frames))
    ]


# -- file names --------------------------------------------------------------------------------

FILE_NAME_CASES: list[tuple[str, tuple[tuple[str, Any], ...], str]] = [
    ("{name}.tif", (), "exp.tif"),
    ("{name}_{position}.tif", (("position", 0),), "exp_0.tif"),
    ("{name}_{position}.tif", (("position", "A1"),), "exp_A1.tif"),
    ("{name}_{position:03d}.tif", (("position", 7),), "exp_007.tif"),
    ("{name}_{position:03d}.tif", (("position", "A1"),), "exp_A1.tif"),  # spec: ints only
    ("{name}_{position}.tif", (), "exp.tif"),  # absent field and its separator dropped
    ("{position}_{name}.tif", (), "exp.tif"),
    ("{name}-{position}-{camera}.tif", (("camera", "L"),), "exp-L.tif"),
    ("{name}.tif", (("position", 0),), "exp_position0.tif"),  # missing field: appended
    (
        "{name}_{position}.tif",
        (("camera", "Cam 2"), ("position", 1)),
        "exp_1_cameraCam_2.tif",
    ),
    (
        "{name}_{position}_{camera}.tif",
        (("camera", "left"), ("position", "A1")),
        "exp_A1_left.tif",
    ),
    ("{name}.ome.tif", (("row", -1), ("column", 2)), "exp_row-1_column2.ome.tif"),
    ("{name}.OME.TIFF", (("position", 3),), "exp_position3.OME.TIFF"),
    ("{name}", (("position", 3),), "exp_position3"),
    ("{name}_{position}.tif", (("position", "../etc/x"),), "exp__etc_x.tif"),
    ("{name}_{{literal}}.tif", (), "exp_{literal}.tif"),
]


@pytest.mark.parametrize(("template", "key", "expected"), FILE_NAME_CASES)
def test_file_name(template: str, key: tuple[tuple[str, Any], ...], expected: str) -> None:
    assert file_name(template, "exp", key) == expected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{0}.tif", "must be 'name' or an axis name"),
        ("{position[0]}.tif", "must be 'name' or an axis name"),
        ("{name.upper}.tif", "must be 'name' or an axis name"),
        ("{name!r}.tif", "conversions"),
        ("{name.tif", "expected"),
    ],
)
def test_file_name_bad_template(template: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        file_name(template, "exp", ())


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("A1", "A1"),
        ("B 2", "B_2"),
        ("a/b\\c", "a_b_c"),
        ("..", "_"),
        (".hidden", "hidden"),
        ("Pos: 1 (left)", "Pos_1_left_"),
        ("µm", "_m"),
        ("x-1.5+y", "x-1.5+y"),
        ("", "_"),
    ],
)
def test_sanitize(label: str, expected: str) -> None:
    assert sanitize(label) == expected


# -- properties --------------------------------------------------------------------------------

_labels = st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=6)
_axis_values = {
    "position": st.one_of(st.integers(0, 500)),
    "camera": _labels,
    "row": st.integers(-5, 5),
    "column": st.integers(-5, 5),
}


@given(
    axes=st.lists(st.sampled_from(sorted(_axis_values)), min_size=1, max_size=4, unique=True),
    data=st.data(),
    template=st.sampled_from(
        ["{name}.tif", "{name}_{position}.tif", "{name}_{camera}_{position:04d}.ome.tif"]
    ),
)
def test_file_names_never_collide(axes: list[str], data: st.DataObject, template: str) -> None:
    """Within one acquisition (same axes), distinct file keys give distinct file names."""
    keys = data.draw(
        st.lists(
            st.fixed_dictionaries({axis: _axis_values[axis] for axis in axes}),
            min_size=2,
            max_size=8,
            unique_by=lambda d: tuple(sorted(d.items())),
        )
    )
    mapper = AxisMapper()
    file_keys = {mapper.map(key).file_key for key in keys}
    names = {file_name(template, "exp", key) for key in file_keys}
    assert len(names) == len(file_keys) == len(keys)


@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "channel": st.sampled_from(["DAPI", "FITC", "Cy5", "Rhodamine"]),
                "z": st.integers(0, 50),
                "time": st.integers(0, 50),
            }
        ),
        min_size=1,
        max_size=40,
    )
)
def test_channel_indices_are_dense_and_stable(frames: list[dict[str, Any]]) -> None:
    mapper = AxisMapper()
    cs = [mapper.map(axes).c for axes in frames]
    names = mapper.channel_names
    assert sorted(set(cs)) == list(range(len(names)))
    assert all(names[c] == axes["channel"] for c, axes in zip(cs, frames, strict=True))
    # first arrivals get increasing indices
    firsts = list(dict.fromkeys(axes["channel"] for axes in frames))
    assert names == firsts


@given(st.dictionaries(st.sampled_from(["position", "camera", "row"]), _labels, max_size=3))
def test_file_name_is_safe(key: dict[str, str]) -> None:
    mapper = AxisMapper()
    name = file_name("{name}_{position}.tif", "exp", mapper.map(key).file_key)
    assert "/" not in name and "\\" not in name and name.endswith(".tif")
