"""UWS 1.1 conformance over HTTP: every resource, status code, filter, WAIT and phase."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from lxml import etree

from tests.conftest import Client, LiveServer

# Tests that need no WAIT answered by the server layer call the app in-process
# (tests/conftest.py, InProcessServer): the same requests, no socket, no server thread.
IN_PROCESS = pytest.mark.in_process

NS = {"uws": "http://www.ivoa.net/xml/UWS/v1.0", "xlink": "http://www.w3.org/1999/xlink"}


def xml(r) -> etree._Element:  # type: ignore[no-untyped-def]
    assert r.status_code == 200, (r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("application/xml")
    return etree.fromstring(r.content)


def ids(r) -> list[str]:  # type: ignore[no-untyped-def]
    return [e.get("id") for e in xml(r).findall("uws:jobref", NS)]


@IN_PROCESS
def test_in_process_client_has_no_server(live: LiveServer, alice: Client) -> None:
    """The ``in_process`` marker: the whole service, called through WSGI (no socket)."""
    assert not hasattr(live, "server") and live.base == "http://uws.test"
    job = alice.create("echo_job", {"text": "x"})
    assert alice.phase(job) == "PENDING"
    assert live.service.store.get_job(job.rsplit("/", 1)[1]).parameters["text"] == "x"


@IN_PROCESS
def test_create_redirects_to_new_pending_job(alice: Client) -> None:
    r = alice.post("/rest/echo_job", data={"text": "hi", "RUNID": "run-1"})
    assert r.status_code == 303
    job = "/rest/" + r.headers["Location"].split("/rest/")[1]
    doc = xml(alice.get(job))
    assert doc.get("version") == "1.1"
    assert doc.findtext("uws:phase", namespaces=NS) == "PENDING"
    assert doc.findtext("uws:runId", namespaces=NS) == "run-1"
    assert doc.findtext("uws:ownerId", namespaces=NS) == "alice"
    params = {p.get("id"): p.text for p in doc.findall("uws:parameters/uws:parameter", NS)}
    assert params["text"] == "hi"
    assert params["n"] == "1"  # default filled in
    assert "x" not in params  # optional without default stays absent


@IN_PROCESS
def test_job_ids_are_random_and_long(alice: Client) -> None:
    jobs = {alice.create("echo_job").rsplit("/", 1)[1] for _ in range(20)}
    assert len(jobs) == 20
    assert all(len(j) >= 16 for j in jobs)  # 96 bits in URL-safe base64


@IN_PROCESS
def test_simple_resources(alice: Client) -> None:
    job = alice.create("echo_job", {"text": "x"})
    assert alice.get(job + "/phase").text == "PENDING"
    assert alice.get(job + "/owner").text == "alice"
    assert alice.get(job + "/executionduration").text == "60"
    destruction = alice.get(job + "/destruction").text
    assert destruction.endswith("Z")
    quote = alice.get(job + "/quote").text
    assert quote.endswith("Z")  # from the definition's quote (5 s)
    assert alice.get(job + "/error").text == ""
    assert alice.get(job + "/parameters/text").text == "x"
    assert alice.get(job + "/parameters/nope").status_code == 404
    results = xml(alice.get(job + "/results"))
    assert results.tag == f"{{{NS['uws']}}}results"
    params = xml(alice.get(job + "/parameters"))
    assert params.tag == f"{{{NS['uws']}}}parameters"


def test_run_to_completion_and_download_result(alice: Client) -> None:
    job = alice.create("echo_job", {"text": "hello world", "PHASE": "RUN"})
    assert alice.wait_final(job) == "COMPLETED"
    doc = xml(alice.get(job))
    assert doc.findtext("uws:startTime", namespaces=NS)
    assert doc.findtext("uws:endTime", namespaces=NS)
    result = doc.find("uws:results/uws:result", NS)
    assert result.get("id") == "output"
    assert result.get("mime-type") == "text/plain"
    href = result.get("{http://www.w3.org/1999/xlink}href")
    r = alice.get(href)
    assert r.status_code == 200
    assert r.text.splitlines()[0] == "hello world"
    assert int(result.get("size")) == len(r.content)
    assert alice.get(job + "/stdout").status_code == 200


def test_phase_run_via_phase_resource_and_query(alice: Client) -> None:
    job = alice.create("echo_job")
    r = alice.post(job + "/phase", data={"PHASE": "RUN"})
    assert r.status_code == 303 and r.headers["Location"].endswith(job)
    assert alice.wait_final(job) == "COMPLETED"
    # PHASE=RUN in the creation URL's query part, as the standard suggests
    r = alice.post("/rest/echo_job?PHASE=RUN", data={"text": "q"})
    assert r.status_code == 303
    job2 = "/rest/" + r.headers["Location"].split("/rest/")[1]
    assert alice.wait_final(job2) == "COMPLETED"


def test_phase_rules(alice: Client) -> None:
    job = alice.create("sleep_job", {"seconds": "30"})
    assert alice.post(job + "/phase", data={"PHASE": "SUSPEND"}).status_code == 400
    assert alice.post(job + "/phase", data={"PHASE": "FLY"}).status_code == 400
    assert alice.post(job + "/phase", data={}).status_code == 400
    assert alice.post(job + "/phase", data={"PHASE": "RUN"}).status_code == 303
    # PENDING-only changes now conflict
    assert (
        alice.post(job + "/executionduration", data={"EXECUTIONDURATION": "5"}).status_code == 409
    )
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert alice.post(job + "/destruction", data={"DESTRUCTION": future}).status_code == 409
    assert alice.post(job + "/parameters", data={"seconds": "2"}).status_code == 409
    assert alice.post(job + "/phase", data={"PHASE": "ABORT"}).status_code == 303
    assert alice.wait_final(job) == "ABORTED"
    # a final phase is final
    assert alice.post(job + "/phase", data={"PHASE": "RUN"}).status_code == 409
    assert alice.post(job + "/phase", data={"PHASE": "ABORT"}).status_code == 303  # idempotent


@IN_PROCESS
def test_pending_changes(alice: Client) -> None:
    job = alice.create("echo_job")
    assert (
        alice.post(job + "/executionduration", data={"EXECUTIONDURATION": "7"}).status_code == 303
    )
    assert alice.get(job + "/executionduration").text == "7"
    assert (
        alice.post(job + "/executionduration", data={"EXECUTIONDURATION": "-1"}).status_code == 400
    )
    assert (
        alice.post(job + "/executionduration", data={"EXECUTIONDURATION": "x"}).status_code == 400
    )
    when = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    r = alice.post(job + "/destruction", data={"DESTRUCTION": when.strftime("%Y-%m-%dT%H:%M:%SZ")})
    assert r.status_code == 303
    assert alice.get(job + "/destruction").text == when.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert alice.post(job + "/destruction", data={"DESTRUCTION": "yesterday"}).status_code == 400
    assert (
        alice.post(job + "/destruction", data={"DESTRUCTION": "2001-01-01T00:00:00Z"}).status_code
        == 400
    )
    assert alice.post(job + "/parameters", data={"text": "changed", "n": "5"}).status_code == 303
    assert alice.get(job + "/parameters/text").text == "changed"
    assert alice.get(job + "/parameters/n").text == "5"
    assert alice.post(job + "/parameters", data={"n": "500"}).status_code == 400
    assert alice.get(job + "/parameters/n").text == "5"  # nothing lost on a rejected change


@IN_PROCESS
def test_delete_and_action_delete(alice: Client) -> None:
    job = alice.create("echo_job")
    r = alice.delete(job)
    assert r.status_code == 303 and r.headers["Location"].endswith("/rest/echo_job")
    assert alice.get(job).status_code == 404
    job = alice.create("echo_job")
    r = alice.post(job, data={"ACTION": "DELETE"})
    assert r.status_code == 303
    assert alice.get(job).status_code == 404
    assert alice.post(alice.create("echo_job"), data={"ACTION": "FLY"}).status_code == 400


@IN_PROCESS
def test_list_filters(live: LiveServer, alice: Client) -> None:
    created = [alice.create("echo_job", {"text": str(i)}) for i in range(5)]
    ids_created = [c.rsplit("/", 1)[1] for c in created]
    listed = ids(alice.get("/rest/echo_job"))
    assert listed == ids_created[::-1]  # newest first
    assert ids(alice.get("/rest/echo_job", params={"LAST": 2})) == ids_created[:-3:-1]
    assert alice.get("/rest/echo_job", params={"LAST": 0}).status_code == 400
    assert alice.get("/rest/echo_job", params={"LAST": "x"}).status_code == 400
    # AFTER: strictly after the creation time of the third job
    third = xml(alice.get(created[2])).findtext("uws:creationTime", namespaces=NS)
    after = ids(alice.get("/rest/echo_job", params={"AFTER": third}))
    assert set(after) == set(ids_created[3:])
    assert alice.get("/rest/echo_job", params={"AFTER": "not-a-date"}).status_code == 400
    # PHASE, repeatable, any letter case and parameter order
    alice.post(created[0] + "/phase", data={"PHASE": "ABORT"})
    aborted = ids(alice.get("/rest/echo_job?PHASE=ABORTED"))
    assert aborted == [ids_created[0]]
    both = ids(alice.get("/rest/echo_job?LAST=10&phase=PENDING&PHASE=ABORTED"))
    assert set(both) == set(ids_created)
    assert alice.get("/rest/echo_job?PHASE=DONE").status_code == 400
    # ARCHIVED hidden unless asked for
    store, now = live.service.store, datetime.now(UTC).replace(tzinfo=None)
    assert store.mark_aborted(ids_created[1], now, "finished, to be archived")
    assert store.mark_archived(ids_created[1])
    assert ids_created[1] not in ids(alice.get("/rest/echo_job"))
    assert ids(alice.get("/rest/echo_job?PHASE=ARCHIVED")) == [ids_created[1]]
    ref = xml(alice.get("/rest/echo_job?LAST=1")).find("uws:jobref", NS)
    assert ref.findtext("uws:ownerId", namespaces=NS) == "alice"
    assert ref.findtext("uws:creationTime", namespaces=NS)
    assert ref.get("{http://www.w3.org/1999/xlink}href").endswith(created[-1])


@IN_PROCESS
def test_unknown_job_list_and_job(alice: Client) -> None:
    assert alice.get("/rest/no_such_definition").status_code == 404
    assert alice.post("/rest/no_such_definition", data={}).status_code == 404
    assert alice.get("/rest/echo_job/doesnotexist").status_code == 404
    r = alice.get("/rest/echo_job/doesnotexist/phase")
    assert r.status_code == 404 and "doesnotexist" in r.text
    assert "Traceback" not in r.text


def test_wait_returns_on_phase_change(alice: Client) -> None:
    job = alice.create("sleep_job", {"seconds": "30"})
    got: dict[str, float | str] = {}

    def waiter() -> None:
        t0 = time.monotonic()
        doc = xml(alice.get(job, params={"WAIT": 20}))
        got["phase"] = doc.findtext("uws:phase", namespaces=NS)
        got["elapsed"] = time.monotonic() - t0

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.5)
    assert t.is_alive()  # really blocking while PENDING
    alice.post(job + "/phase", data={"PHASE": "RUN"})
    t.join(10)
    assert not t.is_alive()
    assert got["phase"] in ("QUEUED", "EXECUTING")
    assert got["elapsed"] < 5
    alice.post(job + "/phase", data={"PHASE": "ABORT"})


def test_wait_with_phase_and_timeouts(alice: Client) -> None:
    job = alice.create("echo_job")
    t0 = time.monotonic()
    alice.get(job, params={"WAIT": 10, "PHASE": "EXECUTING"})  # not in that phase: at once
    assert time.monotonic() - t0 < 1
    t0 = time.monotonic()
    alice.get(job, params={"WAIT": 1, "PHASE": "PENDING"})  # in it: waits its time
    assert 0.9 < time.monotonic() - t0 < 5
    assert alice.get(job, params={"WAIT": "soon"}).status_code == 400
    alice.post(job + "/phase", data={"PHASE": "ABORT"})
    t0 = time.monotonic()
    alice.get(job, params={"WAIT": -1})  # final phase: never blocks
    assert time.monotonic() - t0 < 1


def test_failed_job_reports_error(alice: Client) -> None:
    job = alice.create("fail_job", {"PHASE": "RUN"})
    assert alice.wait_final(job) == "ERROR"
    doc = xml(alice.get(job))
    msg = doc.findtext("uws:errorSummary/uws:message", namespaces=NS)
    assert "3" in msg  # the exit code is named
    assert alice.get(job + "/error").text == msg
    assert "something went wrong" in alice.get(job + "/stderr").text


def test_missing_declared_result_is_an_error_message(alice: Client) -> None:
    job = alice.create("missing_result", {"PHASE": "RUN"})
    assert alice.wait_final(job) == "ERROR"
    assert "output" in alice.get(job + "/error").text


def test_execution_duration_is_enforced(alice: Client) -> None:
    job = alice.create("sleep_job", {"seconds": "60", "EXECUTIONDURATION": "1", "PHASE": "RUN"})
    t0 = time.monotonic()
    assert alice.wait_final(job, timeout=30) == "ERROR"
    assert time.monotonic() - t0 < 15
    assert "1 s" in alice.get(job + "/error").text


@IN_PROCESS
def test_index_and_job_lists(alice: Client) -> None:
    assert alice.get("/").json()["service"] == "uws-server"
    lists = alice.get("/rest").json()["job_lists"]
    assert any(url.endswith("/rest/echo_job") for url in lists)


@IN_PROCESS
def test_accented_text_arrives_intact_from_every_kind_of_form(alice: Client) -> None:
    """urlencoded, multipart (what the web form sends) and the query string: bottle
    decodes them differently, and each must reach the job as the UTF-8 text sent."""
    for text in ("Crab Nébula café", "Σ ∑ ok"):  # latin-1 range or not
        _check_text_from_every_form(alice, text)


def _check_text_from_every_form(alice: Client, text: str) -> None:
    ids = [
        alice.create("test_activity_1", {"text": text}),  # urlencoded
        alice.create("test_activity_1", files={"text": (None, text.encode())}),  # multipart
    ]
    r = alice.post("/rest/test_activity_1", params={"text": text})  # query string
    assert r.status_code == 303, r.text
    ids.append("/rest/" + r.headers["Location"].split("/rest/", 1)[1])
    for job in ids:
        got = alice.get(job + "/parameters/text")
        assert got.status_code == 200 and got.text == text, (job, got.text)
