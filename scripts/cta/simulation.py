"""Job script: simulate DL0 (raw ADC waveforms + truth) for the toy array.

Why: no IACT simulation or data can be downloaded here, so the chain starts from showers
the project simulates itself (physics in :mod:`cta.toy.showers`). Gammas come from a point
source (``gamma``) or diffusely from a cone around the pointing (``gamma_diffuse``, the
MC of offset-dependent IRFs), protons and electrons diffusely from that cone; ``mixed``
makes an "observation": source gammas plus cosmic rays whose energies follow the measured
proton and electron spectra pyirf and ctapipe weight the background IRF with
(``IRFDOC_PROTON_SPECTRUM``, ``IRFDOC_ELECTRON_SPECTRUM``), in their physical ratio --
not the source's spectral index. The target must be above ``min_altitude`` from the toy
array's site (CTAO South) during the whole run, the check ``simulate_dl3`` makes. The
array points at a fixed AltAz position: the wobble position next to the source at the
run's mid time (ctapipe's IRF tools only accept AltAz pointing, and a fixed one keeps the
MC and the observation consistent).

Parameters (``parameters.json``): particle, n_showers, energy_min, energy_max (TeV),
spectral_index (dN/dE ~ E^index, negative: the source's, or the MC's for single-particle
sets), source_ra, source_dec (deg), object (OBJECT of the DL3, default from the position),
wobble_offset, wobble_angle (deg), obs_start (ISO UTC), obs_duration (s), obs_id,
max_scatter (m), viewcone (deg, diffuse particles), proton_fraction (mixed: fraction of
cosmic rays), electron_fraction (mixed, of the cosmic rays; empty = the spectra's ratio),
min_altitude (deg), visibility (refuse|warn), seed.
Output: ``$dl0`` (default ``events.dl0.h5``), the format read by :mod:`cta.toy.dl0`.
"""

from __future__ import annotations

import json
import logging
import time

import astropy.units as u
import numpy as np
import tables
from astropy.coordinates import AltAz, SkyCoord
from astropy.time import Time

from . import ctapipe_tool, job
from .simulate_dl3 import check_visibility, object_name_for
from .toy import instrument as ti
from .toy import showers as ts

log = logging.getLogger("simulation")

DL0_FORMAT = "UWS-TOY-DL0"
DL0_FORMAT_VERSION = 1
PARTICLES = ("gamma", "gamma_diffuse", "proton", "electron", "mixed")
#: Primaries drawn from a cone around the pointing (all but the point source's gammas).
DIFFUSE = {"gamma_diffuse": ts.GAMMA_ID, "proton": ts.PROTON_ID, "electron": ts.ELECTRON_ID}
#: The altitude limit: 30 deg (zenith 60 deg), the largest zenith of CTAO's prod3b/prod5
#: IRF sets; the toy's flat-atmosphere showers are not meant for lower altitudes either.
DEFAULT_MIN_ALTITUDE = 30.0
#: Below this the toy's flat atmosphere is meaningless: refused even with visibility=warn.
MIN_TOY_ALTITUDE = 10.0


class EventRow(tables.IsDescription):
    """One simulated shower (triggered or not is in ``n_tels``)."""

    event_id = tables.UInt64Col(pos=0)
    time_mjd = tables.Float64Col(pos=1)
    energy = tables.Float64Col(pos=2)  # TeV
    alt = tables.Float64Col(pos=3)  # deg
    az = tables.Float64Col(pos=4)  # deg
    core_x = tables.Float64Col(pos=5)  # m
    core_y = tables.Float64Col(pos=6)
    x_max = tables.Float64Col(pos=7)  # g / cm2
    h_first_int = tables.Float64Col(pos=8)  # m
    primary_id = tables.Int32Col(pos=9)
    n_tels = tables.Int16Col(pos=10)


class TelEventRow(tables.IsDescription):
    """One telescope's data of a triggered event; ``index`` points into the arrays."""

    event_id = tables.UInt64Col(pos=0)
    tel_id = tables.Int16Col(pos=1)
    index = tables.Int64Col(pos=2)
    true_image_sum = tables.Int64Col(pos=3)


