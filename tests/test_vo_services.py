"""Cone search, DataLink, the data-set files and VOSI, read by pyvo, on both databases.

One small DL3 store is simulated once per module with the fast path
(``scripts/cta/simulate_dl3.py``: two 2-minute runs, a few seconds); products come from
a test job definition whose script writes a tiny sky map, so no science chain runs.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import pyvo
import requests
from astropy.io import fits
from astropy.io.votable import parse_single_table
from astropy.time import Time, TimeDelta
from cta import dl3_store as cta_dl3_store
from lxml import etree

from tests import cta_support
from tests.conftest import PG_URL, Client, LiveServer, make_settings, need, reset_postgres
from uws_server.config import PROJECT_ROOT, Settings
from uws_server.models import User
from uws_server.vo.ingest import store_did
from uws_server.vo.obscore import HC_TEV_M
from uws_server.vo.routes import catalogue_for

SOURCE = (329.717, -30.226)
MAP_SCRIPT = r"""
import json, os
import numpy as np
from astropy.io import fits
p = json.load(open("parameters.json"))
ra, dec = float(p["RA"]), float(p["Dec"])
h = fits.Header()
h.update(CTYPE1="RA---CAR", CTYPE2="DEC--CAR", CRVAL1=ra, CRVAL2=dec, CRPIX1=10.5,
         CRPIX2=10.5, CDELT1=-0.05, CDELT2=0.05, CUNIT1="deg", CUNIT2="deg")
fits.PrimaryHDU(np.arange(400.0).reshape(20, 20), header=h).writeto(os.environ["sky_map"])
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
plt.imsave(os.environ["sky_map_preview"], np.arange(400.0).reshape(20, 20))
"""
MAP_JDL = """<?xml version="1.0" encoding="UTF-8"?>
<VOTABLE xmlns="http://www.ivoa.net/xml/VOTable/v1.3" version="1.3">
  <RESOURCE ID="vo_map" name="vo_map" type="meta" utype="voprov:ActivityDescription">
    <DESCRIPTION>Writes a small sky map (a catalogued DL4 product)</DESCRIPTION>
    <PARAM name="executionDuration" value="120" datatype="int"/>
    <PARAM name="script" value="python {script}" arraysize="*" datatype="char"/>
    <GROUP name="InputParams">
      <PARAM name="obs_ids" datatype="char" arraysize="*" value=""/>
      <PARAM name="RA" datatype="double" value="329.717" unit="deg"/>
      <PARAM name="Dec" datatype="double" value="-30.226" unit="deg"/>
      <PARAM name="emin" datatype="double" value="0.5" unit="TeV"/>
      <PARAM name="emax" datatype="double" value="50" unit="TeV"/>
    </GROUP>
    <GROUP name="Generated">
      <GROUP name="sky_map" utype="voprov:WasGeneratedBy">
        <DESCRIPTION>the map</DESCRIPTION>
        <PARAM name="default" value="map.fits" arraysize="*" datatype="char"/>
        <PARAM name="content_type" value="application/fits" arraysize="*" datatype="char"/>
        <PARAM name="dataproduct_type" value="image" arraysize="*" datatype="char"/>
        <PARAM name="calib_level" value="4" datatype="int"/>
        <PARAM name="preview" value="sky_map_preview" arraysize="*" datatype="char"/>
      </GROUP>
      <GROUP name="sky_map_preview" utype="voprov:WasGeneratedBy">
        <DESCRIPTION>its picture</DESCRIPTION>
        <PARAM name="default" value="map.png" arraysize="*" datatype="char"/>
        <PARAM name="content_type" value="image/png" arraysize="*" datatype="char"/>
      </GROUP>
    </GROUP>
  </RESOURCE>
