"""The ObsCore catalogue: one table, one visibility rule, one search.

Every interface that finds data (TAP, cone search, DataLink, the web "Find data" page)
reads the table ``obscore`` through :func:`visible_to`, so that who may see a row is
decided in exactly one place. Rows describe the DL3 observations of the store (public
once released) and the products jobs generate (visible to their owner and admins).

Columns are IVOA ObsCore 1.1 (every mandatory column, with its unit, UCD and utype),
the IVOA high-energy ObsCore extension's ``energy_min``/``energy_max``/``ev_xel``, and
the CTA columns users search on (pointing, livetime, telescopes, IRF, proposal).

Cone geometry is portable: each row also stores the unit vector of (s_ra, s_dec)
(``pos_x``, ``pos_y``, ``pos_z``), so "within r of (ra, dec)" is the linear test
``x*x0 + y*y0 + z*z0 >= cos(r)`` — plain arithmetic that SQLite and PostgreSQL both
evaluate (no pgSphere, no registered functions), exact, and orderable by distance.
A declination band on the indexed ``s_dec`` lets the database skip most rows first.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    DateTime,
    Double,
    Engine,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    and_,
    delete,
    false,
    func,
    or_,
    select,
    true,
)

from uws_server.db import metadata
from uws_server.models import User


@dataclass(frozen=True)
class ColumnDesc:
    """What TAP_SCHEMA, VOTable FIELDs and the web table say about one column.

    ``datatype`` is the ADQL/VOTable type name ('char', 'double', 'bigint', 'integer',
    'timestamp'); ``std`` is true for columns defined by an IVOA standard.
    """

    name: str
    datatype: str
    unit: str | None
    ucd: str | None
    utype: str | None
    description: str
    principal: bool = False
    indexed: bool = False
    std: bool = True
    arraysize: str | None = None
    xtype: str | None = None  # e.g. 'timestamp', 'adql:REGION' (VOTable xtype)


def _c(
    name: str,
    datatype: str,
    unit: str | None,
    ucd: str | None,
    utype: str | None,
    description: str,
    *,
    principal: bool = False,
    indexed: bool = False,
    std: bool = True,
    xtype: str | None = None,
) -> ColumnDesc:
    arraysize = "*" if datatype == "char" else None
    if datatype == "timestamp":
        xtype = "timestamp"
    return ColumnDesc(
        name, datatype, unit, ucd, utype, description, principal, indexed, std, arraysize, xtype
    )


_OC = "obscore:"
OBSCORE_COLUMNS: tuple[ColumnDesc, ...] = (
    # --- IVOA ObsCore 1.1 mandatory columns -------------------------------------------
    _c(
        "dataproduct_type",
        "char",
        None,
        "meta.code.class",
        _OC + "ObsDataset.dataProductType",
        "Data product (file content) primary type: event, image, cube, spectrum, timeseries",
        principal=True,
    ),
    _c(
        "calib_level",
        "integer",
        None,
        "meta.code;obs.calib",
        _OC + "ObsDataset.calibLevel",
        "Calibration level {0, 1, 2, 3, 4}: 2 for DL3 event lists, 3 or 4 for DL4 products",
        principal=True,
    ),
    _c(
        "obs_collection",
        "char",
        None,
        "meta.id",
        _OC + "DataID.Collection",
        "Name of the data collection (CTA-DL3, or the job definition that made a product)",
        principal=True,
    ),
    _c(
        "obs_id",
        "char",
        None,
        "meta.id",
        _OC + "DataID.observationID",
        "Observation id (the DL3 OBS_ID; for a product, its job id and result name)",
        principal=True,
        indexed=True,
    ),
    _c(
        "obs_publisher_did",
        "char",
        None,
        "meta.ref.ivoid",
        _OC + "Curation.PublisherDID",
        "IVOA dataset identifier given by the publisher (the DataLink ID)",
        principal=True,
        indexed=True,
    ),
    _c(
        "access_url",
        "char",
        None,
        "meta.ref.url",
        _OC + "Access.Reference",
        "URL of the data file",
        principal=True,
    ),
    _c(
        "access_format",
        "char",
        None,
        "meta.code.mime",
        _OC + "Access.Format",
        "Content format (MIME type) of the data file",
        principal=True,
    ),
    _c(
        "access_estsize",
        "bigint",
        "kbyte",
        "phys.size;meta.file",
        _OC + "Access.Size",
        "Estimated size of the data file",
        principal=True,
    ),
    _c(
        "target_name",
        "char",
        None,
        "meta.id;src",
        _OC + "Target.Name",
        "Name of the observed target (FITS OBJECT)",
        principal=True,
    ),
    _c(
        "s_ra",
        "double",
        "deg",
        "pos.eq.ra",
        _OC + "Char.SpatialAxis.Coverage.Location.Coord.Position2D.Value2.C1",
        "Right ascension (ICRS) of the pointing or of the product's centre",
        principal=True,
        indexed=True,
    ),
    _c(
        "s_dec",
        "double",
        "deg",
        "pos.eq.dec",
        _OC + "Char.SpatialAxis.Coverage.Location.Coord.Position2D.Value2.C2",
        "Declination (ICRS) of the pointing or of the product's centre",
        principal=True,
        indexed=True,
    ),
    _c(
        "s_fov",
        "double",
        "deg",
        "phys.angSize;instr.fov",
        _OC + "Char.SpatialAxis.Coverage.Bounds.Extent.diameter",
        "Diameter of the covered region",
        principal=True,
    ),
    _c(
        "s_region",
        "char",
        None,
        "pos.outline;obs.field",
        _OC + "Char.SpatialAxis.Coverage.Support.Area",
        "Sky region covered (STC-S, ICRS)",
        xtype="adql:REGION",
    ),
    _c(
        "s_resolution",
        "double",
        "arcsec",
        "pos.angResolution",
        _OC + "Char.SpatialAxis.Resolution.refval.value",
        "Spatial resolution (PSF 68% containment at 1 TeV, or the map's pixel size)",
    ),
    _c(
        "s_xel1",
        "bigint",
        None,
        "meta.number",
        _OC + "Char.SpatialAxis.numBins1",
        "Number of elements along the first spatial axis (0 for an event list)",
    ),
    _c(
        "s_xel2",
        "bigint",
        None,
        "meta.number",
        _OC + "Char.SpatialAxis.numBins2",
        "Number of elements along the second spatial axis (0 for an event list)",
    ),
    _c(
        "t_min",
        "double",
        "d",
        "time.start;obs.exposure",
        _OC + "Char.TimeAxis.Coverage.Bounds.Limits.StartTime",
        "Start time (MJD, UTC)",
        principal=True,
        indexed=True,
    ),
    _c(
        "t_max",
        "double",
        "d",
        "time.end;obs.exposure",
        _OC + "Char.TimeAxis.Coverage.Bounds.Limits.StopTime",
        "Stop time (MJD, UTC)",
        principal=True,
    ),
    _c(
        "t_exptime",
        "double",
        "s",
        "time.duration;obs.exposure",
        _OC + "Char.TimeAxis.Coverage.Support.Extent",
        "Total exposure time (livetime)",
        principal=True,
    ),
    _c(
        "t_resolution",
        "double",
        "s",
        "time.resolution",
        _OC + "Char.TimeAxis.Resolution.Refval.value",
        "Temporal resolution",
    ),
    _c(
        "t_xel",
        "bigint",
        None,
        "meta.number",
        _OC + "Char.TimeAxis.numBins",
        "Number of elements along the time axis",
    ),
    _c(
        "em_min",
        "double",
        "m",
        "em.wl;stat.min",
        _OC + "Char.SpectralAxis.Coverage.Bounds.Limits.LoLimit",
        "Minimum wavelength (h c / energy_max)",
        principal=True,
    ),
    _c(
        "em_max",
        "double",
        "m",
        "em.wl;stat.max",
        _OC + "Char.SpectralAxis.Coverage.Bounds.Limits.HiLimit",
        "Maximum wavelength (h c / energy_min)",
        principal=True,
    ),
    _c(
        "em_res_power",
        "double",
        None,
        "spect.resolution",
        _OC + "Char.SpectralAxis.Resolution.ResolPower.refVal",
        "Spectral resolving power E / dE",
    ),
    _c(
        "em_xel",
        "bigint",
        None,
        "meta.number",
        _OC + "Char.SpectralAxis.numBins",
        "Number of elements along the spectral axis",
    ),
    _c(
        "o_ucd",
        "char",
        None,
        "meta.ucd",
        _OC + "Char.ObservableAxis.ucd",
        "UCD of the observable (phot.count for events and counts maps)",
    ),
    _c(
        "pol_states",
        "char",
        None,
        "meta.code;phys.polarization",
        _OC + "Char.PolarizationAxis.stateList",
        "Polarisation states (none)",
    ),
    _c(
        "pol_xel",
        "bigint",
        None,
        "meta.number",
        _OC + "Char.PolarizationAxis.numBins",
        "Number of polarisation states",
    ),
    _c(
        "facility_name",
        "char",
        None,
        "meta.id;instr.tel",
        _OC + "Provenance.ObsConfig.Facility.name",
        "Observatory (FITS TELESCOP)",
        principal=True,
    ),
    _c(
        "instrument_name",
        "char",
        None,
        "meta.id;instr",
        _OC + "Provenance.ObsConfig.Instrument.name",
        "Instrument (FITS INSTRUME, or the array configuration)",
        principal=True,
    ),
    # --- ObsCore 1.1 optional columns ---------------------------------------------------
    _c(
        "obs_release_date",
        "timestamp",
        None,
        "time.release",
        _OC + "Curation.releaseDate",
        "Date the data set becomes public (UTC)",
    ),
    _c(
        "obs_creation_date",
        "timestamp",
        None,
        "time;meta.dataset",
        _OC + "DataID.Date",
        "Date the data set was created (UTC)",
    ),
    _c(
        "proposal_id",
        "char",
        None,
        "meta.id;obs.proposal",
        _OC + "Provenance.Proposal.identifier",
        "Proposal the observation belongs to",
    ),
    _c(
        "data_rights",
        "char",
        None,
        "meta.code",
        _OC + "Curation.Rights",
        "public or proprietary (when catalogued; obs_release_date decides visibility)",
    ),
    # --- IVOA high-energy ObsCore extension (units: TeV, as CTA users search) -----------
    _c(
        "energy_min",
        "double",
        "TeV",
        "em.energy;stat.min",
        None,
        "Minimum energy of the data set (HE ObsCore extension; h c / em_max)",
        principal=True,
    ),
    _c(
        "energy_max",
        "double",
        "TeV",
        "em.energy;stat.max",
        None,
        "Maximum energy of the data set (HE ObsCore extension; h c / em_min)",
        principal=True,
    ),
    _c(
        "ev_xel",
        "bigint",
        None,
        "meta.number;phys.particle",
        None,
        "Number of events in the event list (HE ObsCore extension; UCD without its proposed "
        "instr.detection, not yet a UCD1+ word)",
    ),
    _c(
        "pointing_mode",
        "char",
        None,
        "meta.code;obs.param",
        None,
        "Pointing mode of the telescopes (HE ObsCore extension: parallel, convergent, divergent)",
    ),
    _c(
        "messenger_name",
        "char",
        None,
        "meta.id;phys.particle",
        None,
        "Messenger particle (HE ObsCore extension)",
    ),
    # --- CTA columns ---------------------------------------------------------------------
    _c(
        "alt_pnt",
        "double",
        "deg",
        "pos.az.alt;instr",
        None,
        "Mean altitude of the pointing (FITS ALT_PNT)",
        std=False,
    ),
    _c(
        "az_pnt",
        "double",
        "deg",
        "pos.az.azi;instr",
        None,
        "Mean azimuth of the pointing (FITS AZ_PNT)",
        std=False,
    ),
    _c(
        "zen_pnt",
        "double",
        "deg",
        "pos.az.zd;instr",
        None,
        "Mean zenith angle of the pointing (90 - ALT_PNT)",
        principal=True,
        std=False,
    ),
    _c(
        "livetime",
        "double",
        "s",
        "time.duration;obs.exposure",
        None,
        "Livetime (FITS LIVETIME)",
        principal=True,
        std=False,
    ),
    _c("ontime", "double", "s", "time.duration", None, "Ontime (FITS ONTIME)", std=False),
    _c(
        "n_tels",
        "integer",
        None,
        "meta.number;instr.tel",
        None,
        "Number of telescopes (FITS N_TELS)",
        std=False,
    ),
    _c(
        "telescopes",
        "char",
        None,
        "meta.id;instr.tel",
        None,
        "Telescopes taking part (FITS TELLIST or array configuration)",
        std=False,
    ),
    _c(
        "irf_name",
        "char",
        None,
        "meta.id;instr.setup",
        None,
        "Instrument response functions the data set comes with or was analysed with",
        std=False,
    ),
    _c(
        "offset",
        "double",
        "deg",
        "pos.angDistance;instr.offset",
        None,
        "Offset of the target from the pointing",
        std=False,
    ),
)
OBSCORE_COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in OBSCORE_COLUMNS)
COLUMNS_BY_NAME: dict[str, ColumnDesc] = {c.name: c for c in OBSCORE_COLUMNS}
# Never published (not in TAP_SCHEMA, never in any answer): who owns a row, which job
# made it, where its file is, and the unit vector of its position (cone geometry).
INTERNAL_COLUMNS: tuple[str, ...] = (
    "owner",
    "job_id",
    "entity_id",
    "file_path",
    "pos_x",
    "pos_y",
    "pos_z",
    "updated",
)

_SQL_TYPES: dict[str, Any] = {
    "char": Text,
    "double": Double,
    "bigint": BigInteger,
    "integer": Integer,
    "timestamp": DateTime,
}


def _sql_column(desc: ColumnDesc) -> Column[Any]:
    if desc.name in ("obs_id", "obs_publisher_did", "obs_collection", "dataproduct_type"):
        return Column(desc.name, String(255), nullable=desc.name != "obs_collection")
    return Column(desc.name, _SQL_TYPES[desc.datatype], nullable=True)


obscore = Table(
    "obscore",
    metadata,
    *(_sql_column(d) for d in OBSCORE_COLUMNS),
    Column("owner", String(64), nullable=True),  # NULL: public (once released)
    # NULL: a DL3 store row. A product's row goes with its job (deleted or reaped).
    Column("job_id", String(32), ForeignKey("jobs.job_id", ondelete="CASCADE"), nullable=True),
    Column("entity_id", String(48), nullable=True),  # the product's entity (provenance)
    Column("file_path", Text, nullable=True),  # server-side path, never published
    Column("pos_x", Double, nullable=True),
    Column("pos_y", Double, nullable=True),
    Column("pos_z", Double, nullable=True),
    Column("updated", DateTime, nullable=True),
)
Index("ix_obscore_did", obscore.c.obs_publisher_did, unique=True)
# No index on owner: most rows are public (owner NULL), and with one SQLite would pick it
# over the declination band of a cone search (many times slower;
# docs/benchmarks.md).
Index("ix_obscore_radec", obscore.c.s_dec, obscore.c.s_ra)
Index("ix_obscore_tmin", obscore.c.t_min)
Index("ix_obscore_obsid", obscore.c.obs_id)
Index("ix_obscore_job", obscore.c.job_id)

PUBLISHED_COLUMNS = tuple(obscore.c[name] for name in OBSCORE_COLUMN_NAMES)

# h c in TeV·m: wavelength (m) = HC_TEV_M / energy (TeV).
HC_TEV_M = 1.23984198e-18


def energy_to_wavelength(energy_tev: float | None) -> float | None:
    """ObsCore's em_* (metres) from an energy in TeV."""
    if energy_tev is None or not energy_tev > 0:
        return None
    return HC_TEV_M / energy_tev


