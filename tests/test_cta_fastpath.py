"""CTA fast path: simulate_dl3 -> gammapy_maps / gammapy_spectra / gammapy_lightcurve.

The job scripts run in temporary job directories against a temporary DL3 store, with the
service's own job environment (``workers.jobdir``): the simulation and the refusal of
known obs_ids as processes through the job definition's ``script`` line under bash, the
DL4 products and the bad-input cases in this process (``tests.cta_support``), which
spares a gammapy import per job; the DL4 jobs run as processes through the API in
``test_cta_service`` and ``test_cta_pipeline_api``. CI size: 2 runs of 15 min.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.io.votable import parse as parse_votable
from astropy.io.votable.tree import Group, Param
from astropy.table import Table
from cta import dl3_store

from tests import cta_support
from tests.cta_support import Finished
from workers import jobside

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
JOBDEFS = REPO / "job_definitions"
CTA_SCRIPTS = ("simulate_dl3", "gammapy_maps", "gammapy_spectra", "gammapy_lightcurve")
SOURCE = {"RA": "329.717", "Dec": "-30.226"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GADF_HDUS = ("EVENTS", "GTI", "EFFECTIVE AREA", "ENERGY DISPERSION", "PSF_2D_TABLE", "BACKGROUND")


pytestmark = pytest.mark.science


def run_job(
    name: str,
    params: dict[str, str],
    job_dir: Path,
    store: Path,
    extra_env: dict[str, str] | None = None,
) -> Finished:
    """Run a job script as the service does: own job dir, parameters.json, env vars."""
    return cta_support.run_job(name, params, job_dir, store, env=extra_env, timeout=300)


def run_here(
    name: str,
    params: dict[str, str],
    job_dir: Path,
    store: Path,
    extra_env: dict[str, str] | None = None,
) -> Finished:
    """The same job in this process (the script as ``__main__``, same directory and
    environment): no new interpreter importing gammapy for each product."""
    return cta_support.run_in_process(name, params, job_dir, store, env=extra_env)


def jdl_resource(name: str):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any VOTable warning fails the test
        votable = parse_votable(str(JOBDEFS / f"{name}_vot.xml"), verify="exception")
    (resource,) = votable.resources
    return resource


def jdl_params(name: str) -> dict:
    return {p.name: p.value for p in jdl_resource(name).params}


def jdl_groups(name: str) -> dict:
    return {g.name: g for g in jdl_resource(name).groups}


def check_ok(proc: Finished, job_dir: Path, context: str = "context.json"):
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (job_dir / ".uws" / "error.txt").exists()
    context = json.loads((job_dir / ".uws" / context).read_text())
    assert context["gammapy"] == "2.1" and "numpy" in context and "astropy" in context


def check_png(path: Path) -> None:
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_MAGIC
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image[..., :3].std() > 0.01  # not a blank canvas


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cta_fastpath")


@pytest.fixture(scope="module")
def store(work) -> Path:
    return work / "store"


@pytest.fixture(scope="module")
def simulated(work, store) -> tuple[Path, dict]:
    job = work / "simulate"
    params = {**SOURCE, "livetime": "15", "n_obs": "2", "seed": "1"}
    # as the runner does: the definition's script line under bash, UWS_CONTEXT_FILE set
    context = {"UWS_CONTEXT_FILE": str(job / ".uws" / "runner_context.json")}
    proc = run_job("simulate_dl3", params, job, store, extra_env=context)
    check_ok(proc, job, context="runner_context.json")
    return job, json.loads((job / "summary.json").read_text())


@pytest.fixture(scope="module")
def maps_job(work, store, simulated) -> Path:
    job = work / "maps"
    params = {"obs_ids": "1001, 1002", **SOURCE, "nxpix": "150", "nypix": "120", "binsz": "0.02"}
    # the service names each generated entity's file in an env var: honour it
    proc = run_here("gammapy_maps", params, job, store, extra_env={"count_map": "counts_x.fits"})
    check_ok(proc, job)
    return job


@pytest.fixture(scope="module")
def spectra_job(work, store, simulated) -> Path:
    job = work / "spectra"
    params = {"obs_ids": "1001 1002", **SOURCE, "emin": "0.3", "emax": "30", "nbins": "8"}
    proc = run_here("gammapy_spectra", params, job, store)
    check_ok(proc, job)
    return job


@pytest.fixture(scope="module")
def lightcurve_job(work, store, simulated) -> Path:
    job = work / "lightcurve"
    params = {"obs_ids": "1001-1002", **SOURCE, "emin": "0.5", "emax": "30", "time_bin": "5"}
    proc = run_here("gammapy_lightcurve", params, job, store)
    check_ok(proc, job)
    return job


# ----------------------------------------------------------------------- job definitions


@pytest.mark.parametrize("name", CTA_SCRIPTS)
def test_job_definition_is_valid_and_matches_script(name):
    resource = jdl_resource(name)
    assert resource.ID == name and resource.utype == "voprov:ActivityDescription"
    params = jdl_params(name)
    assert params["script"] == f'PYTHONPATH="$UWS_SCRIPTS_DIR:$UWS_LIB" python -P -m cta.{name}'
    assert (SCRIPTS / "cta" / f"{name}.py").is_file()
    assert params["executionDuration"] > params["quote"] > 0
    groups = jdl_groups(name)
    assert set(groups) == {"InputParams", "Used", "Generated"}
    inputs = {p.name for p in groups["InputParams"].entries if isinstance(p, Param)}
    generated = {
        g.name: {p.name: p.value for p in g.entries}
        for g in groups["Generated"].entries
        if isinstance(g, Group)
    }
    source = (SCRIPTS / "cta" / f"{name}.py").read_text()
    # observation files linked from the store are one multi-file result (dl3_obs_*.fits.gz)
    published = {k: v for k, v in generated.items() if "*" in v["default"]}
    assert bool(published) == ("publish_observations(" in source)
    assert all(v["multiplicity"] == "*" for v in published.values())
    single = {k: v for k, v in generated.items() if k not in published}
    assert {v["multiplicity"] for v in single.values()} == {"1"}
    # every result the script writes is declared, with the same default file name
    written = dict(re.findall(r'output_path\(\s*"(\w+)",\s*"([\w.]+)"\)', source))
    assert written == {k: v["default"] for k, v in single.items()}
    # every declared parameter is read by the script, and nothing else is
    read = set(re.findall(r'params\.\w+\(\s*"(\w+)"', source))
    read |= {"obs_ids"} if "params.obs_ids()" in source else set()
    read |= {"RA", "Dec"} if "params.sky_position()" in source else set()
    read |= {"emin", "emax"} if "params.energy_range(" in source else set()
    assert read == inputs


@pytest.mark.parametrize("name", CTA_SCRIPTS)
def test_job_definition_is_accepted_by_the_service_reader(name):
    from uws_server.jdl.votable import read_votable_file

    definition = read_votable_file(JOBDEFS / f"{name}_vot.xml")
    assert definition.name == name
    required = {p.name for p in definition.parameters if p.required}
    assert required == (set() if name == "simulate_dl3" else {"obs_ids"})
    ra = definition.parameter("RA")
    assert (ra.datatype, ra.unit, ra.min, ra.max) == ("xs:double", "deg", "0", "360")


# ---------------------------------------------------------------------------- simulation


def test_simulate_writes_a_gadf_store_gammapy_reads(simulated, store):
    from gammapy.data import DataStore

    job, summary = simulated
    data_store = DataStore.from_dir(store)
    assert list(data_store.obs_ids) == [1001, 1002] == summary["obs_ids"]
    problems = [
        c for c in data_store.check(checks=["obs_table", "hdu_table", "consistency"])
        if c["level"] in ("error", "warning")
    ]  # fmt: skip
    assert problems == []
    assert {str(t).strip() for t in data_store.hdu_table["FILE_DIR"]} == {"data"}

    table = Table.read(job / "observations.ecsv")
    assert list(table["obs_id"]) == [1001, 1002]
    for row, obs in zip(table, data_store.get_observations([1001, 1002]), strict=True):
        path = Path(row["path"])
        assert path.parent == store.resolve() / "data"
        assert dl3_store.sha256_of(path) == row["sha256"]
        with fits.open(path) as hdul:
            names = [h.name for h in hdul[1:]]
            assert names == list(GADF_HDUS)
            for hdu in hdul[1:]:
                assert hdu.header["HDUCLASS"] == "GADF" and hdu.header["HDUCLAS1"]
            events = hdul["EVENTS"].header
            assert events["OBS_ID"] == row["obs_id"]
            assert events["LIVETIME"] == pytest.approx(900, rel=1e-6)
            assert len(hdul["EVENTS"].data) == row["n_events"] > 1000
        assert len(obs.events.table) == row["n_events"]
        offset = obs.get_pointing_icrs(obs.tmid).separation(obs.target_radec)
        assert offset.deg == pytest.approx(0.5, abs=1e-3)  # wobble
    assert summary["truth"]["index"] == 3.0 and summary["truth"]["amplitude"] == 4e-11
    assert 0 < summary["n_source"] < summary["n_events"]
    assert jobside.read_used(str(job)) == []  # nothing read: drawn from the model


def test_simulate_refuses_obs_ids_already_in_store(work, store, simulated):
    before = (store / "hdu-index.fits.gz").read_bytes()
    job = work / "simulate_again"
    proc = run_job("simulate_dl3", {**SOURCE, "obs_ids": "1002,1003", "livetime": "1"}, job, store)
    assert proc.returncode == 1
    error = (job / ".uws" / "error.txt").read_text().strip()
    assert error == "obs_ids 1002 already in the DL3 store " + str(store.resolve())
    assert (store / "hdu-index.fits.gz").read_bytes() == before
    assert not list((store / "data").glob(".staging-*"))


ADD_COPY = """
import sys
from astropy.io import fits
from cta import dl3_store
source, root, obs_id = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = dl3_store.DL3Store(root)
staged = store.staging_path(obs_id)
with fits.open(source) as hdul:
    hdul["EVENTS"].header["OBS_ID"] = obs_id
    hdul.writeto(staged)
