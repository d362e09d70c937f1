"""simulate_dl3: CTA-like DL3 observations straight from gammapy (the fast path).

No shower simulation: analytic IRFs (HESS-like effective area with a Gaussian offset
fall-off, Gaussian energy dispersion and PSF, power-law background) and
``MapDatasetEventSampler`` draw the events of a point source seen in wobble mode. The
observations go into the shared DL3 store, so every DL4 job (maps, spectra, light curves)
can run on them exactly as on the output of the ctapipe chain.

Results: ``observations`` (ECSV, one row per observation file written to the store) and
``summary`` (JSON: true model, IRF description, per-run counts).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

log = logging.getLogger("uws.cta.simulate_dl3")

# Observatory and instrument labels written into the files (aeff.meta is where the sampler
# looks for TELESCOP/INSTRUME).
TELESCOP = "CTA"
INSTRUME = "uws-fastpath-toy"
DEFAULT_TSTART = "2024-08-21T03:00:00"  # PKS 2155-304 culminates near Paranal midnight
GAP_S = 120.0  # seconds between consecutive runs
MAX_OFFSET_DEG = 4.0


def make_irfs() -> dict:
    """Analytic full-enclosure IRFs, flat in time, radially symmetric in the FoV.

    They are deliberately simple so that the truth is known exactly and the DL4 fits can be
    checked against the simulated spectrum.
    """
    import numpy as np
    from gammapy.irf import PSF3D, Background2D, EffectiveAreaTable2D, EnergyDispersion2D
    from gammapy.maps import MapAxis

    energy_true = MapAxis.from_energy_bounds(
        0.03, 300, nbin=10, per_decade=True, unit="TeV", name="energy_true"
    )
    energy = MapAxis.from_energy_bounds(0.03, 300, nbin=10, per_decade=True, unit="TeV")
    offset = MapAxis.from_bounds(0, MAX_OFFSET_DEG, nbin=16, unit="deg", name="offset")

    base = EffectiveAreaTable2D.from_parametrization(energy_true, instrument="HESS")
    fall_off = np.exp(-0.5 * (offset.center.to_value("deg") / 1.5) ** 2)
    aeff = EffectiveAreaTable2D(
        axes=[energy_true, offset],
        data=base.data[:, :1] * fall_off[np.newaxis, :],
        unit=base.unit,
        meta={"TELESCOP": TELESCOP, "INSTRUME": INSTRUME},
    )

    migra = MapAxis.from_bounds(0.2, 5, nbin=150, node_type="edges", name="migra")
    edisp = EnergyDispersion2D.from_gauss(
        energy_axis_true=energy_true, migra_axis=migra, offset_axis=offset, bias=0, sigma=0.1
    )

    rad = MapAxis.from_bounds(0, 1.0, nbin=100, unit="deg", name="rad")
    e_tev = energy_true.center.to_value("TeV")
    sigma = np.clip(0.06 * e_tev**-0.2, 0.03, 0.15)  # deg, sharper at high energy
    r = rad.center.to_value("deg")
    sigma_rad = np.deg2rad(sigma)[:, None, None]
    profile = np.exp(-0.5 * (r[None, None, :] / sigma[:, None, None]) ** 2)
    psf_data = profile / (2 * np.pi * sigma_rad**2) * np.ones((1, offset.nbin, 1))
    psf = PSF3D(axes=[energy_true, offset, rad], data=psf_data, unit="sr-1")

    # Residual hadron background: a steep power law with the same kind of FoV fall-off,
    # about 1.5 Hz above 0.3 TeV in the field of view (HESS-like after cuts).
    e_reco = energy.center.to_value("TeV")
    bkg_off = np.exp(-0.5 * (offset.center.to_value("deg") / 1.8) ** 2)
    bkg_data = 7e-5 * e_reco[:, None] ** -2.7 * bkg_off[None, :]  # s-1 MeV-1 sr-1
    bkg = Background2D(axes=[energy, offset], data=bkg_data, unit="s-1 MeV-1 sr-1")
    return {"aeff": aeff, "edisp": edisp, "psf": psf, "bkg": bkg}


def source_model(ra: float, dec: float, index: float, amplitude: float):
    """The simulated point source: a power law at 1 TeV (the truth of the DL4 fits)."""
    import astropy.units as u
    from gammapy.modeling.models import (
        Models,
        PointSpatialModel,
        PowerLawSpectralModel,
        SkyModel,
    )

    spectral = PowerLawSpectralModel(
        index=index, amplitude=amplitude * u.Unit("cm-2 s-1 TeV-1"), reference=1 * u.TeV
    )
    spatial = PointSpatialModel(lon_0=ra * u.deg, lat_0=dec * u.deg, frame="icrs")
    return Models([SkyModel(spectral, spatial, name="source")])


def wobble_pointing(ra: float, dec: float, offset_deg: float, run_index: int):
    """Pointing of run ``run_index``: wobble around the source, cycling N, E, S, W."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    target = SkyCoord(ra, dec, unit="deg", frame="icrs")
    angle = (90.0 * run_index) * u.deg
    return target.directional_offset_by(angle, offset_deg * u.deg)


