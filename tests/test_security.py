"""Authentication, owner isolation, and bad input: clear 4xx, never a traceback."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tests.conftest import Client, LiveServer, make_settings


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
    live.service.store.update_user("alice", disabled=True)
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
