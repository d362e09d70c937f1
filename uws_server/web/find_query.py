"""The "Find data" form's values: parsed, checked and turned into a catalogue search.

The page is a plain GET form, so a search is a URL (bookmarkable, shareable, paged and
sorted by links). :func:`parse_query` reads every field at once and collects a message
per bad field rather than stopping at the first, so the page can show them all next to
their inputs; nothing here raises on user input.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from bottle import request

from uws_server.errors import BadRequest

MJD_EPOCH = datetime(1858, 11, 17)
PAGE_SIZES = (10, 25, 50, 100)
DEFAULT_PAGE_SIZE = 25
DEFAULT_RADIUS = 2.0  # degrees: a CTA field of view, when only a position is given
MAX_TEXT = 200
MAX_IDS = 500
# The table's sortable columns: what the header says -> the catalogue column.
SORT_KEYS = {
    "obs_id": "obs_id",
    "target": "target_name",
    "date": "t_min",
    "livetime": "livetime",
    "zenith": "zen_pnt",
    "offset": "distance",
    "type": "dataproduct_type",
    "collection": "obs_collection",
}
PRODUCT_TYPES = ("event", "image", "cube", "spectrum", "timeseries")
CALIB_LEVELS = ("0", "1", "2", "3", "4")
# The form's own fields, in the order they are kept in links (sorting, paging).
FIELDS = (
    "target",
    "ra",
    "dec",
    "radius",
    "date_min",
    "date_max",
    "energy_min",
    "energy_max",
    "type",
    "level",
    "collection",
    "obs_ids",
)
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?Z?$")
_ID_SPLIT = re.compile(r"[\s,]+")


def query_values() -> Any:
    """The query string's values decoded as UTF-8 (bottle hands them over as latin-1)."""
    try:
        return request.query.decode()
    except UnicodeError:
        raise BadRequest("query values must be UTF-8") from None


def mjd_of(dt: datetime) -> float:
    """Modified Julian Date (UTC) of a naive-UTC time: ObsCore's t_min/t_max."""
    return (dt - MJD_EPOCH) / timedelta(days=1)


def date_of_mjd(mjd: float | None) -> str:
    """'YYYY-MM-DD HH:MM' (UTC) of an MJD, as the table shows it ('' when unknown)."""
    if mjd is None or not math.isfinite(mjd) or not -1e6 < mjd < 1e6:
        return ""
    return (MJD_EPOCH + timedelta(days=mjd)).strftime("%Y-%m-%d %H:%M")


def parse_date(text: str) -> float:
    """An ISO date or date-time (UTC), or an MJD number, as an MJD; ValueError if neither."""
    match = _DATE.match(text)
    if match:
        parts = [int(p) if p else 0 for p in match.groups()]
        try:
            return mjd_of(datetime(*parts))  # type: ignore[misc]
        except ValueError:
            raise ValueError(f"'{text}' is not a valid date") from None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(
            f"'{text}' is not a date: use YYYY-MM-DD, YYYY-MM-DDTHH:MM or an MJD"
        ) from None
    if not math.isfinite(value) or not 0 <= value <= 1e6:
        raise ValueError(f"'{text}' is out of range for an MJD")
    return value


@dataclass
class FindQuery:
    """What the form asked for: the raw texts (to show again) and the parsed values."""

    raw: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # field -> message
    ra: float | None = None
    dec: float | None = None
    radius: float | None = None
    t_min: float | None = None
    t_max: float | None = None
    energy_min: float | None = None
    energy_max: float | None = None
    dataproduct_type: str | None = None
    calib_level: int | None = None
    obs_collection: str | None = None
    obs_ids: list[str] | None = None
    sort: str = "date"
    descending: bool = False
    page: int = 1
    per_page: int = DEFAULT_PAGE_SIZE
    resolved: str = ""  # "target resolved to ..." message

    @property
    def asked(self) -> bool:
        """Whether the form was submitted (an empty form lists everything visible)."""
        return "search" in self.raw or any(self.raw.get(n) for n in FIELDS)

    @property
    def positioned(self) -> bool:
        return self.ra is not None and self.dec is not None

    @property
    def order_by(self) -> str:
        key = SORT_KEYS.get(self.sort, "t_min")
        return "t_min" if key == "distance" and not self.positioned else key

    def link(self, **changes: Any) -> str:
        """This search's URL with some of its settings changed (sort, page...)."""
        values: dict[str, Any] = {n: self.raw[n] for n in FIELDS if self.raw.get(n)}
        values.update(
            sort=self.sort, desc="1" if self.descending else "", page=self.page, per=self.per_page
        )
        values.update(changes)
        if values.get("page") == 1:
            values.pop("page")
        return "/ui/find?" + urlencode({k: v for k, v in values.items() if v not in ("", None)})

    def sort_link(self, key: str) -> str:
        """Header link: sort by ``key``, or flip the order when already sorted by it."""
        descending = not self.descending if key == self.sort else False
        return self.link(sort=key, desc="1" if descending else "", page=1)


