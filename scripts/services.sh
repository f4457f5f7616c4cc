#!/usr/bin/env bash
# Start/stop the real services the fleetkit test suite needs, on loopback only,
# with all data, configs, logs and pid files under $FLEETKIT_SERVICES_DIR.
#
# Usage: scripts/services.sh start|stop|status|env|replica-stop|replica-start
#
#   start          install redis/postgresql from apt if missing, then start every
#                  service and wait until it is ready (idempotent)
#   stop           stop everything and wipe service data (TLS certs are kept)
#   status         one line per service; exit status 1 if any is down
#   env            print `export` lines with the URLs the tests read
#                  (use: eval "$(scripts/services.sh env)")
#   replica-stop   stop the PostgreSQL replica only (failover tests)
#   replica-start  start the PostgreSQL replica again and wait until it streams
#
# Port map (all on 127.0.0.1):
#   6390         redis standalone (default user passwordless, ACL user fleetkit)
#   6391         redis TLS only (self-signed CA in $DIR/tls/ca.crt)
#   6392/6393    redis primary/replica watched by sentinel
#   26390        redis sentinel, master name "fleetkit"
#   7000-7005    redis cluster (3 masters + 3 replicas)
#   5440/5441    postgresql 15 primary / streaming replica
#
# Environment: FLEETKIT_SERVICES_DIR (default /tmp/fleetkit-services),
#              FLEETKIT_SERVICES_TIMEOUT (seconds per readiness wait, default 30).
set -euo pipefail

