"""Benchmark of the chain's IRF production: MC statistics, errors and the time they cost.

Why a benchmark and not a test: the production that gives stated, small errors (a few
per cent per bin in the core energy range) throws tens of thousands of showers and takes
tens of minutes on 2 cores; the test suite only checks, on synthetic counts, that the
errors are computed and honest (tests/test_cta_irf.py).

What it runs: the MC sets of ``cta.make_models.SAMPLES`` (point-like gammas and protons
to train, diffuse gammas over a 3 deg cone, protons and electrons to compute the IRFs),
each through ``simulation`` -> ``calibration`` -> ``reconstruction`` (geometry only) as
jobs (``python -P -m cta.<step>`` in a job directory, as the service runs them; two sets
at a time), then ``irf_production``. It records the wall time of every job and the
``irf_statistics`` of ``irf_summary.json`` (selected gammas, relative error of the
effective area per offset bin in the core energy range, background events and
electrons, capped bins) to ``bench/out/irf/results.json`` and prints a Markdown table.
The products stay in ``--workdir`` (``irf_production/``), in the layout
``scripts/cta/make_models.py --install-only --workdir DIR`` installs as the committed
models.

    .venv/bin/python bench/bench_irf.py [--scale 1.0] [--workdir /tmp/uws-bench-irf]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
sys.path.insert(0, str(SCRIPTS))

from cta.make_models import SAMPLES, run_job  # noqa: E402

OUT = REPO / "bench" / "out" / "irf"
ENV = {"OMP_NUM_THREADS": "1"}  # on top of this process's environment


def run_step(step: str, job_dir: Path, params: dict) -> float:
    """Run ``cta.<step>`` as a job in ``job_dir`` (make_models' runner, with :data:`ENV`)."""
    return run_job(step, job_dir, params, env=ENV)


def mc_set(workdir: Path, name: str, scale: float) -> tuple[str, Path, dict]:
    """simulation -> calibration -> reconstruction (geometry only) of one MC set."""
    params = dict(SAMPLES[name])
    params["n_showers"] = max(50, int(params["n_showers"] * scale))
    base = workdir / name
    times = {"n_showers": params["n_showers"]}
    times["simulation"] = run_step("simulation", base / "simulation", params)
    dl0 = base / "simulation" / "events.dl0.h5"
    times["calibration"] = run_step("calibration", base / "calibration", {"dl0": dl0})
    dl1 = base / "calibration" / "events.dl1.h5"
    times["reconstruction"] = run_step(
        "reconstruction", base / "reconstruction", {"dl1": dl1, "apply_models": "false"}
    )
    return name, base / "reconstruction" / "events.dl2.h5", times


def fov_background_fit(obs_file: Path, dl3_store: Path, obs_id: int, target: tuple) -> dict:
    """Fit the FoV background model (its norm, as ``FoVBackgroundMaker(method="fit")``)
    of one chain observation outside a 0.3 deg circle around the target: does it converge
    on the background IRF this production wrote?"""
    import astropy.units as u
    import numpy as np
    from astropy.coordinates import SkyCoord
    from astropy.io import fits
    from gammapy.data import DataStore
    from gammapy.datasets import MapDataset
    from gammapy.makers import MapDatasetMaker, SafeMaskMaker
    from gammapy.maps import Map, MapAxis, WcsGeom
    from gammapy.modeling import Fit
    from gammapy.modeling.models import FoVBackgroundModel
    from regions import CircleSkyRegion

    (obs,) = DataStore.from_dir(dl3_store).get_observations([obs_id])
    centre = SkyCoord(*target, unit="deg")
    axis = MapAxis.from_energy_bounds(0.3, 30, nbin=6, unit="TeV")
    geom = WcsGeom.create(skydir=obs.get_pointing_icrs(obs.tmid), width=5, binsz=0.05,
                          frame="icrs", axes=[axis])  # fmt: skip
    empty = MapDataset.create(geom, energy_axis_true=MapAxis.from_energy_bounds(
        0.1, 100, nbin=15, unit="TeV", name="energy_true"))  # fmt: skip
    dataset = MapDatasetMaker(selection=["counts", "exposure", "background"]).run(empty, obs)
    dataset = SafeMaskMaker(methods=["offset-max"], offset_max=2.5 * u.deg).run(dataset, obs)
    exclusion = ~geom.to_image().region_mask([CircleSkyRegion(centre, 0.3 * u.deg)])
    dataset.mask_fit = Map.from_geom(
        geom, data=np.broadcast_to(exclusion.data, geom.data_shape).copy(), dtype=bool
    )
    model = FoVBackgroundModel(dataset_name=dataset.name)
    dataset.models = [model]
    predicted_before = float(dataset.npred_background().data[dataset.mask_safe.data
                             & dataset.mask_fit.data].sum())  # fmt: skip
    # the mixed observation's cosmic rays are a fraction of the thrown showers, the IRF's
    # background the measured cosmic-ray flux: the norm absorbs that (start near it)
    counts = float(dataset.counts.data[dataset.mask_safe.data & dataset.mask_fit.data].sum())
    model.spectral_model.norm.value = max(counts, 1.0) / predicted_before
    model.spectral_model.norm.min = 0.0
    result = Fit().run([dataset])
    mask = dataset.mask_safe.data & dataset.mask_fit.data
    with fits.open(obs_file) as hdul:
        n_events = np.asarray(hdul["BACKGROUND"].data["N_EVENTS"][0])
    return {
        "converged": bool(result.success),
        "message": str(result.message),
        "norm": float(model.spectral_model.norm.value),
        "norm_err": float(model.spectral_model.norm.error),
        "predicted_background_before_fit": predicted_before,
        "counts_outside_exclusion": float(dataset.counts.data[mask].sum()),
        "predicted_background": float(dataset.npred_background().data[mask].sum()),
        "background_bins_at_floor": float(np.mean(n_events == 0)),
    }


def observation(workdir: Path, irf_dir: Path, n_showers: int) -> dict:
    """A mixed 30-min observation through the chain with this production's models, cuts
    and IRFs, into a DL3 store of its own; then the FoV background fit on it."""
    base = workdir / "observation"
    store = base / "store"
    env_store = {"UWS_DL3_STORE": str(store)}
    ENV.update(env_store)
    obs_id, target = 7, (329.717, -30.226)
    times = {"n_showers": n_showers}
    sim = dict(particle="mixed", n_showers=n_showers, proton_fraction=0.7, seed=77)
    times["simulation"] = run_step("simulation", base / "simulation", {**sim, "obs_id": obs_id})
    times["calibration"] = run_step(
        "calibration", base / "calibration", {"dl0": base / "simulation" / "events.dl0.h5"}
    )
    times["reconstruction"] = run_step(
        "reconstruction",
        base / "reconstruction",
        {
            "dl1": base / "calibration" / "events.dl1.h5",
            "energy_model": irf_dir / "energy_regressor.pkl",
            "classifier_model": irf_dir / "particle_classifier.pkl",
        },
    )
    times["analysis"] = run_step(
        "analysis",
        base / "analysis",
        {
            "dl2": base / "reconstruction" / "events.dl2.h5",
            "cuts": irf_dir / "cuts.fits",
            "irf": irf_dir / "irf.fits.gz",
        },
    )
    summary = json.loads((base / "analysis" / "dl3_summary.json").read_text())
    fit = fov_background_fit(base / "analysis" / "dl3.fits.gz", store, obs_id, target)
    # the spectrum of that observation: its fit result states the IRF's MC uncertainty
    ra, dec = target
    params = {"obs_ids": obs_id, "RA": ra, "Dec": dec, "emin": 0.3, "emax": 20, "nbins": 6}
    times["gammapy_spectra"] = run_step("gammapy_spectra", base / "spectra", params)
    spectrum = json.loads((base / "spectra" / "fit_result.json").read_text())
    keys = ("index", "index_err", "amplitude", "amplitude_err", "amplitude_err_irf")
    return {
        "times": times,
        "dl3": summary,
        "fov_background_fit": fit,
        "spectrum": {k: spectrum[k] for k in keys},
        "irf_uncertainty": {
            k: v for k, v in spectrum["irf_uncertainty"].items() if k != "observations"
        },
    }


def percent(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f} %"


def markdown(result: dict) -> str:
    s = result["irf_statistics"]
    lines = [
        "| MC set | showers | simulation (s) | calibration (s) | reconstruction (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, t in result["mc_sets"].items():
        lines.append(
            f"| {name} | {t['n_showers']} | {t['simulation']:.0f} | {t['calibration']:.0f} "
            f"| {t['reconstruction']:.0f} |"
        )
    lines += [
        "",
        f"irf_production: {result['irf_production_s']:.0f} s; total wall time "
        f"{result['total_s'] / 60:.1f} min (scale {result['scale']}).",
        "",
        "| FoV offset bin (deg) | selected gammas, core range | A_eff rel. error median | max |",
        "|---|---:|---:|---:|",
    ]
    edges = s["aeff_offset_bins_deg"]
    for i, stats in enumerate(s["aeff_relerr_core_by_offset"]):
        lines.append(
            f"| {edges[i]:.2f}-{edges[i + 1]:.2f} | {s['aeff_selected_core_by_offset'][i]} "
            f"| {percent(stats['median'])} | {percent(stats['max'])} |"
        )
    lines += [
        "",
        f"Gammas: {s['gammas_selected']} of {s['gammas_thrown']} thrown selected; "
        f"A_eff bins capped at the thrown area: {s['aeff_bins_capped']}. Background: "
        f"{s['background_events']} selected MC events ({s['background_electrons']} electrons), "
        f"{s['background_bins_measured']} of {s['background_bins']} bins measured; Poisson "
        f"relative error in the core range median {percent(s['bkg_relerr_core_median'], 0)}.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="shower number factor")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/uws-bench-irf"))
    parser.add_argument("--parallel", type=int, default=2, help="MC sets at a time")
    parser.add_argument("--n-jobs", type=int, default=2, help="threads for the ML training")
    parser.add_argument(
        "--observation-showers",
        type=int,
        default=10000,
        help="showers of the mixed observation for the FoV background fit (0: none)",
    )
    parser.add_argument(
        "--reuse", action="store_true", help="keep the products already in --workdir"
    )
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    irf_dir = args.workdir / "irf_production"
    previous = OUT / "results.json"
    if args.reuse and (irf_dir / "irf_summary.json").is_file():
        old = json.loads(previous.read_text()) if previous.is_file() else {}
        mc_sets = old.get("mc_sets", {})
        irf_s, total = old.get("irf_production_s", float("nan")), old.get("total_s", float("nan"))
    else:
        with ThreadPoolExecutor(args.parallel) as pool:
            done = list(pool.map(lambda n: mc_set(args.workdir, n, args.scale), SAMPLES))
        dl2 = {name: path for name, path, _ in done}
        irf_s = run_step("irf_production", irf_dir, {**dl2, "n_jobs": args.n_jobs})
        mc_sets = {name: times for name, _, times in done}
        total = time.monotonic() - start
    summary = json.loads((irf_dir / "irf_summary.json").read_text())
    result = {
        "scale": args.scale,
        "mc_sets": mc_sets,
        "irf_production_s": irf_s,
        "total_s": total,
        "load_average": os.getloadavg(),
        "irf_statistics": summary["irf_statistics"],
        "aeff_1tev_m2": summary.get("aeff_1tev_m2"),
        "psf68_1tev_deg": summary.get("psf68_1tev_deg"),
        "energy_resolution_1tev": summary.get("energy_resolution_1tev"),
        "background_floor_applied": summary.get("background_floor_applied"),
    }
    if args.observation_showers:
        result["observation"] = observation(args.workdir, irf_dir, args.observation_showers)
        print(json.dumps(result["observation"], indent=1))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (OUT / "results.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
