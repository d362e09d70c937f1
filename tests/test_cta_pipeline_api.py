"""The CTA chain DL0 → DL4 through the HTTP API on the local pool, traced by ProvSAP.

It drives the service exactly as ``scripts/cta_demo.py`` does (that module is the
client), with the committed trained models and IRFs.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import LiveServer, make_settings, need
from uws_server.config import PROJECT_ROOT

TRUE_INDEX = 2.0  # the simulation job's default spectral index (E^-2)
# A 30-min run: enough events for the loose spectral check (|index - 2| < 0.3; the index
# of this seed is printed), a third of the demo's 30,000 showers (bench/ runs those).
API_SHOWERS = 10000
# The Slurm pass checks wiring (every stage completes on the cluster), not physics.
SLURM_SHOWERS = 1500
# the two chains of this module run at the same time, each job waiting on 2 shared cores
pytestmark = [pytest.mark.science, pytest.mark.timeout(900)]


def load_demo():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "cta_demo", PROJECT_ROOT / "scripts" / "cta_demo.py"
    )
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["cta_demo"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


SLURM_STAGES = ("simulation", "calibration", "reconstruction", "analysis", "gammapy_maps")


def slurm_chain(live: LiveServer, token: str) -> dict[str, str]:
    """One CI-size pass of DL0 → DL3 → maps with every job on the Slurm cluster."""
    demo = load_demo()
    client = demo.Client(live.base, token)
    return demo.run_chain(
        client,
        n_showers=SLURM_SHOWERS,
        obs_id=4343,
        seed=11,
        only=SLURM_STAGES,
        duration=600,
        show=lambda _: None,
    )


@pytest.fixture(scope="module")
def on_slurm(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The Slurm chain, started first and run in the background while the local pool
    runs the other: the jobs of one wait on the jobs of the other, on 2 cores.

    Both servers export one DL3 store to their jobs (an environment variable of this
    process): the store is shared, with different obs_ids (its writers lock it).
    """
    from tests.test_slurm import slurm_ready

    root = Path(tmp_path_factory.mktemp("on_slurm"))
    ready = slurm_ready()
    if not ready:
        yield None
        return
    live = LiveServer(
        make_settings(
            root,
            manager="slurm",
            slurm_poll_interval=0.5,
            job_definitions_dir=PROJECT_ROOT / "job_definitions",
            dl3_store=shared_store(tmp_path_factory),
        )
    )
    try:
        user = live.add_user("scientist")
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="slurm-chain") as pool:
            yield live, user, pool.submit(slurm_chain, live, user.token)
    finally:
        live.stop()


def shared_store(factory: pytest.TempPathFactory) -> Path:
    """The DL3 store both servers of this module use."""
    return factory.getbasetemp() / "cta_pipeline_dl3"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, on_slurm):  # type: ignore[no-untyped-def]
    root = Path(tmp_path_factory.mktemp("pipeline"))
    live = LiveServer(
        make_settings(
            root,
            job_definitions_dir=PROJECT_ROOT / "job_definitions",
            dl3_store=shared_store(tmp_path_factory),
        )
    )
    user = live.add_user("scientist")
    demo = load_demo()
    client = demo.Client(live.base, user.token)
    lines: list[str] = []
    t0 = time.monotonic()
    jobs = demo.run_chain(client, n_showers=API_SHOWERS, obs_id=4242, seed=5, show=lines.append)
    print(f"\npipeline through the API: {time.monotonic() - t0:.0f} s; {lines[-1]}")
    yield live, user, demo, client, jobs
    live.stop()