DIR=${FLEETKIT_SERVICES_DIR:-/tmp/fleetkit-services}
case $DIR in /*) ;; *) DIR=$PWD/$DIR ;; esac
DIR=${DIR%/}
TIMEOUT=${FLEETKIT_SERVICES_TIMEOUT:-30}

REDIS_PORT=6390
TLS_PORT=6391
SENT_PRIMARY_PORT=6392
SENT_REPLICA_PORT=6393
SENTINEL_PORT=26390
SENTINEL_MASTER=fleetkit
CLUSTER_PORTS=(7000 7001 7002 7003 7004 7005)
PG_PRIMARY_PORT=5440
PG_REPLICA_PORT=5441

TLS_DIR=$DIR/tls
PG_ROOT=$DIR/pg
PG_SOCK=$PG_ROOT/sock

# Keep the user's client environment from redirecting our psql/redis-cli calls.
export PGCONNECT_TIMEOUT=5
unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGPASSWORD PGPASSFILE PGSERVICE \
    PGSERVICEFILE PGSSLMODE PGOPTIONS PGDATA PGTARGETSESSIONATTRS REDISCLI_AUTH

log() { printf 'services: %s\n' "$*"; }
die() { printf 'services: ERROR: %s\n' "$*" >&2; exit 1; }

# die with the tail of a log file
die_log() {
    local msg=$1 file=$2
    printf 'services: ERROR: %s\n' "$msg" >&2
    if [ -f "$file" ]; then
        printf 'services: --- last lines of %s ---\n' "$file" >&2
        tail -n 25 "$file" >&2 || true
        printf 'services: ---\n' >&2
    fi
    exit 1
}

# wait_for DESCRIPTION LOGFILE COMMAND...: poll COMMAND until it succeeds or TIMEOUT passes
wait_for() {
    local desc=$1 logfile=$2
    shift 2
    local deadline=$((SECONDS + TIMEOUT))
    until "$@"; do
        if ((SECONDS >= deadline)); then
            die_log "timed out after ${TIMEOUT}s waiting for $desc" "$logfile"
        fi
        sleep 0.2
    done
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port_closed() { ! port_open "$1"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

apt_install() {
    log "installing $* from apt"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# ---------------------------------------------------------------- redis helpers

# redis-cli never times out on its own: a foreign listener on a port would hang it
rcli() { timeout 5 redis-cli -h 127.0.0.1 -p "$1" "${@:2}"; }
rcli_tls() { timeout 5 redis-cli -h 127.0.0.1 -p "$TLS_PORT" --tls --cacert "$TLS_DIR/ca.crt" "$@"; }

redis_ping() { [ "$(rcli "$1" ping 2>/dev/null)" = PONG ]; }
tls_ping() { [ -f "$TLS_DIR/ca.crt" ] && [ "$(rcli_tls ping 2>/dev/null)" = PONG ]; }

# redis_common_conf PORT DIR: config lines shared by every redis data node
redis_common_conf() {
    cat <<EOF
bind 127.0.0.1
port $1
protected-mode yes
daemonize yes
pidfile "$2/redis.pid"
logfile "$2/redis.log"
dir "$2"
save ""
appendonly no
enable-debug-command local
repl-diskless-sync-delay 0
EOF
}

# launch_redis NAME PORT DIR: start redis-server with DIR/redis.conf (it daemonizes)
launch_redis() {
    local name=$1 port=$2 dir=$3
    if ! redis-server "$dir/redis.conf" >>"$dir/redis.log" 2>&1 9>&-; then
        die_log "$name (port $port) failed to start" "$dir/redis.log"
    fi
}

already_or_free() { # NAME PORT PING_FUNC [quiet] -> 0 if already running, 1 if port free; dies if foreign
    local name=$1 port=$2 ping=$3
    if "$ping" "$port"; then
        [ -n "${4:-}" ] || log "$name on $port already running"
        return 0
    fi
    if port_open "$port"; then
        die "port $port is in use by something that is not our $name (see: ss -ltnp 'sport = :$port')"
    fi
    return 1
}

make_tls_certs() {
    if [ -s "$TLS_DIR/ca.crt" ] && [ -s "$TLS_DIR/redis.crt" ] && [ -s "$TLS_DIR/redis.key" ]; then
        return 0
    fi
    log "creating self-signed CA and server certificate in $TLS_DIR"
    local tmp
    tmp=$(mktemp -d "$DIR/tls.tmp.XXXXXX")
    (
        cd "$tmp"
        openssl req -x509 -new -nodes -newkey rsa:2048 -sha256 -days 3650 \
            -keyout ca.key -out ca.crt -subj "/CN=fleetkit test CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" \
            -addext "subjectKeyIdentifier=hash" 2>/dev/null
        openssl req -new -nodes -newkey rsa:2048 -sha256 \
            -keyout redis.key -out redis.csr -subj "/CN=127.0.0.1" 2>/dev/null
        cat >redis.ext <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid,issuer
EOF
        openssl x509 -req -in redis.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
            -sha256 -days 825 -extfile redis.ext -out redis.crt 2>/dev/null
        chmod 600 ca.key redis.key
        rm -f redis.csr redis.ext ca.srl
    ) || { rm -rf "$tmp"; die "openssl failed to create TLS certificates"; }
    mkdir -p "$TLS_DIR"
    mv -f "$tmp"/* "$TLS_DIR"/
    rmdir "$tmp"
}

start_redis_standalone() {
    local d=$DIR/redis-$REDIS_PORT
    already_or_free "redis standalone" "$REDIS_PORT" redis_ping && return 0
    mkdir -p "$d"
    {
        redis_common_conf "$REDIS_PORT" "$d"
        echo 'user fleetkit on >fleetkit-secret ~* &* +@all'
    } >"$d/redis.conf"
    launch_redis "redis standalone" "$REDIS_PORT" "$d"
    wait_for "redis standalone on $REDIS_PORT" "$d/redis.log" redis_ping "$REDIS_PORT"
    log "redis standalone on $REDIS_PORT up"
}

start_redis_tls() {
    local d=$DIR/redis-$TLS_PORT
    make_tls_certs
    already_or_free "redis TLS" "$TLS_PORT" tls_ping && return 0
    mkdir -p "$d"
    {
        redis_common_conf 0 "$d"
        cat <<EOF
tls-port $TLS_PORT
tls-cert-file "$TLS_DIR/redis.crt"
tls-key-file "$TLS_DIR/redis.key"
tls-ca-cert-file "$TLS_DIR/ca.crt"
tls-auth-clients no
EOF
    } >"$d/redis.conf"
    launch_redis "redis TLS" "$TLS_PORT" "$d"
    wait_for "redis TLS on $TLS_PORT" "$d/redis.log" tls_ping
    log "redis TLS on $TLS_PORT up"
}

sentinel_ping() { [ "$(rcli "$SENTINEL_PORT" ping 2>/dev/null)" = PONG ]; }

# prints the master address the sentinel reports, as host:port
sentinel_master_addr() {
    local out
    out=$(rcli "$SENTINEL_PORT" sentinel get-master-addr-by-name "$SENTINEL_MASTER" 2>/dev/null) || return 1
    out=${out//$'\n'/:}
    [[ $out == *:* ]] || return 1
    printf '%s\n' "$out"
}

sentinel_has_master() { sentinel_master_addr >/dev/null; }

sentinel_knows_master() { [ "$(sentinel_master_addr)" = "127.0.0.1:$SENT_PRIMARY_PORT" ]; }

sentinel_knows_replica() {
    local out
    out=$(rcli "$SENTINEL_PORT" sentinel replicas "$SENTINEL_MASTER" 2>/dev/null) || return 1
    [[ $out == *"127.0.0.1:$SENT_REPLICA_PORT"* ]]
}

replica_linked() {
    local out
    out=$(rcli "$SENT_REPLICA_PORT" info replication 2>/dev/null) || return 1
    [[ $out == *master_link_status:up* ]]
}

# prints "role:master" or "role:slave master_link_status:up" of the redis on PORT
redis_role() {
    rcli "$1" info replication 2>/dev/null | tr -d '\r' | grep -E '^(role|master_link_status):' | paste -sd' ' || true
}

start_redis_sentinel_setup() {
    local pd=$DIR/redis-$SENT_PRIMARY_PORT rd=$DIR/redis-$SENT_REPLICA_PORT sd=$DIR/sentinel-$SENTINEL_PORT
    local sentinel_running=0
    sentinel_ping && sentinel_running=1

    if ! already_or_free "redis sentinel primary" "$SENT_PRIMARY_PORT" redis_ping; then
        mkdir -p "$pd"
        redis_common_conf "$SENT_PRIMARY_PORT" "$pd" >"$pd/redis.conf"
        launch_redis "redis sentinel primary" "$SENT_PRIMARY_PORT" "$pd"
    fi
    if ! already_or_free "redis sentinel replica" "$SENT_REPLICA_PORT" redis_ping; then
        mkdir -p "$rd"
        {
            redis_common_conf "$SENT_REPLICA_PORT" "$rd"
            echo "replicaof 127.0.0.1 $SENT_PRIMARY_PORT"
        } >"$rd/redis.conf"
        launch_redis "redis sentinel replica" "$SENT_REPLICA_PORT" "$rd"
    fi
    wait_for "redis sentinel primary on $SENT_PRIMARY_PORT" "$pd/redis.log" redis_ping "$SENT_PRIMARY_PORT"
    wait_for "redis sentinel replica on $SENT_REPLICA_PORT" "$rd/redis.log" redis_ping "$SENT_REPLICA_PORT"

    if ((sentinel_running)); then
        # it may have failed over (tests do that): accept whichever master it reports
        wait_for "sentinel to report a master for $SENTINEL_MASTER" "$sd/redis.log" sentinel_has_master
        log "redis sentinel on $SENTINEL_PORT already running (master $SENTINEL_MASTER at $(sentinel_master_addr))"
        return 0
    else
        if port_open "$SENTINEL_PORT"; then
            die "port $SENTINEL_PORT is in use by something that is not our sentinel"
        fi
        # No sentinel is managing the pair: make sure 6392 is primary and 6393 its replica
        # (a previous failover may have swapped them).
        rcli "$SENT_PRIMARY_PORT" replicaof no one >/dev/null
        rcli "$SENT_REPLICA_PORT" replicaof 127.0.0.1 "$SENT_PRIMARY_PORT" >/dev/null
        mkdir -p "$sd"
        # sentinel rewrites its config file, so write it fresh on every start
        cat >"$sd/sentinel.conf" <<EOF
bind 127.0.0.1
port $SENTINEL_PORT
daemonize yes
pidfile "$sd/redis.pid"
logfile "$sd/redis.log"
dir "$sd"
sentinel monitor $SENTINEL_MASTER 127.0.0.1 $SENT_PRIMARY_PORT 1
sentinel down-after-milliseconds $SENTINEL_MASTER 5000
sentinel failover-timeout $SENTINEL_MASTER 15000
sentinel parallel-syncs $SENTINEL_MASTER 1
EOF
        if ! redis-server "$sd/sentinel.conf" --sentinel >>"$sd/redis.log" 2>&1 9>&-; then
            die_log "redis sentinel (port $SENTINEL_PORT) failed to start" "$sd/redis.log"
        fi
        wait_for "redis sentinel on $SENTINEL_PORT" "$sd/redis.log" sentinel_ping
    fi
    wait_for "redis replica $SENT_REPLICA_PORT link to primary (master_link_status:up)" "$rd/redis.log" replica_linked
    wait_for "sentinel to report master $SENTINEL_MASTER at 127.0.0.1:$SENT_PRIMARY_PORT" "$sd/redis.log" sentinel_knows_master
    wait_for "sentinel to discover replica 127.0.0.1:$SENT_REPLICA_PORT" "$sd/redis.log" sentinel_knows_replica
    log "redis sentinel on $SENTINEL_PORT up (master $SENTINEL_MASTER: $SENT_PRIMARY_PORT, replica: $SENT_REPLICA_PORT)"
}

cluster_info() { rcli "$1" cluster info 2>/dev/null; }

cluster_node_ok() {
    local out
    out=$(cluster_info "$1") || return 1
    [[ $out == *cluster_state:ok* && $out == *cluster_slots_ok:16384* && $out == *"cluster_known_nodes:${#CLUSTER_PORTS[@]}"* ]]
}

cluster_all_ok() {
    local p
    for p in "${CLUSTER_PORTS[@]}"; do
        cluster_node_ok "$p" || return 1
    done
}

start_redis_cluster() {
    local p d
    for p in "${CLUSTER_PORTS[@]}"; do
        d=$DIR/redis-$p
        if ! already_or_free "redis cluster node" "$p" redis_ping quiet; then
            [ -f "$d/nodes.conf" ] && log "restarting redis cluster node on $p (it rejoins with its nodes.conf)"
            mkdir -p "$d"
            {
                redis_common_conf "$p" "$d"
                cat <<EOF
cluster-enabled yes
cluster-config-file "$d/nodes.conf"
cluster-node-timeout 2000
EOF
            } >"$d/redis.conf"
            launch_redis "redis cluster node" "$p" "$d"
        fi
    done
    for p in "${CLUSTER_PORTS[@]}"; do
        wait_for "redis cluster node on $p" "$DIR/redis-$p/redis.log" redis_ping "$p"
    done
    if cluster_all_ok; then
        log "redis cluster on ${CLUSTER_PORTS[0]}-${CLUSTER_PORTS[-1]} already running"
        return 0
    fi
    # create only when no node has any slot or peer yet (fresh nodes)
    local fresh=1 out
    for p in "${CLUSTER_PORTS[@]}"; do
        out=$(cluster_info "$p") || out=
        if [[ $out != *cluster_slots_assigned:0* || $out != *cluster_known_nodes:1* ]]; then
            fresh=0
        fi
    done
    if ((fresh)); then
        local addrs=()
        for p in "${CLUSTER_PORTS[@]}"; do addrs+=("127.0.0.1:$p"); done
        if ! timeout 60 redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes \
            >"$DIR/cluster-create.log" 2>&1; then
            die_log "redis-cli --cluster create failed" "$DIR/cluster-create.log"
        fi
    fi
    for p in "${CLUSTER_PORTS[@]}"; do
        wait_for "cluster_state:ok on node $p (if this persists: '$0 stop' wipes cluster data)" \
            "$DIR/redis-$p/redis.log" cluster_node_ok "$p"
    done
    log "redis cluster on ${CLUSTER_PORTS[0]}-${CLUSTER_PORTS[-1]} up"
}

# ----------------------------------------------------------- postgresql helpers

PG_BIN=
find_pg_bin() {
    local d
    for d in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/pg_basebackup" ]; then
            PG_BIN=$d
            return 0
        fi
    done
    if command -v pg_config >/dev/null 2>&1; then
        d=$(pg_config --bindir)
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
            PG_BIN=$d
            return 0
        fi
    fi
    return 1
}

PG_USER=postgres
# as_pg CMD...: run a postgres server tool as the postgres system user (postgres refuses root)
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        (cd "$PG_ROOT" && runuser -u "$PG_USER" -- "$@" 9>&-)
    else
        (cd "$PG_ROOT" && "$@" 9>&-)
    fi
}

pgq() { # PORT SQL [DB]: run SQL as the postgres superuser, print unaligned tuples
    "$PG_BIN/psql" -X -A -t -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -d "${3:-postgres}" -c "$2"
}

pg_ready() { [ -n "$PG_BIN" ] && "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$1" >/dev/null 2>&1; }

replica_in_recovery() { [ "$(pgq "$PG_REPLICA_PORT" 'SELECT pg_is_in_recovery()' 2>/dev/null)" = t ]; }

replica_streaming() {
    local n
    n=$(pgq "$PG_PRIMARY_PORT" "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'" 2>/dev/null) || return 1
    [ "${n:-0}" -ge 1 ]
}

pg_prepare() {
    if ! find_pg_bin; then
        apt_install postgresql
        find_pg_bin || die "PostgreSQL server binaries not found even after installing postgresql"
    fi
    if [ "$(id -u)" -eq 0 ]; then
        if ! id -u "$PG_USER" >/dev/null 2>&1; then
            log "creating system user $PG_USER"
            useradd --system --user-group --no-create-home --shell /usr/sbin/nologin "$PG_USER"
        fi
        if ! runuser -u "$PG_USER" -- test -x "$DIR"; then
            die "$DIR is not traversable by user $PG_USER (check the permissions of its parent directories)"
        fi
    else
        PG_USER=$(id -un)
    fi
    mkdir -p "$PG_ROOT/sock"
    chmod 0755 "$PG_ROOT"
    if [ "$(id -u)" -eq 0 ]; then
        chown "$PG_USER:" "$PG_ROOT" "$PG_ROOT/sock"
    fi
}

pg_conf() { # PORT: settings appended to postgresql.conf
    cat <<EOF

# --- fleetkit test service settings ---
listen_addresses = '127.0.0.1'
port = $1
unix_socket_directories = '$PG_SOCK'
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
wal_keep_size = 256MB
hot_standby = on
hot_standby_feedback = on
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 300
shared_buffers = 128MB
EOF
}

pg_start_dir() { # NAME PORT DATADIR
    local name=$1 port=$2 data=$3 logf=$PG_ROOT/$2.log
    if ! as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$logf" -w -t "$TIMEOUT" start >/dev/null 2>&1; then
        die_log "PostgreSQL $name (port $port) failed to start" "$logf"
    fi
    wait_for "PostgreSQL $name on $port" "$logf" pg_ready "$port"
}

start_pg_primary() {
    local data=$PG_ROOT/$PG_PRIMARY_PORT started=1
    if pg_ready "$PG_PRIMARY_PORT"; then
        [ -d "$data" ] || die "port $PG_PRIMARY_PORT answers but $data does not exist: a foreign PostgreSQL?"
        log "PostgreSQL primary on $PG_PRIMARY_PORT already running"
        started=0
    else
        port_open "$PG_PRIMARY_PORT" && die "port $PG_PRIMARY_PORT is in use by something else"
        if [ ! -f "$data/PG_VERSION" ]; then
            log "initdb PostgreSQL primary"
            local tmp=$PG_ROOT/$PG_PRIMARY_PORT.init
            rm -rf "$tmp"
            if ! as_pg "$PG_BIN/initdb" -D "$tmp" -U postgres -A trust -E UTF8 --locale=C \
                --no-sync --no-instructions >"$PG_ROOT/initdb.log" 2>&1; then
                die_log "initdb failed" "$PG_ROOT/initdb.log"
            fi
            pg_conf "$PG_PRIMARY_PORT" >>"$tmp/postgresql.conf"
            cat >"$tmp/pg_hba.conf" <<'EOF'
# loopback-only test service: trust everything local
local   all           all                   trust
local   replication   all                   trust
host    all           all   127.0.0.1/32    trust
host    replication   all   127.0.0.1/32    trust
EOF
            mv "$tmp" "$data"
        fi
        pg_start_dir primary "$PG_PRIMARY_PORT" "$data"
    fi
    pgq "$PG_PRIMARY_PORT" "DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fleetkit') THEN
    CREATE ROLE fleetkit LOGIN SUPERUSER REPLICATION PASSWORD 'fleetkit';
  END IF;
END \$\$;" >/dev/null
    if [ "$(pgq "$PG_PRIMARY_PORT" "SELECT 1 FROM pg_database WHERE datname = 'fleetkit'")" != 1 ]; then
        pgq "$PG_PRIMARY_PORT" "CREATE DATABASE fleetkit OWNER fleetkit" >/dev/null
    fi
    ((started == 0)) || log "PostgreSQL primary on $PG_PRIMARY_PORT up"
}

replica_caught_up() { # LSN: replica has replayed up to LSN
    [ "$(pgq "$PG_REPLICA_PORT" "SELECT pg_last_wal_replay_lsn() >= '$1'::pg_lsn" 2>/dev/null)" = t ]
}

wait_replica_streaming() {
    local logf=$PG_ROOT/$PG_REPLICA_PORT.log lsn
    wait_for "PostgreSQL replica on $PG_REPLICA_PORT to be in recovery" "$logf" replica_in_recovery
    wait_for "PostgreSQL replica on $PG_REPLICA_PORT to stream from the primary" "$logf" replica_streaming
    # and to have replayed everything the primary wrote so far (e.g. while it was stopped)
    lsn=$(pgq "$PG_PRIMARY_PORT" 'SELECT pg_current_wal_lsn()')
    wait_for "PostgreSQL replica on $PG_REPLICA_PORT to replay up to $lsn" "$logf" replica_caught_up "$lsn"
}

start_pg_replica() {
    local data=$PG_ROOT/$PG_REPLICA_PORT started=1
    if pg_ready "$PG_REPLICA_PORT"; then
        [ -d "$data" ] || die "port $PG_REPLICA_PORT answers but $data does not exist: a foreign PostgreSQL?"
        started=0
    else
        port_open "$PG_REPLICA_PORT" && die "port $PG_REPLICA_PORT is in use by something else"
        if [ ! -f "$data/standby.signal" ]; then
            log "pg_basebackup PostgreSQL replica from $PG_PRIMARY_PORT"
            local tmp=$PG_ROOT/$PG_REPLICA_PORT.init
            rm -rf "$tmp"
            if ! as_pg "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$PG_PRIMARY_PORT" -U postgres \
                -D "$tmp" -R -X stream -c fast --no-sync >"$PG_ROOT/basebackup.log" 2>&1; then
                die_log "pg_basebackup failed" "$PG_ROOT/basebackup.log"
            fi
            printf '\nport = %s\n' "$PG_REPLICA_PORT" >>"$tmp/postgresql.conf"
            mv "$tmp" "$data"
        fi
        pg_start_dir replica "$PG_REPLICA_PORT" "$data"
    fi
    wait_replica_streaming
    if ((started)); then
        log "PostgreSQL replica on $PG_REPLICA_PORT up (streaming)"
    else
        log "PostgreSQL replica on $PG_REPLICA_PORT already running (streaming)"
    fi
}

pg_stop_dir() { # NAME DATADIR
    local name=$1 data=$2
    [ -f "$data/postmaster.pid" ] || return 0
    find_pg_bin || die "cannot stop PostgreSQL $name: server binaries not found"
    if ! as_pg "$PG_BIN/pg_ctl" -D "$data" -m fast -w -t "$TIMEOUT" stop >/dev/null 2>&1; then
        # pg_ctl fails when the pid file is stale; only report a real failure
        if [ -f "$data/postmaster.pid" ] && as_pg "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
            printf 'services: ERROR: could not stop PostgreSQL %s (%s)\n' "$name" "$data" >&2
            return 1
        fi
    fi
    log "stopped PostgreSQL $name"
}

# ------------------------------------------------------------------- stopping

pid_is_redis() { # PID
    local cmd
    cmd=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
    [[ $cmd == *redis* ]]
}

# stop_redis NAME DIR PORT [redis-cli args...]
stop_redis() {
    local name=$1 d=$2 port=$3
    shift 3
    local pid=
    [ -f "$d/redis.pid" ] && pid=$(cat "$d/redis.pid" 2>/dev/null || true)
    if [ -n "$pid" ] && pid_is_redis "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
    elif [ "$(rcli "$port" "$@" ping 2>/dev/null)" = PONG ]; then
        rcli "$port" "$@" shutdown nosave >/dev/null 2>&1 || true
        pid=
    else
        return 0
    fi
    local i
    for ((i = 0; i < 50; i++)); do
        if [ -n "$pid" ]; then
            pid_is_redis "$pid" || break
        else
            port_open "$port" || break
        fi
        sleep 0.1
    done
    if [ -n "$pid" ] && pid_is_redis "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
    fi
    rm -f "$d/redis.pid"
    log "stopped $name ($port)"
}

do_stop() {
    local failed=0 p
    if command -v redis-cli >/dev/null 2>&1; then
        # sentinel first so it does not react to the primary going away
        stop_redis "redis sentinel" "$DIR/sentinel-$SENTINEL_PORT" "$SENTINEL_PORT"
        stop_redis "redis standalone" "$DIR/redis-$REDIS_PORT" "$REDIS_PORT"
        stop_redis "redis TLS" "$DIR/redis-$TLS_PORT" "$TLS_PORT" --tls --cacert "$TLS_DIR/ca.crt"
        stop_redis "redis sentinel replica" "$DIR/redis-$SENT_REPLICA_PORT" "$SENT_REPLICA_PORT"
        stop_redis "redis sentinel primary" "$DIR/redis-$SENT_PRIMARY_PORT" "$SENT_PRIMARY_PORT"
        for p in "${CLUSTER_PORTS[@]}"; do
            stop_redis "redis cluster node" "$DIR/redis-$p" "$p"
        done
    fi
    pg_stop_dir replica "$PG_ROOT/$PG_REPLICA_PORT" || failed=1
    pg_stop_dir primary "$PG_ROOT/$PG_PRIMARY_PORT" || failed=1
    for p in "$REDIS_PORT" "$TLS_PORT" "$SENT_PRIMARY_PORT" "$SENT_REPLICA_PORT" "$SENTINEL_PORT" \
        "${CLUSTER_PORTS[@]}" "$PG_PRIMARY_PORT" "$PG_REPLICA_PORT"; do
        if port_open "$p"; then
            printf 'services: ERROR: something still listens on 127.0.0.1:%s\n' "$p" >&2
            failed=1
        fi
    done
    if ((failed)); then
        die "stop incomplete; service data in $DIR left in place"
    fi
    # wipe service data so the next start is from scratch (TLS certs are kept)
    rm -rf "$DIR"/redis-[0-9]* "$DIR"/sentinel-[0-9]* "$PG_ROOT" "$DIR"/tls.tmp.* "$DIR/cluster-create.log"
    log "all services stopped"
}

# --------------------------------------------------------------------- status

do_status() {
    find_pg_bin || true
    local bad=0 out have_cli=0
    command -v redis-cli >/dev/null 2>&1 && have_cli=1
    line() { # NAME PORTS CHECK-FUNC [ARGS...]; DETAIL in $out
        local name=$1 ports=$2 state=down
        shift 2
        if "$@"; then state=up; else bad=1; fi
        printf '%-24s %-10s %-5s%s\n' "$name" "$ports" "$state" "${out:+ $out}"
        out=
    }
    r() { ((have_cli)) && "$@"; }

    line redis-standalone "$REDIS_PORT" r redis_ping "$REDIS_PORT"
    line redis-tls "$TLS_PORT" r tls_ping
    r redis_ping "$SENT_PRIMARY_PORT" && out=$(redis_role "$SENT_PRIMARY_PORT")
    line redis-sentinel-primary "$SENT_PRIMARY_PORT" r redis_ping "$SENT_PRIMARY_PORT"
    r redis_ping "$SENT_REPLICA_PORT" && out=$(redis_role "$SENT_REPLICA_PORT")
    line redis-sentinel-replica "$SENT_REPLICA_PORT" r redis_ping "$SENT_REPLICA_PORT"
    r sentinel_ping && out="master $SENTINEL_MASTER at $(sentinel_master_addr || echo '?')"
    line redis-sentinel "$SENTINEL_PORT" r sentinel_has_master
    line redis-cluster "${CLUSTER_PORTS[0]}-${CLUSTER_PORTS[-1]}" r cluster_all_ok
    line pg-primary "$PG_PRIMARY_PORT" pg_ready "$PG_PRIMARY_PORT"
    if pg_ready "$PG_REPLICA_PORT"; then
        if replica_in_recovery && replica_streaming; then out=streaming; else out="NOT streaming"; fi
    fi
    line pg-replica "$PG_REPLICA_PORT" pg_ready "$PG_REPLICA_PORT"
    return "$bad"
}

# ------------------------------------------------------------------------ env

shquote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

do_env() {
    local k v
    while read -r k v; do
        printf 'export %s=%s\n' "$k" "$(shquote "$v")"
    done <<EOF
FLEETKIT_TEST_REDIS_URL redis://127.0.0.1:$REDIS_PORT/0
FLEETKIT_TEST_REDIS_ACL_URL redis://fleetkit:fleetkit-secret@127.0.0.1:$REDIS_PORT/0
FLEETKIT_TEST_REDIS_TLS_URL rediss://127.0.0.1:$TLS_PORT/0?ssl_ca_certs=$TLS_DIR/ca.crt
FLEETKIT_TEST_REDIS_SENTINEL_URL redis+sentinel://127.0.0.1:$SENTINEL_PORT/$SENTINEL_MASTER
FLEETKIT_TEST_REDIS_CLUSTER_URL redis+cluster://127.0.0.1:${CLUSTER_PORTS[0]}
FLEETKIT_TEST_PG_PRIMARY_URL postgresql://fleetkit:fleetkit@127.0.0.1:$PG_PRIMARY_PORT/fleetkit
FLEETKIT_TEST_PG_REPLICA_URL postgresql://fleetkit:fleetkit@127.0.0.1:$PG_REPLICA_PORT/fleetkit
FLEETKIT_SERVICES_DIR $DIR
EOF
}

# ----------------------------------------------------------------------- main

prepare_dir() {
    case $DIR in
        / | *[[:space:]\'\"\\]*) die "unsupported FLEETKIT_SERVICES_DIR '$DIR' (no root, whitespace or quotes)" ;;
    esac
    mkdir -p "$DIR"
    chmod 0755 "$DIR"
}

# Serialize start/stop/replica-* per directory. fd 9 holds the lock; every daemon is
# launched with 9>&- so that it does not inherit (and keep holding) the lock.
lock_dir() {
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$DIR/services.lock"
        flock -w 120 9 || die "another services.sh has been busy in $DIR for 120s (lock: $DIR/services.lock)"
    fi
}

do_start() {
    local t0=$SECONDS
    if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
        apt_install redis-server redis-tools
    fi
    command -v openssl >/dev/null 2>&1 || apt_install openssl
    pg_prepare
    start_redis_standalone
    start_redis_tls
    start_redis_sentinel_setup
    start_redis_cluster
    start_pg_primary
    start_pg_replica
    log "all services up in $((SECONDS - t0))s (dir: $DIR)"
}

usage() {
    echo "usage: $0 start|stop|status|env|replica-stop|replica-start" >&2
    exit 2
}

[ $# -eq 1 ] || usage
case $1 in
    start)
        prepare_dir
        lock_dir
        do_start
        ;;
    stop)
        [ -d "$DIR" ] || { log "nothing to stop ($DIR does not exist)"; exit 0; }
        lock_dir
        do_stop
        ;;
    status)
        do_status
        ;;
    env)
        do_env
        ;;
    replica-stop)
        [ -d "$PG_ROOT/$PG_REPLICA_PORT" ] || die "no PostgreSQL replica in $PG_ROOT (run start first)"
        lock_dir
        pg_stop_dir replica "$PG_ROOT/$PG_REPLICA_PORT"
        wait_for "PostgreSQL replica on $PG_REPLICA_PORT to stop" "$PG_ROOT/$PG_REPLICA_PORT.log" \
            port_closed "$PG_REPLICA_PORT"
        ;;
    replica-start)
        [ -d "$PG_ROOT/$PG_REPLICA_PORT" ] || die "no PostgreSQL replica in $PG_ROOT (run start first)"
        lock_dir
        pg_prepare
        pg_ready "$PG_PRIMARY_PORT" || die "PostgreSQL primary on $PG_PRIMARY_PORT is not running (run start)"
        start_pg_replica
        ;;
    *)
        usage
        ;;
esac
