"""TAP 1.1 at /tap, read by real clients: pyvo (sync and async) and STILTS taplint.

One live server per database (SQLite and PostgreSQL with pgSphere) for the module,
with a small catalogue: released public rows, unreleased ones (admins only) and
alice's products (alice and admins only). Expected answers are worked out here from
the rows themselves (great-circle distances), never written down.
"""

from __future__ import annotations

import logging
import math
import shutil
import subprocess
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import pyvo
import requests
from sqlalchemy import text

from tests.conftest import PG_URL, LiveServer, make_settings, need, reset_postgres
from uws_server.auth import hash_token, new_token
from uws_server.common import utcnow
from uws_server.models import User
from uws_server.vo.adql import ADQLError
from uws_server.vo.obscore import OBSCORE_COLUMN_NAMES, Catalogue, angular_distance
from uws_server.vo.tap_async import TAP_JOBNAME
from uws_server.vo.tap_query import QueryExecutor

CRAB = (83.633, 22.0145)
TOKENS: dict[str, str] = {}


def _rows() -> list[dict[str, object]]:
    """Public rows on a grid around the sky and near the Crab; unreleased ones and
    alice's products near the Crab too."""
    rows: list[dict[str, object]] = []
    future = utcnow() + timedelta(days=365)
    n = 0

    def row(ra: float, dec: float, **extra: object) -> None:
        nonlocal n
        n += 1
        rows.append(
            {
                "obs_publisher_did": f"ivo://test/cta?{n}",
                "obs_id": str(n),
                "obs_collection": "CTA-DL3",
                "dataproduct_type": "event",
                "calib_level": 2,
                "target_name": "Crab" if abs(ra - CRAB[0]) < 5 else "field",
                "s_ra": ra,
                "s_dec": dec,
                "t_min": 59000.0 + n,
                "t_max": 59000.01 + n,
                **extra,
            }
        )

    for k in range(40):  # around the Crab, 0 to 4 degrees away
        ang, rad = 2 * math.pi * k / 40, 4.0 * k / 40
        row(CRAB[0] + rad * math.cos(ang) / math.cos(math.radians(CRAB[1])),
            CRAB[1] + rad * math.sin(ang))  # fmt: skip
    for ra in range(0, 360, 30):
        for dec in (-60, -30, 0, 30, 60):
            row(float(ra), float(dec))
    for k in range(5):
        row(CRAB[0] + 0.1 * k, CRAB[1], obs_release_date=future)
    for k in range(6):
        row(CRAB[0], CRAB[1] + 0.2 * k, owner="alice", calib_level=3,
            obs_collection="gammapy_maps", dataproduct_type="image")  # fmt: skip
    return rows


ROWS = _rows()


def _visible(user: str | None) -> list[dict[str, object]]:
    now = utcnow()
    out = []
    for r in ROWS:
        released = r.get("owner") is None and (
            r.get("obs_release_date") is None or r["obs_release_date"] <= now  # type: ignore[operator]
        )
        if user == "root" or released or (user is not None and r.get("owner") == user):
            out.append(r)
    return out


def _cone(user: str | None, ra: float, dec: float, radius: float) -> set[str]:
    return {
        str(r["obs_id"])
        for r in _visible(user)
        if angular_distance(ra, dec, r["s_ra"], r["s_dec"]) <= radius  # type: ignore[arg-type]
    }


class Tap:
    """A live server with the catalogue, and clients for it."""

    def __init__(self, live: LiveServer, db: str) -> None:
        self.live = live
        self.db = db
        self.base = live.base
        self.url = live.base + "/tap"

    def session(self, user: str | None) -> requests.Session:
        s = requests.Session()
        if user is not None:
            s.headers["Authorization"] = f"Bearer {self.live.tokens[user]}"
        return s

    def service(self, user: str | None = None) -> pyvo.dal.TAPService:
        return pyvo.dal.TAPService(self.url, session=self.session(user))

    def sync(self, user: str | None, **params: str) -> requests.Response:
        return self.session(user).post(self.url + "/sync", data=params, timeout=60)