def simulate_run(obs_id: int, pointing, tstart, livetime_s: float, irfs: dict, models, seed: int):
    """Sample the events of one observation; returns (observation with events, n_src, n_bkg)."""
    import astropy.units as u
    import numpy as np
    from gammapy.data import FixedPointingInfo, Observation, observatory_locations
    from gammapy.datasets import MapDataset, MapDatasetEventSampler
    from gammapy.makers import MapDatasetMaker
    from gammapy.maps import MapAxis, WcsGeom
    from gammapy.modeling.models import FoVBackgroundModel

    location = observatory_locations["ctao_south"]
    observation = Observation.create(
        pointing=FixedPointingInfo(fixed_icrs=pointing.icrs),
        location=location,
        obs_id=obs_id,
        tstart=tstart,
        livetime=livetime_s * u.s,
        irfs=irfs,
        reference_time=tstart,
    )
    # Reco energies below 0.1 TeV would only add background events no analysis uses.
    energy = MapAxis.from_energy_bounds(0.1, 200, nbin=8, per_decade=True, unit="TeV")
    energy_true = MapAxis.from_energy_bounds(
        0.03, 300, nbin=10, per_decade=True, unit="TeV", name="energy_true"
    )
    geom = WcsGeom.create(skydir=pointing, width=(6, 6), binsz=0.02, frame="icrs", axes=[energy])
    # A migra axis makes an EDispMap: the sampler cannot draw from an EDispKernelMap.
    migra = MapAxis.from_bounds(0.5, 2.0, nbin=60, node_type="edges", name="migra")
    empty = MapDataset.create(
        geom, energy_axis_true=energy_true, migra_axis=migra, name=f"obs-{obs_id}"
    )
    maker = MapDatasetMaker(selection=["exposure", "background", "psf", "edisp"])
    dataset = maker.run(empty, observation)
    dataset.models = [*models, FoVBackgroundModel(dataset_name=dataset.name)]

    sampler = MapDatasetEventSampler(random_state=seed)
    events = sampler.run(dataset, observation)
    mc_id = np.asarray(events.table["MC_ID"])
    observation._events = events  # as ObservationEventSampler does; written by .write()
    return observation, int(np.sum(mc_id > 0)), int(np.sum(mc_id == 0))


def write_observation(observation, path: Path, object_name: str) -> None:
    """Write one GADF observation file (as ``Observation.write`` does), with the GADF
    header keys gammapy leaves out of the GTI HDU and the object name."""
    from astropy.io import fits

    events = observation.events.to_table_hdu(format="gadf")
    events.header.update(observation.pointing.to_fits_header(time_ref=observation.events.time_ref))
    events.header["OBJECT"] = object_name
    events.header["CREATOR"] = "uws-server simulate_dl3 (gammapy fast path)"
    gti = observation.gti.to_table_hdu(format="gadf")
    for hdu in (events, gti):
        hdu.header["HDUCLASS"] = "GADF"
        hdu.header["HDUDOC"] = "https://github.com/open-gamma-ray-astro/gamma-astro-data-formats"
        hdu.header["HDUVERS"] = "0.3"
        hdu.header["HDUCLAS1"] = hdu.name
    irfs = [getattr(observation, name) for name in ("aeff", "edisp", "psf", "bkg")]
    hdul = fits.HDUList(
        [fits.PrimaryHDU(), events, gti, *(irf.to_table_hdu(format="gadf-dl3") for irf in irfs)]
    )
    hdul.writeto(path, overwrite=True)