</VOTABLE>
"""


# Adds an observation to the store (as the CTA scripts do: DL3Store.add) and returns
# its file as a result (a copy: with the DL3 marker of its generated entity, the job
# becomes the store row's provenance, and no second row is made).
ADD_JDL = """<?xml version="1.0" encoding="UTF-8"?>
<VOTABLE xmlns="http://www.ivoa.net/xml/VOTable/v1.3" version="1.3">
  <RESOURCE ID="vo_add" name="vo_add" type="meta" utype="voprov:ActivityDescription">
    <DESCRIPTION>Adds an observation to the DL3 store</DESCRIPTION>
    <PARAM name="executionDuration" value="240" datatype="int"/>
    <PARAM name="script" arraysize="*" datatype="char" value='{script}'/>
    <GROUP name="InputParams">
      <PARAM name="obs_ids" datatype="char" arraysize="*" value=""/>
      <PARAM name="livetime" datatype="double" value="1"/>
      <PARAM name="RA" datatype="double" value="329.717"/>
      <PARAM name="Dec" datatype="double" value="-30.226"/>
    </GROUP>
    <GROUP name="Generated">
      <GROUP name="dl3" utype="voprov:WasGeneratedBy">
        <DESCRIPTION>the observation files</DESCRIPTION>
        <PARAM name="multiplicity" value="*" arraysize="*" datatype="char"/>
        <PARAM name="default" value="copy_*.fits.gz" arraysize="*" datatype="char"/>
        <PARAM name="content_type" value="application/fits" arraysize="*" datatype="char"/>
        <PARAM name="dataproduct_type" value="event" arraysize="*" datatype="char"/>
        <PARAM name="calib_level" value="2" datatype="int"/>
      </GROUP>
    </GROUP>
  </RESOURCE>
</VOTABLE>
"""


def simulate(store: Path, workdir: Path, **params: str) -> None:
    """Add observations to ``store`` with the gammapy fast path (outside any service)."""
    workdir.mkdir(parents=True, exist_ok=True)
    values = {"RA": str(SOURCE[0]), "Dec": str(SOURCE[1]), "n_obs": "2", "livetime": "2"}
    values.update(params)
    (workdir / "parameters.json").write_text(json.dumps(values))
    env = dict(os.environ, UWS_DL3_STORE=str(store), UWS_PARAMETERS_FILE="parameters.json")
    env["PYTHONPATH"] = cta_support.PYTHONPATH
    subprocess.run(
        cta_support.step_command("simulate_dl3"),
        cwd=workdir,
        env=env,
        check=True,
        capture_output=True,
        timeout=240,
    )


ADD_SCRIPT = r"""
import shutil, sys
from pathlib import Path
from cta.dl3_store import DL3Store
staged = DL3Store().staging_path(2001)
shutil.copyfile(sys.argv[1], staged)
added = DL3Store().add({2001: staged})
shutil.copyfile(added[2001], "copy_obs_002001.fits.gz")
"""


@pytest.fixture(scope="module")
def dl3_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A store of observations 1001 and 1002, and the file of a third one (2001) that a
    job adds later. One simulation (the fast path) for the whole module."""
    base = tmp_path_factory.mktemp("vo_store")
    simulate(base / "sim_store", base / "sim", obs_ids="1001 1002 2001", livetime="1")
    store = cta_dl3_store.DL3Store(base / "store")
    staged = {}
    for obs_id in (1001, 1002):
        staged[obs_id] = store.staging_path(obs_id)
        shutil.copyfile(base / "sim_store" / "data" / f"obs_{obs_id:06d}.fits.gz", staged[obs_id])
    store.add(staged)
    return store.root, base / "sim_store" / "data" / "obs_002001.fits.gz"