def _start(tmp: Path, database_url: str | None, db: str) -> Tap:
    overrides = {"database_url": database_url} if database_url else {}
    live = LiveServer(make_settings(tmp, **overrides))
    for name, admin in (("alice", False), ("bob", False), ("root", True)):
        token = new_token()
        live.service.store.add_user(User(name, hash_token(token), admin), utcnow())
        live.tokens[name] = token
    Catalogue(live.service.store.engine).add_or_update_many([dict(r) for r in ROWS])
    return Tap(live, db)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def tap(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tap]:
    tmp = tmp_path_factory.mktemp(f"tap-{request.param}")
    url = None
    if request.param == "postgresql":
        need(bool(PG_URL), "PostgreSQL not available (set UWS_TEST_DATABASE_URL)")
        reset_postgres(PG_URL)
        url = PG_URL
    server = _start(tmp, url, request.param)
    if request.param == "postgresql":
        ok, note = QueryExecutor(server.live.service.store.engine).available()
        if not ok:
            server.live.stop()
        need(ok, f"pgSphere in the test database: {note} (scripts/pg_start.sh enables it)")
    yield server
    server.live.stop()


# ----------------------------------------------------------------------- pyvo sync


@pytest.mark.parametrize("user", [None, "bob", "alice", "root"])
def test_pyvo_sync_cone_sees_only_visible_rows(tap: Tap, user: str | None) -> None:
    query = (
        "SELECT obs_id, s_ra, s_dec FROM ivoa.obscore WHERE "
        f"CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', {CRAB[0]}, {CRAB[1]}, 1.5)) = 1"
    )
    table = tap.service(user).run_sync(query).to_table()
    got = {str(v) for v in table["obs_id"]}
    assert got == _cone(user, CRAB[0], CRAB[1], 1.5)
    assert len(got) > 5
    assert table["s_ra"].unit == "deg"


def test_pyvo_sync_distance_order_top_and_formats(tap: Tap) -> None:
    ra, dec = CRAB[0] + 1.0, CRAB[1] - 0.5
    query = (
        "SELECT TOP 7 obs_id, DISTANCE(POINT('ICRS', s_ra, s_dec), POINT('ICRS', "
        f"{ra}, {dec})) AS dist FROM ivoa.obscore ORDER BY dist"
    )
    table = tap.service().run_sync(query).to_table()
    expected = sorted(
        (angular_distance(ra, dec, r["s_ra"], r["s_dec"]), str(r["obs_id"]))  # type: ignore[arg-type]
        for r in _visible(None)
    )[:7]
    assert [str(v) for v in table["obs_id"]] == [o for _, o in expected]
    for got, (want, _) in zip(table["dist"], expected, strict=True):
        assert abs(float(got) - want) < 1e-6
    csv = tap.sync(None, LANG="ADQL", QUERY=query, RESPONSEFORMAT="csv")
    assert csv.status_code == 200 and csv.headers["Content-Type"].startswith("text/csv")
    assert csv.text.splitlines()[0] == "obs_id,dist" and len(csv.text.splitlines()) == 8
    js = tap.sync(None, LANG="ADQL", QUERY=query, RESPONSEFORMAT="application/json").json()
    assert [m["name"] for m in js["metadata"]] == ["obs_id", "dist"]
    assert [row[0] for row in js["data"]] == [o for _, o in expected]


def test_maxrec_overflow(tap: Tap) -> None:
    results = tap.service().run_sync("SELECT obs_id FROM ivoa.obscore", maxrec=3)
    assert len(results) == 3
    assert results.query_status == "OVERFLOW"
    r = tap.sync(None, LANG="ADQL", QUERY="SELECT TOP 2 obs_id FROM ivoa.obscore", MAXREC="5")
    assert 'value="OVERFLOW"' not in r.text and r.text.count("<TR>") == 2
    hard = tap.live.settings.tap_maxrec_hard
    r = tap.sync(None, LANG="ADQL", QUERY="SELECT obs_id FROM ivoa.obscore", MAXREC=str(hard * 10))
    assert r.status_code == 200 and r.text.count("<TR>") == len(_visible(None))


