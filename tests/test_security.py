"""Authentication, owner isolation, and bad input: clear 4xx, never a traceback."""

from __future__ import annotations

import base64
import threading
from pathlib import Path

import pytest

from tests.conftest import Client, LiveServer, make_settings
from uws_server.provenance.serialize import FILENAMES


def test_authentication_required(live: LiveServer) -> None:
    anon = Client(live.base, None)
    r = anon.get("/rest/echo_job")
    assert r.status_code == 401
    assert "authentication required" in r.text
    assert anon.post("/rest/echo_job", data={}).status_code == 401
    bad = Client(live.base, "not-a-token")
    assert bad.get("/rest/echo_job").status_code == 401
    r = anon.get("/rest/echo_job", headers={"Authorization": "Basic !!!"})
    assert r.status_code == 401
    r = anon.get("/rest/echo_job", headers={"Authorization": "Digest abc"})
    assert r.status_code == 401


def test_basic_auth_needs_matching_name(live: LiveServer) -> None:
    token = live.tokens["alice"]
    anon = Client(live.base, None)
    good = base64.b64encode(f"alice:{token}".encode()).decode()
    assert anon.get("/rest/echo_job", headers={"Authorization": f"Basic {good}"}).status_code == 200
    wrong = base64.b64encode(f"bob:{token}".encode()).decode()
    assert (
        anon.get("/rest/echo_job", headers={"Authorization": f"Basic {wrong}"}).status_code == 401
    )


def test_disabled_user_is_refused(live: LiveServer, alice: Client) -> None:
    live.service.store.set_disabled("alice", True)
    live.service.auth.invalidate()
    r = alice.get("/rest/echo_job")
    assert r.status_code == 403 and "disabled" in r.text


def test_owner_isolation(alice: Client, bob: Client, admin: Client) -> None:
    job = alice.create("echo_job", {"text": "secret", "PHASE": "RUN"})
    assert alice.wait_final(job) == "COMPLETED"
    for suffix in (
        "",
        "/phase",
        "/parameters",
        "/parameters/text",
        "/results",
        "/results/output",
        "/error",
        "/owner",
        "/stdout",
        "/quote",
        "/destruction",
        "/executionduration",
    ):
        assert bob.get(job + suffix).status_code == 404, suffix
    assert bob.post(job + "/phase", data={"PHASE": "ABORT"}).status_code == 404
    assert bob.delete(job).status_code == 404
    assert bob.post(job, data={"ACTION": "DELETE"}).status_code == 404
    assert job.rsplit("/", 1)[1] not in bob.get("/rest/echo_job").text
    assert alice.get(job).status_code == 200  # untouched
    # admins see everything
    assert admin.get(job).status_code == 200
    assert job.rsplit("/", 1)[1] in admin.get("/rest/echo_job").text


def test_anonymous_access_when_allowed(tmp_path: Path) -> None:
    live = LiveServer(make_settings(tmp_path, allow_anonymous=True))
    try:
        anon = Client(live.base, None)
        job = anon.create("echo_job", {"text": "anon"})
        assert anon.get(job + "/owner").text == "anonymous"
    finally:
        live.stop()


def test_active_job_limit(tmp_path: Path) -> None:
    live = LiveServer(make_settings(tmp_path, max_active_jobs_per_user=1))
    try:
        c = live.add_user("carol")
        first = c.create("sleep_job", {"PHASE": "RUN"})
        r = c.post("/rest/sleep_job", data={"PHASE": "RUN"})
        assert r.status_code == 429 and "limit" in r.text
        c.post(first + "/phase", data={"PHASE": "ABORT"})
    finally:
        live.stop()


