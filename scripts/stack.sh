#!/usr/bin/env bash
# The compose topology as native processes on loopback: a local multi-instance fleetkit stack.
#
# Usage: scripts/stack.sh up|down|status|env
#
#   up       start every process that is not running yet and wait until Nginx answers
#            /health/ready through to an instance (idempotent: after a crash or a kill,
#            `up` starts only what is missing)
#   down     stop everything (SIGTERM, SIGKILL after a bounded wait); data is kept
#   status   one line per process; exit status 1 if any is down
#   env      print `export` lines with the stack's URLs (eval "$(scripts/stack.sh env)")
#
# Processes and ports (all on 127.0.0.1):
#   8100         nginx: deployment/nginx/nginx.conf + upstream.local.conf + listen.local.conf
#   8101-8103    app-1..3: `fleetkit serve` (INSTANCE_ID app-N, own audit spool)
#   -            audit-worker: `fleetkit worker audit` (Redis streams -> PostgreSQL)
#   6401         redis-main (audit streams, breakers; AOF appendfsync always, noeviction)
#   6402         redis-ratelimit (no persistence)
#   6403         redis-sessions (AOF everysec, noeviction)
#   9190         prometheus: deployment/monitoring/prometheus.yml + targets.local/
#   5440/5441    PostgreSQL primary/replica of scripts/services.sh (started if down), database
#                $FLEETKIT_STACK_DB (default fleetkit_stack, created if missing, migrated)
#
# Nginx's upstream never changes (no reload: a reload closes the idle client keep-alive
# connections, and a client writing on one at that moment fails). An instance taken out drains
# itself (docs/deployment.md "Draining an instance"): Nginx's passive failover retries the
# refused connects, and its upstream keepalive_timeout below SHUTDOWN_DELAY leaves no idle
# pooled connection to the instance when it closes its listener.
#
# Everything (pid files, logs, Redis data, Nginx prefix, Prometheus TSDB, audit spools) lives in
# $FLEETKIT_STACK_DIR (default /tmp/fleetkit-stack).
#
# The app processes get the caller's environment, then the stack's addresses (always), then these
# defaults unless the caller set them: SHUTDOWN_DELAY=3 GRACEFUL_TIMEOUT=10 SESSION_COOKIE_SECURE=
# false SESSION_COOKIE_NAME=session TRUSTED_PROXIES=127.0.0.1/32 SECRET_KEY=<a fixed local value>
# HEALTH_INTERVAL=1 LOG_LEVEL=info
# (set e.g. RATE_LIMIT_LOGIN before `up` to change a policy). With FLEETKIT_STACK_ADMIN_EMAIL and
# FLEETKIT_STACK_ADMIN_PASSWORD set, `up` makes that account an admin (`fleetkit admin create`).
#
# Other environment: FLEETKIT_STACK_TIMEOUT (seconds per readiness wait, default 60),
# FLEETKIT_BIN (default .venv/bin/fleetkit of this checkout), NGINX (default nginx),
# PROMETHEUS (default /usr/bin/prometheus).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${FLEETKIT_STACK_DIR:-/tmp/fleetkit-stack}
case $DIR in /*) ;; *) DIR=$PWD/$DIR ;; esac
DIR=${DIR%/}
export FLEETKIT_STACK_DIR=$DIR
TIMEOUT=${FLEETKIT_STACK_TIMEOUT:-60}
FLEETKIT=${FLEETKIT_BIN:-$ROOT/.venv/bin/fleetkit}
NGINX_BIN=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
PROMETHEUS_BIN=${PROMETHEUS:-/usr/bin/prometheus}

NGINX_PORT=8100
APP_PORTS=(8101 8102 8103)
REDIS_MAIN_PORT=6401
REDIS_RATELIMIT_PORT=6402
REDIS_SESSIONS_PORT=6403
PROMETHEUS_PORT=9190
PG_PRIMARY_PORT=5440
PG_REPLICA_PORT=5441
PG_USER=fleetkit
PG_PASSWORD=fleetkit
DB=${FLEETKIT_STACK_DB:-fleetkit_stack}

# Stop order: traffic first, then the producers (apps flush their audit events into Redis on
# SIGTERM), the consumer, and the Redis servers last.
PROCESSES=(nginx app-1 app-2 app-3 audit-worker prometheus
           redis-main redis-ratelimit redis-sessions)

export PGCONNECT_TIMEOUT=5
unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGPASSFILE PGSERVICE PGSERVICEFILE PGSSLMODE \
    PGOPTIONS PGTARGETSESSIONATTRS REDISCLI_AUTH

log() { printf 'stack: %s\n' "$*"; }

# die MESSAGE [LOGFILE...]: the message, then the tail of each log file
die() {
    printf 'stack: ERROR: %s\n' "$1" >&2
    shift
    local file
    for file in "$@"; do
        if [ -s "$file" ]; then
            printf 'stack: --- last lines of %s ---\n' "$file" >&2
            tail -n 20 "$file" >&2 || true
        fi
    done
    exit 1
}

pidfile() { printf '%s/run/%s.pid' "$DIR" "$1"; }
logfile() { printf '%s/logs/%s.log' "$DIR" "$1"; }

# pid of a running process of the stack, or nothing
running_pid() {
    local file pid
    file=$(pidfile "$1")
    [ -f "$file" ] || return 1
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    printf '%s' "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# http_status PORT PATH: the status code of GET PATH (nothing when there is no answer)
http_status() {
    local fd line
    exec {fd}<>"/dev/tcp/127.0.0.1/$1" || return 1
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&"$fd"
    IFS=' ' read -r -t 3 _ line _ <&"$fd" || true
    exec {fd}>&-
    printf '%s' "$line"
}
http_ok() { [ "$(http_status "$1" "$2" 2>/dev/null)" = 200 ]; }

rcli() { timeout 5 redis-cli -h 127.0.0.1 -p "$1" "${@:2}"; }
redis_ping() { [ "$(rcli "$1" ping 2>/dev/null)" = PONG ]; }

psql_on() {  # psql_on PORT DATABASE SQL
    PGPASSWORD=$PG_PASSWORD psql -X -A -t -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" \
        -U "$PG_USER" -d "$2" -c "$3"
}
pg_ready() { psql_on "$1" postgres 'SELECT 1' >/dev/null 2>&1; }

# wait_for NAME DESCRIPTION COMMAND...: poll COMMAND until it succeeds, NAME dies or TIMEOUT
wait_for() {
    local name=$1 desc=$2
    shift 2
    local deadline=$((SECONDS + TIMEOUT))
    until "$@"; do
        if [ "$name" != - ] && ! running_pid "$name" >/dev/null; then
            die "$name exited while waiting for $desc" "$(logfile "$name")"
        fi
        if ((SECONDS >= deadline)); then
            die "timed out after ${TIMEOUT}s waiting for $desc" "$(logfile "$name")"
        fi
        sleep 0.2
    done
}

# launch NAME PORT COMMAND...: start COMMAND in the background in its own session (a Ctrl-C in
# the calling terminal does not reach it), output to logs/NAME.log, pid to run/NAME.pid
launch() {
    local name=$1 port=$2
    shift 2
    if [ "$port" != - ] && port_open "$port"; then
        die "port $port (for $name) is already in use by a process that is not this stack's"
    fi
    (cd "$DIR" && exec setsid "$@" >>"$(logfile "$name")" 2>&1 </dev/null) &
    printf '%s\n' "$!" >"$(pidfile "$name")"
    log "started $name (pid $!)"
}

# ---------------------------------------------------------------------- configuration

redis_url() { printf 'redis://127.0.0.1:%s/0' "$1"; }
pg_url() { printf 'postgresql+asyncpg://%s:%s@127.0.0.1:%s/%s' "$PG_USER" "$PG_PASSWORD" "$1" "$DB"; }

# The settings every app instance and the worker share (see the header for the defaults).
export_app_env() {
    export REDIS_URL REDIS_RATE_LIMIT_URL REDIS_SESSION_URL DATABASE_URL DATABASE_READ_URLS
    REDIS_URL=$(redis_url "$REDIS_MAIN_PORT")
    REDIS_RATE_LIMIT_URL=$(redis_url "$REDIS_RATELIMIT_PORT")
    REDIS_SESSION_URL=$(redis_url "$REDIS_SESSIONS_PORT")
    DATABASE_URL=$(pg_url "$PG_PRIMARY_PORT")
    DATABASE_READ_URLS=$(pg_url "$PG_REPLICA_PORT")
    export ENVIRONMENT=${ENVIRONMENT:-development}
    export SHUTDOWN_DELAY=${SHUTDOWN_DELAY:-3}
    export GRACEFUL_TIMEOUT=${GRACEFUL_TIMEOUT:-10}
    export SESSION_COOKIE_SECURE=${SESSION_COOKIE_SECURE:-false}
    export SESSION_COOKIE_NAME=${SESSION_COOKIE_NAME:-session}
    export TRUSTED_PROXIES=${TRUSTED_PROXIES:-127.0.0.1/32}
    # One secret for the three instances (tokens minted on one are listed/revoked on another).
    export SECRET_KEY=${SECRET_KEY:-local-stack-secret-key-not-for-production}
    export HEALTH_INTERVAL=${HEALTH_INTERVAL:-1}
    export LOG_LEVEL=${LOG_LEVEL:-info}
    # One process per instance: /metrics needs no multiprocess directory.
    export WEB_CONCURRENCY=1
    unset PROMETHEUS_MULTIPROC_DIR
}

# ---------------------------------------------------------------------- up

start_redis() {
    local name=$1 port=$2
    shift 2
    running_pid "$name" >/dev/null && return 0
    mkdir -p "$DIR/$name"
    launch "$name" "$port" redis-server --bind 127.0.0.1 --port "$port" --dir "$DIR/$name" \
        --daemonize no --save '' --protected-mode yes "$@"
}

ensure_postgres() {
    if ! pg_ready "$PG_PRIMARY_PORT" || ! pg_ready "$PG_REPLICA_PORT"; then
        log "PostgreSQL of scripts/services.sh is down: starting it"
        bash "$ROOT/scripts/services.sh" start >/dev/null ||
            die "scripts/services.sh start failed"
    fi
    if [ "$(psql_on "$PG_PRIMARY_PORT" postgres \
            "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != 1 ]; then
        psql_on "$PG_PRIMARY_PORT" postgres "CREATE DATABASE $DB" ||
            die "could not create database $DB"
        log "created database $DB"
    fi
    local out
    out=$(logfile migrate)
    (cd "$DIR" && "$FLEETKIT" migrate) >"$out" 2>&1 || die "fleetkit migrate failed" "$out"
    if [ -n "${FLEETKIT_STACK_ADMIN_EMAIL:-}" ]; then
        out=$(logfile admin-create)
        (cd "$DIR" && printf '%s\n' "${FLEETKIT_STACK_ADMIN_PASSWORD:?}" |
            "$FLEETKIT" admin create "$FLEETKIT_STACK_ADMIN_EMAIL" --password-stdin) >"$out" 2>&1 ||
            die "fleetkit admin create failed" "$out"
    fi
    # The replica gets the database by streaming; until then reads use the primary anyway.
    wait_for - "database $DB on the replica ($PG_REPLICA_PORT)" replica_has_db
}

replica_has_db() { psql_on "$PG_REPLICA_PORT" "$DB" 'SELECT 1' >/dev/null 2>&1; }

start_app() {
    local n=$1 port=${APP_PORTS[$1 - 1]}
    running_pid "app-$n" >/dev/null && return 0
    mkdir -p "$DIR/app-$n/audit-spool"
    INSTANCE_ID=app-$n AUDIT_SPOOL_DIR=$DIR/app-$n/audit-spool \
        launch "app-$n" "$port" "$FLEETKIT" serve --host 127.0.0.1 --port "$port"
}

start_nginx() {
    running_pid nginx >/dev/null && return 0
    local prefix=$DIR/nginx
    mkdir -p "$prefix/fleetkit"
    cp "$ROOT/deployment/nginx/nginx.conf" "$prefix/nginx.conf"
    cp "$ROOT/deployment/nginx/listen.local.conf" "$prefix/fleetkit/listen.conf"
    cp "$ROOT/deployment/nginx/upstream.local.conf" "$prefix/fleetkit/upstream.conf"
    "$NGINX_BIN" -t -q -e stderr -p "$prefix/" -c "$prefix/nginx.conf" ||
        die "nginx -t failed for $prefix/nginx.conf"
    launch nginx "$NGINX_PORT" "$NGINX_BIN" -e stderr -p "$prefix/" -c "$prefix/nginx.conf" \
        -g 'daemon off;'
}

start_prometheus() {
    running_pid prometheus >/dev/null && return 0
    local run=$DIR/prometheus
    mkdir -p "$run/targets" "$run/data"
    cp "$ROOT/deployment/monitoring/prometheus.yml" "$ROOT/deployment/monitoring/alerts.yml" "$run/"
    cp "$ROOT"/deployment/monitoring/targets.local/*.yml "$run/targets/"
    launch prometheus "$PROMETHEUS_PORT" "$PROMETHEUS_BIN" --config.file="$run/prometheus.yml" \
        --storage.tsdb.path="$run/data" --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" \
        --storage.tsdb.retention.time=2d
}

cmd_up() {
    command -v redis-server >/dev/null || die "redis-server is missing (apt-get install redis-server)"
    [ -x "$NGINX_BIN" ] || die "nginx is missing (apt-get install nginx-light)"
    [ -x "$PROMETHEUS_BIN" ] || die "prometheus is missing (apt-get install prometheus)"
    [ -x "$FLEETKIT" ] || die "$FLEETKIT is missing (make install)"
    mkdir -p "$DIR/run" "$DIR/logs"
    export_app_env

    # The main Redis holds the audit streams: every acknowledged XADD is on disk.
    start_redis redis-main "$REDIS_MAIN_PORT" --appendonly yes --appendfsync always \
        --maxmemory-policy noeviction
    start_redis redis-ratelimit "$REDIS_RATELIMIT_PORT" --appendonly no \
        --maxmemory-policy volatile-ttl
    start_redis redis-sessions "$REDIS_SESSIONS_PORT" --appendonly yes --appendfsync everysec \
        --maxmemory-policy noeviction
    wait_for redis-main "redis-main" redis_ping "$REDIS_MAIN_PORT"
    wait_for redis-ratelimit "redis-ratelimit" redis_ping "$REDIS_RATELIMIT_PORT"
    wait_for redis-sessions "redis-sessions" redis_ping "$REDIS_SESSIONS_PORT"

    ensure_postgres

    local n
    for n in 1 2 3; do start_app "$n"; done
    if ! running_pid audit-worker >/dev/null; then
        INSTANCE_ID=audit-worker launch audit-worker - "$FLEETKIT" worker audit
    fi
    start_prometheus
    for n in 1 2 3; do
        wait_for "app-$n" "app-$n /health/ready on ${APP_PORTS[n - 1]}" \
            http_ok "${APP_PORTS[n - 1]}" /health/ready
    done
    start_nginx
    wait_for nginx "nginx on $NGINX_PORT answering /health/ready from an instance" \
        http_ok "$NGINX_PORT" /health/ready
    wait_for prometheus "prometheus on $PROMETHEUS_PORT" http_ok "$PROMETHEUS_PORT" /-/ready
    log "up: http://127.0.0.1:$NGINX_PORT (Prometheus http://127.0.0.1:$PROMETHEUS_PORT)"
}

# ---------------------------------------------------------------------- down / status

cmd_down() {
    local name pid pids=() deadline
    # The readiness watcher of earlier versions (it reloaded Nginx): stop a leftover one.
    if pid=$(running_pid upstreams); then
        kill -TERM "$pid" 2>/dev/null || true
        wait_gone 10 "upstreams:$pid"
    fi
    for name in "${PROCESSES[@]}"; do
        if pid=$(running_pid "$name"); then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$name:$pid")
        fi
        # Traffic stops before the apps drain, the worker drains after them, Redis goes last.
        if [[ $name =~ ^(nginx|app-3|audit-worker|prometheus)$ ]]; then
            wait_gone 30 "${pids[@]}"
            pids=()
        fi
    done
    wait_gone 30 "${pids[@]}"
    rm -f "$DIR"/run/*.pid
    log "down"
}

# wait_gone SECONDS NAME:PID...: wait for the processes to exit, SIGKILL them after SECONDS
wait_gone() {
    local limit=$1 item deadline alive
    shift
    deadline=$((SECONDS + limit))
    while :; do
        alive=()
        for item in "$@"; do
            kill -0 "${item#*:}" 2>/dev/null && alive+=("$item")
        done
        [ ${#alive[@]} -eq 0 ] && return 0
        if ((SECONDS >= deadline)); then
            for item in "${alive[@]}"; do
                log "${item%%:*} did not stop in ${limit}s: SIGKILL"
                kill -KILL "${item#*:}" 2>/dev/null || true
            done
            return 0
        fi
        sleep 0.1
    done
}

cmd_status() {
    local name pid bad=0 detail
    for name in "${PROCESSES[@]}"; do
        detail=""
        case $name in
            nginx) detail="127.0.0.1:$NGINX_PORT" ;;
            app-*) detail="127.0.0.1:${APP_PORTS[${name#app-} - 1]}" ;;
            redis-main) detail="127.0.0.1:$REDIS_MAIN_PORT" ;;
            redis-ratelimit) detail="127.0.0.1:$REDIS_RATELIMIT_PORT" ;;
            redis-sessions) detail="127.0.0.1:$REDIS_SESSIONS_PORT" ;;
            prometheus) detail="127.0.0.1:$PROMETHEUS_PORT" ;;
        esac
        if pid=$(running_pid "$name"); then
            printf '%-16s %-6s pid %-8s %s\n' "$name" up "$pid" "$detail"
        else
            printf '%-16s %-6s %-12s %s\n' "$name" down "" "$detail"
            bad=1
        fi
    done
    return "$bad"
}

cmd_env() {
    export_app_env
    printf 'export FLEETKIT_STACK_URL=http://127.0.0.1:%s\n' "$NGINX_PORT"
    printf 'export REDIS_URL=%q REDIS_RATE_LIMIT_URL=%q REDIS_SESSION_URL=%q\n' \
        "$REDIS_URL" "$REDIS_RATE_LIMIT_URL" "$REDIS_SESSION_URL"
    printf 'export DATABASE_URL=%q DATABASE_READ_URLS=%q\n' "$DATABASE_URL" "$DATABASE_READ_URLS"
}

case ${1:-} in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) cmd_env ;;
    *) printf 'usage: %s up|down|status|env\n' "$0" >&2; exit 2 ;;
esac
