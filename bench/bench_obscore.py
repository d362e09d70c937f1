"""ObsTAP on a 100,000-observation catalogue: TAP sync cone p50, cone search (SCS) p50,
async TAP per job, and the ratio against the same rows fetched by bare SQL, on SQLite
and on PostgreSQL (pgSphere), in the same run.

The catalogue is generated (seeded, so every run has the same rows): CTA-like pointings,
60% along the Galactic plane (inner Galaxy favoured, |b| of a few degrees) and 40% on
300 extragalactic targets, each observation a 0.7 degree wobble around its target,
28-minute runs over 2026-2030, from the southern site below dec -20, the northern one
above +20, either between. The rows go in through the catalogue's own writer
(:meth:`Catalogue.add_or_update_many`), then the service starts as an operator starts it
(``python -m uws_server serve``, its own process) and is queried over HTTP by one client.

Measured per database:
- ``tap_sync``: POST /tap/sync with an ADQL cone (CONTAINS/POINT/CIRCLE, radius 1 deg,
  every published column) at a different position each time; first query (the ADQL
  parse of a new query shape) reported apart;
- ``bare_sql``: the same cone as SQLAlchemy Core (the catalogue's visibility rule and
  portable cone condition), executed and fetched in this process: no HTTP, no ADQL,
  no VOTable; the same rows (checked by count);
- ``scs``: GET /scs?RA&DEC&SR with the same cones;
- ``tap_async``: POST /tap/async?PHASE=RUN, blocking WAIT until it is final, GET the
  result, per job.

Usage:
  .venv/bin/python bench/bench_obscore.py [--rows 100000] [--queries 200]
      [--pg-url postgresql+psycopg://uws@127.0.0.1:55432/uws_f] [--skip-sqlite]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import requests
from sqlalchemy import Select, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import add_user, log, service_env, start_service  # noqa: E402
from uws_server.db import make_engine, metadata  # noqa: E402
from uws_server.models import User  # noqa: E402
from uws_server.storage.schema import create_schema  # noqa: E402
from uws_server.vo.adql import ra_range  # noqa: E402
from uws_server.vo.obscore import (  # noqa: E402
    HC_TEV_M,
    PUBLISHED_COLUMNS,
    Catalogue,
    cone_condition,
    obscore,
    visible_to,
)

RADIUS = 1.0
SITES = {"CTA-South": -24.6, "CTA-North": 28.8}


def galactic_to_icrs(l_deg: float, b_deg: float) -> tuple[float, float]:
    """Galactic (l, b) to ICRS (ra, dec), degrees (the IAU 1958 pole and node)."""
    ra_gp, dec_gp, l_ncp = math.radians(192.85948), math.radians(27.12825), math.radians(122.93192)
    lr, br = math.radians(l_deg), math.radians(b_deg)
    sin_dec = math.sin(br) * math.sin(dec_gp) + math.cos(br) * math.cos(dec_gp) * math.cos(
        l_ncp - lr
    )
    dec = math.asin(max(-1.0, min(1.0, sin_dec)))
    y = math.cos(br) * math.sin(l_ncp - lr)
    x = math.sin(br) * math.cos(dec_gp) - math.cos(br) * math.sin(dec_gp) * math.cos(l_ncp - lr)
    ra = (math.atan2(y, x) + ra_gp) % (2 * math.pi)
    return math.degrees(ra), math.degrees(dec)


def generate(n: int, seed: int = 12) -> list[dict[str, object]]:
    """``n`` CTA-like DL3 observation rows (see the module's text)."""
    rng = random.Random(seed)
    galactic = []
    for _ in range(400):  # Galactic sources: inner Galaxy favoured
        gl = max(-180.0, min(180.0, rng.gauss(0, 45)))
        ra, dec = galactic_to_icrs(gl, rng.gauss(0, 1.5))
        galactic.append((f"HESS J{ra / 15:04.1f}{dec:+05.1f}", ra, dec))
    extragalactic = []
    for k in range(300):
        dec = math.degrees(math.asin(rng.uniform(-0.98, 0.94)))
        extragalactic.append((f"AGN {k:03d}", rng.uniform(0, 360), dec))
    released = datetime(2026, 1, 1)
    rows = []
    for i in range(1, n + 1):
        name, ra0, dec0 = rng.choice(galactic if rng.random() < 0.6 else extragalactic)
        angle = rng.choice((0, 90, 180, 270)) + rng.gauss(0, 3)
        off = 0.7 + rng.gauss(0, 0.02)
        dec = max(-89.9, min(89.9, dec0 + off * math.sin(math.radians(angle))))
        ra = ra0 + off * math.cos(math.radians(angle)) / max(0.05, math.cos(math.radians(dec)))
        ra %= 360
        site = "CTA-South" if dec < -20 else "CTA-North" if dec > 20 else rng.choice(list(SITES))
        zenith = min(65.0, abs(dec - SITES[site]) + abs(rng.gauss(0, 10)))
        t_min = 61041.0 + rng.uniform(0, 1460)
        ontime = 1680.0
        e_min, e_max = (0.02 if site == "CTA-North" else 0.03) * (1 + zenith / 30), 300.0
        rows.append(
            {
                "obs_publisher_did": f"ivo://bench.example/cta?{i}",
                "obs_id": str(i),
                "obs_collection": "CTA-DL3",
                "dataproduct_type": "event",
                "calib_level": 2,
                "target_name": name,
                "s_ra": ra,
                "s_dec": dec,
                "s_fov": 10.0,
                "s_region": f"CIRCLE ICRS {ra:.5f} {dec:.5f} 5.0",
                "s_resolution": 180.0,
                "s_xel1": 0,
                "s_xel2": 0,
                "t_min": t_min,
                "t_max": t_min + ontime / 86400,
                "t_exptime": ontime * 0.94,
                "t_resolution": 1e-6,
                "t_xel": 0,
                "em_min": HC_TEV_M / e_max,
                "em_max": HC_TEV_M / e_min,
                "em_res_power": 10.0,
                "em_xel": 0,
                "o_ucd": "phot.count",
                "pol_states": "",
                "pol_xel": 0,
                "facility_name": "CTA",
                "instrument_name": site,
                "access_url": f"http://bench.example/vo/data?ID=ivo://bench.example/cta?{i}",
                "access_format": "application/fits",
                "access_estsize": rng.randint(20000, 200000),
                "obs_release_date": released + timedelta(days=rng.uniform(0, 300)),
                "energy_min": e_min,
                "energy_max": e_max,
                "ev_xel": rng.randint(10**5, 10**6),
                "zen_pnt": zenith,
                "alt_pnt": 90 - zenith,
                "az_pnt": rng.uniform(0, 360),
                "livetime": ontime * 0.94,
                "ontime": ontime,
                "n_tels": rng.choice((4, 9, 13, 25)),
                "irf_name": f"prod5-{site.split('-')[1].lower()}-20deg",
                "proposal_id": f"CTA-{rng.randint(1, 400):04d}",
                "data_rights": "public",
            }
        )
    return rows


def cones(rows: list[dict[str, object]], n: int, seed: int = 5) -> list[tuple[float, float]]:
    """Cone centres near observed pointings (a search that finds data)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        r = rng.choice(rows)
        out.append(
            (
                (float(r["s_ra"]) + rng.uniform(-0.5, 0.5)) % 360,  # type: ignore[arg-type]
                max(-89.0, min(89.0, float(r["s_dec"]) + rng.uniform(-0.5, 0.5))),  # type: ignore[arg-type]
            )
        )
    return out


def adql(ra: float, dec: float) -> str:
    return (
        "SELECT * FROM ivoa.obscore WHERE CONTAINS(POINT('ICRS', s_ra, s_dec), "
        f"CIRCLE('ICRS', {ra:.6f}, {dec:.6f}, {RADIUS})) = 1"
    )


def bare_cone(user: User, ra: float, dec: float) -> Select:
    """The same rows without TAP: the catalogue's visibility rule and portable cone (dec
    band and unit-vector test), with the RA range TAP's translation also adds."""
    stmt = select(*PUBLISHED_COLUMNS).where(visible_to(user), cone_condition(ra, dec, RADIUS))
    ras = ra_range(ra, dec, RADIUS)
    if ras is not None:
        stmt = stmt.where(obscore.c.s_ra.between(*ras))
    return stmt


