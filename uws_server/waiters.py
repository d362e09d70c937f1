"""Wake-ups for blocking WAIT requests, without polling.

Each waiting request registers a ``threading.Event`` under its job id; every change
the service makes to a job sets the events registered for it. A semaphore bounds how
many requests may block at once so that waiters can never take every server thread:
past the bound, WAIT answers at once (the standard allows the server to return early).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class PhaseNotifier:
    def __init__(self, max_waiters: int) -> None:
        self._lock = threading.Lock()
        self._events: dict[str, set[threading.Event]] = {}
        self._slots = threading.BoundedSemaphore(max(1, max_waiters))
        self.max_waiters = max_waiters

    def notify(self, job_id: str) -> None:
        with self._lock:
            events = self._events.pop(job_id, None)
        if events:
            for ev in events:
                ev.set()

    def notify_all(self) -> None:
        """Wake everyone (used at shutdown)."""
        with self._lock:
            all_events = list(self._events.values())
            self._events.clear()
        for events in all_events:
            for ev in events:
                ev.set()

    @contextlib.contextmanager
    def waiting(self, job_id: str) -> Iterator[threading.Event | None]:
        """Register a waiter; yields None when too many requests already block."""
        if self.max_waiters <= 0 or not self._slots.acquire(blocking=False):
            yield None
            return
        ev = threading.Event()
        with self._lock:
            self._events.setdefault(job_id, set()).add(ev)
        try:
            yield ev
        finally:
            with self._lock:
                waiting = self._events.get(job_id)
                if waiting is not None:
                    waiting.discard(ev)
                    if not waiting:
                        del self._events[job_id]
            self._slots.release()
