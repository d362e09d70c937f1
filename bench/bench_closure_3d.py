"""Closure of the 3D likelihood fit (``cta.gammapy_3d_fit``) over many seeds (issue 15.1).

Run: ``.venv/bin/python bench/bench_closure_3d.py --seeds 8`` (every case of
:data:`CASES` per seed; a few minutes on 2 cores); ``--merge a.json b.json`` redraws the
table and plot from saved runs.

The data are drawn in this process with the fast path's own pieces, binned: the IRFs of
``cta.simulate_dl3`` (CTA prod3b South, ``run_irfs``) for two wobble runs around the cube centre,
reduced to a stacked cube by the job's own ``stack_observations`` (IRFs only), the true
source (point or Gaussian, a spectral model of ``cta.gammapy_spectra``) plus the
background template at norm 1 give the expected counts, and the counts are a Poisson draw
of them. The fit is the job's ``fit_3d`` (background-only fit, TS map, source + FoV
background from the TS peak). Binned draws skip the event sampler (seconds per run) so
that many seeds fit in a benchmark and a few in the test suite; the event path through
DL3 files is what ``tests/test_cta_3d_fit.py`` runs.

Pull = (fit - truth) / error for the index (slope at 1 TeV), the amplitude at 1 TeV, RA
and Dec (the coordinate errors), and the curvature, cut-off and Gaussian width where the
case has them. Over N seeds each mean pull must be within 3 standard errors (3/sqrt(N))
of 0. Outputs: a Markdown table on stdout, ``bench/out/closure_3d.json`` and the pull
distributions ``docs/closure_3d_pulls.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
# isort: off
from tests import cta_support  # noqa: E402  (also puts the cta package on sys.path)

# isort: on

TARGET = (329.717, -30.226)  # cube centre and wobble centre (culminates at the tstart)
RUNS, RUN_MINUTES, WOBBLE_DEG = 2, 15.0, 0.5
# Small cube: the suite's budget. The job's defaults are finer (2 deg, 0.02 deg, 8 bins).
GEOMETRY = {"width": 1.2, "binsz": 0.025, "emin": 0.3, "emax": 30.0, "nbins": 5}
TRUE_PER_DECADE = 4

# Held-out truths (none is a job default): positions off the cube centre at several
# angles, indices 2.0-3.0, three spectral models, a point and a Gaussian source.
CASES: tuple[dict[str, Any], ...] = (
    {"model": "power_law", "index": 2.6, "amplitude": 4e-12, "offset": 0.0, "pa": 0},
    {"model": "power_law", "index": 2.2, "amplitude": 3e-12, "offset": 0.3, "pa": 45},
    {"model": "power_law", "index": 3.0, "amplitude": 6e-12, "offset": 0.25, "pa": 200},
    {"model": "log_parabola", "index": 2.4, "amplitude": 5e-12, "beta": 0.2, "offset": 0.2,
     "pa": 120},
    {"model": "exp_cutoff_power_law", "index": 2.0, "amplitude": 4e-12, "e_cut": 5.0,
     "offset": 0.25, "pa": 250},
    {"model": "power_law", "index": 2.8, "amplitude": 6e-12, "offset": 0.1, "pa": 10,
     "spatial": "gauss", "sigma": 0.1},
)  # fmt: skip
MAIN_PULLS = ("index", "amplitude", "ra", "dec")


@lru_cache(maxsize=4)
def reduced_irfs(geometry: tuple[tuple[str, float], ...] = tuple(GEOMETRY.items())):
    """The stacked cube's exposure, background, PSF and energy dispersion (no counts)
    for :data:`RUNS` wobble runs of the fast path's IRFs (CTA prod3b), made once."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from astropy.time import Time
    from cta import gammapy_3d_fit, simulate_dl3
    from gammapy.data import FixedPointingInfo, Observation, observatory_locations

    g = dict(geometry)
    tstart = Time(simulate_dl3.DEFAULT_TSTART, scale="utc")
    observations = []
    for i in range(RUNS):
        pointing = simulate_dl3.wobble_pointing(*TARGET, WOBBLE_DEG, i)
        start = tstart + i * (RUN_MINUTES + 2) * u.min
        irfs = fast_path_irfs(pointing, start)
        observations.append(
            Observation.create(
                pointing=FixedPointingInfo(fixed_icrs=pointing.icrs),
                location=observatory_locations["ctao_south"],
                obs_id=1001 + i,
                tstart=start,
                livetime=RUN_MINUTES * u.min,
                irfs=irfs,
                reference_time=tstart,
            )
        )
    target = SkyCoord(*TARGET, unit="deg", frame="icrs")
    geom = gammapy_3d_fit.make_geometry(
        target, g["width"], g["binsz"], g["emin"], g["emax"], int(g["nbins"])
    )
    dataset, _ = gammapy_3d_fit.stack_observations(
        observations, geom, with_counts=False, true_per_decade=TRUE_PER_DECADE
    )
    return dataset