def unit_vector(ra_deg: float, dec_deg: float) -> tuple[float, float, float]:
    """Cartesian unit vector of (ra, dec): what the cone test multiplies."""
    ra, dec = math.radians(ra_deg), math.radians(dec_deg)
    cd = math.cos(dec)
    return cd * math.cos(ra), cd * math.sin(ra), math.sin(dec)


def angular_distance(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    """Great-circle distance in degrees (haversine: exact for small angles too)."""
    r1, d1, r2, d2 = map(math.radians, (ra1, dec1, ra2, dec2))
    s = math.sin((d2 - d1) / 2) ** 2 + math.cos(d1) * math.cos(d2) * math.sin((r2 - r1) / 2) ** 2
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(s))))


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def visible_to(user: User | None, now: datetime | None = None) -> ColumnElement[bool]:
    """THE visibility rule of the catalogue, as a SQL condition on ``obscore``.

    Public rows (owner NULL) whose release date has passed (or that have none), plus
    the rows the user owns; admins see everything. ``None`` is an anonymous caller:
    released public rows only. Every interface filters with this and nothing else.
    """
    if user is not None and user.is_admin:
        return true()
    now = now or utcnow()
    released = and_(
        obscore.c.owner.is_(None),
        or_(obscore.c.obs_release_date.is_(None), obscore.c.obs_release_date <= now),
    )
    if user is None:
        return released
    return or_(released, obscore.c.owner == user.name)


