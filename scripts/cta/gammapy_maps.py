"""gammapy_maps: counts and significance maps around a sky position (DL3 -> DL4).

Each observation is binned on a cutout of the requested map, its background template is
renormalised outside an exclusion circle around the target (``FoVBackgroundMaker``), and
the runs are stacked. ``ExcessMapEstimator`` then gives the Li & Ma significance in a
correlation circle at every pixel, integrated over the energy band.

Results: ``count_map`` (FITS) and ``count_preview`` (PNG), ``significance_map`` (FITS) and
``significance_preview`` (PNG), ``map_summary`` (JSON: peak and target significance).
"""

from __future__ import annotations

import logging
from pathlib import Path

from workers import jobside

from . import dl3_store, job

log = logging.getLogger("uws.cta.gammapy_maps")

OFFSET_MAX_DEG = 2.5  # beyond this the analytic/MC IRFs are poorly known: masked
EXCLUSION_RADIUS_DEG = 0.3  # kept out of the background normalisation


def make_stacked_dataset(observations, geom, target, offset_max_deg: float = OFFSET_MAX_DEG):
    """Bin, mask and background-normalise each run on a cutout, then stack them."""
    import astropy.units as u
    from gammapy.datasets import MapDataset
    from gammapy.makers import FoVBackgroundMaker, MapDatasetMaker, SafeMaskMaker
    from gammapy.maps import MapAxis
    from regions import CircleSkyRegion

    energy = geom.axes["energy"]
    energy_true = MapAxis.from_energy_bounds(
        energy.edges[0] / 2, energy.edges[-1] * 2, nbin=8, per_decade=True, name="energy_true"
    )
    stacked = MapDataset.create(geom, energy_axis_true=energy_true, name="stacked")
    exclusion = ~geom.to_image().region_mask(
        [CircleSkyRegion(target, EXCLUSION_RADIUS_DEG * u.deg)]
    )
    maker = MapDatasetMaker(selection=["counts", "exposure", "background"])
    safe = SafeMaskMaker(methods=["offset-max", "aeff-max"], offset_max=offset_max_deg * u.deg)
    bkg_maker = FoVBackgroundMaker(method="scale", exclusion_mask=exclusion)

    # A run contributes only if its field of view overlaps the map.
    half_diagonal = 0.5 * max(geom.width.to_value("deg").ravel()) * 2**0.5
    used = []
    for i, obs in enumerate(observations):
        pointing = obs.get_pointing_icrs(obs.tmid)
        distance = pointing.separation(geom.center_skydir).deg
        if distance > offset_max_deg + half_diagonal:
            log.warning(
                "obs_id %d: pointing %.1f deg from the map centre, skipped", obs.obs_id, distance
            )
            continue
        cutout = stacked.cutout(
            pointing, width=2 * offset_max_deg * u.deg, name=f"obs-{obs.obs_id}"
        )
        dataset = safe.run(maker.run(cutout, obs), obs)
        dataset = bkg_maker.run(dataset)
        stacked.stack(dataset)
        used.append(int(obs.obs_id))
        job.report_progress(
            0.6 * (i + 1) / len(observations), f"binned run {i + 1}/{len(observations)}"
        )
        log.info(
            "binned run %d/%d (obs_id %d): %d counts in the map",
            i + 1, len(observations), obs.obs_id, int(dataset.counts.data[dataset.mask].sum()),
        )  # fmt: skip
    if not used:
        raise job.JobError(
            "empty selection: none of the observations has its field of view on the map"
        )
    return stacked, used


