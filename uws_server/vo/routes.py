"""HTTP for finding data: ``/scs``, ``/datalink``, ``/vo/data|preview|irf``, VOSI.

Also where the catalogue is wired into the service: :func:`register_vo_routes` builds
the one :class:`VO` of a service (catalogue, store sync, product cataloguing), syncs the
DL3 store once, and adds the job-end hook that catalogues a job's products and picks
up the observations it added to the store. Other modules (TAP, the web page) get the
same objects through :func:`vo_for`.

Authentication is the API's: Bearer or Basic, optional — an anonymous caller sees the
released public rows.
"""

from __future__ import annotations

import logging
import mimetypes
import threading
import weakref
from pathlib import Path
from typing import Any
from urllib.parse import quote

import bottle
from bottle import HTTPResponse, request

from uws_server.common import can_read
from uws_server.models import Phase, User
from uws_server.request_guard import RouteRule, rules_of
from uws_server.served_files import file_headers
from uws_server.service import UWSService
from uws_server.vo import datalink, files, scs
from uws_server.vo.ingest import ProductCatalogue, StoreSync, _entity_of
from uws_server.vo.obscore import Catalogue
from uws_server.vo.votable_out import VOTABLE_MEDIA_TYPE, xml_escape

log = logging.getLogger("uws_server.vo")

MAX_DATALINK_IDS = 50
QUERY_BODY = 64 * 1024


class VO:
    """The catalogue of one service and what keeps it in step."""

    def __init__(self, service: UWSService) -> None:
        self.service = service
        self.settings = service.settings
        self.catalogue = Catalogue(service.store)
        self.store_sync = StoreSync(self.settings, self.catalogue)
        self.products = ProductCatalogue(
            self.settings,
            self.catalogue,
            self.store_sync,
            service.definition,
            service.job_dir,
        )

    def job_ended(self, job_id: str) -> None:
        """Final hook: the store may have grown; the job's data sets become rows.

        A job whose definition catalogues nothing costs a ``stat`` and a job read: no
        write (deleted jobs take their rows with them through the foreign key).
        """
        self.store_sync.ensure_current()
        job = self.service.store.get_job(job_id)
        if job is None:
            return
        try:
            defn = self.service.definition(job.jobname)
        except Exception:  # the definition is gone: nothing says what to catalogue
            return
        if any(e.dataproduct_type for e in defn.generated):
            self.products.add_job(job)

    def reader(self) -> Catalogue:
        """The catalogue, after noticing a store changed behind the service's back."""
        try:
            self.store_sync.ensure_current()
        except Exception:  # a broken store must not break searches of what is there
            log.exception("DL3 store sync failed")
        return self.catalogue


_VOS: weakref.WeakKeyDictionary[UWSService, VO] = weakref.WeakKeyDictionary()


def vo_for(service: UWSService) -> VO:
    """The service's :class:`VO` (made on first use)."""
    vo = _VOS.get(service)
    if vo is None:
        vo = _VOS[service] = VO(service)
    return vo


def catalogue_for(service: UWSService) -> Catalogue:
    """The service's catalogue, synced with the DL3 store (for TAP and the web page)."""
    return vo_for(service).reader()


def _base(service: UWSService) -> str:
    if service.settings.base_url:
        return service.settings.base_url.rstrip("/")
    env = request.environ
    host = env.get("HTTP_HOST") or f"{env['SERVER_NAME']}:{env['SERVER_PORT']}"
    return f"{env.get('wsgi.url_scheme', 'http')}://{host}{env.get('SCRIPT_NAME', '').rstrip('/')}"


def _votable(body: str, status: int = 200, media: str = VOTABLE_MEDIA_TYPE) -> HTTPResponse:
    return HTTPResponse(body.encode(), status=status, headers={"Content-Type": media})


