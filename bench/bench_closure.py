"""Closure tests of the fast path's DL4 fits over many seeds (issue 15, Must show).

Run: ``.venv/bin/python bench/bench_closure.py`` (8 seeds, a few minutes on 2 cores);
``--scripts DIR`` runs another copy of ``scripts/`` (holding the ``cta`` package; e.g. the
code before a fix, from ``git worktree``) through the same harness, in a new process per
job (this process has imported this checkout's ``cta``), ``--seeds N`` changes the
number of seeds.

For each seed the job scripts run as the service runs them (``tests.cta_support``: job
directory, parameters, environment; in this process so gammapy is imported once, unless
``--scripts``):
``simulate_dl3`` draws the truth into a temporary DL3 store, ``gammapy_spectra`` fits it
(power law, and the held-out curved truths with their own model), ``gammapy_lightcurve``
fits the constant flux over short bins (~10-20 counts each, where a weighted mean of
bins is biased). Pull = (fit - truth) / error, with the error on the side of the truth
when the job gives asymmetric errors. Over N seeds, each mean pull must lie within
3 standard errors (3 / sqrt(N) for unit-variance pulls) of 0.

Outputs: a Markdown table on stdout, ``bench/out/closure.json`` and a plot of the pull
distributions (``docs/closure_pulls.png``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import cta_support  # noqa: E402

# Held-out truths: none of these is a default of the job definitions.
SPECTRUM_CASES = (
    {"spectral_model": "power_law", "index": 2.4, "amplitude": 3e-11},
    {"spectral_model": "power_law", "index": 3.2, "amplitude": 5e-11},
    {"spectral_model": "log_parabola", "index": 2.6, "amplitude": 4e-11, "beta": 0.25},
    {"spectral_model": "exp_cutoff_power_law", "index": 2.2, "amplitude": 3e-11, "e_cut": 4.0},
)
# Light curve: one constant source, short bins (the regime of the weighted-mean bias).
LIGHTCURVE_CASE = {"index": 2.7, "amplitude": 3e-11, "livetime": "20", "n_obs": "2"}
LIGHTCURVE_BIN_MIN = 2.0
SOURCE = {"RA": "329.717", "Dec": "-30.226"}  # culminates at the default tstart (South)


def _run(name: str, params: dict, work: Path, store: Path, scripts: Path | None) -> dict:
    """Run one job in-process; its JSON result (summary, fit_result or lightcurve_summary)."""
    env = {"UWS_SCRIPTS_DIR": str(scripts)} if scripts else None
    job = work / f"{name}-{len(list(work.glob(name + '-*')))}"
    if scripts:  # the script line's PYTHONPATH starts with $UWS_SCRIPTS_DIR: that copy
        done = cta_support.run_job(name, params, job, store, env=env)
    else:
        done = cta_support.run_in_process(name, params, job, store)
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed: {done.stderr[-2000:]}")
    result = {
        "simulate_dl3": "summary.json",
        "gammapy_spectra": "fit_result.json",
        "gammapy_lightcurve": "lightcurve_summary.json",
    }[name]
    return json.loads((job / result).read_text())


def preload_matplotlib() -> None:
    """Import matplotlib's date converters before the first in-process job: the runner
    restores the unit registry it saw, which must already hold them for light curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates  # noqa: F401
    import matplotlib.pyplot  # noqa: F401


def true_integral_flux(case: dict, emin: float, emax: float) -> float:
    """Integral flux (cm-2 s-1) of the true power law between emin and emax (TeV)."""
    index, amplitude = float(case["index"]), float(case["amplitude"])
    return amplitude / (1 - index) * (emax ** (1 - index) - emin ** (1 - index))


def pull(value: float, truth: float, err: float, errn: float | None = None, errp=None) -> float:
    """(value - truth) / error, the error on the side of the truth if asymmetric."""
    if errn is not None and errp is not None and math.isfinite(errn) and math.isfinite(errp):
        err = errp if value < truth else errn
    return (value - truth) / err


