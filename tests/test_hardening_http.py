"""Issue 11, the HTTP layer: what an outside client can make the service spend or do.

One section per class of docs/security.md: request bodies before authentication (1),
header sizes (2), slow clients (3), active content on the service's origin (7),
cross-site requests (8), 500s (10; random shapes in tests/test_fuzz_api.py). Each test
throws a family of variants at the running server, over raw sockets where a client
library would not send what an attacker sends. Speeds are measured in
bench/bench_hardening.py, not here.
"""

from __future__ import annotations

import base64
import os
import re
import select
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from xml.sax.saxutils import escape

import bottle
import cheroot
import pytest

from tests.conftest import PROJECT_ROOT, TESTS, Client, LiveServer, make_settings
from uws_server import request_guard, server
from uws_server.cross_site import is_cross_site
from uws_server.served_files import file_headers
from uws_server.web.jobview import preview_kind

MB = 1024 * 1024


# --------------------------------------------------------------------------- helpers
def raw(port: int, data: bytes, *, wait: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` as is, read the answer until the server closes or ``wait`` passes:
    (status, headers in lower case, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        try:
            sock.sendall(data)
        except OSError:
            pass  # the server answered and closed before taking everything
        return read_answer(sock)


def read_answer(sock: socket.socket | BinaryIO) -> tuple[int, dict[str, str], bytes]:
    """One answer from a socket, or from a file on it (to read several in turn)."""
    f = sock.makefile("rb") if isinstance(sock, socket.socket) else sock
    status_line = b""
    headers: dict[str, str] = {}
    body = b""
    try:
        status_line = f.readline()
        while (line := f.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = f.read(int(headers.get("content-length", "0") or 0))
    except (ConnectionResetError, TimeoutError):
        pass
    match = re.match(r"HTTP/1\.[01] (\d{3})", status_line.decode("latin-1"))
    assert match, f"no HTTP answer: {status_line[:200]!r}"
    return int(match.group(1)), headers, body


def closed_by_server(sock: socket.socket, wait: float) -> bool:
    """True once the server closed the connection (end of stream or reset)."""
    sock.settimeout(wait)
    try:
        while sock.recv(65536):
            pass
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return True


def request_head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def basic(client: Client) -> str:
    return "Basic " + base64.b64encode(f"{client.name}:{client.token}".encode()).decode()


SCRIPT = (
    "printf '<script>x()</script>' > $page\n"
    "printf '<svg xmlns=\"http://www.w3.org/2000/svg\"><script>x()</script></svg>' > $picture\n"
    "printf 'hello' > $plain\n"
)


def _entity(kind: str, name: str, default: str, ctype: str) -> str:
    utype = "voprov:UsedDescription" if kind == "Used" else "voprov:WasGeneratedBy"
    char = 'arraysize="*" datatype="char"'
    return (
        f'<GROUP name="{name}" utype="{utype}"><DESCRIPTION>{name}</DESCRIPTION>'
        f'<PARAM name="default" value="{default}" {char} utype="voprov:Entity.id"/>'
        f'<PARAM name="content_type" value="{ctype}" {char}'
        ' utype="voprov:EntityDescription.content_type"/></GROUP>'
    )


def html_job() -> str:
    """A definition whose results a browser would run (HTML, SVG), and one that is text."""
    script = escape(SCRIPT, {'"': "&quot;", "\n": "&#10;"})
    generated = "".join(
        _entity("Generated", n, d, c)
        for n, d, c in [
            ("page", "page.html", "text/html"),
            ("picture", "picture.svg", "image/svg+xml"),
            ("plain", "plain.txt", "text/plain"),
        ]
    )
    return (
        '<VOTABLE xmlns="http://www.ivoa.net/xml/VOTable/v1.3" version="1.3">'
        '<RESOURCE ID="html_job" name="html_job" type="meta" '
        'utype="voprov:ActivityDescription"><DESCRIPTION>active results</DESCRIPTION>'
        '<PARAM name="executionDuration" value="60" datatype="int" '
        'utype="uws:Job.executionDuration"/>'
        f'<PARAM name="script" value="{script}" arraysize="*" datatype="char"/>'
        f'<GROUP name="Used">{_entity("Used", "input", "input.html", "text/html")}</GROUP>'
        f'<GROUP name="Generated">{generated}</GROUP></RESOURCE></VOTABLE>'
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for the tests that do not tune its limits."""
    tmp = Path(tmp_path_factory.mktemp("hardening"))
    settings = make_settings(tmp)
    (settings.job_definitions_dir / "html_job_vot.xml").write_text(html_job())
    live = LiveServer(settings)
    live.add_user("alice")
    live.add_user("bob")
    live.add_user("oper", roles=("operator",))
    yield live
    live.stop()


@pytest.fixture
def tight(tmp_path: Path) -> Iterator[LiveServer]:
    """A server with few threads, a short head timeout and a low connection cap."""
    live = LiveServer(
        make_settings(tmp_path, threads=4, reserved_threads=1, head_timeout=1.0, max_connections=40)
    )
    live.add_user("alice")
    yield live
    live.stop()


# ------------------------------------------------- class 1: bodies before authentication
GIGABYTE = 1 << 30


@pytest.mark.parametrize(
    ("path", "auth", "size", "status"),
    [
        # over the route's limit: refused whoever sends it
        ("/rest/echo_job", "alice", GIGABYTE, 413),
        ("/rest/echo_job", None, GIGABYTE, 413),
        ("/callback/abc", "Bearer forged", GIGABYTE, 413),
        ("/callback/abc", "Bearer forged", 2 * MB, 413),
        ("/no/such/route", None, 2 * MB, 413),
        ("/jdl", None, 2 * MB, 413),
        # within the limit but over what anyone may send: only after authentication
        ("/rest/echo_job", None, 200_000, 401),
        ("/rest/echo_job", "Bearer forged", 200_000, 401),
        ("/rest/echo_job", "Basic bm9ib2R5OnNlY3JldA==", 200_000, 401),
        ("/rest/echo_job/x/parameters", None, 200_000, 401),
        ("/callback/abc", "Bearer forged", 200_000, 401),
        ("/callback/abc", None, 200_000, 401),
        ("/jdl", "Bearer forged", 200_000, 401),
        ("/ui/submit/echo_job", None, 200_000, 401),
        ("/ui/login", None, 200_000, 401),
        ("/no/such/route", None, 200_000, 401),
    ],
)
def test_a_large_body_is_refused_before_it_is_read(
    world: LiveServer, path: str, auth: str | None, size: int, status: int
) -> None:
    """The head alone is sent: the answer comes without the body (which would take a
    gigabyte), and the connection is closed rather than read to the end."""
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Content-Length": str(size)}
    if auth == "alice":
        headers["Authorization"] = f"Bearer {world.tokens['alice']}"
    elif auth:
        headers["Authorization"] = auth
    with socket.create_connection(("127.0.0.1", world.settings.port), timeout=10) as sock:
        sock.sendall(request_head("POST", path, headers) + b"x" * 1000)
        got, _, body = read_answer(sock)
        assert got == status, body
        assert body.strip(), "the refusal says why"
        assert closed_by_server(sock, 5)


def test_a_chunked_body_is_refused(world: LiveServer) -> None:
    for path in ("/rest/echo_job", "/callback/abc", "/jdl", "/no/such/route"):
        head = request_head(
            "POST",
            path,
            {"Authorization": f"Bearer {world.tokens['alice']}", "Transfer-Encoding": "chunked"},
        )
        status, _, body = raw(world.settings.port, head + b"5\r\nhello\r\n")
        assert status == 411 and b"Content-Length" in body


def test_a_wrong_callback_token_is_refused_before_its_body_is_read(world: LiveServer) -> None:
    job = world.client("alice").create("echo_job", {"text": "a"})
    job_id = job.rsplit("/", 1)[-1]
    for size in (10, 60_000):  # small enough to arrive with the head, still never parsed
        body = b"{" * size
        head = request_head(
            "POST",
            f"/callback/{job_id}",
            {"Authorization": "Bearer forged", "Content-Length": str(size)},
        )
        status, _, answer = raw(world.settings.port, head + body)
        assert status == 403 and b"token" in answer


def _spool_fds() -> set[str]:
    """This process's descriptors on temporary files (bottle's spooled bodies)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if "(deleted)" in target or target.startswith(tempfile.gettempdir()):
            found.add(f"{fd} {target}")
    return found


def test_spooled_bodies_leave_no_file_and_no_descriptor(
    world: LiveServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Bodies and uploads over bottle's memory limit are spooled to files that have no
    name (nothing on disk to outlive a crash) and are closed when the request ends."""
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    before = _spool_fds()
    alice = world.client("alice")
    big = b"<p>" + b"x" * 300_000 + b"</p>"
    cases = [
        # a creation with an upload, a refused upload, a large urlencoded body
        ("/rest/copy_job", {"files": {"input": ("in.txt", big)}, "data": {"text": "t"}}),
        ("/rest/echo_job", {"files": {"text": ("a.txt", big)}}),
        ("/rest/echo_job", {"data": {"text": "y" * 300_000}}),
    ]
    for path, kwargs in cases:
        r = alice.post(path, **kwargs)
        assert r.status_code < 500
        assert list(spool.iterdir()) == []
    job = alice.create("echo_job", {"text": "a"})
    r = alice.post(job + "/parameters", files={"text": ("b.txt", big)})
    assert r.status_code == 400
    leftover = _spool_fds() - before
    assert not leftover, leftover
    assert list(spool.iterdir()) == []


def test_bottle_and_cheroot_are_the_pinned_versions() -> None:
    """request_guard and server rely on internals of these versions (their docstrings
    say which): an upgrade must re-check those before moving the pins."""
    setup = (PROJECT_ROOT / "setup.py").read_text()
    assert f'"bottle=={request_guard.BOTTLE_VERSION}"' in setup
    assert f'"cheroot=={server.CHEROOT_VERSION}"' in setup
    assert bottle.__version__ == request_guard.BOTTLE_VERSION
    assert cheroot.__version__ == server.CHEROOT_VERSION
    # bottle spools through its module-level name, which the guard replaced
    assert bottle.NamedTemporaryFile is request_guard._spool_file


# ------------------------------------------------------------- class 2: header size
@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /?q=" + b"a" * 17_000, 414),  # no end of line yet
        (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 70_000, 431),  # the line never ends
        (b"GET / HTTP/1.1\r\n" + b"X-Many: aaaaaaaaaaaaaaaaaaaaaaaa\r\n" * 3000 + b"\r\n", 431),
        (b"POST /rest/echo_job HTTP/1.1\r\nCookie: " + b"c=1; " * 20_000 + b"\r\n\r\n", 431),
    ],
)
def test_oversized_request_lines_and_heads(world: LiveServer, data: bytes, status: int) -> None:
    got, headers, body = raw(world.settings.port, data)
    assert got == status and body.strip()
    assert headers.get("connection") == "close"


def test_a_head_under_the_limits_is_served(world: LiveServer) -> None:
    head = b"GET /rest HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"p" * 50_000 + b"\r\n\r\n"
    status, _, body = raw(world.settings.port, head)
    assert status == 200 and b"job_lists" in body
    url = b"/rest?x=" + b"q" * 12_000
    status, _, _ = raw(world.settings.port, b"GET " + url + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200


@pytest.mark.parametrize(
    "request_line",
    [
        b"GET //rest/echo_job HTTP/1.1",  # read by cheroot as an absolute URI: 400
        b"GET /rest HTTP/1.1 extra",  # malformed request line: 400
        b"get /rest HTTP/1.1",  # method in lower case: 400
        b"GET /rest HTTP/2.7",  # 505
    ],
)
def test_a_request_cheroot_refuses_closes_its_keep_alive_connection_and_says_so(
    world: LiveServer, request_line: bytes
) -> None:
    """A keep-alive connection first served, then a request cheroot cannot parse: the
    refusal says ``Connection: close`` before the server closes, so that a client does
    not send its next request on a closing connection and get no answer at all (a
    ``RemoteDisconnected`` in the fuzz test: cheroot said so for 413/414 only)."""
    with socket.create_connection(("127.0.0.1", world.settings.port), timeout=10) as sock:
        f = sock.makefile("rb")
        sock.sendall(b"GET /rest HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, _ = read_answer(f)
        assert status == 200 and headers.get("connection") != "close"
        sock.sendall(request_line + b"\r\nHost: x\r\n\r\n")
        status, headers, body = read_answer(f)
        assert status in (400, 505) and body.strip(), (status, body)
        assert headers.get("connection") == "close", headers
        assert closed_by_server(sock, 10)


# ------------------------------------------------------------ class 3: slow clients
def test_slow_heads_are_dropped_and_hold_no_thread(tight: LiveServer) -> None:
    """Four threads, 36 connections: silent, dripping a header line, stuck after the
    request line, or sending a small body slowly. Meanwhile other clients are served,
    and each slow one is closed once its head timeout (1 s here) has passed (with a
    408 when it sent something since)."""
    port = tight.settings.port
    slow = []
    starts = [
        b"",
        b"GET /rest HTTP/1.1\r\n",
        b"GET /rest HTTP/1.1\r\nHost: x\r\n",
        b"POST /rest/echo_job HTTP/1.1\r\nContent-Length: 100\r\n\r\ntext=",
    ]
    for i in range(36):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(starts[i % len(starts)])
        slow.append(sock)
    alice = tight.client("alice")
    until = time.monotonic() + 2.5
    while time.monotonic() < until:  # past the head timeout, dripping
        for sock in slow[1::4]:
            if select.select([sock], [], [], 0)[0]:
                continue  # answered: sending more would reset the connection
            sock.sendall(b"X-Drip: 1\r\n")
        # more requests than threads, while 36 clients are slow
        assert alice.get("/rest").status_code == 200
        time.sleep(0.25)
    answers = set()
    for sock in slow:
        sock.settimeout(5)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
        # 408 when the server sees it late; closed without a word when it is silent
        answers.add(data.split(b"\r\n", 1)[0])
        sock.close()
    assert answers <= {b"HTTP/1.1 408 Request Timeout", b""}, answers
    assert b"HTTP/1.1 408 Request Timeout" in answers


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[LiveServer]:
    """A server that keeps at most 40 connections (with a head timeout long enough
    that the held ones are not closed by it during the test)."""
    live = LiveServer(make_settings(tmp_path, head_timeout=60.0, max_connections=40))
    yield live
    live.stop()


def test_connections_past_the_cap_are_refused(capped: LiveServer) -> None:
    port = capped.settings.port
    held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(40)]
    try:
        deadline = time.monotonic() + 30
        while capped.server.connections < 40 and time.monotonic() < deadline:
            time.sleep(0.02)
        status, _, body = raw(port, b"GET /rest HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 503 and b"too many connections" in body
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 30  # the closed ones are counted out as they are seen
    while True:
        status, _, _ = raw(port, b"GET /rest HTTP/1.1\r\nHost: x\r\n\r\n")
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert status == 200


@pytest.mark.parametrize("path", ["/rest/echo_job", "/ui/submit/echo_job"])
def test_a_large_body_sent_slowly_is_cut(
    tight: LiveServer, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """An authenticated body over 64 KB is read by a thread, at a minimum rate: sent a
    byte at a time, it is answered 408 (not a 500 from the handler that was reading)."""
    monkeypatch.setattr(server, "BODY_GRACE", 0.5)
    head = request_head(
        "POST",
        path,
        {
            "Authorization": f"Bearer {tight.tokens['alice']}",
            "Content-Type": "multipart/form-data; boundary=xx",
            "Content-Length": "200000",
        },
    )
    with socket.create_connection(("127.0.0.1", tight.settings.port), timeout=10) as sock:
        sock.sendall(head + b'--xx\r\nContent-Disposition: form-data; name="text"\r\n\r\n')
        for _ in range(100):
            if select.select([sock], [], [], 0.1)[0]:
                break  # answered
            sock.sendall(b"a")
        status, _, body = read_answer(sock)
        assert status == 408, body
        assert closed_by_server(sock, 5)


def test_expect_continue(tight: LiveServer) -> None:
    """A client that waits for "100 Continue" gets it for a small body (read without a
    thread, so one never sent is a 408 like a slow head); a large body from nobody is
    refused before it is sent."""
    port = tight.settings.port
    auth = {"Authorization": f"Bearer {tight.tokens['alice']}"}
    form = {"Content-Type": "application/x-www-form-urlencoded", "Expect": "100-continue"}
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            request_head("POST", "/rest/echo_job", {**auth, **form, "Content-Length": "6"})
        )
        answers = sock.makefile("rb")
        assert read_answer(answers)[0] == 100
        sock.sendall(b"text=a")
        status = read_answer(answers)[0]
        while status == 100:  # cheroot's own interim answer may follow
            status = read_answer(answers)[0]
        assert status == 303
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            request_head("POST", "/rest/echo_job", {**auth, **form, "Content-Length": "6"})
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        assert b"HTTP/1.1 408 " in data  # the body never came: after head_timeout
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        big = {**form, "Content-Length": str(50 * MB)}
        sock.sendall(request_head("POST", "/rest/echo_job", big))
        answers = sock.makefile("rb")
        status = read_answer(answers)[0]
        while status == 100:  # cheroot invites the body; the guard refuses it unread
            status = read_answer(answers)[0]
        assert status == 401


def test_keep_alive_and_pipelining_still_work(world: LiveServer) -> None:
    """Two requests in one packet, then a third on the same connection."""
    two = b"GET /rest HTTP/1.1\r\nHost: x\r\n\r\n" * 2
    with socket.create_connection(("127.0.0.1", world.settings.port), timeout=10) as sock:
        answers = sock.makefile("rb")
        sock.sendall(two)
        assert read_answer(answers)[0] == 200
        assert read_answer(answers)[0] == 200
        sock.sendall(b"GET /rest HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_answer(answers)[0] == 200


# ------------------------------------------------- class 7: active content on our origin
@pytest.mark.parametrize(
    ("ctype", "attachment"),
    [
        ("text/html", True),
        ("text/html; charset=utf-8", True),
        ("image/svg+xml", True),
        ("application/xhtml+xml", True),
        ("application/xml", True),
        ("text/xml", True),
        ("application/javascript", True),
        ("text/javascript", True),
        ("application/x-votable+xml", True),
        ("application/pdf", True),
        ("", True),
        ("TEXT/HTML", True),
        ("text/plain", False),
        ("text/plain; charset=utf-8", False),
        ("image/png", False),
        ("image/jpeg", False),
        ("application/json", False),
    ],
)
def test_file_headers_for_every_type(ctype: str, attachment: bool) -> None:
    headers = file_headers(ctype)
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in headers["Content-Security-Policy"]
    assert ("Content-Disposition" in headers) == attachment


@pytest.mark.parametrize(
    ("ctype", "path", "kind"),
    [
        ("image/png", "a.png", "image"),
        ("image/jpeg", "a.jpg", "image"),
        ("image/gif", "a.gif", "image"),
        ("image/svg+xml", "a.svg", ""),
        ("", "a.svg", ""),
        ("application/octet-stream", "a.svg", ""),
        ("text/html", "a.html", ""),
        ("application/xhtml+xml", "a.xhtml", ""),
        ("image/webp", "a.webp", ""),
        ("text/plain", "a.txt", "text"),
        ("application/json", "a.json", "text"),
    ],
)
def test_pages_preview_only_inert_types(ctype: str, path: str, kind: str) -> None:
    assert preview_kind(ctype, path) == kind


def _finished(client: Client, job: str) -> None:
    r = client.post(job + "/phase", data={"PHASE": "RUN"})
    assert r.status_code == 303
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        phase = client.get(job + "/phase").text
        if phase in ("COMPLETED", "ERROR", "ABORTED"):
            assert phase == "COMPLETED", client.get(job + "/error").text
            return
        client.get(job + "?WAIT=5")
    raise AssertionError("the job did not finish")


def test_results_cannot_act_as_pages(world: LiveServer) -> None:
    alice = world.client("alice")
    job = alice.create("html_job", files={"input": ("up.html", b"<script>x()</script>")})
    _finished(alice, job)
    ui = "/ui/jobs/" + job.split("/rest/", 1)[1]
    for path, ctype in [
        ("/results/page", "text/html"),
        ("/results/picture", "image/svg+xml"),
        ("/parameters/input", None),
    ]:
        for url in (job + path, ui + path):
            r = alice.get(url)
            assert r.status_code == 200, (url, r.text[:200])
            assert r.headers["X-Content-Type-Options"] == "nosniff", url
            csp = r.headers["Content-Security-Policy"]
            assert "sandbox" in csp and "script-src 'self'" not in csp, url
            assert r.headers["Content-Disposition"].startswith("attachment"), url
            if ctype:
                assert r.headers["Content-Type"].startswith(ctype)
            part = alice.get(url, headers={"Range": "bytes=0-3"})  # a range: still a file
            assert part.status_code == 206, url
            assert "sandbox" in part.headers["Content-Security-Policy"], url
            assert part.headers["X-Content-Type-Options"] == "nosniff", url
    for url in (job + "/results/plain", ui + "/results/plain", job + "/stdout"):
        r = alice.get(url)
        assert r.status_code == 200
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in r.headers["Content-Security-Policy"]
        assert "Content-Disposition" not in r.headers  # inert: shown inline
    page = alice.get(ui).text
    assert f'href="{ui}/results/picture"' in page  # listed, as a link
    assert f'<img src="{ui}/results/picture"' not in page  # never rendered in the page
    assert f'<img src="{ui}/results/page"' not in page


# ------------------------------------------------------------ class 8: cross-site
CROSS = [
    {"Origin": "http://evil.example"},
    {"Origin": "https://evil.example"},
    {"Origin": "null"},
    {"Origin": "http://127.0.0.1.evil.example"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
    {"Sec-Fetch-Site": "cross-site", "Origin": "http://127.0.0.1"},
    {"Origin": "not a url"},
]


@pytest.mark.parametrize("browser", CROSS)
def test_cross_site_state_changes_need_a_bearer_token(
    world: LiveServer, browser: dict[str, str]
) -> None:
    alice = world.client("alice")
    job = alice.create("echo_job", {"text": "mine"})
    port = world.settings.port
    own = {"Authorization": basic(alice), **browser}
    attempts = [
        ("post", "/rest/echo_job", {"text": "forged"}),
        ("post", job + "/phase", {"PHASE": "RUN"}),
        ("post", job, {"ACTION": "DELETE"}),
        ("post", job + "/destruction", {"DESTRUCTION": "2030-01-01T00:00:00Z"}),
        ("delete", job, None),
        ("put", job, None),
    ]
    session = Client(alice.base, None, "alice")  # no Bearer: the browser's Basic only
    for method, url, data in attempts:
        r = session.request(method.upper(), url, headers=own, data=data)
        assert r.status_code == 403, (method, url, r.status_code)
        assert "cross-site" in r.text
    assert alice.get(job + "/phase").text == "PENDING"
    # the same requests with a Bearer token (a script, not a browser's memory) pass
    r = alice.post("/rest/echo_job", data={"text": "ok"}, headers=browser)
    assert r.status_code == 303
    assert port


@pytest.mark.parametrize(
    "browser",
    [
        {},
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},
        {"Origin": "http://127.0.0.1:{port}"},
        {"Origin": "http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"},
    ],
)
def test_same_origin_and_non_browser_requests_pass(
    world: LiveServer, browser: dict[str, str]
) -> None:
    alice = world.client("alice")
    headers = {k: v.format(port=world.settings.port) for k, v in browser.items()}
    session = Client(alice.base, None, "alice")
    r = session.post(
        "/rest/echo_job", data={"text": "ok"}, headers={"Authorization": basic(alice), **headers}
    )
    assert r.status_code == 303, r.text


def test_cross_site_rule() -> None:
    env = {"HTTP_HOST": "svc.example", "wsgi.url_scheme": "https"}
    assert not is_cross_site(env)
    assert not is_cross_site({**env, "HTTP_ORIGIN": "https://svc.example"})
    assert not is_cross_site({**env, "HTTP_ORIGIN": "https://SVC.example:443"})
    assert is_cross_site({**env, "HTTP_ORIGIN": "https://svc.example:8443"})
    assert is_cross_site({**env, "HTTP_ORIGIN": "https://other.example"})
    assert is_cross_site({**env, "HTTP_SEC_FETCH_SITE": "same-site"})
    proxied = {"HTTP_HOST": "127.0.0.1:8080", "wsgi.url_scheme": "http"}
    assert not is_cross_site(
        {**proxied, "HTTP_ORIGIN": "https://svc.example"}, "https://svc.example/"
    )
    assert is_cross_site({**proxied, "HTTP_ORIGIN": "https://evil.example"}, "https://svc.example/")
    forwarded = {
        **proxied,
        "HTTP_X_FORWARDED_HOST": "svc.example",
        "HTTP_X_FORWARDED_PROTO": "https",
    }
    assert not is_cross_site({**forwarded, "HTTP_ORIGIN": "https://svc.example"})
    assert is_cross_site({**forwarded, "HTTP_ORIGIN": "https://evil.example"})


# ----------------------------------------------------------------- class 10: 500s
def test_basic_credentials_that_are_not_utf8(world: LiveServer) -> None:
    port = world.settings.port
    heads = [
        b"Authorization: Basic " + base64.b64encode(b"al\xffce:tok"),
        b"Authorization: Basic " + base64.b64encode(b"\xc3(:\xa0\xa1"),
        b"Authorization: Basic \xe9\xe9==",
        b"Authorization: Bearer \xff\xfe",
        b"Authorization: \xff",
    ]
    for path in (b"/rest/echo_job", b"/rest", b"/jdl", b"/ui/jobs", b"/provsap?ID=x"):
        for head in heads:
            for method in (b"GET", b"POST"):
                data = method + b" " + path + b" HTTP/1.1\r\nHost: x\r\n" + head
                data += b"\r\nContent-Length: 0\r\n\r\n"
                status, _, body = raw(port, data)
                assert status < 500, (method, path, head, status, body[:200])
                if path != b"/rest" and not path.startswith(b"/provsap"):  # public reads
                    assert status in (400, 401, 403, 405), (method, path, head, status)


@pytest.mark.parametrize(
    "value",
    ["18446744073709551616", "9223372036854775808", "1" + "0" * 40, "+99999999999999999999"],
)
def test_list_numbers_beyond_64_bits(world: LiveServer, value: str) -> None:
    alice = world.client("alice")
    for name in ("LAST", "last"):
        r = alice.get("/rest/echo_job", params={name: value})
        assert r.status_code == 400, r.text
    r = alice.get("/rest/echo_job", params={"LAST": "9223372036854775807"})
    assert r.status_code == 200


def test_jdl_multipart_shapes(world: LiveServer) -> None:
    oper = world.client("oper")
    boundary = "XyZ"
    parts = [
        b'Content-Disposition: form-data; name="file"; filename="a.xml"\r\n\r\n',
        b'Content-Disposition: form-data; name="file"; filename=""\r\n\r\n',
        b'Content-Disposition: form-data; name="file"; filename="a.xml"\r\n\r\n\xff\xfe',
        b'Content-Disposition: form-data; name="file"\r\n\r\nnot xml',
        b'Content-Disposition: form-data; filename="a.xml"\r\n\r\n<x/>',
        b'Content-Disposition: form-data; name="xml"; filename="a.xml"\r\n\r\n',
        b"Content-Type: text/xml\r\n\r\n<x/>",
    ]
    for part in parts:
        body = f"--{boundary}\r\n".encode() + part + f"\r\n--{boundary}--\r\n".encode()
        r = oper.post(
            "/jdl",
            data=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        assert 400 <= r.status_code < 500, (part, r.status_code, r.text[:200])
    assert TESTS.is_dir()


@pytest.mark.parametrize(
    "disposition",
    [
        b'form-data; filename="x.txt"',  # a file without a name
        b"form-data",  # a value without a name
        b'form-data; name=""; filename="x.txt"',
        b'form-data; name=""',
    ],
)
def test_multipart_parts_without_a_name(world: LiveServer, disposition: bytes) -> None:
    """On every route that reads a multipart body: a 4xx (a part without a name reached
    the parameter rules as None and was a 500)."""
    alice, oper = world.client("alice"), world.client("oper")
    job = alice.create("echo_job", {"text": "a"}).split("/rest/", 1)[1]
    body = b"--xx\r\nContent-Disposition: " + disposition + b"\r\n\r\nvalue\r\n--xx--\r\n"
    paths = [
        ("/rest/echo_job", alice),
        (f"/rest/{job}/parameters", alice),
        (f"/rest/{job}", alice),
        (f"/rest/{job}/phase", alice),
        ("/jdl", oper),
        ("/ui/submit/echo_job", alice),
        ("/ui/jdl/upload", oper),
        ("/ui/api/jdl/validate", oper),
        ("/ui/jdl/save", oper),
    ]
    for path, who in paths:
        r = who.post(path, data=body, headers={"Content-Type": "multipart/form-data; boundary=xx"})
        assert r.status_code < 500, (path, r.status_code, r.text[:200])
        if path.startswith(("/rest/", "/jdl")):
            assert 400 <= r.status_code < 500, (path, r.status_code)
