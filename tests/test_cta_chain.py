"""ctapipe chain: simulation (DL0) -> calibration (DL1) -> reconstruction (DL2) -> analysis (DL3).

Each job runs as the service runs it (``tests.cta_support``, on ``workers.jobdir``): its
own job directory, ``parameters.json``, the service's job environment, and the job
definition's own ``script`` line under bash. The chain runs once per module at CI size
(one 10-minute mixed observation, the committed models and IRFs); ``irf_production``
runs at tiny size in a job directory of its own and must leave the committed models
alone; its training sets are made in the background while the chain runs. Bad-input
cases run the job's script in this process (one science-stack import for all of them).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
import tables
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.io.votable import parse as parse_votable

from tests.cta_support import Finished, error_line, prepare, run_in_process, shared_dir
from tests.cta_support import run_job as run_job_process
from workers.jobdir import SCRIPT_FILE

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
CTA = SCRIPTS / "cta"
MODELS = CTA / "models"
JOBDEFS = REPO / "job_definitions"
CHAIN_JOBS = ("simulation", "calibration", "reconstruction", "irf_production", "analysis")
SOURCE = SkyCoord(329.717, -30.226, unit="deg")  # simulation defaults
OBS_ID = 42
N_SHOWERS = 4000
EVENT_KEYS = (
    "HDUCLASS HDUDOC HDUVERS HDUCLAS1 OBS_ID TSTART TSTOP ONTIME LIVETIME DEADC RA_PNT DEC_PNT "
    "ALT_PNT AZ_PNT MJDREFI MJDREFF TIMESYS TIMEUNIT EQUINOX RADECSYS OBJECT TELESCOP GEOLON "
    "GEOLAT ALTITUDE"
).split()
DL1_COLUMNS = (
    "hillas_intensity hillas_length hillas_width hillas_psi leakage_intensity_width_2 "
    "morphology_n_pixels timing_slope image"
).split()
SIM_PARAMS = dict(particle="mixed", n_showers=N_SHOWERS, proton_fraction=0.7, obs_id=OBS_ID)
SIM_PARAMS.update(obs_duration=600, seed=11)
MODEL_FILES = ("energy_regressor.pkl", "particle_classifier.pkl", "cuts.fits", "irf.fits.gz")

# job subprocesses on 2 shared cores: generous bound, far above the ~2.5 min on idle cores
pytestmark = [pytest.mark.timeout(900), pytest.mark.science]


# ----------------------------------------------------------------------------- helpers


def jdl(name: str):
    """The job definition's RESOURCE, parsed strictly by astropy.io.votable."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        votable = parse_votable(str(JOBDEFS / f"{name}_vot.xml"), verify="exception")
    (resource,) = votable.resources
    return resource


def jdl_entities(name: str, kind: str) -> dict[str, dict[str, str]]:
    """{entity: {role, multiplicity, default, content_type, url}} of Used or Generated."""
    (group,) = [g for g in jdl(name).groups if g.name == kind]
    return {e.name: {p.name: p.value for p in e.entries} for e in group.entries}


