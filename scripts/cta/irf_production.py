"""Job script: train the ML models, optimise cuts and compute GADF IRFs with ctapipe/pyirf.

Why this order (each step is an unmodified ctapipe tool):

1. ``ctapipe-train-energy-regressor`` on the gamma training set;
2. ``ctapipe-apply-models`` (energy) to both training sets -- trap: the classifier's
   default features include ``ExtraTreesRegressor_energy``, which only exists once the
   energy model has been applied;
3. ``ctapipe-train-particle-classifier`` (gammas = signal, protons = background);
4. ``ctapipe-apply-models`` (both models) to the test sets (the training sets when no
   test set is given -- optimistic, and logged as such);
5. ``ctapipe-optimize-event-selection`` with ``PercentileCuts`` (the point-source
   sensitivity optimiser fails at low statistics);
6. ``ctapipe-compute-irf`` (full enclosure: effective area, energy dispersion, PSF,
   background; benchmarks);
7. post-processing for gammapy (``gadf_irf``): the single FoV-offset bin of point-like
   MC copied over 0-3 deg, a floor under an all-zero background, pointing in the header;
8. the MC statistics of every bin (``irf_stats``): thrown and selected gammas with the
   binomial error of the effective area, selected protons and electrons with the Poisson
   error of the background, A_eff capped at the thrown area (with a warning).

Offset dependence: a gamma test set thrown over a cone (``simulation`` with
``particle=gamma_diffuse``) gives effective area, energy dispersion and PSF in
``offset_bins`` FoV-offset bins out to the cone's radius (ctapipe refuses more than one
bin for point-like gammas). The background is computed over the whole field of view
(0-3 deg, one bin: smoothed over the FoV, so each energy bin rests on all the selected
cosmic rays) from protons and, if ``electron_test`` is given, electrons, weighted to the
measured spectra (pyirf's ``IRFDOC_PROTON_SPECTRUM`` and ``IRFDOC_ELECTRON_SPECTRUM``).

Parameters: ``gamma_train``, ``proton_train`` (used, required), ``gamma_test``,
``proton_test``, ``electron_test`` (used, optional): DL2 files of ``reconstruction``
with ``apply_models=false``; ``n_estimators``, ``max_depth`` (trees), ``gh_efficiency``
(% of gammas kept by the gammaness cut), ``offset_bins`` (diffuse gamma test set),
``n_jobs``.
Outputs: ``$energy_model``, ``$classifier_model``, ``$cuts``, ``$irf``, ``$benchmarks``,
``$irf_summary``.
"""

from __future__ import annotations

import json
import logging
import shutil
from importlib.resources import files
from pathlib import Path

import numpy as np
import tables
import yaml

from . import ctapipe_tool, gadf_irf, irf_stats, job
from .selection import (
    CLASSIFIER_PREFIX,
    ENERGY_PREFIX,
    GEOMETRY_PREFIX,
    load_cuts,
    read_events,
    select,
    without_gh_cut,
)

log = logging.getLogger("uws.cta.irf_production")

QUALITY = [
    ["HillasValid", f"{GEOMETRY_PREFIX}_is_valid"],
    ["enough intensity", "hillas_intensity > 50"],
    ["Positive width", "hillas_width > 0"],
    ["enough pixels", "morphology_n_pixels > 3"],
    ["not clipped", "leakage_intensity_width_2 < 0.5"],
]
DL2_QUALITY = [
    ["valid classifier", f"{CLASSIFIER_PREFIX}_is_valid"],
    ["valid geom reco", f"{GEOMETRY_PREFIX}_is_valid"],
    ["valid energy reco", f"{ENERGY_PREFIX}_is_valid"],
]
#: Energy binning of cuts and IRFs, inside the simulated range of the toy MC.
RECO_BINS = {
    "reco_energy_min": "0.05 TeV",
    "reco_energy_max": "50 TeV",
    "reco_energy_n_bins_per_decade": 5,
}
TRUE_BINS = {
    "true_energy_min": "0.03 TeV",
    "true_energy_max": "100 TeV",
    "true_energy_n_bins_per_decade": 10,
}