def sample_energies(
    rng: np.random.Generator, n: int, e_min: float, e_max: float, index: float
) -> np.ndarray:
    """Power law dN/dE ~ E^index between e_min and e_max (TeV), by inverse transform."""
    u_ = rng.uniform(size=n)
    if abs(index + 1.0) < 1e-9:
        return e_min * (e_max / e_min) ** u_
    a = index + 1.0
    return (e_min**a + u_ * (e_max**a - e_min**a)) ** (1.0 / a)


def cosmic_ray_spectra() -> dict[int, object]:
    """The measured cosmic-ray spectra ctapipe's IRF tool weights the background with.

    ``IRFDOC_PROTON_SPECTRUM``: protons + helium interpolated from DAMPE;
    ``IRFDOC_ELECTRON_SPECTRUM``: the electron (e+ + e-) spectrum of the CTA prod3b IRF
    description, a power law (index -3.43) with a log-normal bump fitted to the
    H.E.S.S. and Fermi-LAT measurements (the break near 1 TeV). Both from pyirf.
    """
    from pyirf.spectral import IRFDOC_ELECTRON_SPECTRUM, IRFDOC_PROTON_SPECTRUM

    return {ts.PROTON_ID: IRFDOC_PROTON_SPECTRUM, ts.ELECTRON_ID: IRFDOC_ELECTRON_SPECTRUM}


def spectrum_table(spectrum, e_min: float, e_max: float) -> tuple[np.ndarray, np.ndarray]:
    """(energies in TeV, cumulative integral) of a pyirf spectrum on a fine log grid."""
    energy = np.geomspace(e_min, e_max, 2001)
    flux = np.asarray(spectrum(energy * u.TeV).value, dtype=float)
    cumulative = np.concatenate(
        [[0.0], np.cumsum(0.5 * (flux[1:] + flux[:-1]) * np.diff(energy))]
    )
    return energy, cumulative


def sample_spectrum(
    rng: np.random.Generator, n: int, e_min: float, e_max: float, spectrum
) -> np.ndarray:
    """Energies (TeV) following a tabulated spectrum, by inverse transform of its CDF
    (log-log interpolation between grid points is below 0.2 % at 2000 points)."""
    energy, cumulative = spectrum_table(spectrum, e_min, e_max)
    return np.interp(rng.uniform(0.0, cumulative[-1], n), cumulative, energy)


def electron_share(e_min: float, e_max: float) -> float:
    """Fraction of electrons among cosmic rays (p + e) of the same energy range and cone."""
    spectra = cosmic_ray_spectra()
    n_p = spectrum_table(spectra[ts.PROTON_ID], e_min, e_max)[1][-1]
    n_e = spectrum_table(spectra[ts.ELECTRON_ID], e_min, e_max)[1][-1]
    return float(n_e / (n_e + n_p))