def p50_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def run_database(
    label: str, url: str, workdir: Path, rows: list[dict[str, object]], nq: int
) -> dict[str, object]:
    engine = make_engine(url)
    metadata.drop_all(engine)
    with engine.begin() as conn:  # the migrations' stamp too: create_schema starts afresh
        conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    create_schema(engine)
    env = service_env(workdir, tap_maxrec_default="100000")
    env["UWS_DATABASE_URL"] = url
    token = add_user(env, "bench")
    # Rows in after the start: the service's first sync of its (empty) DL3 store would
    # drop store rows it has no file for.
    server = start_service(env, workdir / f"service-{label}.log")
    t0 = time.perf_counter()
    catalogue = Catalogue(engine)
    for k in range(0, len(rows), 5000):
        catalogue.add_or_update_many(rows[k : k + 5000])
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE obscore")
    log(f"{label}: {len(rows)} rows loaded in {time.perf_counter() - t0:.1f} s", "obscore")
    base = f"http://127.0.0.1:{env['UWS_PORT']}"
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {token}"
    user = User("bench", "")
    positions = cones(rows, nq)
    out: dict[str, object] = {"database": label, "rows": len(rows), "queries": nq}
    try:
        # the first query of this shape: the ADQL parser runs once
        t = time.perf_counter()
        r = http.post(base + "/tap/sync", data={"LANG": "ADQL", "QUERY": adql(*positions[0])})
        out["tap_first_ms"] = (time.perf_counter() - t) * 1000
        assert r.status_code == 200, r.text[:500]

        tap, bare, scs, counts = [], [], [], []
        bare_stmt = [bare_cone(user, ra, dec) for ra, dec in positions]
        for (ra, dec), stmt in zip(positions, bare_stmt, strict=True):
            t = time.perf_counter()
            r = http.post(base + "/tap/sync", data={"LANG": "ADQL", "QUERY": adql(ra, dec)})
            tap.append(time.perf_counter() - t)
            assert r.status_code == 200, r.text[:500]
            n_tap = r.text.count("<TR>")
            t = time.perf_counter()
            with engine.connect() as conn:
                got = conn.execute(stmt).fetchall()
            bare.append(time.perf_counter() - t)
            assert len(got) == n_tap, (ra, dec, len(got), n_tap)
            counts.append(n_tap)
            t = time.perf_counter()
            r = http.get(base + "/scs", params={"RA": ra, "DEC": dec, "SR": RADIUS})
            scs.append(time.perf_counter() - t)
            if r.status_code == 404:
                scs = []
            else:
                assert r.status_code == 200, r.text[:300]
        out.update(
            tap_sync_p50_ms=p50_ms(tap),
            tap_sync_p90_ms=sorted(tap)[int(0.9 * len(tap))] * 1000,
            bare_sql_p50_ms=p50_ms(bare),
            tap_over_bare=p50_ms(tap) / p50_ms(bare),
            rows_per_cone_median=statistics.median(counts),
            scs_p50_ms=p50_ms(scs) if scs else None,
        )

        jobs = []
        for ra, dec in positions[: max(5, nq // 10)]:
            t = time.perf_counter()
            r = http.post(
                base + "/tap/async",
                data={"LANG": "ADQL", "QUERY": adql(ra, dec), "PHASE": "RUN"},
                allow_redirects=False,
            )
            job = r.headers["Location"]
            phase = ""
            while phase not in ("COMPLETED", "ERROR", "ABORTED"):
                doc = http.get(job, params={"WAIT": "30"}).text
                phase = doc.split("<uws:phase>", 1)[1].split("<", 1)[0]
            assert phase == "COMPLETED", doc[:500]
            result = http.get(job + "/results/result")
            assert result.status_code == 200
            jobs.append(time.perf_counter() - t)
        out["tap_async_per_job_ms"] = p50_ms(jobs)
    finally:
        server.terminate()
        server.wait(timeout=30)
        engine.dispose()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--pg-url", default="")
    ap.add_argument("--skip-sqlite", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = ap.parse_args()
    t = time.perf_counter()
    rows = generate(args.rows)
    log(f"generated {len(rows)} observations in {time.perf_counter() - t:.1f} s", "obscore")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-obscore-", delete=not args.keep) as tmp:
        if not args.skip_sqlite:
            work = Path(tmp) / "sqlite"
            work.mkdir()
            url = f"sqlite:///{work / 'var' / 'uws.sqlite'}"
            results.append(run_database("sqlite", url, work, rows, args.queries))
        if args.pg_url:
            work = Path(tmp) / "postgresql"
            work.mkdir()
            results.append(run_database("postgresql", args.pg_url, work, rows, args.queries))
    for r in results:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
