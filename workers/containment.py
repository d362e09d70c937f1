"""Ending every process a job started, including those that left its process group.

A job runs in its own session, so killing its process group reaches ordinary children.
But ``setsid``, a double fork, ``nohup cmd &`` followed by the shell's exit or a
daemonizing Python child leave the group (and, for the double fork, their parent): they
would outlive ``executionDuration``, ABORT and the job itself, and could change its
results after they were collected. Two ways to find them again, best first:

* **a cgroup per job** (cgroup v2, kernel >= 5.14 for ``cgroup.kill``): every process
  forked inside it stays inside, whatever it does with sessions or parents, and one
  write to ``cgroup.kill`` ends them all. Used where this process may create cgroups
  (root, or a delegated subtree: systemd ``Delegate=yes``). The job enters its cgroup
  itself, as its first command, before it can start anything
  (:func:`enter_command`).
* **a child subreaper** (``prctl(PR_SET_CHILD_SUBREAPER)``): orphans are re-parented to
  the supervising process instead of init, so they are still its descendants, found by
  walking ``/proc/<pid>/task/*/children`` and killed; the supervisor then reaps them
  before it reports the job's end. Costs a ``ctypes`` import per supervisor
  (docs/benchmarks.md, "Containment").

:data:`CGROUP_ENV` chooses: ``auto`` (default: a ``uws-jobs`` cgroup under this
process's own cgroup when it is writable), ``off`` (subreaper only), or the path of a
cgroup v2 directory to create the job cgroups in. Standard library only: the worker
runner (:mod:`workers.node`) imports this.
"""

from __future__ import annotations

import os
import time

CGROUP_ENV = "UWS_JOB_CGROUP"
JOBS_CGROUP = "uws-jobs"
PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>
_SIGKILL, _SIGSTOP = 9, 19  # Linux numbers; ``signal`` would import enum (see node.py)
_bases: dict[str, str | None] = {}


# --- cgroups -------------------------------------------------------------------------


def _own_cgroup_dir() -> str | None:
    """This process's cgroup v2 directory, from ``/proc/self/cgroup`` and mountinfo."""
    try:
        with open("/proc/self/cgroup") as f:
            own = next((ln[3:].strip() for ln in f if ln.startswith("0::")), None)
        with open("/proc/self/mountinfo") as f:
            mounts = [ln.split() for ln in f if " - cgroup2 " in ln]
    except OSError:
        return None
    if own is None or not mounts:
        return None
    mount = mounts[0][4]  # field 5: the mount point
    return os.path.normpath(mount + "/" + own.lstrip("/")) if own != "/" else mount


def _usable(base: str) -> bool:
    """True when job cgroups can be made under ``base`` and killed with ``cgroup.kill``."""
    try:
        os.makedirs(base, exist_ok=True)
    except OSError:
        return False
    return (
        os.path.isfile(os.path.join(base, "cgroup.procs"))
        and os.path.isfile(os.path.join(base, "cgroup.kill"))
        and os.access(base, os.W_OK)
    )


def cgroup_base(setting: str | None = None) -> str | None:
    """Where per-job cgroups are created, or None (the machine does not allow it, or the
    operator said ``off``): then a subreaper is used. Worked out once per setting."""
    value = (setting if setting is not None else os.environ.get(CGROUP_ENV, "")).strip()
    value = value or "auto"
    if value not in _bases:
        if value == "off":
            base = None
        elif value == "auto":
            own = _own_cgroup_dir()
            base = os.path.join(own, JOBS_CGROUP) if own else None
        else:
            base = value
        _bases[value] = base if base is not None and _usable(base) else None
    return _bases[value]


def job_cgroup(base: str, job_id: str) -> str:
    """The job's cgroup directory (job ids are made by the service; anything else in
    them is replaced so that the name can never climb out of ``base``)."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in job_id)[:200]
    return os.path.join(base, f"job-{safe or '_'}")


def create_cgroup(path: str) -> str:
    """Create (or reuse) the job's cgroup; OSError when the machine refuses."""
    try:
        os.mkdir(path)
    except FileExistsError:
        pass
    return path


def enter_command(path: str) -> list[str]:
    """argv prefix that moves the job into its cgroup, then execs the rest: the move
    happens before the job can fork, so nothing it starts is ever outside. A failed move
    ends the job with status 125 rather than running it uncontained. A cgroup removed
    before the move (a sweep by another supervisor under heavy load, seen in a burst of
    200 Slurm jobs) is made again once first."""
    return [
        "/bin/sh",
        "-c",
        'echo $$ >"$0/cgroup.procs" || { mkdir -p "$0" && echo $$ >"$0/cgroup.procs"; } || '
        '{ echo "cannot enter the job cgroup $0" >&2; exit 125; }; exec "$@"',
        path,
    ]


