"""Assembles the service: storage, job definitions, manager, routes, error mapping.

Errors are mapped to HTTP responses here and only here: a ``UWSError`` becomes its
status with a plain-text message; anything unexpected becomes a bare 500 (logged with
its traceback on the server, never sent to the client).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import bottle
from bottle import HTTPResponse

from uws_server import __version__, managers
from uws_server.config import PROJECT_ROOT, Settings
from uws_server.db import make_engine
from uws_server.handlers import register_uws_routes
from uws_server.http_errors import TEXT, error_plugin
from uws_server.jdl.registry import JobDefinitionRegistry
from uws_server.jdl.routes import register_jdl_routes
from uws_server.managers.base import Manager
from uws_server.models import User
from uws_server.progress_routes import register_progress_routes
from uws_server.prov_handlers import register_provenance_routes
from uws_server.request_guard import install_guard
from uws_server.service import UWSService
from uws_server.storage import Store
from uws_server.storage.schema import create_schema
from uws_server.vo.routes import register_vo_routes
from uws_server.vo.tap_routes import register_tap_routes
from uws_server.web import register_web_routes

log = logging.getLogger("uws_server")


def _plain_error(err: bottle.HTTPError) -> str:
    bottle.response.content_type = TEXT
    if err.status_code == 404:
        return f"not found: {bottle.request.path}\n"
    if err.status_code == 405:
        return f"method {bottle.request.method} not allowed on {bottle.request.path}\n"
    if err.status_code >= 500:
        return "internal server error\n"
    return f"{err.body}\n" if isinstance(err.body, str) else "bad request\n"


def make_manager(settings: Settings, service: UWSService) -> Manager:
    """The configured executor, through the registry (see uws_server.managers)."""
    return managers.create(settings.manager, service.lifecycle, settings)


def export_job_environment(settings: Settings) -> None:
    """Variables every job script may rely on, inherited by local and Slurm jobs."""
    os.environ["UWS_SCRIPTS_DIR"] = str(PROJECT_ROOT / "scripts")
    os.environ["UWS_DL3_STORE"] = str(settings.dl3_store)
    # The public URL, for the provenance references job scripts stamp into products.
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    os.environ["UWS_BASE_URL"] = (settings.base_url or f"http://{host}:{settings.port}").rstrip("/")
    python = settings.pipeline_python or sys.executable
    bindir = str(Path(python).parent)
    path = os.environ.get("PATH", "")
    if bindir not in path.split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + path


def build_service(settings: Settings) -> UWSService:
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    settings.jobs_dir.mkdir(parents=True, exist_ok=True)
    settings.provenance_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.effective_database_url)
    create_schema(engine)
    registry = JobDefinitionRegistry(settings.job_definitions_dir)
    registry.load_all()
    for problem in registry.errors:
        log.warning("job definition skipped: %s", problem)
    service = UWSService(settings, Store(engine), registry)
    service.lifecycle.manager = make_manager(settings, service)
    export_job_environment(settings)
    return service


def build_app(service: UWSService) -> bottle.Bottle:
    app = bottle.Bottle(catchall=True)
    app.install(error_plugin)
    # Before any route reads a body: its size, its sender, cross-site requests.
    install_guard(app, service)
    for code in (400, 401, 403, 404, 405, 413, 500):
        app.error(code)(_plain_error)

    def authenticate(required: bool = True) -> User:
        """The caller; anonymous reads of definitions only if the settings allow them."""
        required = required or not service.settings.anonymous_can_list_jdl
        return service.auth.authenticate(bottle.request.get_header("Authorization"), required)

    @app.get("/")
    def index() -> dict:
        if "text/html" in (bottle.request.get_header("Accept") or ""):
            raise HTTPResponse(status=303, headers={"Location": "/ui/"})  # a browser
        return {
            "service": "uws-server",
            "version": __version__,
            "standard": "ivo://ivoa.net/std/UWS#rest-1.1",
            "job_lists": "/rest",
            "job_definitions": "/jdl",
            "provsap": "/provsap",
            "provenance_search": "/provsearch",
        }

    register_uws_routes(app, service)
    register_provenance_routes(app, service)
    register_progress_routes(app, service)
    register_jdl_routes(app, service.registry, authenticate)
    register_web_routes(app, service)
    register_tap_routes(app, service)
    register_vo_routes(app, service)
    return app


def start_background(service: UWSService) -> None:
    """Recover jobs left by a previous process, then start the manager and the reaper."""
    manager = service.lifecycle.manager
    assert manager is not None
    manager.start()
    service.lifecycle.recover()
    service.lifecycle.reap_once()
    service.lifecycle.start_reaper()


def stop_background(service: UWSService) -> None:
    """Stop the manager and the final hooks. Call it once the HTTP server is stopped
    (after :meth:`~uws_server.waiters.PhaseNotifier.notify_all`, which answers every
    WAIT): a worker callback arriving later would find no one to run its hooks."""
    service.notifier.notify_all()
    if service.lifecycle.manager is not None:
        service.lifecycle.manager.stop()
    service.lifecycle.stop()
