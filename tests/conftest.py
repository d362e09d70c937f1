"""Shared fixtures: settings in a temporary folder, a live server on a free port, users.

Tests talk to the real (cheroot) server over HTTP, exactly as clients do. With
``UWS_REQUIRE_SERVICES=1`` (set by the test command and CI) a test that needs
PostgreSQL, Slurm or Chromium fails instead of skipping when the service is missing.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit
from wsgiref.util import setup_testing_defaults

import pytest
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers
from sqlalchemy import MetaData, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from uws_server.app import build_app, build_service, start_background, stop_background
from uws_server.auth import hash_token, new_token
from uws_server.common import new_job_id, utcnow
from uws_server.config import PROJECT_ROOT, Settings, load_settings
from uws_server.db import make_engine
from uws_server.models import Job, User
from uws_server.provenance import background
from uws_server.server import make_wsgi_server
from uws_server.service import UWSService
from uws_server.storage import Store

pytest_plugins = ("tests.parallel",)  # several xdist workers: scheduling, crashes counted

TESTS = Path(__file__).resolve().parent
REQUIRE_SERVICES = os.environ.get("UWS_REQUIRE_SERVICES") == "1"
STOP_POLL_INTERVAL = 0.02  # seconds; see LiveServer.__init__

WORKER = os.environ.get("PYTEST_XDIST_WORKER") or os.environ.get("UWS_TEST_WORKER") or "main"
"""This process among the run's pytest processes: xdist's worker id (``gw0``...), else
``UWS_TEST_WORKER`` (``browser``: the browser tests' own process in
``scripts/run_tests.sh``), else ``main``. Exported as ``UWS_TEST_WORKER``."""
os.environ["UWS_TEST_WORKER"] = WORKER


def _shared_dir() -> Path:
    """``UWS_TEST_SHARED_DIR``: one directory for every pytest process of a test run, for
    what they build once and share (the CTA chain, with a lock: ``tests/cta_support.py``).

    ``scripts/run_tests.sh`` makes it for the run and removes it at the end; a pytest run
    by hand makes one in its first (controller) process, which xdist's workers inherit,
    and removes it at exit (:func:`pytest_unconfigure`)."""
    given = os.environ.get("UWS_TEST_SHARED_DIR")
    if given:
        return Path(given)
    made = Path(tempfile.mkdtemp(prefix="uws-tests-"))
    os.environ["UWS_TEST_SHARED_DIR"] = str(made)
    os.environ["UWS_TEST_SHARED_DIR_OWNER"] = str(os.getpid())
    return made


SHARED_DIR = _shared_dir()


def worker_database_url(base_url: str, worker: str) -> str:
    """The database of one worker: ``<base database>_<worker>`` on the same server, made
    (from ``template1``, which has pgSphere) if missing. Tests drop and create every
    table (:func:`reset_postgres`), so two workers must never share one; ``main`` keeps
    the base database itself."""
    if not base_url or worker == "main":
        return base_url
    url = make_url(base_url)
    name = f"{url.database}_{worker}"
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        for _attempt in range(40):
            try:
                with engine.connect() as conn:
                    found = conn.execute(
                        text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
                    ).first()
                    if not found:
                        conn.execute(text(f'CREATE DATABASE "{name}"'))
                break
            except DBAPIError as exc:
                # 55006: another worker is copying template1 at this instant ("source
                # database is being accessed by other users"): try again
                if getattr(exc.orig, "sqlstate", None) != "55006":
                    raise
                time.sleep(0.25)
    except DBAPIError as exc:  # PostgreSQL not there: the tests needing it fail (or skip)
        print(f"tests/conftest.py: no database {name} ({exc.orig})", file=sys.stderr)
    finally:
        engine.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


class SuiteRenderWorker(background.Worker):
    """The provenance renderer of the test processes, at their own CPU priority.

    The service renders provenance in one process under ``SCHED_IDLE``: it gets the CPU
    only when nothing else wants it, so that jobs and requests go first. In a test run the
    "anything else" is the rest of the suite: several pytest workers and their science
    jobs keep both cores busy, and a render then waited minutes (``dot`` killed after
    60 s, provenance GETs timing out, teardowns held: the first parallel run). The tests
    read what is rendered, not when, so their renderer runs like the test itself; the
    priority is tested on a :class:`background.Worker` of its own
    (``tests/test_provenance.py``)."""

    CODE = (
        "from uws_server.provenance import background as b\n"
        "b.lower_priority = lambda: ''  # see tests/conftest.py, SuiteRenderWorker\n"
        "b.main()\n"
    )

    def _start(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-c", self.CODE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=PROJECT_ROOT,
        )


assert callable(getattr(background.Worker, "_start", None)), "see SuiteRenderWorker"
assert callable(getattr(background, "lower_priority", None)), "see SuiteRenderWorker"
background.WORKER = SuiteRenderWorker()


PG_URL = worker_database_url(os.environ.get("UWS_TEST_DATABASE_URL", ""), WORKER)
"""This process's PostgreSQL database (empty: none); also its ``UWS_TEST_DATABASE_URL``."""
if PG_URL:
    os.environ["UWS_TEST_DATABASE_URL"] = PG_URL


