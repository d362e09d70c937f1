"""Serving the app with cheroot, a production multi-threaded WSGI server.

Why cheroot rather than waitress: a blocking WAIT keeps its connection open for up to
``max_wait`` seconds. Waitress's asyncore loop does Python work for every open
connection on every event, so 500 waiting clients cut everyone else's request rate by
five; cheroot parks idle connections in an epoll selector and gives each active request
a worker thread, so waiting clients cost one sleeping thread each and nothing more.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

from cheroot import server as cheroot_server
from cheroot import wsgi
from cheroot.makefile import MakeFile, StreamWriter

from uws_server import direct
from uws_server.app import build_app, build_service, start_background, stop_background
from uws_server.config import Settings

log = logging.getLogger("uws_server")


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

    def respond(self) -> None:
        direct.begin(self)
        try:
            super().respond()
        finally:
            direct.end()
            wfile = self.conn.wfile
            if isinstance(wfile, _HeadThenBody):
                wfile.release()


class _Connection(cheroot_server.HTTPConnection):
    RequestHandlerClass = _Request

    def __init__(self, server: Any, sock: Any, makefile: Any = MakeFile) -> None:
        def files(sock: Any, mode: str, bufsize: int) -> Any:
            if makefile is MakeFile and "w" in mode:  # plain HTTP; TLS brings its own
                return _HeadThenBody(sock, mode, bufsize)
            return makefile(sock, mode, bufsize)

        super().__init__(server, sock, files)


class WSGIServer:
    """A cheroot server with a port known after binding and a stop usable from any thread."""

    def __init__(
        self, app: Callable[..., Any], host: str, port: int, threads: int, timeout: int
    ) -> None:
        self._server = wsgi.Server(
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
        self._server.prepare()  # binds now: the port is known and in use from here on
        self.host = host
        self.port: int = self._server.bind_addr[1]

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
    # A WAIT holds its request silent for up to max_wait seconds before answering.
    return WSGIServer(app, host, port, settings.threads, settings.max_wait + 60)


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