@dataclass
class SearchPage:
    """One page of a search: the rows (published columns, plus ``distance`` in degrees
    when a position was given) and how many rows match in all."""

    rows: list[dict[str, Any]]
    total: int


# Columns a search may be ordered by: the published ones plus the distance.
SORTABLE = frozenset(OBSCORE_COLUMN_NAMES) | {"distance"}


class SearchError(ValueError):
    """A search parameter out of range; the message says which and why (a 400)."""


def ra_window(ra: float, dec: float, radius: float) -> tuple[float, float] | None:
    """The RA interval (degrees, lo may exceed hi across 0/360) holding every point
    within ``radius`` of (ra, dec); None when the cone reaches a pole (every RA).

    Half-width asin(sin r / cos dec), widened by 1e-9 degrees against rounding.
    """
    if radius >= 90 or abs(dec) + radius >= 90:
        return None
    half = math.degrees(math.asin(min(1.0, math.sin(math.radians(radius)) / math.cos(
        math.radians(dec)))))  # fmt: skip
    if half >= 180:
        return None
    half += 1e-9
    return (ra - half) % 360.0, (ra + half) % 360.0


def cone_condition(ra: float, dec: float, radius: float) -> ColumnElement[bool]:
    """Rows within ``radius`` degrees of (ra, dec): a declination band and an RA window
    (both on the ``(s_dec, s_ra)`` index) that skip most rows, then the exact
    dot-product test on the stored unit vectors. Portable SQL (SQLite, PostgreSQL)."""
    x0, y0, z0 = unit_vector(ra, dec)
    dot = obscore.c.pos_x * x0 + obscore.c.pos_y * y0 + obscore.c.pos_z * z0
    cond = dot >= math.cos(math.radians(radius))
    if radius < 90:
        parts = [
            obscore.c.s_dec >= max(-90.0, dec - radius),
            obscore.c.s_dec <= min(90.0, dec + radius),
        ]
        window = ra_window(ra, dec, radius)
        if window is not None:
            lo, hi = window
            if lo <= hi:
                parts.append(obscore.c.s_ra.between(lo, hi))
            else:  # across RA 0/360
                parts.append(or_(obscore.c.s_ra >= lo, obscore.c.s_ra <= hi))
        cond = and_(*parts, cond)
    return cond


