"""TAP 1.1 at ``/tap``: sync, async (UWS), tables, capabilities, availability.

HTTP only: the query rules live in :mod:`adql` and :mod:`tap_query`, the async jobs in
:mod:`tap_async`, the documents in :mod:`tap_schema` and :mod:`tap_votable`. Anyone may
query (anonymous callers see the released public rows; a signed-in user also their own
products), as TAP clients and validators connect without credentials. A query this
service refuses is a 400 with the TAP error VOTable saying why.
"""

from __future__ import annotations

import logging
import secrets
from xml.sax.saxutils import escape

import bottle
from bottle import HTTPResponse, request, response

from uws_server import uws_xml
from uws_server.errors import BadRequest, Conflict, UWSError
from uws_server.handlers import form_pairs, form_value, wait_request
from uws_server.models import Job, Phase, User
from uws_server.service import UWSService
from uws_server.uws_xml import iso
from uws_server.vo.adql import ADQLError
from uws_server.vo.routes import catalogue_for
from uws_server.vo.tap_async import (
    TAP_JOBNAME,
    TapJobs,
    check_request,
    query_user,
    tap_parameters,
)
from uws_server.vo.tap_query import QueryExecutor
from uws_server.vo.tap_schema import tableset_xml
from uws_server.vo.tap_votable import OUTPUT_FORMATS, error_votable, render

JOB = "/tap/async/<job_id:re:[A-Za-z0-9_-]{1,64}>"
XML = "application/xml; charset=utf-8"
TEXT = "text/plain; charset=utf-8"
VOTABLE_MIME = "application/x-votable+xml"
log = logging.getLogger("uws_server.tap")
GEOMETRY_FEATURES = (
    "POINT",
    "CIRCLE",
    "BOX",
    "POLYGON",
    "CONTAINS",
    "INTERSECTS",
    "DISTANCE",
    "AREA",
)


def _error(message: str, status: int = 400) -> HTTPResponse:
    return HTTPResponse(
        error_votable(message), status=status, headers={"Content-Type": VOTABLE_MIME}
    )


def capabilities_xml(base: str, settings) -> str:  # noqa: ANN001 - Settings
    """VOSI capabilities of the TAP service, with its TAPRegExt description."""
    features = "".join(f"<feature><form>{f}</form></feature>" for f in GEOMETRY_FEATURES)
    formats = "".join(
        "<outputFormat"
        + (f' ivo-id="{ivo}"' if ivo else "")
        + f"><mime>{mime}</mime>"
        + "".join(f"<alias>{a}</alias>" for a in aliases)
        + "</outputFormat>"
        for mime, aliases, ivo in OUTPUT_FORMATS
    )
    tap = escape(f"{base}/tap")
    vosi = "".join(
        f'<capability standardID="ivo://ivoa.net/std/VOSI#{name}">'
        f'<interface xsi:type="vs:ParamHTTP"><accessURL use="full">{tap}/{name}</accessURL>'
        "</interface></capability>"
        for name in ("capabilities", "availability", "tables")
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<vosi:capabilities xmlns:vosi="http://www.ivoa.net/xml/VOSICapabilities/v1.0" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xmlns:vr="http://www.ivoa.net/xml/VOResource/v1.0" '
        'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" '
        'xmlns:tr="http://www.ivoa.net/xml/TAPRegExt/v1.0">'
        '<capability standardID="ivo://ivoa.net/std/TAP" xsi:type="tr:TableAccess">'
        '<interface xsi:type="vs:ParamHTTP" role="std" version="1.1">'
        f'<accessURL use="base">{tap}</accessURL></interface>'
        '<dataModel ivo-id="ivo://ivoa.net/std/ObsCore#core-1.1">ObsCore-1.1</dataModel>'
        "<language><name>ADQL</name>"
        '<version ivo-id="ivo://ivoa.net/std/ADQL#v2.0">2.0</version>'
        '<version ivo-id="ivo://ivoa.net/std/ADQL#v2.1">2.1</version>'
        "<description>ADQL through queryparser-python3; geometry on pgSphere "
        "(PostgreSQL) or registered functions (SQLite)</description>"
        '<languageFeatures type="ivo://ivoa.net/std/TAPRegExt#features-adqlgeo">'
        f"{features}</languageFeatures></language>"
        f"{formats}"
        "<retentionPeriod>"
        f"<default>{int(settings.default_destruction)}</default>"
        f"<hard>{int(settings.default_destruction)}</hard></retentionPeriod>"
        "<executionDuration>"
        f"<default>{int(settings.tap_async_timeout)}</default>"
        f"<hard>{int(settings.tap_async_timeout)}</hard></executionDuration>"
        f'<outputLimit><default unit="row">{settings.tap_maxrec_default}</default>'
        f'<hard unit="row">{settings.tap_maxrec_hard}</hard></outputLimit>'
        "</capability>"
        f"{vosi}"
        "</vosi:capabilities>\n"
    )


