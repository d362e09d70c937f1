"""Every XML document against the official UWS 1.1 schema, and read by pyvo's parser."""

from __future__ import annotations

from pathlib import Path

import pytest
import xmlschema
from pyvo.io.uws import parse_job, parse_job_list

from tests.conftest import Client, LiveServer

# shared/ lies beside the checkout, here and in CI.
IVOA = Path(__file__).resolve().parents[2] / "shared" / "ivoa"


@pytest.fixture(scope="module")
def schema() -> xmlschema.XMLSchema:
    assert (IVOA / "UWS-v1.1.xsd").exists(), f"the official schema is missing under {IVOA}"
    return xmlschema.XMLSchema(
        str(IVOA / "UWS-v1.1.xsd"),
        locations={"http://www.w3.org/1999/xlink": str(IVOA / "xlink.xsd")},
    )


def test_schema_rejects_a_wrong_document(schema: xmlschema.XMLSchema) -> None:
    good = (IVOA / "example-job.xml").read_text()
    assert schema.is_valid(good)
    assert not schema.is_valid(good.replace(">COMPLETED<", ">DONE<"))


def test_every_document_type_is_valid(schema: xmlschema.XMLSchema, alice: Client) -> None:
    pending = alice.create("echo_job", {"text": "a <b> & 'c'", "RUNID": "r&d"})
    done = alice.create("echo_job", {"text": "ok", "PHASE": "RUN"})
    failed = alice.create("fail_job", {"PHASE": "RUN"})
    assert alice.wait_final(done) == "COMPLETED"
    assert alice.wait_final(failed) == "ERROR"
    docs = {
        "pending job": alice.get(pending),
        "completed job": alice.get(done),
        "failed job": alice.get(failed),
        "job list": alice.get("/rest/echo_job"),
        "filtered list": alice.get("/rest/echo_job?PHASE=COMPLETED&LAST=5"),
        "empty list": alice.get("/rest/echo_job?PHASE=HELD"),
        "results": alice.get(done + "/results"),
        "empty results": alice.get(pending + "/results"),
        "parameters": alice.get(pending + "/parameters"),
    }
    for what, r in docs.items():
        assert r.status_code == 200, what
        errors = list(schema.iter_errors(r.text))
        assert not errors, (what, errors[:1])


def test_pyvo_reads_our_documents(alice: Client) -> None:
    job = alice.create("echo_job", {"text": "pyvo", "RUNID": "pv", "PHASE": "RUN"})
    assert alice.wait_final(job) == "COMPLETED"
    import io

    parsed = parse_job(io.BytesIO(alice.get(job).content))
    assert parsed.phase == "COMPLETED"
    assert parsed.runid == "pv"
    assert parsed.ownerid == "alice"
    assert parsed.results[0].id_ == "output"
    assert {p.id_: p.content for p in parsed.parameters}["text"] == "pyvo"
    listed = parse_job_list(io.BytesIO(alice.get("/rest/echo_job").content))
    assert job.rsplit("/", 1)[1] in [j.jobid for j in listed]


def test_pyvo_async_job_runs_against_us(live: LiveServer, alice: Client) -> None:
    """pyvo's AsyncTAPJob drives run, wait (WAIT=-1), results and delete."""
    from pyvo.dal import AsyncTAPJob

    job = alice.create("echo_job", {"text": "via pyvo"})
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {alice.token}"
    tap_job = AsyncTAPJob(live.base + job, session=session)
    tap_job.run()
    tap_job.wait(phases=["COMPLETED", "ERROR", "ABORTED"], timeout=30)
    assert tap_job.phase == "COMPLETED"
    assert tap_job.owner == "alice"
    urls = {r.id_: r.href for r in tap_job.results}
    assert session.get(urls["output"]).text.startswith("via pyvo")
    tap_job.delete()
    assert alice.get(job).status_code == 404
