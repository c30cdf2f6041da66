"""The napari reader: the npe2 manifest shipped in the package, through npe2's and napari's own
plugin machinery (no display: napari's ViewerModel is the viewer without its Qt window)."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mmtiffsink import IJTiffFile
from tests.writer_support import coded_frame

with warnings.catch_warnings():  # npe2 and napari warn about pydantic usage at import
    warnings.simplefilter("ignore", DeprecationWarning)
    import npe2

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def plugin() -> Iterator[npe2.PluginManager]:
    """npe2's global plugin manager with this package's manifest (as installed, or from the
    package data of the tree under test when an older install is what is on the path)."""
    pm = npe2.PluginManager.instance()
    manifest = npe2.PluginManifest.from_file(
        str(resources.files("mmtiffsink").joinpath("napari.yaml"))
    )
    registered = "mmtiffsink" in {m.name for m in pm.iter_manifests()}
    if not registered:
        pm.register(manifest)
    yield pm
    if not registered:
        pm.unregister("mmtiffsink")


def test_manifest_is_valid_and_declared() -> None:
    path = resources.files("mmtiffsink").joinpath("napari.yaml")
    manifest = npe2.PluginManifest.from_file(str(path))
    manifest.validate_imports()
    assert [r.command for r in manifest.contributions.readers or []] == ["mmtiffsink.get_reader"]
    if sys.version_info >= (3, 11):
        import tomllib

        project = tomllib.loads((REPO / "pyproject.toml").read_text())
        points = project["project"]["entry-points"]["napari.manifest"]
        assert points == {"mmtiffsink": "mmtiffsink:napari.yaml"}
        assert "napari.yaml" in project["tool"]["setuptools"]["package-data"]["mmtiffsink"]


def _write(path: Path, *, close: bool = True) -> IJTiffFile:
    tif = IJTiffFile(
        path,
        pxsize=0.25,
        deltaz=1.5,
        timeinterval=2.0,
        channel_names=["DAPI", "GFP"],
        colors=["magenta", (0, 255, 0)],
    )
    for t in range(2):
        for z in range(3):
            for c in range(2):
                if close or t == 0:
                    tif.save(coded_frame(c, z, t), c, z, t)
    if close:
        tif.close()
    else:
        tif.flush()
    return tif


def _check_kwargs(kwargs: dict[str, Any]) -> None:
    assert kwargs["channel_axis"] == 2
    assert kwargs["name"] == ["DAPI", "GFP"]
    assert kwargs["scale"] == (1.0, 1.5, 0.25, 0.25)
    assert [c["colors"][-1] for c in kwargs["colormap"]] == [[1.0, 0.0, 1.0, 1.0], [0, 1.0, 0, 1.0]]
    assert kwargs["metadata"]["interval_s"] == 2.0


def test_npe2_reads_a_finished_file(plugin: npe2.PluginManager, tmp_path: Path) -> None:
    path = tmp_path / "a.tif"
    _write(path)
    [(data, kwargs, kind)] = npe2.read([str(path)], stack=False, plugin_name="mmtiffsink")
    assert kind == "image"
    assert data.shape == (2, 3, 2, 24, 40)
    _check_kwargs(kwargs)
    np.testing.assert_array_equal(np.asarray(data[1, 2, 1]), coded_frame(1, 2, 1))
    assert kwargs["metadata"]["finished"]


def test_npe2_reads_a_file_being_written(plugin: npe2.PluginManager, tmp_path: Path) -> None:
    path = tmp_path / "a.tif"
    tif = _write(path, close=False)
    try:
        [(data, kwargs, _)] = npe2.read([str(path)], stack=False, plugin_name="mmtiffsink")
        assert data.shape == (1, 3, 2, 24, 40)  # what the file holds when opened
        assert not kwargs["metadata"]["finished"]
        _check_kwargs(kwargs)
        np.testing.assert_array_equal(np.asarray(data[0, 2, 1]), coded_frame(1, 2, 0))
    finally:
        for z in range(3):
            for c in range(2):
                tif.save(coded_frame(c, z, 1), c, z, 1)
        tif.close()


def test_get_reader_declines_other_files() -> None:
    from mmtiffsink._napari import get_reader

    assert get_reader("a.zarr") is None
    assert get_reader(["a.tif", "b.png"]) is None
    assert get_reader([]) is None
    assert get_reader("A.TIF") is not None


def test_napari_opens_layers(plugin: npe2.PluginManager, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        components = pytest.importorskip("napari.components")  # in the test extra
    path = tmp_path / "a.tif"
    _write(path)
    viewer = components.ViewerModel()
    layers = viewer.open(str(path), plugin="mmtiffsink")
    assert [layer.name for layer in layers] == ["DAPI", "GFP"]
    for c, layer in enumerate(layers):
        assert layer.data.shape == (2, 3, 24, 40)
        np.testing.assert_allclose(layer.scale, [1.0, 1.5, 0.25, 0.25])
        assert layer.blending == "additive"
        np.testing.assert_array_equal(np.asarray(layer.data[1, 0]), coded_frame(c, 0, 1))
    np.testing.assert_allclose(layers[0].colormap.colors[-1], [1, 0, 1, 1])
    np.testing.assert_allclose(layers[1].colormap.colors[-1], [0, 1, 0, 1])
