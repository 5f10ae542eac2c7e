#!/bin/sh
# The image's one entry point: the first argument picks the process.
#   api            python -m fastapi1.serve (WORKERS, MIGRATE_ON_START, WORKER_PROCESSES=0 by default)
#   worker         python -m fastapi1.worker
#   migrate        python -m fastapi1.db.migrate (to head, then exit)
#   mock-backend   python -m fastapi1.mock_backend [--host H] [--port P]
# Anything else is run as given (`docker run IMAGE python -c ...`).
set -eu
role="${1:-api}"
[ "$#" -gt 0 ] && shift
case "$role" in
    api) exec python -m fastapi1.serve "$@" ;;
    worker) exec python -m fastapi1.worker "$@" ;;
    migrate) exec python -m fastapi1.db.migrate "$@" ;;
    mock-backend) exec python -m fastapi1.mock_backend --host 0.0.0.0 "$@" ;;
    *) exec "$role" "$@" ;;
esac
