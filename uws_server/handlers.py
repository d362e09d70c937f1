"""The ``/rest`` UWS 1.1 resource tree and the worker callback (HTTP only).

Each handler reads the request, calls one service method and shapes the response.
The rules live in :mod:`uws_server.service`; errors are raised, never built here.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import bottle
from bottle import HTTPResponse, request, response

from uws_server import direct, uws_xml
from uws_server.auth import tokens_match
from uws_server.common import can_read
from uws_server.errors import BadRequest, Forbidden
from uws_server.models import Job, User
from uws_server.request_guard import RouteRule, rules_of
from uws_server.service import UWSService
from uws_server.uws_xml import iso
from uws_server.waiters import Deliver
from uws_server.worker_events import event_from_json

JOBNAME = "<jobname:re:[A-Za-z][A-Za-z0-9_-]{0,63}>"
JOB = JOBNAME + "/<job_id:re:[A-Za-z0-9_-]{1,64}>"
XML = "application/xml; charset=utf-8"
TEXT = "text/plain; charset=utf-8"
NAMELESS_PART = (
    "every part of a multipart body needs a name (Content-Disposition: form-data; name=...)"
)
CALLBACK = "/callback/"
CALLBACK_BODY = 1 << 20  # a worker event: a phase, a message and the result list
# The largest integer the databases store (SQLite and PostgreSQL BIGINT): a number in a
# query beyond it is the client's error, not the database's.
MAX_INT = (1 << 63) - 1


def _utf8(value: str) -> str:
    """Bottle hands form values over as latin-1 decoded text; recode to UTF-8."""
    if value.isascii():  # the same text either way: skip the round trip
        return value
    try:
        return value.encode("latin1").decode("utf-8")
    except UnicodeEncodeError:
        return value  # already real text
    except UnicodeDecodeError:
        raise BadRequest("request values must be UTF-8") from None


def form_pairs(include_query: bool = True) -> list[tuple[str, str]]:
    """All (name, value) pairs of the query string and the form body, in order.

    Bottle decodes a query string and a urlencoded body as latin-1 (recoded here), but
    the fields of a multipart body as UTF-8 already: recoding those again refused any
    text with an accented letter ("é" is latin-1 encodable, its bytes not UTF-8).
    """
    try:
        pairs = list(request.query.allitems()) if include_query else []
        body = list(request.forms.allitems())
    except (ValueError, IndexError, KeyError) as exc:
        raise BadRequest(f"malformed request body: {exc}") from None
    if not _is_multipart():
        pairs += body
        body = []
    elif any(not isinstance(k, str) for k, _ in body):
        raise BadRequest(NAMELESS_PART)
    return [(_utf8(k), _utf8(v)) for k, v in pairs] + body


def _is_multipart() -> bool:
    return request.content_type.startswith("multipart/")


def form_value(name: str) -> str:
    """One control value (any letter case), from the body or the query string."""
    for key, value in form_pairs():
        if key.upper() == name:
            return value
    raise BadRequest(f"missing parameter {name}")


def uploads() -> dict[str, object]:
    if not _is_multipart():
        return {}  # only a multipart body carries files: no need to walk the form again
    try:
        files = dict(request.files.allitems())  # names decoded as UTF-8 by bottle
    except (ValueError, IndexError, KeyError) as exc:
        raise BadRequest(f"malformed multipart body: {exc}") from None
    if any(not isinstance(name, str) for name in files):
        raise BadRequest(NAMELESS_PART)
    return files


def wait_request() -> tuple[int, str | None] | None:
    """A blocking WAIT's ``(seconds, PHASE)`` from the query string (either letter
    case), or None when the request has no WAIT: the one reading of UWS 1.1's WAIT for
    ``/rest`` and ``/tap/async`` alike (a negative value is the longest wait the service
    allows; the service applies the limit)."""
    wait = request.query.get("WAIT") or request.query.get("wait")
    if wait is None:
        return None
    try:
        seconds = int(wait)
    except ValueError:
        raise BadRequest(f"WAIT: '{wait[:32]}' is not an integer") from None
    return seconds, request.query.get("PHASE") or request.query.get("phase")


def see_other(url: str) -> HTTPResponse:
    return HTTPResponse(status=303, headers={"Location": url})


def text(value: object) -> str:
    response.content_type = TEXT
    return "" if value is None else str(value)


def register_uws_routes(app: bottle.Bottle, service: UWSService) -> None:
    settings = service.settings
    documents = uws_xml.DocumentCache(job_info=service.lifecycle.progress.job_info)

    def user() -> User:
        return service.auth.authenticate(request.get_header("Authorization"))

    def base() -> str:
        if settings.base_url:
            return settings.base_url.rstrip("/")
        # Straight from the WSGI environ: bottle's urlparts costs a urljoin per request.
        env = request.environ
        host = env.get("HTTP_HOST") or f"{env['SERVER_NAME']}:{env['SERVER_PORT']}"
        script = env.get("SCRIPT_NAME", "").rstrip("/")
        return f"{env.get('wsgi.url_scheme', 'http')}://{host}{script}"

    def job_url(jobname: str, job_id: str) -> str:
        return f"{base()}/rest/{jobname}/{job_id}"

    @app.get("/rest")
    def job_lists() -> dict:
        return {"job_lists": [f"{base()}/rest/{n}" for n in service.registry.names()]}

    @app.get(f"/rest/{JOBNAME}")
    def list_jobs(jobname: str) -> str:
        u = user()
        pairs = [(k.upper(), v) for k, v in request.query.allitems()]
        for key, value in pairs:
            if key == "LAST":
                check_int("LAST", value)
        query = service.parse_list_query(pairs)
        refs = service.list_jobs(u, jobname, query)
        response.content_type = XML
        return uws_xml.jobs_document(refs, base(), jobname)

    @app.post(f"/rest/{JOBNAME}")
    def create_job(jobname: str) -> str:
        # The caller first: 401/403 before anything of the body is read.
        u = user()
        pairs, files = form_pairs(), uploads()
        job = service.create_job(u, jobname, pairs, files)
        # The same answer as see_other(), set on bottle's response rather than built as
        # a second response object that bottle then copies over.
        response.status = 303
        response["Location"] = job_url(jobname, job.job_id)
        return ""

    @app.get(f"/rest/{JOB}")
    def get_job(jobname: str, job_id: str) -> str:
        u = user()
        waiting = wait_request()
        if waiting is not None:
            seconds, phase = waiting
            answer = direct.direct_answer(request.method)
            listen = (
                contextlib.nullcontext()
                if answer is None
                else service.notifier.listening(job_id, _deliverer(answer, base(), u, jobname))
            )
            try:
                with listen:
                    done = None if answer is None else (lambda: answer.answered)
                    job = service.wait(u, jobname, job_id, seconds, phase, done)
            finally:
                answered = answer is not None and answer.settle()
            if answered:  # sent by the notifier; what is returned here is dropped
                return ""
        else:
            job = service.visible_job(u, jobname, job_id)
        response.content_type = XML
        return documents.job_document(job, base(), service.by_reference(job))

    def _deliverer(
        answer: direct.DirectAnswer, base_url: str, u: User, jobname: str
    ) -> Deliver:
        """What the notifier calls to answer this WAIT itself (see uws_server.direct):
        the same document this handler would return, encoded once per notification.
        The listener is registered before the service has checked the job, so it checks
        what the service would: the job's definition and the caller's right to read it."""

        def deliver(job: Job | None, shared: dict[str, Any]) -> None:
            if job is None or job.jobname != jobname or not can_read(u, job.owner):
                return  # deleted or not theirs: the waiter's own thread answers (404)
            key = "job " + base_url
            prepared = shared.get(key)
            if prepared is None:
                doc = documents.job_document(job, base_url, service.by_reference(job))
                prepared = direct.Prepared("200 OK", XML, doc.encode(), answer.server_name)
                shared[key] = prepared
            answer.send(prepared)

        return deliver

    @app.delete(f"/rest/{JOB}")
    def delete_job(jobname: str, job_id: str) -> HTTPResponse:
        service.delete_job(user(), jobname, job_id)
        return see_other(f"{base()}/rest/{jobname}")

    @app.post(f"/rest/{JOB}")
    def post_job(jobname: str, job_id: str) -> HTTPResponse:
        u = user()
        values = {k.upper(): v for k, v in form_pairs()}
        if values.get("ACTION", "").upper() == "DELETE":
            service.delete_job(u, jobname, job_id)
            return see_other(f"{base()}/rest/{jobname}")
        if "PHASE" in values:
            service.change_phase(u, jobname, job_id, values["PHASE"])
            return see_other(job_url(jobname, job_id))
        raise BadRequest("POST to a job takes ACTION=DELETE or PHASE=RUN|ABORT")

    @app.get(f"/rest/{JOB}/phase")
    def get_phase(jobname: str, job_id: str) -> str:
        return text(service.visible_job(user(), jobname, job_id).phase.value)

    @app.post(f"/rest/{JOB}/phase")
    def post_phase(jobname: str, job_id: str) -> HTTPResponse:
        service.change_phase(user(), jobname, job_id, form_value("PHASE"))
        return see_other(job_url(jobname, job_id))

    @app.get(f"/rest/{JOB}/executionduration")
    def get_duration(jobname: str, job_id: str) -> str:
        return text(service.visible_job(user(), jobname, job_id).execution_duration)

    @app.post(f"/rest/{JOB}/executionduration")
    def post_duration(jobname: str, job_id: str) -> HTTPResponse:
        service.set_execution_duration(user(), jobname, job_id, form_value("EXECUTIONDURATION"))
        return see_other(job_url(jobname, job_id))

    @app.get(f"/rest/{JOB}/destruction")
    def get_destruction(jobname: str, job_id: str) -> str:
        return text(iso(service.visible_job(user(), jobname, job_id).destruction_time))

    @app.post(f"/rest/{JOB}/destruction")
    def post_destruction(jobname: str, job_id: str) -> HTTPResponse:
        service.set_destruction(user(), jobname, job_id, form_value("DESTRUCTION"))
        return see_other(job_url(jobname, job_id))

    @app.get(f"/rest/{JOB}/error")
    def get_error(jobname: str, job_id: str) -> str:
        return text(service.visible_job(user(), jobname, job_id).error_summary or "")

    @app.get(f"/rest/{JOB}/quote")
    def get_quote(jobname: str, job_id: str) -> str:
        return text(iso(service.visible_job(user(), jobname, job_id).quote))

    @app.get(f"/rest/{JOB}/owner")
    def get_owner(jobname: str, job_id: str) -> str:
        return text(service.visible_job(user(), jobname, job_id).owner)

    @app.get(f"/rest/{JOB}/parameters")
    def get_parameters(jobname: str, job_id: str) -> str:
        job = service.visible_job(user(), jobname, job_id)
        response.content_type = XML
        return uws_xml.parameters_document(job, base(), service.by_reference(job))

    @app.post(f"/rest/{JOB}/parameters")
    def post_parameters(jobname: str, job_id: str) -> HTTPResponse:
        u = user()  # before the body is read
        if uploads():
            raise BadRequest("files can only be uploaded when the job is created")
        service.update_parameters(u, jobname, job_id, form_pairs())
        return see_other(job_url(jobname, job_id))

    @app.get(f"/rest/{JOB}/parameters/<name>")
    def get_parameter(jobname: str, job_id: str, name: str):  # type: ignore[no-untyped-def]
        job, path = service.parameter_file(user(), jobname, job_id, name)
        if path is not None:
            return bottle.static_file(path.name, root=str(path.parent), download=path.name)
        return text(job.parameters[name])

    @app.get(f"/rest/{JOB}/results")
    def get_results(jobname: str, job_id: str) -> str:
        job = service.visible_job(user(), jobname, job_id)
        response.content_type = XML
        return uws_xml.results_document(job, base())

    @app.get(f"/rest/{JOB}/results/<name>")
    def get_result(jobname: str, job_id: str, name: str):  # type: ignore[no-untyped-def]
        path, ctype = service.result_file(user(), jobname, job_id, name)
        return bottle.static_file(path.name, root=str(path.parent), mimetype=ctype)

    @app.get(f"/rest/{JOB}/<stream:re:stdout|stderr>")
    def get_log(jobname: str, job_id: str, stream: str):  # type: ignore[no-untyped-def]
        path = service.log_file(user(), jobname, job_id, stream)
        if path is None:
            return text("")
        return bottle.static_file(path.name, root=str(path.parent), mimetype="text/plain")

    def callback_token(environ: dict[str, Any]) -> str:
        value = bottle.BaseRequest(environ).get_header("Authorization") or ""
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise BadRequest("a worker event needs Authorization: Bearer <job token>")
        return token.strip()

    def callback_allowed(job_id: str, token: str) -> bool:
        job = service.store.get_job(job_id)
        return job is not None and tokens_match(token, job.callback_token_hash)

    def callback_authenticated(environ: dict[str, Any]) -> bool:
        """A large worker event is read only with its job's token (request_guard)."""
        job_id = environ.get("PATH_INFO", "")[len(CALLBACK) :]
        return callback_allowed(job_id, callback_token(environ))

    rules_of(app).add(RouteRule(CALLBACK, CALLBACK_BODY, callback_authenticated))

    @app.post("/callback/<job_id:re:[A-Za-z0-9_-]{1,64}>")
    def callback(job_id: str) -> dict:
        token = callback_token(request.environ)
        if not callback_allowed(job_id, token):  # before the body is read
            raise Forbidden("invalid callback token for this job")
        try:
            payload = json.loads(request.body.read(CALLBACK_BODY) or b"null")
            event = event_from_json(payload)
        except (ValueError, TypeError, KeyError) as exc:
            raise BadRequest(f"malformed worker event: {exc}") from None
        service.worker_event(job_id, token, event)
        return {"accepted": True}


def check_int(name: str, value: str) -> None:
    """400 for a number no database column can hold (the service checks the rest)."""
    text = value.strip().lstrip("+-")
    if text.isascii() and text.isdigit() and int(text) > MAX_INT:
        raise BadRequest(f"{name}: {value[:32]} is too large")
