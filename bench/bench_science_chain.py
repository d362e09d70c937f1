"""Science benchmark of both paths through the service: the ctapipe chain and the fast path.

Run: ``.venv/bin/python bench/bench_science_chain.py`` (about 10 minutes on 2 idle cores).

It starts the real service (``python -m uws_server serve``, SQLite, local pool, the
project's job definitions) in a temporary folder and drives it over HTTP with the demo
client (``scripts/cta_demo.py``):

* ctapipe chain: two 30-min runs, each simulation → calibration → reconstruction →
  analysis (DL3 into the store), then ``gammapy_spectra`` jointly over both runs;
* fast path: ``simulate_dl3`` of two 30-min runs, then ``gammapy_spectra``.

It reports each stage's wall time (the job's startTime to endTime) and the fitted
spectral index and amplitude at 1 TeV against the simulated truth, as a Markdown table,
a JSON file and a PNG plot (``docs/science_bench.png``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from harness import ROOT, add_user, log, service_env, start_service


def load_demo():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("cta_demo", ROOT / "scripts" / "cta_demo.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["cta_demo"] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def chain_truth(n_showers: int, protons: float, duration: float) -> dict[str, float]:
    """The simulated gamma spectrum: index 2 (the simulation's default), and the
    amplitude that puts n_showers * (1 - protons) gammas between 0.05 and 50 TeV over
    the 400 m scatter disc during the run (see docs/science.md)."""
    gammas = n_showers * (1 - protons)
    area_cm2 = math.pi * (400e2) ** 2
    integral = 1 / 0.05 - 1 / 50  # ∫ E^-2 dE over [0.05, 50] TeV, E in TeV
    return {"index": 2.0, "amplitude": gammas / (duration * area_cm2 * integral)}


FAST_TRUTH = {"index": 3.0, "amplitude": 4e-11}  # simulate_dl3's defaults


def stage_seconds(client, url: str) -> float:  # type: ignore[no-untyped-def]
    doc = client.job(url)
    ns = {"uws": "http://www.ivoa.net/xml/UWS/v1.0"}
    start = datetime.fromisoformat(doc.findtext("uws:startTime", namespaces=ns).rstrip("Z"))
    end = datetime.fromisoformat(doc.findtext("uws:endTime", namespaces=ns).rstrip("Z"))
    return (end - start).total_seconds()


def fit_of(client, url: str) -> dict[str, float]:  # type: ignore[no-untyped-def]
    return json.loads(client.session.get(f"{url}/results/fit_result").text)


def run_job(client, jobname: str, params: dict[str, str]) -> str:  # type: ignore[no-untyped-def]
    url = client.create(jobname, params)
    phase = client.wait(url, lambda p, t: None, 1800)
    if phase != "COMPLETED":
        raise RuntimeError(f"{jobname} ended {phase}: {client.error(url)}")
    return url


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    times = result["chain"]["stage_seconds"]
    names = list(times)
    axes[0].barh(names, [times[n] for n in names], color="C0", label="ctapipe chain")
    fast = result["fast"]["stage_seconds"]
    axes[0].barh(list(fast), list(fast.values()), color="C2", label="fast path")
    axes[0].set_xlabel("wall time [s]")
    axes[0].legend()
    for ax, key, label in (
        (axes[1], "index", "spectral index"),
        (axes[2], "amplitude", "amplitude at 1 TeV [cm-2 s-1 TeV-1]"),
    ):
        for x, path_name, color in ((0, "chain", "C0"), (1, "fast", "C2")):
            fit, truth = result[path_name]["fit"], result[path_name]["truth"]
            ax.errorbar(
                [x],
                [fit[key] / truth[key]],
                yerr=[fit[f"{key}_err"] / truth[key]],
                fmt="o",
                color=color,
            )
        ax.axhline(1.0, color="C1", label="truth")
        ax.set_xticks([0, 1], ["ctapipe chain", "fast path"])
        ax.set_ylabel(f"fitted / true {label}")
        ax.legend()
    fig.suptitle("uws-server science benchmark: 2 x 30 min runs per path")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--showers", type=int, default=30000, help="showers per 30-min chain run")
    ap.add_argument("--protons", type=float, default=0.5)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "science_chain.json")
    ap.add_argument("--plot", type=Path, default=ROOT / "docs" / "science_bench.png")
    args = ap.parse_args()
    demo = load_demo()
    work = Path(tempfile.mkdtemp(prefix="uws-science-"))
    env = service_env(work, local_slots="2")
    token = add_user(env)
    server = start_service(env, work / "server.log")
    base = f"http://127.0.0.1:{env['UWS_PORT']}"
    client = demo.Client(base, token)
    result: dict = {"showers": args.showers, "protons": args.protons}
    try:
        chain_times: dict[str, float] = {}
        obs_ids = [101, 102]
        for i, obs_id in enumerate(obs_ids):
            log(
                f"ctapipe chain: run {i + 1}/{len(obs_ids)} "
                f"(obs_id {obs_id}, {args.showers} showers)"
            )
            jobs = demo.run_chain(
                client, args.showers, obs_id, seed=5 + i, protons=args.protons,
                only=("simulation", "calibration", "reconstruction", "analysis"),
                show=lambda line: None,
            )  # fmt: skip
            for stage, url in jobs.items():
                chain_times[stage] = chain_times.get(stage, 0.0) + stage_seconds(client, url)
        log("ctapipe chain: gammapy_spectra over both runs")
        spec = run_job(
            client, "gammapy_spectra", {"obs_ids": " ".join(map(str, obs_ids)), "nbins": "10"}
        )
        chain_times["gammapy_spectra"] = stage_seconds(client, spec)
        result["chain"] = {
            "stage_seconds": chain_times,
            "fit": fit_of(client, spec),
            "truth": chain_truth(args.showers, args.protons, 1800),
        }
        log("fast path: simulate_dl3 (2 x 30 min), then gammapy_spectra")
        sim = run_job(
            client,
            "simulate_dl3",
            {"first_obs_id": "5001", "n_obs": "2", "livetime": "30", "seed": "1"},
        )
        fspec = run_job(client, "gammapy_spectra", {"obs_ids": "5001 5002", "nbins": "10"})
        result["fast"] = {
            "stage_seconds": {
                "simulate_dl3": stage_seconds(client, sim),
                "gammapy_spectra (fast)": stage_seconds(client, fspec),
            },
            "fit": fit_of(client, fspec),
            "truth": FAST_TRUTH,
        }
    finally:
        server.terminate()
        server.wait(30)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    plot(result, args.plot)
    print(f"`{' '.join(sys.argv)}`\n")
    print("| path | stage | wall time (s) |\n|---|---|---:|")
    for name in ("chain", "fast"):
        for stage, secs in result[name]["stage_seconds"].items():
            print(f"| {name} | {stage} | {secs:.1f} |")
    print(
        "\n| path | fitted index | true | pull | amplitude at 1 TeV | true | pull |"
        "\n|---|---|---|---|---|---|---|"
    )
    for name in ("chain", "fast"):
        f, t = result[name]["fit"], result[name]["truth"]
        pi = (f["index"] - t["index"]) / f["index_err"]
        pa = (f["amplitude"] - t["amplitude"]) / f["amplitude_err"]
        print(
            f"| {name} | {f['index']:.3f} ± {f['index_err']:.3f} | {t['index']:.2f} | {pi:+.2f}σ "
            f"| {f['amplitude']:.3g} ± {f['amplitude_err']:.2g} | {t['amplitude']:.3g} "
            f"| {pa:+.2f}σ |"
        )
    print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