def spectrum_pulls(case: dict, seed: int, work: Path, scripts: Path | None, livetime="20") -> dict:
    """Simulate ``case`` (2 runs), fit it with its own model: pulls of index and amplitude."""
    store = work / f"store-spec-{seed}-{case['spectral_model']}-{case['index']}"
    sim = {**SOURCE, "n_obs": "2", "livetime": livetime, "seed": str(seed)}
    sim.update({k: str(v) for k, v in case.items()})
    summary = _run("simulate_dl3", sim, work, store, scripts)
    fit_params = {"obs_ids": " ".join(str(i) for i in summary["obs_ids"]), **SOURCE}
    if case["spectral_model"] != "power_law":
        fit_params["spectral_model"] = case["spectral_model"]
    fit = _run("gammapy_spectra", fit_params, work, store, scripts)
    out = {
        "index": pull(fit["index"], float(case["index"]), fit["index_err"]),
        "amplitude": pull(fit["amplitude"], float(case["amplitude"]), fit["amplitude_err"]),
    }
    params = fit.get("parameters", {})
    if "beta" in case and "beta" in params:
        out["beta"] = pull(params["beta"]["value"], case["beta"], params["beta"]["error"])
    if "e_cut" in case and "lambda_" in params:
        lam = params["lambda_"]
        out["lambda"] = pull(lam["value"], 1 / case["e_cut"], lam["error"])
    if fit.get("comparison_with_power_law"):
        out["ts_vs_power_law"] = fit["comparison_with_power_law"]["ts"]
    return out


def lightcurve_pull(seed: int, work: Path, scripts: Path | None) -> dict:
    """Simulate a constant source, run the light curve: pull of its constant flux."""
    store = work / f"store-lc-{seed}"
    case = LIGHTCURVE_CASE
    sim = {**SOURCE, **{k: str(v) for k, v in case.items()}, "seed": str(seed + 100)}
    summary = _run("simulate_dl3", sim, work, store, scripts)
    params = {
        "obs_ids": " ".join(str(i) for i in summary["obs_ids"]),
        **SOURCE,
        "time_bin": str(LIGHTCURVE_BIN_MIN),
        "index": str(case["index"]),  # the shape is known: test the constant alone
    }
    lc = _run("gammapy_lightcurve", params, work, store, scripts)
    emin, emax = lc["energy_range_used_tev"]
    truth = true_integral_flux(case, emin, emax)
    requested = round(float(case["livetime"]) / LIGHTCURVE_BIN_MIN) * int(case["n_obs"])
    return {
        "constant": pull(
            lc["mean_flux"],
            truth,
            lc["mean_flux_err"],
            lc.get("mean_flux_errn"),
            lc.get("mean_flux_errp"),
        ),  # fmt: skip
        "bins_kept": lc["n_time_bins"] / requested,
        "p_value_constant": lc.get("p_value_constant"),
    }


def summarise(pulls: dict[str, list[float]]) -> dict[str, dict]:
    """Mean, standard error and spread of each pull; pass = |mean| <= 3 standard errors."""
    out = {}
    for name, values in pulls.items():
        n = len(values)
        mean = sum(values) / n
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
        se = 1 / math.sqrt(n)  # unit-variance pulls; the measured sd is shown beside it
        out[name] = {
            "n": n,
            "mean": mean,
            "sd": sd,
            "se": se,
            "max_abs": max(abs(v) for v in values),
            "pass": abs(mean) <= 3 * se and max(abs(v) for v in values) <= 4,
        }
    return out


