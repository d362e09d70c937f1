#!/usr/bin/env bash
# Stop the test Slurm started by scripts/slurm_start.sh: slurmd, slurmctld, then munged,
# each by its pid file (SIGTERM, then SIGKILL after 10 s). Idempotent: nothing running =
# nothing to do. State, logs and jobcomp.txt stay in the state directory.
#
# Usage: bash scripts/slurm_stop.sh
# Env:   UWS_SLURM_STATE_DIR (default /var/tmp/uws-slurm), as for slurm_start.sh
set -euo pipefail

STATE_DIR="${UWS_SLURM_STATE_DIR:-/var/tmp/uws-slurm}"
MUNGE_PID=/run/munge/munged.pid

log() { printf '[slurm_stop] %s\n' "$*" >&2; }
die() {
    printf '[slurm_stop] ERROR: %s\n' "$*" >&2
    exit 1
}

[ "$(id -u)" -eq 0 ] || die "must run as root"

if [ -d "$STATE_DIR" ]; then
    exec 9>"$STATE_DIR.lock"
    if ! flock -n 9; then
        log "another slurm_start/slurm_stop is running; waiting for it"
        flock 9
    fi
fi

FAILED=0
# stop_daemon PIDFILE NAME
stop_daemon() {
    local pidfile="$1" name="$2" pid comm
    if [ ! -s "$pidfile" ]; then
        log "$name: no pid file ($pidfile): not running"
        return 0
    fi
    pid="$(tr -dc '0-9' <"$pidfile")"
    comm="$(cat "/proc/$pid/comm" 2>/dev/null || true)"
    if [ -z "$pid" ] || [ "$comm" != "$name" ]; then
        log "$name: stale pid file $pidfile (pid ${pid:-?} is not $name): removing it"
        rm -f "$pidfile"
        return 0
    fi
    log "$name: stopping pid $pid"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$pidfile"
            log "$name: stopped"
            return 0
        fi
        sleep 0.2
    done
    log "$name: still alive after 10 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
    if kill -0 "$pid" 2>/dev/null; then
        printf '[slurm_stop] ERROR: %s (pid %s) survives SIGKILL\n' "$name" "$pid" >&2
        FAILED=1
    else
        rm -f "$pidfile"
        log "$name: killed"
    fi
}

stop_daemon "$STATE_DIR/slurmd.pid" slurmd
stop_daemon "$STATE_DIR/slurmctld.pid" slurmctld
stop_daemon "$MUNGE_PID" munged

[ "$FAILED" -eq 0 ] || die "some daemons could not be stopped"
log "done"