def vo_settings(tmp_path: Path, dl3_store: tuple[Path, Path], database: str) -> Settings:
    store = tmp_path / "dl3"
    shutil.copytree(dl3_store[0], store)
    overrides: dict[str, Any] = {"dl3_store": store}
    if database == "postgresql":
        need(bool(PG_URL), "PostgreSQL not available (set UWS_TEST_DATABASE_URL)")
        reset_postgres(PG_URL)
        overrides["database_url"] = PG_URL
    settings = make_settings(tmp_path, **overrides)
    jdl = settings.job_definitions_dir
    for name in ("gammapy_maps", "gammapy_spectra", "simulate_dl3"):
        shutil.copy(PROJECT_ROOT / "job_definitions" / f"{name}_vot.xml", jdl)
    script = tmp_path / "make_map.py"
    script.write_text(MAP_SCRIPT)
    (jdl / "vo_map_vot.xml").write_text(MAP_JDL.format(script=script))
    # the same observation kept private: an analysis that does not add to the store
    private = ADD_JDL.replace("vo_add", "vo_private").replace("copy_*.fits.gz", "mine.fits.gz")
    (jdl / "vo_private_vot.xml").write_text(
        private.format(script=f"cp {dl3_store[1]} mine.fits.gz")
    )
    add = tmp_path / "add_obs.py"
    add.write_text(ADD_SCRIPT)
    script = f'PYTHONPATH="$UWS_SCRIPTS_DIR:$UWS_LIB" python -P {add} {dl3_store[1]}'
    (jdl / "vo_add_vot.xml").write_text(ADD_JDL.format(script=script))
    return settings


def serve(settings: Settings) -> Iterator[LiveServer]:
    server = LiveServer(settings)
    server.add_user("alice")
    server.add_user("bob")
    server.add_user("root", admin=True)
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def vo(
    request: pytest.FixtureRequest, tmp_path: Path, dl3_store: tuple[Path, Path]
) -> Iterator[LiveServer]:
    """The service on both databases: for what the database decides (rows, visibility)."""
    yield from serve(vo_settings(tmp_path, dl3_store, request.param))


@pytest.fixture
def vo_lite(tmp_path: Path, dl3_store: tuple[Path, Path]) -> Iterator[LiveServer]:
    """SQLite only: for what does not depend on the database (errors, files, VOSI)."""
    yield from serve(vo_settings(tmp_path, dl3_store, "sqlite"))


def did(settings: Settings, obs_id: int) -> str:
    return store_did(settings, obs_id)


def run_map_job(alice: Client, obs_ids: str = "1001 1002") -> str:
    job = alice.create("vo_map", {"obs_ids": obs_ids, "PHASE": "RUN"})
    assert alice.wait_final(job, 120) == "COMPLETED", alice.get(job + "/error").text
    return job


