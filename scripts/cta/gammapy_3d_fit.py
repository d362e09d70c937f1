"""gammapy_3d_fit: 3D (energy x sky) likelihood fit of one source over stacked runs (DL3 -> DL4).

The selected runs are binned on one sky cube around the target (counts, exposure, PSF,
energy dispersion and the DL3 background template, a safe mask per run) and stacked into
one ``MapDataset``. The model is the source — a point or a symmetric Gaussian, position
free (and the Gaussian's width), with the spectral model chosen by ``spectral_model`` as in
``gammapy_spectra`` — plus a ``FoVBackgroundModel`` whose norm is free: the background
template's normalisation is fitted together with the source rather than taken from an
exclusion region, which is what a 3D analysis gains over ring or reflected backgrounds.
The fit is a Cash likelihood over every bin, started at the brightest excess near the
target; errors come from the covariance at the best fit (HESSE; for the position at least
a parabola across the pixel grid, see ``robust_position_errors``). The source's TS is the
likelihood gain over the background alone (refitted); a curved spectrum is compared with
the power law refitted with the same spatial model (Wilks, as in ``gammapy_spectra``).

Results: ``fit_result`` (JSON: every parameter with value, error, unit; the position with
errors and its offset from the requested target; TS; model comparison; fit status; the
IRF statistical uncertainty, ``irf_uncertainty``), ``ts_map`` (FITS, ``TSMapEstimator``
for a source of the requested shape on the fitted background) and ``ts_preview`` (PNG),
``residual_preview`` (PNG,
significance of counts - model), ``spectrum_residual_preview`` (PNG, counts and model per
energy bin around the fitted position).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from workers import jobside

from . import dl3_store, gammapy_spectra, irf_uncertainty, job

log = logging.getLogger("uws.cta.gammapy_3d_fit")

SPATIAL_MODELS = ("point", "gauss")
OFFSET_MAX_DEG = 2.5  # beyond this the IRFs are poorly known: masked (as gammapy_maps)
SIGMA_START_DEG = 0.1  # start of the Gaussian's width
SIGMA_BOUNDS_DEG = (0.005, 1.0)
SMOOTH_DEG = 0.1  # Gaussian smoothing of the excess that locates the fit's start
START_MIN_SIGNIFICANCE = 4.0  # below it, nothing to start from: the fit starts at the target
RESIDUAL_RADIUS_DEG = 0.1  # correlation radius of the residual significance map
SPECTRUM_REGION_DEG = 0.2  # region around the fitted position of the spectral residuals
MAX_PIXELS = 250_000  # sky pixels times energy bins: keeps a job's memory well under 1 GB


# ------------------------------------------------------------------------------ geometry


def make_geometry(target, width_deg: float, binsz_deg: float, emin: float, emax: float, nbins: int):
    """The analysis cube: a square sky map around the target, log energy bins (reco)."""
    from gammapy.maps import MapAxis, WcsGeom

    energy = MapAxis.from_energy_bounds(emin, emax, nbin=nbins, unit="TeV")
    return WcsGeom.create(
        skydir=target, width=(width_deg, width_deg), binsz=binsz_deg, frame="icrs", axes=[energy]
    )


def true_energy_axis(geom, per_decade: int = 8):
    """True energies half a decade wider on each side (spill-over through the energy
    dispersion); every true bin costs one PSF convolution per likelihood evaluation."""
    from gammapy.maps import MapAxis

    edges = geom.axes["energy"].edges
    return MapAxis.from_energy_bounds(
        edges[0] / 3, edges[-1] * 3, nbin=per_decade, per_decade=True, name="energy_true"
    )


def stack_observations(
    observations,
    geom,
    offset_max_deg: float = OFFSET_MAX_DEG,
    with_counts: bool = True,
    progress: tuple[float, float] = (0.05, 0.45),
    true_per_decade: int = 8,
):
    """Bin every run on ``geom`` (IRFs included), mask it, stack them.

    The PSF and energy dispersion are kept in one spatial bin over the cube (the
    exposure-weighted IRF at its centre): the IRFs here vary little across a few degrees,
    and gammapy recomputes a position-dependent PSF kernel (~0.3 s) each time the fitted
    source moves. ``with_counts=False`` reduces IRFs only: the closure tests draw counts
    from the model. Runs whose field of view misses the cube are skipped; none left is a
    user error.
    """
    import astropy.units as u
    from gammapy.datasets import MapDataset
    from gammapy.makers import MapDatasetMaker, SafeMaskMaker

    reference = MapDataset.create(
        geom,
        energy_axis_true=true_energy_axis(geom, true_per_decade),
        binsz_irf=geom.width.to_value("deg").max() * u.deg,
        name="reference",
    )
    stacked = reference.copy(name="stacked")
    selection = ["exposure", "background", "psf", "edisp"] + (["counts"] if with_counts else [])
    maker = MapDatasetMaker(selection=selection)
    safe = SafeMaskMaker(methods=["offset-max", "aeff-max"], offset_max=offset_max_deg * u.deg)
    half_diagonal = 0.5 * max(geom.width.to_value("deg").ravel()) * 2**0.5
    used = []
    first, span = progress
    for i, obs in enumerate(observations):
        pointing = obs.get_pointing_icrs(obs.tmid)
        distance = pointing.separation(geom.center_skydir).deg
        if distance > offset_max_deg + half_diagonal:
            log.warning(
                "obs_id %d: pointing %.1f deg from the cube centre, skipped", obs.obs_id, distance
            )
            continue
        dataset = safe.run(maker.run(reference.copy(name=f"obs-{obs.obs_id}"), obs), obs)
        stacked.stack(dataset)
        used.append(int(obs.obs_id))
        job.report_progress(
            first + span * (i + 1) / len(observations), f"binned run {i + 1}/{len(observations)}"
        )
        if with_counts:
            log.info(
                "binned run %d/%d (obs_id %d): %d counts in the safe cube",
                i + 1, len(observations), obs.obs_id, int(dataset.counts.data[dataset.mask].sum()),
            )  # fmt: skip
    if not used:
        raise job.JobError(
            "empty selection: none of the observations has its field of view on the cube"
        )
    return stacked, used


# --------------------------------------------------------------------------------- model


def source_model(
    spatial: str,
    spectral_name: str,
    ra: float,
    dec: float,
    width_deg: float,
    index: float = 2.5,
    amplitude: float = 1e-11,
    sigma_deg: float = SIGMA_START_DEG,
):
    """The fitted source: position free within the cube, a Gaussian's width free too."""
    import astropy.units as u
    from gammapy.modeling.models import GaussianSpatialModel, PointSpatialModel, SkyModel

    if spatial == "point":
        shape = PointSpatialModel(lon_0=ra * u.deg, lat_0=dec * u.deg, frame="icrs")
    elif spatial == "gauss":
        shape = GaussianSpatialModel(
            lon_0=ra * u.deg, lat_0=dec * u.deg, sigma=sigma_deg * u.deg, frame="icrs"
        )
        shape.sigma.min, shape.sigma.max = SIGMA_BOUNDS_DEG
    else:
        raise job.JobError(
            f"parameter 'spatial_model': '{spatial}' is not one of {', '.join(SPATIAL_MODELS)}"
        )
    # Keep the position inside the cube: outside, the likelihood has no data to hold it.
    half = 0.5 * width_deg
    cos_dec = max(math.cos(math.radians(dec)), 1e-3)
    shape.lon_0.min, shape.lon_0.max = ra - half / cos_dec, ra + half / cos_dec
    shape.lat_0.min, shape.lat_0.max = max(dec - half, -90.0), min(dec + half, 90.0)
    spectral = gammapy_spectra.spectral_model(spectral_name, index=index, amplitude=amplitude)
    spectral.amplitude.min = 0.0  # flux never negative: the TS is then one-sided
    return SkyModel(spectral_model=spectral, spatial_model=shape, name="source")


