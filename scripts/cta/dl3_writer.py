"""Write one observation as a GADF DL3 file: EVENTS, GTI and the four IRF HDUs.

Why our own writer: ctapipe 0.32 has no DL3 tool and gammapy's ``DataStoreMaker``
hard-codes HDU classes and absolute paths. A short astropy program produces exactly the
GADF 0.3 keywords gammapy's ``DataStore`` reads back (checked in the tests); the file
then enters the shared store through ``dl3_store.DL3Store.add``, which writes the HDU
and observation indexes.

Times are seconds since the store's reference (MJDREFI/MJDREFF, TT) so the observation
index and the event lists share one clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import EarthLocation, SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time

from . import gadf_irf
from .dl3_store import STORE_MJDREFF, STORE_MJDREFI
from .toy import instrument as ti

GADF = {
    "HDUCLASS": "GADF",
    "HDUDOC": "https://github.com/open-gamma-ray-astro/gamma-astro-data-formats",
    "HDUVERS": "0.3",
}
MJDREF = Time(STORE_MJDREFI + STORE_MJDREFF, format="mjd", scale="tt")


@dataclass
class Observation:
    """What the EVENTS header says about one run."""

    obs_id: int
    start: Time
    stop: Time
    pointing: SkyCoord  # ICRS
    pointing_alt: float  # deg
    pointing_az: float  # deg
    location: EarthLocation
    object_name: str
    n_tels: int
    tel_ids: list[int]


def _seconds(t: Time) -> np.ndarray:
    return np.asarray((t.tt - MJDREF).to_value(u.s), dtype=float)


def time_header(obs: Observation) -> dict:
    """GADF time keywords shared by EVENTS and GTI."""
    return {
        "MJDREFI": STORE_MJDREFI,
        "MJDREFF": STORE_MJDREFF,
        "TIMEUNIT": "s",
        "TIMESYS": "TT",
        "TIMEREF": "LOCAL",
        "TSTART": float(_seconds(obs.start)),
        "TSTOP": float(_seconds(obs.stop)),
    }


def horizontal(radec: SkyCoord, time: Time, location: EarthLocation) -> SkyCoord:
    """AltAz of each event's direction at its own time (no refraction, as gammapy)."""
    from astropy.coordinates import AltAz

    if len(time) == 0:
        return SkyCoord(alt=[] * u.deg, az=[] * u.deg, frame=AltAz(location=location))
    return radec.transform_to(AltAz(obstime=time, location=location))


def events_hdu(
    obs: Observation, events: dict[str, np.ndarray], time: Time, radec: SkyCoord
) -> fits.BinTableHDU:
    """EVENTS HDU: one row per selected event, GADF mandatory and pointing keywords."""
    table = Table()
    table["EVENT_ID"] = np.asarray(events["event_id"], dtype=np.int64)
    table["TIME"] = _seconds(time) * u.s
    table["RA"] = radec.ra.to(u.deg)
    table["DEC"] = radec.dec.to(u.deg)
    table["ENERGY"] = np.asarray(events["energy"], dtype=float) * u.TeV
    # GADF: ALT/AZ are the horizontal coordinates of RA/DEC at each event's TIME. The toy
    # array does not track (its reconstructed AltAz is in the frame of the run's middle,
    # from which RA/DEC were computed), so the columns are recomputed from RA/DEC: the
    # file is then self-consistent (gammapy's EventListChecker allows 1 arcsec).
    altaz = horizontal(radec, time, obs.location)
    table["ALT"] = altaz.alt.to(u.deg)
    table["AZ"] = altaz.az.to(u.deg)
    table["GAMMANESS"] = np.asarray(events["gammaness"], dtype=np.float32)
    table["MULTIP"] = np.asarray(events["multiplicity"], dtype=np.int16)
    hdu = fits.table_to_hdu(table)
    ontime = float((obs.stop - obs.start).to_value(u.s))
    h = hdu.header
    h["EXTNAME"] = "EVENTS"
    h.update(GADF)
    h["HDUCLAS1"] = "EVENTS"
    h["OBS_ID"] = obs.obs_id
    h.update(time_header(obs))
    h["ONTIME"] = (ontime, "s")
    h["LIVETIME"] = (ontime, "s, no dead time in the toy")
    h["DEADC"] = 1.0
    h["DATE-OBS"] = obs.start.utc.isot[:10]
    h["TIME-OBS"] = obs.start.utc.isot[11:19]
    h["DATE-END"] = obs.stop.utc.isot[:10]
    h["TIME-END"] = obs.stop.utc.isot[11:19]
    h["OBS_MODE"] = "POINTING"
    h["RA_PNT"] = (float(obs.pointing.ra.deg), "deg")
    h["DEC_PNT"] = (float(obs.pointing.dec.deg), "deg")
    h["ALT_PNT"] = (obs.pointing_alt, "deg")
    h["AZ_PNT"] = (obs.pointing_az, "deg")
    h["EQUINOX"] = 2000.0
    h["RADECSYS"] = "ICRS"
    h["ORIGIN"] = "uws-server toy CTA chain"
    h["TELESCOP"] = "CTAO-TOY"
    h["INSTRUME"] = ti.SUBARRAY_NAME
    h["CREATOR"] = "uws-server cta.analysis"
    h["OBJECT"] = obs.object_name
    h["N_TELS"] = obs.n_tels
    h["TELLIST"] = ",".join(str(t) for t in obs.tel_ids)
    h["GEOLON"] = (float(obs.location.lon.deg), "deg")
    h["GEOLAT"] = (float(obs.location.lat.deg), "deg")
    h["ALTITUDE"] = (float(obs.location.height.to_value(u.m)), "m")
    return hdu


def gti_hdu(obs: Observation) -> fits.BinTableHDU:
    """One good-time interval covering the run."""
    table = Table()
    table["START"] = [float(_seconds(obs.start))] * u.s
    table["STOP"] = [float(_seconds(obs.stop))] * u.s
    hdu = fits.table_to_hdu(table)
    hdu.header["EXTNAME"] = "GTI"
    hdu.header.update(GADF)
    hdu.header["HDUCLAS1"] = "GTI"
    hdu.header["OBS_ID"] = obs.obs_id
    hdu.header.update(time_header(obs))
    return hdu


def irf_hdus(irf_path: Path, obs_id: int) -> list[fits.BinTableHDU]:
    """The four full-enclosure IRF HDUs of ``irf_production``, tagged with the obs_id."""
    out = []
    with fits.open(irf_path) as hdul:
        for name in gadf_irf.IRF_HDUS:
            hdu = hdul[name].copy()
            hdu.header["OBS_ID"] = obs_id
            out.append(hdu)
    return out


def write_observation(
    path: Path,
    obs: Observation,
    events: dict[str, np.ndarray],
    time: Time,
    radec: SkyCoord,
    irf_path: Path,
) -> None:
    """The complete GADF file of one observation (gzip-compressed if ``.gz``)."""
    hdus = [fits.PrimaryHDU(), events_hdu(obs, events, time, radec), gti_hdu(obs)]
    hdus += irf_hdus(irf_path, obs.obs_id)
    fits.HDUList(hdus).writeto(path, overwrite=True)
