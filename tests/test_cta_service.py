"""The CTA job definitions through the HTTP API on the local pool, chained by provenance."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from lxml import etree

from tests.conftest import Client, LiveServer, make_settings

pytestmark = pytest.mark.science

NS = {"uws": "http://www.ivoa.net/xml/UWS/v1.0", "xlink": "http://www.w3.org/1999/xlink"}
CTA = (
    "simulate_dl3",
    "gammapy_maps",
    "gammapy_spectra",
    "gammapy_lightcurve",
)


@pytest.fixture(scope="module")
def cta(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A server with the project's own job definitions (the CTA ones included)."""
    root = Path(tmp_path_factory.mktemp("cta"))
    from uws_server.config import PROJECT_ROOT

    live = LiveServer(
        make_settings(root, job_definitions_dir=PROJECT_ROOT / "job_definitions", local_slots=2)
    )
    client = live.add_user("scientist")
    yield live, client
    live.stop()


def results(c: Client, job: str) -> dict[str, str]:
    doc = etree.fromstring(c.get(job).content)
    return {
        r.get("id"): r.get("{http://www.w3.org/1999/xlink}href")
        for r in doc.findall("uws:results/uws:result", NS)
    }


def wait_for_provenance(c: Client, job: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while "provenance_json" not in results(c, job) and time.monotonic() < deadline:
        time.sleep(0.3)


def run(c: Client, jobname: str, params: dict[str, str], timeout: float = 300) -> str:
    return finish(c, c.create(jobname, {**params, "PHASE": "RUN"}), timeout)


def finish(c: Client, job: str, timeout: float = 300) -> str:
    """Wait for a started job; it must complete."""
    jobname = job.split("/")[2]
    phase = c.wait_final(job, timeout=timeout)
    assert phase == "COMPLETED", (
        jobname,
        phase,
        c.get(job + "/error").text,
        c.get(job + "/stderr").text[-2000:],
    )
    return job


def test_definitions_are_served(cta) -> None:  # type: ignore[no-untyped-def]
    live, c = cta
    names = {d["name"] for d in c.get("/jdl").json()}
    assert set(CTA) <= names


def test_fast_path_dl3_to_dl4_with_provenance(cta) -> None:  # type: ignore[no-untyped-def]
    live, c = cta
    sim = run(
        c, "simulate_dl3", {"first_obs_id": "2001", "n_obs": "2", "livetime": "10", "seed": "7"}
    )
    sim_results = results(c, sim)
    assert {"dl3_observation_1", "dl3_observation_2", "observations", "summary"} <= set(sim_results)
    # both DL4 jobs at once: they read the same observations, on the pool's two slots
    spectra = c.create("gammapy_spectra", {"obs_ids": "2001 2002", "nbins": "6", "PHASE": "RUN"})
    maps = c.create(
        "gammapy_maps",
        {"obs_ids": "2001,2002", "nxpix": "50", "nypix": "50", "binsz": "0.04", "PHASE": "RUN"},
    )
    finish(c, spectra)
    fit = json.loads(c.get(spectra + "/results/fit_result").text)
    assert 1.5 < fit["index"] < 4.5  # loose: the CI-size statistics are small
    assert c.get(spectra + "/results/spectrum_preview").content[:8] == b"\x89PNG\r\n\x1a\n"
    finish(c, maps)
    assert c.get(maps + "/results/count_map").content[:6] == b"SIMPLE"
    # the spectrum's provenance reaches back to the job that simulated its DL3 files
    wait_for_provenance(c, spectra)
    prov = c.get("/provsap", params={"ID": spectra.rsplit("/", 1)[1], "DEPTH": "ALL"})
    assert prov.status_code == 200, prov.text
    doc = json.loads(prov.text)
    activities = " ".join(doc["activity"])
    assert sim.rsplit("/", 1)[1] in activities
    assert spectra.rsplit("/", 1)[1] in activities


def test_web_form_offers_the_store_observations(cta) -> None:  # type: ignore[no-untyped-def]
    live, c = cta
    if 2001 not in __import__("uws_server.dl3", fromlist=["x"]).observation_ids(
        live.settings.dl3_store
    ):
        run(c, "simulate_dl3", {"first_obs_id": "2001", "n_obs": "2", "livetime": "10"})
    page = c.get("/ui/submit/gammapy_maps")
    assert page.status_code == 200
    assert 'name="pick.obs_ids" value="2001"' in page.text
    assert 'name="pick.obs_ids" value="2002"' in page.text
    r = c.post(
        "/ui/submit/gammapy_maps",
        data=[("pick.obs_ids", "2001"), ("pick.obs_ids", "2002"), ("nxpix", "40"), ("nypix", "40")],
    )
    assert r.status_code == 303, r.text[:500]
    job_id = r.headers["Location"].rstrip("/").split("?")[0].rsplit("/", 1)[1]
    assert c.get(f"/rest/gammapy_maps/{job_id}/parameters/obs_ids").text == "2001 2002"
    # the form's job is not what this test is about: not left running on the pool
    assert c.delete(f"/rest/gammapy_maps/{job_id}").status_code in (200, 204, 303)


def test_bad_observation_ids_are_clear_errors(cta) -> None:  # type: ignore[no-untyped-def]
    live, c = cta
    job = c.create("gammapy_maps", {"obs_ids": "999999", "PHASE": "RUN"})
    assert c.wait_final(job, timeout=120) == "ERROR"
    assert "999999" in c.get(job + "/error").text
    r = c.post("/rest/gammapy_spectra", data={"obs_ids": "2001", "RA": "400"})
    assert r.status_code == 400 and "RA" in r.text
