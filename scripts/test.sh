#!/usr/bin/env bash
# `make test`: start the real services on loopback, lint, type-check, run the whole suite, stop them.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/services.sh start
trap 'bash scripts/services.sh stop >/dev/null 2>&1 || true' EXIT
eval "$(bash scripts/services.sh env)"

.venv/bin/ruff check src tests bench
.venv/bin/mypy
# promtool (Debian package prometheus) validates deployment/monitoring in the test suite.
command -v promtool >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus; }; }
.venv/bin/python -m pytest "$@"
