"""Jobs' progress (issue 13): ``$UWS_PROGRESS_FILE`` read and relayed by the local pool
and the Slurm runner (rate-limited, bad files ignored), kept by the service, shown in
``jobInfo`` (schema-valid) and ``GET .../progress`` (owner only), the expected end and
quote learnt from earlier jobs, and the web page's live endpoint.

The job definitions are written here: a few short steps of ``sleep``, not the science.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import xmlschema

from tests.conftest import Client, LiveServer, make_settings, need
from tests.timing import wait_for
from uws_server.common import utcnow
from uws_server.jdl.votable import write_votable
from uws_server.jobdef import EntityDef, JobDefinition, ParameterDef
from uws_server.models import Job, Phase
from uws_server.progress import expected_seconds, parameter_distance
from uws_server.storage.progress import FinishedRun
from workers.progress import MAX_MESSAGE, ProgressWatcher, clean, read_progress

XSD = Path("/work/shared/ivoa/UWS-v1.1.xsd")
OUTPUT = [EntityDef("output", default="output.txt", content_type="text/plain")]
# A bad file first (never an error of the job), then three steps written
# temp-then-rename, each line also on stdout, a last value just before the end.
STEPS_SCRIPT = """\
echo 'not json {' > "$UWS_PROGRESS_FILE"
report() {
  printf '{"fraction": %s, "message": "%s"}' "$1" "$2" > "$UWS_PROGRESS_FILE.tmp"
  mv "$UWS_PROGRESS_FILE.tmp" "$UWS_PROGRESS_FILE"
}
for step in 1 2 3; do
  echo "step $step of 3"
  echo "warning $step" >&2
  report "0.$((step * 3))" "step $step of 3"
  sleep "$pause"
done
report 1.7 finishing
echo done > $output
"""
DEFINITIONS = [
    JobDefinition(
        "progress_job",
        script=STEPS_SCRIPT,
        parameters=[ParameterDef("pause", datatype="xs:double", default="1.2")],
        generated=OUTPUT,
        execution_duration=60,
        quote=7,
    ),
]


def _write_definitions(settings: Any) -> None:
    for defn in DEFINITIONS:
        defn.contact_name, defn.contact_email = "tests", "tests@example.org"
        path = settings.job_definitions_dir / f"{defn.name}_vot.xml"
        path.write_bytes(write_votable(defn))


def progress_server(tmp_path: Path) -> LiveServer:
    """A local-pool server with this module's definitions and users alice and bob
    (also used by tests/test_browser.py)."""
    settings = make_settings(tmp_path)
    _write_definitions(settings)
    server = LiveServer(settings)
    server.add_user("alice")
    server.add_user("bob")
    return server


@pytest.fixture
def progress_live(tmp_path: Path) -> Iterator[LiveServer]:
    server = progress_server(tmp_path)
    yield server
    server.stop()


def _progress(client: Client, job: str) -> dict[str, Any]:
    r = client.get(job + "/progress")
    assert r.status_code == 200, r.text
    return r.json()


def _follow(client: Client, job: str, timeout: float = 40) -> list[dict[str, Any]]:
    """Every distinct (phase, fraction, message) seen until the job is final (short steps);
    the last one is the final phase even when its fraction and message did not change."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        p = _progress(client, job)
        key = (p["phase"], p["fraction"], p["message"])
        if not seen or key != (seen[-1]["phase"], seen[-1]["fraction"], seen[-1]["message"]):
            seen.append(p)
        if p["phase"] in ("COMPLETED", "ERROR", "ABORTED"):
            break
        time.sleep(0.3)
    return seen


def _check_run(live: LiveServer, alice: Client, job: str) -> None:
    seen = _follow(alice, job)
    assert seen[-1]["phase"] == "COMPLETED", seen
    running = [p for p in seen if p["phase"] == "EXECUTING" and p["fraction"] is not None]
    # the steps came through while it ran, in order (a loaded machine may merge one)
    fractions = [p["fraction"] for p in running]
    assert fractions == sorted(fractions) and len(set(fractions)) >= 2, seen
    assert set(fractions) <= {0.3, 0.6, 0.9, 1.0}, seen
    assert any(p["message"].startswith("step ") for p in running), seen
    mid = running[0]
    assert mid["elapsed"] is not None and mid["elapsed"] >= 0
    assert mid["updated"].endswith("Z")
    # the last value written is relayed before the end, clamped into 0..1
    last = seen[-1]
    assert (last["fraction"], last["message"]) == (1.0, "finishing"), last
    assert last["expected_end"] is not None and last["elapsed"] > 2


