"""Wake-ups for blocking WAIT requests, without polling.

Each waiting request registers a ticket under its job id; every change the service
makes to a job wakes the tickets registered for it, handing them one shared
:class:`Wake`. The first woken request reads the job and the others reuse that read:
500 waiters of one job cost one database read, not 500 reads contending for the pool.

A semaphore bounds how many requests may block at once so that waiters can never take
every server thread: past the bound, WAIT answers at once (the standard allows the
server to return early).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any


class Wake:
    """One notification: what the woken waiters of a job share."""

    __slots__ = ("_lock", "_value", "_done")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: Any = None
        self._done = False

    def shared(self, compute: Callable[[], Any]) -> Any:
        """``compute()`` once for every waiter woken by this notification."""
        with self._lock:
            if not self._done:
                self._value = compute()
                self._done = True
            return self._value


class Ticket:
    """A registered waiter: an event, and the notification that set it (if any)."""

    __slots__ = ("event", "wake")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.wake: Wake | None = None

    def wait(self, seconds: float) -> Wake | None:
        self.event.wait(seconds)
        return self.wake


class PhaseNotifier:
    def __init__(self, max_waiters: int) -> None:
        self._lock = threading.Lock()
        self._tickets: dict[str, set[Ticket]] = {}
        self._slots = threading.BoundedSemaphore(max(1, max_waiters))
        self.max_waiters = max_waiters

    def notify(self, job_id: str) -> None:
        with self._lock:
            tickets = self._tickets.pop(job_id, None)
        if tickets:
            wake = Wake()
            for t in tickets:
                t.wake = wake
                t.event.set()

    def notify_all(self) -> None:
        """Wake everyone (used at shutdown)."""
        with self._lock:
            every = list(self._tickets.values())
            self._tickets.clear()
        for tickets in every:
            wake = Wake()
            for t in tickets:
                t.wake = wake
                t.event.set()

    @contextlib.contextmanager
    def waiting(self, job_id: str) -> Iterator[Ticket | None]:
        """Register a waiter; yields None when too many requests already block."""
        if self.max_waiters <= 0 or not self._slots.acquire(blocking=False):
            yield None
            return
        ticket = Ticket()
        with self._lock:
            self._tickets.setdefault(job_id, set()).add(ticket)
        try:
            yield ticket
        finally:
            with self._lock:
                waiting = self._tickets.get(job_id)
                if waiting is not None:
                    waiting.discard(ticket)
                    if not waiting:
                        del self._tickets[job_id]
            self._slots.release()
