"""The web job list (issue 13.5): every job counted and paged (it used to stop silently
at 300), sorting, filters by phase, definition and creation date, row actions (run,
abort, delete, run again) that come back to the list as it was; bad queries are 400s."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path

import pytest

from tests.conftest import Client, LiveServer, make_settings


def rows(html: str) -> list[tuple[str, str]]:
    """(job id, phase) of each row of the list, in order."""
    return re.findall(r'<tr data-id="([^"]+)" data-phase="([^"]+)">', html)


@pytest.fixture
def many(alice: Client, bob: Client) -> list[str]:
    """310 PENDING echo jobs of alice (newest last) and one job of bob."""
    ids = []
    for i in range(310):
        job = alice.create("echo_job", {"text": f"t{i}", "runid": f"run-{i % 7}"})
        ids.append(job.rsplit("/", 1)[1])
    bob.create("echo_job", {"text": "bob's"})
    return ids


def test_list_pages_through_every_job(alice: Client, many: list[str]) -> None:
    first = alice.get("/ui/jobs", params={"size": "100"}).text
    assert "310 jobs · page 1 of 4" in first
    assert [i for i, _ in rows(first)] == many[::-1][:100]  # newest first
    seen = []
    for page in range(1, 5):
        html = alice.get("/ui/jobs", params={"size": "100", "page": str(page)}).text
        seen += [i for i, _ in rows(html)]
    assert seen == many[::-1]  # all 310, each once, none of bob's
    last = alice.get("/ui/jobs", params={"size": "100", "page": "4"}).text
    assert 'id="page-next"' not in last and 'id="page-prev"' in last
    # a page past the end shows the last one
    assert rows(alice.get("/ui/jobs", params={"size": "100", "page": "9"}).text)[-1][0] == many[0]
    # the JSON the page polls has the same query and says how many there are
    data = alice.get("/ui/api/jobs", params={"size": "20", "page": "2"}).json()
    assert data["total"] == 310 and data["pages"] == 16 and data["page"] == 2
    assert [j["job_id"] for j in data["jobs"]] == many[::-1][20:40]


def test_sorting_and_filters(alice: Client, live: LiveServer, many: list[str]) -> None:
    asc = alice.get("/ui/jobs", params={"sort": "created", "order": "asc", "size": "20"}).text
    assert [i for i, _ in rows(asc)] == many[:20]
    by_run = alice.get("/ui/jobs", params={"sort": "run_id", "order": "asc", "size": "200"}).text
    run_ids = re.findall(r"</a></td><td>(run-\d)</td>", by_run)
    assert run_ids == sorted(run_ids) and run_ids[0] == "run-0"
    # the header links flip the order of the sorted column
    header = 'href="/ui/jobs?sort=run_id&amp;size=200" data-sort="run_id" class="sorted asc"'
    assert header in by_run
    # phase filter: run one job, then only it is COMPLETED
    alice.post(f"/rest/echo_job/{many[5]}/phase", data={"PHASE": "RUN"})
    assert alice.wait_final(f"/rest/echo_job/{many[5]}") == "COMPLETED"
    done = alice.get("/ui/jobs", params={"phase": "COMPLETED"}).text
    assert rows(done) == [(many[5], "COMPLETED")] and "1 job" in done
    # definition filter
    assert "No jobs match." in alice.get("/ui/jobs", params={"jobname": "copy_job"}).text
    assert rows(alice.get("/ui/jobs", params={"jobname": "copy_job"}).text) == []
    # date filter: created today (UTC) has them all, yesterday none
    today = datetime.now(UTC).date()
    assert "310 jobs" in alice.get("/ui/jobs", params={"from": str(today)}).text
    old = alice.get("/ui/jobs", params={"to": str(today - timedelta(days=1))}).text
    assert rows(old) == [] and "0 jobs" in old


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"sort": "colour"}, "sort: 'colour' is not one of"),
        ({"order": "sideways"}, "order must be asc or desc"),
        ({"size": "7"}, "size must be one of"),
        ({"page": "0"}, "page must be 1 or more"),
        ({"page": "x"}, "page: 'x' is not a whole number"),
        ({"from": "yesterday"}, "from: 'yesterday' is not a date"),
        ({"from": "2026-01-02", "to": "2026-01-01"}, "to must be after from"),
        ({"phase": "SLEEPING"}, "is not a UWS phase"),
    ],
)
def test_bad_list_queries_are_400s(alice: Client, params: dict, message: str) -> None:
    for path in ("/ui/jobs", "/ui/api/jobs"):
        r = alice.get(path, params=params)
        assert r.status_code == 400 and message in unescape(r.text), (path, r.text[:300])


def test_row_actions_come_back_to_the_list(alice: Client, bob: Client) -> None:
    jobs = [alice.create("echo_job", {"text": f"row {i}"}).rsplit("/", 1)[1] for i in range(3)]
    listing = "/ui/jobs?sort=created&order=asc&size=20"
    html = alice.get(listing).text
    csrf = re.search(r'name="_csrf" value="([^"]*)"', html).group(1)
    back = unescape(re.search(r'data-query="([^"]+)"', html).group(1))
    assert back == "/ui/jobs?order=asc&size=20"
    row = re.search(rf'<tr data-id="{jobs[0]}".*?</tr>', html, re.S).group(0)
    assert 'data-action="run"' in row and 'data-action="abort"' in row
    assert f'href="/ui/jobs/echo_job/{jobs[0]}/rerun"' in row
    # run from the list: back to the same list, with a message
    r = alice.post(
        f"/ui/jobs/echo_job/{jobs[0]}/phase", data={"_csrf": csrf, "phase": "RUN", "back": back}
    )
    assert r.status_code == 303 and r.headers["Location"] == back + "&msg=started"
    assert alice.wait_final(f"/rest/echo_job/{jobs[0]}") == "COMPLETED"
    # abort and delete
    r = alice.post(
        f"/ui/jobs/echo_job/{jobs[1]}/phase", data={"_csrf": csrf, "phase": "ABORT", "back": back}
    )
    assert r.headers["Location"] == back + "&msg=aborted"
    assert alice.phase(f"/rest/echo_job/{jobs[1]}") == "ABORTED"
    r = alice.post(f"/ui/jobs/echo_job/{jobs[2]}/delete", data={"_csrf": csrf, "back": back})
    assert r.headers["Location"] == back + "&msg=deleted"
    assert alice.get(f"/rest/echo_job/{jobs[2]}").status_code == 404
    # run again: the form, pre-filled
    r = alice.get(f"/ui/jobs/echo_job/{jobs[0]}/rerun")
    assert r.status_code == 303 and r.headers["Location"].startswith("/ui/submit/echo_job?")
    assert "row+0" in r.headers["Location"] or "row%200" in r.headers["Location"]
    # a "back" elsewhere is not followed (no open redirect), and bob cannot act on alice's
    r = alice.post(
        f"/ui/jobs/echo_job/{jobs[0]}/delete", data={"_csrf": csrf, "back": "https://evil/"}
    )
    assert r.headers["Location"] == "/ui/jobs?msg=deleted"
    assert bob.get(f"/ui/jobs/echo_job/{jobs[1]}/rerun").status_code == 404


def test_paging_and_date_filter_on_both_databases(database_url: str, tmp_path: Path) -> None:
    """The same list query on SQLite and PostgreSQL (time zones of the date bounds)."""
    live = LiveServer(make_settings(tmp_path, database_url=database_url))
    try:
        alice = live.add_user("alice")
        ids = [alice.create("echo_job", {"text": f"t{i}"}).rsplit("/", 1)[1] for i in range(25)]
        today = datetime.now(UTC).date()
        data = alice.get(
            "/ui/api/jobs",
            params={"from": str(today), "to": str(today), "size": "20", "page": "2"},
        ).json()
        assert (data["total"], data["pages"]) == (25, 2)
        assert [j["job_id"] for j in data["jobs"]] == ids[::-1][20:]
        later = alice.get("/ui/api/jobs", params={"from": str(today + timedelta(days=1))})
        assert later.status_code == 200 and later.json()["total"] == 0
    finally:
        live.stop()
