#!/usr/bin/env bash
# Run the whole test suite: installs what is missing, then pytest. With DATABASE_URL set the
# suite creates (and drops) its own throwaway database on that server; otherwise it uses the
# embedded PostgreSQL. Extra arguments go to pytest (e.g. ./scripts/run_tests.sh -k ready).
# tests/test_docs.py opens /docs and /redoc in headless chromium: it comes from the
# distribution's packages when this user may install them (FASTAPI1_INSTALL_BROWSER=0 forbids
# it); without chromium those tests are skipped.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"

if ! command -v chromium >/dev/null 2>&1 && [ "${FASTAPI1_INSTALL_BROWSER:-1}" != "0" ] &&
    [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing chromium from the distribution's packages (FASTAPI1_INSTALL_BROWSER=0 skips this)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 ||
        echo "    chromium could not be installed; the browser tests will be skipped"
fi
exec "$ROOT/.venv/bin/python" -m pytest "$@"