def background_model(dataset_name: str):
    """FoV background: the template's norm free, its spectral tilt fixed at 0."""
    from gammapy.modeling.models import FoVBackgroundModel

    model = FoVBackgroundModel(dataset_name=dataset_name)
    model.spectral_model.norm.frozen = False
    model.spectral_model.tilt.frozen = True
    return model


def _fit(dataset, models):
    """Cash fit of ``models`` on a copy of ``dataset``: (result, the copy with the models).

    The likelihood is not smooth in the position (gammapy spreads a point source
    bilinearly over 4 pixels): MIGRAD sometimes stops at the minimum with "estimated
    distance to minimum too large" (1 fit in 48 in the closure benchmark), its EDM goal
    (0.0002 with gammapy's tolerance 0.1) unreachable across a kink. A second MIGRAD from
    there with tolerance 1 (EDM < 0.002) then converges to the same statistic; the
    result's ``retried`` says so.
    """
    from gammapy.modeling import Fit

    work = dataset.copy(name=dataset.name)
    work.models = models
    result = Fit().run([work])
    result.retried = False
    if not result.success:
        log.info("fit stopped (%s): MIGRAD again with tolerance 1", result.message)
        result = Fit(optimize_opts={"tol": 1.0}).run([work])
        result.retried = True
    return result, work


