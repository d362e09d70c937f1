"""Serving the app with cheroot, a production multi-threaded WSGI server.

Why cheroot rather than waitress: a blocking WAIT keeps its connection open for up to
``max_wait`` seconds. Waitress's asyncore loop does Python work for every open
connection on every event, so 500 waiting clients cut everyone else's request rate by
five; cheroot parks idle connections in an epoll selector and gives each active request
a worker thread, so waiting clients cost one sleeping thread each and nothing more.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import resource
import select
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from cheroot import errors as cheroot_errors
from cheroot import server as cheroot_server
from cheroot import wsgi
from cheroot.makefile import MakeFile, StreamWriter

from uws_server import direct
from uws_server.app import build_app, build_service, start_background, stop_background
from uws_server.config import Settings
from uws_server.http_errors import RequestTimeout

log = logging.getLogger("uws_server")

# This module subclasses cheroot's HTTPRequest and HTTPConnection and replaces the
# connection's reader: it relies on cheroot internals (communicate(), send_headers(),
# simple_response(), respond(), process_conn(), rfile's read/readline/has_data,
# ConnectionManager.put and _expire reading last_used). setup.py pins this version;
# tests/test_hardening_http.py fails when the installed cheroot differs, so that an
# upgrade re-checks them first.
CHEROOT_VERSION = "11.1.2"


# --------------------------------------------------------------------------- requests
# Reading a request head without a thread (slow clients), with its sizes capped.
#
# cheroot hands a connection to a worker thread as soon as its first byte arrives, and
# the thread then blocks until the whole head is in: 620 clients sending one header
# line every 5 s held every thread. Here the selector's own thread takes what the socket
# already has (one non-blocking read) and leaves the connection in the selector until
# the request is complete (its head and, when it is small, its body): only then is a
# worker thread woken. A head must be
# complete within ``head_timeout`` seconds of its first byte (408), its request line at
# most ``max_line`` bytes (414) and the head at most ``max_head`` bytes (431): a 300 MB
# header line costs the server one 64 KB read before the connection is closed.

HEAD_END = re.compile(rb"\r?\n\r?\n")
CONTENT_LENGTH = re.compile(rb"\ncontent-length:[ \t]*([0-9]{1,15})[ \t]*\r?\n", re.IGNORECASE)
EXPECT = re.compile(rb"\nexpect:", re.IGNORECASE)
# No route takes a body of unknown length (uws_server.request_guard), and cheroot would
# answer 501 to a coding other than chunked: refused here, before anything else.
TRANSFER_ENCODING = re.compile(rb"\ntransfer-encoding:", re.IGNORECASE)
# A body up to this size is read with the head, without a thread; a larger one is read
# by the request's thread once the route has let it in (uws_server.request_guard).
PREREAD_BODY = 64 * 1024
READ_SIZE = 64 * 1024
# A body being read by a thread must keep coming: BODY_GRACE seconds, plus one second per
# MIN_BODY_RATE bytes received (what Apache's mod_reqtimeout does).
BODY_GRACE = 10.0
MIN_BODY_RATE = 1000
# An answer must be taken at MIN_WRITE_RATE bytes a second at least, over each window of
# WRITE_WINDOW seconds once the kernel's buffers are full (_HeadThenBody).
WRITE_WINDOW = 10.0
MIN_WRITE_RATE = 1000

WAITING, EXPECTING, READY, CLOSED = "waiting", "expecting", "ready", "closed"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@dataclasses.dataclass(frozen=True)
class Limits:
    """What a connection may cost before it is served (see the comment above)."""

    head_timeout: float = 10.0
    max_line: int = 16 * 1024
    max_head: int = 64 * 1024
    max_connections: int = 4096
    io_timeout: float = 60.0  # a blocked read of a body, at most


class _Reader:
    """A plain-HTTP connection's read side, in place of cheroot's buffered reader.

    What cheroot calls (``read``, ``readline``, ``has_data``, ``close``) behaves as its
    own reader does, over one buffer that :meth:`fill` also feeds without blocking.
    ``has_data`` is true only once a whole request is buffered, so that cheroot's
    selector gives the connection to a thread only then.
    """

    def __init__(self, sock: socket.socket, limits: Limits) -> None:
        self._sock = sock
        self._fd = sock.fileno()
        self._limits = limits
        self._buf = bytearray()
        self._state: str | None = None  # request_state() of the buffer as it is
        self.bytes_read = 0
        self.closed = False
        self._body_start = 0.0  # monotonic time a thread started reading a body, or 0
        self._body_bytes = 0

    # ---------------------------------------------------------------- without a thread
    def fill(self) -> bool:
        """Take what the socket has, without waiting; False at the end of the stream."""
        try:
            data = os.read(self._fd, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        if not data:
            return False
        self._buf += data
        self._state = None
        return True

    def request_state(self) -> str:
        """:meth:`_request_state`, worked out once per content of the buffer (the
        selector's thread and then the worker ask about the same request)."""
        if self._state is None:
            self._state = self._request_state()
        return self._state

    def _request_state(self) -> str:
        """READY when a whole request is buffered, WAITING when more is to come, else
        the status to answer: "414" or "431" for a request line or head too large,
        "411" for a body with a transfer coding."""
        buf = self._buf
        limits = self._limits
        end = HEAD_END.search(buf)
        line_end = buf.find(b"\n", 0, limits.max_line + 2)
        if line_end < 0 and len(buf) > limits.max_line + 1:
            return "414"
        if end is None:
            return "431" if len(buf) > limits.max_head else WAITING
        head_end = end.end()
        if head_end > limits.max_head:
            return "431"
        head = bytes(buf[:head_end])
        if TRANSFER_ENCODING.search(head):
            return "411"
        match = CONTENT_LENGTH.search(head)
        length = int(match.group(1)) if match else 0
        if length > PREREAD_BODY or len(buf) >= head_end + length:
            return READY
        # A small body is awaited here too; a client that waits for "100 Continue"
        # before sending it gets one (and cheroot's, a second: clients accept several).
        return EXPECTING if EXPECT.search(head) else WAITING

    def pending(self) -> int:
        return len(self._buf)

    def has_data(self) -> bool:
        """cheroot's question "is a request waiting here?": a whole one is buffered."""
        return bool(self._buf) and self.request_state() == READY

    # ---------------------------------------------------------------- from a thread
    def begin_body(self) -> None:
        """A thread is about to read a body: from now on it must keep coming."""
        self._body_start = time.monotonic()
        self._body_bytes = 0

    def end_body(self) -> None:
        self._body_start = 0.0

    def _recv(self, size: int) -> bytes:
        """Wait (within the limits) until the socket has data, then read it."""
        until = time.monotonic() + self._limits.io_timeout
        while True:
            try:
                data = os.read(self._fd, size)
            except (BlockingIOError, InterruptedError):
                pass
            else:
                self.bytes_read += len(data)
                self._body_bytes += len(data)
                return data
            if self._body_start:
                until = min(until, self._body_start + BODY_GRACE + self._body_bytes / MIN_BODY_RATE)
            wait = until - time.monotonic()
            if wait <= 0:
                raise RequestTimeout()  # 408 (http_errors, or cheroot) and closed
            _readable(self._fd, wait)

    def _take(self, size: int) -> bytes:
        out = bytes(self._buf[:size])
        del self._buf[:size]
        self._state = None
        return out

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            parts = [self._take(len(self._buf))]
            while chunk := self._recv(READ_SIZE):
                parts.append(chunk)
            return b"".join(parts)
        if len(self._buf) >= size:
            return self._take(size)
        parts = [self._take(len(self._buf))]
        need = size - len(parts[0])
        while need > 0:
            chunk = self._recv(min(need, 16 * READ_SIZE))  # no huge buffer per call
            if not chunk:
                break
            parts.append(chunk)
            need -= len(chunk)
        return b"".join(parts)

    def readline(self, size: int | None = -1) -> bytes:
        limit = size if size is not None and size >= 0 else None
        start = 0
        while True:
            end = self._buf.find(b"\n", start)
            if end >= 0 and (limit is None or end < limit):
                return self._take(end + 1)
            if limit is not None and len(self._buf) >= limit:
                return self._take(limit)
            start = len(self._buf)
            chunk = self._recv(READ_SIZE)
            if not chunk:
                return self._take(len(self._buf))
            self._buf += chunk
            self._state = None

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines, total = [], 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")

    def close(self) -> None:
        self.closed = True
        self._buf = bytearray()
        self._state = None


def _writable(fd: int, seconds: float) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return bool(poller.poll(max(0.0, seconds) * 1000))


def _readable(fd: int, seconds: float) -> bool:
    poller = select.poll()  # not select(): descriptors above 1024 with many clients
    poller.register(fd, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(max(0.0, seconds) * 1000))


REASONS = {
    "408": "408 Request Timeout",
    "411": "411 Length Required",
    "414": "414 URI Too Long",
    "431": "431 Request Header Fields Too Large",
    "503": "503 Service Unavailable",
}
MESSAGES = {
    "408": "the request did not arrive in time",
    "411": "a request body needs Content-Length (no Transfer-Encoding)",
    "414": "the request line is too long",
    "431": "the request headers are too large",
    "503": "too many connections: try again later",
}


class _Partial(Exception):
    """A send that failed after ``done`` bytes (see _HeadThenBody._flush_unlocked)."""

    def __init__(self, done: int, error: OSError) -> None:
        super().__init__(done, error)
        self.done = done
        self.error = error


class _HeadThenBody(StreamWriter):
    """A connection's writer that sends the response head with the body's first bytes.

    cheroot writes the status line and headers, then each body chunk, each with its own
    ``send()``; every send releases the GIL, and getting it back is what a response
    costs when hundreds of threads answer at once (500 WAITs woken together). Holding
    the head until the body arrives makes a small response one ``send()``. Whatever is
    still held when the request ends (a response without a body) is sent then.

    ``discard``: the request was already answered from another thread
    (:mod:`uws_server.direct`); whatever its own thread writes is dropped.
    """

    can_discard = True

    def __init__(self, sock: Any, mode: str = "wb", bufsize: int = 8192) -> None:
        super().__init__(sock, mode, bufsize)
        self.holding = False
        self.discard = False
        self._head = b""
        self._sock = sock
        self._window_start = 0.0  # see _flush_unlocked
        self._window_bytes = 0

    def begin_response(self) -> None:
        """A new response: its first window starts with its first write."""
        self._window_start = 0.0

    def _flush_unlocked(self) -> None:
        """Send what is buffered, and keep sending only to a client that reads.

        A client that does not read its answer (or reads a byte now and then) would
        hold this thread for as long as it likes: each send waits for room, and any
        progress restarts the socket's timeout. Here the client must take at least
        MIN_WRITE_RATE bytes a second over each WRITE_WINDOW seconds once the kernel's
        buffers are full, else the connection is dropped (as a timeout: cheroot closes
        it).
        """
        self._checkClosed("flush of closed file")
        buf = self._write_buf
        view = memoryview(buf)
        done = 0
        try:
            self._send(view)
            done = len(view)
        except _Partial as partial:
            done = partial.done
            raise partial.error from None
        finally:
            view.release()
            del buf[:done]  # once: a large answer is not moved after each send

    def _send(self, view: memoryview) -> None:
        fd = self._sock.fileno()
        done = 0
        try:
            while done < len(view):
                try:
                    sent = os.write(fd, view[done:])
                except (BlockingIOError, InterruptedError):
                    sent = 0
                now = time.monotonic()
                if not self._window_start:
                    self._window_start, self._window_bytes = now, 0
                if sent:
                    done += sent
                    self._window_bytes += sent
                    continue
                if now - self._window_start >= WRITE_WINDOW:
                    if self._window_bytes < MIN_WRITE_RATE * (now - self._window_start):
                        raise RequestTimeout()
                    self._window_start, self._window_bytes = now, 0
                wait = self._window_start + WRITE_WINDOW - now
                timeout = self._sock.gettimeout()
                limit = wait if timeout is None else min(wait, timeout)
                if not _writable(fd, limit) and timeout is not None and wait >= timeout:
                    raise RequestTimeout()  # the socket's own timeout, as before
        except OSError as exc:
            raise _Partial(done, exc) from None

    def write(self, val: bytes, *args: Any, **kwargs: Any) -> int:
        if self.discard:
            return len(val)
        if self.holding:
            self._head += bytes(val)
            return len(val)
        if self._head:
            head, self._head = self._head, b""
            super().write(head + bytes(val), *args, **kwargs)
            return len(val)  # what the caller wrote, not the held head with it
        return super().write(val, *args, **kwargs)

    def release(self) -> None:
        if self.discard:
            self._head, self.discard = b"", False
        if self._head:
            head, self._head = self._head, b""
            super().write(head)


class _Request(cheroot_server.HTTPRequest):
    """cheroot's request, with its head written through :class:`_HeadThenBody`, and
    known to :mod:`uws_server.direct` while it is served (to be answered from another
    thread)."""

    def send_headers(self) -> None:
        # A body the application left unread is never read to the end (cheroot does so
        # to keep the connection): a refused 1 GB upload, or one sent a byte at a
        # time, would hold this thread. The connection closes instead, unless what is
        # left is already buffered.
        remaining = getattr(self.rfile, "remaining", 0) or 0
        if self.chunked_read:
            self.close_connection = True
        elif remaining > 0:
            reader = self.conn.rfile
            if not isinstance(reader, _Reader) or reader.pending() < remaining:
                self.close_connection = True
        wfile = self.conn.wfile
        if not isinstance(wfile, _HeadThenBody):
            super().send_headers()
            return
        if wfile.discard:
            # Answered from another thread (uws_server.direct), which already told the
            # client whether the connection stays open. cheroot's own head would decide
            # again, and could close a connection the client was told to keep: its next
            # request, maybe sent already, would then find the socket closed.
            return
        wfile.holding = True
        try:
            super().send_headers()
        finally:
            wfile.holding = False

    def simple_response(self, status: str, msg: str | bytes = "") -> None:
        """cheroot's answer to a request it cannot parse (a malformed request line,
        ``//path`` read as an absolute URI, a bad header...), which always ends the
        connection, now says so: cheroot sends ``Connection: close`` only with 413/414,
        and a keep-alive client then sent its next request on the connection being
        closed and got no answer at all (``RemoteDisconnected``: seen in the fuzz test)."""
        status = str(status)
        if status[:3] in {"413", "414"} and self.response_protocol != "HTTP/1.1":
            status = "400 Bad Request"  # cheroot's rule: HTTP/1.0 has neither status
        self.close_connection = True
        body = msg.encode("ISO-8859-1") if isinstance(msg, str) else msg
        head = (
            f"{self.server.protocol} {status}\r\nContent-Length: {len(body)}\r\n"
            "Content-Type: text/plain\r\nConnection: close\r\n\r\n"
        )
        try:
            self.conn.wfile.write(head.encode("ISO-8859-1") + body)
        except OSError as exc:
            if exc.args and exc.args[0] not in cheroot_errors.socket_errors_to_ignore:
                raise

    def respond(self) -> None:
        direct.begin(self)
        reader = self.conn.rfile
        if isinstance(reader, _Reader):
            reader.begin_body()
        if isinstance(self.conn.wfile, _HeadThenBody):
            self.conn.wfile.begin_response()
        try:
            super().respond()
        finally:
            direct.end()
            if isinstance(reader, _Reader):
                reader.end_body()
            wfile = self.conn.wfile
            if isinstance(wfile, _HeadThenBody):
                wfile.release()


class _Connection(cheroot_server.HTTPConnection):
    """A connection that is given a thread only once a whole request has arrived.

    Until then each wake-up of cheroot's selector costs one non-blocking read in the
    selector's own thread (:meth:`needs_thread`, :class:`_Reader`), and no thread is
    woken. The connection counts against ``Limits.max_connections`` while it is open
    (503 past it).
    """

    RequestHandlerClass = _Request

    def __init__(self, server: Any, sock: Any, makefile: Any = MakeFile) -> None:
        limits: Limits = getattr(server, "uws_limits", None) or Limits()
        plain = makefile is MakeFile  # plain HTTP; TLS brings its own files

        def files(sock: Any, mode: str, bufsize: int) -> Any:
            if plain and "w" in mode:
                return _HeadThenBody(sock, mode, bufsize)
            if plain:
                return _Reader(sock, limits)
            return makefile(sock, mode, bufsize)

        super().__init__(server, sock, files)
        self._limits = limits
        self._head_since: float | None = time.time()  # a new connection owes a request
        self._last_used: float | None = None
        self._counted = _count_connection(server, +1)
        self._refused = self._counted > limits.max_connections
        self._closed = False
        self._answered = False
        self._continued = False  # "100 Continue" sent for the request being read

    # cheroot's ConnectionManager closes a connection whose ``last_used`` is older than
    # the server's timeout (minutes: keep-alive between requests). A request under way
    # owes its head within head_timeout: it looks that much older to the manager.
    @property  # type: ignore[override]
    def last_used(self) -> float | None:
        if self._head_since is None or self._last_used is None:
            return self._last_used
        shift = self.server.timeout - self._limits.head_timeout
        return min(self._last_used, self._head_since - shift)

    @last_used.setter
    def last_used(self, value: float | None) -> None:
        self._last_used = value

    def needs_thread(self) -> bool:
        """Called where cheroot would hand the connection to a thread (just accepted,
        or readable): True when a whole request is buffered and a thread must serve it.
        Otherwise what the socket has is taken here, without waiting, and the
        connection goes back to the selector, or is answered and closed."""
        if not isinstance(self.rfile, _Reader):
            return True
        step = self._advance()
        if step == WAITING:
            self.server.put_conn(self)  # back to the selector until more arrives
        elif step == CLOSED:
            self.close()
        return step == READY

    def _advance(self) -> str:
        """Take what the socket has, without waiting: READY (a whole request is
        buffered), WAITING (more is to come, within the head timeout) or CLOSED (the
        client went away, or was answered 408, 411, 414, 431 or 503)."""
        reader = self.rfile
        assert isinstance(reader, _Reader)
        if self._refused:
            self._answer("503")
            return CLOSED
        state = reader.request_state() if reader.pending() else WAITING
        if state in (WAITING, EXPECTING):
            if not reader.fill():
                return CLOSED  # the client went away
            if self._head_since is None:
                self._head_since = time.time()
            state = reader.request_state() if reader.pending() else WAITING
        if state == EXPECTING:
            if not self._continued:
                self._continued = True
                try:
                    os.write(self.socket.fileno(), CONTINUE)
                except OSError:
                    return CLOSED
            state = WAITING
        if state == READY:
            return READY
        if state == WAITING and time.time() - (self._head_since or 0) <= self._limits.head_timeout:
            return WAITING
        self._answer("408" if state == WAITING else state)
        return CLOSED

    def communicate(self) -> bool:
        reader = self.rfile
        if not isinstance(reader, _Reader):
            return bool(super().communicate())
        step = self._advance()  # READY at once when the request came through needs_thread
        if step != READY:
            return step == WAITING  # cheroot's thread puts it back, or closes it
        keep = bool(super().communicate())
        self._head_since = time.time() if keep and reader.pending() else None
        self._continued = False
        return keep

    def _answer(self, status: str) -> None:
        """A refusal written without waiting (the client may not be reading), once."""
        if self._answered:
            return
        self._answered = True
        body = (MESSAGES[status] + "\n").encode()
        head = (
            f"HTTP/1.1 {REASONS[status]}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        try:
            os.write(self.socket.fileno(), head.encode() + body)
            self.socket.shutdown(socket.SHUT_WR)
            # What the client already sent is read (not all of it: a bounded amount),
            # so that closing does not reset the connection before it reads the answer.
            for _ in range(16):
                if not os.read(self.socket.fileno(), READ_SIZE):
                    break
        except OSError:
            pass

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _count_connection(self.server, -1)
            reader = self.rfile
            since = self._head_since
            if isinstance(reader, _Reader) and reader.pending() and since is not None:
                if time.time() - since > self._limits.head_timeout:
                    self._answer("408")  # expired by cheroot's manager mid-head
        super().close()


_count_lock = threading.Lock()


def _count_connection(server: Any, delta: int) -> int:
    """The server's open connections after adding ``delta``."""
    with _count_lock:
        count = getattr(server, "uws_connections", 0) + delta
        server.uws_connections = count
        return count


def raise_descriptor_limit() -> int:
    """Raise this process's soft limit on open files to the hard one: every connection
    is a descriptor, and running out of them stops accept() for everyone."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


class _CherootServer(wsgi.Server):
    """cheroot's WSGI server, whose threads only ever get whole requests."""

    def process_conn(self, conn: Any) -> None:
        # Called by the selector's thread for a new or readable connection (and by a
        # thread for a kept-alive one with data buffered): see _Connection.needs_thread.
        if isinstance(conn, _Connection) and not conn.needs_thread():
            return
        super().process_conn(conn)


class WSGIServer:
    """A cheroot server with a port known after binding and a stop usable from any thread.

    ``limits``: what a connection may cost before it is served (see :class:`Limits`);
    ``max_body``: cheroot's own cap on any request body (0: none), a backstop behind the
    per-route limits of :mod:`uws_server.request_guard`.
    """

    def __init__(
        self,
        app: Callable[..., Any],
        host: str,
        port: int,
        threads: int,
        timeout: int,
        limits: Limits | None = None,
        max_body: int = 0,
    ) -> None:
        limits = limits or Limits()
        descriptors = raise_descriptor_limit()
        # Every connection is a descriptor; leave room for the database, jobs and logs.
        cap = max(16, min(limits.max_connections, descriptors - 256))
        limits = dataclasses.replace(limits, max_connections=cap)
        self._server = _CherootServer(
            (host, port),
            app,
            numthreads=threads,
            max=threads,
            request_queue_size=1024,
            timeout=timeout,
            shutdown_timeout=5,
            accepted_queue_size=-1,
        )
        self._server.server_name = "uws-server"
        self._server.ConnectionClass = _Connection
        self._server.uws_limits = limits
        # cheroot's supported caps, behind ours (a plain-HTTP head never reaches them).
        self._server.max_request_header_size = limits.max_head + READ_SIZE
        self._server.max_request_body_size = max_body
        self._server.prepare()  # binds now: the port is known and in use from here on
        self.limits = limits
        self.host = host
        self.port: int = self._server.bind_addr[1]

    @property
    def connections(self) -> int:
        """Connections open now (served, waiting in the selector or refused)."""
        return int(getattr(self._server, "uws_connections", 0))

    def serve_forever(self) -> None:
        self._server.serve()

    def start_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="uws-http", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._server.stop()


def make_wsgi_server(
    app: Callable[..., Any], settings: Settings, host: str, port: int
) -> WSGIServer:
    limits = Limits(
        head_timeout=settings.head_timeout,
        max_connections=settings.max_connections,
    )
    # The socket timeout (writes, keep-alive between requests): a WAIT holds its
    # request silent for up to max_wait seconds before answering.
    return WSGIServer(
        app,
        host,
        port,
        settings.threads,
        settings.max_wait + 60,
        limits,
        max_body=settings.max_upload_bytes + (1 << 20),
    )


def serve(settings: Settings) -> None:
    service = build_service(settings)
    app = build_app(service)
    start_background(service)
    server = make_wsgi_server(app, settings, settings.host, settings.port)

    def shutdown(signum: int, _frame: object) -> None:
        # Runs in the main thread, inside the accept loop: SystemExit ends serve().
        log.info("signal %d: stopping (running jobs keep running and are recovered)", signum)
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    log.info(
        "uws-server on http://%s:%s (database %s, manager %s, %d definitions)",
        settings.host,
        server.port,
        settings.effective_database_url.split("@")[-1],
        settings.manager,
        len(service.registry.names()),
    )
    print(f"serving on http://{settings.host}:{server.port}", flush=True)
    try:
        server.serve_forever()
    except SystemExit:
        pass
    finally:
        service.notifier.notify_all()  # every WAIT answers now, and new ones at once
        server.stop()  # no request after this one, worker callbacks included
        stop_background(service)
        log.info("stopped")
