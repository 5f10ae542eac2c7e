#!/usr/bin/env bash
# Throughput benchmark: starts fastapi1 (WORKERS=2 by default) on a fresh database (from
# $DATABASE_URL's server, else the embedded PostgreSQL), drives every scenario with wrk at
# 8, 32 and 64 connections, measures the ceilings, and writes JSON and a PNG chart under
# bench-results/. wrk comes from the distribution's packages when this user may install them
# (BENCH_INSTALL_WRK=0 forbids it); without wrk, locust's FastHttpUser drives the load.
# Knobs: BENCH_SECONDS (10), BENCH_CONNECTIONS (8,32,64), BENCH_ONLY (scenario names), WORKERS,
# BENCH_LOAD_GENERATOR (wrk or locust). BENCH_ONLY=delivery runs the delivery scenario alone:
# 100,000 notifications through /multiple while one worker drains them (BENCH_DELIVERY_TOTAL,
# BENCH_DELIVERY_CLIENTS, BENCH_DELIVERY_VARIANTS; BROKER_URL passes through to the service).
# BENCH_ONLY=predict runs the prediction gateway's closed-loop scenario instead (not in the default
# run): scripts/predict_load.py at BENCH_PREDICT_CLIENTS (100,1000,10000) clients for
# BENCH_PREDICT_SECONDS (60) each, after BENCH_PREDICT_WARMUP (5); BENCH_PREDICT_CLIENT raw or httpx.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"

if ! command -v wrk >/dev/null 2>&1 && [ "${BENCH_INSTALL_WRK:-1}" != "0" ] &&
    [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing wrk from the distribution's packages"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk) >/dev/null 2>&1 ||
        echo "    wrk could not be installed; locust will drive the load"
fi
exec "$ROOT/.venv/bin/python" "$ROOT/scripts/bench.py" "$@"
