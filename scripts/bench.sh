#!/usr/bin/env bash
# Run every benchmark in bench/ (`make bench`), or the named ones: scripts/bench.sh [NAME...]
# (NAME is the file name without .py, e.g. `scripts/bench.sh overload http_load`).
#
# A benchmark is a bench/*.py with a main; the helpers (harness, summary, locustfile) are not.
# capacity.py runs last because it reads the others' bench/results/*.json; summary.py then prints
# every result as Markdown (what the README's Benchmarks section is made of). Each benchmark measures its own
# baseline in the same run, so the machine may be shared, but not idle-critical: expect ~15 min.
#
# Needs the services of scripts/services.sh (started when `status` reports one down; db.py stops
# and restarts the PostgreSQL replica) and wrk + hey from apt (installed when missing).
# Exit status: 0 when every benchmark exited 0 (all its targets PASS), else 1 after running all.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PY=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || { echo "bench: $PY is missing (make install)" >&2; exit 2; }

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v hey >/dev/null || missing+=(hey)
if [ ${#missing[@]} -gt 0 ]; then
    echo "bench: installing from apt: ${missing[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}" >/dev/null
fi
bash scripts/services.sh status >/dev/null 2>&1 || bash scripts/services.sh start

names=("$@")
if [ ${#names[@]} -eq 0 ]; then
    for file in bench/*.py; do
        name=$(basename "$file" .py)
        case $name in __init__ | harness | summary | locustfile | capacity) continue ;; esac
        grep -q '^if __name__ == "__main__":' "$file" && names+=("$name")
    done
    names+=(capacity)
fi

failed=()
for name in "${names[@]}"; do
    [ -f "bench/$name.py" ] || { echo "bench: no bench/$name.py" >&2; exit 2; }
    echo "bench: == $name =="
    "$PY" "bench/$name.py" || failed+=("$name")
done
echo "bench: == every result as Markdown (bench/summary.py) =="
"$PY" bench/summary.py
if [ ${#failed[@]} -gt 0 ]; then
    echo "bench: a target failed or the benchmark stopped in: ${failed[*]}" >&2
    exit 1
fi
