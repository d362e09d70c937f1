#!/usr/bin/env bash
# Start a single-node Slurm on localhost for the tests (see shared notes/slurm.md):
# munged, slurmctld, slurmd; partition `debug` (Default, OverSubscribe=FORCE:10).
# Idempotent: when all three daemons already run with the configuration this script writes
# and the node is usable, it only says so. When slurm.conf changed, or the running
# slurmctld still uses other SchedulerParameters than the file's, the daemons are
# restarted (running jobs survive: slurmstepd outlives slurmd, state is saved).
# After a real start it submits a probe job and waits until it has COMPLETED, so that a
# zero exit means jobs really run.
#
# Usage: bash scripts/slurm_start.sh          (root; installs nothing: see install_test_deps.sh)
# Env:   UWS_SLURM_STATE_DIR   state, spool, pid, log and jobcomp files (default /var/tmp/uws-slurm)
# Files: /etc/slurm/slurm.conf (default path, so clients need no SLURM_CONF);
#        $UWS_SLURM_STATE_DIR/{slurmctld,slurmd}.{pid,log}, jobcomp.txt (one line per finished job)
set -euo pipefail

STATE_DIR="${UWS_SLURM_STATE_DIR:-/var/tmp/uws-slurm}"
CONF=/etc/slurm/slurm.conf
MUNGE_RUN=/run/munge
MUNGE_PID="$MUNGE_RUN/munged.pid"
MUNGE_KEY=/etc/munge/munge.key
CTLD_PID="$STATE_DIR/slurmctld.pid"
SLURMD_PID="$STATE_DIR/slurmd.pid"
CTLD_LOG="$STATE_DIR/slurmctld.log"
SLURMD_LOG="$STATE_DIR/slurmd.log"
MARKER="# Written by uws-server scripts/slurm_start.sh"
# Scheduling for a test cluster (Slurm 22.05, man slurm.conf): the main scheduler tests
# every pending job each sched_interval seconds (default 60) and the backfill scheduler
# each bf_interval seconds (default 30); between those passes only events (a submit, a
# job's end) start jobs. A job held by --begin becomes eligible with no event, so with the
# defaults it waited up to 30-60 s past its begin time (issue 17). With 1 s each it starts
# within about a second of becoming eligible (slurmctld's background loop ticks each
# second); a pass over this cluster's few hundred jobs at most costs milliseconds.
# batch_sched_delay=0: a submitted batch job is scheduled at once (default: up to 3 s).
# No `defer`: it would postpone each submission's own scheduling attempt to the next pass.
# tests/test_slurm.py reads these values back (scontrol show config) to bound its waits.
SCHED_PARAMS="batch_sched_delay=0,sched_interval=1,bf_interval=1"

log() { printf '[slurm_start] %s\n' "$*" >&2; }
die() {
    printf '[slurm_start] ERROR: %s\n' "$*" >&2
    exit 1
}
show_logs() {
    local f
    for f in "$CTLD_LOG" "$SLURMD_LOG" /var/log/munge/munged.log; do
        if [ -f "$f" ]; then
            printf '[slurm_start] --- last lines of %s ---\n' "$f" >&2
            tail -n 15 "$f" >&2 || true
        fi
    done
}
die_logs() {
    printf '[slurm_start] ERROR: %s\n' "$*" >&2
    show_logs
    exit 1
}

[ "$(id -u)" -eq 0 ] || die "must run as root (starts munged, slurmctld and slurmd)"
for tool in munged munge unmunge slurmctld slurmd sbatch squeue scontrol sinfo; do
    command -v "$tool" >/dev/null 2>&1 \
        || die "'$tool' not found: run scripts/install_test_deps.sh first (Debian: slurmctld slurmd slurm-client munge)"
done

mkdir -p "$STATE_DIR"
# fd 9 holds the lock; every daemon is started with 9>&- so that it does not keep it.
exec 9>"$STATE_DIR.lock"
if ! flock -n 9; then
    log "another slurm_start/slurm_stop is running; waiting for it"
    flock 9
fi

# pid_alive PIDFILE NAME: the pid file names a live process whose command is NAME.
pid_alive() {
    local pid comm
    [ -s "$1" ] || return 1
    pid="$(tr -dc '0-9' <"$1")"
    [ -n "$pid" ] || return 1
    comm="$(cat "/proc/$pid/comm" 2>/dev/null || true)"
    [ "$comm" = "$2" ]
}

