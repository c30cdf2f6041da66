"""Reader oracles (Bio-Formats, ImageJ 1.x) as pytest fixtures and plain functions.

The oracles run the real Java readers in subprocesses:

* :func:`bioformats_info` - dimensions and calibration as Bio-Formats reports them (OME-XML).
* :func:`bioformats_pixels` - every plane as Bio-Formats decodes it, shape (T, Z, C, Y, X).
* :func:`imagej_read` - dimensions, calibration, colours, Info and sampled pixels as plain
  ImageJ 1.x sees them (``File > Open``, no Bio-Formats plugin), or, given the Bio-Formats jar,
  as the Bio-Formats Importer inside ImageJ shows them (what a Fiji user sees).

Bio-Formats runs in one long-lived JVM per test session (``tests/data/BioFormatsServer.java``,
compiled and started on first use, ended with the session): it answers each request with the
very tools ``showinf`` and ``bfconvert`` run (``ImageInfo.testRead`` /
``ImageConverter.testConvert``), so the output is the command line's, without paying a JVM start
(~2 s) per call. A request that times out kills that JVM; one during which the JVM dies raises
:class:`ReaderError` with its exit code and stderr; either way the next request starts a fresh
JVM, so one failure fails one test.
ImageJ 1.x starts a fresh JVM (under Xvfb) per call: that is what a user runs.

Fixtures :func:`bioformats_jar` and :func:`imagej_jar` give the jar to pass; when a reader is not
installed they skip the test locally and fail it when the environment variable ``CI`` is set.
``bash scripts/test.sh`` installs both readers (and the JDK the Bio-Formats server needs).
"""

from __future__ import annotations

import contextlib
import math
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import tifffile

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BIOFORMATS_JAR = REPO_ROOT / ".tools" / "bioformats_package.jar"
DEFAULT_IMAGEJ_JAR = Path("/usr/share/java/ij.jar")
DEFAULT_TIMEOUT = 120.0
#: The Bio-Formats server's source (one Java file, compiled by ``javac`` once per session).
BIOFORMATS_SERVER_SOURCE = Path(__file__).resolve().parent / "data" / "BioFormatsServer.java"
#: Seconds a new Bio-Formats server gets to compile and load Bio-Formats (not counted in requests).
SERVER_START_TIMEOUT = 120.0

# Java writes stdout in the locale's charset ("µm" becomes "?m" under LANG=C): force UTF-8.
_JAVA_UTF8 = ("-Dfile.encoding=UTF-8", "-Dsun.stdout.encoding=UTF-8", "-Dsun.stderr.encoding=UTF-8")

_LENGTH_TO_UM = {
    "µm": 1.0,
    "μm": 1.0,  # Greek mu, in case a writer used it
    "um": 1.0,
    "micron": 1.0,
    "nm": 1e-3,
    "pm": 1e-6,
    "Å": 1e-4,
    "mm": 1e3,
    "cm": 1e4,
    "m": 1e6,
}
_TIME_TO_S = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "ns": 1e-9, "min": 60.0, "h": 3600.0}

_OME_DTYPES = {"uint8", "int8", "uint16", "int16", "uint32", "int32", "float", "double", "bit"}


class ReaderError(RuntimeError):
    """A Java reader failed (non-zero exit, timeout, unparsable output)."""


# --------------------------------------------------------------------------------------------
# subprocess helper


@dataclass(frozen=True)
class _Run:
    returncode: int | None  # None: killed after the timeout
    stdout: str
    stderr: str

    @property
    def timed_out(self) -> bool:
        return self.returncode is None

    def tail(self, n: int = 4000) -> str:
        text = (self.stdout + "\n" + self.stderr).strip()
        return text[-n:]


