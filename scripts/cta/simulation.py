"""Job script: simulate DL0 (raw ADC waveforms + truth) for the toy array.

Why: no IACT simulation or data can be downloaded here, so the chain starts from showers
the project simulates itself (physics in :mod:`cta.toy.showers`). Gammas come from a point
source, protons diffusely from a cone around the pointing; ``mixed`` makes an
"observation" with both. The array points at a fixed AltAz position: the wobble position
next to the source at the run's mid time (ctapipe's IRF tools only accept AltAz
pointing, and a fixed one keeps the MC and the observation consistent).

Parameters (``parameters.json``): particle, n_showers, energy_min, energy_max (TeV),
spectral_index (dN/dE ~ E^index, negative), source_ra, source_dec (deg), wobble_offset,
wobble_angle (deg), obs_start (ISO UTC), obs_duration (s), obs_id, max_scatter (m),
viewcone (deg, protons), proton_fraction (mixed), seed.
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
from .toy import instrument as ti
from .toy import showers as ts

log = logging.getLogger("simulation")

DL0_FORMAT = "UWS-TOY-DL0"
DL0_FORMAT_VERSION = 1
PARTICLES = ("gamma", "proton", "mixed")


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
    mid = start + duration / 2 * u.s
    frame = AltAz(obstime=mid, location=ti.SITE)
    src_altaz = source.transform_to(frame)
    pnt_altaz = pointing.transform_to(frame)
    if pnt_altaz.alt < 30 * u.deg:
        raise job.JobError(
            f"pointing altitude {pnt_altaz.alt.deg:.1f} deg at mid-run is below 30 deg: "
            "choose another obs_start or source"
        )
    return dict(
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
    elif particle == "proton":
        primaries = np.full(n_showers, ts.PROTON_ID)
    else:
        primaries = np.where(
            rng.uniform(size=n_showers) < proton_fraction, ts.PROTON_ID, ts.GAMMA_ID
        )
    energies = sample_energies(rng, n_showers, e_min, e_max, index)
    alts = np.full(n_showers, s_alt)
    azs = np.full(n_showers, s_az)
    is_p = primaries == ts.PROTON_ID
    alts[is_p], azs[is_p] = sample_cone(rng, int(is_p.sum()), p_alt, p_az, np.deg2rad(viewcone))
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
            spread = 20.0 if shower.primary_id == ts.GAMMA_ID else 60.0
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
