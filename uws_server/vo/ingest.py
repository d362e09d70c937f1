"""Filling the catalogue: DL3 observations of the store and the data sets jobs generate.

Values come from the files themselves (the GADF EVENTS header, the IRF HDUs, a map's
WCS, a table's rows) and from the job's parameters, never from what a client says.
gammapy's ``to_obscore_table`` was considered: it gives em_min/em_max in TeV and a fixed
s_fov, where ObsCore wants metres and the file knows its field of view, so the mapping
is done here from the headers (astropy only, imported when a file is read).

Keeping in step: the store is synced when the service starts, after every job that ends
(a job may have added observations) and whenever a reader notices that the store's
observation index changed (one ``stat``); a job's products are added when it ends.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import select

from uws_server import dl3
from uws_server.config import Settings
from uws_server.jobdef import EntityDef, JobDefinition
from uws_server.joblog import job_log
from uws_server.models import Job, Phase, Result
from uws_server.vo.obscore import Catalogue, energy_to_wavelength, obscore, utcnow

log = logging.getLogger("uws_server.vo")

STORE_COLLECTION = "CTA-DL3"
FITS_TYPES = ("application/fits", "image/fits")


def public_base(settings: Settings) -> str:
    """The service's public URL, for the access URLs stored in the catalogue."""
    if settings.base_url:
        return settings.base_url.rstrip("/")
    return f"http://{settings.host}:{settings.port}"


def store_did(settings: Settings, obs_id: int | str) -> str:
    return f"ivo://{settings.vo_authority}/cta?{obs_id}"


def product_did(settings: Settings, job_id: str, result_name: str) -> str:
    return f"ivo://{settings.vo_authority}/product?{job_id}/{result_name}"


def data_url(settings: Settings, did: str) -> str:
    """The file of a data set (checked against the caller's rights when fetched)."""
    return f"{public_base(settings)}/vo/data?ID={quote(did, safe='')}"


# ---------------------------------------------------------------- FITS helpers


