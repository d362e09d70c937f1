"""gammapy_lightcurve: integral flux of the target in time bins (DL3 -> DL4).

Each run's GTI is cut into bins of about ``time_bin`` minutes (bins never straddle the gaps
between runs), each piece becomes a reflected-regions ON/OFF dataset, and
``LightCurveEstimator`` fits the power-law norm in every bin with the spectral index
fixed (fitted jointly on all bins unless the ``index`` parameter gives it). Bins whose
reflected regions hold no OFF count are kept (they are data, not missing regions).

The constant flux is the joint WStat likelihood fit of one norm to all bins, with
asymmetric (profile-likelihood) errors: an inverse-variance weighted mean of the bin
fluxes is biased low at a few tens of counts per bin, because a bin that fluctuates down
gets a smaller symmetric error and so a larger weight. The variability test is the
likelihood ratio TS_var = sum over bins of WStat(constant) - WStat(free norm), chi2 with
n_bins - 1 degrees of freedom under a constant source.

The estimator snaps the requested energy band to the bin edges of the datasets: the band
actually used is read back from the result and written in the outputs.

Results: ``lightcurve`` (ECSV), ``lightcurve_preview`` (PNG), ``lightcurve_summary`` (JSON:
band used, index, likelihood constant flux with asymmetric errors, TS_var of the constant
and its p-value; the weighted mean for comparison; the IRF statistical uncertainty of the
observations over the band, ``irf_uncertainty``, and ``mean_flux_err_irf``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from . import dl3_store, irf_uncertainty, job
from .gammapy_spectra import (
    DEFAULT_ON_RADIUS_DEG,
    fit_power_law,
    make_onoff_datasets,
)

log = logging.getLogger("uws.cta.gammapy_lightcurve")

MAX_TIME_BINS = 500


def time_bins(observations, bin_s: float) -> list:
    """Bins of about ``bin_s`` seconds inside each GTI interval, in time order.

    Each interval is cut into round(duration / bin_s) (at least 1) equal parts, so that
    no bin is a short leftover with few counts.
    """
    import astropy.units as u
    import numpy as np
    from astropy.time import Time

    bins = []
    for obs in observations:
        for start, stop in obs.gti.time_intervals:
            duration = (stop - start).to_value("s")
            n = max(1, round(duration / bin_s))
            edges = start + np.linspace(0.0, duration, n + 1) * u.s
            bins += [Time([edges[k], edges[k + 1]]) for k in range(n)]
            if len(bins) > MAX_TIME_BINS:
                raise job.JobError(
                    f"more than {MAX_TIME_BINS} time bins: choose a larger time_bin"
                )
    return sorted(bins, key=lambda interval: interval[0].mjd)


def weighted_mean_test(flux, flux_err) -> dict:
    """Inverse-variance weighted mean of the bin fluxes and its chi2 (for comparison only:
    biased low at low counts, see the module docstring)."""
    import numpy as np

    ok = np.isfinite(flux) & np.isfinite(flux_err) & (flux_err > 0)
    flux, err = flux[ok], flux_err[ok]
    if len(flux) == 0:
        return {}
    weights = 1 / err**2
    mean = float(np.sum(weights * flux) / np.sum(weights))
    return {
        "weighted_mean_flux": mean,
        "weighted_mean_flux_err": float(np.sqrt(1 / np.sum(weights))),
        "weighted_mean_chi2": float(np.sum(((flux - mean) / err) ** 2)),
    }


def constant_flux_fit(datasets, model, band) -> dict:
    """Likelihood constant flux over all bins and the TS_var variability test.

    ``datasets`` (one per time bin) already carry ``model`` fitted jointly with the index
    frozen: that joint fit *is* the maximum-likelihood constant. Its asymmetric errors come
    from the likelihood profile of the amplitude; each bin is then refitted alone (free
    norm) and TS_var sums the WStat differences.
    """
    import astropy.units as u
    import numpy as np
    from gammapy.modeling import Fit
    from gammapy.modeling.models import SkyModel
    from scipy import stats

    spectral = model.spectral_model
    spectral.index.frozen = True
    Fit().run(datasets)  # again: the estimator must not have moved the joint optimum
    emin, emax = band[0] * u.TeV, band[-1] * u.TeV
    amplitude = spectral.amplitude
    flux = spectral.integral(emin, emax)
    per_amplitude = float((flux / amplitude.quantity).to_value("TeV"))  # flux per amplitude
    flux_unit = flux.unit
    confidence = Fit().confidence(datasets, parameter=amplitude, sigma=1)
    errn = float(confidence.get("errn", np.nan)) if confidence.get("success") else np.nan
    errp = float(confidence.get("errp", np.nan)) if confidence.get("success") else np.nan

    stat_constant = [float(d.stat_sum()) for d in datasets]
    stat_free = []
    for dataset in datasets:
        alone = dataset.copy(name=dataset.name)
        free = SkyModel(spectral_model=spectral.copy(), name="source")
        free.spectral_model.index.frozen = True
        alone.models = [free]
        result = Fit().run([alone])
        stat_free.append(float(result.total_stat) if result.success else float(alone.stat_sum()))
    ts_var = float(max(0.0, sum(stat_constant) - sum(stat_free)))
    ndof = len(datasets) - 1
    p_value = float(stats.chi2.sf(ts_var, ndof)) if ndof > 0 else None
    return {
        "n_points": len(datasets),
        "constant_method": "joint WStat likelihood fit of one norm to all bins",
        "mean_flux": float(flux.value),
        "mean_flux_err": float(abs(amplitude.error) * per_amplitude),
        "mean_flux_errn": errn * per_amplitude,
        "mean_flux_errp": errp * per_amplitude,
        "mean_flux_unit": str(flux_unit),
        "ts_var": ts_var,
        "chi2_constant": ts_var,  # the likelihood chi2 of the constant (= TS_var)
        "ndof": ndof,
        "p_value_constant": p_value,
        "variability_sigma": (
            float(stats.norm.isf(p_value / 2)) if p_value is not None and p_value > 0 else None
        ),
    }


def plot_lightcurve(lc, mean: float | None, path: Path, title: str) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.2, 4.4))
    lc.plot(ax=ax, sed_type="flux", axis_name="time", marker="o", label="flux")
    if mean is not None:
        ax.axhline(mean, color="C1", ls="--", label="constant (likelihood fit)")
    ax.set_title(title)
    ax.legend()
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


def main(params: job.Params) -> None:
    import astropy.units as u
    import numpy as np
    from astropy.coordinates import SkyCoord
    from astropy.time import Time
    from gammapy.estimators import LightCurveEstimator
    from gammapy.maps import MapAxis

    obs_ids = params.obs_ids()
    ra, dec = params.sky_position()
    emin, emax = params.energy_range(0.5, 30.0)
    bin_min = params.number("time_bin", 10.0, lo=0.5, hi=10_000.0)
    on_radius = params.number("on_radius", DEFAULT_ON_RADIUS_DEG, lo=0.0, hi=0.5, lo_open=True)
    fixed_index = params.number("index", lo=0.5, hi=6.0) if params.given("index") else None

    job.write_context()
    observations = dl3_store.load_observations(obs_ids)
    target = SkyCoord(ra, dec, unit="deg", frame="icrs")

    intervals = time_bins(observations, bin_min * 60.0)
    short = observations.select_time(intervals)
    names = [f"obs-{obs.obs_id}-t{k:03d}" for k, obs in enumerate(short)]
    log.info("%d time bins of about %g min over %d run(s)", len(intervals), bin_min, len(obs_ids))
    nbin = max(2, round(5 * np.log10(emax / emin)))
    energy_axis = MapAxis.from_energy_bounds(emin, emax, nbin=nbin, unit="TeV")
    datasets = make_onoff_datasets(short, target, on_radius, energy_axis, names=names)

    job.report_progress(0.5, "fitting the spectral shape")
    datasets, model, _ = fit_power_law(datasets, freeze_index=fixed_index)
    index, index_err = model.spectral_model.index.value, model.spectral_model.index.error
    model.spectral_model.index.frozen = True
    log.info("spectral index %s: %.3f", "fixed" if fixed_index else "fitted", index)

    estimator = LightCurveEstimator(
        energy_edges=[emin, emax] * u.TeV,
        source="source",
        time_intervals=intervals,
        selection_optional=["ul"],
    )
    job.report_progress(0.6, f"fluxes in {len(intervals)} time bins")
    lc = estimator.run(datasets)
    band = lc.geom.axes["energy"].edges.to_value("TeV")
    table = lc.to_table(sed_type="flux", format="lightcurve")
    scale = str(table.meta.get("TIMESYS", "tt")).lower()
    for position, (column, name) in enumerate(
        (("time_min", "time_start_utc"), ("time_max", "time_stop_utc"))
    ):
        times = Time(np.asarray(table[column]), format="mjd", scale=scale).utc.isot
        table.add_column(times, name=name, index=2 + position)  # after time_min, time_max
    table.meta.update(
        {"energy_min_tev": float(band[0]), "energy_max_tev": float(band[-1]), "index": index}
    )
    table.write(
        job.output_path("lightcurve", "lightcurve.ecsv"), format="ascii.ecsv", overwrite=True
    )

    flux = np.asarray(table["flux"]).reshape(len(table), -1)[:, 0]
    flux_err = np.asarray(table["flux_err"]).reshape(len(table), -1)[:, 0]
    job.report_progress(0.85, "constant flux and variability test")
    test = constant_flux_fit(datasets, model, band)
    test.update(weighted_mean_test(flux, flux_err))
    log.info(
        "constant flux %.3e (-%.2e +%.2e), TS_var %.1f for %d dof, p-value %s",
        test["mean_flux"], test["mean_flux_errn"], test["mean_flux_errp"], test["ts_var"],
        test["ndof"], test["p_value_constant"],
    )  # fmt: skip
    title = f"Flux {band[0]:.2f}-{band[-1]:.1f} TeV, {len(table)} bins of ~{bin_min:g} min"
    plot_lightcurve(
        lc,
        test.get("mean_flux"),
        job.output_path("lightcurve_preview", "lightcurve_preview.png"),
        title,
    )
    irf_unc = irf_uncertainty.for_obs_ids(
        [int(o.obs_id) for o in observations], (float(band[0]), float(band[-1])), (ra, dec)
    )
    test["mean_flux_err_irf"] = irf_uncertainty.scaled_error(test["mean_flux"], irf_unc)
    summary = {
        "obs_ids": [int(o.obs_id) for o in observations],
        "energy_range_requested_tev": [emin, emax],
        "energy_range_used_tev": [float(band[0]), float(band[-1])],
        "time_bin_min": bin_min,
        "n_time_bins": int(len(table)),
        "n_time_bins_requested": len(intervals),
        "index": float(index),
        "index_err": float(index_err) if fixed_index is None else 0.0,
        "index_fixed_by_user": fixed_index is not None,
        "flux_unit": str(table["flux"].unit),
        **test,
        "irf_uncertainty": irf_unc,
    }
    job.write_json(job.output_path("lightcurve_summary", "lightcurve_summary.json"), summary)
    log.info("light curve: %d bins, band %.2f-%.1f TeV", len(table), band[0], band[-1])


if __name__ == "__main__":
    job.run(main)
