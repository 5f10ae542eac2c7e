# Sourced by the other scripts: installs what fastapi1 needs, idempotently, from nothing
# but Python 3.11 or 3.12 and the package registries. Quick when nothing changed.
#   .tools/poetry  Poetry, in a virtualenv this project owns
#   .venv          the project environment (poetry install), reinstalled when the lock changes

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

POETRY_VERSION="2.5.1"
TOOLS_DIR="$ROOT/.tools"
export POETRY_VIRTUALENVS_IN_PROJECT=true
export POETRY_NO_INTERACTION=1
export POETRY_CACHE_DIR="${POETRY_CACHE_DIR:-$TOOLS_DIR/cache}"

find_python() {
    # pgserver (the embedded PostgreSQL) ships wheels for CPython 3.11 and 3.12.
    local candidate
    for candidate in "${PYTHON:-}" python3 python3.12 python3.11; do
        if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] <= (3, 12)))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    echo "fastapi1 needs Python 3.11 or 3.12 (set PYTHON=/path/to/python)" >&2
    return 1
}

poetry() {
    "$TOOLS_DIR/poetry/bin/python" "$ROOT/scripts/poetry_simple_index.py" "$@"
}

install_poetry() {
    if [ -x "$TOOLS_DIR/poetry/bin/poetry" ] &&
        [ "$("$TOOLS_DIR/poetry/bin/poetry" --version 2>/dev/null)" = "Poetry (version $POETRY_VERSION)" ]; then
        return 0
    fi
    echo "==> installing Poetry $POETRY_VERSION into .tools/poetry"
    rm -rf "$TOOLS_DIR/poetry"
    "$PYTHON_BIN" -m venv "$TOOLS_DIR/poetry"
    "$TOOLS_DIR/poetry/bin/python" -m pip install --quiet --disable-pip-version-check "poetry==$POETRY_VERSION"
}

install_project() {
    # One environment with every group, so the scripts never undo each other's installs;
    # reinstalled only when the lock (which hashes the dependencies) or the interpreter change.
    local stamp="$ROOT/.venv/.fastapi1-installed"
    local want
    want="$(sha256sum < poetry.lock | cut -d' ' -f1) $(readlink -f "$PYTHON_BIN")"
    if [ -x "$ROOT/.venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    echo "==> installing the project environment into .venv"
    if [ -x "$ROOT/.venv/bin/python" ] && ! "$ROOT/.venv/bin/python" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] <= (3, 12)))'; then
        rm -rf "$ROOT/.venv"
    fi
    [ -x "$ROOT/.venv/bin/python" ] || "$PYTHON_BIN" -m venv "$ROOT/.venv"
    poetry sync --with test,static_tools,bench
    echo "$want" > "$stamp"
}

PYTHON_BIN="$(find_python)"
install_poetry
install_project
