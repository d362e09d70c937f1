"""The WAIT notifier: one read per notification, a relay that never stalls, no leak."""

from __future__ import annotations

import random
import threading
import time

from tests.timing import MACHINE, wait_for
from uws_server.waiters import RELAY_WIDTH, PhaseNotifier


def registered(notifier: PhaseNotifier, job_id: str) -> int:
    """How many tickets wait on ``job_id`` now."""
    return len(notifier._tickets.get(job_id, ()))


def test_notify_reads_once_and_wakes_everyone() -> None:
    reads: list[str] = []
    notifier = PhaseNotifier(100, load=lambda job_id: reads.append(job_id) or job_id)
    values: list[object] = []

    def waiter() -> None:
        with notifier.waiting("j") as ticket:
            assert ticket is not None
            wake = ticket.wait(10)
            values.append(wake.shared(lambda: "recomputed") if wake else None)

    threads = [threading.Thread(target=waiter) for _ in range(3 * RELAY_WIDTH + 1)]
    for t in threads:
        t.start()
    # every waiter registered before the notification (a thread may be slow to start)
    assert wait_for(lambda: registered(notifier, "j") == len(threads), MACHINE, step=0.01)
    notifier.notify("j")
    for t in threads:
        t.join(MACHINE)
    assert reads == ["j"]
    assert values == ["j"] * len(threads)
    assert len(notifier._free) == 100 and not notifier._tickets


def test_relay_survives_waiters_timing_out() -> None:
    """Waiters timing out around the notification still pass their turn on: every
    waiter with a long timeout is woken, none waits its timeout out."""
    random.seed(7)
    for _ in range(10):
        relay_round()


LONG = 10.0  # a waiter that would still be waiting long after the relay woke everyone


def relay_round() -> None:
    notifier = PhaseNotifier(300, load=lambda job_id: job_id)
    woken: list[tuple[float, bool]] = []

    def waiter(timeout: float) -> None:
        with notifier.waiting("j") as ticket:
            assert ticket is not None
            woken.append((timeout, ticket.wait(timeout) is not None))

    def notify_again() -> bool:
        notifier.notify("j")
        return not any(t.is_alive() for t in threads)

    timeouts = [random.choice([0.001, 0.005, 0.01, LONG, LONG]) for _ in range(200)]
    threads = [threading.Thread(target=waiter, args=(s,)) for s in timeouts]
    for t in threads:
        t.start()
    time.sleep(random.choice([0.0, 0.005, 0.01]))
    notifier.notify("j")
    # A thread slow to start registers after that notification and waits for the next:
    # notifying again wakes such late ones, never a ticket the first notification lost.
    assert wait_for(notify_again, LONG + MACHINE, step=0.05)
    assert len(woken) == len(threads)
    assert all(was_woken for timeout, was_woken in woken if timeout == LONG)
    assert len(notifier._free) == 300 and not notifier._tickets


def test_bound_answers_at_once() -> None:
    notifier = PhaseNotifier(1)
    with notifier.waiting("a") as first, notifier.waiting("b") as second:
        assert first is not None and second is None
    with notifier.waiting("c") as again:
        assert again is not None


def test_after_notify_all_every_wait_answers_at_once() -> None:
    """At shutdown: the waiters are woken, and a WAIT arriving later does not block (it
    would hold the HTTP server's stop for up to max_wait seconds)."""
    notifier = PhaseNotifier(10)
    woken: list[bool] = []

    def waiter() -> None:
        with notifier.waiting("j") as ticket:
            assert ticket is not None
            woken.append(ticket.wait(10) is not None)

    t = threading.Thread(target=waiter)
    t.start()
    assert wait_for(lambda: registered(notifier, "j") == 1, MACHINE, step=0.005)
    notifier.notify_all()
    t.join(MACHINE)
    assert woken == [True]
    with notifier.waiting("j") as late:
        assert late is None
    assert len(notifier._free) == 10


def test_a_listener_gets_the_job_as_read_once_and_only_inside_its_block() -> None:
    """The server layer's direct answers (uws_server.direct) listen to the notifier: the
    job as read for the next notification, handed over once, before waiters wake; a
    listener whose block has ended is gone."""
    reads: list[str] = []
    notifier = PhaseNotifier(10, load=lambda job_id: reads.append(job_id) or f"job {job_id}")
    got: list[tuple[str, dict]] = []
    with notifier.listening("j", lambda job, scratch: got.append((job, scratch))):
        notifier.notify("other")
        notifier.notify("j")
        notifier.notify("j")  # one-shot: the first notification took it
    assert [job for job, _ in got] == ["job j"] and reads == ["j"]
    with notifier.listening("j", lambda job, scratch: got.append((job, scratch))):
        pass
    notifier.notify("j")
    assert len(got) == 1 and not notifier._listeners