def cgroup_members(path: str) -> list[int]:
    """Pids in the job's cgroup (empty when it is gone)."""
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            return [int(line) for line in f if line.strip()]
    except (OSError, ValueError):
        return []


def signal_cgroup(path: str, signum: int) -> int:
    """Send ``signum`` to every process of the cgroup (SIGTERM before the kill)."""
    sent = 0
    for pid in cgroup_members(path):
        try:
            os.kill(pid, signum)
            sent += 1
        except OSError:
            pass
    return sent


def kill_cgroup(path: str) -> None:
    """SIGKILL every process of the cgroup at once (``cgroup.kill``: no fork race)."""
    try:
        with open(os.path.join(path, "cgroup.kill"), "w") as f:
            f.write("1")
    except FileNotFoundError:  # already removed
        pass


def cgroup_populated(path: str) -> bool:
    """True while a process is in the cgroup (``cgroup.events``: ``populated 1``)."""
    try:
        with open(os.path.join(path, "cgroup.events")) as f:
            return "populated 1" in f.read()
    except OSError:
        return False


def release_cgroup(path: str, timeout: float = 10.0) -> bool:
    """Kill everything in the job's cgroup, wait until it is empty, remove it. False
    when a process outlived ``timeout`` (stuck in the kernel): the caller says so."""
    if not os.path.isdir(path):
        return True
    deadline = time.monotonic() + timeout
    pause = 0.001
    while cgroup_populated(path):
        kill_cgroup(path)
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(0.05, pause * 2)
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True


# --- subreaper -----------------------------------------------------------------------


def become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants; False if refused."""
    try:
        import ctypes  # only runners without a cgroup pay for this import

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (every thread's ``children`` file; a ``/proc`` scan
    where the kernel lacks CONFIG_PROC_CHILDREN)."""
    kids: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids.extend(int(p) for p in f.read().split())
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}/task/{tid}"):
                continue  # the thread ended
            return _scan_children(pid)
        except (OSError, ValueError):
            continue
    return kids


def _scan_children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if len(fields) > 1 and fields[1] == str(pid).encode():
                kids.append(int(entry))
    return kids


def descendants_of(pid: int) -> list[int]:
    """Every process below ``pid``, parents before their children."""
    found: list[int] = []
    todo = [pid]
    seen = {pid}
    while todo:
        for kid in children_of(todo.pop()):
            if kid not in seen:
                seen.add(kid)
                found.append(kid)
                todo.append(kid)
    return found


def signal_descendants(signum: int, pid: int | None = None) -> int:
    """Send ``signum`` to every descendant of ``pid`` (this process by default)."""
    sent = 0
    for kid in descendants_of(os.getpid() if pid is None else pid):
        try:
            os.kill(kid, signum)
            sent += 1
        except OSError:
            pass
    return sent


def reap_orphans(keep: int) -> int:
    """Reap every exited child except ``keep`` (the job's main process, which the
    supervisor waits for itself); returns how many. Without this, what a subreaper
    inherits would stay a zombie until the job ends."""
    reaped = 0
    while True:
        try:
            res = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return reaped
        if res is None or res.si_pid == keep:
            return reaped
        try:
            os.waitpid(res.si_pid, 0)
            reaped += 1
        except ChildProcessError:
            return reaped


def kill_descendants(timeout: float = 10.0) -> int:
    """SIGKILL every descendant of this process and reap them all; the number killed.

    Each round stops then kills what it finds (a stopped process cannot fork any more),
    then reaps: the children of a killed process are re-parented to us and found in the
    next round. Returns when this process has no child left, or after ``timeout``.
    """
    me = os.getpid()
    killed: set[int] = set()
    deadline = time.monotonic() + timeout
    while True:
        found = descendants_of(me)
        for sig in (_SIGSTOP, _SIGKILL):
            for pid in found:
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
        killed.update(found)
        while True:  # reap every exited child
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return len(killed)  # no child at all: everything is gone
            if pid == 0:
                break
        if time.monotonic() >= deadline:
            return len(killed)
        if not found:
            time.sleep(0.002)  # children exiting but not yet reapable


def sweep_cgroups(base: str, min_age: float = 60.0) -> int:
    """Remove job cgroups under ``base`` that are empty and older than ``min_age``
    seconds: those of jobs whose supervisor was killed before it could remove them (a
    server stopped with jobs running, a runner SIGKILLed by Slurm). A job's cgroup is
    empty only for the moment between its creation and the job entering it, so an old
    empty one belongs to a job that is over. Returns how many were removed."""
    removed = 0
    now = time.time()
    try:
        entries = os.listdir(base)
    except OSError:
        return 0
    for name in entries:
        path = os.path.join(base, name)
        if not name.startswith("job-") or not os.path.isdir(path):
            continue
        try:
            if now - os.stat(path).st_mtime < min_age or cgroup_populated(path):
                continue
            os.rmdir(path)
            removed += 1
        except OSError:
            continue
    return removed
