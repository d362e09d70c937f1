"""Job script: DL2 -> DL3, and the observation into the shared DL3 store.

Why these steps: the DL3 events must pass exactly the selection the IRFs were computed
with -- ``irf_production``'s quality criteria and its energy-dependent gammaness cut
(``pyirf.cuts.evaluate_binned_cut``), read from the same ``cuts`` file -- otherwise the
effective area does not describe the event list. IRFs depend on zenith: an observation
whose pointing differs from the MC's by more than ``max_zenith_difference`` is refused.

Convention (toy instrument, see docs/science.md): the simulation uses a fixed AltAz
pointing, the wobble position at the run's mid time; reconstructed AltAz directions are
converted to ICRS at that mid time (the toy neglects drift and field rotation within a
run), which puts the simulated source back at its RA/Dec.

Parameters: ``dl2`` (used: DL2 with models applied), ``cuts``, ``irf`` (used; empty =
the committed ones), ``obs_id`` (0 = the DL2 file's), ``object_name`` (empty = the
target ``simulation`` recorded in the observation block, which travels DL0 -> DL2),
``max_zenith_difference`` (deg), ``add_to_store`` (store at ``$UWS_DL3_STORE``).
Outputs: ``$dl3`` (default ``dl3.fits.gz``), ``$dl3_summary`` (``dl3_summary.json``).
"""

from __future__ import annotations

import json
import logging
import shutil

import astropy.units as u
import numpy as np
import tables
from astropy.coordinates import AltAz, SkyCoord

from workers import jobside

from . import ctapipe_tool, dl3_writer, gadf_irf, job
from .dl3_store import DL3Store
from .selection import (
    CLASSIFIER_PREFIX,
    ENERGY_PREFIX,
    GEOMETRY_PREFIX,
    load_cuts,
    read_events,
    select,
)

log = logging.getLogger("uws.cta.analysis")


def check_dl2(path) -> None:
    """``JobError`` unless the DL2 file has geometry, energy and gammaness."""
    needed = {
        f"/dl2/event/subarray/geometry/{GEOMETRY_PREFIX}": "geometry",
        f"/dl2/event/subarray/energy/{ENERGY_PREFIX}": "energy",
        f"/dl2/event/subarray/particle_type/{CLASSIFIER_PREFIX}": "gammaness",
    }
    try:
        with tables.open_file(path, "r") as h5:
            missing = [what for node, what in needed.items() if node not in h5]
    except (tables.HDF5ExtError, OSError):
        raise job.JobError(f"input 'dl2' ({path.name}) is not an HDF5 file") from None
    if missing:
        raise job.JobError(
            f"input 'dl2' ({path.name}) lacks reconstructed {', '.join(missing)}: "
            "run reconstruction with apply_models=true"
        )


