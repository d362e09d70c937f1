"""Serving the app with waitress, a production multi-threaded WSGI server."""

from __future__ import annotations

import logging
import signal

from waitress.server import create_server

from uws_server.app import build_app, build_service, start_background, stop_background
from uws_server.config import Settings

log = logging.getLogger("uws_server")


def serve(settings: Settings) -> None:
    service = build_service(settings)
    app = build_app(service)
    start_background(service)
    server = create_server(
        app,
        host=settings.host,
        port=settings.port,
        threads=settings.threads,
        connection_limit=settings.connection_limit,
        # A WAIT holds its connection silent for up to max_wait seconds.
        channel_timeout=settings.max_wait + 60,
        asyncore_use_poll=True,
        backlog=2048,
        ident="uws-server",
        clear_untrusted_proxy_headers=True,
    )

    def shutdown(signum: int, _frame: object) -> None:
        # Runs in the main thread, inside waitress's loop: SystemExit makes run()
        # close the listening socket and the worker threads, then return.
        log.info("signal %d: stopping (running jobs keep running and are recovered)", signum)
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    log.info(
        "uws-server on http://%s:%s (database %s, manager %s, %d definitions)",
        settings.host,
        server.effective_port,
        settings.effective_database_url.split("@")[-1],
        settings.manager,
        len(service.registry.names()),
    )
    print(f"serving on http://{settings.host}:{server.effective_port}", flush=True)
    try:
        server.run()
    finally:
        stop_background(service)
        log.info("stopped")
