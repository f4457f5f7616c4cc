#!/bin/sh
# fleetkit container entrypoint.
#
#   1. waits (bounded) until PostgreSQL (DATABASE_URL) and every Redis role URL accept requests;
#   2. runs `fleetkit migrate` when RUN_MIGRATIONS=true (advisory-locked: safe from N replicas);
#   3. clears stale Prometheus multiprocess files;
#   4. `exec`s the command (default `fleetkit serve --host 0.0.0.0`), so the server replaces this
#      shell and receives SIGTERM itself from tini: it drains (SHUTDOWN_DELAY, GRACEFUL_TIMEOUT)
#      and flushes the audit log before exiting.
#
# A SIGTERM that arrives before the exec (while waiting or migrating) stops the current step and
# exits 143 at once instead of waiting for the stop timeout's SIGKILL.
#
# Environment (besides fleetkit's own settings):
#   WAIT_FOR_DEPENDENCIES  true|false (default true)
#   WAIT_TIMEOUT           seconds to wait for each dependency (default 60)
#   RUN_MIGRATIONS         true|false (default false)
#   MIGRATION_ATTEMPTS     tries of `fleetkit migrate` before giving up (default 3)
#   MIGRATION_RETRY_DELAY  seconds between tries (default 2)
#   PYTHON                 interpreter for the dependency probe (default python3; stdlib only)
set -eu

log() {
    printf '%s docker-entrypoint: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2
}

is_true() {
    case "$(printf '%s' "${1:-}" | tr '[:upper:]' '[:lower:]')" in
        1 | true | yes | on) return 0 ;;
        *) return 1 ;;
    esac
}

child=""

on_signal() {
    log "received $1 before the server started: stopping"
    if [ -n "$child" ]; then
        kill -TERM "$child" 2>/dev/null || true
        wait "$child" 2>/dev/null || true
    fi
    exit 143
}

trap 'on_signal TERM' TERM
trap 'on_signal INT' INT

# Run a step in the background and `wait` for it: `wait` returns as soon as a trapped signal
# arrives, whereas a foreground child would delay the trap until it exits.
run_step() {
    "$@" &
    child=$!
    status=0
    wait "$child" || status=$?
    child=""
    return "$status"
}