def register_vo_routes(app: bottle.Bottle, service: UWSService) -> None:
    vo = vo_for(service)
    settings = service.settings
    # Cone searches and DataLink requests are a few parameters: bodies stay small.
    for prefix in ("/scs", "/datalink", "/vo/"):
        rules_of(app).add(RouteRule(prefix, max_body=QUERY_BODY))
    if vo.job_ended not in service.lifecycle.final_hooks:
        service.lifecycle.final_hooks.append(vo.job_ended)
    # The first sync reads every new observation's headers: in the background, so that
    # a large store does not delay the start; a search meanwhile waits for it.
    threading.Thread(target=_first_sync, args=(vo,), name="vo-store-sync", daemon=True).start()

    def user() -> User:
        return service.auth.authenticate(request.get_header("Authorization"), required=False)

    # ------------------------------------------------------------------ cone search
    def params() -> list[tuple[str, str]]:
        """Query and, for a POST, form parameters (DALI: both methods)."""
        pairs = list(request.query.allitems())
        if request.method == "POST":
            pairs += list(request.forms.allitems())
        return pairs

    @app.route("/scs", method=["GET", "POST"])
    def cone() -> HTTPResponse:
        caller = user()
        try:
            body = scs.cone_search(vo.reader(), caller, dict(params()))
        except scs.ConeError as exc:
            return _votable(scs.error_document(str(exc)), 400)
        return _votable(body)

    # ------------------------------------------------------------------ DataLink
    @app.route("/datalink", method=["GET", "POST"])
    @app.route("/datalink/links", method=["GET", "POST"])
    def links() -> HTTPResponse:
        caller = user()
        pairs = params()
        ids = [v for k, v in pairs if k.upper() == "ID"]
        formats = [v.strip().lower() for k, v in pairs if k.upper() == "RESPONSEFORMAT"]
        if any(f not in datalink.RESPONSE_FORMATS for f in formats):
            return _votable(
                datalink.error_document(
                    "UsageFault: RESPONSEFORMAT must be a VOTable "
                    f"({', '.join(sorted(datalink.RESPONSE_FORMATS))})"
                ),
                400,
            )
        if not ids:
            return _votable(datalink.error_document("UsageFault: parameter ID is required"), 400)
        if len(ids) > MAX_DATALINK_IDS:
            return _votable(
                datalink.error_document(f"UsageFault: at most {MAX_DATALINK_IDS} IDs at once"), 400
            )
        base = _base(service)
        rows: list[datalink.Link] = []
        descriptors: dict[str, str] = {}
        catalogue = vo.reader()
        for did in ids:
            row = catalogue.get_internal(caller, did)
            if row is None:
                rows.append(datalink.not_found(did))
                continue
            rows.extend(_links_of(service, caller, row, base, descriptors))
        body = datalink.links_document(rows, list(descriptors.values()))
        return _votable(body, media=datalink.DATALINK_MEDIA_TYPE)

    # ------------------------------------------------------------------ files
    def visible_row(caller: User) -> dict[str, Any]:
        did = request.query.get("ID") or ""
        row = vo.reader().get_internal(caller, did) if did else None
        if row is None:
            raise HTTPResponse(
                f"no data set {did[:200]!r} visible to you\n",
                status=404,
                headers={"Content-Type": "text/plain; charset=utf-8"},
            )
        return row

    def send(path: Path, media: str, download_name: str | None = None) -> Any:
        """The file with the headers every served job file gets (served_files): a
        product a script wrote must never act as a page of the service."""
        answer = bottle.static_file(
            path.name, root=str(path.parent), mimetype=media, download=download_name or False
        )
        for name, value in file_headers(media).items():
            if name == "Content-Disposition" and answer.get_header(name):
                continue  # already a download, with its file name
            answer.set_header(name, value)
        return answer

    def gone(what: str) -> HTTPResponse:
        return HTTPResponse(
            f"{what} is no longer available\n",
            status=404,
            headers={"Content-Type": "text/plain; charset=utf-8"},
        )

    @app.get("/vo/data")
    def data() -> Any:
        row = visible_row(user())
        path = files.row_file(settings, row)
        if path is None:
            return gone("the file of this data set")
        media = row.get("access_format") or mimetypes.guess_type(path.name)[0]
        return send(path, media or "application/octet-stream", path.name)

    @app.get("/vo/preview")
    def preview() -> Any:
        row = visible_row(user())
        path = _preview_file(service, row)
        if path is None:
            return gone("a preview of this data set")
        return send(path, "image/png")

    @app.get("/vo/irf")
    def irf() -> Any:
        row = visible_row(user())
        path = files.row_file(settings, row)
        if path is None or row.get("dataproduct_type") != "event" or not row.get("irf_name"):
            return gone("the IRFs of this data set")
        try:
            out = files.irf_extract(settings, path)
        except (OSError, ValueError):
            return gone("the IRFs of this data set")
        return send(out, "application/fits", f"irf_{row['obs_id']}.fits")

    # ------------------------------------------------------------------ VOSI
    @app.get("/capabilities")
    def capabilities() -> HTTPResponse:
        body = _capabilities(service, _base(service))
        return HTTPResponse(body.encode(), headers={"Content-Type": "application/xml"})

    @app.get("/availability")
    def availability() -> HTTPResponse:
        ok, note = True, "service is accepting queries"
        try:
            service.store.ping()
        except Exception as exc:  # the database is what "available" depends on
            ok, note = False, f"database unavailable: {type(exc).__name__}"
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<vosi:availability xmlns:vosi="http://www.ivoa.net/xml/VOSIAvailability/v1.0">\n'
            f"  <vosi:available>{'true' if ok else 'false'}</vosi:available>\n"
            f"  <vosi:note>{xml_escape(note)}</vosi:note>\n"
            "</vosi:availability>\n"
        )
        return HTTPResponse(body.encode(), headers={"Content-Type": "application/xml"})