def detection_map(dataset, background, spatial: str, energy_edges, downsampling: int = 2):
    """``TSMapEstimator`` on the fitted background alone: where a source of the requested
    shape (power law of index 2.5; the Gaussian at its starting width) would add most."""
    import astropy.units as u
    from gammapy.estimators import TSMapEstimator
    from gammapy.modeling.models import (
        GaussianSpatialModel,
        PointSpatialModel,
        PowerLawSpectralModel,
        SkyModel,
    )

    shape = (
        GaussianSpatialModel(sigma=SIGMA_START_DEG * u.deg, frame="icrs")
        if spatial == "gauss"
        else PointSpatialModel(frame="icrs")
    )
    kernel = SkyModel(spectral_model=PowerLawSpectralModel(index=2.5), spatial_model=shape)
    work = dataset.copy(name=dataset.name)
    work.models = background
    estimator = TSMapEstimator(
        kernel_model=kernel,
        downsampling_factor=downsampling,
        energy_edges=energy_edges,
        selection_optional=[],
        sum_over_energy_groups=True,
    )
    return estimator.run(work)


def excess_peak(dataset, target, search_radius_deg: float):
    """The brightest excess over the fitted background near the target: (significance, where).

    Started at the target, a source a few PSF widths away has no likelihood gradient to
    follow and the fit ends at zero flux with a wandering position (seen on off-centre
    truths in the closure tests). Counts and background, summed over the safe energies,
    are smoothed with a Gaussian of SMOOTH_DEG; the peak of excess / sqrt(background)
    within the search radius is where the source starts. Cheap next to a TS map, which
    the job still computes for the user. ``dataset`` holds the background-only model.
    """
    import astropy.units as u
    import numpy as np

    mask = dataset.mask_safe
    counts, npred = dataset.counts, dataset.npred()
    if mask is not None:
        counts, npred = counts * mask, npred * mask
    counts = counts.sum_over_axes(keepdims=False).smooth(SMOOTH_DEG * u.deg, kernel="gauss")
    npred = npred.sum_over_axes(keepdims=False).smooth(SMOOTH_DEG * u.deg, kernel="gauss")
    with np.errstate(divide="ignore", invalid="ignore"):
        # a Gaussian kernel's sum of squares is 1 / (4 pi sigma^2) in pixels
        sigma_pix = SMOOTH_DEG / float(counts.geom.pixel_scales.mean().to_value("deg"))
        norm = math.sqrt(4 * math.pi) * sigma_pix
        signif = (counts.data - npred.data) / np.sqrt(npred.data) * norm
    coords = counts.geom.get_coord().skycoord
    inside = coords.separation(target).deg <= search_radius_deg
    data = np.where(inside & np.isfinite(signif), signif, -np.inf)
    iy, ix = np.unravel_index(np.argmax(data), data.shape)
    return float(data[iy, ix]), coords[iy, ix].icrs


