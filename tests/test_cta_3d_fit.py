"""The ``gammapy_3d_fit`` job (issue 15.1) through the service, on fast-path DL3.

Two short runs are simulated in this process by ``simulate_dl3`` (the fast path, as the
service would run it) into the server's DL3 store; the 3D fit then runs as a job of the
local pool, asked for a target 0.12 deg away from the simulated source, on a small cube.
Its products must exist and agree with the truth: the fitted position at the source (not
at the requested target), TS, index and amplitude within a few errors, a TS map whose
maximum is at the source, PNG previews, the summary numbers on the job page. Bad values
are refused with a 400 by the job definition, or fail the job with one clear line.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from tests import cta_support
from tests.conftest import LiveServer, make_settings

pytestmark = pytest.mark.science

SOURCE = {"RA": 329.717, "Dec": -30.226}  # where simulate_dl3 puts the source
TRUTH = {"index": 2.4, "amplitude": 5e-12}  # held out: not a job-definition default
TARGET = {"RA": "329.857", "Dec": "-30.226"}  # 0.12 deg east of the source
CUBE = {"width": "1.2", "binsz": "0.03", "nbins": "4", "ts_downsampling": "4"}
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def fit3d(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A server with the project's definitions, a store of 2 x 8 min fast-path runs and
    one finished 3D fit job: (server, client, job path, its fit_result)."""
    from uws_server.config import PROJECT_ROOT

    root = Path(tmp_path_factory.mktemp("fit3d"))
    store = root / "dl3"
    sim = {**{k: str(v) for k, v in SOURCE.items()}, **{k: str(v) for k, v in TRUTH.items()}}
    sim.update(n_obs="2", livetime="8", seed="31", first_obs_id="4001")
    done = cta_support.run_in_process("simulate_dl3", sim, root / "sim", store)
    assert done.returncode == 0, done.stderr[-2000:]
    live = LiveServer(
        make_settings(
            root, job_definitions_dir=PROJECT_ROOT / "job_definitions", dl3_store=store,
            local_slots=1,
        )
    )  # fmt: skip
    client = live.add_user("scientist")
    job = client.create(
        "gammapy_3d_fit", {"obs_ids": "4001-4002", **TARGET, **CUBE, "PHASE": "RUN"}
    )
    phase = client.wait_final(job, timeout=300)
    assert phase == "COMPLETED", (phase, client.get(job + "/error").text)
    fit = json.loads(client.get(job + "/results/fit_result").text)
    yield live, client, job, fit
    live.stop()


def test_the_fit_finds_the_source_not_the_requested_target(fit3d) -> None:  # type: ignore[no-untyped-def]
    _, _, _, fit = fit3d
    assert fit["fit_success"] and fit["covariance_success"]
    assert fit["spatial_model"] == "point" and fit["spectral_model"] == "power_law"
    assert fit["obs_ids"] == [4001, 4002] and fit["n_counts"] > 0
    assert fit["ts"] > 25 and fit["significance_sigma"] > 5
    # position: at the simulated source within 4 errors, 0.12 deg from the target
    cos_dec = math.cos(math.radians(SOURCE["Dec"]))
    assert abs(fit["ra"] - SOURCE["RA"]) < 4 * fit["ra_err"] + 0.01 / cos_dec, fit
    assert abs(fit["dec"] - SOURCE["Dec"]) < 4 * fit["dec_err"] + 0.01, fit
    assert fit["offset_from_target_deg"] == pytest.approx(0.12, abs=0.02)
    assert fit["offset_ra_deg"] == pytest.approx(-0.12, abs=0.02)
    assert 0 < fit["ra_err"] < 0.05 and 0 < fit["dec_err"] < 0.05
    # spectrum within 4 errors of the truth (one seed, small statistics)
    assert abs(fit["index"] - TRUTH["index"]) < 4 * fit["index_err"], fit
    assert abs(fit["amplitude"] - TRUTH["amplitude"]) < 4 * fit["amplitude_err"], fit
    assert fit["amplitude_unit"] == "1 / (TeV s cm2)"
    # every parameter with value, error and unit; the background norm fitted near 1
    params = fit["parameters"]
    assert {"index", "amplitude", "reference"} <= set(params["spectral"])
    assert {"lon_0", "lat_0"} <= set(params["spatial"]) and "norm" in params["background"]
    assert all({"value", "error", "unit", "frozen"} <= set(p) for p in params["spectral"].values())
    assert params["background"]["norm"]["frozen"] is False
    assert fit["background_norm"] == pytest.approx(1, abs=5 * fit["background_norm_err"] + 0.1)
    assert fit["comparison_with_power_law"] is None
    # the fast path's IRFs state no MC statistics: said so, no number made up
    assert fit["irf_uncertainty"]["stated"] is False and fit["amplitude_err_irf"] is None