def wait_provenance(client, url: str, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while "provenance_json" not in client.results(url) and time.monotonic() < deadline:
        time.sleep(0.3)


def test_products_and_loose_science(pipeline) -> None:  # type: ignore[no-untyped-def]
    live, user, demo, client, jobs = pipeline
    fit = json.loads(client.session.get(jobs["gammapy_spectra"] + "/results/fit_result").text)
    print(f"\nspectral index {fit['index']:.3f} (truth {TRUE_INDEX})")
    assert abs(fit["index"] - TRUE_INDEX) < 0.3, fit  # the loose check
    count_map = client.session.get(jobs["gammapy_maps"] + "/results/count_map").content
    assert count_map[:6] == b"SIMPLE"
    curve = client.session.get(jobs["gammapy_lightcurve"] + "/results/lightcurve").text
    assert "time_min" in curve or "MJD" in curve or "flux" in curve
    from gammapy.data import DataStore

    store = DataStore.from_dir(live.settings.dl3_store)
    assert 4242 in list(store.obs_table["OBS_ID"])


def test_provsap_from_the_spectrum_reaches_dl0(pipeline) -> None:  # type: ignore[no-untyped-def]
    live, user, demo, client, jobs = pipeline
    for url in jobs.values():
        wait_provenance(client, url)
    spectrum_id = jobs["gammapy_spectra"].rsplit("/", 1)[1]
    r = client.session.get(
        f"{live.base}/provsap", params={"ID": spectrum_id, "DEPTH": "ALL", "DIRECTION": "BACK"}
    )
    assert r.status_code == 200, r.text
    doc = json.loads(r.text)
    activities = " ".join(doc["activity"])
    for stage in ("simulation", "calibration", "reconstruction", "analysis", "gammapy_spectra"):
        assert jobs[stage].rsplit("/", 1)[1] in activities, stage
    entities = json.dumps(doc["entity"])
    for name in ("dl0", "dl1", "dl2", "dl3"):  # every data level's file is there
        assert f"/results/{name}" in entities, name
    svg = demo.provenance_svg(client, jobs["gammapy_spectra"])
    assert svg.lstrip().startswith(b"<?xml") or b"<svg" in svg[:500]


def test_provsap_from_a_dl4_file_reaches_the_ctapipe_steps(pipeline) -> None:  # type: ignore[no-untyped-def]
    """Issue 16: the count map names its entity in its FITS header; ProvSAP BACK from
    that entity at DEPTH=ALL walks into the tool runs recorded inside each job, down to
    the calibration's ctapipe-process."""
    live, user, demo, client, jobs = pipeline
    for url in jobs.values():
        wait_provenance(client, url)
    steps = demo.dl4_steps_back(client, jobs["gammapy_maps"])
    by_job = {activity.rsplit("/", 1)[1]: names for activity, names in steps.items()}
    assert "ctapipe-process" in by_job[jobs["calibration"].rsplit("/", 1)[1]], steps
    assert "ctapipe-process" in by_job[jobs["reconstruction"].rsplit("/", 1)[1]], steps
    assert by_job[jobs["gammapy_maps"].rsplit("/", 1)[1]], steps  # gammapy's own steps


def test_the_chain_runs_on_slurm(on_slurm) -> None:  # type: ignore[no-untyped-def]
    """One CI-size pass of DL0 → DL3 → maps with every job on the Slurm cluster."""
    need(on_slurm is not None, "Slurm is not running (bash scripts/slurm_start.sh)")
    live, user, future = on_slurm
    jobs = future.result()
    demo = load_demo()
    client = demo.Client(live.base, user.token)
    for stage in SLURM_STAGES:
        job = client.job(jobs[stage])
        assert job.findtext("uws:phase", namespaces=demo.NS) == "COMPLETED"
        # it really ran on Slurm: the manager's id is a Slurm job id, not a local pid
        ext = live.service.store.get_job(jobs[stage].rsplit("/", 1)[1]).external_id
        assert ext and ext.isdigit(), (stage, ext)
        assert live.service.store.get_job(jobs[stage].rsplit("/", 1)[1]).manager == "slurm"
    count_map = client.session.get(jobs["gammapy_maps"] + "/results/count_map").content
    assert count_map[:6] == b"SIMPLE"
