"""The DL3 store shared by the CTA job scripts (gammapy fast path and ctapipe chain).

Layout (GADF, readable by ``gammapy.data.DataStore.from_dir(root)``)::

    <root>/hdu-index.fits.gz      HDU index, FILE_DIR relative to <root>
    <root>/obs-index.fits.gz      observation index
    <root>/data/obs_<obs_id:06d>.fits.gz   EVENTS, GTI, EFFECTIVE AREA, ENERGY DISPERSION,
                                           PSF, BACKGROUND of one observation
    <root>/.lock                  writers take an exclusive flock on it

The root is ``$UWS_DL3_STORE`` (default ``var/dl3_store`` in the repository). See
``docs/science.md`` for the contract with the other writers.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workers import jobside

from .job import JobError

log = logging.getLogger("uws.cta.store")

REPO_DIR = Path(__file__).resolve().parents[2]


HDU_INDEX = "hdu-index.fits.gz"
OBS_INDEX = "obs-index.fits.gz"
DATA_DIR = "data"
LOCK_FILE = ".lock"
# Time reference of the obs index (GADF/CTA convention: 2001-01-01 00:00:00 TT).
STORE_MJDREFI = 51910
STORE_MJDREFF = 7.428703703703703e-4
_GADF_META = {
    "HDUCLASS": "GADF",
    "HDUDOC": "https://github.com/open-gamma-ray-astro/gamma-astro-data-formats",
    "HDUVERS": "0.3",
    "HDUCLAS1": "INDEX",
}
_UNITS = {
    **dict.fromkeys(("RA_PNT", "DEC_PNT", "ALT_PNT", "AZ_PNT", "ZEN_PNT"), "deg"),
    **dict.fromkeys(("ONTIME", "LIVETIME", "TSTART", "TSTOP"), "s"),
    "SIZE": "byte",
}
_LOCATION_KEYS = ("GEOLON", "GEOLAT", "ALTITUDE")
_RESPONSE_TYPES = {
    "EFF_AREA": "aeff",
    "EDISP": "edisp",
    "RPSF": "psf",
    "PSF": "psf",
    "BKG": "bkg",
    "RAD_MAX": "rad_max",
}


def sha256_of(path: Path) -> str:
    """The file's SHA-256 (hex), as the service records it."""
    return jobside.sha256_of(str(path))


def format_ids(ids: Iterable[int], limit: int = 12) -> str:
    """Compact list of ids for error messages: contiguous runs become ``a-b``."""
    ids = sorted(set(ids))
    parts: list[str] = []
    start = prev = None
    for value in [*ids, None]:
        if start is not None and value is not None and value == prev + 1:
            prev = value
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = value
    text = ", ".join(parts[:limit])
    return text + (f", ... ({len(ids)} in all)" if len(parts) > limit else "") or "none"


@dataclass
class ObservationFiles:
    """The files of one observation in the store, with the HDU types each one holds."""

    obs_id: int
    files: dict[Path, list[str]] = field(default_factory=dict)

    @property
    def events_file(self) -> Path:
        for path, types in self.files.items():
            if "events" in types:
                return path
        raise JobError(f"obs_id {self.obs_id} has no EVENTS HDU in the store index")


def _hdu_type_class(header: Any) -> tuple[str, str] | None:
    """GADF HDU type and class from a header's HDUCLASn keys (None if not a DL3 HDU)."""
    clas1 = str(header.get("HDUCLAS1", "")).strip().upper()
    extname = str(header.get("EXTNAME", "")).strip().upper()
    if not clas1 and extname in ("EVENTS", "GTI"):  # gammapy writes GTI without HDUCLAS1
        clas1 = extname
    if clas1 in ("EVENTS", "GTI"):
        return clas1.lower(), clas1.lower()
    if clas1 == "RESPONSE":
        hdu_type = _RESPONSE_TYPES.get(str(header.get("HDUCLAS2", "")).strip().upper())
        hdu_class = str(header.get("HDUCLAS4", "")).strip().lower()
        if hdu_type and hdu_class:
            return hdu_type, hdu_class
    return None