def training_config(kind: str, p: job.Params) -> dict:
    """ctapipe's own training config with the toy's model size and prefixes."""
    name = "train_energy_regressor.yaml" if kind == "energy" else "train_particle_classifier.yaml"
    config = yaml.safe_load(files("ctapipe.resources").joinpath(name).read_text())
    tool = "TrainEnergyRegressor" if kind == "energy" else "TrainParticleClassifier"
    model = "EnergyRegressor" if kind == "energy" else "ParticleClassifier"
    section = config[tool]
    section["random_seed"] = 0
    section["CrossValidator"]["n_cross_validations"] = 3
    m = section[model]
    m["n_jobs"] = p.integer("n_jobs", 1, lo=1, hi=16)
    m["model_config"] = {
        "n_estimators": p.integer("n_estimators", 30, lo=1, hi=500),
        "max_depth": p.integer("max_depth", 10, lo=2, hi=30),
        "min_samples_leaf": 3,
        "random_state": 0,
    }
    m["QualityQuery"]["quality_criteria"] = QUALITY
    return config


def selection_config(p: job.Params) -> dict:
    """Shared by cut optimisation and IRF computation (same prefixes and quality cuts)."""
    efficiency = p.integer("gh_efficiency", 70, lo=10, hi=99)
    return {
        "DL2EventPreprocessor": {
            "energy_reconstructor": ENERGY_PREFIX,
            "geometry_reconstructor": GEOMETRY_PREFIX,
            "gammaness_classifier": CLASSIFIER_PREFIX,
            "DL2EventQualityQuery": {"quality_criteria": DL2_QUALITY},
        },
        "EventSelectionOptimizer": {"optimization_algorithm": "PercentileCuts"},
        "PercentileCuts": dict(RECO_BINS),
        # pyirf's percentile cut keeps events above the (100 - p)th gammaness percentile
        "GhPercentileCutCalculator": {"target_percentile": efficiency, "min_counts": 5},
        "ThetaPercentileCutCalculator": {
            "target_percentile": 68,
            "min_counts": 5,
            "theta_max_angle": "0.5 deg",
        },
    }


def irf_config(viewcone_deg: float = 0.0, offset_bins: int = 3) -> dict:
    """FoV-offset bins: ``offset_bins`` out to the gammas' cone, or one bin for point-like
    gammas (ctapipe refuses more); the background always in one bin over the FoV."""
    if viewcone_deg > 0:
        one_bin = {
            "fov_offset_min": "0 deg",
            "fov_offset_max": f"{viewcone_deg} deg",
            "fov_offset_n_bins": offset_bins,
        }
    else:
        one_bin = {"fov_offset_min": "0 deg", "fov_offset_max": "1 deg", "fov_offset_n_bins": 1}
    return {
        "EffectiveArea2dMaker": {**one_bin, **TRUE_BINS},
        "EnergyDispersion2dMaker": {**one_bin, **TRUE_BINS},
        "PSF3DMaker": {**one_bin, **TRUE_BINS},
        "BackgroundRate2dMaker": {
            **RECO_BINS,
            "fov_offset_min": "0 deg",
            "fov_offset_max": f"{gadf_irf.BKG_OFFSET_MAX} deg",
            "fov_offset_n_bins": 1,
        },
        "AngularResolution2dMaker": {**one_bin, **TRUE_BINS},
        "EnergyBiasResolution2dMaker": {**one_bin, **TRUE_BINS},
        "Sensitivity2dMaker": {**one_bin, **RECO_BINS},
    }


def write_config(name: str, config: dict) -> Path:
    path = job.uws_dir() / name
    path.write_text(json.dumps(config, indent=2))
    return path


def check_dl2_geometry(path: Path, name: str, particle: str) -> int:
    """Events with a geometry; ``JobError`` unless a simulated DL2 file of ``particle``."""
    try:
        with tables.open_file(path, "r") as h5:
            node = f"/dl2/event/subarray/geometry/{GEOMETRY_PREFIX}"
            if node not in h5 or "/dl1/event/telescope/parameters" not in h5:
                raise job.JobError(
                    f"input '{name}' ({path.name}) lacks DL1 parameters or "
                    f"{GEOMETRY_PREFIX} geometry: run reconstruction with apply_models=false"
                )
            if "/simulation/event/subarray/shower" not in h5:
                raise job.JobError(f"input '{name}' ({path.name}) has no simulation truth")
            ids = np.unique(h5.root.simulation.event.subarray.shower.col("true_shower_primary_id"))
            n_valid = int(np.count_nonzero(h5.get_node(node).col(f"{GEOMETRY_PREFIX}_is_valid")))
    except (tables.HDF5ExtError, OSError):
        raise job.JobError(f"input '{name}' ({path.name}) is not an HDF5 file") from None
    expected = {"gamma": 0, "electron": 1, "proton": 101}[particle]
    if set(ids.tolist()) != {expected}:
        raise job.JobError(
            f"input '{name}' ({path.name}) must hold only {particle}s "
            f"(primary ids found: {sorted(ids.tolist())})"
        )
    return n_valid


