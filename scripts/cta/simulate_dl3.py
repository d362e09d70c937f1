"""simulate_dl3: CTA-like DL3 observations straight from gammapy (the fast path).

No shower simulation: IRFs built from CTA's published prod3b-v2 performance curves
(``prod3b``: effective area, angular and energy resolution, background rate of the
site's baseline array at the tabulated zenith nearest to each run's) and
``MapDatasetEventSampler`` draw the events of a point source seen in wobble mode. The
observations go into the shared DL3 store, so every DL4 job (maps, spectra, light curves)
can run on them exactly as on the output of the ctapipe chain.

Observing conditions: the target must stay above ``min_altitude`` from the chosen site
(CTAO South at Paranal or North at La Palma, gammapy's coordinates) during every run: a
source below the limit is refused (``visibility=refuse``) or simulated with a warning
(``visibility=warn``), never silently simulated below the horizon. The OBJECT name comes
from the ``object`` parameter, or from the position (a known source within 0.2 deg, else
the coordinates). The files carry the GADF header keys gammapy's ``DataStore.check()``
and the GADF rules ask for (N_TELS, TELLIST, RADECSYS, float EQUINOX, GTI time keys).

Results: ``observations`` (ECSV, one row per observation file written to the store) and
``summary`` (JSON: true model, IRF description, per-run counts).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from . import dl3_store, job, prod3b

log = logging.getLogger("uws.cta.simulate_dl3")

DEFAULT_TSTART = "2024-08-21T03:00:00"  # PKS 2155-304 culminates near Paranal midnight
GAP_S = 120.0  # seconds between consecutive runs
MAX_OFFSET_DEG = 4.0
SITES = {"south": "ctao_south", "north": "ctao_north"}
# Named sources used to label the OBJECT key when no ``object`` parameter is given.
KNOWN_SOURCES = {
    "PKS 2155-304": (329.717, -30.226),
    "Crab Nebula": (83.633, 22.015),
    "Mrk 421": (166.114, 38.209),
    "Mrk 501": (253.468, 39.760),
    "RX J1713.7-3946": (258.388, -39.762),
    "Vela X": (128.750, -45.600),
}


def pointing_zenith(pointing, start, duration_s: float, site: str) -> float:
    """Zenith angle (deg) of the pointing at the middle of the run."""
    import astropy.units as u
    from astropy.coordinates import AltAz
    from gammapy.data import observatory_locations

    middle = start + 0.5 * duration_s * u.s
    frame = AltAz(obstime=middle, location=observatory_locations[site])
    return float(90.0 - pointing.transform_to(frame).alt.deg)


def run_irfs(site_name: str, zenith_deg: float) -> tuple[prod3b.Performance, dict]:
    """The IRFs of a run: CTA prod3b-v2 performance of the site at the tabulated zenith
    nearest to the run's (the published curves have no zenith interpolation). Built
    afresh per run (milliseconds): no IRF object is shared between observations."""
    perf = prod3b.load(site_name, prod3b.nearest_zenith(zenith_deg))
    return perf, prod3b.make_irfs(perf, max_offset_deg=MAX_OFFSET_DEG)


def object_name_for(ra: float, dec: float) -> str:
    """OBJECT for a position: a known source within 0.2 deg, else the coordinates."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    here = SkyCoord(ra, dec, unit="deg")
    for name, (sra, sdec) in KNOWN_SOURCES.items():
        if here.separation(SkyCoord(sra, sdec, unit="deg")) < 0.2 * u.deg:
            return f"{name} (simulated)"
    return f"Simulated source RA {ra:.3f} Dec {dec:+.3f}"


def check_visibility(
    target, starts: list, duration_s: float, location, min_alt: float, site: str, refuse: bool
) -> list[float]:
    """Altitude of the target at the start, middle and end of every run (deg).

    Raises JobError (``refuse``) or logs a warning if it is ever below ``min_alt``.
    """
    import astropy.units as u
    import numpy as np
    from astropy.coordinates import AltAz
    from astropy.time import Time

    times = Time([t + f * duration_s * u.s for t in starts for f in (0.0, 0.5, 1.0)])
    alt = target.transform_to(AltAz(obstime=times, location=location)).alt.deg
    lowest = float(np.min(alt))
    if lowest < min_alt:
        when = times[int(np.argmin(alt))].utc.isot[:19]
        message = (
            f"target RA {target.ra.deg:.3f} Dec {target.dec.deg:+.3f} is at altitude "
            f"{lowest:.1f} deg from CTAO {site} at {when} UTC, below the altitude limit "
            f"min_altitude={min_alt:g} deg: choose another tstart or site"
        )
        if refuse:
            raise job.JobError(message + " (or visibility=warn)")
        log.warning("%s; simulated anyway (visibility=warn)", message)
    return [float(a) for a in alt]


