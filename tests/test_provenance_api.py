"""Provenance through the service: files per job, ProvSAP across jobs, search, isolation."""

from __future__ import annotations

import io
import json
import time

from astropy.io.votable import parse_single_table
from lxml import etree
from prov.model import ProvDocument

from tests.conftest import Client

NS = {"uws": "http://www.ivoa.net/xml/UWS/v1.0", "xlink": "http://www.w3.org/1999/xlink"}


def wait_provenance(c: Client, job: str, timeout: float = 30) -> dict[str, str]:
    """The job's results once its provenance files are listed among them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = etree.fromstring(c.get(job).content)
        results = {
            r.get("id"): r.get("{http://www.w3.org/1999/xlink}href")
            for r in doc.findall("uws:results/uws:result", NS)
        }
        if "provenance_json" in results:
            return results
        time.sleep(0.2)
    raise AssertionError(f"no provenance for {job}")


def entity_ids(doc: dict, kind: str = "entity") -> set[str]:
    return set(doc.get(kind, {}))


def run_chain(c: Client) -> list[str]:
    first = c.create(
        "copy_job", {"text": "one", "PHASE": "RUN"}, files={"input": ("seed.txt", b"seed\n")}
    )
    assert c.wait_final(first) == "COMPLETED"
    second = c.create(
        "copy_job", {"input": c.base + first + "/results/output", "text": "two", "PHASE": "RUN"}
    )
    assert c.wait_final(second) == "COMPLETED"
    third = c.create(
        "copy_job", {"input": c.base + second + "/results/output", "text": "three", "PHASE": "RUN"}
    )
    assert c.wait_final(third) == "COMPLETED"
    return [first, second, third]


def test_every_job_gets_five_documents(alice: Client) -> None:
    job = alice.create("echo_job", {"text": "prov", "PHASE": "RUN"})
    assert alice.wait_final(job) == "COMPLETED"
    results = wait_provenance(alice, job)
    assert {f"provenance_{f}" for f in ("json", "xml", "provn", "votable", "svg")} <= set(results)
    doc = ProvDocument.deserialize(content=alice.get(job + "/provenance/json").text, format="json")
    records = {str(r.identifier) for r in doc.get_records() if r.identifier}
    job_id = job.rsplit("/", 1)[1]
    assert any(job_id in r for r in records)
    xml_doc = ProvDocument.deserialize(
        content=alice.get(job + "/provenance/xml").text, format="xml"
    )
    assert {str(r.identifier) for r in xml_doc.get_records() if r.identifier} == records
    assert "activity(" in alice.get(job + "/provenance/provn").text
    table = parse_single_table(io.BytesIO(alice.get(job + "/provenance/votable").content))
    assert len(table.array) >= 1
    svg = etree.fromstring(alice.get(job + "/provenance/svg").content)
    assert svg.tag.endswith("svg")
    assert alice.get(job + "/provenance/pdf").status_code == 404


def test_provenance_of_a_running_job_is_a_conflict(alice: Client) -> None:
    job = alice.create("sleep_job", {"seconds": "30", "PHASE": "RUN"})
    r = alice.get(job + "/provenance/json")
    assert r.status_code == 409 and "when the job ends" in r.text
    alice.post(job + "/phase", data={"PHASE": "ABORT"})
    assert alice.wait_final(job) == "ABORTED"
    assert alice.get(job + "/provenance/json").status_code == 200  # aborted jobs too


def test_chain_back_and_forward(alice: Client, bob: Client) -> None:
    first, second, third = run_chain(alice)
    last = json.loads(alice.get(third + "/provenance/json").text)
    # the entity the third job generated
    gen = [v["prov:entity"] for v in last.get("wasGeneratedBy", {}).values()]
    assert len(gen) == 1
    product = gen[0].split(":", 1)[1]
    r = alice.get("/provsap", params={"ID": product, "DEPTH": "ALL", "DIRECTION": "BACK"})
    assert r.status_code == 200, r.text
    back = json.loads(r.text)
    acts = " ".join(back["activity"])
    for job in (first, second, third):
        assert job.rsplit("/", 1)[1] in acts
    # the first job's input (the upload) is there
    first_doc = json.loads(alice.get(first + "/provenance/json").text)
    upload = [v["prov:entity"] for v in first_doc["used"].values()][0]
    assert upload in back["entity"]
    # forward from that input reaches every product
    seed = upload.split(":", 1)[1]
    fwd = json.loads(
        alice.get("/provsap", params={"id": seed, "depth": "ALL", "direction": "FORWARD"}).text
    )
    assert len(fwd["wasGeneratedBy"]) == 3
    # depth limits the walk: one step back from the product is only the third job
    one = json.loads(alice.get("/provsap", params={"ID": product, "DEPTH": "1"}).text)
    assert len(one["activity"]) == 1
    # other formats
    svg = alice.get("/provsap", params={"ID": product, "RESPONSEFORMAT": "PROV-SVG"})
    assert svg.headers["Content-Type"].startswith("image/svg")
    etree.fromstring(svg.content)
    # owner isolation: bob sees nothing of alice's chain
    assert bob.get("/provsap", params={"ID": product}).status_code == 404
    assert bob.get("/provsap", params={"ID": third.rsplit("/", 1)[1]}).status_code == 404


def test_provsap_bad_input(alice: Client) -> None:
    assert alice.get("/provsap").status_code == 400
    assert alice.get("/provsap", params={"ID": "x", "DIRECTION": "SIDEWAYS"}).status_code == 400
    assert alice.get("/provsap", params={"ID": "x", "RESPONSEFORMAT": "PDF"}).status_code == 400
    assert alice.get("/provsap", params={"ID": "nothing"}).status_code == 404


def test_hostile_parameter_values_survive_every_format(alice: Client) -> None:
    value = "$(rm -rf /) \"quoted\" 'single' <tag> & amp\nsecond line"
    job = alice.create("echo_job", {"text": value, "PHASE": "RUN"})
    assert alice.wait_final(job) == "COMPLETED"
    wait_provenance(alice, job)
    doc = ProvDocument.deserialize(content=alice.get(job + "/provenance/json").text, format="json")
    values = [str(v) for r in doc.get_records() for _, v in r.attributes]
    assert value in values
    xml_doc = ProvDocument.deserialize(
        content=alice.get(job + "/provenance/xml").text, format="xml"
    )
    assert value in [str(v) for r in xml_doc.get_records() for _, v in r.attributes]
    svg = etree.fromstring(alice.get(job + "/provenance/svg").content)
    assert "$(rm -rf /)" in "".join(svg.itertext())


def test_search_finds_exactly_the_matching_products(alice: Client, bob: Client) -> None:
    wanted = [alice.create("echo_job", {"text": "needle", "PHASE": "RUN"}) for _ in range(2)]
    other = alice.create("echo_job", {"text": "hay", "PHASE": "RUN"})
    bobs = bob.create("echo_job", {"text": "needle", "PHASE": "RUN"})
    for j in [*wanted, other]:
        assert alice.wait_final(j) == "COMPLETED"
    assert bob.wait_final(bobs) == "COMPLETED"
    r = alice.get("/provsearch", params=[("activity", "echo_job"), ("param", "text=needle")])
    assert r.status_code == 200
    found = {e["job_id"] for e in r.json()["entities"] if e["name"] == "output"}
    assert found == {j.rsplit("/", 1)[1] for j in wanted}
    vot = alice.get("/provsearch", params=[("param", "text=needle"), ("format", "votable")])
    table = parse_single_table(io.BytesIO(vot.content))
    assert {str(x) for x in table.array["job_id"]} >= found
    assert alice.get("/provsearch", params={"colour": "red"}).status_code == 400
    assert alice.get("/provsearch", params={"param": "novalue"}).status_code == 400
    assert alice.get("/provsearch", params={"from": "yesterday"}).status_code == 400