def plot_map(image, path: Path, title: str, label: str, target, cmap: str, stretch=None) -> None:
    """PNG preview of a 2D sky map with the target marked."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(6.4, 5.2))
    ax = fig.add_subplot(projection=image.geom.wcs)
    data = image.data if stretch is None else stretch(image.data)
    im = ax.imshow(data, origin="lower", cmap=cmap, interpolation="nearest")
    ax.plot(
        target.ra.deg, target.dec.deg, "+", color="w", ms=12, transform=ax.get_transform("icrs")
    )
    ax.set_xlabel("RA")
    ax.set_ylabel("Dec")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label=label)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


def main(params: job.Params) -> None:
    import astropy.units as u
    import numpy as np
    from astropy.coordinates import SkyCoord
    from gammapy.estimators import ExcessMapEstimator
    from gammapy.maps import MapAxis, WcsGeom

    obs_ids = params.obs_ids()
    ra, dec = params.sky_position()
    nxpix = params.integer("nxpix", 200, lo=10, hi=2000)
    nypix = params.integer("nypix", 200, lo=10, hi=2000)
    binsz = params.number("binsz", 0.02, lo=0.0, hi=1.0, lo_open=True)
    emin, emax = params.energy_range(0.3, 100.0)
    radius = params.number("correlation_radius", 0.1, lo=0.0, hi=1.0, lo_open=True)
    if nxpix * nypix * binsz**2 > 400:
        raise job.JobError(
            f"map of {nxpix * binsz:.1f} x {nypix * binsz:.1f} deg: at most 20 x 20"
        )

    job.write_context()
    observations = dl3_store.load_observations(obs_ids)

    target = SkyCoord(ra, dec, unit="deg", frame="icrs")
    energy = MapAxis.from_energy_bounds(
        emin, emax, nbin=max(1, round(4 * np.log10(emax / emin))), unit="TeV"
    )
    geom = WcsGeom.create(
        skydir=target, npix=(nxpix, nypix), binsz=binsz, frame="icrs", axes=[energy]
    )
    # The gammapy steps as sub-activities of the job's provenance (gammapy has no
    # provenance API of its own): their DL3 inputs, configuration and map outputs.
    packages = ("gammapy", "astropy", "numpy", "regions")
    config = {"nxpix": nxpix, "nypix": nypix, "binsz_deg": binsz, "energy_tev": [emin, emax]}
    with jobside.activity("gammapy-map-binning", config, packages) as act:
        for entry in jobside.read_used():
            act.used(str(entry["path"]), str(entry.get("role") or "DL3"))
        stacked, used = make_stacked_dataset(observations, geom, target)
        counts = stacked.counts.sum_over_axes(keepdims=False)
        counts_path = job.output_path("count_map", "count_map.fits")
        counts.write(counts_path, overwrite=True)
        act.generated(str(counts_path), "count_map")

    config = {"correlation_radius_deg": radius, "estimator": "ExcessMapEstimator"}
    with jobside.activity("gammapy-excess-map", config, packages) as act:
        act.used(str(counts_path), "count_map")
        estimator = ExcessMapEstimator(
            correlation_radius=radius * u.deg,
            energy_edges=[emin, emax] * u.TeV,
            selection_optional=[],
        )
        job.report_progress(0.65, "excess and significance maps")
        result = estimator.run(stacked)
        # One energy bin (the whole band): drop the axis to get plain 2D images.
        sqrt_ts = result["sqrt_ts"].slice_by_idx({"energy": 0})
        excess = result["npred_excess"].slice_by_idx({"energy": 0})
        significance_path = job.output_path("significance_map", "significance_map.fits")
        sqrt_ts.write(significance_path, overwrite=True)
        act.generated(str(significance_path), "significance_map")
    job.report_progress(0.85, "plotting the maps")

    plot_map(
        counts, job.output_path("count_preview", "count_preview.png"),
        f"Counts {emin:g}-{emax:g} TeV, obs {dl3_store.format_ids(used)}",
        "sqrt(counts)", target, "viridis", stretch=np.sqrt,
    )  # fmt: skip
    plot_map(
        sqrt_ts, job.output_path("significance_preview", "significance_preview.png"),
        f"Significance (r = {radius:g} deg), {len(used)} run(s)",
        "sqrt(TS)", target, "RdBu_r",
    )  # fmt: skip

    data = np.nan_to_num(sqrt_ts.data, nan=-np.inf)
    iy, ix = np.unravel_index(np.argmax(data), data.shape)
    peak = sqrt_ts.geom.pix_to_coord((ix, iy))
    peak_pos = SkyCoord(peak[0], peak[1], unit="deg", frame="icrs")
    at_target = sqrt_ts.get_by_coord({"skycoord": target})[0]
    summary = {
        "obs_ids": used,
        "energy_range_tev": [emin, emax],
        "correlation_radius_deg": radius,
        "total_counts": int(counts.data.sum()),
        "livetime_s": float(
            sum(obs.observation_live_time_duration.to_value("s") for obs in observations)
        ),
        "peak_significance": float(data[iy, ix]),
        "peak_ra": float(peak_pos.ra.deg),
        "peak_dec": float(peak_pos.dec.deg),
        "peak_offset_from_target_deg": float(peak_pos.separation(target).deg),
        "target_significance": float(at_target),
        "target_excess": float(excess.get_by_coord({"skycoord": target})[0]),
    }
    job.write_json(job.output_path("map_summary", "map_summary.json"), summary)
    log.info(
        "maps done: %d counts, peak %.1f sigma at %.3f deg from the target",
        summary["total_counts"], data[iy, ix], summary["peak_offset_from_target_deg"],
    )  # fmt: skip


if __name__ == "__main__":
    job.run(main)
