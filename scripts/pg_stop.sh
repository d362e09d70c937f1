#!/usr/bin/env bash
# Stop the test PostgreSQL started by scripts/pg_start.sh (pg_ctl stop -m fast, which
# finds the server through its postmaster.pid). Idempotent: nothing running = nothing to
# do. The cluster's data stays in $UWS_PG_DIR/data for the next start.
#
# Usage: bash scripts/pg_stop.sh
# Env:   UWS_PG_DIR (default /var/tmp/uws-pg), as for pg_start.sh
set -euo pipefail

PG_DIR="${UWS_PG_DIR:-/var/tmp/uws-pg}"
DATA="$PG_DIR/data"

log() { printf '[pg_stop] %s\n' "$*" >&2; }
die() {
    printf '[pg_stop] ERROR: %s\n' "$*" >&2
    exit 1
}

if [ ! -f "$DATA/PG_VERSION" ]; then
    log "no cluster in $DATA: nothing to stop"
    exit 0
fi

PG_BIN="/usr/lib/postgresql/$(cat "$DATA/PG_VERSION")/bin"
if [ ! -x "$PG_BIN/pg_ctl" ]; then
    command -v pg_ctl >/dev/null 2>&1 || die "pg_ctl for PostgreSQL $(cat "$DATA/PG_VERSION") not found"
    PG_BIN="$(dirname "$(command -v pg_ctl)")"
fi

if [ "$(id -u)" -eq 0 ]; then
    RUN_AS=(runuser -u postgres --)
else
    RUN_AS=()
fi
as_pg() { "${RUN_AS[@]}" "$@"; }

exec 9>"$PG_DIR.lock"
if ! flock -n 9; then
    log "another pg_start/pg_stop is running; waiting for it"
    flock 9
fi

if ! as_pg "$PG_BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    log "server not running"
    exit 0
fi
log "stopping server (pid $(head -n 1 "$DATA/postmaster.pid" 2>/dev/null || echo '?'))"
as_pg "$PG_BIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop </dev/null >&2 \
    || die "pg_ctl stop failed (see $PG_DIR/postgresql.log)"
log "stopped"
