#!/usr/bin/env bash
# Run the whole test suite: installs what is missing, then pytest. With DATABASE_URL set the
# suite creates (and drops) its own throwaway database on that server; otherwise it uses the
# embedded PostgreSQL. Extra arguments go to pytest (e.g. ./scripts/run_tests.sh -k ready).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
exec "$ROOT/.venv/bin/python" -m pytest "$@"