def _first_sync(vo: VO) -> None:
    try:
        vo.store_sync.sync()
    except Exception:
        log.exception("DL3 store sync at start failed; retried on the next search")


# ---------------------------------------------------------------------- DataLink rows


def _links_of(
    service: UWSService,
    caller: User,
    row: dict[str, Any],
    base: str,
    descriptors: dict[str, str],
) -> list[datalink.Link]:
    settings = service.settings
    did = row["obs_publisher_did"]
    q = quote(did, safe="")
    path = files.row_file(settings, row)
    out: list[datalink.Link] = []
    if path is None:
        out.append(
            datalink.Link(id=did, semantics="#this", error_message="NotFoundFault: file gone")
        )
        return out
    out.append(
        datalink.Link(
            id=did,
            access_url=f"{base}/vo/data?ID={q}",
            semantics="#this",
            description=f"{row.get('dataproduct_type')} data set {row.get('obs_id')}",
            content_type=row.get("access_format"),
            content_length=path.stat().st_size,
        )
    )
    if row.get("dataproduct_type") in ("event", "image", "cube") or _sibling_preview(service, row):
        out.append(
            datalink.Link(
                id=did,
                access_url=f"{base}/vo/preview?ID={q}",
                semantics="#preview",
                description="Quick-look image (PNG)",
                content_type="image/png",
            )
        )
    job = service.store.get_job(row["job_id"]) if row.get("job_id") else None
    if job is None and row.get("entity_id"):  # a store file: the job that added it
        entity = service.store.get_entity(row["entity_id"])
        if entity is not None and entity.job_id:
            job = service.store.get_job(entity.job_id)
    if row.get("dataproduct_type") == "event" and row.get("irf_name"):
        out.append(
            datalink.Link(
                id=did,
                access_url=f"{base}/vo/irf?ID={q}",
                semantics="#auxiliary",
                description="Instrument response functions of this observation "
                "(effective area, energy dispersion, PSF, background)",
                content_type="application/fits",
                content_qualifier="irf",
                local_semantics="irf",
            )
        )
    if job is not None and can_read(caller, job.owner):
        job_url = f"{base}/rest/{quote(job.jobname)}/{job.job_id}"
        own = Path(path).name
        for result in job.results if row.get("job_id") else ():
            if Path(result.path).name == own:
                continue
            out.append(
                datalink.Link(
                    id=did,
                    access_url=f"{job_url}/results/{quote(result.name)}",
                    semantics="#auxiliary",
                    description=f"Another result of the same job: {result.name}",
                    content_type=result.content_type,
                    content_length=result.size,
                    local_semantics="sibling",
                )
            )
        out.append(
            datalink.Link(
                id=did,
                access_url=job_url,
                semantics="#documentation",
                description=f"The UWS job that generated this data set ({job.jobname})",
                content_type="text/xml",
                local_semantics="uws-job",
            )
        )
    entity_id = row.get("entity_id")
    # The provenance of a store file is the job that added it: shown to whoever may see
    # that job (a product's is its owner's, like the row).
    if entity_id and job is not None and can_read(caller, job.owner):
        out.append(
            datalink.Link(
                id=did,
                access_url=f"{base}/provsap?ID={quote(entity_id, safe='')}&DIRECTION=BACK"
                "&RESPONSEFORMAT=PROV-JSON",
                semantics="#progenitor",
                description="Provenance of this data set (ProvSAP, back to its progenitors)",
                content_type="application/json",
            )
        )
    if row.get("dataproduct_type") == "event" and row.get("job_id") is None:
        obs_id = str(row.get("obs_id") or "")
        for name in service.registry.names():
            try:  # the shared object (no copy on this path), read only
                defn = service.registry.get_shared(name)
            except Exception:  # removed since names() was read
                continue
            if not datalink.accepts_datasets(defn):
                continue
            sid = datalink.descriptor_id(defn)
            if sid not in descriptors:
                descriptors[sid] = datalink.service_descriptor(defn, base, {"obs_ids": obs_id})
            out.append(
                datalink.Link(
                    id=did,
                    service_def=sid,
                    semantics="#proc",
                    description=f"Run {defn.name} on this observation: {defn.description}",
                    content_type="application/x-votable+xml",
                )
            )
    return out