def service_markers(item: pytest.Item) -> set[str]:
    """The markers (registered in ``pyproject.toml``) of the real services ``item`` needs.

    Worked out here rather than written on each test, so that tests added by anyone
    are marked too: ``-m "not science"`` or ``-m "not slurm and not browser"`` select
    what a developer runs locally; CI runs them all.
    """
    path = item.nodeid.split("::", 1)[0]
    module = path.rsplit("/", 1)[-1]
    name = getattr(item, "originalname", item.name).lower()
    fixtures = set(getattr(item, "fixturenames", ()))
    params = getattr(getattr(item, "callspec", None), "params", {})
    markers = set()
    if module.startswith("test_cta_"):
        markers.add("science")  # the CTA chain: ctapipe, pyirf, gammapy in job processes
    if "slurm" in name or "_need_slurm" in fixtures or module == "test_slurm.py":
        markers.add("slurm")
    if params.get("database_url") == "postgresql" or "postgres" in name:
        markers.add("postgres")
    browser_fixture = "browser" in fixtures and "browser" not in params  # not a parameter
    if module == "test_browser.py" or "chromium" in name or browser_fixture:
        markers.add("browser")
    return markers


SCIENCE_GROUPS = 3
"""How many science modules run at once under xdist (see :func:`science_groups`)."""

SCIENCE_WALL = {
    "test_cta_pipeline_api.py": 444,
    "test_provenance_subactivities.py": 155,
    "test_cta_chain.py": 112,
    "test_cta_service.py": 71,
    "test_cta_fastpath.py": 45,
}
"""Wall seconds of science modules, each alone in the coordinator's per-module run of
the old layout (load ~10): a hint for balancing the groups; a module not listed counts
``SCIENCE_WALL_DEFAULT``. Nothing breaks if it is out of date."""
SCIENCE_WALL_DEFAULT = 60


def science_groups(modules: list[str]) -> dict[str, str]:
    """``{module: xdist group}``: the science modules (the CTA stack: minutes of CPU each,
    one long module fixture) in :data:`SCIENCE_GROUPS` groups, each group's modules one
    after another on one worker, the longest first, each module to the group with the
    least wall time so far. With every worker at science at once (the first parallel run:
    six chains on 2 cores) each got a sixth of the CPU and module fixtures hit pytest's
    300-s timeout; the other workers run the tests that mostly wait."""
    load = [0.0] * SCIENCE_GROUPS
    groups: dict[str, str] = {}

    def wall(module: str) -> float:
        return SCIENCE_WALL.get(module.rsplit("/", 1)[-1], SCIENCE_WALL_DEFAULT)

    for module in sorted(modules, key=wall, reverse=True):
        g = load.index(min(load))
        load[g] += wall(module)
        groups[module] = f"science{g + 1}"
    return groups