def fast_path_irfs(pointing, start):
    """The IRFs ``simulate_dl3`` gives a run of this pointing and start: CTA prod3b
    performance of the South site at the tabulated zenith nearest to the run's."""
    from cta import simulate_dl3

    zenith = simulate_dl3.pointing_zenith(pointing, start, RUN_MINUTES * 60, "ctao_south")
    return simulate_dl3.run_irfs("south", zenith)[1]


def true_position(case: dict[str, Any]):
    """Where the case's source is: ``offset`` deg from the cube centre at angle ``pa``."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    centre = SkyCoord(*TARGET, unit="deg", frame="icrs")
    return centre.directional_offset_by(case["pa"] * u.deg, case["offset"] * u.deg)


def true_model(case: dict[str, Any]):
    """The true source of a case (its own spectral model and shape)."""
    import astropy.units as u
    from cta import gammapy_spectra
    from gammapy.modeling.models import GaussianSpatialModel, PointSpatialModel, SkyModel

    spectral = gammapy_spectra.spectral_model(
        case["model"], case["index"], case["amplitude"],
        beta=case.get("beta", 0.1), e_cut_tev=case.get("e_cut", 10.0),
    )  # fmt: skip
    pos = true_position(case)
    if case.get("spatial", "point") == "gauss":
        shape = GaussianSpatialModel(
            lon_0=pos.ra, lat_0=pos.dec, sigma=case["sigma"] * u.deg, frame="icrs"
        )
    else:
        shape = PointSpatialModel(lon_0=pos.ra, lat_0=pos.dec, frame="icrs")
    return SkyModel(spectral_model=spectral, spatial_model=shape, name="truth")


def simulated_dataset(case: dict[str, Any], seed: int):
    """The reduced cube with Poisson counts of the true source + background (norm 1)."""
    import numpy as np
    from gammapy.maps import Map
    from gammapy.modeling.models import FoVBackgroundModel

    dataset = reduced_irfs().copy(name="stacked")
    dataset.models = [true_model(case), FoVBackgroundModel(dataset_name=dataset.name)]
    expected = dataset.npred().data
    counts = np.random.default_rng(seed).poisson(expected).astype(float)
    dataset.counts = Map.from_geom(dataset.counts.geom, data=counts)
    dataset.models = None
    return dataset


def closure(case: dict[str, Any], seed: int, compare: bool = False) -> dict[str, Any]:
    """Fit one simulated case with the job's fit; its pulls and the fit summary."""
    from astropy.coordinates import SkyCoord
    from cta import gammapy_3d_fit

    spatial = case.get("spatial", "point")
    target = SkyCoord(*TARGET, unit="deg", frame="icrs")
    t0 = time.process_time()
    dataset = simulated_dataset(case, seed)
    fitted = gammapy_3d_fit.fit_3d(
        dataset, target, spatial, case["model"], GEOMETRY["width"],
        compare=compare,
    )  # fmt: skip
    fit = gammapy_3d_fit.fit_summary(fitted, target, spatial, case["model"])
    pos = true_position(case)
    pulls = {
        "index": (fit["index"] - case["index"]) / fit["index_err"],
        "amplitude": (fit["amplitude"] - case["amplitude"]) / fit["amplitude_err"],
        "ra": (fit["ra"] - pos.ra.deg) / fit["ra_err"],
        "dec": (fit["dec"] - pos.dec.deg) / fit["dec_err"],
    }
    spectral = fit["parameters"]["spectral"]
    if "beta" in case:
        pulls["beta"] = (spectral["beta"]["value"] - case["beta"]) / spectral["beta"]["error"]
    if "e_cut" in case:
        lam = spectral["lambda_"]
        pulls["lambda"] = (lam["value"] - 1 / case["e_cut"]) / lam["error"]
    if spatial == "gauss":
        pulls["sigma"] = (fit["sigma"] - case["sigma"]) / fit["sigma_err"]
    return {
        "case": case,
        "seed": seed,
        "pulls": pulls,
        "fit": fit,
        "cpu_s": round(time.process_time() - t0, 2),
    }