def availability_xml(available: bool, note: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<vosi:availability xmlns:vosi="http://www.ivoa.net/xml/VOSIAvailability/v1.0">'
        f"<vosi:available>{'true' if available else 'false'}</vosi:available>"
        f"<vosi:note>{escape(note)}</vosi:note></vosi:availability>\n"
    )


def register_tap_routes(app: bottle.Bottle, service: UWSService) -> TapJobs:
    settings = service.settings
    executor = QueryExecutor(service.store.engine)
    # Each query first lets the catalogue notice a DL3 store changed behind the service's
    # back (a stat when nothing did), as every other reader of the catalogue does.
    jobs = TapJobs(
        service,
        executor,
        workers=max(1, settings.local_slots),
        prepare=lambda: catalogue_for(service),
    )

    def user() -> User:
        return service.auth.authenticate(request.get_header("Authorization"), required=False)

    def base() -> str:
        if settings.base_url:
            return settings.base_url.rstrip("/")
        env = request.environ
        host = env.get("HTTP_HOST") or f"{env['SERVER_NAME']}:{env['SERVER_PORT']}"
        script = env.get("SCRIPT_NAME", "").rstrip("/")
        return f"{env.get('wsgi.url_scheme', 'http')}://{host}{script}"

    def job_url(job_id: str) -> str:
        return f"{base()}/tap/async/{job_id}"

    def uws_document(render_doc, job_or_refs) -> str:  # noqa: ANN001
        """uws_xml's documents name jobs /rest/<list>/<id>: rendered with a one-off
        base and pointed at /tap/async (the base cannot occur in the job's values)."""
        marker = f"urn:tap-{secrets.token_hex(8)}"
        doc = render_doc(job_or_refs, marker)
        return doc.replace(f"{marker}/rest/{TAP_JOBNAME}", f"{base()}/tap/async")

    def visible(job_id: str) -> Job:
        return service.visible_job(user(), TAP_JOBNAME, job_id)

    def see_other(url: str) -> HTTPResponse:
        return HTTPResponse(status=303, headers={"Location": url})

    def plain(value: object) -> str:
        response.content_type = TEXT
        return "" if value is None else str(value)

    # ------------------------------------------------------------------ sync
    @app.route("/tap/sync", method=["GET", "POST"])
    def sync() -> HTTPResponse:
        try:
            u = user()
            req = check_request(
                tap_parameters(form_pairs()), settings.tap_maxrec_default, settings.tap_maxrec_hard
            )
            catalogue_for(service)
            result = executor.run(req.query, query_user(u), req.maxrec, settings.tap_sync_timeout)
        except ADQLError as exc:
            log.info("tap sync query refused: %s (%r)", exc, request.params.get("QUERY", "")[:200])
            return _error(str(exc))
        except UWSError as exc:
            return _error(exc.message, exc.status if 400 <= exc.status < 500 else 400)
        body = render(req.format, result.fields, result.rows, result.overflow)
        ctype = req.format.mime + ("; charset=utf-8" if req.format.name in ("csv", "tsv") else "")
        return HTTPResponse(body, status=200, headers={"Content-Type": ctype})

    # ------------------------------------------------------------ VOSI, index
    @app.get("/tap")
    def index() -> str:
        response.content_type = TEXT
        return (
            "TAP 1.1 service: /tap/sync, /tap/async, /tap/tables, /tap/capabilities, "
            "/tap/availability\n"
        )

    @app.get("/tap/tables")
    def tables() -> str:
        response.content_type = XML
        return tableset_xml()

    @app.get("/tap/capabilities")
    def capabilities() -> str:
        response.content_type = XML
        return capabilities_xml(base(), settings)

    @app.get("/tap/availability")
    def availability() -> str:
        response.content_type = XML
        return availability_xml(*executor.available())

    # ------------------------------------------------------------------ async
    @app.get("/tap/async")
    def list_jobs() -> str:
        u = user()
        query = service.parse_list_query([(k.upper(), v) for k, v in request.query.allitems()])
        refs = service.store.jobs_visible_to(u, TAP_JOBNAME, query.phases, query.after, query.last)
        response.content_type = XML
        return uws_document(lambda r, b: uws_xml.jobs_document(r, b, TAP_JOBNAME), refs)

    @app.post("/tap/async")
    def create_job() -> HTTPResponse:
        job = jobs.create(user(), form_pairs())
        return see_other(job_url(job.job_id))

    @app.get(JOB)
    def get_job(job_id: str) -> str:
        u = user()
        waiting = wait_request()
        if waiting is not None:
            job = service.wait(u, TAP_JOBNAME, job_id, *waiting)
        else:
            job = service.visible_job(u, TAP_JOBNAME, job_id)
        response.content_type = XML
        return uws_document(uws_xml.job_document, job)

    def change_phase(job_id: str, value: str) -> None:
        u = user()
        action = value.strip().upper()
        if action == "RUN":
            jobs.start(service.visible_job(u, TAP_JOBNAME, job_id))
            return
        if action == "ABORT":
            service.visible_job(u, TAP_JOBNAME, job_id)
            jobs.stop_query(job_id)
        service.change_phase(u, TAP_JOBNAME, job_id, value)

    def delete(job_id: str) -> HTTPResponse:
        u = user()
        service.visible_job(u, TAP_JOBNAME, job_id)
        jobs.stop_query(job_id)
        service.delete_job(u, TAP_JOBNAME, job_id)
        return see_other(f"{base()}/tap/async")

    @app.delete(JOB)
    def delete_job(job_id: str) -> HTTPResponse:
        return delete(job_id)

    @app.post(JOB)
    def post_job(job_id: str) -> HTTPResponse:
        values = {k.upper(): v for k, v in form_pairs()}
        if values.get("ACTION", "").upper() == "DELETE":
            return delete(job_id)
        if "PHASE" in values:
            change_phase(job_id, values["PHASE"])
            return see_other(job_url(job_id))
        raise BadRequest("POST to a job takes ACTION=DELETE or PHASE=RUN|ABORT")

    @app.get(f"{JOB}/phase")
    def get_phase(job_id: str) -> str:
        return plain(visible(job_id).phase.value)

    @app.post(f"{JOB}/phase")
    def post_phase(job_id: str) -> HTTPResponse:
        change_phase(job_id, form_value("PHASE"))
        return see_other(job_url(job_id))

    @app.get(f"{JOB}/executionduration")
    def get_duration(job_id: str) -> str:
        return plain(visible(job_id).execution_duration)

    @app.post(f"{JOB}/executionduration")
    def post_duration(job_id: str) -> HTTPResponse:
        value = form_value("EXECUTIONDURATION")
        try:
            seconds = int(value)
        except ValueError:
            raise BadRequest(f"EXECUTIONDURATION: '{value[:32]}' is not an integer") from None
        limit = int(settings.tap_async_timeout)
        seconds = limit if seconds <= 0 or seconds > limit else seconds
        job = visible(job_id)
        if not service.store.set_execution_duration(job.job_id, seconds):
            raise Conflict("executionDuration can only be changed while the job is PENDING")
        service.notifier.notify(job_id)
        return see_other(job_url(job_id))

    @app.get(f"{JOB}/destruction")
    def get_destruction(job_id: str) -> str:
        return plain(iso(visible(job_id).destruction_time))

    @app.post(f"{JOB}/destruction")
    def post_destruction(job_id: str) -> HTTPResponse:
        service.set_destruction(user(), TAP_JOBNAME, job_id, form_value("DESTRUCTION"))
        return see_other(job_url(job_id))

    @app.get(f"{JOB}/error")
    def get_error(job_id: str):  # type: ignore[no-untyped-def]
        job = visible(job_id)
        if not job.error_summary:
            return plain("")
        response.content_type = VOTABLE_MIME
        return error_votable(job.error_summary)

    @app.get(f"{JOB}/quote")
    def get_quote(job_id: str) -> str:
        return plain(iso(visible(job_id).quote))

    @app.get(f"{JOB}/owner")
    def get_owner(job_id: str) -> str:
        return plain(visible(job_id).owner)

    @app.get(f"{JOB}/parameters")
    def get_parameters(job_id: str) -> str:
        response.content_type = XML
        return uws_document(uws_xml.parameters_document, visible(job_id))

    @app.post(f"{JOB}/parameters")
    def post_parameters(job_id: str) -> HTTPResponse:
        job = visible(job_id)
        if job.phase != Phase.PENDING:
            raise Conflict(
                f"parameters can only be changed while the job is PENDING (it is {job.phase.value})"
            )
        jobs.update(job, form_pairs())
        return see_other(job_url(job_id))

    @app.get(f"{JOB}/parameters/<name>")
    def get_parameter(job_id: str, name: str) -> str:
        job = visible(job_id)
        key = name.upper()
        if key not in job.parameters:
            raise BadRequest(f"job {job_id} has no parameter '{name[:64]}'")
        return plain(job.parameters[key])

    @app.get(f"{JOB}/results")
    def get_results(job_id: str) -> str:
        response.content_type = XML
        return uws_document(uws_xml.results_document, visible(job_id))

    @app.get(f"{JOB}/results/<name>")
    def get_result(job_id: str, name: str):  # type: ignore[no-untyped-def]
        path, ctype = service.result_file(user(), TAP_JOBNAME, job_id, name)
        return bottle.static_file(path.name, root=str(path.parent), mimetype=ctype)

    app.config["uws.tap_jobs"] = jobs
    return jobs
