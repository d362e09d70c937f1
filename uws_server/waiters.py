"""Wake-ups for blocking WAIT requests, without polling.

Each waiting request registers a ticket under its job id; every change the service
makes to a job wakes the tickets registered for it, handing them one shared
:class:`Wake`. The notifier reads the job once, before it wakes anyone, and every
waiter answers from that read: 500 waiters of one job cost one database read, made
while no woken thread competes for the GIL that each sqlite3 call gives up, and no
waiter queues on a lock behind it.

A bound on how many requests may block at once keeps waiters from ever taking every
server thread: past the bound, WAIT answers at once (the standard allows the server to
return early).

A phase change wakes hundreds of threads, all needing the GIL. They are woken a few at
a time, each passing its turn on as it leaves (see :meth:`PhaseNotifier.notify`), and
the path takes no contended lock: a ticket is one plain lock that the notifier
releases (no Condition to re-acquire on waking), the shared value is read without a
lock once set, and the bound is a deque of free slots whose pop and append are atomic.
Measured with 500 waiters (bench/bench_uws.py).

The server layer may also listen (:meth:`PhaseNotifier.listening`): the notifier calls
its ``deliver`` callback with the job it read, before waking anyone, so that the HTTP
layer can write every answer at once from this thread (:mod:`uws_server.direct`); the
woken threads then only finish up. The service never sees these callbacks: it waits
and notifies, the server layer answers.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from uws_server.joblog import job_log

log = logging.getLogger("uws_server")

# How many woken waiters of one notification run at once (see PhaseNotifier.notify).
RELAY_WIDTH = 4

# Answers a waiter from the notifier's thread: (the shared value, a dict shared by every
# delivery of one notification, for what they can compute once). See uws_server.direct.
Deliver = Callable[[Any, dict[str, Any]], None]


class Wake:
    """One notification: what the woken waiters of a job share, and the relay of
    tickets not woken yet (see :meth:`PhaseNotifier.notify`)."""

    __slots__ = ("_lock", "_value", "_done", "_pending")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: Any = None
        self._done = False
        self._pending: deque[Ticket] = deque()

    def relay(self) -> None:
        """Wake the next ticket of this notification, if any is left."""
        try:
            ticket = self._pending.popleft()  # atomic: each ticket is woken once
        except IndexError:
            return
        ticket.set(self)

    def fill(self, value: Any) -> None:
        """Set the shared value before any waiter is woken."""
        self._value = value
        self._done = True

    def pend(self, tickets: Iterable[Ticket]) -> None:
        """Queue tickets to be woken by :meth:`relay`."""
        self._pending.extend(tickets)

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

    __slots__ = ("_gate", "wake", "relay")

    def __init__(self) -> None:
        self._gate = threading.Lock()
        self._gate.acquire()
        self.wake: Wake | None = None
        self.relay: Wake | None = None  # the notification this ticket passes a turn on

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
        # One-shot listeners of the server layer (see listening()), by job id.
        self._listeners: dict[str, list[Deliver]] = {}
        self._free: deque[None] = deque([None] * max(0, max_waiters))
        self.max_waiters = max_waiters
        self._closed = False  # set at shutdown: a WAIT then answers at once

    def notify(self, job_id: str) -> None:
        """Wake the job's waiters, RELAY_WIDTH at a time.

        Each waiter, as it leaves, wakes the next one (:meth:`Wake.relay`), so that a
        few threads answer at a time instead of hundreds fighting over the GIL at once:
        it shortens the 500-waiter p99 and the answer to the request that made the
        change (figures: docs/benchmarks.md, "Worker runner", moved figures). Every
        ticket handed a turn passes one on when it leaves, even one that timed out
        meanwhile, so the relay cannot stall.
        """
        with self._lock:
            tickets = self._tickets.pop(job_id, None) or set()
            listeners = self._listeners.pop(job_id, None) or []
            if not tickets and not listeners:
                return
            wake = Wake()
            for t in tickets:  # under the lock: see the double check in waiting()
                t.relay = wake
        if self._load is not None:  # one read, before anyone wakes
            try:
                value = self._load(job_id)
            except Exception:  # noqa: BLE001 - the woken waiters will read it themselves
                job_log(log, job_id).exception("reading it for its waiters failed")
            else:
                wake.fill(value)
                self._deliver(job_id, listeners, value)
        wake.pend(tickets)
        for _ in range(RELAY_WIDTH):
            wake.relay()

    @staticmethod
    def _deliver(job_id: str, listeners: Iterable[Deliver], value: Any) -> None:
        """Hand the job as read to every listener, from this thread, before any waiting
        thread is woken (the server layer answers its waiters in one pass of
        non-blocking writes, see uws_server.direct)."""
        scratch: dict[str, Any] = {}
        for deliver in listeners:
            try:
                deliver(value, scratch)
            except Exception:  # noqa: BLE001 - that waiter answers by itself
                job_log(log, job_id).exception("answering a waiter directly failed")

    def notify_all(self) -> None:
        """Wake everyone, and answer every later WAIT at once (used at shutdown)."""
        with self._lock:
            self._closed = True
            every = list(self._tickets.values())
            self._tickets.clear()
            self._listeners.clear()
        for tickets in every:
            wake = Wake()
            for t in tickets:
                t.set(wake)

    @contextlib.contextmanager
    def listening(self, job_id: str, deliver: Deliver) -> Iterator[None]:
        """Call ``deliver(job, scratch)`` once, from the notifying thread, with the job as
        read for the next notification of ``job_id`` (before any waiter wakes), if it
        comes while the block runs. For the server layer's direct answers: the service
        only notifies, it never answers a client."""
        with self._lock:
            self._listeners.setdefault(job_id, []).append(deliver)
        try:
            yield
        finally:
            with self._lock:
                listeners = self._listeners.get(job_id)
                if listeners is not None and deliver in listeners:
                    listeners.remove(deliver)
                    if not listeners:
                        del self._listeners[job_id]

    @contextlib.contextmanager
    def waiting(self, job_id: str) -> Iterator[Ticket | None]:
        """Register a waiter; yields None when too many requests already block."""
        try:
            if self._closed:
                raise IndexError("stopping")
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
            if ticket.relay is None:  # timed out, unless a notification is taking it now
                with self._lock:
                    if ticket.relay is None:  # still registered
                        waiting = self._tickets.get(job_id)
                        if waiting is not None:
                            waiting.discard(ticket)
                            if not waiting:
                                del self._tickets[job_id]
            if ticket.relay is not None:  # handed to a notification: pass a turn on
                ticket.relay.relay()
            self._free.append(None)