port_in_use() {
    # Something accepts TCP connections on 127.0.0.1:$1 (bash's /dev/tcp: no extra tool).
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

# wait_for SECONDS DESCRIPTION COMMAND...: poll every 0.2 s until COMMAND succeeds.
wait_for() {
    local secs="$1" what="$2" deadline
    shift 2
    deadline=$((SECONDS + secs))
    until "$@"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            return 1
        fi
        sleep 0.2
    done
    log "$what"
}

ctld_up() { scontrol ping 2>/dev/null | grep -q 'is UP'; }

# The SchedulerParameters the running slurmctld uses (empty if it does not answer).
live_sched_params() {
    scontrol show config 2>/dev/null | sed -n 's/^SchedulerParameters *= *//p' | head -n 1
}

node_state() { sinfo -h -N -n localhost -o %T 2>/dev/null | head -n 1; }

node_usable() {
    case "$(node_state)" in
        idle | mixed | allocated | completing) return 0 ;;
        *) return 1 ;;
    esac
}

# ----------------------------------------------------------------------------- munge
start_munge() {
    if munge_ok; then
        log "munge: already running"
        return 0
    fi
    if [ ! -s "$MUNGE_KEY" ]; then
        log "munge: no key at $MUNGE_KEY: creating one (mungekey --create)"
        mungekey --create --keyfile="$MUNGE_KEY" || die "mungekey --create failed"
    fi
    chown munge:munge "$MUNGE_KEY"
    chmod 0400 "$MUNGE_KEY"
    mkdir -p "$MUNGE_RUN" /var/lib/munge /var/log/munge
    chown munge:munge "$MUNGE_RUN" /var/lib/munge /var/log/munge
    chmod 0755 "$MUNGE_RUN"
    if pid_alive "$MUNGE_PID" munged; then
        die "munged (pid $(cat "$MUNGE_PID")) runs but 'munge -n | unmunge' fails: see /var/log/munge/munged.log"
    fi
    # A socket left by a munged that died would make the new one refuse to start.
    rm -f "$MUNGE_PID" "$MUNGE_RUN/munge.socket.2" "$MUNGE_RUN/munge.socket.2.lock"
    log "munge: starting munged"
    runuser -u munge -- /usr/sbin/munged </dev/null >/dev/null 2>&1 9>&- \
        || die "munged failed to start: see /var/log/munge/munged.log"
    wait_for 15 "munge: ready ('munge -n | unmunge' works)" munge_ok \
        || die "munged started but 'munge -n | unmunge' still fails after 15 s"
}

# ------------------------------------------------------------------------ slurm.conf
node_hardware() {
    # slurmd -C prints e.g. "NodeName=vm CPUs=2 Boards=1 ... RealMemory=24105": keep the
    # hardware, name the node localhost (what slurmd falls back to whatever the hostname).
    local line
    line="$(slurmd -C 2>/dev/null | grep '^NodeName=' | head -n 1)" || true
    [ -n "$line" ] || die "'slurmd -C' printed no NodeName line"
    printf '%s\n' "$line" | sed -E 's/^NodeName=[^ ]+ ?//'
}

write_conf() {
    local hw
    hw="$(node_hardware)"
    cat <<EOF
$MARKER
# for the tests: single node on localhost. Regenerated at every start; edits are lost.
ClusterName=uws-test
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=$SCHED_PARAMS
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE_DIR/jobcomp.txt
MinJobAge=300
MailProg=/bin/true
KillWait=5
ReturnToService=2
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$STATE_DIR/state
SlurmdSpoolDir=$STATE_DIR/spool
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$CTLD_LOG
SlurmdLogFile=$SLURMD_LOG
SlurmctldDebug=info
SlurmdDebug=info
NodeName=localhost $hw State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:10
EOF
}

# ------------------------------------------------------------------------ daemons
stop_daemon() { # PIDFILE NAME
    local pid
    pid_alive "$1" "$2" || return 0
    pid="$(tr -dc '0-9' <"$1")"
    log "stopping $2 (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
}

start_munge

mkdir -p /etc/slurm "$STATE_DIR/state" "$STATE_DIR/spool"
NEW_CONF="$(write_conf)"
CONF_CHANGED=0
if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$NEW_CONF" ]; then
    CONF_CHANGED=1
    if [ -f "$CONF" ] && ! grep -qF "$MARKER" "$CONF" && [ ! -e "$CONF.uws-backup" ]; then
        log "saving the existing $CONF (not ours) as $CONF.uws-backup"
        cp -p "$CONF" "$CONF.uws-backup"
    fi
    printf '%s\n' "$NEW_CONF" >"$CONF"
    chmod 0644 "$CONF"
    log "wrote $CONF (node: $(node_hardware))"
else
    log "$CONF: up to date"
fi

CTLD_RUNNING=0
SLURMD_RUNNING=0
pid_alive "$CTLD_PID" slurmctld && CTLD_RUNNING=1
pid_alive "$SLURMD_PID" slurmd && SLURMD_RUNNING=1