store.add({obs_id: staged})
"""


def start_writer(source: str, root: Path, obs_id: int) -> subprocess.Popen:
    """Another process adding a copy of ``source`` under a new obs_id to the store."""
    args = [sys.executable, "-P", "-c", ADD_COPY, source, str(root), str(obs_id)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SCRIPTS), str(REPO)])}
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def test_concurrent_writers_do_not_clobber_each_other(work, simulated):
    from gammapy.data import DataStore

    source = str(Table.read(simulated[0] / "observations.ecsv")["path"][0])
    root = work / "concurrent_store"
    ids = [7, 8, 9, 10]
    writers = [start_writer(source, root, i) for i in ids]
    for writer in writers:
        _, stderr = writer.communicate(timeout=120)
        assert writer.returncode == 0, stderr[-2000:]
    data_store = DataStore.from_dir(root)
    assert sorted(data_store.obs_table["OBS_ID"]) == ids
    assert sorted(set(data_store.hdu_table["OBS_ID"])) == ids
    assert len(data_store.hdu_table) == len(GADF_HDUS) * len(ids)
    n_events = len(fits.getdata(source, "EVENTS"))
    assert [len(o.events.table) for o in data_store.get_observations(ids)] == [n_events] * 4


def test_writer_waits_for_the_store_lock(work, simulated):
    source = str(Table.read(simulated[0] / "observations.ecsv")["path"][0])
    store = dl3_store.DL3Store(work / "locked_store")
    with store.lock():
        writer = start_writer(source, store.root, 5)
        with pytest.raises(subprocess.TimeoutExpired):
            writer.wait(timeout=4)  # blocked on the lock, however slow the start-up
        assert store.obs_ids() == []
    _, stderr = writer.communicate(timeout=120)
    assert writer.returncode == 0, stderr[-2000:]
    assert store.obs_ids() == [5]


# -------------------------------------------------------------------------------- DL4


def check_used(job: Path, store: Path, obs_ids: list[int]) -> None:
    used = json.loads((job / ".uws" / "used.json").read_text())
    assert [u["obs_id"] for u in used] == obs_ids
    for record in used:
        assert record["role"] == "dl3_observation"
        path = Path(record["path"])
        assert path == store.resolve() / "data" / f"obs_{record['obs_id']:06d}.fits.gz"
        assert record["sha256"] == dl3_store.sha256_of(path)


def test_maps(maps_job, store, simulated):
    from astropy.coordinates import SkyCoord
    from astropy.wcs import WCS

    summary = json.loads((maps_job / "map_summary.json").read_text())
    assert not (maps_job / "count_map.fits").exists()  # env var named it counts_x.fits
    for name in ("counts_x.fits", "significance_map.fits"):
        with fits.open(maps_job / name) as hdul:
            image = hdul[0].data
            assert image.shape == (120, 150)
            centre = WCS(hdul[0].header).pixel_to_world(74.5, 59.5)
            assert centre.separation(SkyCoord(329.717, -30.226, unit="deg")).deg < 0.011
            if name == "counts_x.fits":
                assert image.sum() == summary["total_counts"] > 500
            else:
                assert np.nanmax(image) == pytest.approx(summary["peak_significance"])
    for name in ("count_preview.png", "significance_preview.png"):
        check_png(maps_job / name)
    assert summary["target_significance"] > 8
    assert summary["peak_offset_from_target_deg"] < 0.15
    assert summary["target_excess"] > 20
    check_used(maps_job, store, [1001, 1002])


def test_spectra_fit_recovers_truth(spectra_job, store, simulated):
    from gammapy.estimators import FluxPoints

    truth = simulated[1]["truth"]
    fit = json.loads((spectra_job / "fit_result.json").read_text())
    assert fit["fit_success"] and fit["datasets_used"] == ["obs-1001", "obs-1002"]
    assert 0 < fit["index_err"] < 0.5
    assert abs(fit["index"] - truth["index"]) < 3 * fit["index_err"]
    assert abs(fit["amplitude"] - truth["amplitude"]) < 3 * fit["amplitude_err"]
    assert fit["significance"] > 8 and fit["counts_on"] > fit["excess"] > 50

    points = FluxPoints.read(spectra_job / "spectrum.ecsv", format="gadf-sed")
    assert len(points.energy_ref) == fit["n_flux_points"] == 8
    table = Table.read(spectra_job / "spectrum.ecsv")
    assert {"e_min", "e_max", "dnde", "dnde_err", "dnde_ul", "ts", "is_ul"} <= set(table.colnames)
    assert table["e_min"][0] == pytest.approx(0.3) and table["e_max"][-1] == pytest.approx(30)
    # the first flux point above the safe threshold (many counts) agrees with the truth;
    # with CTA prod3b IRFs, 10 % of the maximum effective area is ~0.45 TeV (South, 20 deg)
    first = table[np.isfinite(table["dnde"])][0]
    assert first["e_min"] >= fit["safe_energy_min_tev"] * 0.99
    true_dnde = truth["amplitude"] * first["e_ref"] ** -truth["index"]
    assert abs(first["dnde"] - true_dnde) < 3 * first["dnde_err"]
    check_png(spectra_job / "spectrum_preview.png")
    check_used(spectra_job, store, [1001, 1002])


def test_lightcurve_is_consistent_with_constant_truth(lightcurve_job, store, simulated):
    truth = simulated[1]["truth"]
    summary = json.loads((lightcurve_job / "lightcurve_summary.json").read_text())
    table = Table.read(lightcurve_job / "lightcurve.ecsv")
    assert len(table) == summary["n_time_bins"] == 6  # 2 runs x 15 min / 5 min
    assert list(table["time_start_utc"][:2]) == [
        "2024-08-21T03:00:00.000",
        "2024-08-21T03:05:00.000",
    ]
    emin, emax = summary["energy_range_used_tev"]
    gamma, amplitude = truth["index"], truth["amplitude"]
    true_flux = amplitude / (gamma - 1) * (emin ** (1 - gamma) - emax ** (1 - gamma))
    flux = np.asarray(table["flux"]).ravel()
    flux_err = np.asarray(table["flux_err"]).ravel()
    assert np.all(np.abs(flux - true_flux) < 4 * flux_err)
    assert abs(summary["mean_flux"] - true_flux) < 3 * summary["mean_flux_err"]
    assert summary["p_value_constant"] > 1e-3
    check_png(lightcurve_job / "lightcurve_preview.png")
    check_used(lightcurve_job, store, [1001, 1002])


# ---------------------------------------------------------------------------- bad inputs

BAD_INPUTS = [
    (
        "gammapy_maps",
        {"obs_ids": "1001 4242", **SOURCE},
        r"^obs_id 4242 not in the DL3 store .* \(available: 1001-1002\)$",
    ),
    ("gammapy_spectra", {"obs_ids": " , ", **SOURCE}, r"^obs_ids: empty selection"),
    (
        "gammapy_lightcurve",
        {"obs_ids": "1001", "RA": "400", "Dec": "0"},
        r"^parameter 'RA' = 400 out of range \[0.0, 360.0\)$",
    ),
    (
        "gammapy_spectra",
        {"obs_ids": "1001", "RA": "329.7", "Dec": "-95"},
        r"^parameter 'Dec' = -95 out of range",
    ),
    ("gammapy_maps", {"obs_ids": "1001 x", **SOURCE}, r"^obs_ids: 'x' is not an integer"),
    (
        "gammapy_maps",
        {"obs_ids": "1001", "RA": "100", "Dec": "20"},
        r"^empty selection: none of the observations",
    ),
]


@pytest.mark.parametrize(("name", "params", "pattern"), BAD_INPUTS)
def test_bad_input_gives_one_clear_error(work, store, simulated, name, params, pattern):
    """In this process: a new interpreter per case would import gammapy again. The exit
    code through a real process: ``test_simulate_refuses_obs_ids_already_in_store``."""
    job = work / f"bad_{name}_{abs(hash(json.dumps(params))) % 10**8}"
    proc = run_here(name, params, job, store)
    assert proc.returncode == 1, proc.stderr[-2000:]
    error = cta_support.error_line(proc, job)
    assert re.search(pattern, error), error


def test_missing_store_is_a_clear_error(work):
    job = work / "no_store"
    proc = run_here("gammapy_spectra", {"obs_ids": "1", **SOURCE}, job, work / "nowhere")
    assert proc.returncode == 1
    assert cta_support.error_line(proc, job).startswith("DL3 store not found: no hdu-index")


def test_copying_the_store_keeps_it_readable(work, store, simulated):
    """FILE_DIR is relative: a moved store still works (archives, other workers)."""
    from gammapy.data import DataStore

    moved = work / "moved_store"
    shutil.copytree(store, moved)
    observations = DataStore.from_dir(moved).get_observations([1001])
    assert len(observations[0].events.table) > 1000
    (resolved,) = dl3_store.DL3Store(moved).resolve([1002])
    assert resolved.events_file == moved.resolve() / "data" / "obs_001002.fits.gz"