@pytest.mark.parametrize(
    ("data", "status", "fragment"),
    [
        ({"n": "abc"}, 400, "'n'"),
        ({"n": "1.5"}, 400, "not an integer"),
        ({"n": "101"}, 400, "maximum"),
        ({"n": "-1"}, 400, "minimum"),
        ({"x": "nan"}, 400, "finite"),
        ({"x": "2"}, 400, "maximum"),
        ({"flag": "perhaps"}, 400, "boolean"),
        ({"color": "purple"}, 400, "options"),
        ({"nosuch": "1"}, 400, "unknown parameter 'nosuch'"),
        ({"../etc/passwd": "1"}, 400, "unknown parameter"),
        ({"$(touch /tmp/x)": "1"}, 400, "unknown parameter"),
        ({"a;b": "1"}, 400, "unknown parameter"),
        ({"text": "x" * 70000}, 400, "limit"),
        ({"text": "bell\x07"}, 400, "control characters"),
        ({"PHASE": "ABORT"}, 400, "only RUN"),
        ({"EXECUTIONDURATION": "ten"}, 400, "EXECUTIONDURATION"),
        ({"DESTRUCTION": "2001-01-01T00:00:00Z"}, 400, "future"),
    ],
)
def test_bad_parameters(alice: Client, data: dict, status: int, fragment: str) -> None:
    r = alice.post("/rest/echo_job", data=data)
    assert r.status_code == status, r.text
    assert fragment in r.text
    assert "Traceback" not in r.text
    assert r.headers["Content-Type"].startswith("text/plain")


def test_repeated_parameter_is_refused(alice: Client) -> None:
    r = alice.post("/rest/echo_job", data=[("text", "a"), ("text", "b")])
    assert r.status_code == 400 and "more than once" in r.text


def test_shell_metacharacters_stay_text(live: LiveServer, alice: Client, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    value = f"$(touch {marker}); `touch {marker}` && touch {marker} | x > y 'q' \"dq\""
    job = alice.create("echo_job", {"text": value, "PHASE": "RUN"})
    assert alice.wait_final(job) == "COMPLETED"
    assert not marker.exists()
    out = alice.get(job + "/results/output").text.splitlines()[0]
    # OPUS scripts say `echo $text`: word splitting may fold spaces, nothing is executed
    assert "$(touch" in out and "`touch" in out and "&&" in out


def test_path_traversal_in_urls(alice: Client) -> None:
    job = alice.create("echo_job", {"PHASE": "RUN"})
    alice.wait_final(job)
    for path in (
        job + "/results/..%2F..%2Fjob.json",
        job + "/results/../../job.json",
        job + "/results/%2e%2e%2fscript.sh",
        "/rest/echo_job/..%2F..%2Fetc",
        "/rest/../../etc/passwd",
        job + "/parameters/..%2Fjob.json",
    ):
        r = alice.get(path)
        assert r.status_code in (400, 404), (path, r.status_code)
        assert "callback_token" not in r.text


def test_unknown_routes_and_methods_are_plain(alice: Client) -> None:
    r = alice.get("/nothing/here")
    assert r.status_code == 404 and "Traceback" not in r.text
    r = alice.request("PUT", "/rest/echo_job")
    assert r.status_code == 405 and "not allowed" in r.text


def test_malformed_bodies(alice: Client) -> None:
    r = alice.post(
        "/rest/echo_job",
        data=b"--x\r\nbroken",
        headers={"Content-Type": "multipart/form-data; boundary=x"},
    )
    assert r.status_code in (303, 400)
    assert "Traceback" not in r.text
    r = alice.post(
        "/rest/echo_job",
        data="text=%FF%FE",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 400 and "UTF-8" in r.text


def test_forged_worker_events_are_refused(live: LiveServer, alice: Client) -> None:
    job = alice.create("sleep_job", {"PHASE": "RUN"})
    job_id = job.rsplit("/", 1)[1]
    anon = Client(live.base, None)
    event = {"phase": "ERROR", "error": "forged"}
    assert anon.post(f"/callback/{job_id}", json=event).status_code == 400
    r = anon.post(f"/callback/{job_id}", json=event, headers={"Authorization": "Bearer guess"})
    assert r.status_code == 403
    # a user token is not a job token either
    r = anon.post(
        f"/callback/{job_id}", json=event, headers={"Authorization": f"Bearer {alice.token}"}
    )
    assert r.status_code == 403
    assert alice.phase(job) in ("QUEUED", "EXECUTING")
    alice.post(job + "/phase", data={"PHASE": "ABORT"})


def test_upload_cannot_replace_job_files(live: LiveServer, alice: Client) -> None:
    job = alice.create(
        "copy_job",
        {"text": "t", "PHASE": "RUN"},
        files={"input": ("script.sh", b"touch hacked\n", "text/plain")},
    )
    assert alice.wait_final(job) == "COMPLETED"
    job_dir = live.settings.jobs_dir / job.rsplit("/", 1)[1]
    assert not (job_dir / "hacked").exists()
    assert alice.get(job + "/results/output").text == "touch hacked\nt\n"  # used as data only
    assert alice.get(job + "/parameters/input").status_code == 200


def test_job_directory_holds_no_callback_token(live: LiveServer, alice: Client) -> None:
    job = alice.create("echo_job", {"PHASE": "RUN"})
    assert alice.wait_final(job) == "COMPLETED"
    spec = (live.settings.jobs_dir / job.rsplit("/", 1)[1] / "job.json").read_text()
    assert '"callback_token": ""' in spec


def test_anonymous_listing_of_definitions_follows_settings(
    live: LiveServer, tmp_path: Path
) -> None:
    assert Client(live.base, None).get("/jdl").status_code == 200  # default: allowed
    closed = LiveServer(make_settings(tmp_path / "closed", anonymous_can_list_jdl=False))
    try:
        assert Client(closed.base, None).get("/jdl").status_code == 401
        assert closed.add_user("x").get("/jdl").status_code == 200
    finally:
        closed.stop()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/rest/test_activity_1"),
        ("POST", "/rest/test_activity_1"),
        ("GET", "/rest/test_activity_1/nosuchjob/phase"),
        ("POST", "/callback/nosuchjob"),
        ("GET", "/jdl"),
        ("GET", "/provsap?ID=x"),
        ("GET", "/ui/jobs"),
    ],
)
def test_a_header_that_is_not_utf8_is_a_400_not_a_500(
    live: LiveServer, method: str, path: str
) -> None:
    """Raw bytes in a header (what requests cannot send) reach bottle's lazy decoding."""
    import socket

    with socket.create_connection(("127.0.0.1", live.settings.port), timeout=10) as sock:
        sock.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode()
            + b"Authorization: Bearer \xff\xfe\r\n"
            + b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 6\r\n\r\n"
            + b"text=a"
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    assert 400 <= status < 500, answer[:300]
    assert b"Traceback" not in answer


