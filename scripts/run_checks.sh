#!/usr/bin/env bash
# Static checks: docstrings, strict typing, lint and format. Runs them all and exits
# non-zero when any of them fails, whatever its exit code.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
BIN="$ROOT/.venv/bin"

failed=()
run() {
    echo "==> $*"
    if ! "$@"; then
        failed+=("$1")
    fi
}
run "$BIN/flake8" --select=DCO020 fastapi1
run "$BIN/mypy" fastapi1 --strict
run "$BIN/ruff" check
run "$BIN/ruff" format --check

if [ "${#failed[@]}" -gt 0 ]; then
    echo "FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "all checks passed"
