"""Benchmark of the CTA fast path at benchmark size: simulate -> maps -> spectra -> light curve.

For each seed: a fresh DL3 store, ``n_obs`` runs of ``livetime`` minutes of the PKS 2155-304-
like source (index 3, 4e-11 cm-2 s-1 TeV-1 at 1 TeV), then the three DL4 jobs, each run as
a subprocess in its own job directory exactly as the service runs it. Records wall time and
peak memory per stage and the fitted spectrum against the truth; writes a JSON of all
figures, a markdown table, and a PNG (index and amplitude per seed, one spectrum vs truth).

    .venv/bin/python bench/bench_science_fastpath.py --seeds 1 2 3 4 5

Outputs go to ``bench/out/fastpath/`` (git-ignored) and the plot to ``docs/``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
TRUTH = {"RA": 329.717, "Dec": -30.226, "index": 3.0, "amplitude": 4e-11}


def run_stage(name: str, params: dict, job: Path, store: Path) -> dict:
    """Run one job script in ``job``; returns wall time (s) and peak RSS (MB) of the child."""
    job.mkdir(parents=True, exist_ok=False)
    (job / "parameters.json").write_text(json.dumps({k: str(v) for k, v in params.items()}))
    env = {**os.environ, "UWS_DL3_STORE": str(store), "UWS_SCRIPTS_DIR": str(SCRIPTS)}
    env["PYTHONPATH"] = os.pathsep.join([str(SCRIPTS), str(REPO)])  # cta and workers
    start = time.perf_counter()
    with open(job / "stdout.log", "w") as out, open(job / "stderr.log", "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-P", "-m", f"cta.{name}"],
            cwd=job, env=env, stdout=out, stderr=err,
        )  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        error = (job / ".uws" / "error.txt").read_text().strip()
        raise SystemExit(f"{name} failed in {job}: {error}")
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024)}


def run_seed(seed: int, args: argparse.Namespace, out: Path) -> dict:
    base = out / f"seed_{seed}"
    store = base / "store"
    obs_ids = f"1001-{1000 + args.n_obs}"
    source = {"RA": TRUTH["RA"], "Dec": TRUTH["Dec"]}
    stages = {
        "simulate_dl3": {**source, "n_obs": args.n_obs, "livetime": args.livetime, "seed": seed},
        "gammapy_maps": {"obs_ids": obs_ids, **source, "nxpix": 200, "nypix": 200, "binsz": 0.02},
        "gammapy_spectra": {"obs_ids": obs_ids, **source, "emin": 0.3, "emax": 30, "nbins": 10},
        "gammapy_lightcurve": {"obs_ids": obs_ids, **source, "time_bin": 10},
    }
    result = {"seed": seed, "stages": {}}
    for name, params in stages.items():
        result["stages"][name] = run_stage(name, params, base / name, store)
        print(f"seed {seed}: {name} {result['stages'][name]}", flush=True)
    fit = json.loads((base / "gammapy_spectra" / "fit_result.json").read_text())
    maps = json.loads((base / "gammapy_maps" / "map_summary.json").read_text())
    lc = json.loads((base / "gammapy_lightcurve" / "lightcurve_summary.json").read_text())
    sim = json.loads((base / "simulate_dl3" / "summary.json").read_text())
    result.update(
        {
            key: fit[key]
            for key in ("index", "index_err", "amplitude", "amplitude_err", "significance")
        }
    )
    result["index_pull"] = (fit["index"] - TRUTH["index"]) / fit["index_err"]
    result["amplitude_pull"] = (fit["amplitude"] - TRUTH["amplitude"]) / fit["amplitude_err"]
    result["n_events"] = sim["n_events"]
    result["store_mb"] = round(
        sum(p.stat().st_size for p in (store / "data").glob("*.fits.gz")) / 1e6, 2
    )
    result["peak_significance"] = maps["peak_significance"]
    result["lightcurve_p_value"] = lc["p_value_constant"]
    result["spectrum_file"] = str(base / "gammapy_spectra" / "spectrum.ecsv")
    return result


def plot(results: list[dict], path: Path) -> None:
    """Index and amplitude per seed against the truth, and one spectrum against the truth."""
    import matplotlib

    matplotlib.use("Agg")
    import astropy.units as u
    import matplotlib.pyplot as plt
    import numpy as np
    from astropy.table import Table

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    seeds = [r["seed"] for r in results]
    for ax, key, label in (
        (axes[0], "index", "fitted index"),
        (axes[1], "amplitude", "amplitude at 1 TeV [cm-2 s-1 TeV-1]"),
    ):
        values = np.array([r[key] for r in results])
        errors = np.array([r[f"{key}_err"] for r in results])
        ax.errorbar(seeds, values, errors, fmt="o", label="fit (1 sigma)")
        ax.axhline(TRUTH[key], color="C1", label="truth")
        ax.axhspan(TRUTH[key] - 2 * errors.mean(), TRUTH[key] + 2 * errors.mean(), color="C1",
                   alpha=0.15, label="truth +- 2 sigma")  # fmt: skip
        ax.set_xticks(seeds)
        ax.set_xlabel("seed")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)

    table = Table.read(results[0]["spectrum_file"])
    e_ref = np.asarray(table["e_ref"])
    e2 = e_ref**2
    is_ul = np.asarray(table["is_ul"], dtype=bool)
    ax = axes[2]
    ok = ~is_ul
    ax.errorbar(e_ref[ok], e2[ok] * table["dnde"][ok], e2[ok] * table["dnde_err"][ok], fmt="o",
                label=f"flux points (seed {results[0]['seed']})")  # fmt: skip
    ax.plot(e_ref[is_ul], e2[is_ul] * table["dnde_ul"][is_ul], "v", color="C0")
    energy = np.geomspace(0.3, 30, 50)
    ax.plot(energy, energy**2 * TRUTH["amplitude"] * energy ** -TRUTH["index"], color="C1",
            label="truth")  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"energy [{u.TeV}]")
    ax.set_ylabel("E² dN/dE [TeV cm-2 s-1]")
    ax.legend(fontsize=8)
    fig.suptitle(f"Fast path, {len(results)} seeds: fitted power law vs truth")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def markdown(results: list[dict], args: argparse.Namespace) -> str:
    import numpy as np

    stages = list(results[0]["stages"])
    lines = [
        f"{args.n_obs} x {args.livetime:g} min per seed; wall time [s] / peak RSS [MB] per stage",
        "",
        "| seed | " + " | ".join(stages) + " | index | amplitude [1e-11] | pulls (idx, amp) |",
        "|---" * (len(stages) + 4) + "|",
    ]
    for r in results:
        cells = [
            f"{r['stages'][s]['wall_s']:.1f} / {r['stages'][s]['peak_rss_mb']}" for s in stages
        ]
        lines.append(
            f"| {r['seed']} | " + " | ".join(cells)
            + f" | {r['index']:.3f} ± {r['index_err']:.3f}"
            + f" | {r['amplitude'] / 1e-11:.2f} ± {r['amplitude_err'] / 1e-11:.2f}"
            + f" | {r['index_pull']:+.2f}, {r['amplitude_pull']:+.2f} |"
        )  # fmt: skip
    index = np.array([r["index"] for r in results])
    spread = index.std(ddof=1) if len(index) > 1 else 0.0
    max_pull = max(max(abs(r["index_pull"]), abs(r["amplitude_pull"])) for r in results)
    lines += ["", f"mean index {index.mean():.3f} (spread {spread:.3f}), max |pull| {max_pull:.2f}"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--n-obs", type=int, default=4)
    parser.add_argument("--livetime", type=float, default=30.0, help="minutes per run")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "fastpath")
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "fastpath_bench.png")
    args = parser.parse_args()
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"{args.out} is not empty: remove it or pass --out")
    args.out.mkdir(parents=True, exist_ok=True)

    results = [run_seed(seed, args, args.out) for seed in args.seeds]
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    plot(results, args.plot)
    table = markdown(results, args)
    (args.out / "results.md").write_text(table + "\n")
    print(table)
    print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