# The file may already be ours while the running slurmctld still has an older one (the
# file was rewritten but the restart did not happen): that needs the restart too.
if [ "$CONF_CHANGED" -eq 0 ] && [ "$CTLD_RUNNING" -eq 1 ] && ctld_up \
    && [ "$(live_sched_params)" != "$SCHED_PARAMS" ]; then
    log "slurmctld runs with SchedulerParameters='$(live_sched_params)', not '$SCHED_PARAMS'"
    CONF_CHANGED=1
fi

if [ "$CONF_CHANGED" -eq 1 ] && [ $((CTLD_RUNNING + SLURMD_RUNNING)) -gt 0 ]; then
    log "the daemons do not run the current slurm.conf: restarting them"
    stop_daemon "$SLURMD_PID" slurmd
    stop_daemon "$CTLD_PID" slurmctld
    CTLD_RUNNING=0
    SLURMD_RUNNING=0
fi

if [ "$CTLD_RUNNING" -eq 1 ] && [ "$SLURMD_RUNNING" -eq 1 ] && ctld_up; then
    if ! node_usable; then
        log "node localhost is '$(node_state)': resuming it"
        scontrol update NodeName=localhost State=RESUME >/dev/null 2>&1 || true
        wait_for 20 "node localhost: usable again" node_usable \
            || die_logs "slurm runs but node localhost stays '$(node_state)'"
    fi
    log "already running (slurmctld pid $(cat "$CTLD_PID"), slurmd pid $(cat "$SLURMD_PID"), node $(node_state)): nothing to do"
    exit 0
fi

STARTED_AT=$SECONDS

if [ "$CTLD_RUNNING" -eq 1 ] && ! ctld_up; then
    log "slurmctld (pid $(cat "$CTLD_PID")) runs but does not answer 'scontrol ping': restarting it"
    stop_daemon "$CTLD_PID" slurmctld
    CTLD_RUNNING=0
fi

if [ "$CTLD_RUNNING" -eq 0 ]; then
    rm -f "$CTLD_PID"
    port_in_use 6817 \
        && die "port 6817 (slurmctld) is in use by another process: stop it (ss -ltnp 'sport = :6817')"
    log "starting slurmctld"
    slurmctld </dev/null >>"$CTLD_LOG" 2>&1 9>&- || die_logs "slurmctld failed to start"
fi
wait_for 30 "slurmctld: UP ('scontrol ping')" ctld_up \
    || die_logs "slurmctld does not answer 'scontrol ping' after 30 s"
[ "$(live_sched_params)" = "$SCHED_PARAMS" ] \
    || die_logs "slurmctld runs with SchedulerParameters='$(live_sched_params)', not '$SCHED_PARAMS' from $CONF"

if [ "$SLURMD_RUNNING" -eq 0 ]; then
    rm -f "$SLURMD_PID"
    port_in_use 6818 \
        && die "port 6818 (slurmd) is in use by another process: stop it (ss -ltnp 'sport = :6818')"
    log "starting slurmd"
    slurmd </dev/null >>"$SLURMD_LOG" 2>&1 9>&- || die_logs "slurmd failed to start"
fi
if ! wait_for 30 "node localhost: ready" node_usable; then
    log "node localhost is '$(node_state)': resuming it"
    scontrol update NodeName=localhost State=RESUME >/dev/null 2>&1 || true
    wait_for 15 "node localhost: ready" node_usable \
        || die_logs "node localhost is '$(node_state)', not idle, 45 s after slurmd started"
fi

# A probe job proves that jobs really run (slurmctld holds scheduling back for ~3 s).
job_state() { squeue -h -t all -j "$1" -o %T 2>/dev/null | head -n 1; }
log "probe job: sbatch --wrap true"
PROBE_ID="$(sbatch --parsable --job-name=uws-probe --output=/dev/null --chdir="$STATE_DIR" \
    --wrap true 2>&1)" || die_logs "sbatch of the probe job failed: $PROBE_ID"
PROBE_ID="${PROBE_ID%%;*}"
probe_done() {
    local st
    st="$(job_state "$PROBE_ID")"
    case "$st" in
        COMPLETED) return 0 ;;
        FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE | PREEMPTED)
            die_logs "probe job $PROBE_ID ended $st: $(scontrol show job -o "$PROBE_ID" 2>&1)"
            ;;
    esac
    return 1
}
wait_for 60 "probe job $PROBE_ID: COMPLETED" probe_done \
    || die_logs "probe job $PROBE_ID not COMPLETED after 60 s (state '$(job_state "$PROBE_ID")'): $(scontrol show job -o "$PROBE_ID" 2>&1)"

log "slurm is up on localhost (partition debug) in $((SECONDS - STARTED_AT)) s; logs and jobcomp.txt in $STATE_DIR"
