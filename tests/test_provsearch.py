"""Provenance search that finds: values inside lists and ranges, content hashes, dates."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import Client
from uws_server.provenance.graph import value_contains


@pytest.mark.parametrize(
    ("value", "wanted", "found"),
    [
        ("1001", "1001", True),
        ("1001 1002", "1001", True),
        ("1001 1002", "1002", True),
        ("1001,1002", "1002", True),
        ("1001; 1002", "1001", True),
        ("1001-1004", "1003", True),
        ("1001-1004", "1004", True),
        ("1001-1004", "1005", False),
        ("1001 1002", "1001 1002", True),
        ("1001 1002", "1002 1001", True),
        ("1001 1002", "1001 1003", False),
        ("10", "1", False),
        ("1001", "100", False),
        ("-30.2", "30.2", False),
        ("a b", "", False),
        ("PKS 2155-304", "PKS 2155-304", True),
        ("PKS 2155-304", "2155", False),
    ],
)
def test_value_contains(value: str, wanted: str, found: bool) -> None:
    assert value_contains(value, wanted) is found


def entity_names(c: Client, **params: str) -> list[str]:
    r = c.get("/provsearch", params=params)
    assert r.status_code == 200, r.text
    return sorted(e["job_url"].rsplit("/", 1)[1] for e in r.json()["entities"])


def test_search_finds_list_values_hashes_and_dates(alice: Client, bob: Client) -> None:
    jobs = {}
    for text in ("1001 1002", "1001-1004", "2001"):
        job = alice.create("echo_job", {"text": text, "PHASE": "RUN"})
        assert alice.wait_final(job) == "COMPLETED"
        jobs[text] = job.rsplit("/", 1)[1]
    ids = entity_names(alice, activity="echo_job", param="text=1001")
    assert ids == sorted([jobs["1001 1002"], jobs["1001-1004"]])
    assert entity_names(alice, activity="echo_job", param="text=1003") == [jobs["1001-1004"]]
    assert entity_names(alice, activity="echo_job", param="text=100") == []

    # by content hash: the output of the "2001" job
    output = alice.get(f"/rest/echo_job/{jobs['2001']}/results/output").content
    digest = hashlib.sha256(output).hexdigest()
    found = alice.get("/provsearch", params={"sha256": digest.upper()}).json()["entities"]
    assert {e["job_url"].rsplit("/", 1)[1] for e in found} == {jobs["2001"]}
    assert all(e["job_url"].startswith(alice.base + "/rest/echo_job/") for e in found)
    # another user finds none of alice's products, whatever the hash
    assert bob.get("/provsearch", params={"sha256": digest}).json()["entities"] == []

    # by date range
    now = datetime.now(UTC)
    after = (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    before = (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert entity_names(alice, activity="echo_job", **{"from": after}) == []
    assert len(entity_names(alice, activity="echo_job", **{"from": before, "to": after})) == 3


@pytest.mark.parametrize(
    "params",
    [{"sha256": "xyz"}, {"sha256": "0" * 63}, {"colour": "red"}, {"param": "noequals"}],
)
def test_bad_search_filters_are_400(alice: Client, params: dict[str, str]) -> None:
    r = alice.get("/provsearch", params=params)
    assert r.status_code == 400 and r.text