def test_tap_schema_describes_published_columns_only(tap: Tap) -> None:
    svc = tap.service()
    cols = svc.run_sync(
        "SELECT column_name, datatype, unit FROM TAP_SCHEMA.columns "
        "WHERE table_name = 'ivoa.obscore' ORDER BY column_index"
    ).to_table()
    names = [str(n).strip('"') for n in cols["column_name"]]
    assert names == list(OBSCORE_COLUMN_NAMES)
    assert not {"owner", "job_id", "file_path", "pos_x"} & set(names)
    tables = {str(t) for t in svc.run_sync("SELECT table_name FROM TAP_SCHEMA.tables").to_table()[
        "table_name"]}  # fmt: skip
    assert tables == {
        "ivoa.obscore", "TAP_SCHEMA.schemas", "TAP_SCHEMA.tables", "TAP_SCHEMA.columns",
        "TAP_SCHEMA.keys", "TAP_SCHEMA.key_columns",
    }  # fmt: skip
    # pyvo reads /tap/tables into the same columns
    vosi = svc.tables["ivoa.obscore"]
    assert [c.name.strip('"') for c in vosi.columns] == list(OBSCORE_COLUMN_NAMES)


# ---------------------------------------------------------------------- pyvo async


def test_pyvo_async_job_is_a_uws_job_of_its_owner(tap: Tap) -> None:
    query = (
        "SELECT obs_id FROM ivoa.obscore WHERE "
        f"1 = CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', {CRAB[0]}, {CRAB[1]}, 1.2))"
    )
    table = tap.service("alice").run_async(query, timeout=60).to_table()
    assert {str(v) for v in table["obs_id"]} == _cone("alice", CRAB[0], CRAB[1], 1.2)

    job = tap.service("alice").submit_job(query, maxrec=2)
    job.run()
    job.wait(phases=["COMPLETED", "ERROR", "ABORTED"], timeout=60)
    assert job.phase == "COMPLETED"
    result = job.fetch_result()
    assert len(result) == 2 and result.query_status == "OVERFLOW"
    assert job.owner == "alice"
    # the job list, the owner's only; bob gets a 404 for alice's job
    alice_list = tap.session("alice").get(tap.url + "/async", timeout=30).text
    assert job.job_id in alice_list
    assert job.job_id not in tap.session("bob").get(tap.url + "/async", timeout=30).text
    assert tap.session("bob").get(job.url, timeout=30).status_code == 404
    assert tap.session("bob").get(job.url + "/results/result", timeout=30).status_code == 404
    # WAIT on a final job answers at once; DELETE removes it
    r = tap.session("alice").get(job.url, params={"WAIT": "5"}, timeout=30)
    assert "<uws:phase>COMPLETED</uws:phase>" in r.text
    url = job.url
    job.delete()
    assert tap.session("alice").get(url, timeout=30).status_code == 404


def test_async_bob_never_sees_alice_products(tap: Tap) -> None:
    query = "SELECT obs_id, obs_collection FROM ivoa.obscore WHERE calib_level = 3"
    mine = tap.service("alice").run_async(query, timeout=60).to_table()
    assert {str(v) for v in mine["obs_collection"]} == {"gammapy_maps"} and len(mine) == 6
    theirs = tap.service("bob").run_async(query, timeout=60).to_table()
    assert len(theirs) == 0
    anonymous = tap.service().run_sync(query).to_table()
    assert len(anonymous) == 0


def test_async_bad_query_ends_in_error_with_the_reason(
    tap: Tap, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="uws_server.tap")
    job = tap.service("bob").submit_job("SELECT owner FROM ivoa.obscore")
    job.run()
    job.wait(phases=["COMPLETED", "ERROR", "ABORTED"], timeout=60)
    assert job.phase == "ERROR"
    error = tap.session("bob").get(job.url + "/error", timeout=30)
    assert 'value="ERROR"' in error.text and "owner" in error.text
    # the job's log lines carry its context, like every job's (uws_server.joblog)
    lines = [r.getMessage() for r in caplog.records if getattr(r, "job_id", "") == job.job_id]
    prefix = f"job {job.job_id} [owner=bob definition={TAP_JOBNAME}]: "
    assert prefix + "TAP query job created" in lines
    assert any(line.startswith(prefix + "TAP query refused: ") for line in lines), lines