def _check_range(name: str, value: float | None, lo: float, hi: float) -> float | None:
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise SearchError(f"{name} must be a number, not {value!r}") from None
    if not (lo <= value <= hi) or math.isnan(value):
        raise SearchError(f"{name} must be in [{lo:g}, {hi:g}], not {value:g}")
    return value


class Catalogue:
    """The catalogue's reads and writes; every read takes the caller's ``User``."""

    def __init__(self, store_or_engine: Any) -> None:
        engine = getattr(store_or_engine, "engine", store_or_engine)
        if not isinstance(engine, Engine):
            raise TypeError("Catalogue needs a Store or an SQLAlchemy Engine")
        self.engine: Engine = engine

    # ---- reads --------------------------------------------------------------------------

    def search(
        self,
        user: User | None,
        *,
        ra: float | None = None,
        dec: float | None = None,
        radius: float | None = None,
        t_min: float | None = None,
        t_max: float | None = None,
        energy_min: float | None = None,
        energy_max: float | None = None,
        dataproduct_type: str | Sequence[str] | None = None,
        calib_level: int | Sequence[int] | None = None,
        obs_collection: str | Sequence[str] | None = None,
        target_name: str | None = None,
        obs_ids: Iterable[str | int] | None = None,
        order_by: str = "t_min",
        descending: bool = False,
        limit: int = 100,
        offset: int = 0,
        columns: Sequence[str] | None = None,
        count: bool = True,
    ) -> SearchPage:
        """Rows the user may see matching every given criterion, one page of them.

        Time (MJD) and energy (TeV) ranges select overlapping data sets; ``target_name``
        matches case-insensitively as a substring; ``order_by`` may be any published
        column or ``distance`` (only with a position). ``columns``: only these published
        columns (default all; ``s_ra``/``s_dec`` come too for ``distance``). ``count``
        False skips the count query: ``total`` is then the rows on this page, plus one
        if more follow (a cheaper "is there more?"). Raises :class:`SearchError`.
        """
        conds: list[ColumnElement[bool]] = [visible_to(user)]
        ra = _check_range("ra", ra, 0.0, 360.0)
        dec = _check_range("dec", dec, -90.0, 90.0)
        radius = _check_range("radius", radius, 0.0, 180.0)
        positioned = ra is not None or dec is not None or radius is not None
        if positioned:
            if ra is None or dec is None:
                raise SearchError("a cone search needs both ra and dec")
            if radius is None:
                radius = 1.0
            conds.append(cone_condition(ra, dec, radius))
        t_min = _check_range("t_min", t_min, -1e7, 1e7)
        t_max = _check_range("t_max", t_max, -1e7, 1e7)
        if t_min is not None and t_max is not None and t_min > t_max:
            raise SearchError(f"t_min ({t_min:g}) is after t_max ({t_max:g})")
        if t_min is not None:
            conds.append(obscore.c.t_max >= t_min)
        if t_max is not None:
            conds.append(obscore.c.t_min <= t_max)
        energy_min = _check_range("energy_min", energy_min, 0.0, 1e9)
        energy_max = _check_range("energy_max", energy_max, 0.0, 1e9)
        if energy_min is not None and energy_max is not None and energy_min > energy_max:
            raise SearchError(f"energy_min ({energy_min:g}) is above energy_max ({energy_max:g})")
        if energy_min is not None:
            conds.append(obscore.c.energy_max >= energy_min)
        if energy_max is not None:
            conds.append(obscore.c.energy_min <= energy_max)
        for name, value in (
            ("dataproduct_type", dataproduct_type),
            ("obs_collection", obs_collection),
        ):
            values = _as_list(value)
            if any(not _plain_text(str(v), 1000) for v in values):
                raise SearchError(f"{name} must be plain text of at most 1000 characters")
            if values:
                conds.append(obscore.c[name].in_([str(v) for v in values]))
        levels = _as_list(calib_level)
        if levels:
            try:
                conds.append(obscore.c.calib_level.in_([int(v) for v in levels]))
            except (TypeError, ValueError):
                raise SearchError(f"calib_level must be integers, not {levels!r}") from None
        for name, text in (("target_name", target_name),):
            if text is not None and not _plain_text(str(text), 1000):
                raise SearchError(f"{name} must be plain text of at most 1000 characters")
        if target_name:
            pattern = "%" + _escape_like(str(target_name).lower()) + "%"
            conds.append(func.lower(obscore.c.target_name).like(pattern, escape="\\"))
        if obs_ids is not None:
            ids = [str(i).strip() for i in obs_ids if str(i).strip()]
            if any(not _plain_text(i, MAX_ID_LENGTH) for i in ids):
                raise SearchError("obs_ids must be plain text identifiers")
            conds.append(obscore.c.obs_id.in_(ids) if ids else false())
        if order_by not in SORTABLE:
            raise SearchError(
                f"cannot order by {order_by!r}: use a column of ivoa.obscore or distance"
            )
        if order_by == "distance" and not positioned:
            raise SearchError("order by distance needs a position (ra, dec)")
        try:
            limit, offset = int(limit), int(offset)
        except (TypeError, ValueError):
            raise SearchError("limit and offset must be integers") from None
        if limit < 0 or offset < 0:
            raise SearchError("limit and offset must not be negative")
        where = and_(*conds)
        if order_by == "distance":
            assert ra is not None and dec is not None
            x0, y0, z0 = unit_vector(ra, dec)
            dot = obscore.c.pos_x * x0 + obscore.c.pos_y * y0 + obscore.c.pos_z * z0
            # larger dot = closer
            key: Any = dot.asc() if descending else dot.desc()
        else:
            col = obscore.c[order_by]
            key = col.desc() if descending else col.asc()
        if columns is None:
            chosen = PUBLISHED_COLUMNS
        else:
            unknown = [c for c in columns if c not in COLUMNS_BY_NAME]
            if unknown:
                raise SearchError(f"no such column(s): {', '.join(unknown)[:200]}")
            names = list(dict.fromkeys([*columns, *(("s_ra", "s_dec") if positioned else ())]))
            chosen = tuple(obscore.c[n] for n in names)
        stmt = (
            select(*chosen)
            .where(where)
            .order_by(key, obscore.c.obs_publisher_did)
            .limit(limit if count else limit + 1)
            .offset(offset)
        )
        with self.engine.connect() as conn:
            result = conn.execute(stmt)
            keys = list(result.keys())
            rows = [dict(zip(keys, r, strict=True)) for r in result]
            if count:
                total = conn.execute(
                    select(func.count()).select_from(obscore).where(where)
                ).scalar_one()
            else:
                total = offset + len(rows)
                del rows[limit:]
        if positioned:
            assert ra is not None and dec is not None
            for row in rows:
                row["distance"] = (
                    None
                    if row["s_ra"] is None or row["s_dec"] is None
                    else angular_distance(ra, dec, row["s_ra"], row["s_dec"])
                )
        return SearchPage(rows=rows, total=int(total))

    def get(self, user: User | None, obs_publisher_did: str) -> dict[str, Any] | None:
        """The published columns of one row, or None when unknown or not visible."""
        row = self.get_internal(user, obs_publisher_did)
        if row is None:
            return None
        return {name: row[name] for name in OBSCORE_COLUMN_NAMES}

    def get_internal(self, user: User | None, obs_publisher_did: str) -> dict[str, Any] | None:
        """The whole row (internal columns too) if the user may see it — for the
        service's own use (file routes, DataLink), never sent as is."""
        if not _plain_text(obs_publisher_did, MAX_ID_LENGTH):
            return None  # no row has such an id (and PostgreSQL refuses NUL in text)
        stmt = select(obscore).where(
            obscore.c.obs_publisher_did == obs_publisher_did, visible_to(user)
        )
        with self.engine.connect() as conn:
            row = conn.execute(stmt).first()
        return None if row is None else dict(row._mapping)

    def target_names(self, user: User | None) -> list[tuple[str, float, float]]:
        """Distinct targets the user can see, with a mean position each (the name box
        of the search page resolves against these, no network)."""
        stmt = (
            select(obscore.c.target_name, func.avg(obscore.c.s_ra), func.avg(obscore.c.s_dec))
            .where(
                visible_to(user), obscore.c.target_name.is_not(None), obscore.c.s_ra.is_not(None)
            )
            .group_by(obscore.c.target_name)
            .order_by(obscore.c.target_name)
        )
        with self.engine.connect() as conn:
            return [(str(n), float(r), float(d)) for n, r, d in conn.execute(stmt) if n]

    def collections(self, user: User | None) -> list[str]:
        """The distinct ``obs_collection`` values of the rows the user can see, sorted
        (the Find page's collection choice)."""
        stmt = (
            select(obscore.c.obs_collection)
            .where(visible_to(user), obscore.c.obs_collection.is_not(None))
            .distinct()
            .order_by(obscore.c.obs_collection)
        )
        with self.engine.connect() as conn:
            return [str(r[0]) for r in conn.execute(stmt)]

    def job_links(self, user: User | None, dids: list[str]) -> dict[str, dict[str, Any]]:
        """``job_id``/``entity_id`` of these visible rows, by ``obs_publisher_did``:
        internal columns a page never shows but builds its links from."""
        if not dids:
            return {}
        stmt = select(obscore.c.obs_publisher_did, obscore.c.job_id, obscore.c.entity_id).where(
            obscore.c.obs_publisher_did.in_(dids), visible_to(user)
        )
        with self.engine.connect() as conn:
            return {r[0]: {"job_id": r[1], "entity_id": r[2]} for r in conn.execute(stmt)}

    def uncatalogued(self, obs_ids: set[str], collection: str) -> set[str]:
        """Those of the DL3 store's ``obs_ids`` with no store row (no job, this
        collection) at all, e.g. files the store sync could not read. One count when
        every observation has a row, which is the usual case."""
        is_store_row = and_(obscore.c.job_id.is_(None), obscore.c.obs_collection == collection)
        with self.engine.connect() as conn:
            count = conn.execute(
                select(func.count()).select_from(obscore).where(is_store_row)
            ).scalar_one()
            if count >= len(obs_ids):
                return set()
            catalogued = {
                str(r[0]) for r in conn.execute(select(obscore.c.obs_id).where(is_store_row))
            }
        return obs_ids - catalogued

    def dids(self, *, job_id: str | None = None, store: bool = False) -> set[str]:
        """obs_publisher_dids of one job's products, or of the DL3 store rows."""
        stmt = select(obscore.c.obs_publisher_did)
        if store:
            stmt = stmt.where(obscore.c.job_id.is_(None), obscore.c.owner.is_(None))
        elif job_id is not None:
            stmt = stmt.where(obscore.c.job_id == job_id)
        with self.engine.connect() as conn:
            return {r[0] for r in conn.execute(stmt)}

    # ---- writes -------------------------------------------------------------------------

    def add_or_update(self, row: dict[str, Any]) -> None:
        """Insert or replace the row with this ``obs_publisher_did``.

        Unknown keys are refused (a typo would silently lose a value); the unit vector
        is derived from s_ra/s_dec here, so no writer can get it wrong.
        """
        self.add_or_update_many([row])

    def add_or_update_many(self, rows: Iterable[dict[str, Any]]) -> int:
        prepared = [_prepare(row) for row in rows]
        if not prepared:
            return 0
        dids = [r["obs_publisher_did"] for r in prepared]
        with self.engine.begin() as conn:
            for chunk in range(0, len(dids), 500):
                conn.execute(
                    delete(obscore).where(
                        obscore.c.obs_publisher_did.in_(dids[chunk : chunk + 500])
                    )
                )
            conn.execute(obscore.insert(), prepared)
        return len(prepared)

    def set_internal(self, obs_publisher_did: str, **values: Any) -> None:
        """Set internal bookkeeping columns of a row (e.g. the entity a store file was
        generated as, found after the row was made)."""
        bad = sorted(set(values) - set(INTERNAL_COLUMNS))
        if bad:
            raise ValueError(f"not internal columns: {', '.join(bad)}")
        with self.engine.begin() as conn:
            conn.execute(
                obscore.update()
                .where(obscore.c.obs_publisher_did == obs_publisher_did)
                .values(**values)
            )

    def remove(self, obs_publisher_did: str) -> bool:
        """Delete one row; True if it existed."""
        with self.engine.begin() as conn:
            result = conn.execute(
                delete(obscore).where(obscore.c.obs_publisher_did == obs_publisher_did)
            )
        return bool(result.rowcount)

    def remove_job(self, job_id: str) -> int:
        """Delete every product row of a job (the job was deleted or reaped)."""
        with self.engine.begin() as conn:
            result = conn.execute(delete(obscore).where(obscore.c.job_id == job_id))
        return int(result.rowcount or 0)


