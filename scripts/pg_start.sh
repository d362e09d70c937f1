#!/usr/bin/env bash
# Start a PostgreSQL server for the tests, idempotently, from Debian's PostgreSQL binaries
# (no systemd, no Debian cluster: a cluster of our own under $UWS_PG_DIR).
#   - listens on 127.0.0.1 only, on port 55432 (or the first free port up to 55451);
#     trust authentication (tests only);
#   - role `uws` (LOGIN CREATEDB) and database `uws_test` owned by it;
#   - the pgSphere extension in uws_test and template1 (when Debian's package is there).
# Progress goes to stderr; stdout gets exactly one line, the SQLAlchemy URL, e.g.
#   postgresql+psycopg://uws@127.0.0.1:55432/uws_test
# so that:  UWS_TEST_DATABASE_URL="$(bash scripts/pg_start.sh)"
# Running it again while the server runs only prints the URL.
#
# Env: UWS_PG_DIR   cluster directory (default /var/tmp/uws-pg); data in $UWS_PG_DIR/data,
#                   log in $UWS_PG_DIR/postgresql.log, the URL also in $UWS_PG_DIR/url
#      UWS_PG_PORT  use exactly this port (fail if it is taken) instead of choosing one
set -euo pipefail

PG_DIR="${UWS_PG_DIR:-/var/tmp/uws-pg}"
DATA="$PG_DIR/data"
SOCK_DIR="$PG_DIR/run"
PG_LOG="$PG_DIR/postgresql.log"
PORT_FILE="$PG_DIR/port"
URL_FILE="$PG_DIR/url"
DB_ROLE=uws
DB_NAME=uws_test
PORT_FIRST=55432
PORT_LAST=55451

log() { printf '[pg_start] %s\n' "$*" >&2; }
die() {
    printf '[pg_start] ERROR: %s\n' "$*" >&2
    if [ -f "$PG_LOG" ]; then
        printf '[pg_start] --- last lines of %s ---\n' "$PG_LOG" >&2
        tail -n 15 "$PG_LOG" >&2 || true
    fi
    exit 1
}

# Debian's server binaries: /usr/lib/postgresql/<major>/bin (newest major).
PG_BIN=""
for d in $(compgen -G '/usr/lib/postgresql/*/bin' | sort -V); do
    [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ] && PG_BIN="$d"
done
if [ -z "$PG_BIN" ] && command -v pg_ctl >/dev/null 2>&1; then
    PG_BIN="$(dirname "$(command -v pg_ctl)")"
fi
[ -n "$PG_BIN" ] || die "PostgreSQL server binaries not found: run scripts/install_test_deps.sh first (Debian: postgresql)"
PG_MAJOR="$("$PG_BIN/postgres" --version | sed -E 's/.* ([0-9]+)(\.[0-9]+)?.*/\1/')"

# The server refuses to run as root: as root, run its tools as the `postgres` user.
if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || die "user 'postgres' missing (it comes with Debian's postgresql package)"
    RUN_AS=(runuser -u postgres --)
    OWNER=postgres
else
    RUN_AS=()
    OWNER="$(id -un)"
fi
as_pg() { "${RUN_AS[@]}" "$@"; }

mkdir -p "$PG_DIR"
# fd 9 holds the lock; the server is started with 9>&- so that it does not keep it.
exec 9>"$PG_DIR.lock"
if ! flock -n 9; then
    log "another pg_start/pg_stop is running; waiting for it"
    flock 9
fi
chown "$OWNER" "$PG_DIR"
chmod 0755 "$PG_DIR"

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

