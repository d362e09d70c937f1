"""The ObsCore catalogue: its columns, the visibility rule and the search (both databases)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from uws_server.db import jobs, make_engine
from uws_server.models import User
from uws_server.storage.schema import create_schema
from uws_server.vo.obscore import (
    HC_TEV_M,
    INTERNAL_COLUMNS,
    OBSCORE_COLUMN_NAMES,
    OBSCORE_COLUMNS,
    Catalogue,
    SearchError,
    angular_distance,
    energy_to_wavelength,
    obscore,
)

ALICE = User("alice", "h1")
BOB = User("bob", "h2")
ROOT = User("root", "h3", is_admin=True)

OBSCORE_11_MANDATORY = (
    "dataproduct_type calib_level target_name obs_id obs_collection obs_publisher_did "
    "access_url access_format access_estsize s_ra s_dec s_fov s_region s_resolution s_xel1 "
    "s_xel2 t_min t_max t_exptime t_resolution t_xel em_min em_max em_res_power em_xel o_ucd "
    "pol_states pol_xel facility_name instrument_name"
).split()


def row(did: str, ra: float, dec: float, **kw: Any) -> dict[str, Any]:
    base = {
        "obs_publisher_did": did,
        "obs_id": did.rsplit("?", 1)[-1],
        "obs_collection": "CTA-DL3",
        "dataproduct_type": "event",
        "calib_level": 2,
        "target_name": "Crab",
        "s_ra": ra,
        "s_dec": dec,
        "t_min": 60000.0,
        "t_max": 60000.02,
        "energy_min": 0.1,
        "energy_max": 100.0,
    }
    base.update(kw)
    return base


@pytest.fixture
def cat(database_url: str) -> Iterator[Catalogue]:
    engine = make_engine(database_url)
    create_schema(engine)
    catalogue = Catalogue(engine)
    now = datetime(2026, 1, 1)
    with engine.begin() as conn:  # the job alice's product comes from (rows follow their job)
        conn.execute(
            jobs.insert().values(
                job_id="a1", jobname="gammapy_maps", owner="alice", phase="COMPLETED",
                creation_time=now, destruction_time=datetime(2999, 1, 1),
                execution_duration=0, parameters="{}", version=0,
            )
        )  # fmt: skip
    future = datetime(2999, 1, 1)
    catalogue.add_or_update_many(
        [
            row("ivo://t/cta?1", 83.63, 22.01),
            row("ivo://t/cta?2", 84.13, 22.01, t_min=60010.0, t_max=60010.02),
            row("ivo://t/cta?3", 329.72, -30.23, target_name="PKS 2155-304", energy_min=1.0),
            row("ivo://t/cta?4", 83.63, 22.51, obs_release_date=future),  # not yet public
            row(
                "ivo://t/job?a1",
                83.7,
                22.0,
                owner="alice",
                job_id="a1",
                dataproduct_type="image",
                calib_level=4,
                obs_collection="gammapy_maps",
            ),
            row("ivo://t/cta?5", 359.9, 0.0, target_name="wrap"),
        ]
    )
    yield catalogue
    engine.dispose()


def dids(page: Any) -> list[str]:
    return [r["obs_publisher_did"] for r in page.rows]


def test_columns_cover_obscore_11_and_nothing_internal_is_published() -> None:
    names = set(OBSCORE_COLUMN_NAMES)
    assert set(OBSCORE_11_MANDATORY) <= names
    assert not names & set(INTERNAL_COLUMNS)
    assert {c.name for c in obscore.columns} == names | set(INTERNAL_COLUMNS)
    units = {c.name: c.unit for c in OBSCORE_COLUMNS}
    assert units["em_min"] == "m" and units["t_min"] == "d" and units["s_ra"] == "deg"
    assert units["energy_min"] == "TeV"
    ucds = {c.name: c.ucd for c in OBSCORE_COLUMNS}
    assert ucds["s_ra"] == "pos.eq.ra" and ucds["obs_publisher_did"] == "meta.ref.ivoid"
    assert all(
        c.utype.startswith("obscore:") for c in OBSCORE_COLUMNS if c.name in OBSCORE_11_MANDATORY
    )
    assert energy_to_wavelength(1.0) == pytest.approx(HC_TEV_M)
    from astropy.io.votable.ucd import check_ucd

    bad = [c.name for c in OBSCORE_COLUMNS if not check_ucd(c.ucd, True)]
    assert bad == []  # every UCD is valid UCD1+ (validators such as taplint check them)


def test_visibility_rule(cat: Catalogue) -> None:
    everyone = {"ivo://t/cta?1", "ivo://t/cta?2", "ivo://t/cta?3", "ivo://t/cta?5"}
    assert set(dids(cat.search(None, limit=100))) == everyone
    assert set(dids(cat.search(BOB))) == everyone
    assert set(dids(cat.search(ALICE))) == everyone | {"ivo://t/job?a1"}
    assert cat.search(ROOT).total == 6
    assert cat.get(BOB, "ivo://t/job?a1") is None
    assert cat.get(ALICE, "ivo://t/job?a1")["obs_collection"] == "gammapy_maps"
    assert "owner" not in cat.get(ALICE, "ivo://t/job?a1")
    assert cat.get(None, "ivo://t/cta?4") is None  # not released yet
    assert cat.get(ROOT, "ivo://t/cta?1\x00") is None  # no such id (PostgreSQL: no error)
    assert cat.get(ROOT, "ivo://t/cta?4") is not None
    names = [n for n, _, _ in cat.target_names(BOB)]
    assert names == ["Crab", "PKS 2155-304", "wrap"]


def test_the_find_pages_reads(cat: Catalogue) -> None:
    """The Find page's own reads, asked of the catalogue (web code builds no SQL):
    collections and row links under the visibility rule, store ids without a row."""
    assert cat.collections(BOB) == ["CTA-DL3"]
    assert cat.collections(ALICE) == ["CTA-DL3", "gammapy_maps"]
    links = cat.job_links(BOB, ["ivo://t/cta?1", "ivo://t/job?a1", "ivo://t/cta?4"])
    assert links == {"ivo://t/cta?1": {"job_id": None, "entity_id": None}}  # a1: alice's
    assert cat.job_links(ALICE, ["ivo://t/job?a1"])["ivo://t/job?a1"]["job_id"] == "a1"
    assert cat.job_links(ALICE, []) == {}
    assert cat.uncatalogued({"1", "2", "3", "4", "5"}, "CTA-DL3") == set()
    assert cat.uncatalogued({"1", "5", "7", "8", "9", "10"}, "CTA-DL3") == {"7", "8", "9", "10"}
    assert cat.uncatalogued({"1", "2"}, "other") == {"1", "2"}


def test_cone_time_energy_and_paging(cat: Catalogue) -> None:
    page = cat.search(BOB, ra=83.63, dec=22.01, radius=0.3, order_by="distance")
    assert dids(page) == ["ivo://t/cta?1"]
    assert page.rows[0]["distance"] == pytest.approx(0.0, abs=1e-9)
    page = cat.search(ALICE, ra=83.63, dec=22.01, radius=0.6, order_by="distance")
    assert dids(page) == ["ivo://t/cta?1", "ivo://t/job?a1", "ivo://t/cta?2"]
    expected = angular_distance(83.63, 22.01, 84.13, 22.01)
    assert page.rows[-1]["distance"] == pytest.approx(expected)
    assert expected == pytest.approx(0.5 * math.cos(math.radians(22.01)), rel=1e-3)
    # across RA = 0/360
    assert dids(cat.search(None, ra=0.05, dec=0.0, radius=0.2)) == ["ivo://t/cta?5"]
    assert dids(cat.search(None, t_min=60005, t_max=60011)) == ["ivo://t/cta?2"]
    assert "ivo://t/cta?3" not in dids(cat.search(None, energy_max=0.5))
    assert dids(cat.search(None, target_name="pks")) == ["ivo://t/cta?3"]
    assert dids(cat.search(None, obs_ids=[1, "3"])) == ["ivo://t/cta?1", "ivo://t/cta?3"]
    page = cat.search(None, order_by="obs_id", descending=True, limit=2, offset=1)
    assert page.total == 4 and dids(page) == ["ivo://t/cta?3", "ivo://t/cta?2"]
    assert dids(cat.search(ALICE, dataproduct_type="image", calib_level=4)) == ["ivo://t/job?a1"]


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"ra": 400, "dec": 0}, "ra must be in"),
        ({"ra": 1}, "needs both ra and dec"),
        ({"order_by": "owner"}, "cannot order by"),
        ({"order_by": "distance"}, "needs a position"),
        ({"t_min": 2, "t_max": 1}, "after t_max"),
        ({"limit": -1}, "negative"),
        ({"radius": "x", "ra": 1, "dec": 1}, "must be a number"),
        ({"target_name": "a\x00b"}, "plain text"),
        ({"obs_ids": ["1\x00"]}, "plain text"),
        ({"dataproduct_type": "x" * 2000}, "plain text"),
    ],
)
def test_bad_search_is_a_clear_error(cat: Catalogue, kw: dict[str, Any], message: str) -> None:
    with pytest.raises(SearchError, match=message):
        cat.search(None, **kw)


def test_update_replaces_and_remove(cat: Catalogue) -> None:
    cat.add_or_update(row("ivo://t/cta?1", 10.0, 10.0, target_name="moved"))
    assert cat.get(None, "ivo://t/cta?1")["target_name"] == "moved"
    assert dids(cat.search(None, ra=10, dec=10, radius=0.1)) == ["ivo://t/cta?1"]
    assert cat.remove("ivo://t/cta?1") and cat.get(None, "ivo://t/cta?1") is None
    assert cat.get(ROOT, "ivo://t/job?a1") is not None
    with cat.engine.begin() as conn:  # deleting the job (as the Store does) takes its rows
        conn.execute(jobs.delete().where(jobs.c.job_id == "a1"))
    assert cat.get(ROOT, "ivo://t/job?a1") is None
    with pytest.raises(ValueError, match="no column"):
        cat.add_or_update({"obs_publisher_did": "x", "bogus": 1})


def test_cone_matches_exact_distance_everywhere(tmp_path: Any) -> None:
    """The band + RA window + dot product selects exactly the rows within the radius:
    across RA 0/360, near the poles, for small and large radii (seeded random cases)."""
    import random

    engine = make_engine(f"sqlite:///{tmp_path / 'cone.sqlite'}")
    create_schema(engine)
    cat = Catalogue(engine)
    rnd = random.Random(12)
    points = [
        (rnd.uniform(0, 360), math.degrees(math.asin(rnd.uniform(-1, 1)))) for _ in range(3000)
    ]
    points += [(0.0, 0.0), (359.999, 0.5), (120.0, 89.9), (300.0, -89.95)]
    cat.add_or_update_many([row(f"ivo://t/cta?{i}", ra, dec) for i, (ra, dec) in enumerate(points)])
    cones = [(0.0, 0.0, 1.0), (359.9, 0.3, 0.5), (10.0, 89.5, 1.0), (200.0, -89.0, 2.0)]
    cones += [
        (rnd.uniform(0, 360), rnd.uniform(-90, 90), rnd.choice((0.5, 3, 20, 95))) for _ in range(25)
    ]
    for ra, dec, radius in cones:
        got = {
            r["obs_publisher_did"]
            for r in cat.search(None, ra=ra, dec=dec, radius=radius, limit=10000).rows
        }
        want = {
            f"ivo://t/cta?{i}"
            for i, (pra, pdec) in enumerate(points)
            if angular_distance(ra, dec, pra, pdec) <= radius - 1e-9
        }
        near_edge = {
            f"ivo://t/cta?{i}"
            for i, (pra, pdec) in enumerate(points)
            if abs(angular_distance(ra, dec, pra, pdec) - radius) < 1e-7
        }
        assert want - near_edge <= got and got - near_edge <= want | near_edge, (ra, dec, radius)
        assert got - want <= near_edge, (ra, dec, radius)
    engine.dispose()


def test_search_columns_and_cheap_count(cat: Catalogue) -> None:
    page = cat.search(None, ra=83.63, dec=22.01, radius=1, columns=["obs_id"], count=False)
    assert page.rows and set(page.rows[0]) == {"obs_id", "s_ra", "s_dec", "distance"}
    assert page.total == len(page.rows) == 2
    more = cat.search(None, limit=1, count=False)
    assert len(more.rows) == 1 and more.total == 2  # "more than one": not the full count
    with pytest.raises(SearchError, match="no such column"):
        cat.search(None, columns=["owner"])
