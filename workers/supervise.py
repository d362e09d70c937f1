"""Run one job script under supervision: own process group, time limit, signals.

Used by the worker runner CLI (Slurm and any other remote worker). The script runs in
a new session, so its process group holds every child it starts; ending the job means
signalling that group: SIGTERM first so programs can clean up, SIGKILL after a grace
period. The runner's own SIGTERM (``scancel``) is forwarded the same way.

Waiting uses a pidfd plus the signal wake-up pipe in one ``poll``: no busy loop, and the
exit is seen at once. The exited child is inspected with ``WNOWAIT`` first, so its pid
(the group id) cannot be reused while we kill what is left of its group.

The script is started with ``posix_spawn``: :mod:`subprocess` would bring
``selectors``, ``threading`` and ``locale`` into every runner's start-up, one per job
(docs/benchmarks.md, "Worker runner"). Signals go through :mod:`signal`, the supported
interface (CPython's private ``_signal`` saved only that module's import).
"""

from __future__ import annotations

import os
import select
import signal
import time
from datetime import UTC, datetime

from workers import containment
from workers.procs import kill_group, open_log

TYPE_CHECKING = False  # annotations only (see workers.jobdir)
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# How long a script killed by a termination signal waits for the runner's own (scancel)
LATE_SIGNAL_WAIT = 0.5
# Python ignores these at start-up; a job must get the defaults back (what
# subprocess's restore_signals does).
_RESTORED_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)


class ScriptOutcome:
    """How the script ended.

    Times are naive UTC (the service's convention). ``reason`` is None for a natural
    end, ``"timeout"`` when the execution duration ran out, ``"terminated"`` when the
    runner itself was told to stop (``received_signal``).
    """

    __slots__ = ("pid", "exit_code", "signal", "reason", "received_signal")
    __slots__ += ("start_time", "end_time", "leftovers")

    def __init__(
        self,
        pid: int,
        exit_code: int | None,
        signal: int | None,
        reason: str | None,
        received_signal: int | None,
        start_time: datetime,
        end_time: datetime,
    ) -> None:
        self.pid, self.exit_code, self.signal = pid, exit_code, signal
        self.reason, self.received_signal = reason, received_signal
        self.start_time, self.end_time = start_time, end_time
        # Processes still alive when the script ended (killed then); None when unknown
        # (a cgroup is emptied with one write, without counting).
        self.leftovers: int | None = None


def exit_of(result: os.waitid_result) -> tuple[int | None, int | None]:
    """(exit code, signal) from a ``waitid`` result: exactly one is not None."""
    if result.si_code == os.CLD_EXITED:
        return result.si_status, None
    return None, result.si_status


class _SignalTrap:
    """Catch termination signals into a list and a wake-up pipe while the job runs."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self.read_fd, self.write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._old: dict[int, object] = {}
        self._old_wakeup = -1
        self.active = False  # signals can only be caught in the main thread

    def __enter__(self) -> _SignalTrap:
        try:
            self._old_wakeup = signal.set_wakeup_fd(self.write_fd, warn_on_full_buffer=False)
        except ValueError:  # not the main thread: nothing to catch here
            return self
        self.active = True
        for sig in FORWARDED_SIGNALS:
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def watch_children(self) -> None:
        """Wake the loop when any child ends (a subreaper reaps what it inherits)."""
        if self.active:
            self._old[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, _ignore)

    def _handle(self, signum: int, _frame: object) -> None:
        self.received.append(signum)

    def drain(self) -> None:
        try:
            while os.read(self.read_fd, 512):
                pass
        except BlockingIOError:
            pass

    def __exit__(self, *exc: object) -> None:
        if self.active:
            for sig, handler in self._old.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(self._old_wakeup)
        os.close(self.read_fd)
        os.close(self.write_fd)


def _ignore(_signum: int, _frame: object) -> None:
    """A handler that does nothing: the wake-up pipe is what matters."""


def _executable(name: str, path: str) -> str:
    """``name`` looked up in ``path`` (the job's PATH), as ``execvpe`` would."""
    if os.sep in name:
        return name
    for directory in path.split(os.pathsep):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(f"{name}: not found in the job's PATH")


def spawn_script(
    argv: Sequence[str],
    cwd: Path | str,
    env: dict[str, str],
    stdout: Path | str | int,
    stderr: Path | str | int,
) -> int:
    """Start ``argv`` in ``cwd`` in a new session, output to fresh log files (or to
    descriptors this process already has, given as ints), no input; its pid. What
    :func:`workers.procs.spawn_in_session` does for the server, without
    :mod:`subprocess`.

    ``posix_spawn`` has no working-directory action, so the runner moves into ``cwd``
    itself (it is the job directory, where Slurm starts the runner anyway). Descriptors
    the runner inherited (from slurmstepd...) are made close-on-exec first, so the job
    gets only its three standard streams, as with ``close_fds``.
    """
    os.chdir(cwd)
    for entry in os.listdir("/proc/self/fd"):
        fd = int(entry)
        if fd > 2:
            try:
                if os.get_inheritable(fd):
                    os.set_inheritable(fd, False)
            except OSError:  # the listing's own descriptor, closed by now
                pass
    out = os.dup(stdout) if isinstance(stdout, int) else open_log(stdout)
    try:
        err = os.dup(stderr) if isinstance(stderr, int) else open_log(stderr)
        try:
            return os.posix_spawn(
                _executable(argv[0], env.get("PATH", os.defpath)),
                list(argv),
                env,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, out, 1),
                    (os.POSIX_SPAWN_DUP2, err, 2),
                ],
                setsid=True,
                setsigdef=_RESTORED_SIGNALS,
            )
        finally:
            os.close(err)
    finally:
        os.close(out)