def _run(
    cmd: Sequence[str],
    timeout: float,
    cwd: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> _Run:
    """Run ``cmd`` in its own process group; on timeout end that whole group (TERM, then KILL)."""
    env = {**os.environ, **(extra_env or {})}
    proc = subprocess.Popen(
        list(cmd),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        code = None
        out, err = _kill_group(proc)
    return _Run(code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))


def _kill_group(proc: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    """End ``proc``'s process group (TERM, then KILL); return what it still printed."""
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            out, err = proc.communicate(timeout=grace)
            return out or b"", err or b""
        except subprocess.TimeoutExpired:
            continue
    return b"", b""  # pragma: no cover - a process that survives SIGKILL


def _unavailable(reason: str) -> None:
    """Skip the test locally; fail it in CI, where every reader must be installed."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: readers are required; run `bash scripts/test.sh`)")
    pytest.skip(f"{reason}; run `bash scripts/test.sh` to install it")


# --------------------------------------------------------------------------------------------
# the Bio-Formats server: one JVM for many requests


class _BioFormatsServer:
    """``BioFormatsServer.java`` in a child JVM, started on demand, restarted after a failure.

    One request at a time (a lock). :meth:`run` returns a :class:`_Run` like :func:`_run` does
    for a command: the tool's exit code (None after a timeout, which kills the JVM), stdout and
    stderr.
    """

    def __init__(self, jar: Path) -> None:
        self.jar = jar
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: tempfile._TemporaryFileWrapper[bytes] | None = None
        self._buffer = bytearray()
        self._classes: Path | None = None  # BioFormatsServer.class, compiled once per session
        self.starts = 0  # how many JVMs this server has started (the self-checks read it)

    @property
    def pid(self) -> int | None:
        """Process id of the running JVM, None when none runs."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def run(self, args: Sequence[str], timeout: float) -> _Run:
        """Send one request (``[tool, *tool_args]``); wait at most ``timeout`` s for the answer."""
        line = " ".join(urllib.parse.quote(arg, safe="") for arg in args) + "\n"
        with self._lock:
            proc = self._running()
            try:
                return self._request(proc, line, args, timeout)
            except BaseException:
                # e.g. pytest-timeout or Ctrl-C while waiting: the answer would be read by the
                # next request, so this JVM cannot serve again
                self._stop(kill=True)
                raise

    def _request(
        self, proc: subprocess.Popen[bytes], line: str, args: Sequence[str], timeout: float
    ) -> _Run:
        assert proc.stdin is not None
        deadline = time.monotonic() + timeout
        try:
            proc.stdin.write(line.encode("utf-8"))
            proc.stdin.flush()
        except BrokenPipeError:
            self._died(f"before answering {args[:1]}")
        head = self._read_line(deadline)
        if head is None:
            self._stop(kill=True)
            return _Run(None, "", f"no answer from the Bio-Formats server in {timeout} s")
        fields = head.split()
        if len(fields) != 6 or fields[:2] != ["MMTS-BF", "DONE"]:
            raise ReaderError(f"Bio-Formats server: unexpected answer {head!r}")
        code, fatal, n_out, n_err = (int(v) for v in fields[2:])
        body = self._read_exactly(n_out + n_err, deadline)
        if body is None:
            self._stop(kill=True)
            return _Run(None, "", f"Bio-Formats server answer incomplete after {timeout} s")
        if fatal:  # a java.lang.Error: the server exits; the next request starts a new JVM
            self._stop()
        return _Run(
            code, body[:n_out].decode("utf-8", "replace"), body[n_out:].decode("utf-8", "replace")
        )

    def close(self) -> None:
        """End the JVM (closing its input makes it exit; killed if it does not)."""
        with self._lock:
            self._stop()
            if self._classes is not None:
                shutil.rmtree(self._classes, ignore_errors=True)
                self._classes = None

    # -- internals (called with the lock held) ---------------------------------------------

    def _compiled(self) -> Path:
        """Compile the server once (``java File.java`` would recompile at every start: ~3 s)."""
        if self._classes is not None:
            return self._classes
        javac = java_compiler()
        if javac is None:
            raise ReaderError("no `javac` beside `java`: install a JDK (default-jdk-headless)")
        out = Path(tempfile.mkdtemp(prefix="mmts-bfserver-"))
        cmd = [javac, "-encoding", "UTF-8", "-cp", os.fspath(self.jar), "-d", os.fspath(out)]
        run = _run([*cmd, os.fspath(BIOFORMATS_SERVER_SOURCE)], timeout=SERVER_START_TIMEOUT)
        if run.returncode != 0:
            shutil.rmtree(out, ignore_errors=True)
            why = "timed out" if run.timed_out else f"failed (exit {run.returncode})"
            raise ReaderError(f"compiling {BIOFORMATS_SERVER_SOURCE.name} {why}:\n{run.tail()}")
        self._classes = out
        return out

    def _running(self) -> subprocess.Popen[bytes]:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self._stop()  # a JVM that died between requests: its last answer was complete
        classes = self._compiled()
        # the JVM's own stderr (crash reports); lives as long as the JVM, closed by _stop()
        self._stderr = tempfile.NamedTemporaryFile(prefix="mmts-bfserver-", suffix=".err")  # noqa: SIM115
        self._proc = subprocess.Popen(
            [
                "java",
                *_JAVA_UTF8,
                "-cp",
                os.pathsep.join([os.fspath(self.jar), os.fspath(classes)]),
                "BioFormatsServer",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            bufsize=0,
            start_new_session=True,
        )
        self.starts += 1
        self._buffer.clear()
        ready = self._read_line(time.monotonic() + SERVER_START_TIMEOUT)
        if ready is None or not ready.startswith("MMTS-BF READY"):
            if ready is None and self._proc.poll() is None:
                self._stop(kill=True)
                raise ReaderError(
                    f"the Bio-Formats server did not start in {SERVER_START_TIMEOUT} s"
                )
            self._died("while starting", got=ready)
        return self._proc

    def _died(self, when: str, got: str | None = None) -> None:
        """Raise the :class:`ReaderError` for a JVM that ended ``when``, with its stderr."""
        proc = self._proc
        code = None
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = proc.wait(timeout=10)
        tail = self._stderr_tail()
        self._stop()
        extra = f"; it printed {got!r}" if got else ""
        raise ReaderError(
            f"the Bio-Formats server JVM died {when} (exit {code}){extra}; its stderr:\n{tail}"
        )

    def _stderr_tail(self, n: int = 4000) -> str:
        if self._stderr is None:
            return ""
        self._stderr.flush()
        with open(self._stderr.name, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - n))
            return f.read().decode("utf-8", "replace")

    def _fill(self, deadline: float) -> bool:
        """Read what the JVM has sent; False at the deadline; :meth:`_died` at end of file."""
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sel.select(remaining):
                return False
        chunk = os.read(proc.stdout.fileno(), 1 << 20)
        if not chunk:
            self._died("during a request")
        self._buffer += chunk
        return True

    def _read_line(self, deadline: float) -> str | None:
        while (end := self._buffer.find(b"\n")) < 0:
            if not self._fill(deadline):
                return None
        line = bytes(self._buffer[:end]).decode("utf-8", "replace")
        del self._buffer[: end + 1]
        return line

    def _read_exactly(self, n: int, deadline: float) -> bytes | None:
        while len(self._buffer) < n:
            if not self._fill(deadline):
                return None
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    def _stop(self, *, kill: bool = False) -> None:
        """End the JVM: close its input and let it exit, or (``kill``) end its process group."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if kill:
                _kill_group(proc)
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
            if proc.stdout is not None:
                proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        self._buffer.clear()


_SERVERS: dict[Path, _BioFormatsServer] = {}
_SERVERS_LOCK = threading.Lock()


def bioformats_server(jar: str | os.PathLike[str]) -> _BioFormatsServer:
    """The session's Bio-Formats server for ``jar`` (created on first use)."""
    key = Path(jar).resolve()
    with _SERVERS_LOCK:
        server = _SERVERS.get(key)
        if server is None:
            server = _SERVERS[key] = _BioFormatsServer(key)
        return server


def close_bioformats_servers() -> None:
    """End every Bio-Formats server JVM (at the end of the test session)."""
    with _SERVERS_LOCK:
        servers = list(_SERVERS.values())
        _SERVERS.clear()
    for server in servers:
        server.close()


def java_compiler() -> str | None:
    """The ``javac`` of the JDK that ``java`` belongs to (so both are one version), or None."""
    java = shutil.which("java")
    if java is None:
        return None
    javac = Path(os.path.realpath(java)).with_name("javac")
    return os.fspath(javac) if javac.is_file() and os.access(javac, os.X_OK) else None


# --------------------------------------------------------------------------------------------
# Bio-Formats


@pytest.fixture(scope="session")
def bioformats_jar() -> Iterator[Path]:
    """Path of ``bioformats_package.jar`` (env ``MMTIFFSINK_BIOFORMATS_JAR`` or ``.tools/``).

    Its session also owns the Bio-Formats server JVM(s), ended when the session ends.
    """
    env = os.environ.get("MMTIFFSINK_BIOFORMATS_JAR")
    jar = Path(env) if env else DEFAULT_BIOFORMATS_JAR
    if shutil.which("java") is None:
        _unavailable("Bio-Formats oracle unavailable: no `java` on PATH")
    if not jar.is_file():
        _unavailable(f"Bio-Formats oracle unavailable: {jar} not found")
    if java_compiler() is None:
        _unavailable(
            "Bio-Formats oracle unavailable: no `javac` beside `java` to compile "
            f"{BIOFORMATS_SERVER_SOURCE.name}; install a JDK (Debian default-jdk-headless)"
        )
    try:
        yield jar
    finally:
        close_bioformats_servers()


@dataclass(frozen=True)
class BioFormatsInfo:
    """What Bio-Formats reports for the first series of a file.

    Physical sizes are in µm and the time increment in seconds (converted from the OME units);
    ``None`` where Bio-Formats has no value. ``channel_names`` holds ``None`` for unnamed channels.
    """

    size_x: int
    size_y: int
    size_c: int
    size_z: int
    size_t: int
    pixel_type: str
    dimension_order: str
    physical_size_x: float | None
    physical_size_y: float | None
    physical_size_z: float | None
    time_increment: float | None
    channel_names: list[str | None]
    series_count: int = 1
    ome_xml: str = field(default="", repr=False, compare=False)

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """Shape as (T, Z, C, Y, X)."""
        return (self.size_t, self.size_z, self.size_c, self.size_y, self.size_x)

    @property
    def dtype(self) -> np.dtype[np.generic]:
        """Numpy dtype of ``pixel_type``."""
        return _ome_dtype(self.pixel_type)


def _ome_dtype(pixel_type: str) -> np.dtype[np.generic]:
    names = {"float": "float32", "double": "float64", "bit": "bool"}
    return np.dtype(names.get(pixel_type, pixel_type))


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(elem: ET.Element, name: str) -> list[ET.Element]:
    return [child for child in elem if _local(child.tag) == name]


def _quantity(
    attrs: Mapping[str, str], key: str, table: Mapping[str, float], default_unit: str
) -> float | None:
    value = attrs.get(key)
    if value is None:
        return None
    unit = attrs.get(key + "Unit", default_unit)
    if unit not in table:
        raise ReaderError(f"Bio-Formats reports {key} in unit {unit!r}, which is not handled")
    return float(value) * table[unit]


def _parse_ome(xml_text: str) -> tuple[ET.Element, ET.Element, int]:
    """Return (first Image, its Pixels, number of Image elements) of an OME-XML document."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise ReaderError(f"cannot parse OME-XML from Bio-Formats: {exc}") from exc
    images = _children(root, "Image")
    if not images:
        raise ReaderError("Bio-Formats OME-XML has no <Image>")
    pixels = _children(images[0], "Pixels")
    if not pixels:
        raise ReaderError("Bio-Formats OME-XML has no <Pixels>")
    return images[0], pixels[0], len(images)


def _extract_xml(stdout: str) -> str:
    start = stdout.find("<?xml")
    end = stdout.rfind("</OME>")
    if start < 0 or end < 0:
        raise ReaderError("no OME-XML in Bio-Formats output")
    return stdout[start : end + len("</OME>")]


def bioformats_info(
    path: str | os.PathLike[str], jar: str | os.PathLike[str], timeout: float = DEFAULT_TIMEOUT
) -> BioFormatsInfo:
    """Read a file's dimensions and calibration with Bio-Formats (``showinf``).

    Runs ``loci.formats.tools.ImageInfo -nopix -omexml -novalid -no-upgrade FILE`` (in the
    session's Bio-Formats server, see :func:`bioformats_server`) and parses the first
    ``<Pixels>`` element of the generated OME-XML.

    Parameters
    ----------
    path
        The image file.
    jar
        ``bioformats_package.jar`` (see the ``bioformats_jar`` fixture).
    timeout
        Seconds to wait for the answer; then the server's JVM is killed.

    Returns
    -------
    BioFormatsInfo
        Sizes, pixel type, dimension order, calibration (µm, s) and channel names of series 0.

    Raises
    ------
    ReaderError
        When Bio-Formats cannot read the file, times out or reports an unknown unit.
    """
    args = ["info", "-nopix", "-omexml", "-novalid", "-no-upgrade", os.fspath(path)]
    run = bioformats_server(jar).run(args, timeout)
    if run.timed_out:
        raise ReaderError(f"Bio-Formats ImageInfo timed out after {timeout} s on {path}")
    if run.returncode != 0:
        raise ReaderError(
            f"Bio-Formats ImageInfo failed (exit {run.returncode}) on {path}:\n{run.tail()}"
        )
    xml_text = _extract_xml(run.stdout)
    _, pixels, n_images = _parse_ome(xml_text)
    attrs = pixels.attrib
    names: list[str | None] = [ch.attrib.get("Name") for ch in _children(pixels, "Channel")]
    return BioFormatsInfo(
        size_x=int(attrs["SizeX"]),
        size_y=int(attrs["SizeY"]),
        size_c=int(attrs["SizeC"]),
        size_z=int(attrs["SizeZ"]),
        size_t=int(attrs["SizeT"]),
        pixel_type=attrs["Type"],
        dimension_order=attrs["DimensionOrder"],
        physical_size_x=_quantity(attrs, "PhysicalSizeX", _LENGTH_TO_UM, "µm"),
        physical_size_y=_quantity(attrs, "PhysicalSizeY", _LENGTH_TO_UM, "µm"),
        physical_size_z=_quantity(attrs, "PhysicalSizeZ", _LENGTH_TO_UM, "µm"),
        time_increment=_quantity(attrs, "TimeIncrement", _TIME_TO_S, "s"),
        channel_names=names,
        series_count=n_images,
        ome_xml=xml_text,
    )


def _plane_index(pixels: ET.Element, sizes: Mapping[str, int]) -> dict[int, tuple[int, int, int]]:
    """Map IFD number -> (c, z, t) from the ``<TiffData>`` of a Bio-Formats OME-TIFF."""
    order = pixels.attrib["DimensionOrder"][2:]  # e.g. "CZT": first letter varies fastest
    n_planes = sizes["C"] * sizes["Z"] * sizes["T"]

    def coords(k: int) -> dict[str, int]:
        out = {}
        for axis in order:
            out[axis] = k % sizes[axis]
            k //= sizes[axis]
        return out

    def linear(c: int, z: int, t: int) -> int:
        pos = {"C": c, "Z": z, "T": t}
        k = 0
        for axis in reversed(order):
            k = k * sizes[axis] + pos[axis]
        return k

    tiffdata = _children(pixels, "TiffData")
    if not tiffdata:  # no TiffData: IFD i is plane i in DimensionOrder
        return {i: (c["C"], c["Z"], c["T"]) for i, c in ((i, coords(i)) for i in range(n_planes))}
    mapping: dict[int, tuple[int, int, int]] = {}
    for td in tiffdata:
        a = td.attrib
        ifd = int(a.get("IFD", "0"))
        count = int(a.get("PlaneCount", "1" if "FirstC" in a or "FirstZ" in a else n_planes))
        first = linear(
            int(a.get("FirstC", "0")), int(a.get("FirstZ", "0")), int(a.get("FirstT", "0"))
        )
        for j in range(count):
            c = coords(first + j)
            mapping[ifd + j] = (c["C"], c["Z"], c["T"])
    return mapping


def bioformats_pixels(
    path: str | os.PathLike[str],
    jar: str | os.PathLike[str],
    tmp_path: str | os.PathLike[str],
    timeout: float = DEFAULT_TIMEOUT,
    series: int = 0,
) -> np.ndarray:
    """Decode all pixels of one series (default 0) with Bio-Formats.

    Bio-Formats converts the file (``bfconvert -nolookup``, in the session's Bio-Formats
    server) to an uncompressed OME-TIFF in ``tmp_path``, which tifffile then reads; planes are
    placed by the OME ``<TiffData>`` elements (or the dimension order), so the result does not
    depend on tifffile's interpretation of the original file.

    Parameters
    ----------
    path
        The image file.
    jar
        ``bioformats_package.jar`` (see the ``bioformats_jar`` fixture).
    tmp_path
        A directory for the converted copy (e.g. pytest's ``tmp_path``).
    timeout
        Seconds to wait for the conversion; then the server's JVM is killed.

    Returns
    -------
    numpy.ndarray
        Pixels with shape (T, Z, C, Y, X), or (T, Z, C, Y, X, S) for RGB channels (S samples
        per pixel; C counts channels, not samples), and the dtype Bio-Formats reports.

    Raises
    ------
    ReaderError
        When Bio-Formats cannot convert the file or the result is inconsistent.
    """
    out_dir = Path(tempfile.mkdtemp(prefix="bfconvert-", dir=tmp_path))
    out = out_dir / "converted.ome.tif"
    args = [
        "convert",
        "-no-upgrade",
        "-nolookup",
        "-overwrite",
        "-novalid",
        "-series",
        str(series),
        os.fspath(path),
        os.fspath(out),
    ]
    try:
        run = bioformats_server(jar).run(args, timeout)
        if run.timed_out:
            raise ReaderError(f"Bio-Formats ImageConverter timed out after {timeout} s on {path}")
        if run.returncode != 0 or not out.is_file():
            raise ReaderError(
                f"Bio-Formats ImageConverter failed (exit {run.returncode}) on {path}:\n"
                f"{run.tail()}"
            )
        with tifffile.TiffFile(out) as tif:
            if not tif.ome_metadata:
                raise ReaderError("Bio-Formats wrote an OME-TIFF without OME-XML")
            _, pixels, _ = _parse_ome(tif.ome_metadata)
            a = pixels.attrib
            sizes = {k: int(a["Size" + k]) for k in "XYCZT"}
            channels = _children(pixels, "Channel")
            spp = {int(ch.attrib.get("SamplesPerPixel", "1")) for ch in channels}
            if len(spp) > 1:
                raise ReaderError(f"channels of different samples per pixel: {sorted(spp)}")
            samples = spp.pop() if spp else 1
            sizes["C"] //= samples  # OME's SizeC counts samples; planes are per Channel
            frame: tuple[int, ...] = (sizes["Y"], sizes["X"])
            if samples > 1:  # RGB: (Y, X, S) planes
                frame += (samples,)
            index = _plane_index(pixels, sizes)
            result = np.zeros(
                (sizes["T"], sizes["Z"], sizes["C"], *frame), dtype=_ome_dtype(a["Type"])
            )
            filled = np.zeros(result.shape[:3], dtype=bool)
            if len(tif.pages) < len(index):
                raise ReaderError(
                    f"converted file has {len(tif.pages)} pages, OME says {len(index)}"
                )
            for ifd, (c, z, t) in index.items():
                page = tif.pages[ifd]
                assert isinstance(page, tifffile.TiffPage)
                plane = page.asarray()
                if samples > 1 and plane.shape == (samples, *frame[:2]):
                    plane = np.moveaxis(plane, 0, -1)  # bfconvert writes RGB planar
                if plane.shape != frame:
                    raise ReaderError(f"plane {ifd} has shape {plane.shape}, expected {frame}")
                result[t, z, c] = plane
                filled[t, z, c] = True
            if not filled.all():
                raise ReaderError("converted OME-TIFF does not hold every (c, z, t) plane")
        return result
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# ImageJ 1.x


@pytest.fixture(scope="session")
def imagej_jar() -> Path:
    """Path of ImageJ 1.x ``ij.jar`` (Debian ``imagej``); needs ``java`` and ``xvfb-run``."""
    jar = Path(os.environ.get("MMTIFFSINK_IMAGEJ_JAR", DEFAULT_IMAGEJ_JAR))
    missing = [tool for tool in ("java", "xvfb-run") if shutil.which(tool) is None]
    if missing:
        _unavailable(f"ImageJ oracle unavailable: {', '.join(missing)} not on PATH")
    if not jar.is_file():
        _unavailable(f"ImageJ oracle unavailable: {jar} not found")
    return jar


@dataclass(frozen=True)
class ImageJPlane:
    """One plane as ImageJ shows it.

    ``values`` are ``getPixel(x, y)`` at the requested points (raw, uncalibrated values; NaN for a
    point outside the image); ``mean`` is the (calibrated) plane mean of ``getStatistics``;
    ``label`` is the slice label (first line), ``""`` when there is none.
    """

    values: tuple[float, ...]
    mean: float
    label: str


@dataclass(frozen=True)
class ImageJInfo:
    """What ImageJ 1.x reports after ``open(FILE)``.

    ``opened`` is False when ImageJ could not open the file (or timed out, which in practice
    means ImageJ waits on an error dialog); ``error`` then says why. ``error`` also holds any other
    output ImageJ printed (messages, Java exceptions) even when the file opened. ``planes`` maps
    each requested 0-based (c, z, t) that exists to its :class:`ImageJPlane`. ``unit`` is the
    spatial unit ImageJ shows (``"µm"`` for ``um``/``micron``; ``"pixels"`` when uncalibrated);
    ``frame_interval`` is in ``time_unit`` (ImageJ's default ``"sec"``), 0 when unset.
    ``channel_colors`` is the RGB color at index 255 of each channel's LUT. ``info`` holds the
    non-empty lines of the image's ``Info`` property (what Image > Show Info lists); ``version`` is
    ImageJ's own (``getVersion()``).
    """

    opened: bool
    error: str
    width: int = 0
    height: int = 0
    channels: int = 0
    slices: int = 0
    frames: int = 0
    bit_depth: int = 0
    n_images: int = 0
    is_hyperstack: bool = False
    pixel_width: float = 0.0
    pixel_height: float = 0.0
    voxel_depth: float = 0.0
    unit: str = ""
    frame_interval: float = 0.0
    time_unit: str = ""
    composite_mode: str = ""
    channel_colors: tuple[tuple[int, int, int], ...] = ()
    planes: Mapping[tuple[int, int, int], ImageJPlane] = field(default_factory=dict)
    info: tuple[str, ...] = ()
    version: str = ""
    output: str = field(default="", repr=False, compare=False)

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """Shape as (T, Z, C, Y, X)."""
        return (self.frames, self.slices, self.channels, self.height, self.width)


_MACRO_HEAD = r"""
// generated by tests/readers.py
// ImageJ 1.52i hangs (error dialog) on `return f(...)` when the user function f returns a
// string: always assign such a result to a variable first.
function mmtsNum(v) { return d2s(v, -9); }
function mmtsPix(x, y) {
    if (x < 0 || y < 0 || x >= getWidth() || y >= getHeight()) return "NaN";
    s = mmtsNum(getPixel(x, y));
    return s;
}
function mmtsPlane(c, z, t, points) {
    Stack.getDimensions(w, h, nc, nz, nt);
    if (c < 1 || z < 1 || t < 1 || c > nc || z > nz || t > nt) {
        print("MMTS\tNOPLANE\t" + c + "\t" + z + "\t" + t);
        return;
    }
    Stack.setPosition(c, z, t);
    getStatistics(area, mean);
    vals = "";
    for (i = 0; i < points.length; i += 2) {
        if (i > 0) vals = vals + ",";
        vals = vals + mmtsPix(points[i], points[i + 1]);
    }
    label = getMetadata("Label");
    nl = indexOf(label, "\n");
    if (nl >= 0) label = substring(label, 0, nl);
    label = replace(label, "\t", " ");
    print("MMTS\tPLANE\t" + c + "\t" + z + "\t" + t + "\t" + mmtsNum(mean) + "\t" + vals
          + "\t" + label);
}
print("MMTS\tVERSION\t" + getVersion());
MMTS_OPEN
if (nImages == 0) {
    print("MMTS\tFAIL");
    exit;
}
print("MMTS\tOPEN\t" + nImages);
getDimensions(w, h, nc, nz, nt);
print("MMTS\tDIMS\t" + w + "\t" + h + "\t" + nc + "\t" + nz + "\t" + nt + "\t" + bitDepth()
      + "\t" + nSlices + "\t" + Stack.isHyperstack);
getVoxelSize(pw, ph, pd, unit);
print("MMTS\tCAL\t" + mmtsNum(pw) + "\t" + mmtsNum(ph) + "\t" + mmtsNum(pd) + "\t" + unit);
Stack.getUnits(xu, yu, zu, tu, valu);
print("MMTS\tTIME\t" + mmtsNum(Stack.getFrameInterval()) + "\t" + tu);
if (is("composite")) {
    Stack.getDisplayMode(mode);
    print("MMTS\tMODE\t" + mode);
}
if (bitDepth() != 24) {
    for (c = 1; c <= nc; c++) {
        Stack.setChannel(c);
        getLut(r, g, b);
        print("MMTS\tLUT\t" + c + "\t" + r[255] + "\t" + g[255] + "\t" + b[255]);
    }
}
mmtsInfo = split(getMetadata("Info"), "\n");
for (i = 0; i < mmtsInfo.length; i++) print("MMTS\tINFO\t" + mmtsInfo[i]);
"""
#: How the oracle macro opens the file: ImageJ's own ``File > Open``, or the Bio-Formats
#: Importer as Fiji users run it (composite, hyperstack, the file's own plane order).
_OPEN_PLAIN = "open(getArgument());"
_OPEN_IMPORTER = (
    'run("Bio-Formats Importer", "open=[" + getArgument() + "] color_mode=Composite '
    'view=Hyperstack stack_order=XYCZT");'
)


def _imagej_macro(
    positions: Sequence[tuple[int, int, int]],
    points: Sequence[tuple[int, int]],
    open_line: str = _OPEN_PLAIN,
) -> str:
    flat = [int(v) for xy in points for v in xy]
    lines = [_MACRO_HEAD.replace("MMTS_OPEN", open_line)]
    lines.append(
        "mmtsPoints = newArray(" + ", ".join(map(str, flat)) + ");"
        if flat
        else "mmtsPoints = newArray(0);"
    )
    for c, z, t in positions:
        lines.append(f"mmtsPlane({int(c) + 1}, {int(z) + 1}, {int(t) + 1}, mmtsPoints);")
    lines.append('print("MMTS\\tEND");')
    return "\n".join(lines) + "\n"


def _parse_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def imagej_read(
    path: str | os.PathLike[str],
    positions: Sequence[tuple[int, int, int]],
    jar: str | os.PathLike[str],
    points: Sequence[tuple[int, int]] = ((0, 0),),
    timeout: float = DEFAULT_TIMEOUT,
    *,
    bioformats_jar: str | os.PathLike[str] | None = None,
    series: int | None = None,
) -> ImageJInfo:
    """Open a file in plain ImageJ 1.x (or with its Bio-Formats Importer) and report what it sees.

    Runs ``xvfb-run -a java -Djava.awt.headless=false -jar ij.jar -batch MACRO FILE`` with a
    generated macro. With ``bioformats_jar`` the jar is put on ImageJ's plugin path
    (``-Dplugins.dir``, a fresh directory holding ``plugins/bioformats_package.jar``) and the
    macro opens the file as a Fiji user does: ``run("Bio-Formats Importer", "open=[FILE]
    color_mode=Composite view=Hyperstack stack_order=XYCZT")``. A file ImageJ cannot open gives
    ``opened=False`` (the macro checks ``nImages``, so ImageJ does not stay on its error dialog);
    any hang is ended after ``timeout`` and also reported as ``opened=False``. Never raises for
    an unreadable file.

    Parameters
    ----------
    path
        The image file.
    positions
        0-based (c, z, t) planes to sample (ImageJ's 1-based ``Stack.setPosition`` is used).
    jar
        ImageJ's ``ij.jar`` (see the ``imagej_jar`` fixture).
    points
        (x, y) pixel coordinates sampled in every requested plane.
    timeout
        Seconds before ImageJ (and its Xvfb) is killed.
    bioformats_jar
        ``bioformats_package.jar`` (see the ``bioformats_jar`` fixture): open the file with
        the Bio-Formats Importer instead of ImageJ's own ``open``.
    series
        With ``bioformats_jar``: the 0-based series to open (the importer's ``series_N``
        option); None opens what the importer opens by default (the first).

    Returns
    -------
    ImageJInfo
        Dimensions, calibration, display info and the sampled planes.
    """
    path = Path(path).resolve()
    with tempfile.TemporaryDirectory(prefix="mmts-imagej-") as tmp:
        macro = Path(tmp) / "oracle.ijm"
        open_line = _OPEN_PLAIN
        plugins: list[str] = []
        if bioformats_jar is not None:
            (Path(tmp) / "plugins").mkdir()
            link = Path(tmp) / "plugins" / "bioformats_package.jar"
            try:
                link.symlink_to(Path(bioformats_jar).resolve())
            except OSError:  # no symlinks (Windows without the privilege): a copy
                shutil.copyfile(bioformats_jar, link)
            open_line = _OPEN_IMPORTER
            if series is not None:
                order = "stack_order=XYCZT"
                open_line = open_line.replace(order, f"{order} series_{series + 1}")
            plugins = [f"-Dplugins.dir={tmp}"]
        macro.write_text(_imagej_macro(positions, points, open_line), encoding="utf-8")
        env_tmp = Path(tmp) / "xvfb"  # xvfb-run's auth dir: ours to clean if it is killed
        env_tmp.mkdir()
        cmd = [
            "xvfb-run",
            "-a",
            "java",
            *_JAVA_UTF8,
            "-Djava.awt.headless=false",
            *plugins,
            "-jar",
            os.fspath(jar),
            "-batch",
            os.fspath(macro),
            os.fspath(path),
        ]
        run = _run(cmd, timeout, cwd=Path(tmp), extra_env={"TMPDIR": os.fspath(env_tmp)})
    return _parse_imagej(run, timeout)


def _parse_imagej(run: _Run, timeout: float) -> ImageJInfo:
    """Turn the macro's ``MMTS\t...`` lines into an :class:`ImageJInfo`."""
    dims: dict[str, int] = {}
    cal: dict[str, float] = {}
    unit = time_unit = mode = version = ""
    hyperstack = False
    planes: dict[tuple[int, int, int], ImageJPlane] = {}
    colors: list[tuple[int, int, int]] = []
    info: list[str] = []
    other: list[str] = []
    status = ""
    ended = False
    for line in run.stdout.splitlines():
        if not line.startswith("MMTS\t"):
            if line.strip():
                other.append(line)
            continue
        parts = line.split("\t")
        kind = parts[1]
        if kind in ("OPEN", "FAIL"):
            status = kind
        elif kind == "VERSION":
            version = "\t".join(parts[2:])
        elif kind == "DIMS":
            keys = ("width", "height", "channels", "slices", "frames", "bit_depth", "n_images")
            dims = {k: int(float(v)) for k, v in zip(keys, parts[2:9], strict=True)}
            hyperstack = parts[9] in ("1", "true")
        elif kind == "CAL":
            cal.update(pw=_parse_float(parts[2]), ph=_parse_float(parts[3]))
            cal["pd"] = _parse_float(parts[4])
            unit = "\t".join(parts[5:])
        elif kind == "TIME":
            cal["fi"] = _parse_float(parts[2])
            time_unit = "\t".join(parts[3:])
        elif kind == "MODE":
            mode = parts[2]
        elif kind == "LUT":
            colors.append((int(parts[3]), int(parts[4]), int(parts[5])))
        elif kind == "INFO":
            text = "\t".join(parts[2:]).strip()
            if text:
                info.append(text)
        elif kind == "PLANE":
            c, z, t = (int(v) - 1 for v in parts[2:5])
            values = tuple(_parse_float(v) for v in parts[6].split(",") if v)
            planes[(c, z, t)] = ImageJPlane(values, _parse_float(parts[5]), "\t".join(parts[7:]))
        elif kind == "END":
            ended = True
    error_lines = other + [ln for ln in run.stderr.splitlines() if ln.strip()]
    output = run.stdout + run.stderr
    if status != "OPEN":
        if run.timed_out:
            why = f"ImageJ timed out after {timeout} s (probably waiting on an error dialog)"
        elif status == "FAIL":
            why = "ImageJ could not open the file"
        else:
            why = f"ImageJ exited with code {run.returncode} before opening the file"
        return ImageJInfo(
            opened=False, error="\n".join([why, *error_lines]), version=version, output=output
        )
    if not ended or not dims:
        why = (
            f"ImageJ timed out after {timeout} s during the oracle macro"
            if run.timed_out
            else f"the ImageJ oracle macro did not finish (exit {run.returncode})"
        )
        raise ReaderError(f"{why}; output:\n{output[-4000:]}")
    return ImageJInfo(
        opened=True,
        error="\n".join(error_lines),
        width=dims["width"],
        height=dims["height"],
        channels=dims["channels"],
        slices=dims["slices"],
        frames=dims["frames"],
        bit_depth=dims["bit_depth"],
        n_images=dims["n_images"],
        is_hyperstack=hyperstack,
        pixel_width=cal.get("pw", math.nan),
        pixel_height=cal.get("ph", math.nan),
        voxel_depth=cal.get("pd", math.nan),
        unit=unit,
        frame_interval=cal.get("fi", math.nan),
        time_unit=time_unit,
        composite_mode=mode,
        channel_colors=tuple(colors),
        planes=planes,
        info=tuple(info),
        version=version,
        output=output,
    )