# ------------------------------------------------------------------ refused queries

REFUSED = [
    ("SELECT * FROM jobs", "schema"),
    ("SELECT name, token_hash FROM public.users", "unknown table"),
    ("SELECT * FROM main.obscore", "unknown table"),
    ("SELECT usename FROM pg_catalog.pg_user", "unknown table"),
    ("SELECT owner FROM ivoa.obscore", "unknown column 'owner'"),
    ("SELECT o.file_path FROM ivoa.obscore AS o", "unknown column 'file_path'"),
    ("SELECT obs_id FROM ivoa.obscore WHERE job_id IS NOT NULL", "unknown column 'job_id'"),
    ("DELETE FROM ivoa.obscore", "syntax error"),
    ("INSERT INTO ivoa.obscore (obs_id) VALUES ('x')", "syntax error"),
    ("DROP TABLE jobs", "syntax error"),
    ("UPDATE ivoa.obscore SET obs_id = 'x'", "syntax error"),
    ("SELECT obs_id FROM ivoa.obscore; DROP TABLE jobs", "one statement"),
    ("SELECT obs_id FROM ivoa.obscore; SELECT * FROM users", "one statement"),
    ("SELECT obs_id FROM ivoa.obscore UNION SELECT name FROM users", "schema"),
    ("SELECT pg_sleep(10) FROM ivoa.obscore", "syntax error"),
    ("SELECT obs_id FROM ivoa.obscore WHERE obs_id = 'x' OR 1=1 --'", "syntax error"),
    ("SELEKT obs_id FROM ivoa.obscore", "syntax error"),
    ("", "QUERY is missing"),
]


@pytest.mark.parametrize(("query", "reason"), REFUSED)
def test_refused_query_is_a_400_saying_why(tap: Tap, query: str, reason: str) -> None:
    r = tap.sync("alice", LANG="ADQL", QUERY=query)
    assert r.status_code == 400, r.text
    assert r.headers["Content-Type"].startswith("application/x-votable+xml")
    assert '<INFO name="QUERY_STATUS" value="ERROR">' in r.text
    assert reason.lower() in r.text.lower(), r.text
    # nothing was changed: the service's own tables are all there
    with tap.live.service.store.engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM users")).scalar_one() == 3
        assert conn.execute(text("SELECT COUNT(*) FROM obscore")).scalar_one() == len(ROWS)


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"LANG": "SQL", "QUERY": "SELECT 1"}, "LANG"),
        ({"LANG": "ADQL", "QUERY": "SELECT obs_id FROM ivoa.obscore", "MAXREC": "x"}, "MAXREC"),
        ({"LANG": "ADQL", "QUERY": "SELECT obs_id FROM ivoa.obscore", "MAXREC": "-1"}, "MAXREC"),
        (
            {"LANG": "ADQL", "QUERY": "SELECT obs_id FROM ivoa.obscore", "RESPONSEFORMAT": "fits"},
            "RESPONSEFORMAT",
        ),
        (
            {"LANG": "ADQL", "QUERY": "SELECT obs_id FROM ivoa.obscore", "UPLOAD": "t,http://x/"},
            "UPLOAD",
        ),
        ({"REQUEST": "getCapabilities", "LANG": "ADQL", "QUERY": "SELECT 1"}, "REQUEST"),
    ],  # fmt: skip
)
def test_refused_parameters_are_a_400_saying_why(tap: Tap, params: dict, reason: str) -> None:
    r = tap.sync(None, **params)
    assert r.status_code == 400
    assert 'value="ERROR"' in r.text and reason in r.text