# ------------------------------------------- inputs are copied, never followed
def _finished_result(alice: Client, live: LiveServer, text: str) -> tuple[str, Path]:
    """A finished job of alice's: its result's entity id and file."""
    job = alice.create("echo_job", {"text": text, "PHASE": "RUN"})
    assert alice.wait_final(job) == "COMPLETED"
    stored = live.service.store.get_job(job.rsplit("/", 1)[1])
    assert stored is not None
    result = next(r for r in stored.results if r.name == "output")
    return result.entity_id, Path(result.path)  # type: ignore[return-value]


@pytest.mark.parametrize("swap", ["symlink", "hardlink", "directory symlink", "rewritten", "fifo"])
def test_an_input_swapped_after_collection_is_refused(
    live: LiveServer, alice: Client, tmp_path: Path, swap: str
) -> None:
    """Issue 11, class 6 (inputs): a job's result replaced after it was collected (by a
    process the job left behind) by a link to another file, or rewritten: staging it as
    a later job's input refuses it, and nothing of the other file reaches the job."""
    import os
    import shutil

    secret = tmp_path / "secret.txt"
    secret.write_text("not for alice\n")
    entity, path = _finished_result(alice, live, "genuine")
    if swap == "symlink":
        path.unlink()
        path.symlink_to(secret)
    elif swap == "hardlink":
        path.unlink()
        os.link(secret, path)
    elif swap == "directory symlink":
        moved = path.parent.with_name(path.parent.name + ".moved")
        shutil.copytree(path.parent, moved)
        (moved / path.name).unlink()
        (moved / path.name).symlink_to(secret)  # even a plain file there would be refused
        shutil.rmtree(path.parent)
        path.parent.symlink_to(moved, target_is_directory=True)
    elif swap == "rewritten":
        path.write_text("not what the provenance says\n")
    else:
        path.unlink()
        os.mkfifo(path)
    before = set(live.settings.jobs_dir.iterdir())
    r = alice.post("/rest/copy_job", data={"input": entity, "PHASE": "RUN"})
    assert r.status_code == 400, (r.status_code, r.text)
    assert "input 'input'" in r.text and entity in r.text
    assert set(live.settings.jobs_dir.iterdir()) == before  # no job, no copy left