def test_local_pool_relays_progress_and_job_info_is_schema_valid(
    progress_live: LiveServer,
) -> None:
    alice, bob = progress_live.client("alice"), progress_live.client("bob")
    job = alice.create("progress_job", {"pause": "1.2", "PHASE": "RUN"})
    # while it runs: the job document carries the latest progress in jobInfo
    assert wait_for(lambda: _progress(alice, job)["fraction"] is not None, 20)
    doc = alice.get(job).text
    assert "<uws:jobInfo><progress" in doc and "urn:uws-server:progress" in doc, doc
    # followed at once: the job's steps are 1.2 s apart, and reading the schema first
    # took longer than that when the suite's other workers kept the cores busy
    _check_run(progress_live, alice, job)
    xmlschema.XMLSchema(str(XSD)).validate(doc)  # the document read while it ran
    # never an error of the job: the first write was not JSON, the last out of range
    assert alice.phase(job) == "COMPLETED"
    final_doc = alice.get(job).text
    xmlschema.XMLSchema(str(XSD)).validate(final_doc)
    assert 'fraction="1"' in final_doc and ">finishing</progress>" in final_doc
    # the owner only: the same 404 for anyone else, 401 without credentials
    assert bob.get(job + "/progress").status_code == 404
    assert Client(progress_live.base, None).get(job + "/progress").status_code == 401
    assert alice.get(job.replace("progress_job", "echo_job") + "/progress").status_code == 404


def test_progress_does_not_wake_wait(progress_live: LiveServer) -> None:
    """A blocked WAIT returns on a phase change, not on progress (UWS WAIT)."""
    alice = progress_live.client("alice")
    job = alice.create("progress_job", {"pause": "1.5", "PHASE": "RUN"})
    assert wait_for(lambda: alice.phase(job) == "EXECUTING", 20)
    started = time.monotonic()
    r = alice.get(job, params={"WAIT": 3, "PHASE": "EXECUTING"})
    waited = time.monotonic() - started
    assert r.status_code == 200
    # progress changed every 1.5 s during this WAIT, yet it lasted until its end
    assert waited >= 2.5 or "<uws:phase>EXECUTING" not in r.text, waited
    alice.wait_final(job)


def test_callback_progress_needs_the_job_token(progress_live: LiveServer) -> None:
    alice = progress_live.client("alice")
    job = alice.create("progress_job", {"pause": "0.1"})
    job_id = job.rsplit("/", 1)[1]
    anon = Client(progress_live.base, None)
    url = f"/callback/{job_id}/progress"
    assert anon.post(url, json={"fraction": 0.5}).status_code == 400  # no token
    r = anon.post(url, json={"fraction": 0.5}, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 403
    assert _progress(alice, job)["fraction"] is None


def test_runner_relay_on_slurm(tmp_path: Path) -> None:
    need(_slurm_ready(), "Slurm is not running (bash scripts/slurm_start.sh)")
    settings = make_settings(tmp_path, manager="slurm", slurm_poll_interval=0.5)
    _write_definitions(settings)
    server = LiveServer(settings)
    try:
        alice = server.add_user("alice")
        job = alice.create("progress_job", {"pause": "1.5", "PHASE": "RUN"})
        _check_run(server, alice, job)
    finally:
        server.stop()


def _slurm_ready() -> bool:
    if not all(shutil.which(t) for t in ("sbatch", "squeue", "scancel", "scontrol")):
        return False
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, check=False)
    return "is UP" in ping.stdout


# ------------------------------------------------------------------ the file


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"fraction": 0.25, "message": "a"}, {"fraction": 0.25, "message": "a"}),
        ({"fraction": 3, "message": "over"}, {"fraction": 1.0, "message": "over"}),
        ({"fraction": -1}, {"fraction": 0.0, "message": ""}),
        ({"message": "only words"}, {"fraction": None, "message": "only words"}),
        ({"fraction": "half"}, None),
        ({"fraction": True}, None),
        ({"fraction": float("nan")}, None),
        ({"fraction": 0.5, "message": 7}, None),
        ({}, None),
        ([0.5], None),
        ("0.5", None),
        ({"fraction": 0.5, "message": "a\x00b\nc"}, {"fraction": 0.5, "message": "a b c"}),
    ],
)
def test_clean(data: object, expected: object) -> None:
    assert clean(data) == expected