def run_script(
    argv: Sequence[str],
    cwd: Path,
    env: dict[str, str],
    stdout_path: Path | str | int,
    stderr_path: Path | str | int,
    duration: float = 0,
    grace: float = 5.0,
    on_start: Callable[[int, datetime], None] | None = None,
    start_delay: float = 0.0,
    cgroup: str | None = None,
    subreaper: bool = False,
) -> ScriptOutcome:
    """Run ``argv`` to its end; ``duration`` seconds (0 = no limit) before it is killed.

    ``on_start(pid, start_time)`` is called once the script has been running for
    ``start_delay`` seconds (to report EXECUTING), never if it ends sooner: a job of a
    few milliseconds then costs its runner and the server one callback less, and its
    final event carries its start time anyway.

    What left the script's process group is found again through ``cgroup`` (the job's
    cgroup directory, created by the caller: the script enters it before it runs) or,
    with ``subreaper`` (this process already called
    :func:`~workers.containment.become_subreaper`), as this process's descendants. It
    gets the same SIGTERM, then SIGKILL, as the group, and whatever is left when the
    script ends is killed and gone before this function returns: the job's end is only
    reported once none of its processes can still change its files.
    """
    if cgroup is not None:
        argv = [*containment.enter_command(cgroup), *argv]

    def stop(signum: int) -> None:
        kill_group(pid, signum)
        if cgroup is not None:
            if signum == signal.SIGKILL:
                containment.kill_cgroup(cgroup)
            else:
                containment.signal_cgroup(cgroup, signum)
        elif subreaper:
            containment.signal_descendants(signum)

    with _SignalTrap() as trap:
        if subreaper:
            trap.watch_children()
        pid = spawn_script(argv, cwd, env, stdout_path, stderr_path)
        start = datetime.now(UTC).replace(tzinfo=None)
        started = time.monotonic()
        announce_at = started + max(0.0, start_delay) if on_start is not None else None
        deadline = started + duration if duration and duration > 0 else None
        reason: str | None = None
        received: int | None = None
        kill_at: float | None = None
        pidfd = os.pidfd_open(pid)
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        poller.register(trap.read_fd, select.POLLIN)
        try:
            while True:
                now = time.monotonic()
                if trap.received and reason is None:
                    reason, received = "terminated", trap.received[0]
                    stop(signal.SIGTERM)
                    kill_at = now + grace
                if deadline is not None and now >= deadline and reason is None:
                    reason = "timeout"
                    stop(signal.SIGTERM)
                    kill_at = now + grace
                if kill_at is not None and now >= kill_at:
                    stop(signal.SIGKILL)
                    kill_at = None
                result = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
                if result is not None:
                    break
                if subreaper:
                    containment.reap_orphans(keep=pid)
                if announce_at is not None and now >= announce_at and on_start is not None:
                    announce_at = None
                    on_start(pid, start)
                timers = (kill_at, deadline if reason is None else None, announce_at)
                waits = [t - now for t in timers if t]
                timeout_ms = max(0, int(min(waits) * 1000) + 1) if waits else None
                poller.poll(timeout_ms)
                trap.drain()
        finally:
            os.close(pidfd)
        # The zombie still holds the group id: kill whatever the script left behind.
        kill_group(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        leftovers: int | None = None
        if cgroup is not None:
            if not containment.release_cgroup(cgroup):
                raise OSError(f"processes of the job survive SIGKILL in {cgroup}")
        elif subreaper:
            leftovers = containment.kill_descendants()
        exit_code, sig = exit_of(result)
        if reason is None:
            if not trap.received and sig in FORWARDED_SIGNALS and trap.active:
                # scancel signals the script and this runner at about the same time, in
                # no set order: a script killed by a termination signal is the job being
                # cancelled when the runner's own signal follows within a moment.
                select.select([trap.read_fd], [], [], LATE_SIGNAL_WAIT)
                trap.drain()
            if trap.received:
                reason, received = "terminated", trap.received[0]
        end = datetime.now(UTC).replace(tzinfo=None)
    outcome = ScriptOutcome(
        pid=pid,
        exit_code=exit_code,
        signal=sig,
        reason=reason,
        received_signal=received,
        start_time=start,
        end_time=end,
    )
    outcome.leftovers = leftovers
    return outcome