def test_database_refuses_writes_and_other_tables_even_past_the_parser(tap: Tap) -> None:
    """The second line: SQL that never went through the ADQL checks still cannot write
    (both databases), nor, on SQLite (its authorizer), read a table that is not published.
    On PostgreSQL only the parser's table check keeps other tables out."""
    executor = QueryExecutor(tap.live.service.store.engine)
    deadline = 1e18
    statements = ["DELETE FROM obscore", "DROP TABLE jobs", "UPDATE users SET is_admin = true"]
    if tap.db == "sqlite":
        statements += ["SELECT name FROM users", "SELECT load_extension('x')"]
    for sql in statements:
        with pytest.raises(ADQLError):
            if tap.db == "sqlite":
                executor._run_sqlite(sql, 10, deadline, 5, None)
            else:
                executor._run_postgresql(sql, 10, 5)
    with tap.live.service.store.engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM obscore")).scalar_one() == len(ROWS)
        assert conn.execute(text("SELECT COUNT(*) FROM users WHERE is_admin")).scalar_one() == 1


def test_time_limit_stops_a_long_query(tap: Tap) -> None:
    executor = QueryExecutor(tap.live.service.store.engine)
    query = (
        "SELECT COUNT(*) FROM TAP_SCHEMA.columns AS a, TAP_SCHEMA.columns AS b, "
        "TAP_SCHEMA.columns AS c, TAP_SCHEMA.columns AS d WHERE a.column_name < d.column_name"
    )
    with pytest.raises(ADQLError, match="time limit"):
        executor.run(query, None, 10, timeout=0.2)


# ------------------------------------------------------------------ geometry agrees


GEOMETRY = [
    "SELECT obs_id FROM ivoa.obscore WHERE 1 = INTERSECTS(CIRCLE('ICRS', s_ra, s_dec, 0.5), "
    f"POLYGON('ICRS', {CRAB[0] - 2}, {CRAB[1] - 1}, {CRAB[0] + 2}, {CRAB[1] - 1}, "
    f"{CRAB[0]}, {CRAB[1] + 3}))",
    "SELECT obs_id FROM ivoa.obscore WHERE 1 = CONTAINS(POINT('ICRS', s_ra, s_dec), "
    f"BOX('ICRS', {CRAB[0]}, {CRAB[1]}, 4, 2))",
    "SELECT obs_id FROM ivoa.obscore WHERE 1 = CONTAINS(POINT('ICRS', s_ra, s_dec), "
    "POLYGON('ICRS', 340, -70, 20, -70, 0, -20))",
    "SELECT obs_id FROM ivoa.obscore WHERE DISTANCE(POINT('ICRS', s_ra, s_dec), "
    "POINT('ICRS', 359.5, 0)) < 31",
]


@pytest.mark.parametrize("query", GEOMETRY)
def test_geometry_answers_match_the_rows(tap: Tap, query: str) -> None:
    """BOX, POLYGON, INTERSECTS, DISTANCE: the same rows on SQLite (registered functions)
    as on PostgreSQL (pgSphere), checked against the positions here."""
    got = {str(v) for v in tap.service().run_sync(query).to_table()["obs_id"]}
    rows = _visible(None)
    if "BOX" in query:  # 4 x 2 degrees centred on the Crab (pgSphere: corner to corner)
        cos = 1.0
        want = {
            str(r["obs_id"]) for r in rows
            if abs(r["s_ra"] - CRAB[0]) * cos <= 2 and abs(r["s_dec"] - CRAB[1]) <= 1  # type: ignore[operator]
        }  # fmt: skip
    elif "DISTANCE" in query:
        want = {
            str(r["obs_id"]) for r in rows
            if angular_distance(359.5, 0, r["s_ra"], r["s_dec"]) < 31  # type: ignore[arg-type]
        }  # fmt: skip
    elif "340, -70" in query:
        want = {str(r["obs_id"]) for r in rows if r["s_dec"] in (-60.0, -30.0) and r["s_ra"] == 0}
    else:
        want = None
    if want is not None:
        assert got == want
    assert got, "the query should select rows"


# ------------------------------------------------------------------------- taplint


TAPLINT_STAGES = "TMV TME TMS TMC CPV CAP AVV QGE QPO QAS UWS MDQ OBS"


