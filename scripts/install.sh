#!/usr/bin/env bash
# Install fastapi1's environment from poetry.lock, by hash, through pip and nothing but the
# standard simple index (PEP 503: pip speaks every form of it). Idempotent and quick when
# nothing changed. The scripts, the tests of this very path and ci/Dockerfile all run it.
#
#   .tools/poetry  Poetry and its plugins, as pinned in scripts/poetry-tools.txt
#   .venv          the project environment, rebuilt whenever the lock, the groups or Python change
#
# `install.sh --tools-only` stops after Poetry. Knobs: PYTHON (the interpreter), VENV_DIR,
# TOOLS_DIR, INSTALL_GROUPS (Poetry groups beside main, comma-separated; default
# "test,deploy_tools,static_tools,bench", empty for the runtime only). Where packages come from is pip's
# own configuration (PIP_INDEX_URL, pip.conf): any index that serves PEP 503 works.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_DIR="${VENV_DIR:-$ROOT/.venv}"
TOOLS_DIR="${TOOLS_DIR:-$ROOT/.tools}"
INSTALL_GROUPS="${INSTALL_GROUPS-test,deploy_tools,static_tools,bench}"
POETRY_TOOLS="$ROOT/scripts/poetry-tools.txt"
PIP=(-m pip --disable-pip-version-check --quiet)

supported_python() {
    # pgserver (the embedded PostgreSQL) ships wheels for CPython 3.11 and 3.12.
    "$1" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] <= (3, 12)))' 2>/dev/null
}

find_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3 python3.12 python3.11; do
        if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 && supported_python "$candidate"; then
            command -v "$candidate"
            return 0
        fi
    done
    echo "fastapi1 needs Python 3.11 or 3.12 (set PYTHON=/path/to/python)" >&2
    return 1
}

install_tools() {
    local stamp="$TOOLS_DIR/poetry/.fastapi1-tools" want
    want="$(sha256sum < "$POETRY_TOOLS" | cut -d' ' -f1) $(readlink -f "$PYTHON_BIN")"
    if [ -x "$TOOLS_DIR/poetry/bin/poetry" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    echo "==> installing Poetry and its plugins (scripts/poetry-tools.txt) into $TOOLS_DIR/poetry"
    rm -rf "$TOOLS_DIR/poetry"
    "$PYTHON_BIN" -m venv "$TOOLS_DIR/poetry"
    "$TOOLS_DIR/poetry/bin/python" "${PIP[@]}" install -r "$POETRY_TOOLS"
    echo "$want" > "$stamp"
}

install_environment() {
    # Rebuilt from nothing when anything it depends on changed, so nothing stale survives
    # (pip, unlike `poetry sync`, never removes a package the lock dropped).
    local stamp="$VENV_DIR/.fastapi1-installed" want
    want="$(sha256sum < "$ROOT/poetry.lock" | cut -d' ' -f1) $(readlink -f "$PYTHON_BIN") groups=$INSTALL_GROUPS"
    if [ -x "$VENV_DIR/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    echo "==> installing the project environment into $VENV_DIR (from poetry.lock, with hashes)"
    local requirements
    requirements="$(mktemp)"
    trap 'rm -f "$requirements"' RETURN
    # Fails, naming the fix, when pyproject.toml changed since poetry.lock was written.
    "$TOOLS_DIR/poetry/bin/poetry" --directory="$ROOT" --no-interaction export --format=requirements.txt \
        ${INSTALL_GROUPS:+--with="$INSTALL_GROUPS"} --output="$requirements"
    rm -rf "$VENV_DIR"
    "$PYTHON_BIN" -m venv "$VENV_DIR"
    # Every dependency, transitive ones included, is pinned and hashed in the export.
    "$VENV_DIR/bin/python" "${PIP[@]}" install --require-hashes --no-deps -r "$requirements"
    echo "$want" > "$stamp"
}

PYTHON_BIN="$(find_python)"
install_tools
[ "${1:-}" = "--tools-only" ] || install_environment