_ALL_COLUMNS = frozenset(c.name for c in obscore.columns)


def _prepare(row: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(row) - _ALL_COLUMNS - {"distance"})
    if unknown:
        raise ValueError(f"obscore has no column(s) {', '.join(unknown)}")
    if not row.get("obs_publisher_did"):
        raise ValueError("an obscore row needs obs_publisher_did")
    out = {name: row.get(name) for name in _ALL_COLUMNS}
    for name, value in list(out.items()):
        if isinstance(value, float) and math.isnan(value):
            out[name] = None
    ra, dec = out.get("s_ra"), out.get("s_dec")
    if ra is not None and dec is not None:
        out["pos_x"], out["pos_y"], out["pos_z"] = unit_vector(float(ra), float(dec))
    else:
        out["pos_x"] = out["pos_y"] = out["pos_z"] = None
    out["updated"] = utcnow()
    return out


MAX_ID_LENGTH = 2048


def _plain_text(text: str, limit: int) -> bool:
    """No NUL or other control character, not absurdly long: what an identifier or a
    name can be (PostgreSQL refuses NUL in text; such a value can match no row)."""
    return len(text) <= limit and not any(ord(c) < 32 or c == "\x7f" for c in text)


def _as_list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, (str, int)):
        return [value]
    return [v for v in value if v is not None and v != ""]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