def fit_3d(
    dataset,
    target,
    spatial: str = "point",
    spectral_name: str = "power_law",
    width_deg: float = 2.0,
    compare: bool = True,
) -> dict[str, Any]:
    """Background-only fit, then source + FoV background from the brightest excess.

    The source starts at the excess peak within the cube's inner part (at the target if
    it is below START_MIN_SIGNIFICANCE: nothing to start from). Returns the fitted
    models, the fit result, the source's TS (the Cash gain over the refitted background
    alone), the background-only models, where the fit started, and the comparison with
    the power law refitted from the same start (``None`` for the power law itself).
    Raises JobError if the main fit does not converge: a result the optimiser did not
    reach is not one to report.
    """
    import numpy as np

    job.report_progress(0.5, "background-only fit")
    null_result, null_dataset = _fit(dataset, [background_model(dataset.name)])
    peak, peak_pos = excess_peak(null_dataset, target, max(0.5 * width_deg - 0.2, 0.1))
    start = peak_pos if peak >= START_MIN_SIGNIFICANCE else target
    ra, dec = float(start.ra.deg), float(start.dec.deg)
    t_ra, t_dec = float(target.ra.deg), float(target.dec.deg)

    def fitted_source(name: str):
        model = source_model(spatial, name, t_ra, t_dec, width_deg)
        model.spatial_model.lon_0.value, model.spatial_model.lat_0.value = ra, dec
        return model

    job.report_progress(0.6, f"fitting the {spatial} source ({spectral_name})")
    result, fitted = _fit(dataset, [fitted_source(spectral_name), background_model(dataset.name)])
    if not result.success:
        raise job.JobError(
            f"3D fit ({spatial}, {spectral_name.replace('_', ' ')}) did not converge: "
            f"{result.message}"
        )
    ts = float(null_result.total_stat - result.total_stat)
    pixel = float(np.max(dataset.counts.geom.pixel_scales.to_value("deg")))
    parabola_errors = robust_position_errors(fitted, pixel)
    comparison = None
    if compare and spectral_name != "power_law":
        job.report_progress(0.7, "refitting a power law for the comparison")
        pl_result, pl_fitted = _fit(
            dataset, [fitted_source("power_law"), background_model(dataset.name)]
        )
        comparison = likelihood_ratio(
            pl_result.total_stat, result.total_stat, spectral_name, pl_fitted.models["source"]
        )
        comparison["power_law_fit_success"] = bool(pl_result.success)
    return {
        "models": fitted.models,
        "dataset": fitted,  # a copy of the input with the fitted models set
        "result": result,
        "ts": ts,
        "null_success": bool(null_result.success),
        "null_models": null_dataset.models,
        "start": {"ra": ra, "dec": dec, "excess_significance": peak},
        "position_errors_parabola": parabola_errors,
        "comparison": comparison,
    }


