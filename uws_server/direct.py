"""Answering a blocked request from another thread: how 500 WAITs are answered at once.

A blocking WAIT holds a server thread and its connection. When the job changes, the
thread that made the change (the notifier, see :mod:`uws_server.waiters`) has the job
already read; if it also writes the finished HTTP response straight to each waiting
connection, 500 clients get their answer in one pass of non-blocking ``write()`` calls
(a few milliseconds), instead of 500 threads each waking, taking the GIL, going through
bottle and cheroot and sending in turn (figures: docs/benchmarks.md).

The waiting thread still finishes its request afterwards, but what cheroot writes for
it is dropped (:class:`~uws_server.server` sets the connection's writer to discard), so
the client sees exactly one response. Who answers is settled under a lock: either the
notifier sends (and the thread discards), or the thread answers normally (and the
notifier leaves that connection alone), never both.

The WAIT handler (:mod:`uws_server.handlers`) listens to the notifier
(:meth:`~uws_server.waiters.PhaseNotifier.listening`) around the service's ``wait``:
the service knows nothing of connections, and everything that depends on cheroot's
internals stays in this server layer (``server.py``, this module), with cheroot and
bottle pinned in ``setup.py`` (``tests/test_hardening_http.py`` fails on an upgrade).

Only plain-HTTP/1.1 GET requests served by our cheroot server get a :class:`DirectAnswer`;
anything else (TLS, HTTP/1.0, HEAD, the app called as a plain WSGI callable in tests)
takes the ordinary path.
"""

from __future__ import annotations

import email.utils
import logging
import os
import threading
from typing import Any

log = logging.getLogger("uws_server")

_local = threading.local()  # the cheroot request this thread is serving, if any

_OPEN, _SENT, _CLOSED = 0, 1, 2


class Prepared:
    """One response, encoded once and sent to every waiter of a notification.

    The head is what bottle and cheroot would write for the same answer: status,
    content type and length, then ``Connection: close`` when the connection ends with
    it, the date and the server's name.
    """

    __slots__ = ("_variants",)

    def __init__(self, status: str, content_type: str, body: bytes, server: str) -> None:
        head = (
            f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        )
        tail = f"Date: {email.utils.formatdate(usegmt=True)}\r\nServer: {server}\r\n\r\n"
        self._variants = (
            (head + tail).encode("latin-1") + body,
            (head + "Connection: close\r\n" + tail).encode("latin-1") + body,
        )

    def data(self, close: bool) -> bytes:
        return self._variants[close]


class DirectAnswer:
    """The right to answer one request from another thread, claimed at most once."""

    __slots__ = ("_request", "_lock", "_state", "_left")

    def __init__(self, request: Any) -> None:
        self._request = request
        self._lock = threading.Lock()
        self._state = _OPEN
        self._left = b""

    @property
    def answered(self) -> bool:
        """True once another thread has sent the answer (the waiting thread need not
        wait any longer)."""
        return self._state == _SENT

    @property
    def server_name(self) -> str:
        return str(self._request.server.server_name)

    def send(self, prepared: Prepared) -> bool:
        """Answer now, from the calling thread, without ever blocking it.

        What the socket does not take at once is left for the request's own thread
        (:meth:`settle`). False when the request's thread answered or gave up first.
        """
        with self._lock:
            if self._state != _OPEN:
                return False
            req = self._request
            close = bool(req.close_connection) or not req.server.can_add_keepalive_connection
            data = prepared.data(close)
            try:
                fd = req.conn.socket.fileno()
            except OSError:
                fd = -1
            if fd < 0:  # closed: leave it to the request's own thread
                return False
            # Claimed from here on: nothing below raises but OSError, handled.
            req.conn.wfile.discard = True  # what cheroot writes for this request is dropped
            if close:
                req.close_connection = True
            self._state = _SENT
            try:
                # os.write: the socket is non-blocking (cheroot sets a timeout), and
                # socket.send() would wait for room when it has a timeout.
                sent = os.write(fd, data)
            except BlockingIOError:
                sent = 0
            except OSError:  # the client went away: nothing more to send
                req.close_connection = True
                return True
            self._left = data[sent:]
            return True

    def settle(self) -> bool:
        """Called by the request's own thread when its wait is over: True if the answer
        went out from another thread (whatever it could not send is sent now), False if
        this thread must answer as usual (and from now on only it will)."""
        with self._lock:
            if self._state == _OPEN:
                self._state = _CLOSED
                return False
            left, self._left = self._left, b""
        if left:
            try:
                self._request.conn.socket.sendall(left)
            except OSError:
                self._request.close_connection = True
        return True


def begin(request: Any) -> None:
    """The server's thread starts serving ``request`` (cheroot's HTTPRequest)."""
    _local.request = request


def end() -> None:
    _local.request = None


def direct_answer(method: str) -> DirectAnswer | None:
    """A :class:`DirectAnswer` for the request this thread serves, if it can have one."""
    req = getattr(_local, "request", None)
    if req is None or method != "GET" or req.response_protocol != "HTTP/1.1":
        return None
    if not getattr(req.conn.wfile, "can_discard", False):  # TLS: not our writer
        return None
    return DirectAnswer(req)