def test_read_progress_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    assert read_progress(str(path)) is None  # missing
    path.write_text("not json {")
    assert read_progress(str(path)) is None
    path.write_text('{"fraction": 0.5, "mess')  # half written (no rename)
    assert read_progress(str(path)) is None
    path.write_text(json.dumps({"fraction": 0.5, "message": "x" * 100_000}))
    assert read_progress(str(path)) is None  # a huge file is not read at all
    path.write_text(json.dumps({"fraction": 0.5, "message": "y" * 5000}))
    value = read_progress(str(path))
    assert value is not None and value["message"] == "y" * MAX_MESSAGE
    path.unlink()
    os.mkfifo(path)  # a FIFO would block a reader: refused without opening for long
    assert read_progress(str(path)) is None
    path.unlink()
    (tmp_path / "target.json").write_text('{"fraction": 0.5}')
    path.symlink_to(tmp_path / "target.json")
    assert read_progress(str(path)) is None  # never followed


def test_watcher_rate_limits_and_sends_only_changes(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    sent: list[tuple[float, dict[str, object]]] = []
    lock = threading.Lock()

    def send(job_id: str, value: dict[str, object]) -> None:
        assert job_id == "j1"
        with lock:
            sent.append((time.monotonic(), value))

    watcher = ProgressWatcher(send, min_interval=1.0, poll=0.05)
    watcher.watch("j1", str(path))
    try:
        started = time.monotonic()
        i = 0
        while time.monotonic() - started < 2.5:  # ~250 values in 2.5 s
            i += 1
            tmp = tmp_path / "p.tmp"
            tmp.write_text(json.dumps({"fraction": i / 1000, "message": f"v{i}"}))
            os.replace(tmp, path)
            time.sleep(0.01)
        last = {"fraction": i / 1000, "message": f"v{i}"}
        time.sleep(0.2)
        with lock:
            count = len(sent)
            gaps = [b[0] - a[0] for a, b in zip(sent, sent[1:], strict=False)]
        assert 1 <= count <= 4, sent
        assert all(g >= 0.95 for g in gaps), gaps
        watcher.unwatch("j1")  # the last value is flushed at the job's end
        assert sent[-1][1] == last
        # the same content again is no news
        n = len(sent)
        watcher.watch("j1", str(path))
        time.sleep(0.3)
        path.write_text(json.dumps(last))
        time.sleep(0.3)
        watcher.unwatch("j1")
        assert len(sent) == n + 1  # first look after watch() sends it once...
        assert sent[-1][1] == last
    finally:
        watcher.stop()


# ------------------------------------------------------------------ estimates


def test_parameter_distance() -> None:
    assert parameter_distance({"n": "10"}, {"n": "10"}) == 0
    assert parameter_distance({"n": "10"}, {"n": "20"}) < parameter_distance(
        {"n": "10"}, {"n": "1000"}
    )
    assert parameter_distance({"a": "x"}, {"a": "y"}) == 1
    assert parameter_distance({"a": "x"}, {"b": "x"}) == 1
    assert 0 < parameter_distance({"a": "x", "n": "1"}, {"a": "x", "n": "3"}) < 0.5


def test_expected_seconds_median_of_nearest() -> None:
    runs = [FinishedRun({"n": "10"}, s) for s in (9, 10, 11, 12, 100)] + [
        FinishedRun({"n": "1000"}, s) for s in (500, 510, 520, 530, 540)
    ]
    assert expected_seconds(runs, {"n": "10"}) == 11
    assert expected_seconds(runs, {"n": "900"}) == 520
    assert expected_seconds([], {"n": "10"}) is None


def _finished(store: Any, jobname: str, params: dict[str, str], seconds: float) -> None:
    now = utcnow()
    job = Job(
        job_id=secrets.token_hex(8),
        jobname=jobname,
        owner="alice",
        phase=Phase.COMPLETED,
        creation_time=now - timedelta(seconds=seconds + 1),
        destruction_time=now + timedelta(days=1),
        execution_duration=60,
        parameters=params,
        start_time=now - timedelta(seconds=seconds),
        end_time=now,
    )
    store.insert_job(job, lambda: secrets.token_hex(8))


def test_expected_end_and_quote_from_history(progress_live: LiveServer) -> None:
    alice = progress_live.client("alice")
    service = progress_live.service
    # no history: the definition's quote (7 s)
    job = alice.create("progress_job", {"pause": "2"})
    doc = alice.get(job).text
    created = _time(doc, "creationTime")
    quote = _time(doc, "quote")
    assert abs((quote - created).total_seconds() - 7) < 1
    # a history of short runs for small pauses and long ones for large pauses
    for s in (30, 31, 32):
        _finished(service.store, "progress_job", {"pause": "2"}, s)
    for s in (300, 310, 320):
        _finished(service.store, "progress_job", {"pause": "200"}, s)
    service.lifecycle.progress._history.clear()  # the 10 s cache of the history
    for pause, expected in (("2", 31), ("180", 310)):
        job = alice.create("progress_job", {"pause": pause})
        doc = alice.get(job).text
        seconds = (_time(doc, "quote") - _time(doc, "creationTime")).total_seconds()
        assert abs(seconds - expected) < 1.5, (pause, seconds)
        p = _progress(alice, job)
        assert p["phase"] == "PENDING" and p["elapsed"] is None
        end = datetime.fromisoformat(p["expected_end"].rstrip("Z"))
        assert abs((end - utcnow()).total_seconds() - expected) < 3


def _time(doc: str, name: str) -> datetime:
    value = doc.split(f"<uws:{name}>", 1)[1].split("<", 1)[0]
    return datetime.fromisoformat(value.rstrip("Z"))


# ------------------------------------------------------------------ the web page's feed


def test_web_live_endpoint(progress_live: LiveServer) -> None:
    alice, bob = progress_live.client("alice"), progress_live.client("bob")
    job = alice.create("progress_job", {"pause": "1", "PHASE": "RUN"})
    job_id = job.rsplit("/", 1)[1]
    url = f"/ui/api/jobs/progress_job/{job_id}/live"
    assert wait_for(lambda: "step 2" in alice.get(url).json()["stdout"]["text"], 20)
    data = alice.get(url, params={"bytes": "8"}).json()
    assert data["stdout"]["cut"] is True and len(data["stdout"]["text"]) <= 8
    assert data["stderr"]["text"].endswith("\n")
    assert {"fraction", "message", "elapsed", "expected_end", "phase", "final"} <= set(data)
    assert alice.get(url, params={"bytes": "lots"}).status_code == 400
    assert bob.get(url).status_code == 404
    page = alice.get(f"/ui/jobs/progress_job/{job_id}")
    assert page.status_code == 200 and 'id="job-live"' in page.text and "live.js" in page.text
    alice.wait_final(job)
    assert alice.get(url).json()["final"] is True


def test_uws_client_wait_shows_this_services_progress(progress_live: LiveServer) -> None:
    """The ``uws`` client's wait (short WAIT steps while progress is reported) sees the
    fractions and messages served here, then the final phase."""
    from uws_client.client import Client as UWSClient

    client = UWSClient(progress_live.base, progress_live.tokens["alice"])
    # the client WAITs in 5 s steps while progress is reported: a 9 s job
    job = client.submit("progress_job", {"pause": "3"}, run=True)
    updates: list[tuple[str, float | None, str]] = []
    job.wait(
        timeout=60,
        on_update=lambda info, p: updates.append(
            (info.phase, p.fraction if p else None, p.message if p else "")
        ),
    )
    assert updates[-1][0] == "COMPLETED", updates
    running = [u for u in updates if u[0] == "EXECUTING" and u[1] is not None]
    assert running and all(u[2].startswith("step ") for u in running), updates
    assert {u[1] for u in running} <= {0.3, 0.6, 0.9}, updates


def test_cta_scripts_report_through_one_helper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cta.job.report_progress (what the simulation, calibration, reconstruction and
    maps steps call) writes what workers.progress reads."""
    from cta import job as common

    target = tmp_path / "progress.json"
    monkeypatch.delenv("UWS_PROGRESS_FILE", raising=False)
    common.report_progress(0.5, "outside the service")  # no variable: nothing, no error
    assert not target.exists()
    monkeypatch.setenv("UWS_PROGRESS_FILE", str(target))
    common.report_progress(0.4, "12/30 showers simulated")
    assert read_progress(str(target)) == {"fraction": 0.4, "message": "12/30 showers simulated"}
    common.report_progress(7, "x" * 1000)
    value = read_progress(str(target))
    assert value is not None and value["fraction"] == 1.0 and len(str(value["message"])) == 200
    assert not (tmp_path / "progress.json.tmp").exists()  # renamed into place
    monkeypatch.setenv("UWS_PROGRESS_FILE", str(tmp_path / "missing" / "p.json"))
    common.report_progress(0.5, "never the job's failure")  # cannot write: a warning only
