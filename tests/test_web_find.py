"""The "Find data" page over HTTP: search, paging, sorting, isolation, errors, and the
analyse link that pre-fills a job form (and the job forms' obs_ids picker table).

The DL3 store is small and real (GADF files written with astropy, indexed by the
project's own ``DL3Store``); its observations and alice's and bob's job products are
catalogued through :class:`~uws_server.vo.obscore.Catalogue`. No science runs here: the
browser test (``test_browser.py``) runs a job on ticked observations.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
import requests
from cta import dl3_store

from tests.conftest import PG_URL, Client, LiveServer, make_settings, need, reset_postgres
from tests.test_web import csrf_of, field_error, sign_in
from uws_server.config import PROJECT_ROOT
from uws_server.vo.ingest import store_did
from uws_server.vo.obscore import Catalogue
from uws_server.vo.routes import catalogue_for
from uws_server.web.find_query import date_of_mjd, mjd_of, parse_date, parse_query
from uws_server.web.forms import ObsChoice, build_fields, split_ids

CRAB = (83.633, 22.015)
PKS = (329.717, -30.226)


# Observations of the store: (obs_id, target, (ra, dec) of the pointing, start, livetime
# in minutes, altitude). Two targets far apart, spread over two years.
OBSERVATIONS = [
    (1001, "Crab", (83.133, 22.015), datetime(2024, 1, 10, 1, 0, 30), 28.0, 70.0),
    (1002, "Crab", (84.233, 22.015), datetime(2024, 1, 11, 1, 0, 30), 30.0, 65.0),
    (1003, "Crab", (83.633, 22.515), datetime(2024, 1, 12, 1, 0, 30), 25.0, 60.0),
    (2001, "PKS 2155-304", (329.717, -29.726), datetime(2025, 8, 20, 3, 0, 30), 15.0, 80.0),
    (2002, "PKS 2155-304", (329.717, -30.726), datetime(2025, 8, 21, 3, 0, 30), 20.0, 75.0),
]


def write_observation(
    path: Path,
    obs_id: int,
    target: str,
    pointing: tuple[float, float],
    start: datetime,
    minutes: float,
    alt: float,
) -> None:
    """A minimal GADF observation (EVENTS and GTI) the store indexes like any other."""
    from astropy.io import fits
    from astropy.time import Time

    ref = Time(dl3_store.STORE_MJDREFI + dl3_store.STORE_MJDREFF, format="mjd", scale="tt")
    tstart = float((Time(start, scale="utc") - ref).sec)
    tstop = tstart + minutes * 60
    n = 5
    events = fits.BinTableHDU.from_columns(
        [
            fits.Column("EVENT_ID", "K", array=np.arange(n)),
            fits.Column("TIME", "D", array=np.linspace(tstart, tstop, n), unit="s"),
            fits.Column("RA", "E", array=np.full(n, pointing[0]), unit="deg"),
            fits.Column("DEC", "E", array=np.full(n, pointing[1]), unit="deg"),
            fits.Column("ENERGY", "E", array=np.geomspace(0.1, 50, n), unit="TeV"),
        ],
        name="EVENTS",
    )
    events.header.update(
        {
            "HDUCLASS": "GADF",
            "HDUCLAS1": "EVENTS",
            "OBS_ID": obs_id,
            "RA_PNT": pointing[0],
            "DEC_PNT": pointing[1],
            "ALT_PNT": alt,
            "AZ_PNT": 180.0,
            "ONTIME": minutes * 60,
            "LIVETIME": minutes * 60 * 0.95,
            "DEADC": 0.95,
            "TSTART": tstart,
            "TSTOP": tstop,
            "MJDREFI": dl3_store.STORE_MJDREFI,
            "MJDREFF": dl3_store.STORE_MJDREFF,
            "TIMESYS": "TT",
            "TIMEUNIT": "s",
            "OBJECT": target,
            "TELESCOP": "CTA",
            "N_TELS": 4,
        }
    )
    gti = fits.BinTableHDU.from_columns(
        [
            fits.Column("START", "D", array=[tstart], unit="s"),
            fits.Column("STOP", "D", array=[tstop], unit="s"),
        ],
        name="GTI",
    )
    gti.header.update({"HDUCLASS": "GADF", "HDUCLAS1": "GTI"})
    fits.HDUList([fits.PrimaryHDU(), events, gti]).writeto(path, overwrite=True)


def build_store(root: Path) -> None:
    store = dl3_store.DL3Store(root)
    staged = {}
    for obs_id, target, pointing, start, minutes, alt in OBSERVATIONS:
        path = store.staging_path(obs_id)
        write_observation(path, obs_id, target, pointing, start, minutes, alt)
        staged[obs_id] = path
    store.add(staged)


def product_row(
    owner: str, job_id: str, jobname: str, name: str, ra: float, dec: float, path: Path, **kw: Any
) -> dict[str, Any]:
    return {
        "obs_publisher_did": f"ivo://test.uws/products?{owner}/{name}",
        "obs_id": f"{owner}job/{name}",
        "obs_collection": jobname,
        "dataproduct_type": "image",
        "calib_level": 3,
        "target_name": f"{owner}'s map",
        "s_ra": ra,
        "s_dec": dec,
        "t_min": mjd_of(datetime(2024, 1, 10)),
        "t_max": mjd_of(datetime(2024, 1, 12)),
        "owner": owner,
        "job_id": job_id,
        "access_format": "application/fits",
        "file_path": str(path),
        **kw,
    }


def start_site(root: Path, **settings: Any) -> LiveServer:
    """The service over a small store, with alice's and bob's products catalogued."""
    build_store(root / "dl3")
    live = LiveServer(
        make_settings(root, job_definitions_dir=PROJECT_ROOT / "job_definitions", **settings)
    )
    try:
        for name in ("alice", "bob"):
            live.add_user(name)
        live.add_user("root", admin=True)
        # the store's observations are catalogued by the service itself (from their
        # headers); alice's and bob's products are rows of real (pending) jobs of theirs
        cat = catalogue_for(live.service)
        products = []
        for owner in ("alice", "bob"):
            job = live.client(owner).create("gammapy_maps", {"obs_ids": "1001"})
            job_id = job.rsplit("/", 1)[1]
            folder = live.settings.jobs_dir / job_id
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "count_map.fits").write_bytes(f"SIMPLE  = {owner}'s map".encode())
            products.append(
                product_row(
                    owner, job_id, "gammapy_maps", "count_map", *CRAB, folder / "count_map.fits"
                )
            )
        cat.add_or_update_many(
            [
                *products,
                # a store observation released later: nobody but an admin sees it yet
                {
                    "obs_publisher_did": store_did(live.settings, 9999),
                    "obs_id": "9999",
                    "obs_collection": "CTA-DL3",
                    "dataproduct_type": "event",
                    "calib_level": 2,
                    "s_ra": 10.0,
                    "s_dec": 10.0,
                    "obs_release_date": datetime(2099, 1, 1),
                },
            ]
        )
    except BaseException:
        live.stop()
        raise
    return live


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_site(Path(tmp_path_factory.mktemp("find")))
    yield live
    live.stop()


@pytest.fixture(scope="module")
def alice_web(site: LiveServer) -> requests.Session:
    return sign_in(site, "alice")


@pytest.fixture(scope="module")
def bob_web(site: LiveServer) -> requests.Session:
    return sign_in(site, "bob")


def find(s: requests.Session, site: LiveServer, **params: Any) -> requests.Response:
    return s.get(site.base + "/ui/find", params=params, allow_redirects=False)


def result_ids(html: str) -> list[str]:
    return re.findall(r'<tr data-did="[^"]*" data-obs-id="([^"]*)"', html)


def tickable(html: str) -> list[str]:
    return re.findall(r'name="obs_id" value="([^"]*)"', html)


def cells(html: str, obs_id: str) -> list[str]:
    row = re.search(rf'data-obs-id="{re.escape(obs_id)}".*?</tr>', html, re.S).group(0)
    return [
        unescape(re.sub(r"<[^>]+>", "", c)).strip()
        for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    ]


# ------------------------------------------------------------------------- unit level
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-10", 60319.0),
        ("2024-01-10T12:00", 60319.5),
        ("2024-01-10 06:00:00", 60319.25),
        ("60319.5", 60319.5),
    ],
)
def test_dates_become_mjd(text: str, expected: float) -> None:
    assert parse_date(text) == pytest.approx(expected)
    assert date_of_mjd(parse_date(text)).startswith("2024-01-10")


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"ra": "400", "dec": "0"}, "ra", "RA must be from 0 to 360, not 400"),
        ({"ra": "10", "dec": "-91"}, "dec", "Dec must be from -90 to 90, not -91"),
        ({"ra": "ten", "dec": "0"}, "ra", "RA: 'ten' is not a number"),
        ({"ra": "10", "dec": "0", "radius": "-1"}, "radius", "Radius must be from 0 to 180"),
        ({"ra": "10"}, "dec", "give both RA and Dec"),
        ({"radius": "3"}, "radius", "a radius needs a position"),
        ({"date_min": "yesterday"}, "date_min", "'yesterday' is not a date"),
        ({"date_min": "2024-13-40"}, "date_min", "'2024-13-40' is not a valid date"),
        ({"date_min": "2025-01-01", "date_max": "2024-01-01"}, "date_max", "before the start"),
        ({"energy_min": "abc"}, "energy_min", "'abc' is not a number"),
        ({"energy_min": "10", "energy_max": "1"}, "energy_max", "below the minimum"),
        ({"energy_max": "nan"}, "energy_max", "not a finite number"),
        ({"type": "movie"}, "type", "unknown data product type 'movie'"),
        ({"level": "7"}, "level", "calibration level must be 0 to 4"),
    ],
)
def test_bad_input_is_a_field_error(params: dict[str, str], field: str, message: str) -> None:
    q = parse_query(params)
    assert message in q.errors[field], q.errors


def test_picker_keeps_ticks_and_typed_ids() -> None:
    assert split_ids("1001 1002, 42-44 0999 1001", {"1001", "1002", "999"}) == (
        ["1001", "1002", "999"],
        "42-44",
    )
    from uws_server.jdl.votable import read_votable  # the real definition

    defn = read_votable((PROJECT_ROOT / "job_definitions" / "gammapy_maps_vot.xml").read_bytes())
    choices = [ObsChoice(1001, "Crab", "2024-01-10 01:00", "26.6 min", "20.0"), 1002]
    fields = build_fields(defn, {"obs_ids": "1001 77"}, {}, choices, 3)
    f = next(f for f in fields if f.name == "obs_ids")
    assert f.widget == "observations" and f.ticked == {"1001"} and f.value == "77"
    assert [r.obs_id for r in f.rows] == [1001, 1002] and f.more == 3


# ------------------------------------------------------------------------- HTTP level
def test_find_page_lists_what_the_user_may_see(site: LiveServer, alice_web, bob_web) -> None:
    r = find(alice_web, site)
    assert r.status_code == 200
    assert 'id="find-form"' in r.text and 'id="nav-find"' in r.text
    ids = result_ids(r.text)
    assert sorted(ids) == sorted(["1001", "1002", "1003", "2001", "2002", "alicejob/count_map"])
    assert "bobjob/count_map" not in r.text and "9999" not in ids  # bob's, unreleased
    bob_ids = result_ids(find(bob_web, site).text)
    assert "bobjob/count_map" in bob_ids and "alicejob/count_map" not in bob_ids
    # alice's product cannot be reached by bob by any per-row link either
    did = "ivo://test.uws/products?alice/count_map"
    for route in ("file", "links", "preview", "provenance"):
        res = bob_web.get(site.base + f"/ui/find/{route}", params={"did": did})
        assert res.status_code == 404, (route, res.status_code)
        assert "no data set" in res.text and "alice&#039;s map" not in res.text  # as unknown
    res = alice_web.get(site.base + "/ui/find/file", params={"did": did})
    assert res.status_code == 200 and res.content == b"SIMPLE  = alice's map"
    assert "attachment" in res.headers["Content-Disposition"]
    root = sign_in(site, "root")
    assert "9999" in result_ids(find(root, site).text)  # admins see everything


def test_cone_search_by_position_and_by_target_name(site: LiveServer, alice_web) -> None:
    r = find(alice_web, site, ra=CRAB[0], dec=CRAB[1], radius=1, type="event")
    assert r.status_code == 200
    assert sorted(result_ids(r.text)) == ["1001", "1002", "1003"]
    assert tickable(r.text) == result_ids(r.text)
    row = cells(r.text, "1002")
    # obs id, target, date, livetime, zenith, offset, type
    assert row[1:8] == [
        "1002",
        "Crab",
        "2024-01-11 01:00",
        "28.5 min",
        "25.0°",
        "0.556°",
        "event L2",
    ]
    # the name box resolves against the catalogue's own targets (no network)
    by_name = find(alice_web, site, target="pks 2155", radius=1)
    assert by_name.status_code == 200
    assert "PKS 2155-304 → RA 329.7170°, Dec -30.2260°" in unescape(by_name.text)
    assert sorted(result_ids(by_name.text)) == ["2001", "2002"]
    unknown = find(alice_web, site, target="Vela")
    assert unknown.status_code == 400
    assert "no target named 'Vela' in the catalogue" in field_error(unknown.text, "target")


def test_time_energy_type_level_collection_filters(site: LiveServer, alice_web) -> None:
    r = find(alice_web, site, date_min="2025-01-01", date_max="2025-12-31")
    assert sorted(result_ids(r.text)) == ["2001", "2002"]
    r = find(alice_web, site, date_min="60319.5", date_max="60320.2", type="event")  # MJD too
    assert result_ids(r.text) == ["1002"]
    r = find(alice_web, site, level="3")
    assert result_ids(r.text) == ["alicejob/count_map"]
    assert tickable(r.text) == []  # a product is not a store observation
    r = find(alice_web, site, collection="gammapy_maps", type="image")
    assert result_ids(r.text) == ["alicejob/count_map"]
    r = find(alice_web, site, energy_min="60")  # above every data set's energy range
    assert result_ids(r.text) == [] and 'id="no-results"' in r.text
    r = find(alice_web, site, obs_ids="1003, 2001")
    assert sorted(result_ids(r.text)) == ["1003", "2001"]


def test_sorting_and_paging(site: LiveServer, alice_web) -> None:
    r = find(alice_web, site, type="event", sort="date")
    assert result_ids(r.text) == ["1001", "1002", "1003", "2001", "2002"]
    r = find(alice_web, site, type="event", sort="date", desc="1")
    assert result_ids(r.text) == ["2002", "2001", "1003", "1002", "1001"]
    r = find(alice_web, site, type="event", sort="zenith")
    assert result_ids(r.text) == ["2001", "2002", "1001", "1002", "1003"]
    r = find(alice_web, site, type="event", sort="livetime", desc="1")
    assert result_ids(r.text)[0] == "1002"
    r = find(alice_web, site, ra=CRAB[0], dec=CRAB[1], radius=2, sort="offset")
    assert result_ids(r.text) == ["alicejob/count_map", "1001", "1003", "1002"]
    # the header link flips the order of the current sort column
    header = re.search(r'<a href="([^"]+)" data-sort="date">', unescape(r.text)).group(1)
    assert parse_qs(urlsplit(header).query)["sort"] == ["date"]
    # a catalogue of more rows pages: add 23 public rows far away, then walk the pages
    cat = Catalogue(site.service.store)
    cat.add_or_update_many(
        [
            {
                "obs_publisher_did": f"ivo://test.uws/cta?page/{i}",
                "obs_id": f"p{i:02d}",
                "obs_collection": "paging",
                "dataproduct_type": "event",
                "calib_level": 2,
                "target_name": "Field",
                "s_ra": 180.0,
                "s_dec": 0.0,
                "t_min": 59000.0 + i,
                "t_max": 59000.1 + i,
            }
            for i in range(23)
        ]
    )
    try:
        walked: list[str] = []
        link = "/ui/find?collection=paging&per=10"
        for page in (1, 2, 3):
            r = alice_web.get(site.base + link)
            assert f"page {page} of 3" in r.text, r.text
            walked += result_ids(r.text)
            nxt = re.search(r'<a href="([^"]+)" rel="next"', r.text)
            if page < 3:
                link = unescape(nxt.group(1))
            else:
                assert nxt is None
        assert walked == [f"p{i:02d}" for i in range(23)]
        r = find(alice_web, site, collection="paging", per="10", page="3", desc="1")
        assert result_ids(r.text) == ["p02", "p01", "p00"]
    finally:
        for i in range(23):
            cat.remove(f"ivo://test.uws/cta?page/{i}")


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"ra": "500", "dec": "0"}, "ra", "RA must be from 0 to 360, not 500"),
        (
            {"ra": "10", "dec": "0", "radius": "-2"},
            "radius",
            "Radius must be from 0 to 180, not -2",
        ),
        ({"date_min": "last tuesday"}, "date_min", "'last tuesday' is not a date"),
        ({"date_max": "2024-02-30"}, "date_max", "'2024-02-30' is not a valid date"),
        ({"page": "two"}, "page", "'two' is not a page number"),
    ],
)
def test_bad_input_shows_a_clear_message_not_a_500(
    site: LiveServer, alice_web, params: dict[str, str], field: str, message: str
) -> None:
    r = find(alice_web, site, **params)
    assert r.status_code == 400
    assert "text/html" in r.headers["Content-Type"]
    assert 'id="find-errors"' in r.text and message in unescape(r.text)
    # the values typed come back in the form, escaped
    for name, value in params.items():
        if name != "page":
            assert f'value="{value}"' in r.text


def test_utf8_values_come_back_intact(site: LiveServer, alice_web) -> None:
    r = find(alice_web, site, target="Ωmega Cen")
    assert r.status_code == 400
    assert "no target named 'Ωmega Cen' in the catalogue" in unescape(r.text)
    assert 'value="Ωmega Cen"' in r.text
    raw = alice_web.get(site.base + "/ui/find?target=%FF%FE", allow_redirects=False)
    assert raw.status_code == 400 and "UTF-8" in raw.text


def test_typed_values_are_escaped(site: LiveServer, alice_web) -> None:
    r = find(alice_web, site, target='<script>alert("x")</script>')
    assert r.status_code == 400
    assert "<script>alert" not in r.text and "&lt;script&gt;" in r.text


def test_analyse_link_prefills_the_job_form(site: LiveServer, alice_web) -> None:
    r = find(alice_web, site, ra=PKS[0], dec=PKS[1], radius=1)
    buttons = re.findall(r'name="jobname" value="([^"]+)"', r.text)
    # the definitions with a required obs_ids parameter, found from their parameters
    assert buttons == ["gammapy_3d_fit", "gammapy_lightcurve", "gammapy_maps", "gammapy_spectra"]
    assert 'name="ra" value="329.717"' in r.text and 'name="dec" value="-30.226"' in r.text
    go = alice_web.get(
        site.base + "/ui/find/analyse",
        params=[
            ("jobname", "gammapy_spectra"),
            ("obs_id", "2001"),
            ("obs_id", "2002"),
            ("ra", "329.717"),
            ("dec", "-30.226"),
        ],
        allow_redirects=False,
    )
    assert go.status_code == 303
    target = go.headers["Location"]
    assert target.startswith("/ui/submit/gammapy_spectra?")
    assert parse_qs(urlsplit(target).query) == {
        "obs_ids": ["2001 2002"],
        "RA": ["329.717"],
        "Dec": ["-30.226"],
    }
    form = alice_web.get(site.base + target)
    assert form.status_code == 200
    html = form.text
    # the picker is a table with metadata, the two observations ticked
    assert re.search(r'name="pick.obs_ids" value="2001" id="[^"]+" checked', html)
    assert re.search(r'name="pick.obs_ids" value="2002" id="[^"]+" checked', html)
    assert not re.search(r'name="pick.obs_ids" value="1001" id="[^"]+" checked', html)
    assert "2025-08-20 03:00" in html and "PKS 2155-304" in html and "14.2 min" in html
    assert re.search(r'id="f-RA" name="RA" value="329.717"', html)
    assert re.search(r'id="f-Dec" name="Dec" value="-30.226"', html)
    # a validation error keeps the ticks (and the typed extra ids)
    bad = alice_web.post(
        site.base + "/ui/submit/gammapy_spectra",
        data=[
            ("_csrf", csrf_of(html)),
            ("pick.obs_ids", "2001"),
            ("pick.obs_ids", "2002"),
            ("obs_ids", "1003"),
            ("RA", "329.717"),
            ("Dec", "-30.226"),
            ("nbins", "0"),
            ("_action", "create"),
        ],
        allow_redirects=False,
    )
    assert bad.status_code == 400
    assert field_error(bad.text, "nbins")
    for obs_id in ("2001", "2002", "1003"):
        assert re.search(rf'name="pick.obs_ids" value="{obs_id}" id="[^"]+" checked', bad.text)
    # and the corrected form creates a job on exactly those observations
    ok = alice_web.post(
        site.base + "/ui/submit/gammapy_spectra",
        data=[
            ("_csrf", csrf_of(bad.text)),
            ("pick.obs_ids", "2001"),
            ("pick.obs_ids", "2002"),
            ("RA", "329.717"),
            ("Dec", "-30.226"),
            ("_action", "create"),
        ],
        allow_redirects=False,
    )
    assert ok.status_code == 303, ok.text[:300]
    job_id = ok.headers["Location"].split("?")[0].rsplit("/", 1)[1]
    client = Client(site.base, site.tokens["alice"])
    assert client.get(f"/rest/gammapy_spectra/{job_id}/parameters/obs_ids").text == "2001 2002"
    assert client.get(f"/rest/gammapy_spectra/{job_id}/parameters/RA").text == "329.717"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ([("jobname", "gammapy_maps")], "tick at least one observation"),
        ([("jobname", "simulate_dl3"), ("obs_id", "1001")], "does not analyse observations"),
        ([("jobname", "gammapy_maps"), ("obs_id", "10x")], "'10x' is not an observation id"),
        ([("jobname", "gammapy_maps"), ("obs_id", "1001"), ("ra", "999")], "ra must be from"),
        ([("jobname", "gammapy_maps"), ("obs_id", "4242")], "no observation 4242 in the DL3"),
        # released later: not offered to alice, so not analysable from here either
        ([("jobname", "gammapy_maps"), ("obs_id", "9999")], "no observation 9999 in the DL3"),
    ],
)
def test_analyse_refuses_bad_requests(site: LiveServer, alice_web, params, message) -> None:
    r = alice_web.get(site.base + "/ui/find/analyse", params=params, allow_redirects=False)
    assert r.status_code == 400 and message in unescape(r.text)


def test_dataset_page_and_adql_box(site: LiveServer, alice_web, bob_web) -> None:
    did = store_did(site.settings, 2001)
    r = alice_web.get(site.base + "/ui/find/links", params={"did": did})
    assert r.status_code == 200
    assert (
        "PKS 2155-304" in r.text
        and "/datalink?ID=ivo%3A%2F%2Fuws-server.example%2Fcta%3F2001" in r.text
    )
    assert 'id="link-download"' in r.text
    f = alice_web.get(site.base + "/ui/find/file", params={"did": did})
    assert (
        f.status_code == 200
        and f.content == (site.settings.dl3_store / "data" / "obs_002001.fits.gz").read_bytes()
    )
    r = alice_web.get(site.base + "/ui/find/links", params={"did": "ivo://nope"})
    assert r.status_code == 404
    query = "SELECT obs_id, target_name FROM ivoa.obscore WHERE obs_collection = 'gammapy_maps'"
    a = alice_web.get(site.base + "/ui/find/adql", params={"query": query})
    b = bob_web.get(site.base + "/ui/find/adql", params={"query": query})
    assert a.status_code == b.status_code == 200, a.text[:2000]
    assert "alicejob/count_map" in a.text and "bobjob" not in a.text
    assert "bobjob/count_map" in b.text and "alicejob" not in b.text
    bad = alice_web.get(site.base + "/ui/find/adql", params={"query": "SELECT * FROM users"})
    assert bad.status_code == 400 and 'id="adql-error"' in bad.text
    drop = alice_web.get(site.base + "/ui/find/adql", params={"query": "DROP TABLE obscore"})
    assert drop.status_code == 400


def test_picker_on_a_job_form_without_search(site: LiveServer, alice_web) -> None:
    r = alice_web.get(site.base + "/ui/submit/gammapy_maps")
    assert r.status_code == 200
    offered = re.findall(r'name="pick.obs_ids" value="(\d+)"', r.text)
    assert offered == ["2002", "2001", "1003", "1002", "1001"]  # newest first
    assert "9999" not in offered  # unreleased
    row = re.search(r'<tr data-obs-id="1001".*?</tr>', r.text, re.S).group(0)
    assert "Crab" in row and "2024-01-10 01:00" in row and "26.6 min" in row and "20.0°" in row


def test_preview_and_provenance_links(site: LiveServer, alice_web) -> None:
    did = store_did(site.settings, 1001)
    r = alice_web.get(site.base + "/ui/find/preview", params={"did": did})
    assert r.status_code == 200, r.text[:500]
    assert r.headers["Content-Type"] == "image/png" and r.content[:8] == b"\x89PNG\r\n\x1a\n"
    # a store file no job of this service made has no provenance: said, not a 500
    r = alice_web.get(site.base + "/ui/find/provenance", params={"did": did})
    assert r.status_code == 404 and "has no recorded provenance" in unescape(r.text)
    r = alice_web.get(site.base + "/ui/find/preview", params={"did": ""})
    assert r.status_code == 400 and "give the data set" in r.text


def test_find_on_postgresql(tmp_path: Path) -> None:
    """The page's own queries (collections, per-row ids, the picker) on PostgreSQL too."""
    need(bool(PG_URL), "PostgreSQL not available (set UWS_TEST_DATABASE_URL)")
    reset_postgres(PG_URL)
    live = start_site(tmp_path, database_url=PG_URL)
    try:
        alice, bob = sign_in(live, "alice"), sign_in(live, "bob")
        r = find(alice, live, ra=CRAB[0], dec=CRAB[1], radius=2, sort="offset")
        assert r.status_code == 200, r.text[:500]
        assert result_ids(r.text) == ["alicejob/count_map", "1001", "1003", "1002"]
        assert '<option value="gammapy_maps" >' in r.text  # alice's collection
        r = find(bob, live, collection="gammapy_maps")
        assert result_ids(r.text) == ["bobjob/count_map"]
        form = alice.get(live.base + "/ui/submit/gammapy_maps?obs_ids=2001")
        assert re.findall(r'name="pick.obs_ids" value="(\d+)"', form.text) == [
            "2002",
            "2001",
            "1003",
            "1002",
            "1001",
        ]
        assert re.search(r'name="pick.obs_ids" value="2001" id="[^"]+" checked', form.text)
        go = alice.get(
            live.base + "/ui/find/analyse",
            params=[("jobname", "gammapy_maps"), ("obs_id", "1001")],
            allow_redirects=False,
        )
        assert go.status_code == 303
    finally:
        live.stop()