# The event path (--dl3): one held-out truth simulated by the simulate_dl3 job into a DL3
# store, fitted by the gammapy_3d_fit job at a target 0.15 deg away, as the service runs
# them (tests.cta_support.run_in_process: job directory, parameters, environment).
DL3_CASE = {"index": 2.4, "amplitude": 5e-12, "offset": 0.15, "pa": 90, "model": "power_law"}
DL3_CUBE = {"width": "1.6", "binsz": "0.02", "nbins": "6", "ts_downsampling": "4"}


def dl3_closure(seed: int, work: Path) -> dict[str, Any]:
    """simulate_dl3 (2 x 15 min, source at the cube centre) then gammapy_3d_fit with the
    target ``DL3_CASE['offset']`` away: pulls of index, amplitude, RA, Dec."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    store = work / f"store-{seed}"
    sim = {"RA": str(TARGET[0]), "Dec": str(TARGET[1]), "n_obs": "2", "livetime": "15"}
    sim.update(seed=str(seed), index=str(DL3_CASE["index"]), amplitude=str(DL3_CASE["amplitude"]))
    t0 = time.process_time()
    done = cta_support.run_in_process("simulate_dl3", sim, work / f"sim-{seed}", store)
    if done.returncode != 0:
        raise RuntimeError(f"simulate_dl3 failed: {done.stderr[-2000:]}")
    obs_ids = json.loads((work / f"sim-{seed}" / "summary.json").read_text())["obs_ids"]
    source = SkyCoord(*TARGET, unit="deg", frame="icrs")
    target = source.directional_offset_by(DL3_CASE["pa"] * u.deg, DL3_CASE["offset"] * u.deg)
    params = {"obs_ids": " ".join(map(str, obs_ids)), "RA": str(target.ra.deg)}
    params.update({"Dec": str(target.dec.deg), **DL3_CUBE})
    t1 = time.process_time()
    done = cta_support.run_in_process("gammapy_3d_fit", params, work / f"fit-{seed}", store)
    if done.returncode != 0:
        raise RuntimeError(f"gammapy_3d_fit failed: {done.stderr[-2000:]}")
    fit = json.loads((work / f"fit-{seed}" / "fit_result.json").read_text())
    return {
        "case": {**DL3_CASE, "path": "dl3"},
        "seed": seed,
        "pulls": {
            "index": (fit["index"] - DL3_CASE["index"]) / fit["index_err"],
            "amplitude": (fit["amplitude"] - DL3_CASE["amplitude"]) / fit["amplitude_err"],
            "ra": (fit["ra"] - TARGET[0]) / fit["ra_err"],
            "dec": (fit["dec"] - TARGET[1]) / fit["dec_err"],
        },
        "fit": {k: v for k, v in fit.items() if k not in ("parameters", "irf_uncertainty")},
        "cpu_s": round(time.process_time() - t0, 2),
        "cpu_fit_s": round(time.process_time() - t1, 2),
    }


def mean_pulls(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per pulled quantity: N, mean, standard deviation, 3 standard errors, max |pull|."""
    names = sorted({k for r in runs for k in r["pulls"]})
    out = {}
    for name in names:
        values = [r["pulls"][name] for r in runs if name in r["pulls"]]
        n = len(values)
        mean = sum(values) / n
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
        out[name] = {
            "n": n,
            "mean": mean,
            "sd": sd,
            "three_se": 3 / math.sqrt(n),
            "max_abs": max(abs(v) for v in values),
            "pass": abs(mean) < 3 / math.sqrt(n),
        }
    return out


