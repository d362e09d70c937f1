"""Run one job script under supervision: own process group, time limit, signals.

Used by the worker runner CLI (Slurm and any other remote worker). The script runs in
a new session, so its process group holds every child it starts; ending the job means
signalling that group: SIGTERM first so programs can clean up, SIGKILL after a grace
period. The runner's own SIGTERM (``scancel``) is forwarded the same way.

Waiting uses a pidfd plus the signal wake-up pipe in one ``poll``: no busy loop, and the
exit is seen at once. The exited child is inspected with ``WNOWAIT`` first, so its pid
(the group id) cannot be reused while we kill what is left of its group.
"""

from __future__ import annotations

import os
import select
import signal
import threading
import time
from datetime import UTC, datetime

from workers.procs import kill_group, spawn_in_session

TYPE_CHECKING = False  # annotations only (see workers.jobdir)
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class ScriptOutcome:
    """How the script ended.

    Times are naive UTC (the service's convention). ``reason`` is None for a natural
    end, ``"timeout"`` when the execution duration ran out, ``"terminated"`` when the
    runner itself was told to stop (``received_signal``).
    """

    __slots__ = ("pid", "exit_code", "signal", "reason", "received_signal")
    __slots__ += ("start_time", "end_time")

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
        self.active = threading.current_thread() is threading.main_thread()

    def __enter__(self) -> _SignalTrap:
        if self.active:
            self._old_wakeup = signal.set_wakeup_fd(self.write_fd, warn_on_full_buffer=False)
            for sig in FORWARDED_SIGNALS:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

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
                signal.signal(sig, handler)  # type: ignore[arg-type]
            signal.set_wakeup_fd(self._old_wakeup)
        os.close(self.read_fd)
        os.close(self.write_fd)


def run_script(
    argv: Sequence[str],
    cwd: Path,
    env: dict[str, str],
    stdout_path: Path,
    stderr_path: Path,
    duration: float = 0,
    grace: float = 5.0,
    on_start: Callable[[int], None] | None = None,
) -> ScriptOutcome:
    """Run ``argv`` to its end; ``duration`` seconds (0 = no limit) before it is killed.

    ``on_start(pid)`` is called once the process exists (to report EXECUTING).
    """
    with _SignalTrap() as trap:
        proc = spawn_in_session(list(argv), cwd, env, stdout_path, stderr_path)
        start = datetime.now(UTC).replace(tzinfo=None)
        started = time.monotonic()
        pid = proc.pid
        if on_start is not None:
            on_start(pid)
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
                    kill_group(pid, signal.SIGTERM)
                    kill_at = now + grace
                if deadline is not None and now >= deadline and reason is None:
                    reason = "timeout"
                    kill_group(pid, signal.SIGTERM)
                    kill_at = now + grace
                if kill_at is not None and now >= kill_at:
                    kill_group(pid, signal.SIGKILL)
                    kill_at = None
                result = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
                if result is not None:
                    break
                waits = [t - now for t in (kill_at, deadline if reason is None else None) if t]
                timeout_ms = max(0, int(min(waits) * 1000) + 1) if waits else None
                poller.poll(timeout_ms)
                trap.drain()
        finally:
            os.close(pidfd)
        # The zombie still holds the group id: kill whatever the script left behind.
        kill_group(pid, signal.SIGKILL)
        proc.wait()
        end = datetime.now(UTC).replace(tzinfo=None)
    exit_code, sig = exit_of(result)
    return ScriptOutcome(
        pid=pid,
        exit_code=exit_code,
        signal=sig,
        reason=reason,
        received_signal=received,
        start_time=start,
        end_time=end,
    )
