#!/usr/bin/env bash
# Poetry, the project's pinned version with its plugins, for changing and locking dependencies:
#   ./scripts/poetry.sh add 'somepackage>=1.2'      ./scripts/poetry.sh lock
# Where the package index serves only the standard simple index (no per-release JSON API),
# point Poetry at it: POETRY_PYPI_MIRROR_URL=<index>/simple/ ./scripts/poetry.sh lock
# (poetry-plugin-pypi-mirror; the lock file is the same either way).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/install.sh" --tools-only >&2
exec "$ROOT/.tools/poetry/bin/poetry" --directory="$ROOT" "$@"
