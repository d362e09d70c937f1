"""Regenerate the committed models and IRFs in ``scripts/cta/models/`` with one command.

Why a driver: the committed files are the output of the same job scripts the service
runs (simulation -> calibration -> reconstruction without models -> irf_production), so
regenerating them exercises exactly the production path. Each step runs as a job in its
own directory under ``--workdir`` (``parameters.json`` + ``python -P -m cta.<step>``), the
way the service's runner would, and the final products are copied into the models
directory together with a ``MANIFEST.json`` recording sizes, seeds and checksums.

Usage::

    PYTHONPATH=scripts:. python -P -m cta.make_models [--scale 1.0] [--workdir DIR] [--dry-run]

(or ``scripts/cta/make_models.sh``, which sets the path).

``--scale`` multiplies the numbers of showers (1.0: about 10 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .job import MODELS_DIR

SCRIPT_DIR = Path(__file__).resolve().parent
# what a step's interpreter needs on its path: the folder holding ``cta`` and the
# repository (``workers``)
_PYTHONPATH = os.pathsep.join([str(SCRIPT_DIR.parent), str(SCRIPT_DIR.parents[1])])
PRODUCTS = {
    "energy_model": "energy_regressor.pkl",
    "classifier_model": "particle_classifier.pkl",
    "cuts": "cuts.fits",
    "irf": "irf.fits.gz",
    "benchmarks": "benchmarks.fits.gz",
    "irf_summary": "irf_summary.json",
}

#: The MC sets: name -> simulation parameters (before scaling n_showers).
SAMPLES = {
    "gamma_train": {"particle": "gamma", "n_showers": 4000, "seed": 101},
    "proton_train": {
        "particle": "proton",
        "n_showers": 10000,
        "seed": 102,
        "energy_min": 0.1,
        "energy_max": 100.0,
        "spectral_index": -1.5,
    },
    # IRF test sets (S2, issue 15.4): gammas thrown over a 3 deg cone (offset-dependent
    # IRFs, 3 FoV-offset bins), protons, electrons (background weighted to the measured
    # spectra); sizes and the resulting MC errors: docs/science.md, bench/bench_irf.py
    "gamma_test": {
        "particle": "gamma_diffuse",
        "n_showers": 10000,
        "seed": 103,
        "viewcone": 3.0,
        "spectral_index": -1.5,
    },
    "proton_test": {
        "particle": "proton",
        "n_showers": 8000,
        "seed": 104,
        "energy_min": 0.1,
        "energy_max": 100.0,
        "spectral_index": -1.5,
    },
    "electron_test": {
        "particle": "electron",
        "n_showers": 3000,
        "seed": 105,
        "viewcone": 3.0,
        "spectral_index": -2.0,
    },
}


def run_job(step: str, workdir: Path, params: dict, env: dict | None = None) -> float:
    """Run step ``cta.<step>`` as a job in ``workdir``; returns the wall time."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "parameters.json").write_text(
        json.dumps({k: str(v) for k, v in params.items()}, indent=2)
    )
    start = time.monotonic()
    with open(workdir / "stdout.log", "w") as out, open(workdir / "stderr.log", "w") as err:
        proc = subprocess.run(
            [sys.executable, "-P", "-m", f"cta.{step}"],
            cwd=workdir,
            stdout=out,
            stderr=err,
            env={**os.environ, "PYTHONPATH": _PYTHONPATH, **(env or {})},
        )
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        error = (workdir / "stderr.log").read_text().strip().splitlines()
        raise SystemExit(f"{step} failed in {workdir}: {error[-1] if error else '?'}")
    print(f"  {step:<20} {elapsed:6.1f} s  ({workdir.name})", flush=True)
    return elapsed


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def produce(workdir: Path, scale: float, n_jobs: int) -> dict[str, Path]:
    """Run the MC chain and irf_production; returns the products by entity name."""
    dl2 = {}
    for name, sim in SAMPLES.items():
        params = dict(sim, n_showers=max(50, int(sim["n_showers"] * scale)))
        base = workdir / name
        run_job("simulation", base / "simulation", params)
        run_job(
            "calibration", base / "calibration", {"dl0": base / "simulation" / "events.dl0.h5"}
        )
        run_job(
            "reconstruction",
            base / "reconstruction",
            {"dl1": base / "calibration" / "events.dl1.h5", "apply_models": "false"},
        )
        dl2[name] = base / "reconstruction" / "events.dl2.h5"
    irf_dir = workdir / "irf_production"
    run_job("irf_production", irf_dir, {**dl2, "n_jobs": n_jobs})
    return {entity: irf_dir / fname for entity, fname in PRODUCTS.items()}


def install(products: dict[str, Path], scale: float) -> None:
    """Copy the products into ``scripts/cta/models`` and write ``MANIFEST.json``."""
    MODELS_DIR.mkdir(exist_ok=True)
    from .toy import instrument

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=SCRIPT_DIR, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit = ""
    manifest = {
        "scale": scale,
        "instrument": instrument.INSTRUMENT_VERSION,
        "code_commit": commit or None,
        "samples": SAMPLES,
        "files": {},
    }
    for entity, path in products.items():
        target = MODELS_DIR / path.name
        shutil.copy2(path, target)
        manifest["files"][path.name] = {
            "entity": entity,
            "size": target.stat().st_size,
            "sha256": sha256(target),
        }
    (MODELS_DIR / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"models written to {MODELS_DIR}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="shower number factor")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/uws-cta-models"))
    parser.add_argument("--n-jobs", type=int, default=2, help="threads for the ML training")
    parser.add_argument(
        "--install-only",
        action="store_true",
        help="install the products of an earlier run in --workdir (no production)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="produce in --workdir but do not replace the committed files",
    )
    args = parser.parse_args(argv)
    irf_dir = args.workdir / "irf_production"
    if args.install_only:
        products = {entity: irf_dir / name for entity, name in PRODUCTS.items()}
        missing = [str(p) for p in products.values() if not p.is_file()]
        if missing:
            raise SystemExit(f"--install-only: missing {', '.join(missing)}")
        install(products, args.scale)
        return
    if args.workdir.exists():
        shutil.rmtree(args.workdir)
    print(f"producing models at scale {args.scale} in {args.workdir}", flush=True)
    start = time.monotonic()
    products = produce(args.workdir, args.scale, args.n_jobs)
    print(f"produced in {time.monotonic() - start:.0f} s", flush=True)
    if args.dry_run:
        print("dry run: committed models left unchanged")
        return
    install(products, args.scale)


if __name__ == "__main__":
    main()
