"""The reader matrix of ``docs/profiles.md``, measured again (``benchmarks/reader_matrix.py``).

One measurement per module (six small files, every reader: about a minute, most of it the two
ImageJ JVMs per file); the tests then check the claims the page makes from it, and that the
page's table is the one measured now, so it cannot go stale silently.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import pytest

from benchmarks.reader_matrix import Matrix, markdown, measure
from tests.readers import REPO_ROOT

pytestmark = pytest.mark.readers

PAGE = REPO_ROOT / "docs" / "profiles.md"
BEGIN, END = "<!-- reader-matrix:begin -->", "<!-- reader-matrix:end -->"
BIOFORMATS = "Bio-Formats (showinf, bfconvert)"
IMPORTER = "Fiji's Bio-Formats Importer"
IMAGEJ = "ImageJ 1.x (File > Open)"
BIOIO = "bioio `BioImage(path)`"


@pytest.fixture(scope="module")
def matrix(
    tmp_path_factory: pytest.TempPathFactory, bioformats_jar: Path, imagej_jar: Path
) -> Matrix:
    for module in ("bioio", "bioio_ome_tiff", "bioio_tifffile"):
        if importlib.util.find_spec(module) is None:
            message = f"{module} is not installed (the test extra installs it)"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
    return measure(
        tmp_path_factory.mktemp("matrix"), bioformats_jar=bioformats_jar, imagej_jar=imagej_jar
    )


def score(matrix: Matrix, reader: str, profile: str, codec: str, prop: str) -> int | None:
    return matrix.row(reader, profile, codec).cells[prop].score


def test_docs_table_is_the_measured_one(matrix: Matrix) -> None:
    text = PAGE.read_text(encoding="utf-8")
    found = re.search(re.escape(BEGIN) + r"\n(.*?)\n" + re.escape(END), text, flags=re.S)
    assert found, f"{PAGE.name} has no {BEGIN} ... {END} block"
    assert found.group(1).strip() == markdown(matrix).strip(), (
        "the reader matrix of docs/profiles.md is stale: paste the table of "
        "`python benchmarks/reader_matrix.py` between the markers"
    )


def test_every_reader_that_opens_a_file_gets_dims_and_pixels_right(matrix: Matrix) -> None:
    for row in matrix.rows:
        if row.shown.opened:
            assert row.cells["dims"].score == 2, (row.reader, row.profile, row.codec)
            assert row.cells["pixels"].score == 2, (row.reader, row.profile, row.codec)


@pytest.mark.parametrize("codec", ["zstd", "none"])
def test_ome_in_bioformats_shows_everything(matrix: Matrix, codec: str) -> None:
    row = matrix.row(BIOFORMATS, "ome", codec)
    assert {"OMETiffReader", "schema valid"} <= set(row.shown.notes)
    assert all(cell.score == 2 for cell in row.cells.values()), row.cells
    for reader in (BIOIO, "bioio-ome-tiff", "tifffile"):
        assert all(c.score == 2 for c in matrix.row(reader, "ome", codec).cells.values())
    assert "picked bioio_ome_tiff" in matrix.row(BIOIO, "ome", codec).shown.notes


@pytest.mark.parametrize("codec", ["zstd", "none"])
def test_fiji_importer_colours_only_from_ome(matrix: Matrix, codec: str) -> None:
    assert score(matrix, IMPORTER, "ome", codec, "colours") == 2
    assert score(matrix, IMPORTER, "bigtiff", codec, "colours") == 0  # its red/green/blue
    for profile in ("bigtiff", "ome"):
        for prop in ("pixel size", "z step", "interval"):
            assert score(matrix, IMPORTER, profile, codec, prop) == 2


def test_non_ome_files_in_bioformats_and_bioio(matrix: Matrix) -> None:
    for codec in ("zstd", "none"):
        big = matrix.row(BIOFORMATS, "bigtiff", codec)
        assert "TiffDelegateReader" in big.shown.notes
        assert big.cells["names"].score == 1  # original metadata ChannelNName keys only
        assert big.cells["colours"].score == 0 and big.cells["plane times"].score == 0
        assert not matrix.row("bioio-ome-tiff", "bigtiff", codec).shown.opened
        assert score(matrix, BIOIO, "bigtiff", codec, "names") == 0  # Channel:0:N


def test_plain_imagej_opens_only_the_imagej_profile(matrix: Matrix) -> None:
    for codec in ("zstd", "none"):
        assert not matrix.row(IMAGEJ, "bigtiff", codec).shown.opened
        assert not matrix.row(IMAGEJ, "ome", codec).shown.opened
    for codec in ("deflate", "none"):
        row = matrix.row(IMAGEJ, "imagej", codec)
        assert row.shown.opened and row.cells["colours"].score == 2
    assert score(matrix, IMAGEJ, "imagej", "none", "names") == 2  # slice labels
    assert score(matrix, IMAGEJ, "imagej", "deflate", "names") == 1  # Show Info only


def test_what_holds_ome_back_from_being_the_default(matrix: Matrix) -> None:
    """The page's reasons: the only places where ome shows less than bigtiff."""
    behind = {(reader, prop) for reader, prop, _ in matrix.behind()}
    assert behind == {
        ("bioio-tifffile", "z step"),  # it reads z only from an ImageJ description
    }
    # Fiji's importer lists an ome file's channel names in Show Info, as a bigtiff file's:
    # from the OriginalMetadata annotations of the OME-XML
    for codec in ("zstd", "none"):
        assert score(matrix, IMPORTER, "ome", codec, "names") == 1