def test_an_untouched_input_is_copied_with_its_entity(live: LiveServer, alice: Client) -> None:
    entity, path = _finished_result(alice, live, "genuine")
    job = alice.create("copy_job", {"input": entity, "PHASE": "RUN"})
    assert alice.wait_final(job) == "COMPLETED"
    assert alice.get(job + "/results/output").text == path.read_text() + "+\n"
    staged = live.settings.jobs_dir / job.rsplit("/", 1)[1] / "output.txt"
    assert staged.is_file()


# ---------------------------------------------- provenance stays with its owner
def definition_xml(name: str, script: str, inputs: str = "") -> str:
    """A minimal OPUS job definition (one generated output.txt) for these tests."""
    from xml.sax.saxutils import quoteattr

    return f"""<VOTABLE xmlns="http://www.ivoa.net/xml/VOTable/v1.3" version="1.3">
  <RESOURCE ID="{name}" name="{name}" type="meta">
    <DESCRIPTION>test definition {name}</DESCRIPTION>
    <PARAM name="executionDuration" value="60" datatype="int"/>
    <PARAM name="script" value={quoteattr(script)} arraysize="*" datatype="char"/>
    <GROUP name="InputParams">{inputs}</GROUP>
    <GROUP name="Generated">
      <GROUP name="output">
        <PARAM name="default" value="output.txt" arraysize="*" datatype="char"/>
      </GROUP>
    </GROUP>
  </RESOURCE>
</VOTABLE>
"""


# Writes its text to data.txt and reports having read it (.uws/used.json).
REPORTING_JOB = definition_xml(
    "report_job",
    "printf '%s\\n' \"$text\" > data.txt\n"
    "mkdir -p .uws\n"
    """echo '[{"path": "data.txt", "role": "calib"}]' > .uws/used.json\n"""
    "{ cat data.txt; echo done; } > $output\n",
    '<PARAM name="text" datatype="char" arraysize="*" value="x"/>',
)


def test_reported_inputs_link_only_to_entities_the_owner_may_read(tmp_path: Path) -> None:
    """Issue 11, class 9: a file a job reports reading is matched by SHA-256 to an
    entity of its owner (or any, for an admin's job), never to another user's: alice's
    ProvSAP does not show bob's entity id or job."""
    settings = make_settings(tmp_path)
    (settings.job_definitions_dir / "report_job_vot.xml").write_text(REPORTING_JOB)
    live = LiveServer(settings)
    try:
        alice, bob = live.add_user("alice"), live.add_user("bob")
        root = live.add_user("root", admin=True)
        store = live.service.store

        def run(c: Client) -> tuple[str, list]:  # type: ignore[type-arg]
            job = c.create("report_job", {"text": "same bytes", "PHASE": "RUN"})
            assert c.wait_final(job) == "COMPLETED"
            job_id = job.rsplit("/", 1)[1]
            r = c.get(job + "/provenance/json")  # written by the final hook, or now
            assert r.status_code == 200
            used = [store.get_entity(e) for e, _ in store.usages_of_job(job_id)]
            return job_id, used

        bob_job, bob_used = run(bob)
        bob_entities = {e.entity_id for e in bob_used} | {
            e.entity_id for e in store.entities_of_job(bob_job)
        }
        alice_job, alice_used = run(alice)
        assert len(alice_used) == 1 and alice_used[0].owner == "alice"
        assert alice_used[0].entity_id not in bob_entities
        assert alice_used[0].sha256 == bob_used[0].sha256  # the same bytes
        for fmt in ("PROV-JSON", "PROV-XML", "PROV-N"):
            text = alice.get(
                "/provsap", params={"ID": alice_job, "DEPTH": "ALL", "RESPONSEFORMAT": fmt}
            ).text
            assert alice_job in text and bob_job not in text
            assert not any(e in text for e in bob_entities), fmt
        # bob's next job links to bob's own entity: the chain by content still works
        _, bob_again = run(bob)
        assert bob_again[0].entity_id in bob_entities
        # an admin's job may link to any user's entity of that content
        _, root_used = run(root)
        assert root_used[0].owner in ("alice", "bob")
    finally:
        live.stop()