def run_job(name: str, params: dict, job_dir: Path, store: Path, check: bool = True) -> Finished:
    """Run job ``name`` like the service: script line of its definition, env, job dir."""
    proc = run_job_process(name, params, job_dir, store)
    if check and proc.returncode != 0:
        pytest.fail(f"{name} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc


def run_step(name: str, params: dict, job_dir: Path, store: Path) -> Finished:
    """Run job ``name`` in this process (its module as ``__main__``, the job's directory
    and environment): the science stack is imported once, and the ctapipe tools are
    forks of this process instead of new interpreters."""
    proc = run_in_process(name, params, job_dir, store)
    if proc.returncode != 0:
        pytest.fail(f"{name} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Chain:
    base: Path
    store: Path
    dirs: dict[str, Path] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def file(self, job: str, name: str) -> Path:
        return self.dirs[job] / name


IRF_TRAINING = {
    "gamma": dict(particle="gamma", n_showers=1000, seed=21),
    "proton": dict(particle="proton", n_showers=3000, seed=22, energy_min=0.1, energy_max=100),
}
IRF_TRAINING["proton"]["spectral_index"] = -1.5


CHAIN_STEPS = (
    ("simulation", SIM_PARAMS),
    ("calibration", {"dl0": "../simulation/events.dl0.h5", "write_images": "true"}),
    ("reconstruction", {"dl1": "../calibration/events.dl1.h5"}),
    ("analysis", {"dl2": "../reconstruction/events.dl2.h5", "object_name": "PKS 2155-304"}),
)


def build_chain(base: Path) -> None:
    """One observation through the whole chain, step after step in this process."""
    timings = {}
    for name, params in CHAIN_STEPS:
        timings[name] = run_step(name, params, base / name, base / "store").elapsed
    print("\nchain timings (s):", {k: round(v, 1) for k, v in timings.items()})


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> Chain:
    """The chain's job directories, built once per test run (``cta_support.shared_dir``)."""
    base = shared_dir("chain", build_chain, tmp_path_factory.getbasetemp())
    return Chain(base=base, store=base / "store", dirs={n: base / n for n, _ in CHAIN_STEPS})


def build_irf_training(base: Path) -> None:
    """Simulate, calibrate and reconstruct (geometry only) each training particle."""
    for name, params in IRF_TRAINING.items():
        run_step("simulation", params, base / f"{name}_sim", base / "store")
        dl0 = {"dl0": f"../{name}_sim/events.dl0.h5"}
        run_step("calibration", dl0, base / f"{name}_cal", base / "store")
        run_step(
            "reconstruction",
            {"dl1": f"../{name}_cal/events.dl1.h5", "apply_models": "false"},
            base / f"{name}_reco",
            base / "store",
        )


@pytest.fixture(scope="module")
def irf_training(tmp_path_factory) -> dict[str, Path]:
    """The DL2 training sets of ``test_irf_production_tiny`` (built once per run)."""
    base = shared_dir("irf_training", build_irf_training, tmp_path_factory.getbasetemp())
    return {name: base / f"{name}_reco" / "events.dl2.h5" for name in IRF_TRAINING}


def read_dl2(path: Path):
    from ctapipe.io import TableLoader

    with TableLoader(path, dl2=True, simulated=True, dl1_parameters=False) as loader:
        return loader.read_subarray_events()


# ------------------------------------------------------------------- instrument, DL0


def test_camera_projection_matches_ctapipe():
    """The simulation's fast AltAz -> camera mapping is ctapipe's CameraFrame's."""
    from astropy.coordinates import AltAz
    from cta.toy import instrument as ti
    from ctapipe.coordinates import CameraFrame

    rng = np.random.default_rng(1)
    p_alt, p_az = 70.0, 175.0
    alt = p_alt + rng.uniform(-3, 3, 50)
    az = p_az + rng.uniform(-8, 8, 50)
    x, y = ti.altaz_to_camera(np.deg2rad(alt), np.deg2rad(az), np.deg2rad(p_alt), np.deg2rad(p_az))
    pointing = SkyCoord(alt=p_alt * u.deg, az=p_az * u.deg, frame=AltAz())
    cam = SkyCoord(alt=alt * u.deg, az=az * u.deg, frame=AltAz()).transform_to(
        CameraFrame(focal_length=ti.FOCAL_LENGTH, telescope_pointing=pointing)
    )
    np.testing.assert_allclose(x, cam.x.to_value(u.m), atol=1e-9)
    np.testing.assert_allclose(y, cam.y.to_value(u.m), atol=1e-9)
    geom = ti.subarray().tel[1].camera.geometry
    assert geom.n_pixels == 1261
    assert np.rad2deg(np.hypot(geom.pix_x, geom.pix_y).max().to_value(u.m) / 16) == (
        pytest.approx(3.5, abs=0.01)
    )


def test_simulation_writes_dl0(chain):
    from cta.toy import dl0

    path = chain.file("simulation", "events.dl0.h5")
    header = dl0.read_header(path)
    assert header["obs_id"] == OBS_ID
    assert header["config"]["particle"] == "mixed"
    with tables.open_file(path) as h5:
        events = h5.root.events.read()
        tel_events = h5.root.telescope_events.read()
        assert h5.root.waveforms.dtype == np.uint16
        assert h5.root.waveforms.shape[1:] == (1261, 30)
        first = h5.root.waveforms[0].astype(float)
        pedestal = h5.root.calibration.pedestal_per_sample.read()
    assert len(events) == N_SHOWERS  # every simulated shower, triggered or not
    triggered = events["n_tels"] > 0
    assert 100 < triggered.sum() < N_SHOWERS
    assert len(tel_events) == events["n_tels"].sum()
    # electrons at their physical share of the cosmic rays (~0.3 %): present most runs
    assert {0, 101} <= set(np.unique(events["primary_id"]).tolist()) <= {0, 1, 101}
    assert np.median(first) == pytest.approx(400, abs=60)  # raw ADC with pedestal
    assert pedestal.mean() == pytest.approx(400.5, abs=5)
    context = json.loads(chain.file("simulation", ".uws/context.json").read_text())
    assert context["ctapipe"] == "0.32.0" and context["toy_instrument"]


def test_event_source_calibrates_to_true_charge(chain):
    """ctapipe finds the toy EventSource; CameraCalibrator recovers the true charge."""
    from cta.toy import dl0
    from ctapipe.calib import CameraCalibrator
    from ctapipe.io import EventSource

    path = chain.file("simulation", "events.dl0.h5")
    with EventSource(path, max_events=200) as source:
        assert isinstance(source, dl0.ToyDL0EventSource)
        assert source.is_simulation and source.obs_ids == [OBS_ID]
        calibrator = CameraCalibrator(subarray=source.subarray)
        ratios = []
        for event in source:
            calibrator(event)
            for tel_id, dl1 in event.dl1.tel.items():
                true = event.simulation.tel[tel_id].true_image
                bright = true > 30
                if bright.sum() >= 3:
                    ratios.append(dl1.image[bright].sum() / true[bright].sum())
    assert len(ratios) > 20
    assert np.median(ratios) == pytest.approx(1.0, abs=0.05)
    with EventSource(path, max_events=20, allowed_tels={1, 2}) as source:
        assert list(source.subarray.tel_ids) == [1, 2]
        seen = {tel_id for event in source for tel_id in event.r1.tel}
    assert seen and seen <= {1, 2}


# -------------------------------------------------------------------------- DL1, DL2


def test_calibration_writes_dl1_parameters(chain):
    from ctapipe.io import TableLoader

    path = chain.file("calibration", "events.dl1.h5")
    with TableLoader(
        path, dl1_parameters=True, dl1_images=True, true_images=True, simulated=True
    ) as loader:
        tel = loader.read_telescope_events()
    for col in DL1_COLUMNS:
        assert col in tel.colnames, col
    intensity = np.asarray(tel["hillas_intensity"])
    true_sum = np.asarray(tel["true_image_sum"], dtype=float)
    gamma = np.asarray(tel["true_shower_primary_id"]) == 0
    bright = (true_sum > 200) & gamma
    assert bright.sum() > 50
    # faint images may not survive cleaning, bright gamma ones do, with most of their light
    assert np.isfinite(intensity[bright]).mean() > 0.85
    ratio = np.nanmedian(intensity[bright] / true_sum[bright])
    assert 0.6 < ratio < 1.05
    length = u.Quantity(tel["hillas_length"], u.deg)[bright]
    width = u.Quantity(tel["hillas_width"], u.deg)[bright]
    assert np.nanmedian(length / width) > 1.3  # showers are elongated
    used = json.loads(chain.file("calibration", ".uws/used.json").read_text())
    assert used[0]["role"] == "DL0/Event" and used[0]["path"].endswith("events.dl0.h5")
    prov = json.loads(chain.file("calibration", ".uws/ctapipe_provenance.json").read_text())
    (activity,) = prov
    assert activity["activity_name"] == "ctapipe-process"
    assert activity["status"] == "completed"
    assert any(i["url"].endswith("events.dl0.h5") for i in activity["input"])
    assert any(o["url"].endswith("events.dl1.h5") for o in activity["output"])


def test_reconstruction_resolution(chain):
    """Committed models: direction, energy and gammaness behave like an IACT array's."""
    from astropy.coordinates import angular_separation

    ev = read_dl2(chain.file("reconstruction", "events.dl2.h5"))
    valid = np.asarray(ev["HillasReconstructor_is_valid"]) & np.asarray(
        ev["ExtraTreesRegressor_is_valid"]
    )
    gamma = valid & (np.asarray(ev["true_shower_primary_id"]) == 0)
    proton = valid & (np.asarray(ev["true_shower_primary_id"]) == 101)
    # protons follow the measured cosmic-ray spectrum (~E^-2.7): few survive at 4000 showers
    assert gamma.sum() > 50 and proton.sum() >= 3
    sep = angular_separation(
        u.Quantity(ev["HillasReconstructor_az"]),
        u.Quantity(ev["HillasReconstructor_alt"]),
        u.Quantity(ev["true_az"]),
        u.Quantity(ev["true_alt"]),
    ).to_value(u.deg)
    psf68 = np.percentile(sep[gamma], 68)
    ratio = np.asarray(ev["ExtraTreesRegressor_energy"]) / np.asarray(ev["true_energy"])
    eres68 = np.percentile(np.abs(ratio[gamma] - 1), 68)
    bias = np.median(ratio[gamma]) - 1
    gh = np.asarray(ev["ExtraTreesClassifier_prediction"])
    print(
        f"\nDL2 gammas: PSF68 {psf68:.3f} deg, energy resolution {eres68:.2f}, "
        f"bias {bias:+.2f}; mean gammaness {gh[gamma].mean():.2f} (gammas) "
        f"{gh[proton].mean():.2f} (protons)"
    )
    assert psf68 < 0.35
    assert eres68 < 0.45 and abs(bias) < 0.25
    assert gh[gamma].mean() > gh[proton].mean() + 0.3
    names = [
        a["activity_name"]
        for a in json.loads(
            chain.file("reconstruction", ".uws/ctapipe_provenance.json").read_text()
        )
    ]
    assert names == ["ctapipe-process", "ctapipe-apply-models"]
    roles = {
        e["role"] for e in json.loads(chain.file("reconstruction", ".uws/used.json").read_text())
    }
    assert roles == {"DL1/Event", "energy_model", "classifier_model"}


# ------------------------------------------------------------------------------- DL3


def test_analysis_writes_gadf_readable_by_gammapy(chain):
    from gammapy.data import DataStore

    summary = json.loads(chain.file("analysis", "dl3_summary.json").read_text())
    assert summary["obs_id"] == OBS_ID and summary["n_selected"] > 20
    store = DataStore.from_dir(chain.store)
    assert list(store.obs_table["OBS_ID"]) == [OBS_ID]
    assert set(store.hdu_table["HDU_TYPE"]) == {"events", "gti", "aeff", "edisp", "psf", "bkg"}
    assert set(store.hdu_table["FILE_DIR"]) == {"data"}  # relative
    (obs,) = store.get_observations([OBS_ID], required_irf="full-enclosure")
    assert len(obs.events.table) == summary["n_selected"]
    assert obs.observation_live_time_duration.to_value(u.s) == pytest.approx(600, abs=1e-3)
    assert obs.pointing.fixed_icrs.separation(SOURCE).deg == pytest.approx(0.5, abs=1e-3)
    assert obs.aeff.axes["offset"].edges.max().to_value(u.deg) == pytest.approx(3.0)
    assert np.all(obs.bkg.data > 0)
    # the point source is where it was simulated, not at the mirror position
    sep_src = obs.events.radec.separation(SOURCE).deg
    mirror = obs.pointing.fixed_icrs.directional_offset_by(
        obs.pointing.fixed_icrs.position_angle(SOURCE) + 180 * u.deg, 0.5 * u.deg
    )
    sep_off = obs.events.radec.separation(mirror).deg
    n_on, n_off = (sep_src < 0.25).sum(), (sep_off < 0.25).sum()
    print(
        f"\nDL3: {len(sep_src)} events, {n_on} within 0.25 deg of the source, "
        f"{n_off} at the mirror position"
    )
    assert n_on > 0.4 * len(sep_src) and n_on > 5 * max(n_off, 1)
    # job output and store file are the same observation
    job_file = chain.file("analysis", "dl3.fits.gz")
    assert fits.getheader(job_file, "EVENTS")["OBS_ID"] == OBS_ID
    assert Path(summary["store_file"]).is_file()


def test_dl3_headers_and_cuts(chain):
    """GADF keywords present; every DL3 event passes the IRFs' gammaness cut."""
    from cta.selection import load_cuts
    from pyirf.cuts import evaluate_binned_cut

    path = chain.file("analysis", "dl3.fits.gz")
    with fits.open(path) as hdul:
        names = [h.name for h in hdul[1:]]
        assert names == [
            "EVENTS",
            "GTI",
            "EFFECTIVE AREA",
            "ENERGY DISPERSION",
            "PSF",
            "BACKGROUND",
        ]
        h = hdul["EVENTS"].header
        for key in EVENT_KEYS:
            assert key in h, key
        assert (h["HDUCLASS"], h["HDUCLAS1"], h["OBJECT"]) == ("GADF", "EVENTS", "PKS 2155-304")
        assert h["TSTOP"] - h["TSTART"] == pytest.approx(600, abs=1e-3)
        assert hdul["GTI"].header["HDUCLAS1"] == "GTI"
        for name, clas2 in (
            ("EFFECTIVE AREA", "EFF_AREA"),
            ("ENERGY DISPERSION", "EDISP"),
            ("PSF", "PSF"),
            ("BACKGROUND", "BKG"),
        ):
            assert hdul[name].header["HDUCLAS2"] == clas2
            assert hdul[name].header["HDUCLAS3"] == "FULL-ENCLOSURE"
        events = hdul["EVENTS"].data
        assert np.all((events["TIME"] >= h["TSTART"]) & (events["TIME"] <= h["TSTOP"]))
    cuts = load_cuts(MODELS / "cuts.fits")
    passed = evaluate_binned_cut(
        np.asarray(events["GAMMANESS"], dtype=float),
        events["ENERGY"] * u.TeV,
        cuts.gh_cuts,
        np.greater_equal,
    )
    assert passed.all()


def test_analysis_refuses_duplicate_obs_id_and_zenith_mismatch(chain, tmp_path):
    dl2 = chain.file("reconstruction", "events.dl2.h5")
    proc = run_job("analysis", {"dl2": str(dl2)}, tmp_path / "dup", chain.store, check=False)
    assert "already in the DL3 store" in error_line(proc, tmp_path / "dup")
    # the first through a real process (exit code, stderr), this one in-process
    proc = run_in_process(
        "analysis",
        {"dl2": str(dl2), "obs_id": 43, "max_zenith_difference": 0},
        tmp_path / "zen",
        chain.store,
    )
    assert "differs from the IRF's" in error_line(proc, tmp_path / "zen")
    from gammapy.data import DataStore

    assert list(DataStore.from_dir(chain.store).obs_table["OBS_ID"]) == [OBS_ID]


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("job", "params", "expected"),
    [
        ("calibration", {"dl0": "missing.h5"}, "input 'dl0' not found: missing.h5"),
        ("calibration", {"dl0": "parameters.json"}, "is not an HDF5 file"),
        ("reconstruction", {"dl1": "DL0"}, "has no DL1 image parameters"),
        (
            "reconstruction",
            {"dl1": "DL1", "energy_model": "parameters.json"},
            "is not a ctapipe model",
        ),
        ("analysis", {"dl2": "DL1"}, "lacks reconstructed"),
        ("analysis", {"dl2": "DL2", "cuts": "DL1"}, "is not a ctapipe cuts file"),
        ("irf_production", {"gamma_train": "DL2", "proton_train": "DL2"}, "must hold only"),
        (
            "simulation",
            {"particle": "neutrino"},
            "must be one of gamma, gamma_diffuse, proton, electron, mixed",
        ),
        ("simulation", {"n_showers": "many"}, "'many' is not an integer"),
    ],
)
def test_bad_input_gives_one_clear_error(chain, tmp_path, job, params, expected):
    """In this process (the job's script as ``__main__``, the job's environment and
    directory): a new interpreter per case would import the science stack again. The
    exit code and the error's way out of a real process are checked by
    ``test_analysis_refuses_duplicate_obs_id_and_zenith_mismatch``."""
    files = {
        "DL0": chain.file("simulation", "events.dl0.h5"),
        "DL1": chain.file("calibration", "events.dl1.h5"),
        "DL2": chain.file("reconstruction", "events.dl2.h5"),
    }
    params = {k: str(files.get(v, v)) for k, v in params.items()}
    proc = run_in_process(job, params, tmp_path / job, tmp_path / "store")
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert expected in error_line(proc, tmp_path / job)


def test_job_directory_is_not_on_the_import_path(tmp_path):
    """A user's upload lands in the job directory: the script line (``python -P -m``)
    never imports from there, even a module named like the package or numpy."""
    job = tmp_path / "job"
    env = prepare("gammapy_maps", {"obs_ids": ""}, job, tmp_path / "store", None)
    for name in ("numpy.py", "cta.py", "workers.py"):
        (job / name).write_text("raise SystemExit('imported from the job directory')\n")
    proc = subprocess.run(
        ["bash", SCRIPT_FILE], cwd=job, env=env, capture_output=True, text=True, timeout=300
    )
    done = Finished(proc.returncode, proc.stdout, proc.stderr, 0.0)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert error_line(done, job) == "obs_ids: empty selection, give at least one observation id"


# ------------------------------------------------------------------- job definitions


@pytest.mark.parametrize("name", CHAIN_JOBS)
def test_job_definition(name):
    from uws_server.jdl.votable import read_votable_file

    resource = jdl(name)
    assert resource.ID == name and resource.utype == "voprov:ActivityDescription"
    params = {p.name: p.value for p in resource.params}
    assert params["script"] == f'PYTHONPATH="$UWS_SCRIPTS_DIR:$UWS_LIB" python -P -m cta.{name}'
    assert (CTA / f"{name}.py").is_file()
    (inputs,) = [g for g in resource.groups if g.name == "InputParams"]
    input_names = {p.name: p for p in inputs.entries}
    used = jdl_entities(name, "Used")
    for entity, fields in used.items():
        assert input_names[entity].xtype == "application/octet-stream"
        assert fields["url"] == "file://$ID"
    generated = jdl_entities(name, "Generated")
    assert generated and all(g["default"] for g in generated.values())
    source = (CTA / f"{name}.py").read_text()
    for entity, fields in generated.items():
        assert f'"{entity}", "{fields["default"]}"' in source, entity
    for param in input_names:
        assert f'"{param}"' in source, param
    defn = read_votable_file(JOBDEFS / f"{name}_vot.xml")  # the service's own validation
    assert [e.name for e in defn.used] == list(used)


# --------------------------------------------------------------------- IRF production


def test_irf_production_tiny(irf_training, tmp_path):
    """The whole MC path at tiny size; the committed models are not touched."""
    before = {p.name: sha256(p) for p in MODELS.iterdir() if p.is_file()}
    job = tmp_path / "irf"
    proc = run_step(
        "irf_production",
        {"gamma_train": irf_training["gamma"], "proton_train": irf_training["proton"]}
        | {"n_estimators": 10},
        job,
        tmp_path / "store",
    )
    print(f"\nirf_production (tiny): {proc.elapsed:.1f} s")
    assert "cuts and IRFs use the training events" in proc.stdout
    from gammapy.irf import PSF3D, Background2D, EffectiveAreaTable2D, EnergyDispersion2D

    irf = job / "irf.fits.gz"
    aeff = EffectiveAreaTable2D.read(irf, hdu="EFFECTIVE AREA")
    assert aeff.axes["offset"].nbin == 6
    assert aeff.evaluate(offset=0.5 * u.deg, energy_true=1 * u.TeV).to_value(u.m**2) > 1e4
    assert np.all(Background2D.read(irf, hdu="BACKGROUND").data > 0)
    PSF3D.read(irf, hdu="PSF")
    EnergyDispersion2D.read(irf, hdu="ENERGY DISPERSION")
    summary = json.loads((job / "irf_summary.json").read_text())
    assert summary["pointing"]["zenith"] < 10
    assert 0.02 < summary["psf68_1tev_deg"] < 0.5
    for name in MODEL_FILES + ("benchmarks.fits.gz",):
        assert (job / name).stat().st_size > 0
    names = [
        a["activity_name"] for a in json.loads((job / ".uws/ctapipe_provenance.json").read_text())
    ]
    assert names[:2] == ["ctapipe-train-energy-regressor", "ctapipe-apply-models"]
    assert "ctapipe-compute-irf" in names
    assert {p.name: sha256(p) for p in MODELS.iterdir() if p.is_file()} == before


def test_committed_models_match_manifest():
    manifest = json.loads((MODELS / "MANIFEST.json").read_text())
    total = 0
    for name, entry in manifest["files"].items():
        path = MODELS / name
        assert sha256(path) == entry["sha256"], name
        total += path.stat().st_size
    assert total < 5e6
    assert set(manifest["files"]) >= set(MODEL_FILES)
