#!/usr/bin/env bash
# Raw throughput of /v1/me with wrk against a running server: registers a user, logs in, runs wrk.
#   bash bench/wrk/run.sh [http://127.0.0.1:8000] [connections] [seconds]
set -euo pipefail
base=${1:-http://127.0.0.1:8000}
conns=${2:-64}
secs=${3:-10}
email="wrk-$RANDOM$RANDOM@example.com"
creds="{\"email\":\"$email\",\"password\":\"wrk-password\"}"
curl -fsS -X POST "$base/v1/auth/register" -H 'content-type: application/json' -d "$creds" >/dev/null
TOKEN=$(curl -fsS -X POST "$base/v1/auth/login" -H 'content-type: application/json' -d "$creds" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
export TOKEN
here=$(dirname "$0")
wrk -t1 -c"$conns" -d"${secs}s" --latency -s "$here/me.lua" "$base"