server_running() { as_pg "$PG_BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

running_port() {
    # postmaster.pid, line 4: the port.
    sed -n '4p' "$DATA/postmaster.pid" 2>/dev/null | tr -dc '0-9'
}

psql_admin() {
    "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres \
        -v ON_ERROR_STOP=1 -tA "$@"
}

# ------------------------------------------------------------------------- cluster
if [ -f "$DATA/PG_VERSION" ] && [ "$(cat "$DATA/PG_VERSION")" != "$PG_MAJOR" ]; then
    if server_running; then
        die "$DATA is a PostgreSQL $(cat "$DATA/PG_VERSION") cluster that is running: stop it first (scripts/pg_stop.sh)"
    fi
    log "$DATA holds a PostgreSQL $(cat "$DATA/PG_VERSION") cluster, the binaries are $PG_MAJOR: re-creating it (test data only)"
    rm -rf "$DATA"
fi

if [ ! -f "$DATA/PG_VERSION" ]; then
    rm -rf "$DATA"
    log "initdb: new PostgreSQL $PG_MAJOR cluster in $DATA (trust auth, UTF8)"
    as_pg "$PG_BIN/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --no-locale \
        </dev/null >"$PG_DIR/initdb.log" 2>&1 \
        || { cat "$PG_DIR/initdb.log" >&2; die "initdb failed"; }
    cat >>"$DATA/postgresql.conf" <<EOF

# --- uws-server test settings (scripts/pg_start.sh) ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$SOCK_DIR'
max_connections = 200
# Test data only: durability is not needed, speed is.
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    log "cluster created"
else
    log "cluster $DATA exists (PostgreSQL $PG_MAJOR)"
fi
mkdir -p "$SOCK_DIR"
chown "$OWNER" "$SOCK_DIR"

# ------------------------------------------------------------------------- server
if server_running; then
    PORT="$(running_port)"
    [ -n "$PORT" ] || die "server runs but its port cannot be read from $DATA/postmaster.pid"
    log "server already running on 127.0.0.1:$PORT"
else
    rm -f "$DATA/postmaster.pid"
    if [ -n "${UWS_PG_PORT:-}" ]; then
        PORT="$UWS_PG_PORT"
        port_in_use "$PORT" && die "UWS_PG_PORT=$PORT is in use by another process"
    else
        PORT=""
        # Always the lowest free one, so that the URL is the usual one whenever it can be.
        for p in $(seq "$PORT_FIRST" "$PORT_LAST"); do
            if ! port_in_use "$p"; then
                PORT="$p"
                break
            fi
        done
        [ -n "$PORT" ] || die "no free port in $PORT_FIRST-$PORT_LAST; set UWS_PG_PORT"
    fi
    log "starting server on 127.0.0.1:$PORT (log: $PG_LOG)"
    as_pg "$PG_BIN/pg_ctl" -D "$DATA" -l "$PG_LOG" -o "-p $PORT" -w -t 60 start \
        </dev/null >&2 9>&- || die "pg_ctl start failed"
fi
printf '%s\n' "$PORT" >"$PORT_FILE"

ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -t 2 >/dev/null 2>&1; }
for _ in $(seq 1 100); do
    ready && break
    sleep 0.2
done
ready || die "server on 127.0.0.1:$PORT does not accept connections (pg_isready)"

# ------------------------------------------------------------------ role, database
if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$DB_ROLE'")" = "1" ]; then
    log "role $DB_ROLE exists"
else
    psql_admin -c "CREATE ROLE $DB_ROLE LOGIN CREATEDB" >/dev/null || die "CREATE ROLE $DB_ROLE failed"
    log "created role $DB_ROLE (LOGIN CREATEDB)"
fi
if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" = "1" ]; then
    log "database $DB_NAME exists"
else
    psql_admin -c "CREATE DATABASE $DB_NAME OWNER $DB_ROLE" >/dev/null \
        || die "CREATE DATABASE $DB_NAME failed"
    log "created database $DB_NAME (owner $DB_ROLE)"
fi

# pgSphere (ADQL geometry for TAP) in the test database and in template1, so that every
# database created later (createdb uws_<letter>) has it too. CREATE EXTENSION needs a
# superuser: the role uws cannot do it itself.
if [ "$(psql_admin -c "SELECT 1 FROM pg_available_extensions WHERE name = 'pg_sphere'")" = "1" ]; then
    for db in template1 "$DB_NAME"; do
        "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PORT" -U postgres -d "$db" -v ON_ERROR_STOP=1 \
            -c "CREATE EXTENSION IF NOT EXISTS pg_sphere" >/dev/null \
            || die "CREATE EXTENSION pg_sphere failed in $db"
    done
    log "pgSphere enabled in template1 and $DB_NAME"
else
    log "WARNING: pgSphere is not installed (Debian: postgresql-$PG_MAJOR-pgsphere): TAP geometry on PostgreSQL will fail"
fi

URL="postgresql+psycopg://$DB_ROLE@127.0.0.1:$PORT/$DB_NAME"
printf '%s\n' "$URL" >"$URL_FILE"
log "ready: $URL"
printf '%s\n' "$URL"