def analyse(p: job.Params) -> None:
    """Select events, write the GADF file, add it to the store."""
    from ctapipe.io import read_table

    dl2 = job.resolve_input(p.text("dl2", ""), "dl2")
    check_dl2(dl2)
    cuts_path = job.resolve_input(p.text("cuts", ""), "cuts", job.MODELS_DIR / "cuts.fits")
    irf_path = job.resolve_input(p.text("irf", ""), "irf", job.MODELS_DIR / "irf.fits.gz")
    for path, role in ((dl2, "DL2/Event"), (cuts_path, "cuts"), (irf_path, "irf")):
        job.record_used(path, role)
    cuts = load_cuts(cuts_path)
    if cuts.clf_prefix != CLASSIFIER_PREFIX:
        raise job.JobError(
            f"cuts are for classifier {cuts.clf_prefix}, DL2 has {CLASSIFIER_PREFIX}"
        )
    try:
        irf_pointing = gadf_irf.read_irf_pointing(irf_path)
    except (OSError, KeyError, ValueError) as exc:
        raise job.JobError(f"input 'irf' ({irf_path.name}) unusable: {exc}") from None
    max_dzen = p.number("max_zenith_difference", 5.0, lo=0.0, hi=90.0)

    events, subarray = read_events(dl2)
    block = read_table(dl2, "/configuration/observation/observation_block")
    if len(block) != 1 or len(np.unique(events["obs_id"])) > 1:
        raise job.JobError("input 'dl2' must hold exactly one observation")
    ob = block[0]
    object_name = p.text("object_name", "").strip() or str(block.meta.get("TARGET_NAME", ""))
    if not object_name:
        raise job.JobError(
            "input 'dl2' records no target (simulated before targets were recorded): "
            "give the parameter 'object_name'"
        )
    obs_id = p.integer("obs_id", 0, lo=0) or int(ob["obs_id"])
    pnt_alt = u.Quantity(ob["subarray_pointing_lat"], u.deg).to_value(u.deg)
    pnt_az = u.Quantity(ob["subarray_pointing_lon"], u.deg).to_value(u.deg)
    dzen = abs((90.0 - pnt_alt) - irf_pointing["zenith"])
    if dzen > max_dzen:
        raise job.JobError(
            f"observation zenith {90 - pnt_alt:.1f} deg differs from the IRF's "
            f"{irf_pointing['zenith']:.1f} deg by more than {max_dzen} deg: "
            "produce IRFs for this zenith with irf_production"
        )
    start = ob["actual_start_time"]
    duration = u.Quantity(ob["actual_duration"], u.min)  # ctapipe stores minutes
    stop = start + duration
    mid = start + duration / 2
    location = subarray.reference_location
    log.info(
        "obs_id %d: %d events, pointing alt %.2f az %.2f (IRF zenith %.1f), %.1f min",
        obs_id,
        len(events),
        pnt_alt,
        pnt_az,
        irf_pointing["zenith"],
        duration.to_value(u.min),
    )

    mask, counts = select(events, cuts)
    log.info(
        "selection: %d events, %d pass quality, %d pass the gammaness cut",
        counts["n_events"],
        counts["n_quality"],
        counts["n_selected"],
    )
    if counts["n_selected"] == 0:
        log.warning("no event passes the cuts: the DL3 event list is empty")
    sel = events[mask]
    frame = AltAz(obstime=mid, location=location)
    alt = u.Quantity(sel[f"{GEOMETRY_PREFIX}_alt"], u.deg)
    az = u.Quantity(sel[f"{GEOMETRY_PREFIX}_az"], u.deg)
    radec = SkyCoord(alt=alt, az=az, frame=frame).icrs
    pointing = SkyCoord(alt=pnt_alt * u.deg, az=pnt_az * u.deg, frame=frame).icrs
    tel_ids = sorted(int(t) for t in subarray.tel_ids)
    cols = {
        "event_id": np.asarray(sel["event_id"]),
        "energy": u.Quantity(sel[f"{ENERGY_PREFIX}_energy"], u.TeV).to_value(u.TeV),
        "alt": alt.to_value(u.deg),
        "az": az.to_value(u.deg),
        "gammaness": np.asarray(sel[f"{CLASSIFIER_PREFIX}_prediction"]),
        "multiplicity": np.count_nonzero(np.asarray(sel[f"{GEOMETRY_PREFIX}_telescopes"]), axis=1)
        if len(sel)
        else np.zeros(0),
    }
    obs = dl3_writer.Observation(
        obs_id=obs_id,
        start=start,
        stop=stop,
        pointing=pointing,
        pointing_alt=pnt_alt,
        pointing_az=pnt_az,
        location=location,
        object_name=object_name,
        n_tels=len(tel_ids),
        tel_ids=tel_ids,
    )
    output = job.output_path("dl3", "dl3.fits.gz")
    dl3_writer.write_observation(output, obs, cols, sel["time"], radec, irf_path)
    log.info(
        "DL3 written: %s (%d events, pointing RA %.3f Dec %.3f)",
        output.name,
        len(sel),
        pointing.ra.deg,
        pointing.dec.deg,
    )

    summary = {
        "obs_id": obs_id,
        **counts,
        "pointing_ra": pointing.ra.deg,
        "pointing_dec": pointing.dec.deg,
        "zenith": 90.0 - pnt_alt,
        "irf_zenith": irf_pointing["zenith"],
        "ontime_s": duration.to_value(u.s),
        "object": object_name,
        "store": None,
    }
    if p.boolean("add_to_store", True):
        store = DL3Store()
        staged = store.staging_path(obs_id)
        # stamped before the copy: the result and the store's file stay the same bytes
        jobside.stamp(str(output))
        shutil.copy2(output, staged)
        try:
            added = store.add({obs_id: staged})
        finally:
            staged.unlink(missing_ok=True)
        summary["store"] = str(store.root)
        summary["store_file"] = str(added[obs_id])
        log.info("obs_id %d added to the DL3 store %s", obs_id, store.root)
    job.output_path("dl3_summary", "dl3_summary.json").write_text(
        json.dumps(summary, indent=2) + "\n"
    )


if __name__ == "__main__":
    job.run(analyse, context=ctapipe_tool.chain_context)
