"""A job's progress: read from the file its script writes, relayed while it runs.

A script reports progress by writing JSON ``{"fraction": 0.0-1.0, "message": "..."}``
to the file named by ``$UWS_PROGRESS_FILE`` (``.uws/progress.json`` in the job
directory). Any language can: write a temporary file next to it, then rename it over
the real name, so that a reader never sees half a document (a half-written file is
simply skipped until the next complete one).

The file is the script's word, so nothing in it can fail the job: a file that is not
JSON, not an object, too large, or whose fraction is not a number is ignored; a
fraction outside 0..1 is clamped; a message is cut to :data:`MAX_MESSAGE` characters.

:class:`ProgressWatcher` is one daemon thread watching the files of any number of
running jobs (the local pool has one; the Slurm runner one for its single job). It
looks at each file's modification stamp every :data:`POLL_SECONDS` and hands a new
value to ``send(job_id, record)`` only when it differs from the last one sent, and at
most once every ``min_interval`` seconds per job (a script writing progress in a
tight loop costs the server at most one update a second). The last value seen before
the job ends is flushed by :meth:`ProgressWatcher.unwatch`.

Standard library only, like all of ``workers/``.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time

from workers.jobdir import PROGRESS_FILE
from workers.logs import get_logger

TYPE_CHECKING = False  # annotations only (see workers.jobdir)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

log = get_logger(__name__)

PROGRESS_ENV = "UWS_PROGRESS_FILE"
MAX_FILE_BYTES = 16384  # a progress document is a few dozen bytes
MAX_MESSAGE = 500
POLL_SECONDS = 0.5
MIN_INTERVAL = 1.0


def progress_path(job_dir: str) -> str:
    """Where the job's script writes its progress (the value of ``$UWS_PROGRESS_FILE``)."""
    return os.path.join(os.fspath(job_dir), PROGRESS_FILE)


def clean(data: object) -> dict[str, object] | None:
    """``{"fraction": float, "message": str}`` from what a script wrote, or None when it
    holds nothing usable. Clamps the fraction into 0..1 and cuts the message; a missing
    fraction is allowed when there is a message (``fraction`` is then None)."""
    if not isinstance(data, dict):
        return None
    fraction = data.get("fraction")
    message = data.get("message", "")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, type(None))):
        return None
    if fraction is not None:
        fraction = float(fraction)
        if math.isnan(fraction):
            return None
        fraction = min(1.0, max(0.0, fraction))
    if message is None:
        message = ""
    if not isinstance(message, str):
        return None
    message = "".join(c if c.isprintable() else " " for c in message[:MAX_MESSAGE]).strip()
    if fraction is None and not message:
        return None
    return {"fraction": fraction, "message": message}


def read_progress(path: str) -> dict[str, object] | None:
    """The cleaned content of a progress file, or None (missing, partial, bad, huge)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not _regular(fd):  # a FIFO or a device could block or never end
            return None
        data = os.read(fd, MAX_FILE_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        return None
    try:
        return clean(json.loads(data))
    except (ValueError, RecursionError):
        return None


def _regular(fd: int) -> bool:
    import stat

    return stat.S_ISREG(os.fstat(fd).st_mode)


class _Watched:
    __slots__ = ("path", "stamp", "sent", "sent_at", "pending")

    def __init__(self, path: str) -> None:
        self.path = path
        self.stamp: tuple[int, int, int] | None = None
        self.sent: dict[str, object] | None = None
        self.sent_at = 0.0
        self.pending: dict[str, object] | None = None  # newer than sent, held back


class ProgressWatcher:
    """Watches progress files and relays changes, rate-limited (see the module)."""

    def __init__(
        self,
        send: Callable[[str, dict[str, object]], object],
        min_interval: float = MIN_INTERVAL,
        poll: float = POLL_SECONDS,
    ) -> None:
        self.send = send
        self.min_interval = min_interval
        self.poll = poll
        self._jobs: dict[str, _Watched] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, job_id: str, path: str) -> None:
        """Start relaying ``path`` for ``job_id`` (the thread starts on first use)."""
        with self._lock:
            self._jobs[job_id] = _Watched(path)
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._loop, name="uws-progress", daemon=True
                )
                self._thread.start()

    def unwatch(self, job_id: str, flush: bool = True) -> None:
        """Stop watching; with ``flush``, the last new value is sent first (unlimited)."""
        with self._lock:
            watched = self._jobs.pop(job_id, None)
        if watched is not None and flush:
            self._check(job_id, watched, force=True)

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.poll):
            with self._lock:
                jobs = list(self._jobs.items())
            for job_id, watched in jobs:
                try:
                    self._check(job_id, watched)
                except Exception:  # never let one job's file stop the relay
                    log.exception("job %s: progress not relayed", job_id)

    def _check(self, job_id: str, watched: _Watched, force: bool = False) -> None:
        try:
            st = os.stat(watched.path, follow_symlinks=False)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            stamp = None
        if stamp is not None and stamp != watched.stamp:
            watched.stamp = stamp
            value = read_progress(watched.path)
            if value is not None and value != watched.sent:
                watched.pending = value
        if watched.pending is None:
            return
        now = time.monotonic()
        if not force and now - watched.sent_at < self.min_interval:
            return
        value, watched.pending = watched.pending, None
        watched.sent, watched.sent_at = value, now
        try:
            self.send(job_id, value)
        except Exception:
            log.exception("job %s: progress not relayed", job_id)


def relay_to_server(spec: Any, job_dir: str) -> ProgressWatcher:
    """The runner's relay of its one job: each new value POSTed to
    ``/callback/<job_id>/progress`` with the job's callback token. A report that cannot
    be delivered within a few seconds is dropped: the next one supersedes it."""
    from workers.callbacks import RetryPolicy, post_event

    policy = RetryPolicy(total=5.0, read_timeout=10.0)

    def send(job_id: str, value: dict[str, object]) -> None:
        post_event(
            spec.callback_url, job_id, spec.callback_token, value, policy, suffix="/progress"
        )

    watcher = ProgressWatcher(send)
    watcher.watch(spec.job_id, progress_path(job_dir))
    return watcher
