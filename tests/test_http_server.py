"""The WSGI server as clients see it: cheroot with the response head sent together with
the body's first bytes (``uws_server.server._HeadThenBody``). Every kind of response
must stay well formed and in order on a keep-alive connection: with a body, without
one, streamed in chunks, to HEAD, and an error raised before any byte was sent."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator

import bottle
import pytest

from uws_server.server import WSGIServer


@pytest.fixture(scope="module")
def server() -> Iterator[WSGIServer]:
    app = bottle.Bottle()

    @app.get("/small")
    def small() -> str:
        return "hello"

    @app.post("/empty")
    def empty() -> None:
        bottle.response.status = 204

    @app.get("/stream")
    def stream() -> Iterator[bytes]:
        yield from (b"one,", b"two,", b"three")

    @app.get("/fail")
    def fail() -> str:
        raise RuntimeError("boom")

    srv = WSGIServer(app, "127.0.0.1", 0, threads=4, timeout=10)
    srv.start_in_thread()
    yield srv
    srv.stop()


def test_every_kind_of_response_in_order_on_one_connection(server: WSGIServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    for _ in range(2):  # twice: nothing held over from one request to the next
        conn.request("GET", "/small")
        r = conn.getresponse()
        assert (r.status, r.read()) == (200, b"hello")
        assert r.getheader("Content-Length") == "5"
        conn.request("POST", "/empty", body=b"")
        r = conn.getresponse()
        assert (r.status, r.read()) == (204, b"")
        conn.request("GET", "/stream")
        r = conn.getresponse()
        assert (r.status, r.read()) == (200, b"one,two,three")
        conn.request("HEAD", "/small")
        r = conn.getresponse()
        assert (r.status, r.read()) == (200, b"")
        conn.request("GET", "/fail")
        r = conn.getresponse()
        assert r.status == 500 and b"boom" not in r.read()  # bottle's page, no traceback
    conn.close()


def test_small_response_with_connection_close_is_complete(server: WSGIServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /small HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and body == b"hello"


def test_a_client_that_does_not_read_its_answer_is_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 11, slow clients: an answer not taken at the minimum rate frees its thread
    (one thread here: the next request is served) and the connection is closed."""
    from uws_server import server as server_module

    monkeypatch.setattr(server_module, "WRITE_WINDOW", 0.5)
    app = bottle.Bottle()

    @app.get("/big")
    def big() -> Iterator[bytes]:
        chunk = b"x" * (1 << 20)
        for _ in range(64):  # 64 MB in 1 MB pieces, as static files are sent
            yield chunk

    @app.get("/small")
    def small() -> str:
        return "hello"

    srv = WSGIServer(app, "127.0.0.1", 0, threads=1, timeout=60)
    srv.start_in_thread()
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as sock:
            sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
            conn.request("GET", "/small")  # served once the slow reader is dropped
            assert conn.getresponse().read() == b"hello"
            conn.close()
            received = 0
            while chunk := sock.recv(1 << 20):
                received += len(chunk)
            assert received < 64 * 1024 * 1024  # cut, not completed
    finally:
        srv.stop()