def plot(runs: list[dict[str, Any]], path: Path) -> None:
    """Histograms of the pulls with the unit Gaussian they should follow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    every = (*MAIN_PULLS, "beta", "lambda", "sigma")
    names = [n for n in every if any(n in r["pulls"] for r in runs)]
    fig, axes = plt.subplots(1, len(names), figsize=(2.6 * len(names), 2.8), sharey=False)
    x = np.linspace(-4, 4, 200)
    for ax, name in zip(axes, names, strict=True):
        values = np.array([r["pulls"][name] for r in runs if name in r["pulls"]])
        ax.hist(values, bins=np.linspace(-4, 4, 17), color="C0", alpha=0.7)
        ax.plot(x, len(values) * 0.5 * np.exp(-0.5 * x**2) / np.sqrt(2 * np.pi), color="C1")
        sd = values.std(ddof=1) if len(values) > 1 else 0.0
        ax.set_title(f"{name}: {values.mean():+.2f} ± {sd:.2f}", fontsize=9)
        ax.set_xlabel("pull")
    axes[0].set_ylabel("fits")
    fig.suptitle("gammapy_3d_fit closure: (fit - truth) / error", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def table(runs: list[dict[str, Any]]) -> str:
    """The Markdown summary table of the mean pulls."""
    lines = [
        f"| pull ({len(runs)} fits, one seed each) | N | mean | sd | 3 s.e. | max abs | pass |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in mean_pulls(runs).items():
        lines.append(
            f"| {name} | {s['n']} | {s['mean']:+.2f} | {s['sd']:.2f} | {s['three_se']:.2f} "
            f"| {s['max_abs']:.2f} | {'yes' if s['pass'] else 'NO'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--first-seed", type=int, default=1000)
    parser.add_argument("--compare", action="store_true", help="also refit the power law")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "closure_3d.json")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "closure_3d_pulls.png")
    parser.add_argument("--merge", nargs="*", type=Path, help="saved runs to merge, no fit")
    parser.add_argument(
        "--dl3", action="store_true", help="the event path through the two jobs instead"
    )
    args = parser.parse_args()

    if args.merge:
        runs = [r for p in args.merge for r in json.loads(p.read_text())["runs"]]
    else:
        from cta import job

        job.setup_runtime()
        import logging

        logging.getLogger().setLevel(logging.WARNING)
        runs, failures = [], []
        t0 = time.perf_counter()
        if args.dl3:
            import tempfile

            work = Path(tempfile.mkdtemp(prefix="closure3d-"))
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                run = dl3_closure(seed, work)
                runs.append(run)
                print(
                    f"seed {seed} (DL3): "
                    + " ".join(f"{k} {v:+.2f}" for k, v in run["pulls"].items())
                    + f"  TS {run['fit']['ts']:.0f}  {run['cpu_s']:.1f} s CPU"
                    + f" ({run['cpu_fit_s']:.1f} s the fit job)",
                    flush=True,
                )
        for seed in range(args.first_seed, args.first_seed + args.seeds * (not args.dl3)):
            for i, case in enumerate(CASES):
                try:
                    run = closure(case, seed * 10 + i, compare=args.compare)
                except job.JobError as exc:  # a fit that does not converge: counted
                    failures.append({"case": case, "seed": seed * 10 + i, "error": str(exc)})
                    print(f"seed {seed} case {i}: FAILED {exc}", flush=True)
                    continue
                runs.append(run)
                print(
                    f"seed {seed} case {i} ({case['model']}, {case.get('spatial', 'point')}): "
                    + " ".join(f"{k} {v:+.2f}" for k, v in run["pulls"].items())
                    + f"  TS {run['fit']['ts']:.0f}  {run['cpu_s']:.1f} s CPU",
                    flush=True,
                )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "geometry": DL3_CUBE if args.dl3 else GEOMETRY,
            "runs_per_case": RUNS,
            "run_minutes": RUN_MINUTES,
            "wall_s": round(time.perf_counter() - t0, 1),
        }
        args.out.write_text(
            json.dumps({"meta": meta, "runs": runs, "failures": failures}, indent=1) + "\n"
        )
        print(f"fits: {len(runs)} converged, {len(failures)} failed")
    print(table(runs))
    cpu = [r["cpu_s"] for r in runs]
    print(f"\nCPU per fit: median {sorted(cpu)[len(cpu) // 2]:.1f} s, max {max(cpu):.1f} s")
    plot(runs, args.plot)


if __name__ == "__main__":
    main()
