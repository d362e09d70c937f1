"""WAIT answered by the notifier's thread (``uws_server.direct``): the client must get
exactly the response the waiting thread would have sent, once, and its keep-alive
connection must go on working; who answers is settled once even when the waiting
thread gives up at the same moment."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from tests.conftest import Client, LiveServer
from tests.timing import MACHINE, wait_for
from uws_server import direct


@pytest.fixture
def sends(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """What every DirectAnswer.send returned (True: the notifier answered)."""
    results: list[bool] = []
    real = direct.DirectAnswer.send

    def send(self: direct.DirectAnswer, prepared: direct.Prepared) -> bool:
        results.append(real(self, prepared))
        return results[-1]

    monkeypatch.setattr(direct.DirectAnswer, "send", send)
    yield results


def _blocked(live: LiveServer, job: str, count: int = 1) -> None:
    """Until ``count`` requests wait on the job (its tickets are registered)."""
    job_id = job.rsplit("/", 1)[1]
    tickets = live.service.notifier._tickets
    assert wait_for(lambda: len(tickets.get(job_id, ())) >= count, MACHINE, step=0.01), (
        "the WAIT never blocked"
    )


def _wait_then_change(
    live: LiveServer, alice: Client, duration: str
) -> tuple[str, http.client.HTTPConnection, http.client.HTTPResponse]:
    """A job, a WAIT on it over a keep-alive connection, then a change that wakes it:
    (the job's path, the connection, the WAIT's response, its body unread)."""
    job = alice.create("sleep_job", {"seconds": "30"})
    conn = http.client.HTTPConnection("127.0.0.1", live.settings.port, timeout=20)
    conn.request("GET", job + "?WAIT=20", headers={"Authorization": f"Bearer {alice.token}"})
    _blocked(live, job)
    changed = alice.post(job + "/executionduration", data={"EXECUTIONDURATION": duration})
    assert changed.status_code == 303
    return job, conn, conn.getresponse()


def _headers(resp: http.client.HTTPResponse) -> dict[str, str]:
    return {k.lower(): v for k, v in resp.getheaders() if k.lower() != "date"}


def test_direct_answer_is_the_normal_answer_and_keeps_the_connection(
    live: LiveServer, alice: Client, sends: list[bool]
) -> None:
    job, conn, waited = _wait_then_change(live, alice, "77")
    auth = {"Authorization": f"Bearer {alice.token}"}
    body = waited.read()
    assert sends == [True]  # the notifier's thread answered it
    assert b"<uws:executionDuration>77</uws:executionDuration>" in body

    normal = http.client.HTTPConnection("127.0.0.1", live.settings.port, timeout=20)
    normal.request("GET", job, headers=auth)
    reference = normal.getresponse()
    assert (waited.status, _headers(waited), body) == (
        reference.status,
        _headers(reference),
        reference.read(),
    )
    normal.close()

    # The waiting thread's own response was dropped: the next answer on this
    # connection is the next request's, not a stray second copy of the job.
    for _ in range(2):
        conn.request("GET", job + "/executionduration", headers=auth)
        r = conn.getresponse()
        assert (r.status, r.read()) == (200, b"77")
    conn.close()


def test_a_keep_alive_answer_is_kept_when_the_server_fills_up_after_it(
    live: LiveServer, alice: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The notifier told the client the connection stays open; by the time the waiting
    thread finishes, cheroot's keep-alive limit is reached (other clients' idle
    connections). The connection must stay open all the same: the client may already
    have sent its next request on it (the Slurm burst test saw 'Remote end closed
    connection without response' from exactly this)."""
    real = direct.DirectAnswer.send
    sent: list[bool] = []

    def send_then_fill_up(self: direct.DirectAnswer, prepared: direct.Prepared) -> bool:
        sent.append(real(self, prepared))
        monkeypatch.setattr(live.server._server, "keep_alive_conn_limit", 0)
        return sent[-1]

    monkeypatch.setattr(direct.DirectAnswer, "send", send_then_fill_up)
    job, conn, waited = _wait_then_change(live, alice, "9")
    auth = {"Authorization": f"Bearer {alice.token}"}
    assert waited.getheader("Connection") is None and b"executionDuration>9<" in waited.read()
    assert sent == [True]
    conn.request("GET", job + "/executionduration", headers=auth)
    r = conn.getresponse()
    # Full now, the server may close after this answer, and says so.
    assert (r.status, r.read(), r.getheader("Connection")) == (200, b"9", "close")
    conn.close()