def _number(
    q: FindQuery, name: str, label: str, lo: float | None = None, hi: float | None = None
) -> float | None:
    text = q.raw.get(name, "")
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        q.errors[name] = f"{label}: '{text}' is not a number"
        return None
    if not math.isfinite(value):
        q.errors[name] = f"{label}: '{text}' is not a finite number"
    elif lo is not None and value < lo or hi is not None and value > hi:
        bounds = f"from {lo:g} to {hi:g}" if hi is not None else f"at least {lo:g}"
        q.errors[name] = f"{label} must be {bounds}, not {text}"
    else:
        return value
    return None


def parse_query(params: Any) -> FindQuery:
    """Read the search form from ``params`` (bottle's query dict); never raises."""
    raw = {}
    for name in (*FIELDS, "sort", "desc", "page", "per", "search"):
        value = params.get(name)
        raw[name] = "" if value is None else str(value).strip()[:MAX_TEXT]
    q = FindQuery(raw=raw)
    q.ra = _number(q, "ra", "RA", 0.0, 360.0)
    q.dec = _number(q, "dec", "Dec", -90.0, 90.0)
    q.radius = _number(q, "radius", "Radius", 0.0, 180.0)
    if (q.ra is None) != (q.dec is None) and not ({"ra", "dec"} & q.errors.keys()):
        missing = "dec" if q.dec is None else "ra"
        q.errors[missing] = "give both RA and Dec for a cone search (or a target name)"
    if q.radius is not None and q.ra is None and not q.raw["target"] and "ra" not in q.errors:
        q.errors["radius"] = "a radius needs a position: RA and Dec, or a target name"
    for name, attr in (("date_min", "t_min"), ("date_max", "t_max")):
        if raw[name]:
            try:
                setattr(q, attr, parse_date(raw[name]))
            except ValueError as exc:
                q.errors[name] = str(exc)
    if q.t_min is not None and q.t_max is not None and q.t_min > q.t_max:
        q.errors["date_max"] = "the end date is before the start date"
    q.energy_min = _number(q, "energy_min", "Minimum energy", 0.0)
    q.energy_max = _number(q, "energy_max", "Maximum energy", 0.0)
    if q.energy_min is not None and q.energy_max is not None and q.energy_min > q.energy_max:
        q.errors["energy_max"] = "the maximum energy is below the minimum energy"
    if raw["type"]:
        if raw["type"] in PRODUCT_TYPES:
            q.dataproduct_type = raw["type"]
        else:
            q.errors["type"] = f"unknown data product type '{raw['type']}'"
    if raw["level"]:
        if raw["level"] in CALIB_LEVELS:
            q.calib_level = int(raw["level"])
        else:
            q.errors["level"] = f"calibration level must be 0 to 4, not '{raw['level']}'"
    q.obs_collection = raw["collection"] or None
    if raw["obs_ids"]:
        ids = [i for i in _ID_SPLIT.split(raw["obs_ids"]) if i]
        if len(ids) > MAX_IDS:
            q.errors["obs_ids"] = f"at most {MAX_IDS} observation ids at once"
        q.obs_ids = ids[:MAX_IDS]
    q.sort = raw["sort"] if raw["sort"] in SORT_KEYS else "date"
    q.descending = raw["desc"] in ("1", "true", "on")
    try:
        q.per_page = int(raw["per"]) if raw["per"] else DEFAULT_PAGE_SIZE
    except ValueError:
        q.per_page = DEFAULT_PAGE_SIZE
    if q.per_page not in PAGE_SIZES:
        q.per_page = DEFAULT_PAGE_SIZE
    try:
        q.page = max(1, min(int(raw["page"] or 1), 100_000))
    except ValueError:
        q.errors["page"] = f"page: '{raw['page']}' is not a page number"
    return q


def resolve_target(q: FindQuery, targets: list[tuple[str, float, float]]) -> None:
    """Set the position from the target name when RA/Dec are not given.

    Names resolve against the catalogue's own targets (no network, no Sesame): an exact
    name (case-insensitive), else the only name containing the text. An ambiguous or
    unknown name is a field error listing the candidates.
    """
    name = q.raw.get("target", "")
    if not name or q.positioned or {"ra", "dec"} & q.errors.keys():
        return
    wanted = name.casefold()
    exact = [t for t in targets if t[0].casefold() == wanted]
    matches = exact or [t for t in targets if wanted in t[0].casefold()]
    if len(matches) == 1:
        found, q.ra, q.dec = matches[0]
        if q.radius is None:
            q.radius = DEFAULT_RADIUS
        q.resolved = f"{found} → RA {q.ra:.4f}°, Dec {q.dec:+.4f}° (from the catalogue)"
        return
    if matches:
        names = ", ".join(t[0] for t in matches[:6])
        q.errors["target"] = f"'{name}' matches several targets: {names}"
    else:
        known = ", ".join(t[0] for t in targets[:6]) or "none yet"
        q.errors["target"] = f"no target named '{name}' in the catalogue (known: {known})"