def test_provenance_writers_of_one_job_take_turns(tmp_path: Path) -> None:
    """The final hook and readers who ask for provenance before it ran all call
    write_job: one writes, the others find the file and return; its reported input is
    linked once and nobody gets an integrity error (a 500 seen in a parallel run)."""
    settings = make_settings(tmp_path)
    (settings.job_definitions_dir / "report_job_vot.xml").write_text(REPORTING_JOB)
    live = LiveServer(settings)
    try:
        alice = live.add_user("alice")
        job = alice.create("report_job", {"text": "raced", "PHASE": "RUN"})
        assert alice.wait_final(job) == "COMPLETED"
        job_id = job.rsplit("/", 1)[1]
        assert alice.get(job + "/provenance/json").status_code == 200
        prov, store = live.service.provenance, live.service.store
        outdir = settings.provenance_dir / job_id
        for f in outdir.iterdir():
            f.unlink()
        target = outdir / FILENAMES["json"]
        barrier = threading.Barrier(4)
        wrote: list[int] = []
        errors: list[BaseException] = []

        def writer() -> None:
            barrier.wait()
            try:
                wrote.append(len(prov.write_job(job_id, unless=target)))
            except BaseException as exc:  # noqa: BLE001 (the test reports it)
                errors.append(exc)

        threads = [threading.Thread(target=writer) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        assert sorted(wrote) == [0, 0, 0, 5]  # one writer, three found the files
        assert target.is_file()
        assert len(store.usages_of_job(job_id)) == 1
    finally:
        live.stop()


# ------------------------------------------- a file parameter is never dropped
# Copies the file given as its ``file``-typed config parameter (not a used entity).
PARAM_FILE_JOB = definition_xml(
    "param_file_job",
    'cat "$config" > $output\n',
    '<PARAM name="config" datatype="char" xtype="file" value="config.txt" type="no_query"/>',
)


def test_an_upload_to_a_file_parameter_is_the_parameters_file(tmp_path: Path) -> None:
    """Issue 11, class 11: a file uploaded to a ``file``-typed parameter that is not a
    used entity is kept (OPUS's behaviour): stored in the job's directory under a safe
    name, the parameter's value, served back, recorded as a used entity."""
    settings = make_settings(tmp_path)
    (settings.job_definitions_dir / "param_file_job_vot.xml").write_text(PARAM_FILE_JOB)
    live = LiveServer(settings)
    try:
        carol = live.add_user("carol")
        job = carol.create(
            "param_file_job",
            {"PHASE": "RUN"},
            files={"config": ("../my settings.ini", b"threshold = 3\n", "text/plain")},
        )
        assert carol.wait_final(job) == "COMPLETED"
        assert carol.get(job + "/results/output").text == "threshold = 3\n"
        assert carol.get(job + "/parameters/config").content == b"threshold = 3\n"
        job_id = job.rsplit("/", 1)[1]
        stored = live.service.store.get_job(job_id)
        assert stored is not None and stored.parameters["config"] == "my_settings.ini"
        used = [
            live.service.store.get_entity(e) for e, _ in live.service.store.usages_of_job(job_id)
        ]
        assert [(u.name, u.role, u.kind) for u in used] == [("my_settings.ini", "config", "upload")]
        # a file upload to a parameter that takes none is still a 400 saying so
        r = carol.post("/rest/echo_job", files={"text": ("t.txt", b"x")})
        assert r.status_code == 400 and "does not accept a file upload" in r.text
    finally:
        live.stop()