def wait_until(condition: Any, timeout: float = 30) -> Any:
    """The job-end hook runs in the background: poll briefly for what it does."""
    import time

    deadline = time.monotonic() + timeout
    while not (value := condition()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def wait_catalogued(live: LiveServer, user: User, n: int) -> list[dict[str, Any]]:
    """The job-end hook runs in the background: wait until it catalogued ``n`` rows."""
    import time

    deadline = time.monotonic() + 30
    while True:
        rows = catalogue_for(live.service).search(user, dataproduct_type="image").rows
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


# ---------------------------------------------------------------- the store's rows


def test_store_rows_describe_their_files(vo: LiveServer) -> None:
    settings = vo.settings
    page = catalogue_for(vo.service).search(None, order_by="obs_id")
    assert [r["obs_id"] for r in page.rows] == ["1001", "1002"]
    for row in page.rows:
        path = settings.dl3_store / "data" / f"obs_{int(row['obs_id']):06d}.fits.gz"
        with fits.open(path) as hdus:
            h = hdus["EVENTS"].header
            energies = hdus["EVENTS"].data["ENERGY"]
            start = Time(h["MJDREFI"] + h["MJDREFF"], format="mjd", scale=h["TIMESYS"].lower())
        assert row["obs_publisher_did"] == did(settings, int(row["obs_id"]))
        assert row["s_ra"] == pytest.approx(h["RA_PNT"]) and row["s_dec"] == pytest.approx(
            h["DEC_PNT"]
        )
        t_min = (start + TimeDelta(h["TSTART"], format="sec")).utc.mjd
        assert row["t_min"] == pytest.approx(t_min, abs=1e-6)
        assert (row["t_max"] - row["t_min"]) * 86400 == pytest.approx(
            h["TSTOP"] - h["TSTART"], abs=1e-3
        )
        assert row["livetime"] == pytest.approx(h["LIVETIME"])
        assert row["t_exptime"] == pytest.approx(h["LIVETIME"])
        assert row["ev_xel"] == len(energies)
        assert row["energy_min"] <= energies.min() and row["energy_max"] >= energies.max()
        assert row["em_min"] == pytest.approx(HC_TEV_M / row["energy_max"])
        assert row["em_max"] == pytest.approx(HC_TEV_M / row["energy_min"])
        assert row["zen_pnt"] == pytest.approx(90 - h["ALT_PNT"])
        assert row["target_name"] == h["OBJECT"]
        assert row["facility_name"] == h["TELESCOP"] and row["instrument_name"] == h["INSTRUME"]
        assert row["dataproduct_type"] == "event" and row["calib_level"] == 2
        assert row["access_estsize"] == path.stat().st_size // 1024
        assert row["s_fov"] == pytest.approx(12.0)  # DSVAL3 CIRCLE radius 6 deg


# ---------------------------------------------------------------- cone search


def test_cone_search_with_pyvo(vo: LiveServer) -> None:
    service = pyvo.dal.SCSService(vo.base + "/scs")
    results = service.search(pos=SOURCE, radius=1.0)
    ids = sorted(str(r["obs_publisher_did"]) for r in results)
    assert ids == [did(vo.settings, 1001), did(vo.settings, 1002)]
    table = results.to_table()
    assert table["s_ra"].unit == "deg"
    assert {
        str(r["obs_publisher_did"]) for r in service.search(pos=(10.0, 10.0), radius=1)
    } == set()
    # SR=0: the columns only (what pyvo's metadata query asks)
    names = [c.name for c in service.columns]
    assert names[:1] == ["dataproduct_type"] and "distance" in names
    verb1 = vo.client("alice").get("/scs", params={"RA": 329.7, "DEC": -30.2, "SR": 1, "VERB": 1})
    t = parse_single_table(io.BytesIO(verb1.content))
    assert [f.name for f in t.fields] == ["obs_publisher_did", "s_ra", "s_dec", "distance"]
    assert [f.ucd for f in t.fields[:3]] == ["ID_MAIN", "POS_EQ_RA_MAIN", "POS_EQ_DEC_MAIN"]
    assert len(t.array) == 2 and max(t.array["distance"]) <= 1.0


CONE_ERRORS = [
    ({"DEC": "1", "SR": "1"}, "RA is missing"),
    ({"RA": "x", "DEC": "1", "SR": "1"}, "not a number"),
    ({"RA": "1", "DEC": "91", "SR": "1"}, "out of range"),
    ({"RA": "1", "DEC": "1", "SR": "-1"}, "out of range"),
    ({"RA": "1", "DEC": "1", "SR": "1", "VERB": "9"}, "VERB"),
]


def test_cone_search_errors(vo_lite: LiveServer) -> None:
    ns = {"v": "http://www.ivoa.net/xml/VOTable/v1.3"}
    for params, message in CONE_ERRORS:
        r = requests.get(vo_lite.base + "/scs", params=params, timeout=30)
        assert r.status_code == 400, params
        doc = etree.fromstring(r.content)
        error = doc.find(".//v:INFO[@name='Error']", ns)
        assert error is not None and message in error.get("value"), params
        assert doc.find(".//v:INFO[@name='QUERY_STATUS']", ns).get("value") == "ERROR"


# ---------------------------------------------------------------- DataLink


def test_datalink_links_files_and_descriptors(vo: LiveServer) -> None:
    alice = vo.client("alice")
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {alice.token}"
    ident = did(vo.settings, 1001)
    links = pyvo.dal.adhoc.DatalinkResults.from_result_url(
        f"{vo.base}/datalink?ID={quote(ident, safe='')}", session=session
    )
    by_sem: dict[str, list[Any]] = {}
    for link in links:
        assert str(link["ID"]) == ident and not link["error_message"]
        by_sem.setdefault(str(link["semantics"]), []).append(link)
    assert {"#this", "#preview", "#auxiliary", "#proc"} <= set(by_sem)
    this = session.get(str(by_sem["#this"][0]["access_url"]), timeout=30)
    store_file = vo.settings.dl3_store / "data" / "obs_001001.fits.gz"
    assert this.status_code == 200 and this.content == store_file.read_bytes()
    preview = session.get(str(by_sem["#preview"][0]["access_url"]), timeout=60)
    assert preview.status_code == 200 and preview.content[:8] == b"\x89PNG\r\n\x1a\n"
    irf = session.get(str(by_sem["#auxiliary"][0]["access_url"]), timeout=60)
    with fits.open(io.BytesIO(irf.content)) as hdus:
        assert {h.header.get("HDUCLAS2") for h in hdus[1:]} >= {"EFF_AREA", "EDISP", "BKG"}
    # a job definition taking obs_ids is a service descriptor, the observation pre-set
    procs = {str(p["service_def"]) for p in by_sem["#proc"]}
    assert {"proc_gammapy_maps", "proc_gammapy_spectra", "proc_vo_map"} <= procs
    assert "proc_simulate_dl3" not in procs  # its obs_ids are ids to create, not data
    svc = links.get_adhocservice_by_id("proc_gammapy_maps")
    access = {p.name: p.value for p in svc.params}
    assert access["accessURL"] == f"{vo.base}/rest/gammapy_maps"
    params = {p.name: p for p in svc.groups[0].entries}
    assert params["obs_ids"].value == "1001"
    assert str(params["RA"].unit) == "deg" and params["PHASE"].value == "RUN"
    # a descriptor is a job form: POSTing its parameters creates the job
    form = {name: str(p.value) for name, p in params.items() if name != "PHASE"}
    r = alice.post("/rest/vo_map", data={"obs_ids": form["obs_ids"]})
    assert r.status_code == 303


def test_datalink_unknown_and_bad_requests(vo_lite: LiveServer) -> None:
    vo = vo_lite
    links = pyvo.dal.adhoc.DatalinkResults.from_result_url(
        f"{vo.base}/datalink?ID={quote('ivo://nowhere/x?1', safe='')}"
    )
    rows = list(links)
    assert len(rows) == 1 and str(rows[0]["error_message"]).startswith("NotFoundFault")
    r = requests.get(vo.base + "/datalink", timeout=30)
    assert r.status_code == 400 and b"UsageFault" in r.content
    r = requests.get(
        vo.base + "/datalink", params={"ID": "x", "RESPONSEFORMAT": "text/csv"}, timeout=30
    )
    assert r.status_code == 400 and b"RESPONSEFORMAT must be a VOTable" in r.content
    r = requests.get(vo.base + "/datalink", params=[("ID", "x")] * 51, timeout=30)
    assert r.status_code == 400 and b"at most 50" in r.content
    r = requests.get(vo.base + "/vo/data", params={"ID": "ivo://nowhere/x?1"}, timeout=30)
    assert r.status_code == 404


# ---------------------------------------------------------------- products and isolation


def test_products_are_catalogued_and_private(
    vo: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="uws_server.vo")
    alice, bob, root = vo.client("alice"), vo.client("bob"), vo.client("root")
    job = run_map_job(alice)
    job_id = job.rsplit("/", 1)[1]
    alice_user = vo.service.store.user_by_name("alice")
    bob_user = vo.service.store.user_by_name("bob")
    rows = wait_catalogued(vo, alice_user, 1)
    assert len(rows) == 1
    # the hook's line names the job with its context (uws_server.joblog)
    said = f"job {job_id} [owner=alice definition=vo_map]: 1 data set(s) catalogued"
    assert wait_until(lambda: said in [r.getMessage() for r in caplog.records])
    row = rows[0]
    ident = row["obs_publisher_did"]
    assert ident == f"ivo://{vo.settings.vo_authority}/product?{job_id}/sky_map"
    # values from the file (WCS) and the job (parameters, progenitor observations)
    assert (row["s_xel1"], row["s_xel2"]) == (20, 20)
    assert row["s_ra"] == pytest.approx(SOURCE[0], abs=1e-6)
    assert row["s_resolution"] == pytest.approx(180.0)
    assert (row["energy_min"], row["energy_max"]) == (0.5, 50.0)
    store_rows = catalogue_for(vo.service).search(None).rows
    assert row["t_min"] == pytest.approx(min(r["t_min"] for r in store_rows))
    assert row["livetime"] == pytest.approx(sum(r["livetime"] for r in store_rows))
    assert row["obs_collection"] == "vo_map" and row["calib_level"] == 4
    # bob sees nothing of it, through any interface
    assert catalogue_for(vo.service).search(bob_user, dataproduct_type="image").total == 0
    assert catalogue_for(vo.service).get(bob_user, ident) is None
    near = {"RA": SOURCE[0], "DEC": SOURCE[1], "SR": 1, "VERB": 1}
    for client, n in ((alice, 3), (bob, 2), (root, 3)):
        t = parse_single_table(io.BytesIO(client.get("/scs", params=near).content))
        assert len(t.array) == n, client.name
    anonymous = requests.get(vo.base + "/scs", params=near, timeout=30)
    assert len(parse_single_table(io.BytesIO(anonymous.content)).array) == 2
    dl_bob = bob.get("/datalink", params={"ID": ident})
    assert b"NotFoundFault" in dl_bob.content and job_id.encode() not in dl_bob.content.replace(
        ident.encode(), b""
    )
    for path in ("/vo/data", "/vo/preview"):
        assert bob.get(path, params={"ID": ident}).status_code == 404
        assert requests.get(vo.base + path, params={"ID": ident}, timeout=30).status_code == 404
    # alice: the file, its own preview, the job, provenance and the sibling results
    links = parse_single_table(io.BytesIO(alice.get("/datalink", params={"ID": ident}).content))
    sem = {str(r["semantics"]): r for r in links.array}
    assert {"#this", "#preview", "#progenitor", "#documentation", "#auxiliary"} <= set(sem)
    data = alice.get("/vo/data", params={"ID": ident})
    assert data.content == (vo.settings.jobs_dir / job_id / "map.fits").read_bytes()
    assert data.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in data.headers["Content-Security-Policy"]
    assert data.headers["Content-Disposition"].startswith("attachment")
    preview = alice.get("/vo/preview", params={"ID": ident})
    assert preview.content == (vo.settings.jobs_dir / job_id / "map.png").read_bytes()
    assert preview.headers["Content-Type"] == "image/png"
    assert preview.headers["X-Content-Type-Options"] == "nosniff"
    prov = alice.get(str(sem["#progenitor"]["access_url"]).replace(vo.base, ""))
    assert prov.status_code == 200 and job_id in prov.text
    # deleting the job takes its row away
    assert alice.delete(job).status_code == 303
    assert catalogue_for(vo.service).get(alice_user, ident) is None


def test_a_job_adding_to_the_store_is_catalogued(vo: LiveServer) -> None:
    alice = vo.client("alice")
    job = alice.create("vo_add", {"obs_ids": "2001", "PHASE": "RUN"})
    assert alice.wait_final(job, 240) == "COMPLETED", alice.get(job + "/error").text
    ident = did(vo.settings, 2001)
    r = requests.get(vo.base + "/scs", params={"RA": SOURCE[0], "DEC": SOURCE[1], "SR": 2})
    table = parse_single_table(io.BytesIO(r.content))
    assert ident in {str(x) for x in table.array["obs_publisher_did"]}  # public, for anyone
    # its provenance is the job's (the file is its result), and there is no private twin
    root = User("root", "", is_admin=True)
    assert wait_until(
        lambda: (catalogue_for(vo.service).get_internal(root, ident) or {}).get("entity_id")
    )
    alice_user = vo.service.store.user_by_name("alice")
    assert catalogue_for(vo.service).search(alice_user, obs_ids=["2001"]).total == 1
    links = parse_single_table(io.BytesIO(alice.get("/datalink", params={"ID": ident}).content))
    progenitor = [r for r in links.array if str(r["semantics"]) == "#progenitor"]
    assert progenitor and "DIRECTION=BACK" in str(progenitor[0]["access_url"])
    made_by = [str(r["access_url"]) for r in links.array if r["semantics"] == "#documentation"]
    assert made_by == [vo.base + job]
    # bob may use the public observation, not see alice's job (POST works as GET)
    bob_links = parse_single_table(
        io.BytesIO(vo.client("bob").post("/datalink", data={"ID": ident}).content)
    )
    assert "#this" in set(bob_links.array["semantics"])
    assert not {"#documentation", "#progenitor"} & set(bob_links.array["semantics"])
    assert job.rsplit("/", 1)[1] not in vo.client("bob").get("/datalink", params={"ID": ident}).text
    # an administrator sees the job, as everywhere (common.can_read)
    root_links = parse_single_table(
        io.BytesIO(vo.client("root").get("/datalink", params={"ID": ident}).content)
    )
    assert {"#documentation", "#progenitor"} <= set(root_links.array["semantics"])


def test_a_private_dl3_product_is_its_owners(vo_lite: LiveServer) -> None:
    vo = vo_lite
    alice, bob = vo.client("alice"), vo.client("bob")
    job = alice.create("vo_private", {"obs_ids": "2001", "PHASE": "RUN"})
    assert alice.wait_final(job, 60) == "COMPLETED", alice.get(job + "/error").text
    job_id = job.rsplit("/", 1)[1]
    ident = f"ivo://{vo.settings.vo_authority}/product?{job_id}/dl3"
    alice_user = vo.service.store.user_by_name("alice")
    row = wait_until(lambda: catalogue_for(vo.service).get(alice_user, ident))
    assert row is not None and row["obs_id"] == "2001" and row["dataproduct_type"] == "event"
    with fits.open(vo.settings.jobs_dir / job_id / "mine.fits.gz") as hdus:
        assert row["ev_xel"] == hdus["EVENTS"].header["NAXIS2"]
    near = {"RA": SOURCE[0], "DEC": SOURCE[1], "SR": 2, "VERB": 1}
    seen = {
        c.name: {
            str(x)
            for x in parse_single_table(io.BytesIO(c.get("/scs", params=near).content)).array[
                "obs_publisher_did"
            ]
        }
        for c in (alice, bob)
    }
    assert ident in seen["alice"] and ident not in seen["bob"]
    assert alice.get("/vo/irf", params={"ID": ident}).status_code == 200
    assert bob.get("/vo/irf", params={"ID": ident}).status_code == 404


def _dl3_store_module() -> Any:
    return cta_dl3_store


def test_an_observation_added_outside_the_service_is_found(
    vo_lite: LiveServer, dl3_store: tuple[Path, Path]
) -> None:
    """Whatever writes the store (here a script, not a job), the next search sees it."""
    vo = vo_lite
    near = {"RA": SOURCE[0], "DEC": SOURCE[1], "SR": 2, "VERB": 1}
    before = parse_single_table(io.BytesIO(requests.get(vo.base + "/scs", params=near).content))
    assert len(before.array) == 2
    store = _dl3_store_module().DL3Store(vo.settings.dl3_store)
    staged = store.staging_path(2001)
    shutil.copyfile(dl3_store[1], staged)
    store.add({2001: staged})
    after = parse_single_table(io.BytesIO(requests.get(vo.base + "/scs", params=near).content))
    assert did(vo.settings, 2001) in {str(x) for x in after.array["obs_publisher_did"]}


def test_proprietary_period(tmp_path: Path, dl3_store: tuple[Path, Path]) -> None:
    """With dl3_proprietary_days, an observation is public only that long after its end."""
    from uws_server.db import make_engine
    from uws_server.storage.schema import create_schema
    from uws_server.vo.ingest import StoreSync
    from uws_server.vo.obscore import Catalogue

    engine = make_engine(f"sqlite:///{tmp_path / 'c.sqlite'}")
    create_schema(engine)
    catalogue = Catalogue(engine)
    for days, public in ((36500.0, False), (1.0, True)):
        settings = make_settings(
            tmp_path / str(days), dl3_store=dl3_store[0], dl3_proprietary_days=days
        )
        for ident in catalogue.dids(store=True):
            catalogue.remove(ident)
        StoreSync(settings, catalogue).sync()
        rows = catalogue.search(User("root", "", is_admin=True)).rows
        rights = "public" if public else "proprietary"
        assert len(rows) == 2 and all(r["data_rights"] == rights for r in rows)
        assert all(r["obs_release_date"] is not None for r in rows)
        assert (catalogue.search(None).total == 2) is public
        assert (catalogue.search(User("bob", "")).total == 2) is public
    engine.dispose()


def test_an_unreadable_store_index_drops_no_rows(
    tmp_path: Path, dl3_store: tuple[Path, Path]
) -> None:
    """A store that cannot be read for a moment must not empty the catalogue."""
    from uws_server.db import make_engine
    from uws_server.storage.schema import create_schema
    from uws_server.vo.ingest import StoreSync
    from uws_server.vo.obscore import Catalogue

    store = tmp_path / "dl3"
    shutil.copytree(dl3_store[0], store)
    engine = make_engine(f"sqlite:///{tmp_path / 'c.sqlite'}")
    create_schema(engine)
    catalogue = Catalogue(engine)
    sync = StoreSync(make_settings(tmp_path, dl3_store=store), catalogue)
    assert sync.sync() == 2
    (store / "hdu-index.fits.gz").write_bytes(b"not a FITS file")
    os.utime(store / "obs-index.fits.gz", (1, 1))
    with pytest.raises((OSError, ValueError)):
        sync.ensure_current()
    assert catalogue.search(None).total == 2
    for index in ("hdu-index.fits.gz", "obs-index.fits.gz"):
        (store / index).unlink()
    assert sync.sync() == 0 and catalogue.search(None).total == 2
    engine.dispose()


# ---------------------------------------------------------------- VOSI


def test_vosi_capabilities_and_availability(vo_lite: LiveServer) -> None:
    vo = vo_lite
    r = requests.get(vo.base + "/capabilities", timeout=30)
    assert r.status_code == 200
    doc = etree.fromstring(r.content)
    caps = {c.get("standardID"): c for c in doc.findall("capability")}
    for standard in (
        "ivo://ivoa.net/std/VOSI#capabilities",
        "ivo://ivoa.net/std/VOSI#availability",
        "ivo://ivoa.net/std/TAP",
        "ivo://ivoa.net/std/ConeSearch",
        "ivo://ivoa.net/std/DataLink#links-1.1",
        "ivo://ivoa.net/std/ProvSAP",
        "ivo://ivoa.net/std/UWS#rest-1.1",
    ):
        assert standard in caps, standard
    uws = [
        c.findtext("interface/accessURL")
        for c in doc.findall("capability")
        if c.get("standardID") == "ivo://ivoa.net/std/UWS#rest-1.1"
    ]
    assert f"{vo.base}/rest/gammapy_maps" in uws
    scs_url = caps["ivo://ivoa.net/std/ConeSearch"].findtext("interface/accessURL")
    assert requests.get(scs_url + "RA=1&DEC=1&SR=0", timeout=30).status_code == 200
    a = etree.fromstring(requests.get(vo.base + "/availability", timeout=30).content)
    ns = {"vosi": "http://www.ivoa.net/xml/VOSIAvailability/v1.0"}
    assert a.findtext("vosi:available", namespaces=ns) == "true"


def test_availability_says_when_the_database_does_not_answer(
    vo_lite: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    from uws_server.db import make_engine
    from uws_server.storage.store import Store

    vo_lite.service.store.ping()  # the live database answers
    (tmp_path / "a_directory").mkdir()  # not a database file: every connect fails
    gone = Store(make_engine(f"sqlite:///{tmp_path}/a_directory"))
    with pytest.raises(OperationalError):
        gone.ping()
    monkeypatch.setattr(vo_lite.service.store, "ping", gone.ping)
    a = etree.fromstring(requests.get(vo_lite.base + "/availability", timeout=30).content)
    ns = {"vosi": "http://www.ivoa.net/xml/VOSIAvailability/v1.0"}
    assert a.findtext("vosi:available", namespaces=ns) == "false"
    assert a.findtext("vosi:note", namespaces=ns) == "database unavailable: OperationalError"
