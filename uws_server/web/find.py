"""The "Find data" page: search the catalogue, tick observations, analyse them.

The CTA Data Distiller flow of the seed document: a search form (cone around RA/Dec or a
target name resolved against the catalogue's own targets, time and energy ranges, data
product type, calibration level, collection, obs ids) → a sortable, paged results table
→ tick observations → "Analyse with …" → the job form of a definition that takes
``obs_ids``, already carrying the ticked ids and the search position.

Every row comes from :class:`uws_server.vo.obscore.Catalogue`, whose one visibility rule
decides what a user sees: released DL3 observations and the user's own job products
(an admin: everything). The per-row files (download, preview, provenance graph) are
served under ``/ui`` with the same rule, because a browser session cannot authenticate
to ``/rest`` or ``/datalink``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import bottle
from bottle import HTTPResponse

from uws_server.dl3 import OBS_IDS_PARAMETER, observation_ids
from uws_server.errors import BadRequest, NotFound
from uws_server.jobdef import JobDefinition, ParameterDef
from uws_server.models import User
from uws_server.vo.obscore import (
    OBSCORE_COLUMNS,
    Catalogue,
    SearchError,
)
from uws_server.web import find_adql
from uws_server.web.common import Ctx, WebApp, see_other, url_part
from uws_server.web.find_query import (
    CALIB_LEVELS,
    DEFAULT_RADIUS,
    PAGE_SIZES,
    PRODUCT_TYPES,
    FindQuery,
    date_of_mjd,
    parse_query,
    query_values,
    resolve_target,
)
from uws_server.web.forms import ObsChoice

log = logging.getLogger("uws_server.web.find")

PICKER_LIMIT = 200  # observations in a job form's picker table (the rest: Find data)
MAX_ANALYSE = 500  # ticked observations one analyse link may carry
STORE_COLLECTION = "CTA-DL3"
LEVEL_NAMES = {
    "0": "0 raw",
    "1": "1 instrumental",
    "2": "2 calibrated (DL3)",
    "3": "3 science-ready (DL4)",
    "4": "4 enhanced",
}
RA_UCD = "pos.eq.ra;meta.main"
DEC_UCD = "pos.eq.dec;meta.main"


@dataclass(frozen=True)
class Analysis:
    """A job definition that takes store observations (a required ``obs_ids``)."""

    name: str
    description: str
    ra: str | None  # its parameter for the source's right ascension, if any
    dec: str | None


def _position_parameter(defn: JobDefinition, ucd: str, name: str) -> str | None:
    params: list[ParameterDef] = defn.parameters
    for p in params:
        if (p.ucd or "").lower() == ucd:
            return p.name
    return next((p.name for p in params if p.name.lower() == name), None)


def analyses(definitions: list[JobDefinition]) -> list[Analysis]:
    """The definitions that analyse store observations, found from their parameters:
    a required parameter named ``obs_ids`` (``simulate_dl3``'s optional one names ids
    to create, not data to read), with the RA/Dec parameters of their target."""
    found = []
    for defn in definitions:
        p = defn.parameter(OBS_IDS_PARAMETER)
        if p is None or not p.required or p.default:
            continue
        found.append(
            Analysis(
                defn.name,
                defn.description,
                _position_parameter(defn, RA_UCD, "ra"),
                _position_parameter(defn, DEC_UCD, "dec"),
            )
        )
    return sorted(found, key=lambda a: a.name)


def _fmt(value: Any, digits: int) -> str:
    return "" if value is None else f"{float(value):.{digits}f}"


def _livetime(seconds: Any) -> str:
    if seconds is None:
        return ""
    seconds = float(seconds)
    return f"{seconds / 60:.1f} min" if seconds < 3 * 3600 else f"{seconds / 3600:.2f} h"


def _offset(row: dict[str, Any]) -> str:
    return "" if row.get("distance") is None else f"{row['distance']:.3f}°"


class Finder:
    """The catalogue as the pages use it: searches, the picker, per-row file access."""

    def __init__(self, web: WebApp) -> None:
        self.web = web
        self.service = web.service

    @property
    def catalogue(self) -> Catalogue:
        """The service's catalogue, synced with the DL3 store first (one ``stat`` when
        nothing changed): an observation added behind the service's back shows up."""
        from uws_server.vo.routes import catalogue_for  # the VO layer, built on the service

        return catalogue_for(self.service)

    # ------------------------------------------------------------------ reading
    def store_ids(self) -> set[str]:
        return {str(i) for i in observation_ids(self.service.settings.dl3_store)}

    def collections(self, user: User) -> list[str]:
        return self.catalogue.collections(user)

    def internals(self, user: User, dids: list[str]) -> dict[str, dict[str, Any]]:
        """job_id/entity_id of the page's rows (never shown; they build the links)."""
        return self.catalogue.job_links(user, dids)

    def search(self, user: User, q: FindQuery) -> tuple[list[dict[str, Any]], int]:
        radius = q.radius if q.radius is not None else DEFAULT_RADIUS
        try:
            page = self.catalogue.search(
                user,
                ra=q.ra if q.positioned else None,
                dec=q.dec if q.positioned else None,
                radius=radius if q.positioned else None,
                t_min=q.t_min,
                t_max=q.t_max,
                energy_min=q.energy_min,
                energy_max=q.energy_max,
                dataproduct_type=q.dataproduct_type,
                calib_level=q.calib_level,
                obs_collection=q.obs_collection,
                obs_ids=q.obs_ids,
                order_by=q.order_by,
                descending=q.descending,
                limit=q.per_page,
                offset=(q.page - 1) * q.per_page,
            )
        except SearchError as exc:
            q.errors["search"] = str(exc)
            return [], 0
        store = self.store_ids()
        extra = self.internals(user, [r["obs_publisher_did"] for r in page.rows])
        views = [self.row_view(r, extra.get(r["obs_publisher_did"], {}), store) for r in page.rows]
        return views, page.total

    def row_view(
        self, row: dict[str, Any], extra: dict[str, Any], store: set[str]
    ) -> dict[str, Any]:
        """What the table shows of one row, and its links."""
        did = row["obs_publisher_did"]
        arg = urlencode({"did": did})
        job_id = extra.get("job_id")
        collection = row.get("obs_collection") or ""
        job_url = ""
        if job_id and collection in self.service.registry:
            job_url = f"/ui/jobs/{url_part(collection)}/{url_part(job_id)}"
        obs_id = str(row.get("obs_id") or "")
        return {
            "did": did,
            "obs_id": obs_id,
            "target": row.get("target_name") or "",
            "date": date_of_mjd(row.get("t_min")),
            "livetime": _livetime(row.get("livetime") or row.get("t_exptime")),
            "zenith": _fmt(row.get("zen_pnt"), 1),
            "offset": _offset(row),
            "type": row.get("dataproduct_type") or "",
            "level": "" if row.get("calib_level") is None else str(row["calib_level"]),
            "collection": collection,
            "ra": _fmt(row.get("s_ra"), 3),
            "dec": _fmt(row.get("s_dec"), 3),
            "energy": (
                f"{_fmt(row.get('energy_min'), 2)}–{_fmt(row.get('energy_max'), 1)} TeV"
                if row.get("energy_min") is not None and row.get("energy_max") is not None
                else ""
            ),
            "format": row.get("access_format") or "",
            "size": row.get("access_estsize"),
            "tickable": obs_id in store and (row.get("dataproduct_type") == "event"),
            "mine": bool(job_id),
            "job_url": job_url,
            "download": "/ui/find/file?" + arg,
            "preview": "/ui/find/preview?" + arg,
            "provenance": (
                "/ui/find/provenance?" + arg if self.provenance_id({**row, **extra}) else ""
            ),
            "datalink": "/ui/find/links?" + arg,
            "datalink_raw": "/datalink?" + urlencode({"ID": did}),
        }

    def picker(self, user: User) -> tuple[list[ObsChoice | int], int]:
        """The obs_ids picker of the job forms: the store's observations this user may
        see, newest first, with target, date, livetime and zenith; how many more exist.

        Observations of the store the catalogue has no row for yet (a store filled
        behind the service's back) are offered as bare ids, as before the catalogue.
        """
        store = self.store_ids()
        if not store:
            return [], 0
        catalogue = self.catalogue
        page = catalogue.search(
            user,
            obs_collection=STORE_COLLECTION,
            dataproduct_type="event",
            order_by="t_min",
            descending=True,
            limit=PICKER_LIMIT,
        )
        choices: list[ObsChoice | int] = []
        for row in page.rows:
            obs_id = str(row.get("obs_id") or "")
            if obs_id not in store:
                continue
            choices.append(
                ObsChoice(
                    int(obs_id),
                    target=row.get("target_name") or "",
                    date=date_of_mjd(row.get("t_min")),
                    livetime=_livetime(row.get("livetime") or row.get("t_exptime")),
                    zenith=_fmt(row.get("zen_pnt"), 1),
                )
            )
        bare = self._uncatalogued(store)
        room = max(0, PICKER_LIMIT - len(choices))
        choices += bare[:room]
        more = max(0, page.total - len(page.rows)) + max(0, len(bare) - room)
        return choices, more

    def _uncatalogued(self, store: set[str]) -> list[int]:
        """Store observations without a catalogue row at all (newest id first): the
        store sync could not read them. One count when every observation has a row."""
        missing = self.catalogue.uncatalogued(store, STORE_COLLECTION)
        return sorted((int(i) for i in missing), reverse=True)

    def preview(self, row: dict[str, Any]) -> tuple[Path, str] | None:
        """The quick-look PNG DataLink's ``#preview`` serves (the product's own preview
        result, or one drawn from the events or the image); None when there is none.
        ``row`` is one the user may see (from :meth:`internal_row`)."""
        # the same image as DataLink's #preview (uws_server.vo.routes), not re-derived
        from uws_server.vo.routes import _preview_file

        path = _preview_file(self.service, row)
        return None if path is None else (path, "image/png")

    @staticmethod
    def provenance_id(row: dict[str, Any]) -> str | None:
        """The entity (else the job) whose provenance graph describes the data set; None
        for a file no job of this service recorded (e.g. a store filled by hand)."""
        return str(row.get("entity_id") or row.get("job_id") or "") or None

    def data_file(self, row: dict[str, Any]) -> Path | None:
        """The row's file, only where such files may lie (the store, the job's folder)."""
        from uws_server.vo.files import row_file

        return row_file(self.service.settings, row)

    def internal_row(self, user: User, did: str) -> dict[str, Any]:
        if not did:
            raise BadRequest("did: give the data set's obs_publisher_did")
        row = self.catalogue.get_internal(user, did)
        if row is None:
            raise NotFound(f"no data set {did[:200]!r} in the catalogue")
        return row