def robust_position_errors(fitted_dataset, pixel_deg: float) -> dict[str, float]:
    """Position errors that survive gammapy's pixel grid: max(HESSE, parabola over +-2 steps).

    gammapy spreads a point source bilinearly over 4 pixels, so the predicted counts kink
    at every pixel centre: when the fit ends near one, HESSE's finite differences see the
    kink and the position error collapses (an RA error half the true one, pull 4.7, in the
    closure tests). A parabola through the Cash statistic at -2..+2 steps of at least half
    a pixel (other parameters at their best values) averages over the kinks; the larger
    of the two errors is kept, so a sound HESSE error is never reduced. Returns the
    parabola's errors (deg of the coordinate) for the record.
    """
    import numpy as np

    shape = fitted_dataset.models["source"].spatial_model
    cos_dec = max(math.cos(math.radians(shape.lat_0.value)), 1e-3)
    out = {}
    for par, scale in ((shape.lon_0, 1 / cos_dec), (shape.lat_0, 1.0)):
        best, hesse = float(par.value), float(par.error)
        step = max(hesse, 0.5 * pixel_deg * scale)
        offsets = step * np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
        stats = []
        for offset in offsets:
            par.value = best + offset
            stats.append(fitted_dataset.stat_sum())
        par.value = best
        curvature = np.polyfit(offsets, np.asarray(stats) - stats[2], 2)[0]
        parabola = float(1 / math.sqrt(curvature)) if curvature > 0 else float("nan")
        out[par.name] = parabola
        if math.isfinite(parabola) and parabola > hesse:
            par.error = parabola
    fitted_dataset.stat_sum()  # the evaluators back at the best fit
    return out


def likelihood_ratio(stat_power_law: float, stat_model: float, model_name: str, pl_model) -> dict:
    """The comparison block of ``gammapy_spectra``'s fit_result, for Cash statistics.

    Same keys and the same Wilks reading (chi2 with the model's extra degrees of freedom,
    conservative for the cut-off at lambda = 0); ``gammapy_spectra.compare_with_power_law``
    refits 1D ON/OFF datasets itself, so only its conventions are shared.
    """
    from scipy import stats

    ts = float(stat_power_law - stat_model)
    dof = gammapy_spectra.EXTRA_DOF[model_name]
    p_value = float(stats.chi2.sf(max(ts, 0.0), dof))
    return {
        "against": "power_law",
        "cash_power_law": float(stat_power_law),
        "cash_model": float(stat_model),
        "ts": ts,
        "delta_dof": dof,
        "p_value": p_value,
        "significance_sigma": gammapy_spectra.significance(ts, dof),
        "power_law_index": float(pl_model.spectral_model.index.value),
        "power_law_index_err": float(pl_model.spectral_model.index.error),
    }


def position_summary(spatial_model, target) -> dict[str, float]:
    """Fitted RA/Dec with errors (deg), offsets from the target along RA and Dec, distance."""
    from astropy.coordinates import SkyCoord

    ra, dec = spatial_model.lon_0, spatial_model.lat_0
    fitted = SkyCoord(ra.value, dec.value, unit="deg", frame="icrs")
    cos_dec = math.cos(math.radians(dec.value))
    d_ra, d_dec = target.spherical_offsets_to(fitted)
    return {
        "ra": float(ra.value),
        "ra_err": float(ra.error),  # of the RA coordinate; on the sky: times cos(Dec)
        "dec": float(dec.value),
        "dec_err": float(dec.error),
        "offset_ra_deg": float(d_ra.deg),  # along the sky (RA x cos Dec)
        "offset_ra_err_deg": float(ra.error * cos_dec),
        "offset_dec_deg": float(d_dec.deg),
        "offset_dec_err_deg": float(dec.error),
        "offset_from_target_deg": float(fitted.separation(target).deg),
    }


