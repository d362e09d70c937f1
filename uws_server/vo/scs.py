"""Simple Cone Search 1.03 over the catalogue (``/scs?RA=&DEC=&SR=[&VERB=]``).

The same rows and the same visibility as every other interface (``Catalogue.search``).
The three columns SCS requires carry its UCD1 names: ``obs_publisher_did`` is
ID_MAIN, ``s_ra`` POS_EQ_RA_MAIN, ``s_dec`` POS_EQ_DEC_MAIN; a ``distance`` column
(degrees from the centre) comes last. VERB=1 gives those columns, 2 (default) the
principal ObsCore columns, 3 every published column. Errors are the VOTable SCS 1.03
describes (an INFO named Error, plus the DALI QUERY_STATUS that clients such as pyvo
read), with HTTP 400.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from uws_server.models import User
from uws_server.vo.obscore import OBSCORE_COLUMNS, Catalogue, ColumnDesc, SearchError
from uws_server.vo.votable_out import VOTABLE_TYPES, Field, table

SCS_STANDARD = "ivo://ivoa.net/std/ConeSearch"
MAX_SR = 180.0
MAX_RECORDS = 10000
_UCD1 = {
    "obs_publisher_did": "ID_MAIN",
    "s_ra": "POS_EQ_RA_MAIN",
    "s_dec": "POS_EQ_DEC_MAIN",
}
_VERB1 = ("obs_publisher_did", "s_ra", "s_dec")
DISTANCE = Field(
    "distance", "double", "pos.angDistance", unit="deg",
    description="Distance from the cone's centre",
)  # fmt: skip


def _field(c: ColumnDesc) -> Field:
    return Field(
        c.name,
        VOTABLE_TYPES.get(c.datatype, "char"),
        _UCD1.get(c.name, c.ucd),
        unit=c.unit,
        utype=c.utype,
        description=c.description,
        arraysize=c.arraysize or ("*" if c.datatype == "timestamp" else None),
        xtype=c.xtype,
    )


def columns_for(verb: int) -> list[ColumnDesc]:
    if verb == 1:
        by_name = {c.name: c for c in OBSCORE_COLUMNS}
        return [by_name[n] for n in _VERB1]
    if verb == 2:
        return [c for c in OBSCORE_COLUMNS if c.principal or c.name in _VERB1]
    return list(OBSCORE_COLUMNS)


class ConeError(ValueError):
    """A cone search parameter is missing or out of range."""


def _number(params: Mapping[str, str], name: str, lo: float, hi: float) -> float:
    text = params.get(name)
    if text is None or not text.strip():
        raise ConeError(f"parameter {name} is missing (RA, DEC and SR are required, in degrees)")
    try:
        value = float(text)
    except ValueError:
        raise ConeError(f"parameter {name}={text[:40]!r} is not a number") from None
    if math.isnan(value) or not lo <= value <= hi:
        raise ConeError(f"parameter {name}={text[:40]} is out of range [{lo:g}, {hi:g}]")
    return value


def _upper(params: Mapping[str, str]) -> dict[str, str]:
    """Parameter names are case-insensitive (DALI); values are kept as given."""
    return {k.upper(): v for k, v in params.items()}


def cone_search(catalogue: Catalogue, user: User | None, params: Mapping[str, str]) -> str:
    """The SCS VOTable for these parameters; raises :class:`ConeError`."""
    p = _upper(params)
    ra = _number(p, "RA", -360.0, 360.0) % 360.0
    dec = _number(p, "DEC", -90.0, 90.0)
    sr = _number(p, "SR", 0.0, MAX_SR)
    verb_text = (p.get("VERB") or "2").strip()
    if verb_text not in ("1", "2", "3"):
        raise ConeError(f"parameter VERB={verb_text[:20]!r} must be 1, 2 or 3")
    cols = columns_for(int(verb_text))
    fields = [_field(c) for c in cols] + [DISTANCE]
    rows: list[tuple[object, ...]] = []
    status = ("QUERY_STATUS", "OK", "")
    if sr > 0:  # SR=0: the metadata only (SCS 1.03)
        try:
            names = [c.name for c in cols]
            page = catalogue.search(
                user,
                ra=ra,
                dec=dec,
                radius=sr,
                order_by="distance",
                limit=MAX_RECORDS,
                columns=names,
                count=False,
            )
        except SearchError as exc:
            raise ConeError(str(exc)) from None
        rows = [tuple(r[n] for n in names) + (r.get("distance"),) for r in page.rows]
        if page.total > len(rows):
            status = ("QUERY_STATUS", "OVERFLOW", f"more than {MAX_RECORDS} rows: the nearest")
    return table(
        fields,
        rows,
        infos=(status,),
        description="CTA data sets (ObsCore) within SR degrees of (RA, DEC)",
        table_name="obscore_cone",
    )


def error_document(message: str) -> str:
    """The SCS 1.03 error VOTable (INFO Error) with DALI's QUERY_STATUS=ERROR."""
    return table(
        [_field(c) for c in columns_for(1)],
        (),
        infos=(("Error", message, message), ("QUERY_STATUS", "ERROR", message)),
    )