# Readiness of one URL, standard library only. PostgreSQL: a startup packet must get an
# authentication request or any error other than "starting up" (57P03). Redis: PING must not be
# answered -LOADING (AOF replay after a restart) or -MASTERDOWN. TLS and unix sockets: connect.
# For cluster/sentinel URLs (several hosts), any one answering is enough.
# `exec`: run only through run_step, so the background job *is* the probe and a signal reaches it.
wait_for_url() {
    exec "${PYTHON:-python3}" - "$1" "$2" "${WAIT_TIMEOUT:-60}" <<'PY'
import os, socket, struct, sys, time
from urllib.parse import unquote, urlsplit

kind, url, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
parts = urlsplit(url)
scheme = parts.scheme.lower()
if scheme.startswith("sqlite"):
    sys.exit(0)
hosts = parts.netloc.rpartition("@")[2]
shown = f"{parts.scheme}://{hosts}"  # never the password

def endpoints():
    default = 26379 if "sentinel" in scheme else (5432 if kind == "postgresql" else 6379)
    for item in hosts.split(","):
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port = rest.lstrip(":")
        elif item.count(":") == 1:
            host, port = item.split(":")
        else:
            host, port = item, ""
        yield host or "localhost", int(port or default)

def postgres_ready(sock):
    user = unquote(parts.username or "postgres")
    db = unquote(parts.path.lstrip("/") or user)
    body = (struct.pack("!I", 196608) + b"user\0" + user.encode() + b"\0database\0"
            + db.encode() + b"\0\0")
    sock.sendall(struct.pack("!I", len(body) + 4) + body)
    reply = sock.recv(4096)
    if not reply:
        return False, "connection closed"
    if reply[:1] == b"E":
        fields = {f[:1]: f[1:].decode(errors="replace") for f in reply[5:].split(b"\0") if f}
        if fields.get(b"C") == "57P03":
            return False, fields.get(b"M", "starting up")
    return True, "accepting connections"

def resp(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out

def redis_ready(sock):
    # AUTH first: Redis answers -NOAUTH before -LOADING, which would hide an AOF replay.
    request, expected = b"", 1
    if parts.password is not None and "sentinel" not in scheme:
        creds = [unquote(parts.username)] if parts.username else []
        request += resp("AUTH", *creds, unquote(parts.password))
        expected = 2
    request += resp("PING")
    sock.sendall(request)
    lines, buf = [], b""
    while len(lines) < expected:
        chunk = sock.recv(1024)
        if not chunk:
            return False, "connection closed"
        buf += chunk
        *done, buf = buf.split(b"\r\n")
        lines += [d.decode(errors="replace") for d in done]
    reply = lines[-1]
    if reply.startswith(("-LOADING", "-MASTERDOWN", "-BUSY")):
        return False, reply[1:]
    return True, reply

def check():
    if scheme == "unix":
        return os.path.exists(parts.path), parts.path
    last = "no address"
    for host, port in endpoints():
        try:
            with socket.create_connection((host, port), timeout=2) as sock:
                sock.settimeout(2)
                if scheme.startswith("rediss"):
                    return True, "port open (TLS: not probed further)"
                ok, last = (postgres_ready if kind == "postgresql" else redis_ready)(sock)
                if ok:
                    return True, last
        except (OSError, ValueError) as exc:
            last = f"{host}:{port}: {exc}"
    return False, last

deadline = time.monotonic() + timeout
delay = 0.25
while True:
    ok, detail = check()
    if ok:
        print(f"docker-entrypoint: {kind} {shown} is ready ({detail})", file=sys.stderr)
        sys.exit(0)
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        print(f"docker-entrypoint: {kind} {shown} not ready after {timeout:g}s: {detail}",
              file=sys.stderr)
        sys.exit(1)
    time.sleep(min(delay, remaining))
    delay = min(delay * 2, 2.0)
PY
}

wait_for_dependencies() {
    if [ -n "${DATABASE_URL:-}" ]; then
        run_step wait_for_url postgresql "$DATABASE_URL" || return 1
    fi
    # Read replicas are not waited for: the database router serves reads from the primary until
    # a replica is healthy, so a replica outage must not block a deploy.
    for url in "${REDIS_URL:-}" "${REDIS_RATE_LIMIT_URL:-}" "${REDIS_SESSION_URL:-}"; do
        if [ -n "$url" ]; then
            run_step wait_for_url redis "$url" || return 1
        fi
    done
}

migrate() {
    attempts="${MIGRATION_ATTEMPTS:-3}"
    n=1
    while :; do
        log "running database migrations (attempt $n/$attempts)"
        if run_step fleetkit migrate; then
            log "migrations done"
            return 0
        fi
        if [ "$n" -ge "$attempts" ]; then
            log "migrations failed after $attempts attempts"
            return 1
        fi
        n=$((n + 1))
        sleep "${MIGRATION_RETRY_DELAY:-2}" &
        child=$!
        wait "$child" || true
        child=""
    done
}

# Files of a previous run of this container (the emptyDir outlives container restarts) would be
# summed into the new process's counters.
reset_metrics_dir() {
    dir="${PROMETHEUS_MULTIPROC_DIR:-}"
    if [ -n "$dir" ]; then
        mkdir -p "$dir"
        find "$dir" -maxdepth 1 -type f -name '*.db' -delete
    fi
}

# `docker run IMAGE --port 9000` means `fleetkit serve --port 9000`.
if [ "$#" -eq 0 ]; then
    set -- fleetkit serve --host 0.0.0.0
elif [ "${1#-}" != "$1" ]; then
    set -- fleetkit serve "$@"
fi

if is_true "${WAIT_FOR_DEPENDENCIES:-true}"; then
    if ! wait_for_dependencies; then
        log "dependencies not ready: exiting"
        exit 1
    fi
fi

if is_true "${RUN_MIGRATIONS:-false}"; then
    migrate || exit 1
fi

reset_metrics_dir

trap - TERM INT
log "starting: $*"
exec "$@"