def background_without_gh_cut(
    protons: Path, gammas: Path, cuts_path: Path, config: Path, work: Path, electrons: list
) -> tuple[Path, float]:
    """Background shape from protons passing the quality cuts only, scaled to the cuts.

    At small scale no proton survives the gammaness cut. Rather than an arbitrary
    constant, the background is taken from the quality-selected protons (a
    ``compute-irf`` run with the gammaness cut removed) times the fraction of them that
    pass the gammaness cut -- at most 1 / n_quality when none does (an upper limit).
    """
    events, _ = read_events(protons)
    _, counts = select(events, load_cuts(cuts_path))
    scale = max(counts["n_selected"], 1) / max(counts["n_quality"], 1)
    log.warning(
        "no proton survives the cuts (%d of %d pass quality): background from the "
        "quality-selected protons scaled by %.2e",
        counts["n_selected"],
        counts["n_quality"],
        scale,
    )
    no_gh = work / "cuts_no_gh.fits"
    without_gh_cut(cuts_path, no_gh)
    raw = work / "irf_no_gh.fits.gz"
    ctapipe_tool.run_ctapipe_tool(
        "ctapipe-compute-irf",
        [
            "--cuts",
            no_gh,
            "--gamma-file",
            gammas,
            "--proton-file",
            protons,
            *electrons,
            "--output",
            raw,
            "--config",
            config,
            "--overwrite",
        ],
        "compute-irf-no-gh-cut",
    )
    return raw, scale