def test_many_waiters_each_get_one_whole_answer(
    live: LiveServer, alice: Client, sends: list[bool]
) -> None:
    job = alice.create("sleep_job", {"seconds": "30"})
    request = (
        f"GET {job}?WAIT=20 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {alice.token}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    socks = [socket.create_connection(("127.0.0.1", live.settings.port)) for _ in range(20)]
    for s in socks:
        s.sendall(request)
    _blocked(live, job, len(socks))
    assert (
        alice.post(job + "/destruction", data={"DESTRUCTION": "2099-01-01T00:00:00Z"}).status_code
        == 303
    )
    answers = []
    for s in socks:
        s.settimeout(20)
        chunks = []
        while chunk := s.recv(65536):  # to the server's close: nothing after the answer
            chunks.append(chunk)
        s.close()
        answers.append(b"".join(chunks))
    assert sends == [True] * len(socks)
    head, _, body = answers[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" in head
    assert b"2099-01-01T00:00:00" in body
    length = int(next(h for h in head.split(b"\r\n") if h.startswith(b"Content-Length")).split()[1])
    assert length == len(body)
    assert all(a.partition(b"\r\n\r\n")[2] == body for a in answers)


def test_a_deleted_job_is_answered_404_by_the_waiting_thread(
    live: LiveServer, alice: Client, sends: list[bool]
) -> None:
    job = alice.create("sleep_job", {"seconds": "30"})
    got: list[int] = []
    t = threading.Thread(target=lambda: got.append(alice.get(job, params={"WAIT": 20}).status_code))
    t.start()
    _blocked(live, job)
    assert alice.delete(job).status_code == 303
    t.join(20)
    assert got == [404]
    assert sends == []  # nothing to deliver: the notifier left it to the thread


# --- the claim, on a real socket pair ------------------------------------------------


SOCKET_TIMEOUT = 10.0


def _fake_request(sock: socket.socket) -> SimpleNamespace:
    return SimpleNamespace(
        close_connection=False,
        response_protocol="HTTP/1.1",
        server=SimpleNamespace(can_add_keepalive_connection=True, server_name="uws-server"),
        conn=SimpleNamespace(socket=sock, wfile=SimpleNamespace(discard=False)),
    )


def test_a_big_answer_is_finished_by_the_waiting_thread_without_blocking_the_notifier() -> None:
    server_side, client_side = socket.socketpair()
    server_side.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    server_side.settimeout(SOCKET_TIMEOUT)  # as cheroot does: non-blocking underneath
    req = _fake_request(server_side)
    answer = direct.DirectAnswer(req)
    body = bytes(range(256)) * 8192  # 2 MiB: far more than the socket takes at once
    prepared = direct.Prepared("200 OK", "application/octet-stream", body, "uws-server")

    t0 = time.monotonic()
    assert answer.send(prepared) is True
    # Nobody reads yet: a send that waited for the client would only return when the
    # socket's timeout ran out
    assert time.monotonic() - t0 < SOCKET_TIMEOUT
    assert req.conn.wfile.discard is True
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(_read_all(client_side)))
    reader.start()
    assert answer.settle() is True  # sends the rest
    server_side.shutdown(socket.SHUT_WR)
    reader.join(20)
    expected = prepared.data(close=False)
    assert received == [expected]
    assert answer.send(prepared) is False  # claimed once
    server_side.close()
    client_side.close()


def test_the_waiting_thread_that_settles_first_answers_itself() -> None:
    server_side, client_side = socket.socketpair()
    req = _fake_request(server_side)
    answer = direct.DirectAnswer(req)
    assert answer.settle() is False  # the thread answers as usual
    assert answer.send(direct.Prepared("200 OK", "text/plain", b"late", "x")) is False
    assert req.conn.wfile.discard is False
    client_side.setblocking(False)
    with pytest.raises(BlockingIOError):  # nothing was written
        client_side.recv(10)
    server_side.close()
    client_side.close()


def test_close_is_announced_when_the_connection_ends() -> None:
    server_side, client_side = socket.socketpair()
    req = _fake_request(server_side)
    req.server.can_add_keepalive_connection = False  # the server keeps no more connections
    answer = direct.DirectAnswer(req)
    assert answer.send(direct.Prepared("200 OK", "text/plain", b"ok", "uws-server")) is True
    assert answer.settle() is True
    assert req.close_connection is True
    server_side.close()
    data = _read_all(client_side)
    assert b"Connection: close\r\n" in data and data.endswith(b"\r\n\r\nok")
    client_side.close()


def _read_all(sock: socket.socket) -> bytes:
    sock.settimeout(20)
    chunks = []
    while chunk := sock.recv(1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_closed_connection_is_left_to_the_waiting_thread() -> None:
    server_side, client_side = socket.socketpair()
    req = _fake_request(server_side)
    server_side.close()  # the client went away and the server closed its end
    answer = direct.DirectAnswer(req)
    assert answer.send(direct.Prepared("200 OK", "text/plain", b"x", "uws-server")) is False
    assert req.conn.wfile.discard is False
    assert answer.settle() is False  # the thread answers (and finds the socket closed)
    client_side.close()


def test_a_waiter_answered_before_it_registered_does_not_block(
    live: LiveServer, alice: Client
) -> None:
    """The handler listens to the notifier before the service registers its waiter: a
    change answered in between must not leave the waiting thread blocked for the whole
    WAIT (the service asks ``answered`` once registered)."""
    job = alice.create("sleep_job", {"seconds": "30"})
    job_id = job.rsplit("/", 1)[1]
    owner = live.service.store.user_by_name("alice")
    assert owner is not None
    start = time.monotonic()
    got = live.service.wait(owner, "sleep_job", job_id, 20, None, lambda: True)
    assert time.monotonic() - start < 5 and got.job_id == job_id
    start = time.monotonic()
    got = live.service.wait(owner, "sleep_job", job_id, 1, None, lambda: False)
    assert time.monotonic() - start >= 0.9  # not answered: it waits its time
