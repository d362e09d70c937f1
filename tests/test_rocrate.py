"""Provenance as Workflow Run RO-Crates: read back with the RO-Crate library (ro-crate-py)
and checked against the job and the files the service serves."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest
from rocrate.rocrate import ROCrate

from tests.conftest import Client
from tests.test_provenance_api import run_chain
from uws_server.provenance.rocrate import PROCESS_RUN, WORKFLOW_RUN


def read_crate(body: bytes, tmp_path: Path, name: str) -> ROCrate:
    path = tmp_path / name
    path.write_bytes(body)
    assert "ro-crate-metadata.json" in zipfile.ZipFile(io.BytesIO(body)).namelist()
    return ROCrate(str(path))


def actions(crate: ROCrate) -> dict[str, object]:
    return {a["identifier"]: a for a in crate.get_by_type("CreateAction")}


def ids(value: object) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [getattr(i, "id", None) or i["@id"] for i in items if i is not None]


def test_a_jobs_crate_describes_its_run(alice: Client, tmp_path: Path) -> None:
    job = alice.create("echo_job", {"text": "crate me", "n": "4", "PHASE": "RUN"})
    assert alice.wait_final(job) == "COMPLETED"
    job_id = job.rsplit("/", 1)[1]
    r = alice.get(job + "/provenance/rocrate")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/zip"
    crate = read_crate(r.content, tmp_path, "job.zip")

    profiles = ids(crate.root_dataset["conformsTo"])
    assert WORKFLOW_RUN in profiles and PROCESS_RUN in profiles
    workflow = crate.mainEntity
    assert workflow is not None and workflow.id == alice.base + "/jdl/echo_job"
    assert "ComputationalWorkflow" in workflow.type
    assert {fp["name"] for fp in workflow["input"]} >= {"text", "n"}

    (action,) = actions(crate).values()
    assert action["identifier"] == job_id
    assert action["instrument"].id == workflow.id
    assert action["agent"]["name"] == "alice"
    assert action["actionStatus"].endswith("CompletedActionStatus")
    document = alice.get(job).text
    assert action["startTime"][:19] in document.replace("Z", "")[: len(document)]
    values = {v["name"]: v["value"] for v in action["object"] if "PropertyValue" in v.type}
    assert values["text"] == "crate me" and values["n"] == "4"

    (output,) = [f for f in action["result"] if f["name"] == "output"]
    served = alice.get(output.id)
    assert served.status_code == 200
    assert output["sha256"] == hashlib.sha256(served.content).hexdigest()
    assert int(output["contentSize"]) == len(served.content)


def test_a_provsap_answer_is_one_crate_for_the_chain(alice: Client, tmp_path: Path) -> None:
    first, second, third = run_chain(alice)
    third_id = third.rsplit("/", 1)[1]
    r = alice.get(
        "/provsap", params={"ID": third_id, "DEPTH": "ALL", "RESPONSEFORMAT": "RO-CRATE"}
    )
    assert r.status_code == 200, r.text
    crate = read_crate(r.content, tmp_path, "chain.zip")
    assert ids(crate.root_dataset["conformsTo"]) == [PROCESS_RUN]
    runs = actions(crate)
    assert set(runs) == {j.rsplit("/", 1)[1] for j in (first, second, third)}
    # the file one job generated is the very entity the next one used
    for producer, consumer in ((first, second), (second, third)):
        made = ids(runs[producer.rsplit("/", 1)[1]]["result"])
        used = ids(runs[consumer.rsplit("/", 1)[1]]["object"])
        assert set(made) & set(used), (made, used)


def test_crates_respect_owners_and_phases(alice: Client, bob: Client) -> None:
    job = alice.create("echo_job", {"text": "mine"})
    assert alice.get(job + "/provenance/rocrate").status_code == 409  # PENDING: not yet
    assert bob.get(job + "/provenance/rocrate").status_code == 404
    alice.post(job + "/phase", data={"PHASE": "RUN"})
    assert alice.wait_final(job) == "COMPLETED"
    job_id = job.rsplit("/", 1)[1]
    r = bob.get("/provsap", params={"ID": job_id, "RESPONSEFORMAT": "RO-CRATE"})
    assert r.status_code == 404
    listed = alice.get(job + "/provenance").json()["formats"]
    assert listed["rocrate"].endswith("/provenance/rocrate")


@pytest.mark.parametrize("fmt", ["RO-CRATE", "ro-crate"])
def test_the_format_name_is_case_insensitive(alice: Client, fmt: str) -> None:
    job = alice.create("echo_job", {"text": "x", "PHASE": "RUN"})
    assert alice.wait_final(job) == "COMPLETED"
    r = alice.get("/provsap", params={"ID": job.rsplit("/", 1)[1], "RESPONSEFORMAT": fmt})
    assert r.status_code == 200 and r.content[:2] == b"PK"