def sample_cone(
    rng: np.random.Generator, n: int, alt0: float, az0: float, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Directions (rad) uniform in solid angle within ``radius`` (rad) of (alt0, az0)."""
    cos_r = rng.uniform(np.cos(radius), 1.0, n)
    theta = np.arccos(cos_r)
    phi = rng.uniform(0.0, 2 * np.pi, n)
    # offsets in the pointing's spherical-offset frame, rotated back to AltAz
    x = np.cos(theta)
    y = np.sin(theta) * np.cos(phi)
    z = np.sin(theta) * np.sin(phi)
    cb, sb = np.cos(alt0), np.sin(alt0)
    x1 = cb * x - sb * z
    z1 = sb * x + cb * z
    ca, sa = np.cos(az0), np.sin(az0)
    x2 = ca * x1 - sa * y
    y2 = sa * x1 + ca * y
    return np.arcsin(np.clip(z1, -1, 1)), np.arctan2(y2, x2) % (2 * np.pi)


def observation_geometry(p: job.Params) -> dict:
    """Source and pointing in ICRS and AltAz at the run's mid time."""
    try:
        start = Time(p.text("obs_start", "2024-08-10T05:10:00"), scale="utc")
    except ValueError as exc:
        raise job.JobError(f"parameter 'obs_start' is not an ISO time: {exc}") from None
    duration = p.number("obs_duration", 1800.0, lo=1.0, hi=86400.0)
    source = SkyCoord(
        p.number("source_ra", 329.717, lo=0, hi=360) * u.deg,
        p.number("source_dec", -30.226, lo=-90, hi=90) * u.deg,
    )
    wobble = p.number("wobble_offset", 0.5, lo=0.0, hi=3.0)
    pointing = source.directional_offset_by(p.number("wobble_angle", 0.0) * u.deg, wobble * u.deg)
    min_alt = p.number("min_altitude", DEFAULT_MIN_ALTITUDE, lo=0.0, hi=89.0)
    # the fast path's check (start, middle and end of the run), on the toy array's site
    visibility = p.choice("visibility", "refuse", ("refuse", "warn"))
    altitudes = check_visibility(
        source, [start], duration, ti.SITE, min_alt, "South (toy array)", visibility == "refuse"
    )
    mid = start + duration / 2 * u.s
    frame = AltAz(obstime=mid, location=ti.SITE)
    src_altaz = source.transform_to(frame)
    pnt_altaz = pointing.transform_to(frame)
    floor = min_alt if visibility == "refuse" else MIN_TOY_ALTITUDE
    if pnt_altaz.alt.deg < floor:
        raise job.JobError(
            f"pointing altitude {pnt_altaz.alt.deg:.1f} deg at mid-run is below "
            f"{floor:g} deg: choose another obs_start or source"
        )
    name = p.text("object", "").strip() or object_name_for(source.ra.deg, source.dec.deg)
    return dict(
        object=name,
        min_altitude=min_alt,
        source_altitudes=altitudes,
        start=start,
        duration=duration,
        source=source,
        pointing=pointing,
        src_altaz=src_altaz,
        pnt_altaz=pnt_altaz,
    )


def simulate(p: job.Params) -> None:
    """Simulate the showers and write the DL0 file."""
    particle = p.choice("particle", "gamma", PARTICLES)
    n_showers = p.integer("n_showers", 2000, lo=1, hi=2_000_000)
    e_min = p.number("energy_min", 0.05, lo=0.001, hi=1000)
    e_max = p.number("energy_max", 50.0, lo=0.001, hi=1000)
    if e_max <= e_min:
        raise job.JobError("parameter 'energy_max' must exceed 'energy_min'")
    index = p.number("spectral_index", -2.0, lo=-5.0, hi=-1.0)
    obs_id = p.integer("obs_id", 1, lo=1)
    seed = p.integer("seed", 0, lo=0)
    viewcone = p.number("viewcone", 3.0, lo=0.0, hi=10.0)
    proton_fraction = p.number("proton_fraction", 0.8, lo=0.0, hi=1.0)
    e_share = (
        p.number("electron_fraction", lo=0.0, hi=1.0)
        if p.given("electron_fraction")
        else electron_share(e_min, e_max)
        if particle == "mixed"
        else 0.0
    )
    max_scatter = p.number("max_scatter", 400.0, lo=10.0, hi=3000.0)
    geo = observation_geometry(p)
    output = job.output_path("dl0", "events.dl0.h5")

    rng = np.random.default_rng(seed)
    sub = ti.subarray()
    tel_ids = list(sub.tel_ids)
    n_pix = sub.tel[tel_ids[0]].camera.geometry.n_pixels
    calib = ts.make_calibration(np.random.default_rng(1000 + seed), len(tel_ids), n_pix)
    camsim = ts.ToyCameraSimulator(rng, calib)
    p_alt, p_az = geo["pnt_altaz"].alt.rad, geo["pnt_altaz"].az.rad
    s_alt, s_az = geo["src_altaz"].alt.rad, geo["src_altaz"].az.rad

    if particle == "gamma":
        primaries = np.full(n_showers, ts.GAMMA_ID)
    elif particle in DIFFUSE:
        primaries = np.full(n_showers, DIFFUSE[particle])
    else:
        draw = rng.uniform(size=n_showers)
        primaries = np.where(draw < proton_fraction, ts.PROTON_ID, ts.GAMMA_ID)
        primaries[draw < proton_fraction * e_share] = ts.ELECTRON_ID
    energies = sample_energies(rng, n_showers, e_min, e_max, index)
    if particle == "mixed":  # cosmic rays follow their measured spectra, not the source's
        for pid, spectrum in cosmic_ray_spectra().items():
            sel = primaries == pid
            energies[sel] = sample_spectrum(rng, int(sel.sum()), e_min, e_max, spectrum)
    alts = np.full(n_showers, s_alt)
    azs = np.full(n_showers, s_az)
    diffuse = (primaries != ts.GAMMA_ID) | (particle == "gamma_diffuse")
    alts[diffuse], azs[diffuse] = sample_cone(
        rng, int(diffuse.sum()), p_alt, p_az, np.deg2rad(viewcone)
    )
    r = max_scatter * np.sqrt(rng.uniform(size=n_showers))
    phi = rng.uniform(0, 2 * np.pi, n_showers)
    core_x, core_y = r * np.cos(phi), r * np.sin(phi)
    offsets = np.sort(rng.uniform(0.0, geo["duration"], n_showers))
    times_mjd = geo["start"].mjd + offsets / 86400.0

    config = dict(
        particle=particle,
        n_showers=n_showers,
        energy_min=e_min,
        energy_max=e_max,
        spectral_index=index,
        obs_id=obs_id,
        seed=seed,
        viewcone=viewcone if particle != "gamma" else 0.0,
        max_scatter=max_scatter,
        proton_fraction=proton_fraction if particle == "mixed" else None,
        electron_fraction=e_share if particle == "mixed" else None,
        cosmic_ray_spectra="IRFDOC_PROTON_SPECTRUM, IRFDOC_ELECTRON_SPECTRUM (pyirf)"
        if particle == "mixed"
        else None,
        n_primaries={
            name: int(np.count_nonzero(primaries == pid))
            for name, pid in (
                ("gamma", ts.GAMMA_ID), ("electron", ts.ELECTRON_ID), ("proton", ts.PROTON_ID)
            )
        },
        object=geo["object"],
        min_altitude=geo["min_altitude"],
        source_altitude_min=min(geo["source_altitudes"]),
        source_ra=geo["source"].ra.deg,
        source_dec=geo["source"].dec.deg,
        pointing_ra=geo["pointing"].ra.deg,
        pointing_dec=geo["pointing"].dec.deg,
        pointing_alt=np.rad2deg(p_alt),
        pointing_az=np.rad2deg(p_az),
        source_alt=np.rad2deg(s_alt),
        source_az=np.rad2deg(s_az),
        obs_start=geo["start"].isot,
        obs_duration=geo["duration"],
    )
    log.info(
        "simulating %d %s showers, %.3g-%.3g TeV, index %.2f, pointing alt %.2f az %.2f",
        n_showers,
        particle,
        e_min,
        e_max,
        index,
        config["pointing_alt"],
        config["pointing_az"],
    )

    t_start = time.monotonic()
    n_triggered = 0
    n_tel_events = 0
    filters = tables.Filters(complevel=5, complib="blosc:lz4", shuffle=True)
    with tables.open_file(output, "w", title="UWS toy DL0") as h5:
        attrs = h5.root._v_attrs
        attrs.DL0_FORMAT = DL0_FORMAT
        attrs.FORMAT_VERSION = DL0_FORMAT_VERSION
        attrs.INSTRUMENT_VERSION = ti.INSTRUMENT_VERSION
        attrs.OBS_ID = obs_id
        attrs.CONFIG = json.dumps(config)
        events = h5.create_table("/", "events", EventRow, "simulated showers")
        tel_events = h5.create_table("/", "telescope_events", TelEventRow, "telescope data")
        waveforms = h5.create_earray(
            "/",
            "waveforms",
            tables.UInt16Atom(),
            (0, n_pix, ti.N_SAMPLES),
            "R0 waveforms (ADC)",
            filters=filters,
            chunkshape=(1, n_pix, ti.N_SAMPLES),
        )
        true_images = h5.create_earray(
            "/",
            "true_images",
            tables.Int32Atom(),
            (0, n_pix),
            "true Cherenkov p.e. per pixel",
            filters=filters,
            chunkshape=(16, n_pix),
        )
        cal = h5.create_group("/", "calibration", "camera calibration (measured)")
        h5.create_array(cal, "tel_ids", np.array(tel_ids, dtype=np.int16))
        h5.create_array(cal, "pedestal_per_sample", calib.pedestal_with_nsb.astype("f4"))
        h5.create_array(cal, "dc_to_pe", (1.0 / calib.gain).astype("f4"))

        row = events.row
        tel_row = tel_events.row
        for i in range(n_showers):
            shower = ts.Shower(
                energy=energies[i],
                alt=alts[i],
                az=azs[i],
                core_x=core_x[i],
                core_y=core_y[i],
                primary_id=int(primaries[i]),
                x_max=0.0,
                h_first_int=0.0,
            )
            x_mean = ts.x_max_mean(shower.energy, shower.primary_id)
            spread = 20.0 if shower.primary_id in ts.ELECTROMAGNETIC else 60.0
            shower.x_max = float(rng.normal(x_mean, spread))
            first = max(shower.x_max - rng.uniform(150.0, 300.0), 5.0)
            shower.h_first_int = float(
                ts.height_from_slant_depth(np.array(first), shower.alt) * 1000.0
            )
            pe = camsim.photons(shower, p_alt, p_az)
            triggered = camsim.triggered(pe)
            event_id = i + 1
            if triggered:
                n_triggered += 1
                for tel_id in triggered:
                    pix, t = pe[tel_id]
                    t0 = float(np.median(t)) + rng.normal(0.0, 0.5)
                    wf = camsim.waveform(tel_ids.index(tel_id), pix, t, t0)
                    waveforms.append(wf[np.newaxis])
                    img = camsim.true_image(pix)
                    true_images.append(img[np.newaxis])
                    tel_row["event_id"] = event_id
                    tel_row["tel_id"] = tel_id
                    tel_row["index"] = n_tel_events
                    tel_row["true_image_sum"] = int(img.sum())
                    tel_row.append()
                    n_tel_events += 1
            row["event_id"] = event_id
            row["time_mjd"] = times_mjd[i]
            row["energy"] = shower.energy
            row["alt"] = np.rad2deg(shower.alt)
            row["az"] = np.rad2deg(shower.az)
            row["core_x"] = shower.core_x
            row["core_y"] = shower.core_y
            row["x_max"] = shower.x_max
            row["h_first_int"] = shower.h_first_int
            row["primary_id"] = shower.primary_id
            row["n_tels"] = len(triggered)
            row.append()
            if (i + 1) % max(1, n_showers // 50) == 0:  # the runner relays <= 1/s
                job.report_progress(
                    0.97 * (i + 1) / n_showers, f"{i + 1}/{n_showers} showers simulated"
                )
            if (i + 1) % max(1, n_showers // 10) == 0:
                log.info(
                    "%d/%d showers simulated, %d triggered (%d telescope events)",
                    i + 1,
                    n_showers,
                    n_triggered,
                    n_tel_events,
                )
        attrs.N_TRIGGERED = n_triggered
    elapsed = time.monotonic() - t_start
    log.info(
        "done: %d showers, %d triggered events, %d telescope events, %.1f s -> %s",
        n_showers,
        n_triggered,
        n_tel_events,
        elapsed,
        output.name,
    )


if __name__ == "__main__":
    job.run(simulate, context=ctapipe_tool.chain_context)