def fit_summary(fitted: dict, target, spatial: str, spectral_name: str) -> dict[str, Any]:
    """The JSON of ``fit_result`` for a ``fit_3d`` output (without run metadata)."""
    models, result = fitted["models"], fitted["result"]
    source = models["source"]
    spectral, shape = source.spectral_model, source.spatial_model
    slope = spectral.alpha if spectral_name == "log_parabola" else spectral.index
    bkg = models[[m.name for m in models if m.name != "source"][0]]
    ts = fitted["ts"]
    # the source's free parameters (spectrum, position, a Gaussian's width) over the null
    dof = len([p for p in source.parameters if not p.frozen])
    covariance = getattr(result, "covariance_result", None)
    summary = {
        "spatial_model": spatial,
        "spectral_model": spectral_name,
        "model": type(spectral).__name__,
        "index": float(slope.value),  # slope at 1 TeV (alpha of the log-parabola)
        "index_err": float(slope.error),
        "amplitude": float(spectral.amplitude.value),
        "amplitude_err": float(spectral.amplitude.error),
        "amplitude_unit": str(spectral.amplitude.unit),
        "reference_tev": float(spectral.reference.quantity.to_value("TeV")),
        **position_summary(shape, target),
        "ts": ts,
        "sqrt_ts": float(math.sqrt(max(ts, 0.0))),
        "ts_dof": dof,
        "significance_sigma": gammapy_spectra.significance(ts, dof),
        "background_norm": float(bkg.spectral_model.norm.value),
        "background_norm_err": float(bkg.spectral_model.norm.error),
        "parameters": {
            "spectral": gammapy_spectra.parameters_summary(spectral),
            "spatial": gammapy_spectra.parameters_summary(shape),
            "background": gammapy_spectra.parameters_summary(bkg.spectral_model),
        },
        "comparison_with_power_law": fitted["comparison"],
        "fit_success": bool(result.success),
        "fit_message": str(result.message),
        "fit_retried_with_tolerance_1": bool(getattr(result, "retried", False)),
        "covariance_success": bool(covariance.success) if covariance is not None else None,
        "fit_nfev": int(getattr(result.optimize_result, "nfev", 0) or 0),
        "cash_total": float(result.total_stat),
        "background_only_fit_success": fitted["null_success"],
        "fit_start": fitted["start"],  # the excess peak near the target, or the target
        # errors = max(HESSE, a parabola over +-2 steps): see robust_position_errors
        "position_errors_parabola_deg": fitted["position_errors_parabola"],
    }
    if spatial == "gauss":
        summary["sigma"] = float(shape.sigma.value)
        summary["sigma_err"] = float(shape.sigma.error)
    return summary


# ------------------------------------------------------------------------------ products


def residual_significance(fitted: dict, radius_deg: float):
    """Li & Ma significance of counts against the full fitted model, band-integrated."""
    import astropy.units as u
    from gammapy.estimators import ExcessMapEstimator

    work = fitted["dataset"]
    edges = work.counts.geom.axes["energy"].edges
    estimator = ExcessMapEstimator(
        correlation_radius=radius_deg * u.deg,
        energy_edges=[edges[0], edges[-1]],
        selection_optional=[],
    )
    return estimator.run(work)["sqrt_ts"].slice_by_idx({"energy": 0})