def source_model(
    ra: float,
    dec: float,
    index: float,
    amplitude: float,
    model_name: str = "power_law",
    beta: float = 0.1,
    e_cut_tev: float = 10.0,
):
    """The simulated point source at 1 TeV (the truth of the DL4 fits)."""
    import astropy.units as u
    from gammapy.modeling.models import Models, PointSpatialModel, SkyModel

    from .gammapy_spectra import spectral_model

    spectral = spectral_model(model_name, index, amplitude, beta=beta, e_cut_tev=e_cut_tev)
    spatial = PointSpatialModel(lon_0=ra * u.deg, lat_0=dec * u.deg, frame="icrs")
    return Models([SkyModel(spectral, spatial, name="source")])


def wobble_pointing(ra: float, dec: float, offset_deg: float, run_index: int):
    """Pointing of run ``run_index``: wobble around the source, cycling N, E, S, W."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    target = SkyCoord(ra, dec, unit="deg", frame="icrs")
    angle = (90.0 * run_index) * u.deg
    return target.directional_offset_by(angle, offset_deg * u.deg)


def simulate_run(
    obs_id: int,
    pointing,
    tstart,
    livetime_s: float,
    irfs: dict,
    models,
    seed: int,
    site: str = "ctao_south",
):
    """Sample the events of one observation; returns (observation with events, n_src, n_bkg)."""
    import astropy.units as u
    import numpy as np
    from astropy.time import Time
    from gammapy.data import FixedPointingInfo, Observation, observatory_locations
    from gammapy.datasets import MapDataset, MapDatasetEventSampler
    from gammapy.makers import MapDatasetMaker
    from gammapy.maps import MapAxis, WcsGeom
    from gammapy.modeling.models import FoVBackgroundModel

    location = observatory_locations[site]
    observation = Observation.create(
        pointing=FixedPointingInfo(fixed_icrs=pointing.icrs),
        location=location,
        obs_id=obs_id,
        tstart=tstart,
        livetime=livetime_s * u.s,
        irfs=irfs,
        # the store's clock (2001-01-01 TT, as the obs index and the ctapipe chain's DL3)
        reference_time=Time(
            dl3_store.STORE_MJDREFI, dl3_store.STORE_MJDREFF, format="mjd", scale="tt"
        ),
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


def write_observation(observation, path: Path, object_name: str, perf) -> None:
    """Write one GADF observation file (as ``Observation.write`` does), with the GADF
    header keys gammapy leaves out: N_TELS/TELLIST, RADECSYS (not RADESYSA), EQUINOX as
    a float, ALT/AZ of the pointing, and the GTI's time keys (TIMEUNIT, TIMEREF); every
    HDU names the CTA performance its IRFs come from (``perf``, ``prod3b.Performance``)."""
    from astropy.coordinates import AltAz
    from astropy.io import fits

    events = observation.events.to_table_hdu(format="gadf")
    events.header.update(observation.pointing.to_fits_header(time_ref=observation.events.time_ref))
    h = events.header
    h["OBJECT"] = object_name
    h["CREATOR"] = "uws-server simulate_dl3 (gammapy fast path)"
    n_tels = prod3b.N_TELS[perf.site]
    h["N_TELS"] = (n_tels, "telescopes of the prod3b baseline array")
    h["TELLIST"] = ",".join(str(i) for i in range(1, n_tels + 1))
    frame = h.pop("RADESYSA", None) or h.get("RADECSYS") or "ICRS"
    h["RADECSYS"] = str(frame).strip().upper()
    h["EQUINOX"] = 2000.0
    start, stop = observation.tstart, observation.tstop
    middle = start + 0.5 * (stop - start)
    altaz = observation.pointing.fixed_icrs.transform_to(
        AltAz(obstime=middle, location=observation.observatory_earth_location)
    )
    h["ALT_PNT"] = (float(altaz.alt.deg), "deg, middle of the run")
    h["AZ_PNT"] = (float(altaz.az.deg), "deg, middle of the run")
    h["ZEN_PNT"] = (90.0 - float(altaz.alt.deg), "deg, middle of the run")
    h["OBS_MODE"] = "POINTING"
    h["TIMESYS"] = str(h.get("TIMESYS", "TT")).upper()  # FITS spells time scales in capitals
    gti = observation.gti.to_table_hdu(format="gadf")
    for key in ("MJDREFI", "MJDREFF", "TIMESYS"):  # the GTI on the events' clock
        gti.header[key] = h[key]
    gti.header["TIMEUNIT"] = "s"
    gti.header["TIMEREF"] = str(h.get("TIMEREF", "LOCAL"))
    gti.header["OBS_ID"] = observation.obs_id
    for hdu in (events, gti):
        hdu.header["HDUCLASS"] = "GADF"
        hdu.header["HDUDOC"] = "https://github.com/open-gamma-ray-astro/gamma-astro-data-formats"
        hdu.header["HDUVERS"] = "0.3"
        hdu.header["HDUCLAS1"] = hdu.name
    irfs = [
        getattr(observation, name).to_table_hdu(format="gadf-dl3")
        for name in ("aeff", "edisp", "psf", "bkg")
    ]
    for hdu in (events, *irfs):
        for key, (value, comment) in prod3b.header_keywords(perf).items():
            hdu.header[key] = (value, comment)
    for hdu in irfs:
        hdu.header["OBS_ID"] = observation.obs_id
    hdul = fits.HDUList([fits.PrimaryHDU(), events, gti, *irfs])
    hdul.writeto(path, overwrite=True)


def main(params: job.Params) -> None:
    import astropy.units as u
    import numpy as np
    from astropy.table import Table
    from astropy.time import Time

    ra, dec = params.sky_position()
    livetime_min = params.number("livetime", 30.0, lo=0.0, hi=600.0, lo_open=True)
    wobble = params.number("wobble", 0.5, lo=0.0, hi=2.5)
    index = params.number("index", 3.0, lo=1.0, hi=5.0)
    amplitude = params.number("amplitude", 4e-11, lo=0.0, hi=1e-8)
    seed = params.integer("seed", 0, lo=0)
    object_name = params.text("object", "").strip() or object_name_for(ra, dec)
    model_name = params.text("spectral_model", "power_law") or "power_law"
    beta = params.number("beta", 0.1, lo=0.0, hi=2.0)
    e_cut = params.number("e_cut", 10.0, lo=0.1, hi=1000.0)
    site_name = params.text("site", "south").strip().lower()
    if site_name not in SITES:
        raise job.JobError(f"parameter 'site': '{site_name}' is not one of south, north")
    min_alt = params.number("min_altitude", 30.0, lo=-90.0, hi=90.0)
    visibility = params.text("visibility", "refuse").strip().lower()
    if visibility not in ("refuse", "warn"):
        raise job.JobError(f"parameter 'visibility': '{visibility}' is not refuse or warn")
    tstart_text = params.text("tstart", DEFAULT_TSTART)
    try:
        tstart = Time(tstart_text, scale="utc")
    except ValueError:
        raise job.JobError(f"parameter 'tstart': '{tstart_text}' is not an ISO date") from None

    store = dl3_store.DL3Store()
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
        raise job.JobError(f"at most 100 observations per job, got {len(obs_ids)}")
    taken = sorted(set(obs_ids) & existing)
    if taken:
        raise job.JobError(
            f"obs_ids {dl3_store.format_ids(taken)} already in the DL3 store {store.root}"
        )

    from astropy.coordinates import SkyCoord
    from gammapy.data import observatory_locations

    site = SITES[site_name]
    starts = [tstart + i * (livetime_min * u.min + GAP_S * u.s) for i in range(len(obs_ids))]
    altitudes = check_visibility(
        SkyCoord(ra, dec, unit="deg"),
        starts,
        livetime_min * 60.0,
        observatory_locations[site],
        min_alt,
        site_name,
        refuse=visibility == "refuse",
    )
    models = source_model(ra, dec, index, amplitude, model_name, beta=beta, e_cut_tev=e_cut)

    try:  # before anything is written: the tables must be there
        ctaplot_version = prod3b.data_version()
    except prod3b.PerformanceNotFound as exc:
        raise job.JobError(str(exc)) from None
    job.write_context(
        {
            "simulation": "gammapy MapDatasetEventSampler",
            "irfs": f"CTA {prod3b.VERSION} performance curves",
            "ctaplot": ctaplot_version,
        }
    )

    rows, staged, irf_sets = [], {}, {}
    t0 = time.perf_counter()
    try:
        for i, obs_id in enumerate(obs_ids):
            start = starts[i]
            pointing = wobble_pointing(ra, dec, wobble, i)
            run_seed = int(np.random.SeedSequence([seed, obs_id]).generate_state(1)[0])
            job.report_progress(
                0.05 + 0.85 * i / len(obs_ids), f"simulating run {i + 1}/{len(obs_ids)} ({obs_id})"
            )
            zenith = pointing_zenith(pointing, start, livetime_min * 60.0, site)
            perf, irfs = run_irfs(site_name, zenith)
            irf_sets.setdefault(perf.name, prod3b.describe(perf))
            obs, n_src, n_bkg = simulate_run(
                obs_id, pointing, start, livetime_min * 60.0, irfs, models, run_seed, site
            )
            staged[obs_id] = path = store.staging_path(obs_id)  # removed if anything fails
            write_observation(obs, path, object_name, perf)
            rows.append(
                {
                    "obs_id": obs_id,
                    "ra_pnt": pointing.ra.deg,
                    "dec_pnt": pointing.dec.deg,
                    "tstart": start.utc.isot,
                    "livetime_s": livetime_min * 60.0,
                    "zenith_deg": round(zenith, 2),
                    "irf": perf.name,
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

    job.report_progress(0.92, "publishing the observations")
    dl3_store.publish_observations(written)
    table = Table(rows=rows)
    table["path"] = [str(written[i]) for i in table["obs_id"]]
    table["sha256"] = [dl3_store.sha256_of(written[i]) for i in table["obs_id"]]
    table["ra_pnt"].unit = table["dec_pnt"].unit = u.deg
    table["livetime_s"].unit = u.s
    table.meta = {"dl3_store": str(store.root), "description": "observations added to the store"}
    table.write(job.output_path("observations", "observations.ecsv"), overwrite=True)

    summary = {
        "dl3_store": str(store.root),
        "obs_ids": obs_ids,
        "n_events": int(sum(r["n_events"] for r in rows)),
        "n_source": int(sum(r["n_source"] for r in rows)),
        "livetime_total_s": livetime_min * 60.0 * len(obs_ids),
        "wall_time_s": round(time.perf_counter() - t0, 2),
        "seed": seed,
        "object": object_name,
        "site": site,
        "min_altitude_deg": min_alt,
        "target_altitude_deg": {"min": min(altitudes), "max": max(altitudes)},
        "truth": {
            "ra": ra,
            "dec": dec,
            "spectral_model": type(models[0].spectral_model).__name__,
            "spectral_model_name": model_name,
            "index": index,
            "amplitude": amplitude,
            "amplitude_unit": "cm-2 s-1 TeV-1",
            "reference_tev": 1.0,
            **({"beta": beta} if model_name == "log_parabola" else {}),
            **({"e_cut_tev": e_cut} if model_name == "exp_cutoff_power_law" else {}),
        },
        "irfs": {
            "choice": (
                f"CTA {prod3b.VERSION} performance of the site at the tabulated zenith "
                f"({', '.join(map(str, prod3b.ZENITHS))} deg) nearest to each run's pointing "
                f"zenith at mid-run; cuts optimised for {prod3b.CUTS}"
            ),
            "sets": irf_sets,
        },
        "wobble_deg": wobble,
        "runs": rows,
    }
    job.write_json(job.output_path("summary", "summary.json"), summary)
    log.info("wrote %d observation(s) to %s", len(obs_ids), store.root)


if __name__ == "__main__":
    job.run(main)
