"""Property-based: random methods, paths, names and values never give a 500, a
traceback, or a change to another user's job. Also (issue 11): raw header bytes, the
numbers of the query, and multipart bodies of every shape, sent as bytes over a socket
where a client library would refuse to send them."""

from __future__ import annotations

import re
import socket
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import LiveServer, make_settings


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    live = LiveServer(make_settings(Path(tmp_path_factory.mktemp("fuzz"))))
    attacker = live.add_user("mallory")
    victim = live.add_user("victim")
    victim_job = victim.create("echo_job", {"text": "precious", "RUNID": "keep"})
    before = victim.get(victim_job).text
    yield live, attacker, victim, victim_job, before
    live.stop()


SEGMENTS = st.one_of(
    st.sampled_from(
        [
            "rest",
            "echo_job",
            "sleep_job",
            "phase",
            "parameters",
            "results",
            "error",
            "owner",
            "destruction",
            "executionduration",
            "quote",
            "stdout",
            "..",
            "%2e%2e",
            "jdl",
            "json",
            "callback",
            "output",
            "text",
            "provenance",
            "",
        ]
    ),
    st.text(alphabet=string.ascii_letters + string.digits + "-_.%$;'\"<>&()", max_size=12),
)
METHODS = st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"])
NAMES = st.one_of(
    st.sampled_from(
        [
            "PHASE",
            "text",
            "n",
            "x",
            "flag",
            "color",
            "ACTION",
            "WAIT",
            "LAST",
            "AFTER",
            "DESTRUCTION",
            "EXECUTIONDURATION",
            "RUNID",
            "input",
            "file",
        ]
    ),
    st.text(max_size=20),
)
VALUES = st.one_of(
    st.sampled_from(
        [
            "RUN",
            "ABORT",
            "DELETE",
            "1",
            "-1",
            "0",
            "nan",
            "1e999",
            "$(id)",
            "; rm -rf /",
            "../../etc/passwd",
            "2030-01-01T00:00:00Z",
            "true",
            "red",
            "\x00",
            "é",
        ]
    ),
    st.text(max_size=60),
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    method=METHODS,
    segments=st.lists(SEGMENTS, min_size=0, max_size=5),
    use_victim_job=st.booleans(),
    fields=st.lists(st.tuples(NAMES, VALUES), max_size=4),
    in_query=st.booleans(),
)
def test_random_requests(world, method, segments, use_victim_job, fields, in_query) -> None:  # type: ignore[no-untyped-def]
    live, attacker, victim, victim_job, before = world
    path = (victim_job if use_victim_job else "") + "/" + "/".join(segments)
    # WAIT cannot block here: the attacker only ever names the victim's job (a 404).
    query = in_query or method in ("GET", "HEAD", "OPTIONS", "DELETE")
    kwargs = {"params": fields} if query else {"data": fields}
    r = attacker.request(method, path, **kwargs)
    assert r.status_code < 500, (method, path, fields, r.status_code, r.text[:200])
    assert "Traceback" not in r.text
    assert 'File "' not in r.text
    # the victim's job is unchanged, whatever was thrown at it
    assert victim.get(victim_job).text == before