def _num(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def _text(value: Any) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None


def _mjd(header: Any, seconds: float) -> float | None:
    """MJD (UTC) of a time in seconds after the header's MJDREFI/MJDREFF."""
    import astropy.units as u
    from astropy.time import Time

    ref = _num(header.get("MJDREFI", 0)) or 0.0
    ref += _num(header.get("MJDREFF", 0.0)) or 0.0
    scale = str(header.get("TIMESYS", "TT")).strip().lower() or "tt"
    if scale not in ("tt", "utc", "tai", "tdb"):
        scale = "tt"
    return float((Time(ref, format="mjd", scale=scale) + seconds * u.s).utc.mjd)


def _ds_range(header: Any, kind: str) -> str | None:
    """The value of the OGIP data-subspace keyword DSVALn whose DSTYPn starts with kind."""
    for i in range(1, 20):
        typ = header.get(f"DSTYP{i}")
        if typ is None:
            break
        if str(typ).strip().upper().startswith(kind):
            return _text(header.get(f"DSVAL{i}"))
    return None


def dl3_file_row(path: Path) -> dict[str, Any]:
    """ObsCore values of one GADF DL3 observation file, from its own headers.

    Position = the pointing (RA_PNT/DEC_PNT), times from TSTART/TSTOP and the MJD
    reference, energy range from the data-subspace keywords (else the events), field
    of view from the data-subspace circle (else the IRFs' offset axis).
    """
    from astropy.io import fits

    with fits.open(path, memmap=False) as hdus:
        events = next(
            (h for h in hdus[1:] if str(h.header.get("HDUCLAS1", h.name)).upper() == "EVENTS"),
            None,
        )
        if events is None:
            raise ValueError(f"{path.name}: no EVENTS HDU")
        h = events.header
        energy = events.data["ENERGY"] if "ENERGY" in events.columns.names else None
        aeff = next(
            (x for x in hdus[1:] if str(x.header.get("HDUCLAS2", "")).upper() == "EFF_AREA"),
            None,
        )
        aeff_header = aeff.header if aeff is not None else {}
        theta_max = None
        if aeff is not None and "THETA_HI" in aeff.columns.names:
            theta_max = _num(aeff.data["THETA_HI"].max())
        n_events = int(h.get("NAXIS2", 0))
        e_lo = e_hi = None
        ds_energy = _ds_range(h, "ENERGY")
        if ds_energy and ":" in ds_energy:
            lo, hi = ds_energy.split(":", 1)
            e_lo, e_hi = _num(lo), _num(hi)
        if (e_lo is None or e_hi is None) and energy is not None and len(energy):
            e_lo, e_hi = float(energy.min()), float(energy.max())
    ra, dec = float(h["RA_PNT"]), float(h["DEC_PNT"])
    radius = None
    ds_pos = _ds_range(h, "POS(")
    if ds_pos:
        m = re.match(r"CIRCLE\(([^,]+),([^,]+),([^)]+)\)", ds_pos.replace(" ", ""), re.I)
        if m:
            radius = _num(m.group(3))
    if radius is None:
        radius = theta_max
    alt = _num(h.get("ALT_PNT"))
    obj_ra, obj_dec = _num(h.get("RA_OBJ")), _num(h.get("DEC_OBJ"))
    offset = None
    if obj_ra is not None and obj_dec is not None:
        from uws_server.vo.obscore import angular_distance

        offset = angular_distance(ra, dec, obj_ra, obj_dec)
    tstart, tstop = float(h["TSTART"]), float(h["TSTOP"])
    n_tels = h.get("N_TELS")
    instrument = _text(h.get("INSTRUME"))
    irf_class = _text(aeff_header.get("HDUCLAS3"))
    irf_name = _text(aeff_header.get("IRF")) or _text(aeff_header.get("CBD"))
    if irf_name is None and instrument and aeff is not None:
        irf_name = f"{instrument} {irf_class.lower()}" if irf_class else instrument
    created = _text(h.get("CREATED")) or _text(h.get("DATE"))
    return {
        "dataproduct_type": "event",
        "calib_level": 2,
        "obs_id": str(int(h["OBS_ID"])),
        "access_format": "application/fits",
        "access_estsize": max(1, path.stat().st_size // 1024),
        "target_name": _text(h.get("OBJECT")),
        "s_ra": ra,
        "s_dec": dec,
        "s_fov": None if radius is None else 2 * radius,
        "s_region": None if radius is None else f"CIRCLE ICRS {ra:.6f} {dec:.6f} {radius:g}",
        "s_xel1": None,
        "s_xel2": None,
        "t_min": _mjd(h, tstart),
        "t_max": _mjd(h, tstop),
        "t_exptime": _num(h.get("LIVETIME")),
        "t_resolution": None,
        "t_xel": None,
        "em_min": energy_to_wavelength(e_hi),
        "em_max": energy_to_wavelength(e_lo),
        "energy_min": e_lo,
        "energy_max": e_hi,
        "em_res_power": None,
        "em_xel": None,
        "o_ucd": "phot.count",
        "pol_states": None,
        "pol_xel": None,
        "facility_name": _text(h.get("TELESCOP")),
        "instrument_name": instrument,
        "obs_creation_date": _date(created),
        "proposal_id": _text(h.get("PROP_ID")) or _text(h.get("PROPOSAL")),
        "ev_xel": n_events,
        "pointing_mode": _text(h.get("POINTING_MODE")) or _text(h.get("PNT_MODE")),
        "messenger_name": "photon",
        "alt_pnt": alt,
        "az_pnt": _num(h.get("AZ_PNT")),
        "zen_pnt": None if alt is None else 90.0 - alt,
        "livetime": _num(h.get("LIVETIME")),
        "ontime": _num(h.get("ONTIME")),
        "n_tels": int(n_tels) if isinstance(n_tels, int) else None,
        "telescopes": _text(h.get("TELLIST")),
        "irf_name": irf_name,
        "offset": offset,
    }


def _date(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace(" ", "T")[:26])
    except ValueError:
        return None


def _mjd_to_datetime(mjd: float) -> datetime:
    return datetime(1858, 11, 17) + timedelta(days=mjd)


# ---------------------------------------------------------------- the store


class StoreSync:
    """Keeps the catalogue's DL3 rows equal to the store's observations.

    Cheap when nothing changed (a ``stat`` of the observation index); otherwise new
    observations are read and added, vanished ones removed. One sync at a time.
    """

    def __init__(self, settings: Settings, catalogue: Catalogue) -> None:
        self.settings = settings
        self.catalogue = catalogue
        self._lock = threading.Lock()
        self._seen: float | None = None

    def _stamp(self) -> float | None:
        try:
            return (Path(self.settings.dl3_store) / dl3.OBS_INDEX).stat().st_mtime
        except OSError:
            return None

    def ensure_current(self) -> None:
        """Sync if the store changed since the last sync (the readers' check)."""
        if self._stamp() != self._seen:
            self.sync()

    def sync(self) -> int:
        """Add the store's new observations, drop vanished ones; returns rows written."""
        with self._lock:
            stamp = self._stamp()
            if stamp is None:  # no index (yet, or the store is unreachable): keep the rows
                self._seen = None
                return 0
            files = dl3.observation_files(Path(self.settings.dl3_store), strict=True)
            wanted = {store_did(self.settings, obs_id): (obs_id, p) for obs_id, p in files.items()}
            present = self.catalogue.dids(store=True)
            for did in present - set(wanted):
                self.catalogue.remove(did)
            rows = []
            for did in sorted(set(wanted) - present):
                obs_id, path = wanted[did]
                try:
                    rows.append(self.store_row(obs_id, path))
                except (OSError, KeyError, ValueError, TypeError) as exc:
                    log.warning("DL3 observation %s not catalogued: %s", obs_id, exc)
            written = self.catalogue.add_or_update_many(rows)
            self._seen = stamp
        if written:
            log.info(
                "catalogue: %d DL3 observation(s) added from %s", written, self.settings.dl3_store
            )
        return written

    def store_row(self, obs_id: int, path: Path) -> dict[str, Any]:
        row = dl3_file_row(path)
        did = store_did(self.settings, obs_id)
        days = self.settings.dl3_proprietary_days
        release = None
        if days and row.get("t_max") is not None:
            release = _mjd_to_datetime(row["t_max"]) + timedelta(days=days)
        row.update(
            obs_publisher_did=did,
            obs_collection=STORE_COLLECTION,
            access_url=data_url(self.settings, did),
            obs_release_date=release,
            data_rights="public" if release is None or release <= utcnow() else "proprietary",
            owner=None,
            job_id=None,
            file_path=str(path),
        )
        return row


# ---------------------------------------------------------------- products of jobs


def _entity_of(defn: JobDefinition, result: Result) -> EntityDef | None:
    """The generated entity a result belongs to (``name`` or ``name_<n>`` for a '*')."""
    for e in defn.generated:
        if result.name == e.name or re.fullmatch(re.escape(e.name) + r"_\d+", result.name):
            return e
    return None


def _param_float(params: dict[str, str], *names: str) -> float | None:
    for name in names:
        if name in params and str(params[name]).strip():
            value = _num(params[name])
            if value is not None:
                return value
    return None


def _obs_ids(params: dict[str, str]) -> list[str]:
    text = params.get("obs_ids", "") or ""
    out: list[str] = []
    for part in re.split(r"[\s,]+", text.strip()):
        if re.fullmatch(r"\d+-\d+", part):
            a, b = (int(x) for x in part.split("-"))
            if 0 <= b - a <= 10000:
                out.extend(str(i) for i in range(a, b + 1))
        elif part.isdigit():
            out.append(str(int(part)))
    return out


class ProductCatalogue:
    """Rows for the data sets a finished job generated (owner: the job's owner)."""

    def __init__(
        self,
        settings: Settings,
        catalogue: Catalogue,
        store_sync: StoreSync,
        definition: Callable[[str], JobDefinition],
        job_dir: Callable[[str], Path],
    ) -> None:
        self.settings = settings
        self.catalogue = catalogue
        self.store_sync = store_sync
        self.definition = definition
        self.job_dir = job_dir

    def add_job(self, job: Job) -> int:
        """Catalogue what the job generated; returns the number of rows written."""
        self.catalogue.remove_job(job.job_id)
        if job.phase != Phase.COMPLETED:
            return 0
        try:
            defn = self.definition(job.jobname)
        except Exception:  # the definition was removed since: nothing says what to catalogue
            return 0
        if not any(e.dataproduct_type for e in defn.generated):
            return 0
        progenitors = self._progenitors(_obs_ids(job.parameters))
        jdir = self.job_dir(job.job_id).resolve()
        rows = []
        for result in job.results:
            entity = _entity_of(defn, result)
            if entity is None or not entity.dataproduct_type:
                continue
            path = (jdir / result.path).resolve()
            if not path.is_relative_to(jdir) or not path.is_file():
                continue
            try:
                row = self.product_row(job, result, entity, path, progenitors)
            except (OSError, KeyError, ValueError, TypeError, IndexError) as exc:
                job_log(log, job).warning("result %s not catalogued: %s", result.name, exc)
                continue
            if row is not None:
                rows.append(row)
        written = self.catalogue.add_or_update_many(rows)
        if written:
            job_log(log, job).info("%d data set(s) catalogued", written)
        return written

    def _progenitors(self, obs_ids: list[str]) -> list[dict[str, Any]]:
        """The store rows a product was made from (times, livetime, instrument)."""
        if not obs_ids:
            return []
        dids = [store_did(self.settings, i) for i in obs_ids]
        stmt = select(obscore).where(obscore.c.obs_publisher_did.in_(dids[:1000]))
        with self.catalogue.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    def product_row(
        self,
        job: Job,
        result: Result,
        entity: EntityDef,
        path: Path,
        progenitors: list[dict[str, Any]],
    ) -> dict[str, Any] | None:
        params = job.parameters
        kind = entity.dataproduct_type
        if kind == "event":
            row = dl3_file_row(path)
            # A DL3 file the job added to the store is the store's row, public once
            # released: no private twin of it.
            store_path = dl3.observation_files(Path(self.settings.dl3_store)).get(
                int(row["obs_id"])
            )
            if store_path is not None and _same_file(store_path, path):
                self.store_sync.ensure_current()
                if result.entity_id:  # its provenance: the job that made the store file
                    self.catalogue.set_internal(
                        store_did(self.settings, row["obs_id"]), entity_id=result.entity_id
                    )
                return None
        else:
            row = self._dl4_row(kind, path, params, progenitors)
        did = product_did(self.settings, job.job_id, result.name)
        row.update(
            obs_publisher_did=did,
            obs_collection=job.jobname,
            calib_level=int(entity.calib_level or 4),
            dataproduct_type=kind,
            access_url=data_url(self.settings, did),
            access_format=result.content_type or row.get("access_format"),
            access_estsize=max(1, (result.size or path.stat().st_size) // 1024),
            obs_creation_date=job.end_time or utcnow(),
            obs_release_date=None,
            data_rights="proprietary",
            owner=job.owner,
            job_id=job.job_id,
            entity_id=result.entity_id,
            file_path=str(path),
        )
        if kind != "event":
            row["obs_id"] = job.job_id
        return row

    def _dl4_row(
        self,
        kind: str,
        path: Path,
        params: dict[str, str],
        progenitors: list[dict[str, Any]],
    ) -> dict[str, Any]:
        ra = _param_float(params, "RA", "ra")
        dec = _param_float(params, "Dec", "DEC", "dec")
        e_lo = _param_float(params, "emin", "energy_min")
        e_hi = _param_float(params, "emax", "energy_max")
        row: dict[str, Any] = {
            "o_ucd": "phot.count",
            "messenger_name": "photon",
            "pol_states": None,
            "pol_xel": None,
        }
        first = progenitors[0] if progenitors else {}
        if progenitors:
            t_mins = [p["t_min"] for p in progenitors if p.get("t_min") is not None]
            t_maxs = [p["t_max"] for p in progenitors if p.get("t_max") is not None]
            lives = [p["livetime"] for p in progenitors if p.get("livetime") is not None]
            row.update(
                t_min=min(t_mins) if t_mins else None,
                t_max=max(t_maxs) if t_maxs else None,
                t_exptime=sum(lives) if lives else None,
                livetime=sum(lives) if lives else None,
                facility_name=first.get("facility_name"),
                instrument_name=first.get("instrument_name"),
                irf_name=first.get("irf_name"),
                target_name=first.get("target_name"),
                proposal_id=first.get("proposal_id"),
            )
            zens = [p["zen_pnt"] for p in progenitors if p.get("zen_pnt") is not None]
            if zens:
                row["zen_pnt"] = sum(zens) / len(zens)
        target = params.get("object_name") or params.get("object")
        if target:
            row["target_name"] = target
        radius = _param_float(params, "on_radius")
        if kind in ("image", "cube") and path.suffix.lower() in (".fits", ".gz", ".fit"):
            row.update(_image_values(path))
            if row.get("target_name") is None:
                row["target_name"] = None
        elif kind == "spectrum":
            n = _table_rows(path)
            row.update(em_xel=n, s_fov=None if radius is None else 2 * radius)
            if e_lo is None or e_hi is None:
                lo, hi = _table_range(path, ("e_min", "energy_min"), ("e_max", "energy_max"))
                e_lo, e_hi = e_lo if e_lo is not None else lo, e_hi if e_hi is not None else hi
        elif kind == "timeseries":
            row.update(t_xel=_table_rows(path), s_fov=None if radius is None else 2 * radius)
            bin_min = _param_float(params, "time_bin")
            if bin_min is not None:
                row["t_resolution"] = bin_min * 60.0
        if ra is not None and dec is not None and row.get("s_ra") is None:
            row.update(s_ra=ra, s_dec=dec)
        if row.get("s_ra") is not None and row.get("s_fov"):
            row["s_region"] = (
                f"CIRCLE ICRS {row['s_ra']:.6f} {row['s_dec']:.6f} {row['s_fov'] / 2:g}"
            )
        row.update(
            energy_min=e_lo,
            energy_max=e_hi,
            em_min=energy_to_wavelength(e_hi),
            em_max=energy_to_wavelength(e_lo),
        )
        return row


def _same_file(a: Path, b: Path) -> bool:
    try:
        sa, sb = a.stat(), b.stat()
    except OSError:
        return False
    if (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino):
        return True
    if sa.st_size != sb.st_size:
        return False
    from uws_server.vo.files import sha256_of

    return sha256_of(a) == sha256_of(b)


def _image_values(path: Path) -> dict[str, Any]:
    """Centre, size, pixel scale and energy axis of a FITS sky map (its WCS)."""
    from astropy.io import fits
    from astropy.wcs import WCS

    with fits.open(path, memmap=False) as hdus:
        hdu = next(
            h
            for h in hdus
            if getattr(h, "data", None) is not None and h.header.get("NAXIS", 0) >= 2
        )
        header = hdu.header
        wcs = WCS(header).celestial
        nx, ny = int(header["NAXIS1"]), int(header["NAXIS2"])
        centre = wcs.pixel_to_world((nx - 1) / 2, (ny - 1) / 2).icrs
        scale = abs(float(wcs.proj_plane_pixel_scales()[0].to_value("deg")))
        out: dict[str, Any] = {
            "s_ra": float(centre.ra.deg),
            "s_dec": float(centre.dec.deg),
            "s_xel1": nx,
            "s_xel2": ny,
            "s_resolution": scale * 3600.0,
            "s_fov": max(nx, ny) * scale,
        }
        if header.get("NAXIS", 2) >= 3:
            out["em_xel"] = int(header["NAXIS3"])
        if str(header.get("BUNIT", "")).strip() == "" and "sig" in path.name.lower():
            out["o_ucd"] = "stat.snr"
    return out


def _table_rows(path: Path) -> int | None:
    from astropy.table import Table

    try:
        return len(Table.read(path))
    except Exception:  # any unreadable table: the count is optional
        return None


def _table_range(
    path: Path, lo_names: tuple[str, ...], hi_names: tuple[str, ...]
) -> tuple[float | None, float | None]:
    from astropy.table import Table

    try:
        table = Table.read(path)
    except Exception:
        return None, None
    lo = next((n for n in lo_names if n in table.colnames), None)
    hi = next((n for n in hi_names if n in table.colnames), None)
    if lo is None or hi is None:
        return None, None
    return float(table[lo].quantity.to_value("TeV").min()), float(
        table[hi].quantity.to_value("TeV").max()
    )
