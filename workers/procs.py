"""Process-level helpers shared by the worker runner and the local manager.

Everything here is about one question: "is this still *our* job's process, and how do we
end it and everything it started?". Jobs run in their own process group (the group id
is the pid of the process we started), so killing the group reaches background children
and grandchildren. A pid alone is not an identity: after a server restart the pid may
belong to an unrelated process, so we pair it with the process start time from
``/proc/<pid>/stat`` and the kernel's boot id.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # for annotations only: subprocess is imported when used
if TYPE_CHECKING:
    import subprocess

_BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"
_boot_id: list[str] = []


def boot_id() -> str:
    """The kernel's boot id: start ticks are only comparable within one boot.

    Cached: it cannot change while this process lives, and launches must stay cheap.
    """
    if not _boot_id:
        try:
            with open(_BOOT_ID_FILE) as f:
                _boot_id.append(f.read().strip())
        except OSError:
            _boot_id.append("")
    return _boot_id[0]


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name, or None if gone.

    The command name (field 2) is in parentheses and may contain spaces or ``)``, so the
    split starts after the *last* ``)``.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    except OSError:
        return None
    end = raw.rfind(b")")
    if end < 0:
        return None
    return raw[end + 2 :].decode("ascii", "replace").split()


def start_ticks(pid: int) -> int | None:
    """When the process started (clock ticks since boot), or None if it is gone."""
    fields = _stat_fields(pid)
    if not fields or len(fields) < 20:
        return None
    # fields[0] is the state (field 3 in proc(5)); starttime is field 22.
    try:
        return int(fields[19])
    except ValueError:
        return None


def process_state(pid: int) -> str | None:
    """The one-letter state (``R``, ``S``, ``Z``...), or None if the pid is gone."""
    fields = _stat_fields(pid)
    return fields[0] if fields else None


class ProcessIdentity:
    """A pid plus what makes it unique across pid reuse and reboots (immutable; a plain
    class rather than a dataclass, whose import the runner's start-up avoids)."""

    __slots__ = ("pid", "start_ticks", "boot_id")

    def __init__(self, pid: int, start_ticks: int | None, boot_id: str) -> None:
        object.__setattr__(self, "pid", pid)
        object.__setattr__(self, "start_ticks", start_ticks)
        object.__setattr__(self, "boot_id", boot_id)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"ProcessIdentity is immutable: cannot set {name}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProcessIdentity):
            return NotImplemented
        return (self.pid, self.start_ticks, self.boot_id) == (
            other.pid,
            other.start_ticks,
            other.boot_id,
        )

    def __hash__(self) -> int:
        return hash((self.pid, self.start_ticks, self.boot_id))

    def __repr__(self) -> str:
        return (
            f"ProcessIdentity(pid={self.pid!r}, start_ticks={self.start_ticks!r}, "
            f"boot_id={self.boot_id!r})"
        )

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity:
        return cls(pid=pid, start_ticks=start_ticks(pid), boot_id=boot_id())

    def to_json(self) -> dict[str, object]:
        return {"pid": self.pid, "start_ticks": self.start_ticks, "boot_id": self.boot_id}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> ProcessIdentity:
        pid = data.get("pid")
        ticks = data.get("start_ticks")
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            raise ValueError("process identity: pid must be a positive integer")
        if ticks is not None and (not isinstance(ticks, int) or isinstance(ticks, bool)):
            raise ValueError("process identity: start_ticks must be an integer")
        return cls(pid=pid, start_ticks=ticks, boot_id=str(data.get("boot_id") or ""))

    def is_running(self) -> bool:
        """True when this very process still runs (a zombie counts as ended).

        Without a recorded start time we cannot rule out pid reuse, so we say False:
        adopting a stranger's process would be worse than reporting the job lost.
        """
        if self.start_ticks is None or (self.boot_id and self.boot_id != boot_id()):
            return False
        fields = _stat_fields(self.pid)
        if not fields or len(fields) < 20:
            return False
        try:
            same = int(fields[19]) == self.start_ticks
        except ValueError:
            return False
        return same and fields[0] not in ("Z", "X")


def open_log(path: os.PathLike[str] | str) -> int:
    """A fresh log file for a job's output, as a descriptor for ``Popen``.

    ``O_NOFOLLOW``: a symlink planted under the log's name must not make us truncate
    the file it points to.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.open(path, flags, 0o644)


def spawn_in_session(
    argv: list[str],
    cwd: os.PathLike[str] | str,
    env: dict[str, str],
    stdout_path: os.PathLike[str] | str,
    stderr_path: os.PathLike[str] | str,
) -> subprocess.Popen[bytes]:
    """Start a job's process in a new session (its own process group, killable whole),
    output to fresh log files, no standard input. Used by the local pool and the runner."""
    import subprocess

    out, err = open_log(stdout_path), None
    try:
        err = open_log(stderr_path)
        return subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
            start_new_session=True,
        )  # fmt: skip
    finally:
        for fd in (out, err):
            if fd is not None:
                os.close(fd)


def signal_name(signum: int) -> str:
    """``SIGKILL`` for 9, or ``signal 42`` for numbers Python does not name.

    :mod:`signal` is imported here: it builds its enums with ``enum``, which a runner
    does not otherwise need at start-up.
    """
    import signal

    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def kill_group(pgid: int, signum: int) -> bool:
    """Send ``signum`` to a whole process group; False when the group is already gone.

    Never raises for a vanished group: aborting a job that just ended is not an error.
    """
    if pgid <= 1:  # never signal init's group or "every process" (-1 / 0)
        return False
    try:
        os.killpg(pgid, signum)
        return True
    except (ProcessLookupError, PermissionError):
        return False