# ------------------------------------------------------------ raw requests (issue 11)
def raw_status(port: int, data: bytes) -> tuple[int, bytes]:
    """Send ``data`` as is on a new connection: the answer's status and first bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            sock.sendall(data)
        except OSError:
            pass
        answer = b""
        try:
            while b"\r\n\r\n" not in answer and len(answer) < 65536:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except ConnectionResetError:
            pass
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", answer)
    assert match, answer[:200]
    return int(match.group(1)), answer


HEADER_NAMES = st.sampled_from(
    [
        b"Authorization",
        b"Content-Type",
        b"Content-Length",
        b"Cookie",
        b"Origin",
        b"Sec-Fetch-Site",
        b"Accept",
        b"Host",
        b"Transfer-Encoding",
        b"Expect",
        b"X-Forwarded-Host",
        b"Range",
        b"If-Modified-Since",
    ]
)
HEADER_VALUES = st.one_of(
    st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
    st.sampled_from(
        [
            b"Basic \xff\xfe",
            b"Basic " + __import__("base64").b64encode(b"\xffname:\xfetoken"),
            b"Basic " + __import__("base64").b64encode(b"nocolon"),
            b"Basic =",
            b"Bearer",
            b"Bearer \x00",
            b"Digest x",
            b"-1",
            b"99999999999999999999999",
            b"1e3",
            b"chunked",
            b"gzip",
            b"100-continue",
            b"bytes=99999999999999999999-",
            b"multipart/form-data",
            b"multipart/form-data; boundary=",
            b"application/x-www-form-urlencoded; charset=\xff",
            b"null",
            b"http://[::1",
        ]
    ),
)
RAW_PATHS = st.sampled_from(
    [
        b"/",
        b"/rest",
        b"/rest/echo_job",
        b"/rest/echo_job/{job}",
        b"/rest/echo_job/{job}/phase",
        b"/rest/echo_job/{job}/parameters",
        b"/rest/echo_job/{job}/results/output",
        b"/jdl",
        b"/jdl/echo_job",
        b"/ui/jobs",
        b"/ui/submit/echo_job",
        b"/ui/login",
        b"/callback/{job}",
        b"/provsap?ID=x",
        b"/%ff%fe",
        b"/rest/\xff",
    ]
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    method=st.sampled_from([b"GET", b"POST", b"DELETE", b"PUT", b"HEAD"]),
    path=RAW_PATHS,
    headers=st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=5),
    body=st.binary(max_size=64),
)
def test_raw_headers(world, method, path, headers, body) -> None:  # type: ignore[no-untyped-def]
    """Any bytes in the headers (not UTF-8, malformed credentials, odd lengths): 4xx."""
    live, attacker, _victim, victim_job, _before = world
    job = victim_job.rsplit("/", 1)[-1].encode()
    lines = [method + b" " + path.replace(b"{job}", job) + b" HTTP/1.1", b"Host: 127.0.0.1"]
    lines += [name + b": " + value for name, value in headers]
    if not any(name == b"Content-Length" for name, _ in headers):
        lines.append(b"Content-Length: %d" % len(body))
    status, answer = raw_status(live.settings.port, b"\r\n".join(lines) + b"\r\n\r\n" + body)
    assert status < 500, (method, path, headers, answer[:300])


NUMBERS = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
    st.sampled_from(
        ["", "-0", "+1", "1e999", "1.5", "nan", "inf", "0x10", "١٢", "9" * 400, " 5", "5 "]
    ),
    st.text(max_size=8),
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    names=st.lists(st.sampled_from(["LAST", "last", "AFTER", "PHASE", "WAIT", "wait"]), max_size=4),
    values=st.lists(NUMBERS, min_size=4, max_size=4),
    own=st.booleans(),
)
def test_query_numbers(world, names, values, own) -> None:  # type: ignore[no-untyped-def]
    """LAST, AFTER and WAIT of any size or shape on the job list and on a job: never a
    5xx (WAIT cannot block: PHASE=EXECUTING on a PENDING job answers at once)."""
    live, attacker, _victim, victim_job, _before = world
    query = list(zip(names, values, strict=False))
    r = attacker.get("/rest/echo_job", params=query)
    assert r.status_code < 500, (query, r.status_code, r.text[:200])
    job = attacker_job(world) if own else victim_job
    r = attacker.get(job, params=[*query, ("PHASE", "EXECUTING")])
    assert r.status_code < 500, (query, r.status_code, r.text[:200])


_OWN_JOBS: dict[int, str] = {}


def attacker_job(world) -> str:  # type: ignore[no-untyped-def]
    """A PENDING job of the attacker's, made once per world."""
    live, attacker = world[0], world[1]
    if id(live) not in _OWN_JOBS:
        _OWN_JOBS[id(live)] = attacker.create("echo_job", {"text": "mine"})
    return _OWN_JOBS[id(live)]


DISPOSITIONS = st.sampled_from(
    [
        b'form-data; name="text"',
        b'form-data; name="text"; filename="a.txt"',
        b'form-data; name="text"; filename=""',
        b'form-data; name="file"; filename="a.xml"',
        b'form-data; name="file"; filename="../../etc/passwd"',
        b"form-data; name=text",
        b'form-data; filename="noname.txt"',
        b"form-data",
        b'form-data; name="\xff"; filename="\xfe.txt"',
        b'attachment; name="text"',
        b'form-data; name="RUNID"',
        b'form-data; name="PHASE"',
        b'form-data; name="_csrf"',
        b"",
    ]
)
PART = st.tuples(
    DISPOSITIONS,
    st.sampled_from([b"", b"text/plain", b"application/octet-stream", b"text/xml", b"\xff"]),
    st.one_of(st.binary(max_size=40), st.sampled_from([b"", b"RUN", b"<x/>", b"\xff\xfe"])),
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    path=st.sampled_from(
        [
            "/rest/echo_job",
            "/rest/copy_job",
            "/rest/echo_job/{job}/parameters",
            "/rest/echo_job/{job}",
            "/jdl",
            "/ui/submit/echo_job",
            "/ui/jdl/upload",
        ]
    ),
    parts=st.lists(PART, max_size=4),
    boundary=st.sampled_from([b"XyZ", b"a" * 70, b"--", b"x y"]),
    declared=st.sampled_from([b"XyZ", b"other", b"", None]),
    closing=st.booleans(),
)
def test_multipart_shapes(world, path, parts, boundary, declared, closing) -> None:  # type: ignore[no-untyped-def]
    """Parts with and without names, file names, values and types; wrong, missing or
    unclosed boundaries: never a 5xx, on the API and the web forms."""
    live, attacker, _victim, _victim_job, _before = world
    target = path.replace("{job}", attacker_job(world).rsplit("/", 1)[-1])
    body = b""
    for disposition, ctype, value in parts:
        body += b"--" + boundary + b"\r\n"
        if disposition:
            body += b"Content-Disposition: " + disposition + b"\r\n"
        if ctype:
            body += b"Content-Type: " + ctype + b"\r\n"
        body += b"\r\n" + value + b"\r\n"
    if closing:
        body += b"--" + boundary + b"--\r\n"
    ctype = b"multipart/form-data" + (b"; boundary=" + declared if declared is not None else b"")
    head = [
        b"POST " + target.encode() + b" HTTP/1.1",
        b"Host: 127.0.0.1",
        b"Authorization: Bearer " + attacker.token.encode(),
        b"Content-Type: " + ctype,
        b"Content-Length: %d" % len(body),
    ]
    status, answer = raw_status(live.settings.port, b"\r\n".join(head) + b"\r\n\r\n" + body)
    assert status < 500, (target, parts, boundary, declared, answer[:300])
