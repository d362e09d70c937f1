"""gammapy_spectra: reflected-regions spectrum, spectral fit and flux points (DL3 -> DL4).

Per run: counts in a circular ON region around the target, OFF counts in reflected
regions at the same offset from the pointing (``ReflectedRegionsBackgroundMaker``), a
10 %-of-maximum effective-area safe threshold. The spectral model chosen by the
``spectral_model`` parameter (power law, log-parabola, exponential cut-off power law) is
fitted jointly to the per-run ON/OFF datasets (WStat): stacking runs whose bins have no
OFF counts would give alpha = NaN. A curved model is compared with the power law it
contains by a likelihood ratio (Wilks: TS ~ chi2 with one degree of freedom), so that the
user sees whether the curvature is needed. Flux points come from the same datasets.

Results: ``spectrum`` (ECSV flux points, GADF SED format), ``spectrum_preview`` (PNG) and
``fit_result`` (JSON: every parameter with its error, counts, energy range, the
comparison with the power law, and the IRF statistical uncertainty of the observations
used, ``irf_uncertainty``, with ``amplitude_err_irf`` = amplitude x the effective area's
relative MC error over the fitted range).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from . import dl3_store, irf_uncertainty, job

log = logging.getLogger("uws.cta.gammapy_spectra")

EXCLUSION_RADIUS_DEG = 0.3  # around the target, kept out of the OFF regions
DEFAULT_ON_RADIUS_DEG = 0.11


def make_onoff_datasets(observations, target, on_radius_deg: float, energy_axis, names=None):
    """One ``SpectrumDatasetOnOff`` per observation (reflected regions, safe mask).

    Runs without any OFF region (target too close to the pointing) are skipped with a
    warning; an empty result is a user error.
    """
    import astropy.units as u
    import numpy as np
    from gammapy.datasets import SpectrumDataset
    from gammapy.makers import (
        ReflectedRegionsBackgroundMaker,
        SafeMaskMaker,
        SpectrumDatasetMaker,
    )
    from gammapy.maps import MapAxis, RegionGeom, WcsGeom
    from regions import CircleSkyRegion

    edges = energy_axis.edges.to_value("TeV")
    energy_true = MapAxis.from_energy_bounds(
        edges[0] / 3, edges[-1] * 3, nbin=10, per_decade=True, unit="TeV", name="energy_true"
    )
    on_region = CircleSkyRegion(target, on_radius_deg * u.deg)
    geom = RegionGeom.create(region=on_region, axes=[energy_axis])
    empty = SpectrumDataset.create(geom=geom, energy_axis_true=energy_true)
    exclusion_geom = WcsGeom.create(skydir=target, width=(10, 10), binsz=0.02, frame="icrs")
    exclusion = ~exclusion_geom.region_mask(
        [CircleSkyRegion(target, max(EXCLUSION_RADIUS_DEG, 2 * on_radius_deg) * u.deg)]
    )
    maker = SpectrumDatasetMaker(
        containment_correction=True, selection=["counts", "exposure", "edisp"]
    )
    bkg_maker = ReflectedRegionsBackgroundMaker(exclusion_mask=exclusion)
    safe = SafeMaskMaker(methods=["aeff-max"], aeff_percent=10)

    datasets = []
    for i, obs in enumerate(observations):
        name = names[i] if names else f"obs-{obs.obs_id}"
        job.report_progress(
            0.05 + 0.45 * i / max(len(observations), 1),
            f"ON/OFF spectrum of run {i + 1}/{len(observations)} ({name})",
        )
        dataset = maker.run(empty.copy(name=name), obs)
        dataset = bkg_maker.run(dataset, obs)
        # No OFF region at all is counts_off None; zero OFF *counts* in existing regions
        # is data (a short bin, little background) and must be kept: dropping it would
        # bias light curves towards bins with background fluctuations up.
        if dataset.counts_off is None or not np.any(dataset.acceptance_off.data > 0):
            log.warning("%s: no reflected OFF region (target at the pointing?), skipped", name)
            continue
        dataset = safe.run(dataset, obs)
        datasets.append(dataset)
        info = dataset.info_dict()
        log.info(
            "dataset %d/%d (%s): %d ON, %d OFF, alpha %.3f, excess %.1f",
            i + 1, len(observations), name, info["counts"], info["counts_off"],
            info["alpha"], info["excess"],
        )  # fmt: skip
    if not datasets:
        raise job.JobError(
            "empty selection: no observation has reflected OFF regions around the target "
            "(is the target inside the fields of view, away from the pointing centre?)"
        )
    return datasets


SPECTRAL_MODELS = ("power_law", "log_parabola", "exp_cutoff_power_law")
# Extra free parameters of each model over the power law (the dof of the likelihood ratio).
EXTRA_DOF = {"power_law": 0, "log_parabola": 1, "exp_cutoff_power_law": 1}


def spectral_model(
    name: str,
    index: float = 2.5,
    amplitude: float = 1e-11,
    beta: float = 0.1,
    e_cut_tev: float = 10.0,
):
    """A gammapy spectral model by its job-parameter name, referenced at 1 TeV.

    ``index`` is the slope at 1 TeV for every model (``alpha`` of the log-parabola, whose
    curvature ``beta`` uses the natural logarithm as in gammapy); the cut-off is given as an
    energy and fitted as ``lambda_ = 1 / E_cut``.
    """
    import astropy.units as u
    from gammapy.modeling.models import (
        ExpCutoffPowerLawSpectralModel,
        LogParabolaSpectralModel,
        PowerLawSpectralModel,
    )

    amp = amplitude * u.Unit("cm-2 s-1 TeV-1")
    if name == "power_law":
        return PowerLawSpectralModel(index=index, amplitude=amp, reference=1 * u.TeV)
    if name == "log_parabola":
        return LogParabolaSpectralModel(alpha=index, beta=beta, amplitude=amp, reference=1 * u.TeV)
    if name == "exp_cutoff_power_law":
        return ExpCutoffPowerLawSpectralModel(
            index=index, amplitude=amp, reference=1 * u.TeV, lambda_=(1 / e_cut_tev) / u.TeV
        )
    raise job.JobError(
        f"parameter 'spectral_model': '{name}' is not one of {', '.join(SPECTRAL_MODELS)}"
    )


def fit_spectrum(
    datasets,
    model_name: str = "power_law",
    index_start: float = 2.5,
    freeze_index: float | None = None,
):
    """Joint WStat fit of the named model at 1 TeV; raises JobError if the fit fails."""
    from gammapy.datasets import Datasets
    from gammapy.modeling import Fit
    from gammapy.modeling.models import SkyModel

    spectral = spectral_model(model_name, index=freeze_index or index_start)
    slope = spectral.alpha if model_name == "log_parabola" else spectral.index
    slope.frozen = freeze_index is not None
    model = SkyModel(spectral_model=spectral, name="source")
    datasets = Datasets(datasets)
    datasets.models = [model]
    result = Fit().run(datasets)
    if not result.success:
        label = model_name.replace("_", " ")
        raise job.JobError(f"{label} fit did not converge: {result.message}")
    return datasets, model, result


def fit_power_law(datasets, index_start: float = 2.5, freeze_index: float | None = None):
    """Joint WStat fit of a power law at 1 TeV (the light curve's spectral shape)."""
    return fit_spectrum(datasets, "power_law", index_start, freeze_index)


def significance(ts: float, dof: int) -> float:
    """Two-sided Gaussian significance of a TS with ``dof`` degrees of freedom (Wilks).

    From the log of the p-value, so that a bright source (TS in the thousands, p below the
    smallest float) gets a number rather than infinity, which JSON cannot hold; where even
    scipy's log survival function underflows, its asymptotic form for large TS is used.
    """
    from scipy import special, stats

    ts = max(float(ts), 0.0)
    log_p = float(stats.chi2.logsf(ts, dof))
    if not math.isfinite(log_p):
        half = ts / 2
        log_p = -half + (dof / 2 - 1) * math.log(half) - math.lgamma(dof / 2)
    return float(-special.ndtri_exp(log_p + math.log(0.5)))


def compare_with_power_law(datasets, model_name: str, stat_model: float) -> dict | None:
    """Likelihood-ratio test of the chosen curved model against the nested power law.

    TS = WStat(power law) - WStat(model); under the power law TS follows chi2 with the
    number of extra parameters (Wilks; the log-parabola's beta = 0 is inside its range,
    the cut-off's lambda = 0 at its edge, where the p-value is conservative).
    """
    from scipy import stats

    if model_name == "power_law":
        return None
    copies = [d.copy(name=d.name) for d in datasets]
    _, pl_model, pl_result = fit_spectrum(copies, "power_law")
    ts = float(pl_result.total_stat - stat_model)
    dof = EXTRA_DOF[model_name]
    return {
        "against": "power_law",
        "wstat_power_law": float(pl_result.total_stat),
        "wstat_model": float(stat_model),
        "ts": ts,
        "delta_dof": dof,
        "p_value": float(stats.chi2.sf(max(ts, 0.0), dof)),
        "significance_sigma": significance(ts, dof),
        "power_law_index": float(pl_model.spectral_model.index.value),
        "power_law_index_err": float(pl_model.spectral_model.index.error),
    }


def parameters_summary(spectral) -> dict:
    """Every parameter of the fitted model: value, error, unit, frozen."""
    return {
        p.name: {
            "value": float(p.value),
            "error": float(p.error),
            "unit": str(p.unit),
            "frozen": bool(p.frozen),
        }
        for p in spectral.parameters
    }


def plot_spectrum(flux_points, model, path: Path, title: str) -> None:
    """Flux points with the fitted model and its 1-sigma band."""
    import astropy.units as u
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    edges = flux_points.geom.axes["energy"].edges
    bounds = [edges[0].to_value("TeV"), edges[-1].to_value("TeV")] * u.TeV
    label = f"{type(model.spectral_model).__name__.replace('SpectralModel', '')} fit"
    model.spectral_model.plot(bounds, ax=ax, sed_type="e2dnde", color="C1", label=label)
    model.spectral_model.plot_error(bounds, ax=ax, sed_type="e2dnde", facecolor="C1", alpha=0.3)
    flux_points.plot(ax=ax, sed_type="e2dnde", color="C0", label="flux points")
    ax.set_title(title)
    ax.legend()
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


def counts_summary(datasets) -> dict:
    """Total ON/OFF counts, excess and a WStat significance over all runs."""
    from gammapy.stats import WStatCountsStatistic

    infos = [d.info_dict() for d in datasets]
    n_on = sum(i["counts"] for i in infos)
    n_off = sum(i["counts_off"] for i in infos)
    weighted_off = sum(i["alpha"] * i["counts_off"] for i in infos)
    alpha = weighted_off / n_off if n_off else float("nan")
    stat = WStatCountsStatistic(n_on=n_on, n_off=n_off, alpha=alpha)
    return {
        "counts_on": int(n_on),
        "counts_off": int(n_off),
        "alpha_effective": float(alpha),
        "excess": float(n_on - weighted_off),
        "significance": float(stat.sqrt_ts),
        "runs": [
            {
                "name": i["name"],
                "counts": int(i["counts"]),
                "counts_off": int(i["counts_off"]),
                "alpha": float(i["alpha"]),
                "excess": float(i["excess"]),
                "sqrt_ts": float(i["sqrt_ts"]),
                "livetime_s": float(i["livetime"].to_value("s")),
            }
            for i in infos
        ],
    }


def main(params: job.Params) -> None:
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from gammapy.estimators import FluxPointsEstimator
    from gammapy.maps import MapAxis

    obs_ids = params.obs_ids()
    ra, dec = params.sky_position()
    emin, emax = params.energy_range(0.3, 30.0)
    nbins = params.integer("nbins", 10, lo=1, hi=100)
    on_radius = params.number("on_radius", DEFAULT_ON_RADIUS_DEG, lo=0.0, hi=0.5, lo_open=True)
    model_name = params.text("spectral_model", "power_law") or "power_law"
    spectral_model(model_name)  # a clear error for an unknown model before any work

    job.write_context()
    observations = dl3_store.load_observations(obs_ids)
    target = SkyCoord(ra, dec, unit="deg", frame="icrs")
    energy_axis = MapAxis.from_energy_bounds(emin, emax, nbin=nbins, unit="TeV")
    datasets = make_onoff_datasets(observations, target, on_radius, energy_axis)

    comparison_input = [d.copy(name=d.name) for d in datasets]
    job.report_progress(0.5, f"fitting a {model_name.replace('_', ' ')}")
    datasets, model, result = fit_spectrum(datasets, model_name)
    spectral = model.spectral_model
    slope = spectral.alpha if model_name == "log_parabola" else spectral.index
    log.info(
        "fit (%s): index %.3f +- %.3f, amplitude %.3e +- %.3e",
        model_name, slope.value, slope.error,
        spectral.amplitude.value, spectral.amplitude.error,
    )  # fmt: skip
    comparison = compare_with_power_law(comparison_input, model_name, result.total_stat)
    if comparison:
        log.info(
            "%s vs power law: TS %.2f, p-value %.3g", model_name, comparison["ts"],
            comparison["p_value"],
        )  # fmt: skip

    job.report_progress(0.7, f"flux points in {nbins} energy bins")
    estimator = FluxPointsEstimator(
        energy_edges=energy_axis.edges, source="source", selection_optional=["ul"]
    )
    flux_points = estimator.run(datasets)
    table = flux_points.to_table(sed_type="dnde", format="gadf-sed")
    table.meta.update({"obs_ids": " ".join(str(d.name) for d in datasets), "ra": ra, "dec": dec})
    table.write(
        job.output_path("spectrum", "spectrum.ecsv"), format="ascii.ecsv", overwrite=True
    )

    title = f"{len(datasets)} run(s), {model_name}, index {slope.value:.2f} ± {slope.error:.2f}"
    plot_spectrum(
        flux_points, model, job.output_path("spectrum_preview", "spectrum_preview.png"), title
    )

    safe_ranges = [d.energy_range_safe for d in datasets]
    safe_min = min(float(r[0].quantity.to_value("TeV").min()) for r in safe_ranges)
    irf_unc = irf_uncertainty.for_obs_ids(
        [int(o.obs_id) for o in observations], (max(emin, safe_min), emax), (ra, dec)
    )
    if irf_unc["stated"]:
        log.info(
            "IRF statistics over %.2f-%.1f TeV: effective area relative error %.1f %% "
            "(mean %.1f %%, max %.1f %%)",
            *irf_unc["energy_range_tev"], 100 * irf_unc["aeff_relerr_combined"],
            100 * irf_unc["aeff_relerr_mean"], 100 * irf_unc["aeff_relerr_max"],
        )  # fmt: skip
    fit = {
        "model": type(spectral).__name__,
        "spectral_model": model_name,
        "index": float(slope.value),  # the slope at 1 TeV (alpha of the log-parabola)
        "index_err": float(slope.error),
        "parameters": parameters_summary(spectral),
        "comparison_with_power_law": comparison,
        "amplitude": float(spectral.amplitude.value),
        "amplitude_err": float(spectral.amplitude.error),
        "amplitude_err_irf": irf_uncertainty.scaled_error(spectral.amplitude.value, irf_unc),
        "irf_uncertainty": irf_unc,
        "amplitude_unit": str(spectral.amplitude.unit),
        "reference_tev": float(spectral.reference.quantity.to_value(u.TeV)),
        "correlation_index_amplitude": float(
            spectral.covariance.get_subcovariance([slope.name, "amplitude"]).correlation[0, 1]
        ),
        "fit_success": bool(result.success),
        "fit_message": str(result.message),
        "wstat_total": float(result.total_stat),
        "obs_ids": [int(o.obs_id) for o in observations],
        "datasets_used": [d.name for d in datasets],
        "on_radius_deg": on_radius,
        "energy_range_tev": [emin, emax],
        "safe_energy_min_tev": safe_min,
        "n_flux_points": int(len(table)),
        **counts_summary(datasets),
    }
    job.write_json(job.output_path("fit_result", "fit_result.json"), fit)


if __name__ == "__main__":
    job.run(main)