def produce(p: job.Params) -> None:
    """Train, apply, optimise cuts, compute and post-process the IRFs."""
    inputs: dict[str, Path] = {}
    for name, particle, required in (
        ("gamma_train", "gamma", True),
        ("proton_train", "proton", True),
        ("gamma_test", "gamma", False),
        ("proton_test", "proton", False),
        ("electron_test", "electron", False),
    ):
        value = p.text(name, "")
        if not value and not required:
            continue
        path = job.resolve_input(value, name)
        n_valid = check_dl2_geometry(path, name, particle)
        log.info("%s: %s, %d events with a valid geometry", name, path.name, n_valid)
        job.record_used(path, name)
        inputs[name] = path
    for particle in ("gamma", "proton"):
        if f"{particle}_test" not in inputs:
            log.warning(
                "no %s_test given: cuts and IRFs use the training events (optimistic)", particle
            )
            inputs[f"{particle}_test"] = inputs[f"{particle}_train"]

    out = {
        e: job.output_path(e, d)
        for e, d in (
            ("energy_model", "energy_regressor.pkl"),
            ("classifier_model", "particle_classifier.pkl"),
            ("cuts", "cuts.fits"),
            ("irf", "irf.fits.gz"),
            ("benchmarks", "benchmarks.fits.gz"),
            ("irf_summary", "irf_summary.json"),
        )
    }
    work = Path("work")
    work.mkdir(exist_ok=True)
    run = ctapipe_tool.run_ctapipe_tool

    cfg = write_config("train_energy.json", training_config("energy", p))
    run(
        "ctapipe-train-energy-regressor",
        [
            "--input",
            inputs["gamma_train"],
            "--output",
            out["energy_model"],
            "--config",
            cfg,
            "--cv-output",
            work / "cv_energy.h5",
            "--overwrite",
        ],
        "train-energy",
    )
    applied = {}
    for name in ("gamma_train", "proton_train"):
        applied[name] = work / f"{name}.energy.dl2.h5"
        run(
            "ctapipe-apply-models",
            [
                "--input",
                inputs[name],
                "--output",
                applied[name],
                "--reconstructor",
                out["energy_model"],
                "--overwrite",
                "--ApplyModels.progress_bar=False",
            ],
            f"apply-energy-{name}",
        )
    cfg = write_config("train_classifier.json", training_config("classifier", p))
    run(
        "ctapipe-train-particle-classifier",
        [
            "--signal",
            applied["gamma_train"],
            "--background",
            applied["proton_train"],
            "--output",
            out["classifier_model"],
            "--config",
            cfg,
            "--cv-output",
            work / "cv_classifier.h5",
            "--overwrite",
        ],
        "train-classifier",
    )
    test = {}
    for name in ("gamma_test", "proton_test", "electron_test"):
        if name not in inputs:
            continue
        test[name] = work / f"{name}.dl2.h5"
        run(
            "ctapipe-apply-models",
            [
                "--input",
                inputs[name],
                "--output",
                test[name],
                "--reconstructor",
                out["energy_model"],
                "--reconstructor",
                out["classifier_model"],
                "--overwrite",
                "--ApplyModels.progress_bar=False",
            ],
            f"apply-models-{name}",
        )

    cfg = write_config("selection.json", selection_config(p))
    run(
        "ctapipe-optimize-event-selection",
        [
            "--gamma-file",
            test["gamma_test"],
            "--proton-file",
            test["proton_test"],
            "--output",
            out["cuts"],
            "--config",
            cfg,
            "--overwrite",
        ],
        "optimize-cuts",
    )
    gamma_info = irf_stats.simulation_info(test["gamma_test"])
    viewcone = float(gamma_info.viewcone_max.to_value("deg"))
    offset_bins = p.integer("offset_bins", 3, lo=1, hi=10)
    if viewcone > 0:
        log.info(
            "diffuse gamma test set (%.2f deg cone): %d FoV-offset bins", viewcone, offset_bins
        )
    else:
        log.warning("point-like gamma test set: IRFs flat in FoV offset (one MC offset)")
    cfg_irf = write_config(
        "irf.json", {**selection_config(p), **irf_config(viewcone, offset_bins)}
    )
    electrons = ["--electron-file", test["electron_test"]] if "electron_test" in test else []
    if not electrons:
        log.warning("no electron_test given: background from protons only")
    raw_irf = work / "irf_raw.fits.gz"
    run(
        "ctapipe-compute-irf",
        [
            "--cuts",
            out["cuts"],
            "--gamma-file",
            test["gamma_test"],
            "--proton-file",
            test["proton_test"],
            *electrons,
            "--output",
            raw_irf,
            "--benchmark-output",
            out["benchmarks"],
            "--config",
            cfg_irf,
            "--overwrite",
        ],
        "compute-irf",
    )

    background = None
    if gadf_irf.background_is_empty(raw_irf):
        background = background_without_gh_cut(
            test["proton_test"], test["gamma_test"], out["cuts"], cfg_irf, work, electrons
        )
    pointing = gadf_irf.pointing_of(inputs["gamma_test"])
    summary = gadf_irf.finalise_irf(raw_irf, out["irf"], pointing, background)
    cuts = load_cuts(out["cuts"])
    samples = {irf_stats.PROTON_ID: test["proton_test"]}
    if electrons:
        samples[irf_stats.ELECTRON_ID] = test["electron_test"]
    summary.update(
        irf_stats.annotate_irf(
            out["irf"],
            irf_stats.load_events(test["gamma_test"], cuts),
            gamma_info,
            {
                pid: (irf_stats.load_events(path, cuts), irf_stats.simulation_info(path))
                for pid, path in samples.items()
            },
            background_single_bin=True,
        )
    )
    summary.update(gadf_irf.irf_figures(out["irf"]))  # after the cap
    summary.update(gadf_irf.benchmark_summary(out["benchmarks"]))
    summary["inputs"] = {k: v.name for k, v in inputs.items()}
    summary["separate_test_sets"] = inputs["gamma_test"] != inputs["gamma_train"]
    out["irf_summary"].write_text(json.dumps(summary, indent=2, default=float) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    log.info(
        "IRFs for zenith %.1f deg written: %s",
        pointing["zenith"],
        ", ".join(p.name for p in out.values()),
    )
    for key in (
        "aeff_max_m2",
        "psf68_1tev_deg",
        "energy_resolution_1tev",
        "background_floor_applied",
    ):
        log.info("  %s = %s", key, summary.get(key))


if __name__ == "__main__":
    job.run(produce, context=ctapipe_tool.chain_context)