def plot_map(image, path: Path, title: str, label: str, target, fitted_pos, cmap: str) -> None:
    """PNG of a 2D sky map with the requested target (+) and the fitted position (x)."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig = plt.figure(figsize=(6.4, 5.2))
    ax = fig.add_subplot(projection=image.geom.wcs)
    data = np.asarray(image.data, dtype=float)
    if cmap == "RdBu_r":  # a residual map: symmetric about 0
        vmax = max(3.0, float(np.nanmax(np.abs(data))) if np.isfinite(data).any() else 3.0)
        im = ax.imshow(data, origin="lower", cmap=cmap, vmin=-vmax, vmax=vmax)
    else:
        im = ax.imshow(data, origin="lower", cmap=cmap, interpolation="nearest")
    icrs = ax.get_transform("icrs")
    ax.plot(target.ra.deg, target.dec.deg, "+", color="w", ms=12, transform=icrs, label="target")
    ax.plot(fitted_pos[0], fitted_pos[1], "x", color="k", ms=9, transform=icrs, label="fit")
    ax.set_xlabel("RA")
    ax.set_ylabel("Dec")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    fig.colorbar(im, ax=ax, label=label)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


def plot_spectral_residuals(fitted: dict, center, path: Path, title: str) -> None:
    """Counts, total model and background per energy bin in a circle at the fitted
    position, with (counts - model) / sqrt(model) below: where the spectrum misfits."""
    import astropy.units as u
    import matplotlib.pyplot as plt
    import numpy as np
    from regions import CircleSkyRegion

    work = fitted["dataset"]
    region = CircleSkyRegion(center, SPECTRUM_REGION_DEG * u.deg)
    mask = work.mask_safe if work.mask_safe is not None else None
    counts = work.counts * mask if mask is not None else work.counts
    npred = work.npred() * mask if mask is not None else work.npred()
    bkg = work.npred_background() * mask if mask is not None else work.npred_background()
    c = counts.to_region_nd_map(region).data.ravel()
    m = npred.to_region_nd_map(region).data.ravel()
    b = bkg.to_region_nd_map(region).data.ravel()
    axis = work.counts.geom.axes["energy"]
    e = axis.center.to_value("TeV")
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(6.4, 5.6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    top.errorbar(e, c, yerr=np.sqrt(np.maximum(c, 1)), fmt="o", color="k", label="counts")
    top.step(e, m, where="mid", color="C1", label="model (source + background)")
    top.step(e, b, where="mid", color="C0", ls="--", label="background")
    top.set_xscale("log")
    top.set_yscale("log")
    top.set_ylabel(f"counts within {SPECTRUM_REGION_DEG:g} deg")
    top.set_title(title)
    top.legend(fontsize=8)
    with np.errstate(divide="ignore", invalid="ignore"):
        resid = np.where(m > 0, (c - m) / np.sqrt(m), np.nan)
    bottom.axhline(0, color="grey", lw=0.8)
    bottom.plot(e, resid, "o", color="k")
    bottom.set_xlabel("reconstructed energy [TeV]")
    bottom.set_ylabel("(n - m)/sqrt(m)")
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


# ---------------------------------------------------------------------------------- main


def main(params: job.Params) -> None:
    """Validate every parameter, reduce, fit, write the products."""
    import numpy as np
    from astropy.coordinates import SkyCoord

    obs_ids = params.obs_ids()
    ra, dec = params.sky_position()
    spatial = params.choice("spatial_model", "point", SPATIAL_MODELS)
    spectral_name = params.choice("spectral_model", "power_law", gammapy_spectra.SPECTRAL_MODELS)
    width = params.number("width", 2.0, lo=0.2, hi=6.0)
    binsz = params.number("binsz", 0.02, lo=0.005, hi=0.2)
    emin, emax = params.energy_range(0.3, 30.0)
    nbins = params.integer("nbins", 8, lo=1, hi=40)
    # gammapy pads the map to a multiple of a power of 2 before downsampling: 3, 5, 6, 7
    # fail there for some kernel sizes (a Gaussian's), so only powers of 2 are offered
    downsampling = int(params.choice("ts_downsampling", "2", ("1", "2", "4", "8")))
    npix = round(width / binsz)
    if npix < 10:
        raise job.JobError(
            f"parameter 'binsz' = {binsz:g} deg gives {npix} pixels across width = {width:g} deg:"
            " at least 10"
        )
    if npix * npix * nbins > MAX_PIXELS:
        raise job.JobError(
            f"cube of {npix} x {npix} pixels x {nbins} energy bins is larger than "
            f"{MAX_PIXELS} bins: use a larger binsz, a smaller width or fewer nbins"
        )

    job.write_context()
    observations = dl3_store.load_observations(obs_ids)
    target = SkyCoord(ra, dec, unit="deg", frame="icrs")
    geom = make_geometry(target, width, binsz, emin, emax, nbins)

    packages = ("gammapy", "astropy", "numpy", "regions", "iminuit")
    config = {"width_deg": width, "binsz_deg": binsz, "energy_tev": [emin, emax], "nbins": nbins}
    with jobside.activity("gammapy-3d-reduction", config, packages) as act:
        for entry in jobside.read_used():
            act.used(str(entry["path"]), str(entry.get("role") or "DL3"))
        dataset, used = stack_observations(observations, geom)
    n_counts = int(dataset.counts.data[dataset.mask].sum())
    if n_counts == 0:
        raise job.JobError("no counts in the safe part of the cube: nothing to fit")

    config = {"spatial_model": spatial, "spectral_model": spectral_name, "statistic": "cash"}
    with jobside.activity("gammapy-3d-fit", config, packages):
        fitted = fit_3d(dataset, target, spatial, spectral_name, width)
    summary = fit_summary(fitted, target, spatial, spectral_name)
    log.info(
        "3D fit: TS %.1f, position %.4f %+.4f (%.4f deg from the target), index %.3f +- %.3f",
        summary["ts"], summary["ra"], summary["dec"], summary["offset_from_target_deg"],
        summary["index"], summary["index_err"],
    )  # fmt: skip
    fitted_pos = (summary["ra"], summary["dec"])
    fitted_center = SkyCoord(*fitted_pos, unit="deg", frame="icrs")

    job.report_progress(0.75, "TS map")
    edges = dataset.counts.geom.axes["energy"].edges[[0, -1]]
    ts_maps = detection_map(dataset, fitted["null_models"], spatial, edges, downsampling)
    ts_image = ts_maps["ts"].slice_by_idx({"energy": 0})
    ts_maps.write(job.output_path("ts_map", "ts_map.fits"), overwrite=True)
    ts_data = np.nan_to_num(np.asarray(ts_image.data, dtype=float), nan=-np.inf)
    iy, ix = np.unravel_index(np.argmax(ts_data), ts_data.shape)
    ts_peak = ts_image.geom.to_image().get_coord().skycoord[iy, ix].icrs
    plot_map(
        ts_image, job.output_path("ts_preview", "ts_preview.png"),
        f"TS map ({spatial} source on the background, {len(used)} run(s))", "TS",
        target, fitted_pos, "viridis",
    )  # fmt: skip

    residual = residual_significance(fitted, RESIDUAL_RADIUS_DEG)
    job.report_progress(0.9, "residual maps")
    plot_map(
        residual, job.output_path("residual_preview", "residual_preview.png"),
        f"Residual significance (r = {RESIDUAL_RADIUS_DEG:g} deg) after the fit",
        "sqrt(TS) of counts - model", target, fitted_pos, "RdBu_r",
    )  # fmt: skip
    plot_spectral_residuals(
        fitted, fitted_center,
        job.output_path("spectrum_residual_preview", "spectrum_residual_preview.png"),
        f"{spectral_name}, {spatial}: counts and model within {SPECTRUM_REGION_DEG:g} deg",
    )  # fmt: skip

    # the effective area's MC statistics over the fitted range (chain IRFs state them; the
    # fast path's published-curve IRFs do not: "stated" false)
    irf_unc = irf_uncertainty.for_obs_ids(used, (emin, emax), fitted_pos)
    residual_data = np.asarray(residual.data, dtype=float)
    finite = residual_data[np.isfinite(residual_data)]
    summary.update(
        {
            "target_ra": ra,
            "target_dec": dec,
            "obs_ids": used,
            "n_counts": n_counts,
            "livetime_s": float(
                sum(o.observation_live_time_duration.to_value("s") for o in observations)
            ),
            "energy_range_tev": [emin, emax],
            "nbins": nbins,
            "width_deg": width,
            "binsz_deg": binsz,
            "ts_map_max": float(ts_data[iy, ix]),
            "ts_map_max_ra": float(ts_peak.ra.deg),
            "ts_map_max_dec": float(ts_peak.dec.deg),
            "residual_significance_max_abs": float(np.max(np.abs(finite))) if finite.size else None,
            "amplitude_err_irf": irf_uncertainty.scaled_error(summary["amplitude"], irf_unc),
            "irf_uncertainty": irf_unc,
        }
    )
    job.write_json(job.output_path("fit_result", "fit_result.json"), summary)
    job.report_progress(1.0, "done")


if __name__ == "__main__":
    job.run(main)
