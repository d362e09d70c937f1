"""Local execution through the service: OPUS definitions, process trees, restarts, bursts."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lxml import etree

from tests.conftest import Client, LiveServer, make_settings
from tests.timing import MACHINE, wait_for
from uws_server.managers.local import LocalManager

NS = {"uws": "http://www.ivoa.net/xml/UWS/v1.0", "xlink": "http://www.w3.org/1999/xlink"}


def kill_grace(live: LiveServer) -> float:
    """SIGTERM to SIGKILL of a stopped job's processes, on the live server's local pool."""
    manager = live.service.lifecycle.manager
    assert isinstance(manager, LocalManager)
    return manager.kill_grace


def processes_in(directory: Path) -> list[int]:
    """Pids whose working directory is ``directory`` (what a job's processes share)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if Path(os.readlink(entry / "cwd")) == directory.resolve():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def test_opus_definitions_run_end_to_end(alice: Client) -> None:
    """OPUS's own test_activity_1 and _2, unchanged (each sleeps 10 s), chained."""
    first = alice.create("test_activity_1", {"text": "Hello $(whoami) ; OPUS", "PHASE": "RUN"})
    assert alice.wait_final(first, timeout=10 + MACHINE) == "COMPLETED"
    out = alice.get(first + "/results/output")
    assert out.text.strip() == "Hello $(whoami) ; OPUS"
    # the second uses the first's result by its URL: the same entity, no HTTP copy
    result_url = (
        etree.fromstring(alice.get(first).content)
        .find("uws:results/uws:result", NS)
        .get("{http://www.w3.org/1999/xlink}href")
    )
    second = alice.create("test_activity_2", {"input": result_url, "text": "!", "PHASE": "RUN"})
    assert alice.wait_final(second, timeout=10 + MACHINE) == "COMPLETED"
    assert alice.get(second + "/results/output").text.splitlines() == [
        "Hello $(whoami) ; OPUS",
        "!",
    ]


def test_used_entity_upload_and_isolation(alice: Client, bob: Client) -> None:
    job = alice.create(
        "copy_job",
        {"text": "end", "PHASE": "RUN"},
        files={"input": ("../../evil name.txt", b"uploaded\n", "text/plain")},
    )
    assert alice.wait_final(job) == "COMPLETED"
    assert alice.get(job + "/results/output").text == "uploaded\nend\n"
    param = etree.fromstring(alice.get(job).content).find(
        "uws:parameters/uws:parameter[@id='input']", NS
    )
    assert param.get("byReference") == "true"
    assert alice.get(job + "/parameters/input").content == b"uploaded\n"
    # bob cannot use alice's result as his input
    result_url = alice.base + job + "/results/output"
    r = bob.post("/rest/copy_job", data={"input": result_url})
    assert r.status_code == 400 and "no readable result" in r.text
    r = bob.post("/rest/copy_job", data={"input": "ent_doesnotexist"})
    assert r.status_code == 400 and "unknown entity" in r.text
    r = bob.post("/rest/copy_job", data={"input": "http://169.254.169.254/latest/meta-data"})
    assert r.status_code == 400 and "allowed_fetch_hosts" in r.text
    r = bob.post("/rest/copy_job", data={})
    assert r.status_code == 400 and "input" in r.text


def test_abort_kills_the_whole_process_tree(live: LiveServer, alice: Client) -> None:
    job = alice.create("sleep_job", {"seconds": "120", "PHASE": "RUN"})
    job_dir = live.settings.jobs_dir / job.rsplit("/", 1)[1]
    assert wait_for((job_dir / "started.txt").exists, MACHINE, step=0.05)
    assert len(processes_in(job_dir)) >= 3  # bash and two sleeps
    assert alice.post(job + "/phase", data={"PHASE": "ABORT"}).status_code == 303
    assert alice.phase(job) == "ABORTED"
    assert wait_for(lambda: not processes_in(job_dir), kill_grace(live) + MACHINE)


def test_delete_running_job_kills_it_and_removes_files(live: LiveServer, alice: Client) -> None:
    job = alice.create("sleep_job", {"seconds": "120", "PHASE": "RUN"})
    job_dir = live.settings.jobs_dir / job.rsplit("/", 1)[1]
    assert wait_for((job_dir / "started.txt").exists, MACHINE, step=0.05)
    assert alice.delete(job).status_code == 303
    assert wait_for(lambda: not processes_in(job_dir), kill_grace(live) + MACHINE)
    assert not job_dir.exists()


def test_queue_beyond_slots(tmp_path: Path) -> None:
    live = LiveServer(make_settings(tmp_path, local_slots=1))
    try:
        c = live.add_user("carol")
        first = c.create("sleep_job", {"seconds": "1", "PHASE": "RUN"})
        second = c.create("sleep_job", {"seconds": "0", "PHASE": "RUN"})
        assert c.phase(second) == "QUEUED"
        assert c.wait_final(second) == "COMPLETED"
        assert c.phase(first) == "COMPLETED"
    finally:
        live.stop()


def test_restart_recovers_running_and_queued_jobs(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, local_slots=1)
    live = LiveServer(settings)
    c = live.add_user("carol")
    running = c.create("sleep_job", {"seconds": "2", "PHASE": "RUN"})
    queued = c.create("echo_job", {"text": "after restart", "PHASE": "RUN"})
    assert c.phase(queued) == "QUEUED"
    live.stop()  # the server goes away; the running job's process does not
    time.sleep(0.5)
    live2 = LiveServer(make_settings(tmp_path, local_slots=1))
    try:
        c2 = Client(live2.base, c.token)
        assert c2.wait_final(running, timeout=2 + MACHINE) == "COMPLETED"
        assert c2.get(running + "/results/output").text == "done\n"
        assert c2.wait_final(queued, timeout=MACHINE) == "COMPLETED"
        assert c2.get(queued + "/results/output").text.startswith("after restart")
    finally:
        live2.stop()


def test_restart_marks_vanished_jobs_as_error(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    live = LiveServer(settings)
    c = live.add_user("carol")
    job = c.create("sleep_job", {"seconds": "60", "PHASE": "RUN"})
    job_dir = settings.jobs_dir / job.rsplit("/", 1)[1]
    assert wait_for((job_dir / "started.txt").exists, MACHINE, step=0.05)
    live.stop()
    for pid in processes_in(job_dir):  # the job dies while no server watches it
        os.kill(pid, 9)
    live2 = LiveServer(make_settings(tmp_path))
    try:
        c2 = Client(live2.base, c.token)
        assert c2.wait_final(job, timeout=MACHINE) == "ERROR"
        assert c2.get(job + "/error").text  # says what happened
    finally:
        live2.stop()


def test_200_concurrent_creations(live: LiveServer, alice: Client) -> None:
    def create(i: int) -> tuple[int, str]:
        r = alice.post("/rest/echo_job", data={"text": f"job {i}"})
        return r.status_code, r.headers.get("Location", r.text)

    with ThreadPoolExecutor(max_workers=32) as pool:
        outcomes = list(pool.map(create, range(200)))
    assert [s for s, _ in outcomes] == [303] * 200
    assert len({loc for _, loc in outcomes}) == 200
    listed = etree.fromstring(alice.get("/rest/echo_job").content).findall("uws:jobref", NS)
    assert len(listed) == 200


def test_reaper_destroys_expired_jobs_and_their_files(live: LiveServer, alice: Client) -> None:
    from datetime import timedelta

    from uws_server.common import utcnow

    keep = alice.create("echo_job", {"PHASE": "RUN"})
    doomed = alice.create("echo_job", {"PHASE": "RUN"})
    assert alice.wait_final(doomed) == "COMPLETED" and alice.wait_final(keep) == "COMPLETED"
    doomed_id = doomed.rsplit("/", 1)[1]
    job_dir = live.settings.jobs_dir / doomed_id
    assert job_dir.exists()
    past = utcnow() - timedelta(seconds=1)
    assert live.service.store.set_destruction(doomed_id, past, pending_only=False)
    assert live.service.lifecycle.reap_once() == 1
    assert alice.get(doomed).status_code == 404
    assert not job_dir.exists()
    assert not (live.settings.provenance_dir / doomed_id).exists()
    assert alice.get(keep).status_code == 200


def test_external_inputs_come_only_from_allowed_hosts(tmp_path: Path) -> None:
    """An allowed host's file is fetched into the job directory, within the size limit."""
    import functools
    import http.server
    import threading as th

    site = tmp_path / "site"
    site.mkdir()
    (site / "small.txt").write_text("from the web\n")
    (site / "big.txt").write_text("x" * 5000)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    th.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    live = LiveServer(
        make_settings(tmp_path / "srv", allowed_fetch_hosts=["127.0.0.1"], max_fetch_bytes=1000)
    )
    try:
        c = live.add_user("carol")
        job = c.create("copy_job", {"input": f"{base}/small.txt", "text": "end", "PHASE": "RUN"})
        assert c.wait_final(job) == "COMPLETED"
        assert c.get(job + "/results/output").text == "from the web\nend\n"
        r = c.post("/rest/copy_job", data={"input": f"{base}/big.txt"})
        assert r.status_code == 413 and "exceeds 1000 bytes" in r.text
        r = c.post("/rest/copy_job", data={"input": f"{base}/missing.txt"})
        assert r.status_code == 400 and "404" in r.text
        r = c.post("/rest/copy_job", data={"input": "http://localhost:1/x"})
        assert r.status_code == 400 and "allowed_fetch_hosts" in r.text
        r = c.post("/rest/copy_job", data={"input": "file:///etc/passwd"})
        assert r.status_code == 400
    finally:
        live.stop()
        httpd.shutdown()


def test_a_final_report_while_stopping_is_applied_and_its_provenance_written_later(
    live: LiveServer, alice: Client
) -> None:
    """A worker's last callback can land while the service stops (seen in CI as a 500
    for the runner: 'cannot schedule new futures after shutdown'). The phase stands,
    and the provenance the final hook would have written is written when asked for."""
    from uws_server.models import Phase, WorkerEvent

    job = alice.create("sleep_job", {"seconds": "30"})
    job_id = job.rsplit("/", 1)[1]
    live.service.lifecycle.stop()  # the final hooks' executor is shut down
    assert live.service.lifecycle.report(job_id, WorkerEvent(Phase.ERROR, error="node lost"))
    assert alice.phase(job) == "ERROR"
    r = alice.get(job + "/provenance/json")
    assert r.status_code == 200 and job_id in r.text
