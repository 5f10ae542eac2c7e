#!/usr/bin/env bash
# Serve fastapi1 on $HOST:$PORT (127.0.0.1:8000): installs what is missing, migrates the
# database to head (the embedded PostgreSQL when DATABASE_URL is unset), then serves with
# $WORKERS worker processes (1 by default). Ctrl-C or SIGTERM stops everything.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
exec "$ROOT/.venv/bin/python" -m fastapi1.serve