def _file(path: Path, mimetype: str, download: bool) -> Any:
    res = bottle.static_file(
        path.name, root=str(path.parent), mimetype=mimetype or "application/octet-stream"
    )
    if download and isinstance(res, HTTPResponse) and res.status_code == 200:
        res.set_header("Content-Disposition", f'attachment; filename="{path.name}"')
    return res


def register_find_routes(app: bottle.Bottle, web: WebApp) -> Finder:
    """Add the Find data pages; returns the :class:`Finder` (the job forms' picker)."""
    finder = Finder(web)
    service = web.service

    @app.get("/ui/find")
    @web.page()
    def find(ctx: Ctx) -> Any:
        q = parse_query(query_values())
        targets = finder.catalogue.target_names(ctx.user)
        resolve_target(q, targets)
        rows: list[dict[str, Any]] = []
        total = 0
        if not q.errors:
            rows, total = finder.search(ctx.user, q)
        pages = max(1, -(-total // q.per_page))
        return web.render(
            ctx,
            "find.tpl",
            400 if q.errors else 200,
            title="Find data",
            fq=q,
            rows=rows,
            total=total,
            pages=pages,
            targets=targets,
            collections=finder.collections(ctx.user),
            analyses=analyses(service.registry.all()),
            product_types=PRODUCT_TYPES,
            levels=[(v, LEVEL_NAMES[v]) for v in CALIB_LEVELS],
            page_sizes=PAGE_SIZES,
            tap=find_adql.tap_available(),
            adql=find_adql.example(q),
        )

    @app.get("/ui/find/analyse")
    @web.page()
    def analyse(ctx: Ctx) -> Any:
        name = str(query_values().get("jobname") or "")
        known = {a.name: a for a in analyses(service.registry.all())}
        if name not in known:
            names = ", ".join(known) or "none"
            raise BadRequest(
                f"'{name[:64]}' does not analyse observations (those that do: {names})"
            )
        ids = list(dict.fromkeys(str(v).strip() for v in query_values().getall("obs_id")))
        ids = [i for i in ids if i]
        if not ids:
            raise BadRequest("tick at least one observation to analyse")
        if len(ids) > MAX_ANALYSE:
            raise BadRequest(f"at most {MAX_ANALYSE} observations at once")
        bad = [i for i in ids if not i.isdigit()]
        if bad:
            raise BadRequest(f"obs_id: '{bad[0][:32]}' is not an observation id")
        visible = finder.catalogue.search(
            ctx.user,
            obs_ids=ids,
            obs_collection=STORE_COLLECTION,
            dataproduct_type="event",
            limit=MAX_ANALYSE,
        )
        unknown = sorted(set(ids) - {str(r["obs_id"]) for r in visible.rows})
        if unknown:  # not in the store, or not released to this user
            raise BadRequest(f"no observation {unknown[0][:32]} in the DL3 store for you")
        target = known[name]
        values = {OBS_IDS_PARAMETER: " ".join(ids)}
        for param, key, lo, hi in ((target.ra, "ra", 0, 360), (target.dec, "dec", -90, 90)):
            text = str(query_values().get(key) or "").strip()
            if param and text:
                try:
                    number = float(text)
                except ValueError:
                    raise BadRequest(f"{key}: '{text[:32]}' is not a number") from None
                if not lo <= number <= hi:
                    raise BadRequest(f"{key} must be from {lo} to {hi}, not {text[:32]}")
                values[param] = text
        return see_other(f"/ui/submit/{url_part(name)}?{urlencode(values)}")

    @app.get("/ui/find/file")
    @web.page()
    def data_file(ctx: Ctx) -> Any:
        row = finder.internal_row(ctx.user, str(query_values().get("did") or ""))
        path = finder.data_file(row)
        if path is None:
            raise NotFound(f"the file of {row['obs_publisher_did']} is not available")
        return _file(path, row.get("access_format") or "", True)

    @app.get("/ui/find/provenance")
    @web.page()
    def provenance(ctx: Ctx) -> Any:
        row = finder.internal_row(ctx.user, str(query_values().get("did") or ""))
        ident = finder.provenance_id(row)
        if not ident:
            raise NotFound(
                f"{row['obs_publisher_did']} has no recorded provenance "
                "(it was not made by a job of this service)"
            )
        query = [("ID", ident), ("DEPTH", "ALL"), ("RESPONSEFORMAT", "PROV-SVG")]
        body, media = service.provenance.provsap(ctx.user, query)
        return HTTPResponse(body, headers={"Content-Type": media})

    @app.get("/ui/find/preview")
    @web.page()
    def preview(ctx: Ctx) -> Any:
        row = finder.internal_row(ctx.user, str(query_values().get("did") or ""))
        found = finder.preview(row)
        if found is None:
            raise NotFound(f"no preview image for {row['obs_publisher_did']}")
        path, media = found
        return _file(path, media, False)

    @app.get("/ui/find/links")
    @web.page()
    def links(ctx: Ctx) -> Any:
        did = str(query_values().get("did") or "")
        row = finder.internal_row(ctx.user, did)
        view = finder.row_view(
            {**row, "distance": None},
            {"job_id": row.get("job_id"), "entity_id": row.get("entity_id")},
            finder.store_ids(),
        )
        return web.render(
            ctx,
            "find_links.tpl",
            title=f"Data set {row.get('obs_id') or did}",
            r=view,
            columns=[(c, row.get(c.name)) for c in OBSCORE_COLUMNS],
            has_preview=finder.preview(row) is not None,
            has_provenance=finder.provenance_id(row) is not None,
            analyses=analyses(service.registry.all()),
        )

    find_adql.register(app, web)
    return finder
