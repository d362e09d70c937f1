"""The WAIT notifier: one read per notification, a relay that never stalls, no leak."""

from __future__ import annotations

import random
import threading
import time

from uws_server.waiters import RELAY_WIDTH, PhaseNotifier


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
    time.sleep(0.2)
    notifier.notify("j")
    for t in threads:
        t.join(5)
    assert reads == ["j"]
    assert values == ["j"] * len(threads)
    assert len(notifier._free) == 100 and not notifier._tickets


def test_relay_survives_waiters_timing_out() -> None:
    """Waiters timing out around the notification still pass their turn on."""
    random.seed(7)
    for _ in range(10):
        notifier = PhaseNotifier(300, load=lambda job_id: job_id)

        def waiter(notifier: PhaseNotifier) -> None:
            with notifier.waiting("j") as ticket:
                assert ticket is not None
                ticket.wait(random.choice([0.001, 0.005, 0.01, 10, 10]))

        threads = [threading.Thread(target=waiter, args=(notifier,)) for _ in range(200)]
        for t in threads:
            t.start()
        time.sleep(random.choice([0.0, 0.005, 0.01]))
        t0 = time.monotonic()
        notifier.notify("j")
        for t in threads:
            t.join(10)
        assert time.monotonic() - t0 < 5  # nobody waited for its own timeout
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
    while not notifier._tickets:
        time.sleep(0.005)
    notifier.notify_all()
    t.join(5)
    assert woken == [True]
    with notifier.waiting("j") as late:
        assert late is None
    assert len(notifier._free) == 10
