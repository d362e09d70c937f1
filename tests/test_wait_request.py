"""WAIT read the same way by ``/rest`` and ``/tap/async`` (``handlers.wait_request``:
issue 14, the TAP routes had their own copy of the parsing)."""

from __future__ import annotations

import time

import pytest

from tests.conftest import Client


def _pending_job(alice: Client, kind: str) -> str:
    if kind == "rest":
        return alice.create("echo_job")
    r = alice.post(
        "/tap/async",
        data={"LANG": "ADQL", "QUERY": "SELECT TOP 1 obs_id FROM ivoa.obscore"},
    )
    assert r.status_code == 303, r.text
    return r.headers["Location"]


@pytest.mark.in_process
@pytest.mark.parametrize("kind", ["rest", "tap"])
def test_wait_is_read_alike_on_both_job_lists(alice: Client, kind: str) -> None:
    job = _pending_job(alice, kind)
    for bad in ("soon", "1.5", "1e3"):
        r = alice.get(job, params={"WAIT": bad})
        assert r.status_code == 400, (bad, r.text)
        assert f"WAIT: '{bad}' is not an integer" in r.text
    r = alice.get(job, params={"wait": "x" * 100})  # either letter case; quoted cut short
    assert r.status_code == 400 and "x" * 33 not in r.text
    t0 = time.monotonic()
    r = alice.get(job, params={"WAIT": "10", "PHASE": "EXECUTING"})  # not in it: at once
    assert r.status_code == 200 and "<uws:phase>PENDING</uws:phase>" in r.text
    assert time.monotonic() - t0 < 5
    t0 = time.monotonic()
    r = alice.get(job, params={"wait": "1", "phase": "PENDING"})  # in it: waits its time
    assert r.status_code == 200 and "<uws:phase>PENDING</uws:phase>" in r.text
    assert time.monotonic() - t0 >= 0.9