def test_a_gaussian_fitted_to_a_point_source_stays_point_like(fit3d, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The Gaussian source model through the job (its closure over seeds is in
    bench/bench_closure_3d.py): on the store's point source, the fitted width is zero
    within its errors, with the position and index still found."""
    live, _, _, _ = fit3d
    params = {"obs_ids": "4001-4002", **TARGET, **CUBE, "spatial_model": "gauss"}
    params["ts_downsampling"] = "8"
    done = cta_support.run_in_process(
        "gammapy_3d_fit", params, tmp_path / "g", live.settings.dl3_store
    )
    assert done.returncode == 0, done.stderr[-3000:]
    fit = json.loads((tmp_path / "g" / "fit_result.json").read_text())
    assert fit["spatial_model"] == "gauss" and fit["fit_success"], fit
    sigma = fit["parameters"]["spatial"]["sigma"]
    assert sigma["unit"] == "deg" and sigma["frozen"] is False
    assert fit["sigma"] == pytest.approx(sigma["value"])
    assert 0 < sigma["error"] < 0.05, sigma  # constrained: the PSF sets the scale
    assert 0 <= sigma["value"] < 3 * sigma["error"] + 0.03, sigma  # a point, within errors
    assert abs(fit["dec"] - SOURCE["Dec"]) < 4 * fit["dec_err"] + 0.01, fit
    assert abs(fit["index"] - TRUTH["index"]) < 4 * fit["index_err"], fit


def test_ts_map_and_previews(fit3d) -> None:  # type: ignore[no-untyped-def]
    _, c, job, fit = fit3d
    r = c.get(job + "/results/ts_map")
    assert r.status_code == 200 and r.content[:6] == b"SIMPLE"
    with fits.open(io.BytesIO(r.content)) as hdul:
        names = {h.name for h in hdul}
        assert {"TS", "SQRT_TS", "NORM"} <= names, names
        ts = np.squeeze(hdul["TS"].data)
        from astropy.wcs import WCS

        wcs = WCS(hdul["TS"].header).celestial
    iy, ix = np.unravel_index(np.nanargmax(ts), ts.shape)
    ra, dec = wcs.pixel_to_world_values(ix, iy)
    # the TS map peaks at the source (pixels of 4 x 0.03 deg), far above TS 25
    assert (
        abs(ra - SOURCE["RA"]) * math.cos(math.radians(dec)) < 0.1
        and abs(dec - SOURCE["Dec"]) < 0.1
    )
    assert np.nanmax(ts) == pytest.approx(fit["ts_map_max"]) and fit["ts_map_max"] > 25
    for name in ("ts_preview", "residual_preview", "spectrum_residual_preview"):
        r = c.get(f"{job}/results/{name}")
        assert r.status_code == 200 and r.content[:8] == PNG, name
    # the residuals of a good fit: no 6-sigma structure left
    assert fit["residual_significance_max_abs"] < 6


def test_definition_marks_the_summary_and_the_ts_map_dataset(fit3d) -> None:  # type: ignore[no-untyped-def]
    live, c, job, fit = fit3d
    defn = cta_support.definition("gammapy_3d_fit")
    marked = {e.name: (e.dataproduct_type, e.calib_level, e.preview) for e in defn.generated}
    assert marked["ts_map"] == ("image", "4", "ts_preview")
    summary = next(e.summary for e in defn.generated if e.name == "fit_result")
    for spec in summary.split(","):
        key = spec.split("+-")[0].strip()
        assert key in fit or key == "sigma", key  # sigma: Gaussian sources only
    page = c.get("/ui/jobs/gammapy_3d_fit/" + job.rsplit("/", 1)[1])
    assert page.status_code == 200 and 'id="summary-fit_result"' in page.text
    # the definition is a web form (the choices offered) and a DataLink service descriptor
    form = c.get("/ui/submit/gammapy_3d_fit")
    assert form.status_code == 200 and 'name="spatial_model"' in form.text
    assert 'value="gauss"' in form.text and 'value="exp_cutoff_power_law"' in form.text


@pytest.mark.parametrize(
    ("params", "word"),
    [
        ({"spatial_model": "disk"}, "spatial_model"),
        ({"spectral_model": "broken_power_law"}, "spectral_model"),
        ({"width": "50"}, "width"),
        ({"nbins": "0"}, "nbins"),
        ({"RA": "400"}, "RA"),
        ({"ts_downsampling": "3"}, "ts_downsampling"),
    ],
)
def test_bad_values_are_refused_by_the_definition(fit3d, params, word) -> None:  # type: ignore[no-untyped-def]
    _, c, _, _ = fit3d
    r = c.post("/rest/gammapy_3d_fit", data={"obs_ids": "4001", **params})
    assert r.status_code == 400 and word in r.text, (r.status_code, r.text[:300])
    assert "Traceback" not in r.text


def test_unknown_observation_is_a_clear_job_error(fit3d) -> None:  # type: ignore[no-untyped-def]
    _, c, _, _ = fit3d
    job = c.create("gammapy_3d_fit", {"obs_ids": "999999", "PHASE": "RUN"})
    assert c.wait_final(job, timeout=120) == "ERROR"
    message = c.get(job + "/error").text
    assert "999999" in message and "Traceback" not in message and "\n" not in message.strip()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        # valid for the definition, invalid together: one line each, exit code 1
        ({"width": "1", "binsz": "0.2"}, "at least 10"),
        ({"width": "6", "binsz": "0.005", "nbins": "40"}, "larger than"),
        ({"emin": "10", "emax": "1"}, "must be larger than"),
        ({"obs_ids": "4001 x"}, "'x' is not an integer"),
    ],
)
def test_inconsistent_values_fail_the_job_with_one_line(fit3d, tmp_path, params, message) -> None:  # type: ignore[no-untyped-def]
    live, _, _, _ = fit3d
    full = {"obs_ids": "4001", **TARGET, **params}
    done = cta_support.run_in_process(
        "gammapy_3d_fit", full, tmp_path / "j", live.settings.dl3_store
    )
    assert done.returncode == 1
    assert message in cta_support.error_line(done, tmp_path / "j")


def test_definition_matches_what_the_step_reads_and_writes() -> None:
    """Every input of the definition is read by the step and nothing else; every result
    it declares is written under that entity's name (the VOTable strict to astropy)."""
    import re
    import warnings

    from astropy.io.votable import parse as parse_votable

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parse_votable(str(cta_support.JOBDEFS / "gammapy_3d_fit_vot.xml"), verify="exception")
    defn = cta_support.definition("gammapy_3d_fit")
    assert cta_support.step_module("gammapy_3d_fit") == "cta.gammapy_3d_fit"
    source = (cta_support.CTA / "gammapy_3d_fit.py").read_text()
    read = set(re.findall(r'params\.\w+\(\s*"(\w+)"', source))
    read |= {"obs_ids"} if "params.obs_ids()" in source else set()
    read |= {"RA", "Dec"} if "params.sky_position()" in source else set()
    read |= {"emin", "emax"} if "params.energy_range(" in source else set()
    assert read == {p.name for p in defn.parameters}
    assert {p.name for p in defn.parameters if p.required} == {"obs_ids"}
    written = set(re.findall(r'job\.output_path\(\s*"(\w+)"', source))
    assert written == {e.name for e in defn.generated}