def plot(pulls: dict[str, list[float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = [n for n in pulls if n not in ("bins_kept", "p_value_constant", "ts_vs_power_law")]
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.2), sharey=True)
    x = np.linspace(-4, 4, 200)
    for ax, name in zip(np.atleast_1d(axes), names, strict=True):
        values = pulls[name]
        ax.hist(values, bins=np.linspace(-4, 4, 17), density=True, color="C0", alpha=0.7)
        ax.plot(x, np.exp(-0.5 * x**2) / np.sqrt(2 * np.pi), color="C1", label="N(0, 1)")
        ax.axvline(np.mean(values), color="k", ls="--")
        ax.set_title(f"{name}: mean {np.mean(values):+.2f} (n={len(values)})", fontsize=9)
        ax.set_xlabel("pull")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--first-seed", type=int, default=1, help="to split seeds over processes")
    parser.add_argument("--scripts", type=Path, help="another copy of scripts/ (with cta/)")
    parser.add_argument("--lightcurve-only", action="store_true")
    parser.add_argument("--spectra-only", action="store_true")
    parser.add_argument(
        "--merge", type=Path, nargs="+", help="only merge these JSON outputs into one table/plot"
    )
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "closure.json")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "closure_pulls.png")
    args = parser.parse_args()
    preload_matplotlib()

    pulls: dict[str, list[float]] = {}
    per_case: list[dict] = []
    if args.merge:
        for path in args.merge:
            done = json.loads(path.read_text())
            for key, values in done["pulls"].items():
                pulls.setdefault(key, []).extend(values)
            per_case += done["cases"]
        report(pulls, per_case, args, max(len(v) for v in pulls.values()))
        return
    with tempfile.TemporaryDirectory(prefix="closure-") as tmp:
        work = Path(tmp)
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            if args.spectra_only:
                case = SPECTRUM_CASES[(seed - 1) % len(SPECTRUM_CASES)]
                sp = spectrum_pulls(case, seed, work, args.scripts)
                per_case.append({"seed": seed, **case, **sp})
                for key, value in sp.items():
                    if key != "ts_vs_power_law":
                        pulls.setdefault(key, []).append(value)
                print(f"seed {seed}: spectrum {case['spectral_model']} {sp}", flush=True)
                continue
            lc = lightcurve_pull(seed, work, args.scripts)
            for key, value in lc.items():
                if value is not None:
                    pulls.setdefault(f"lc_{key}" if key != "constant" else "lc_constant", [])
                    pulls["lc_constant" if key == "constant" else f"lc_{key}"].append(value)
            if args.lightcurve_only:
                print(f"seed {seed}: {lc}", flush=True)
                continue
            case = SPECTRUM_CASES[(seed - 1) % len(SPECTRUM_CASES)]
            sp = spectrum_pulls(case, seed, work, args.scripts)
            per_case.append({"seed": seed, **case, **sp})
            for key, value in sp.items():
                if key != "ts_vs_power_law":
                    pulls.setdefault(key, []).append(value)
            print(f"seed {seed}: lc {lc} spectrum {case['spectral_model']} {sp}", flush=True)
    report(pulls, per_case, args, args.seeds)


def report(pulls: dict, per_case: list, args: argparse.Namespace, seeds: int) -> None:
    """Markdown table on stdout, JSON and the pull plot."""
    stats = summarise({k: v for k, v in pulls.items() if k not in ("lc_bins_kept",)})
    stats.pop("lc_p_value_constant", None)
    bins_kept = pulls.get("lc_bins_kept", [])
    print("\n| pull | n | mean | sd | 3 s.e. | max abs | pass |\n|---|---|---|---|---|---|---|")
    for name, s in stats.items():
        print(
            f"| {name} | {s['n']} | {s['mean']:+.2f} | {s['sd']:.2f} | {3 * s['se']:.2f} "
            f"| {s['max_abs']:.2f} | {'yes' if s['pass'] else 'NO'} |"
        )
    if bins_kept:
        print(f"\nlight-curve bins kept: mean {sum(bins_kept) / len(bins_kept):.2f} of requested")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"stats": stats, "pulls": pulls, "cases": per_case}, indent=1))
    label = f"scripts {args.scripts}" if args.scripts else "current scripts"
    plot(
        {k: v for k, v in pulls.items() if k in stats},
        args.plot,
        f"Closure pulls over {seeds} seeds ({label})",
    )


if __name__ == "__main__":
    main()
