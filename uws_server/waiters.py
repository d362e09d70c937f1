"""Wake-ups for blocking WAIT requests, without polling.

Each waiting request registers a ticket under its job id; every change the service
makes to a job wakes the tickets registered for it, handing them one shared
:class:`Wake`. The notifier reads the job once, before it wakes anyone, and every
waiter answers from that read: 500 waiters of one job cost one database read. Reading
before waking matters: read by the first woken waiter, the read's sqlite3 calls each
gave up the GIL to 500 runnable threads, and the other 499 queued behind it (a WAIT
benchmark run had every waiter answer only after the phase change's whole request).

A bound on how many requests may block at once keeps waiters from ever taking every
server thread: past the bound, WAIT answers at once (the standard allows the server to
return early).

A phase change wakes hundreds of threads at once, all needing the GIL, so the wake-up
path takes as few contended locks as it can (each one a convoy: 500 threads handing a
lock and the GIL to one another in turn). A ticket is one plain lock that the notifier
releases (no Condition to re-acquire on waking), the shared read is checked before its
lock is taken, and the bound is a deque of free slots whose pop and append are atomic,
so that leaving takes no lock at all. Measured with 500 waiters (bench/bench_uws.py).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger("uws_server")


class Wake:
    """One notification: what the woken waiters of a job share."""

    __slots__ = ("_lock", "_value", "_done")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: Any = None
        self._done = False

    @classmethod
    def ready(cls, value: Any) -> Wake:
        """A notification whose shared value is already known."""
        wake = cls()
        wake._value = value
        wake._done = True
        return wake

    def shared(self, compute: Callable[[], Any]) -> Any:
        """``compute()`` once for every waiter woken by this notification."""
        if self._done:  # the common case: read without queueing on the lock
            return self._value
        with self._lock:
            if not self._done:
                self._value = compute()
                self._done = True
            return self._value


class Ticket:
    """A registered waiter: a lock held until the notifier releases it, and the
    notification that released it (if any)."""

    __slots__ = ("_gate", "wake")

    def __init__(self) -> None:
        self._gate = threading.Lock()
        self._gate.acquire()
        self.wake: Wake | None = None

    def set(self, wake: Wake) -> None:
        """Wake the waiter (once: the notifier unregisters a ticket before setting it)."""
        self.wake = wake
        self._gate.release()

    def wait(self, seconds: float) -> Wake | None:
        """The notification, or None when ``seconds`` passed without one."""
        self._gate.acquire(timeout=max(0.0, seconds))
        return self.wake


class PhaseNotifier:
    """Tickets by job id.

    ``load(job_id)``, if given, is read once per notification before any waiter wakes
    and handed to them as the :class:`Wake`'s shared value (without it, or if it
    fails, the first woken waiter computes the value).
    """

    def __init__(self, max_waiters: int, load: Callable[[str], Any] | None = None) -> None:
        self._load = load
        self._lock = threading.Lock()
        self._tickets: dict[str, set[Ticket]] = {}
        self._free: deque[None] = deque([None] * max(0, max_waiters))
        self.max_waiters = max_waiters

    def notify(self, job_id: str) -> None:
        with self._lock:
            tickets = self._tickets.pop(job_id, None)
        if tickets:
            wake = self._wake(job_id)
            for t in tickets:
                t.set(wake)

    def _wake(self, job_id: str) -> Wake:
        if self._load is None:
            return Wake()
        try:
            return Wake.ready(self._load(job_id))
        except Exception:  # noqa: BLE001 - the woken waiters will read it themselves
            log.exception("reading job %s for its waiters failed", job_id)
            return Wake()

    def notify_all(self) -> None:
        """Wake everyone (used at shutdown)."""
        with self._lock:
            every = list(self._tickets.values())
            self._tickets.clear()
        for tickets in every:
            wake = Wake()
            for t in tickets:
                t.set(wake)

    @contextlib.contextmanager
    def waiting(self, job_id: str) -> Iterator[Ticket | None]:
        """Register a waiter; yields None when too many requests already block."""
        try:
            self._free.pop()
        except IndexError:
            yield None
            return
        ticket = Ticket()
        with self._lock:
            self._tickets.setdefault(job_id, set()).add(ticket)
        try:
            yield ticket
        finally:
            if ticket.wake is None:  # not notified: still registered
                with self._lock:
                    waiting = self._tickets.get(job_id)
                    if waiting is not None:
                        waiting.discard(ticket)
                        if not waiting:
                            del self._tickets[job_id]
            self._free.append(None)