def _sibling_preview(service: UWSService, row: dict[str, Any]) -> Path | None:
    """A product's own PNG quick-look, named by its definition's ``preview``."""
    if not row.get("job_id"):
        return None
    job = service.store.get_job(row["job_id"])
    if job is None or job.phase != Phase.COMPLETED:
        return None
    try:
        defn = service.definition(job.jobname)
    except Exception:
        return None
    own = Path(str(row.get("file_path") or "")).name
    entity = next(
        (
            _entity_of(defn, r)
            for r in job.results
            if Path(r.path).name == own and _entity_of(defn, r) is not None
        ),
        None,
    )
    if entity is None or not entity.preview:
        return None
    for r in job.results:
        if r.name == entity.preview:
            candidate = dict(row, file_path=str(service.job_dir(job.job_id) / r.path))
            return files.row_file(service.settings, candidate)
    return None


def _preview_file(service: UWSService, row: dict[str, Any]) -> Path | None:
    path = files.row_file(service.settings, row)
    if path is None:
        return None
    sibling = _sibling_preview(service, row)
    if sibling is not None:
        return sibling
    title = f"{row.get('obs_collection')} {row.get('obs_id')} {row.get('target_name') or ''}"
    kind = row.get("dataproduct_type")
    try:
        if kind == "event":
            return files.events_preview(service.settings, path, title.strip())
        if kind in ("image", "cube"):
            return files.image_preview(service.settings, path, title.strip())
    except (OSError, KeyError, ValueError, StopIteration) as exc:
        log.warning("no preview for %s: %s", row.get("obs_publisher_did"), exc)
    return None


# ---------------------------------------------------------------------- VOSI


def _capabilities(service: UWSService, base: str) -> str:
    def cap(standard: str, url: str, use: str = "base", extra: str = "", xtype: str = "") -> str:
        typ = f' xsi:type="{xtype}"' if xtype else ""
        return (
            f'  <capability standardID="{standard}"{typ}>\n'
            f'    <interface xsi:type="vs:ParamHTTP" role="std">\n'
            f'      <accessURL use="{use}">{xml_escape(url)}</accessURL>\n'
            f"    </interface>\n{extra}  </capability>\n"
        )

    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<vosi:capabilities xmlns:vosi="http://www.ivoa.net/xml/VOSICapabilities/v1.0"\n'
        '    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"\n'
        '    xmlns:vr="http://www.ivoa.net/xml/VOResource/v1.0"\n'
        '    xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1"\n'
        '    xmlns:cs="http://www.ivoa.net/xml/ConeSearch/v1.0"\n'
        '    xmlns:tr="http://www.ivoa.net/xml/TAPRegExt/v1.0">\n',
        cap("ivo://ivoa.net/std/VOSI#capabilities", f"{base}/capabilities", "full"),
        cap("ivo://ivoa.net/std/VOSI#availability", f"{base}/availability", "full"),
        cap("ivo://ivoa.net/std/TAP", f"{base}/tap", xtype="tr:TableAccess"),
        cap(
            scs.SCS_STANDARD,
            f"{base}/scs?",
            xtype="cs:ConeSearch",
            extra=(
                f"    <maxSR>{scs.MAX_SR:g}</maxSR>\n"
                f"    <maxRecords>{scs.MAX_RECORDS}</maxRecords>\n"
                "    <verbosity>true</verbosity>\n"
                "    <testQuery><ra>329.717</ra><dec>-30.226</dec><sr>1</sr></testQuery>\n"
            ),
        ),
        cap(datalink.DATALINK_STANDARD, f"{base}/datalink"),
        cap("ivo://ivoa.net/std/ProvSAP", f"{base}/provsap"),
    ]
    for name in service.registry.names():
        parts.append(cap("ivo://ivoa.net/std/UWS#rest-1.1", f"{base}/rest/{quote(name)}", "full"))
    parts.append("</vosi:capabilities>\n")
    return "".join(parts)