def main() -> None:
    import astropy.units as u
    import numpy as np
    from astropy.table import Table
    from astropy.time import Time

    params = common.Params.load()
    ra, dec = params.sky_position()
    livetime_min = params.number("livetime", 30.0, lo=0.0, hi=600.0, lo_open=True)
    wobble = params.number("wobble", 0.5, lo=0.0, hi=2.5)
    index = params.number("index", 3.0, lo=1.0, hi=5.0)
    amplitude = params.number("amplitude", 4e-11, lo=0.0, hi=1e-8)
    seed = params.integer("seed", 0, lo=0)
    object_name = params.text("object", "PKS 2155-304 (simulated)")
    tstart_text = params.text("tstart", DEFAULT_TSTART)
    try:
        tstart = Time(tstart_text, scale="utc")
    except ValueError:
        raise common.JobError(f"parameter 'tstart': '{tstart_text}' is not an ISO date") from None

    store = common.DL3Store()
    existing = set(store.obs_ids())
    if params.given("obs_ids"):
        obs_ids = params.obs_ids()
    else:
        n_obs = params.integer("n_obs", 2, lo=1, hi=100)
        first = params.integer("first_obs_id", 0, lo=0)
        if first == 0:  # 0 = next free ids after the largest one in the store
            first = max([*existing, 1000]) + 1
        obs_ids = list(range(first, first + n_obs))
    if len(obs_ids) > 100:
        raise common.JobError(f"at most 100 observations per job, got {len(obs_ids)}")
    taken = sorted(set(obs_ids) & existing)
    if taken:
        raise common.JobError(
            f"obs_ids {common.format_ids(taken)} already in the DL3 store {store.root}"
        )

    common.write_context({"simulation": "gammapy MapDatasetEventSampler, analytic IRFs"})
    common.write_used([])  # nothing read: the runs are drawn from the model below

    irfs = make_irfs()
    models = source_model(ra, dec, index, amplitude)
    rows, staged = [], {}
    t0 = time.perf_counter()
    try:
        for i, obs_id in enumerate(obs_ids):
            start = tstart + i * (livetime_min * u.min + GAP_S * u.s)
            pointing = wobble_pointing(ra, dec, wobble, i)
            run_seed = int(np.random.SeedSequence([seed, obs_id]).generate_state(1)[0])
            obs, n_src, n_bkg = simulate_run(
                obs_id, pointing, start, livetime_min * 60.0, irfs, models, run_seed
            )
            staged[obs_id] = path = store.staging_path(obs_id)  # removed if anything fails
            write_observation(obs, path, object_name)
            rows.append(
                {
                    "obs_id": obs_id,
                    "ra_pnt": pointing.ra.deg,
                    "dec_pnt": pointing.dec.deg,
                    "tstart": start.utc.isot,
                    "livetime_s": livetime_min * 60.0,
                    "n_events": n_src + n_bkg,
                    "n_source": n_src,
                    "n_background": n_bkg,
                }
            )
            log.info(
                "simulated run %d/%d (obs_id %d): %d events (%d source), %.1f s elapsed",
                i + 1, len(obs_ids), obs_id, n_src + n_bkg, n_src, time.perf_counter() - t0,
            )  # fmt: skip
        written = store.add(staged)
    finally:
        for path in staged.values():
            path.unlink(missing_ok=True)

    common.publish_observations(written)
    table = Table(rows=rows)
    table["path"] = [str(written[i]) for i in table["obs_id"]]
    table["sha256"] = [common.sha256_of(written[i]) for i in table["obs_id"]]
    table["ra_pnt"].unit = table["dec_pnt"].unit = u.deg
    table["livetime_s"].unit = u.s
    table.meta = {"dl3_store": str(store.root), "description": "observations added to the store"}
    table.write(common.output_path("observations", "observations.ecsv"), overwrite=True)

    summary = {
        "dl3_store": str(store.root),
        "obs_ids": obs_ids,
        "n_events": int(sum(r["n_events"] for r in rows)),
        "n_source": int(sum(r["n_source"] for r in rows)),
        "livetime_total_s": livetime_min * 60.0 * len(obs_ids),
        "wall_time_s": round(time.perf_counter() - t0, 2),
        "seed": seed,
        "truth": {
            "ra": ra,
            "dec": dec,
            "spectral_model": "PowerLawSpectralModel",
            "index": index,
            "amplitude": amplitude,
            "amplitude_unit": "cm-2 s-1 TeV-1",
            "reference_tev": 1.0,
        },
        "irfs": {
            "aeff": "EffectiveAreaTable2D.from_parametrization(HESS) x exp(-off^2/2/1.5deg^2)",
            "edisp": "EnergyDispersion2D.from_gauss(bias=0, sigma=0.1)",
            "psf": "Gaussian PSF3D, sigma = clip(0.06 deg (E/TeV)^-0.2, 0.03, 0.15)",
            "bkg": "Background2D 7e-5 (E/TeV)^-2.7 s-1 MeV-1 sr-1 x exp(-off^2/2/1.8deg^2)",
        },
        "wobble_deg": wobble,
        "runs": rows,
    }
    common.write_json(common.output_path("summary", "summary.json"), summary)
    log.info("wrote %d observation(s) to %s", len(obs_ids), store.root)


if __name__ == "__main__":
    common.run_job(main)