@pytest.hookimpl(tryfirst=True)  # before xdist appends the groups to the node ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that need real services (see :func:`service_markers`), put the
    science modules in groups (:func:`science_groups`) and order the modules: science
    first (longest first: none starts last and holds up the end), then Slurm's (they mostly
    wait), then the rest in the collection's order. Under xdist (``tests/parallel.py``)
    modules and groups are handed out in this order.

    Browser tests run last: Playwright's sync API leaves greenlets behind, and a
    greenlet freed by the collector in another thread (a server's worker) has crashed
    this CPython (3.12.1) in the middle of later tests. (``scripts/run_tests.sh`` runs
    them in a process of their own.)"""
    by_module: dict[str, set[str]] = {}
    for item in items:
        for marker in sorted(service_markers(item) - {m.name for m in item.iter_markers()}):
            item.add_marker(marker)
        module = item.nodeid.split("::", 1)[0]
        by_module.setdefault(module, set()).update(m.name for m in item.iter_markers())
    groups = science_groups([m for m, marks in by_module.items() if "science" in marks])
    science = sorted(groups, key=lambda m: (groups[m], -SCIENCE_WALL.get(m.rsplit("/")[-1], 0)))
    rest = [m for m in by_module if m not in groups]
    rest.sort(key=lambda m: "slurm" not in by_module[m])
    rank = {m: i for i, m in enumerate(science + rest)}
    for item in items:
        group = groups.get(item.nodeid.split("::", 1)[0])
        if group and not any(True for _ in item.iter_markers("xdist_group")):
            item.add_marker(pytest.mark.xdist_group(group))
    items.sort(
        key=lambda item: (
            item.nodeid.startswith("tests/test_browser"),
            rank[item.nodeid.split("::", 1)[0]],
        )
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "in_process: the test's `live` server is called through WSGI, with no socket"
        " (tests that need no WAIT answered by the server layer)",
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the shared directory if this process made it (see :func:`_shared_dir`)."""
    if os.environ.get("UWS_TEST_SHARED_DIR_OWNER") == str(os.getpid()):
        shutil.rmtree(SHARED_DIR, ignore_errors=True)


def need(condition: bool, reason: str) -> None:
    """Skip when a real service is missing, but fail when the run requires services."""
    if condition:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"required service missing: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reset_postgres(url: str) -> None:
    """Drop every table the database holds, ``alembic_version`` included.

    Reflecting rather than using the service's metadata matters: a table only some
    module declares (and that was not imported in this run), or the migrations' version
    table, would otherwise survive and make the next test start from a database no
    user ever has (e.g. stamped at a revision whose tables are gone).
    """
    engine = make_engine(url)
    try:
        found = MetaData()
        found.reflect(engine)
        found.drop_all(engine)
    finally:
        engine.dispose()


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings isolated in ``tmp_path``, with the test job definitions and OPUS's."""
    jdl = tmp_path / "job_definitions"
    if not jdl.exists():
        jdl.mkdir(parents=True)
        for f in (TESTS / "data" / "jdl").glob("*.xml"):
            shutil.copy(f, jdl)
        for f in (PROJECT_ROOT / "job_definitions").glob("test_activity_*_vot.xml"):
            shutil.copy(f, jdl)
    values: dict[str, Any] = {
        "var_dir": tmp_path / "var",
        "jobs_dir": tmp_path / "var" / "jobs",
        "provenance_dir": tmp_path / "provenance_out",
        "job_definitions_dir": jdl,
        "dl3_store": tmp_path / "dl3",
        "slurm_shared_dir": tmp_path / "var" / "jobs",
        "port": free_port(),
        "threads": 64,
        "reserved_threads": 8,
        "max_wait": 30,
        "reaper_interval": 3600,
    }
    values.update(overrides)
    return load_settings(PROJECT_ROOT / "settings.yml", environ={}, **values)


@dataclass
class Client:
    """A requests session for one user; never follows redirects (tests check 303s)."""

    base: str
    token: str | None
    name: str = ""
    session: requests.Session = field(default_factory=requests.Session)

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        headers.update(extra or {})
        return headers

    def request(self, method: str, path: str, **kw: Any) -> requests.Response:
        headers = self._headers(kw.pop("headers", None))
        url = path if path.startswith("http") else self.base + path
        return self.session.request(
            method, url, headers=headers, allow_redirects=False, timeout=60, **kw
        )

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.request("POST", path, **kw)

    def delete(self, path: str, **kw: Any) -> requests.Response:
        return self.request("DELETE", path, **kw)

    def create(self, jobname: str, data: Any = None, **kw: Any) -> str:
        """Create a job; returns its path (``/rest/<jobname>/<id>``)."""
        r = self.post(f"/rest/{jobname}", data=data or {}, **kw)
        assert r.status_code == 303, (r.status_code, r.text)
        return "/rest/" + r.headers["Location"].split("/rest/", 1)[1]

    def phase(self, job: str) -> str:
        r = self.get(job + "/phase")
        assert r.status_code == 200, r.text
        return r.text

    def wait_final(self, job: str, timeout: float = 30) -> str:
        """Block with WAIT until the job is final (no polling loop of our own)."""
        deadline = time.monotonic() + timeout
        phase = self.phase(job)
        while phase in ("PENDING", "QUEUED", "EXECUTING") and time.monotonic() < deadline:
            self.get(job, params={"WAIT": 5})
            phase = self.phase(job)
        return phase


def drop_queued_hooks(service: UWSService) -> None:
    """Cancel the final hooks not yet started (the running one still ends). The queue is
    the lifecycle's private executor: an assertion fails if it is renamed."""
    hooks = getattr(service.lifecycle, "_hooks", None)
    assert isinstance(hooks, ThreadPoolExecutor), "Lifecycle._hooks changed: see LiveServer.stop"
    hooks.shutdown(wait=False, cancel_futures=True)


class LiveServer:
    """The whole service (storage, manager, routes) on the production server, in a thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.service: UWSService = build_service(settings)
        self.app = build_app(self.service)
        start_background(self.service)
        self.server = make_wsgi_server(self.app, settings, "127.0.0.1", settings.port)
        # cheroot's stop() waits for its connection manager's select() loop to see the
        # stop flag, and that loop wakes every ``expiration_interval`` (0.5 s): half a
        # second per stopped server, about a minute over the suite. A test server checks
        # more often; a production server keeps cheroot's default.
        cheroot_server = self.server._server
        assert hasattr(cheroot_server, "expiration_interval"), "cheroot renamed it: see above"
        cheroot_server.expiration_interval = STOP_POLL_INTERVAL
        self.base = f"http://127.0.0.1:{settings.port}"
        self.thread = self.server.start_in_thread()
        self.tokens: dict[str, str] = {}

    def add_user(self, name: str, admin: bool = False, roles: tuple[str, ...] = ()) -> Client:
        token = new_token()
        self.service.store.add_user(User(name, hash_token(token), admin, roles), utcnow())
        self.tokens[name] = token
        return Client(self.base, token, name)

    def client(self, name: str) -> Client:
        return Client(self.base, self.tokens[name], name)

    def stop(self, kill_manager: bool = True, finish_hooks: bool = True) -> None:
        """Stop as the service stops. ``finish_hooks=False`` (the ``live`` fixture's
        teardown) first drops the final hooks still queued (provenance renders, catalogue
        updates of ended jobs): once a test is over nobody reads what they would write,
        and the service's stop waits for every one of them (seconds each on a loaded
        machine; a test ending with a dozen jobs held its teardown for a minute)."""
        self.service.notifier.notify_all()
        self.server.stop()
        if not finish_hooks:
            drop_queued_hooks(self.service)
        stop_background(self.service)
        self.service.store.engine.dispose()


class WSGIAdapter(BaseAdapter):
    """requests' transport replaced by a call of the WSGI app (datasette's in-process
    client, for requests): the same :class:`Client` and assertions, no socket, no
    cheroot thread to start and stop. What the server layer adds (WAIT answered by the
    notifier, slow-client limits, body buffering) is not there: such tests keep
    :class:`LiveServer`."""

    def __init__(self, app: Any) -> None:
        super().__init__()
        self.app = app

    def send(self, request: requests.PreparedRequest, **_: Any) -> requests.Response:
        url = urlsplit(request.url or "")
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        if not isinstance(body, bytes):
            body = b"".join(body)  # a streamed upload
        environ: dict[str, Any] = {
            "REQUEST_METHOD": request.method or "GET",
            "PATH_INFO": unquote_to_bytes(url.path).decode("latin-1"),  # as servers do
            "QUERY_STRING": url.query,
            "SERVER_NAME": url.hostname or "localhost",
            "SERVER_PORT": str(url.port or 80),
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": url.netloc,
            "wsgi.input": io.BytesIO(body),
            "wsgi.url_scheme": url.scheme,
        }
        if body:
            environ["CONTENT_LENGTH"] = str(len(body))
        for name, value in request.headers.items():
            key = name.upper().replace("-", "_")
            if key == "CONTENT_TYPE":
                environ[key] = value
            elif key not in ("CONTENT_LENGTH", "HOST"):
                environ["HTTP_" + key] = value
        setup_testing_defaults(environ)
        chunks: list[bytes] = []
        started: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None):  # type: ignore[no-untyped-def]
            started["status"], started["headers"] = status, headers
            return chunks.append

        result = self.app(environ, start_response)
        try:
            chunks.extend(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        response = requests.Response()
        code, _, reason = started["status"].partition(" ")
        response.status_code, response.reason = int(code), reason
        headers: CaseInsensitiveDict[str] = CaseInsensitiveDict()
        for name, value in started["headers"]:
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        response.headers = headers
        response.encoding = get_encoding_from_headers(headers)
        response._content = b"".join(chunks)
        response.url, response.request = request.url or "", request
        return response

    def close(self) -> None:
        pass


class InProcessServer(LiveServer):
    """The whole service like :class:`LiveServer` (storage, manager, routes), its clients
    calling the app through :class:`WSGIAdapter` instead of a socket."""

    BASE = "http://uws.test"

    def __init__(self, settings: Settings) -> None:  # noqa: D107 - no server to start
        self.settings = settings
        self.service = build_service(settings)
        self.app = build_app(self.service)
        start_background(self.service)
        self.base = self.BASE
        self.tokens = {}

    def add_user(self, name: str, admin: bool = False, roles: tuple[str, ...] = ()) -> Client:
        super().add_user(name, admin, roles)
        return self.client(name)

    def client(self, name: str) -> Client:
        session = requests.Session()
        session.mount(self.BASE, WSGIAdapter(self.app))
        return Client(self.base, self.tokens[name], name, session)

    def stop(self, kill_manager: bool = True, finish_hooks: bool = True) -> None:
        self.service.notifier.notify_all()
        if not finish_hooks:
            drop_queued_hooks(self.service)
        stop_background(self.service)
        self.service.store.engine.dispose()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def live(settings: Settings, request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    """The service on a real server, or called in-process for tests marked
    ``in_process`` (the same clients and assertions, no socket)."""
    in_process = request.node.get_closest_marker("in_process") is not None
    server = InProcessServer(settings) if in_process else LiveServer(settings)
    server.add_user("alice")
    server.add_user("bob")
    server.add_user("root", admin=True)
    server.add_user("oper", roles=("operator",))
    yield server
    server.stop(finish_hooks=False)


@pytest.fixture
def alice(live: LiveServer) -> Client:
    return live.client("alice")


@pytest.fixture
def bob(live: LiveServer) -> Client:
    return live.client("bob")


@pytest.fixture
def admin(live: LiveServer) -> Client:
    return live.client("root")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Both storage back-ends: the same tests run on SQLite and a real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'uws.sqlite'}"
    need(
        bool(PG_URL),
        "PostgreSQL not available (set UWS_TEST_DATABASE_URL; see scripts/pg_start.sh)",
    )
    reset_postgres(PG_URL)
    return PG_URL


def insert_queued(store: Store, jobs: list[Job]) -> list[Job]:
    """Insert ``jobs`` from one thread each while the writer is busy, so that they all
    queue; returns what each insert_job returned, once every thread is done."""
    stored: list[Job] = []
    writes = store.sqlite_writes
    assert writes is not None
    with store._write_lock:
        threads = [
            threading.Thread(target=lambda j=j: stored.append(store.insert_job(j, new_job_id)))
            for j in jobs
        ]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while len(writes.queue) < len(jobs):
            assert time.monotonic() < deadline, "the inserts did not queue"
            time.sleep(0.01)
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    return stored