def describe_observation_file(
    path: Path, file_name: str, obs_id: int, ref_mjd: tuple[int, float]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Index rows (HDU index rows, obs index row) for one GADF observation file.

    ``file_name`` is the name the file will have under ``data/``; times in the obs row are
    seconds since ``ref_mjd`` (the obs index's MJDREFI/MJDREFF), whatever the file uses.
    """
    import astropy.units as u
    from astropy.io import fits
    from astropy.time import Time

    hdu_rows: list[dict[str, Any]] = []
    events_header = None
    with fits.open(path, memmap=False) as hdul:
        for hdu in hdul[1:]:
            kind = _hdu_type_class(hdu.header)
            if kind is None:
                continue
            hdu_rows.append(
                {
                    "OBS_ID": obs_id,
                    "HDU_TYPE": kind[0],
                    "HDU_CLASS": kind[1],
                    "FILE_DIR": DATA_DIR,
                    "FILE_NAME": file_name,
                    "HDU_NAME": hdu.name,
                    "SIZE": path.stat().st_size,
                }
            )
            if kind[0] == "events":
                events_header = hdu.header.copy()
    if events_header is None:
        raise JobError(f"{path.name}: no EVENTS HDU (HDUCLAS1=EVENTS), not a DL3 observation")
    if int(events_header.get("OBS_ID", -1)) != obs_id:
        raise JobError(f"{path.name}: header OBS_ID={events_header.get('OBS_ID')} != {obs_id}")
    h = events_header
    scale = str(h.get("TIMESYS", "TT")).strip().lower()
    file_ref = Time(h.get("MJDREFI", 0) + h.get("MJDREFF", 0.0), format="mjd", scale=scale)
    store_ref = Time(ref_mjd[0] + ref_mjd[1], format="mjd", scale="tt")
    start = file_ref + h["TSTART"] * u.s
    stop = file_ref + h["TSTOP"] * u.s
    alt = float(h.get("ALT_PNT", float("nan")))
    obs_row = {
        "OBS_ID": obs_id,
        "RA_PNT": float(h["RA_PNT"]),
        "DEC_PNT": float(h["DEC_PNT"]),
        "ALT_PNT": alt,
        "AZ_PNT": float(h.get("AZ_PNT", float("nan"))),
        "ZEN_PNT": 90.0 - alt,
        "ONTIME": float(h["ONTIME"]),
        "LIVETIME": float(h["LIVETIME"]),
        "DEADC": float(h.get("DEADC", 1.0)),
        "TSTART": float((start - store_ref).to_value(u.s)),
        "TSTOP": float((stop - store_ref).to_value(u.s)),
        "DATE-OBS": start.utc.isot[:10],
        "TIME-OBS": start.utc.isot[11:19],
        "DATE-END": stop.utc.isot[:10],
        "TIME-END": stop.utc.isot[11:19],
        "N_TELS": int(h.get("N_TELS") or -1),
        # GADF obs-index columns: the telescopes used and a quality flag (0 = good; the
        # writers flag nothing yet, so 0 unless the file says otherwise).
        "TELLIST": str(h.get("TELLIST", "")),
        "QUALITY": int(h.get("QUALITY", 0)),
        "OBJECT": str(h.get("OBJECT", "")),
        "TELESCOP": str(h.get("TELESCOP", "")),
        "EVENT_COUNT": int(h.get("NAXIS2", 0)),
    }
    obs_row.update({f"_{key}": float(h[key]) for key in _LOCATION_KEYS if key in h})
    return hdu_rows, obs_row


def _merge(old: Any, rows: list[dict[str, Any]], meta: dict[str, Any]) -> Any:
    """Append rows to an index table, keeping columns others may have added."""
    import numpy as np
    from astropy.table import Table, vstack

    new = Table(rows=rows)
    table = (
        new if old is None else vstack([old, new], join_type="outer", metadata_conflicts="silent")
    )
    if table.has_masked_values:
        for name in table.colnames:
            col = table[name]
            if getattr(col, "mask", None) is not None and np.any(col.mask):
                kind = col.dtype.kind
                fill = "" if kind in "US" else (-1 if kind in "iu" else np.nan)
                table[name] = col.filled(fill)
    for name, unit in _UNITS.items():
        if name in table.colnames:
            table[name].unit = unit
    table.meta.clear()
    table.meta.update(meta)
    return table


class DL3Store:
    """The shared GADF DL3 store: ``data/obs_<id>.fits.gz`` plus the two index files.

    Readers need no lock: indexes are replaced atomically and only after the data files
    they name are in place; files are never rewritten. Writers serialise on an exclusive
    ``flock`` of ``<store>/.lock`` around "check ids, move files, rewrite indexes".
    """

    def __init__(self, root: str | Path | None = None):
        root = root or os.environ.get("UWS_DL3_STORE") or REPO_DIR / "var" / "dl3_store"
        self.root = Path(root).resolve()

    @property
    def hdu_index(self) -> Path:
        return self.root / HDU_INDEX

    @property
    def obs_index(self) -> Path:
        return self.root / OBS_INDEX

    @property
    def data_dir(self) -> Path:
        return self.root / DATA_DIR

    @staticmethod
    def file_name(obs_id: int) -> str:
        return f"obs_{obs_id:06d}.fits.gz"

    def _read(self, path: Path) -> Any:
        from astropy.table import Table

        return Table.read(path, hdu=1) if path.is_file() else None

    def obs_ids(self) -> list[int]:
        """Observation ids present in the HDU index (empty if the store does not exist)."""
        table = self._read(self.hdu_index)
        return [] if table is None else sorted({int(i) for i in table["OBS_ID"]})

    def resolve(self, obs_ids: Iterable[int]) -> list[ObservationFiles]:
        """Map obs_ids to their files, failing with one clear message for what is missing."""
        obs_ids = list(obs_ids)
        if not obs_ids:
            raise JobError("empty selection: give at least one observation id")
        table = self._read(self.hdu_index)
        if table is None:
            raise JobError(f"DL3 store not found: no {HDU_INDEX} in {self.root}")
        available = {int(i) for i in table["OBS_ID"]}
        missing = [i for i in obs_ids if i not in available]
        if missing:
            label = "obs_id" if len(missing) == 1 else "obs_ids"
            raise JobError(
                f"{label} {format_ids(missing)} not in the DL3 store {self.root} "
                f"(available: {format_ids(available)})"
            )
        result = []
        for obs_id in obs_ids:
            obs = ObservationFiles(obs_id)
            for row in table[table["OBS_ID"] == obs_id]:
                path = self.root / str(row["FILE_DIR"]).strip() / str(row["FILE_NAME"]).strip()
                if not path.is_file():
                    raise JobError(f"DL3 file of obs_id {obs_id} is missing: {path}")
                obs.files.setdefault(path.resolve(), []).append(str(row["HDU_TYPE"]).strip())
            obs.events_file  # noqa: B018 - raises a clear error if there are no events
            result.append(obs)
        return result

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive writer lock (``flock``), released even if the writer dies."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.root / LOCK_FILE, "a") as stream:
            fcntl.flock(stream, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(stream, fcntl.LOCK_UN)

    def staging_path(self, obs_id: int) -> Path:
        """Where to write a new observation before :meth:`add` (same filesystem)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return self.data_dir / f".staging-{os.getpid()}-{self.file_name(obs_id)}"

    def add(self, staged: dict[int, Path]) -> dict[int, Path]:
        """Add observation files (obs_id -> written GADF file) and update both indexes.

        Fails without touching the store if any obs_id is already present.
        """
        import shutil

        with self.lock():
            hdu_table, obs_table = self._read(self.hdu_index), self._read(self.obs_index)
            present = set() if hdu_table is None else {int(i) for i in hdu_table["OBS_ID"]}
            if obs_table is not None:
                present |= {int(i) for i in obs_table["OBS_ID"]}
            taken = sorted(i for i in staged if i in present or self._target(i).exists())
            if taken:
                raise JobError(f"obs_ids {format_ids(taken)} already in the DL3 store {self.root}")
            meta = obs_table.meta if obs_table is not None else {}
            ref = (
                int(meta.get("MJDREFI", STORE_MJDREFI)),
                float(meta.get("MJDREFF", STORE_MJDREFF)),
            )
            hdu_rows, obs_rows = [], []
            # The site (GEOLON, GEOLAT, ALTITUDE) goes in the obs index header: one per store.
            location = {k: meta[k] for k in _LOCATION_KEYS if k in meta}
            for obs_id, path in sorted(staged.items()):
                rows, obs_row = describe_observation_file(path, self.file_name(obs_id), obs_id, ref)
                for key in _LOCATION_KEYS:
                    value = obs_row.pop(f"_{key}", None)
                    if value is not None:
                        location.setdefault(key, value)
                hdu_rows += rows
                obs_rows.append(obs_row)
            for obs_id, path in staged.items():
                _stamp(path)
                shutil.move(path, self._target(obs_id))
            hdu_meta = {"EXTNAME": "HDU_INDEX", **_GADF_META, "HDUCLAS2": "HDU"}
            obs_meta = {
                "EXTNAME": "OBS_INDEX",
                **_GADF_META,
                "HDUCLAS2": "OBS",
                "MJDREFI": ref[0],
                "MJDREFF": ref[1],
                "TIMEUNIT": "s",
                "TIMESYS": "TT",
                "TIMEREF": "LOCAL",
                **location,
            }
            self._write(_merge(hdu_table, hdu_rows, hdu_meta), self.hdu_index)
            self._write(_merge(obs_table, obs_rows, obs_meta), self.obs_index)
        log.info("added %d observation(s) to %s", len(staged), self.root)
        return {obs_id: self._target(obs_id) for obs_id in staged}

    def _target(self, obs_id: int) -> Path:
        return self.data_dir / self.file_name(obs_id)

    @staticmethod
    def _write(table: Any, path: Path) -> None:
        tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
        table.write(tmp, format="fits", overwrite=True)
        os.replace(tmp, path)


def _stamp(path: Path) -> None:
    """Provenance references (job URL, activity, entity id, ProvSAP URL) into a file
    entering the store, unless the job stamped it already (analysis stamps its result
    first): the store's file and the job's published copy are then the same bytes, so
    a DL4 job reading the store is still matched to that result by SHA-256."""
    earlier = jobside.read_fits_refs(str(path))
    this_job = jobside.provenance_refs("")["activity_id"]
    # a stamp of this job is kept; one from elsewhere (a file copied in) is replaced
    if earlier.get("entity_id") and earlier.get("activity_id", "") == this_job:
        return
    jobside.stamp_fits(str(path), jobside.provenance_refs(jobside.new_entity_id()))


# ------------------------------------------------------------ what a job reads and writes


def record_observations(observations: Iterable[ObservationFiles]) -> None:
    """Record every DL3 file of ``observations`` as used (``.uws/used.json``), with its
    obs_id and HDU types, so that provenance links DL4 products to the DL3 observations."""
    for obs in observations:
        for path, types in sorted(obs.files.items()):
            role = "dl3_observation" if "events" in types else "dl3_irf"
            jobside.record_used(str(path), role, obs_id=obs.obs_id, hdu_types=sorted(types))


def load_observations(obs_ids: list[int], store: DL3Store | None = None) -> Any:
    """Read observations from the DL3 store with gammapy, recording them as used.

    Resolving through the index first gives one clear error for unknown obs_ids (gammapy
    would only warn and skip them); observations lacking a full-enclosure IRF are refused
    for the same reason.
    """
    from gammapy.data import DataStore

    store = store or DL3Store()
    resolved = store.resolve(obs_ids)
    record_observations(resolved)
    observations = DataStore.from_dir(store.root).get_observations(
        obs_ids, required_irf="full-enclosure"
    )
    found = {int(obs.obs_id) for obs in observations}
    lacking = [i for i in obs_ids if i not in found]
    if lacking:
        raise JobError(
            f"obs_ids {format_ids(lacking)} lack events, GTI or a full-enclosure IRF "
            "(aeff, edisp, psf, bkg) in the DL3 store"
        )
    n_events = sum(len(obs.events.table) for obs in observations)
    log.info("read %d observation(s) from %s: %d events", len(observations), store.root, n_events)
    return observations


def publish_observations(written: dict[int, Path], prefix: str = "dl3_obs_") -> list[Path]:
    """Copy the observation files a job added to the DL3 store into its own directory.

    They then become the job's results (the definition declares ``dl3_obs_*.fits.gz``),
    byte for byte the files in the store: a later job that reads an observation from
    the store is matched to this job's result by its SHA-256, which is what chains the
    provenance of a DL4 product back to the job that made its DL3 input.
    """
    import shutil

    out = []
    for obs_id, path in sorted(written.items()):
        target = Path(f"{prefix}{obs_id:06d}.fits.gz")
        target.unlink(missing_ok=True)
        # A copy, never a hard link: the service refuses linked results (a link would
        # let the job's file and the store's change together after the job ended).
        shutil.copyfile(path, target)
        entity_id = jobside.read_fits_refs(str(target)).get("entity_id")
        if entity_id:  # stamped when it entered the store: the result gets that id
            jobside.record_stamp(str(target), entity_id)
        out.append(target)
    return out