def test_taplint_reports_no_error_or_failure(tap: Tap) -> None:
    """STILTS taplint, every stage of the notes, against this database's service."""
    stilts = shutil.which("stilts")
    need(stilts is not None, "STILTS (Debian package stilts) is not installed")
    assert stilts is not None
    out = subprocess.run(
        [stilts, "taplint", f"tapurl={tap.url}", "report=EFS", f"stages={TAPLINT_STAGES}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    bad = [line for line in out.stdout.splitlines() if line.startswith(("E-", "F-"))]
    assert not bad, "\n".join(bad)
    assert "Totals: Errors: 0" in out.stdout and "Failures: 0" in out.stdout, out.stdout[-2000:]
    assert "Section UWS" in out.stdout and "Section OBS" in out.stdout
    # the ObsCore stage ran (capabilities declare the data model): every mandatory column
    assert "columns: 30/30 required" in out.stdout, out.stdout[-2000:]


def test_vosi_documents(tap: Tap) -> None:
    caps = requests.get(tap.url + "/capabilities", timeout=30).text
    assert 'standardID="ivo://ivoa.net/std/TAP"' in caps and "<alias>csv</alias>" in caps
    assert f'<hard unit="row">{tap.live.settings.tap_maxrec_hard}</hard>' in caps
    assert "uploadMethod" not in caps  # UPLOAD is not offered
    assert 'ivo-id="ivo://ivoa.net/std/ObsCore#core-1.1"' in caps
    avail = requests.get(tap.url + "/availability", timeout=30).text
    assert "<vosi:available>true</vosi:available>" in avail


def test_release_date_is_respected_at_query_time(tap: Tap) -> None:
    unreleased = {str(r["obs_id"]) for r in ROWS if r.get("obs_release_date")}
    query = "SELECT obs_id FROM ivoa.obscore WHERE t_min > 0"
    for user, sees in ((None, False), ("bob", False), ("root", True)):
        got = {str(v) for v in tap.service(user).run_sync(query).to_table()["obs_id"]}
        assert (unreleased <= got) is sees
    assert datetime.now() > datetime(2000, 1, 1)


def test_cone_band_holds_every_point_of_the_cone() -> None:
    """The RA range added next to a cone never drops a point of it (random cones and
    points near their edges, exact distances)."""
    from uws_server.vo.adql import ra_range

    rng = __import__("random").Random(7)
    checked = 0
    for _ in range(20000):
        ra0, dec0, r = rng.uniform(0, 360), rng.uniform(-88, 88), rng.uniform(0.001, 30)
        band = ra_range(ra0, dec0, r)
        if band is None:
            continue
        ra = ra0 + rng.uniform(-1.5, 1.5) * (band[1] - band[0]) / 2
        dec = dec0 + rng.uniform(-1.1, 1.1) * r
        if abs(dec) > 90 or angular_distance(ra0, dec0, ra % 360, dec) > r:
            continue
        checked += 1
        assert band[0] <= ra <= band[1], (ra0, dec0, r, ra, dec)
    assert checked > 1000


def test_sll_parse_gives_the_translation_of_ll() -> None:
    """The SLL parse (adql._SLLTranslator, the processors' SLL parsers) relies on
    queryparser's internals: it must give exactly what queryparser's own LL parse gives
    (one dialect: an LL parse costs seconds; the other's processor is checked to be SLL)."""
    from uws_server.vo import adql

    dialect = "sqlite"

    query = (
        "SELECT TOP 5 o.obs_id FROM ivoa.obscore AS o "
        "WHERE CONTAINS(POINT('ICRS', o.s_ra, o.s_dec), CIRCLE('ICRS', 1, 2, 3)) = 1"
    )
    fast_sql, fast = adql._translate(query, dialect, fast=True)
    slow_sql, slow = adql._translate(query, dialect, fast=False)
    assert isinstance(fast.parser, type) and fast.parser.__name__.startswith("SLL")
    assert fast_sql == slow_sql
    for attr in ("tables", "columns", "functions", "display_columns"):
        assert sorted(map(str, getattr(fast, attr))) == sorted(map(str, getattr(slow, attr)))
    _, pg = adql._translate(query, "postgresql", fast=True)
    assert pg.parser.__name__ == "SLLPostgreSQLParser" and pg.tables == fast.tables
