"""HTTP side of jobs' progress (issue 13): ``GET /rest/<jobname>/<id>/progress`` for
clients, ``POST /callback/<job_id>/progress`` for remote runners.

The GET answers the job's owner (and admins) only, with the same 404 as every other
job resource for anyone else. The POST needs the job's callback token, like the
worker events of :mod:`uws_server.handlers`; the body is cleaned by the very rule the
runner applies (:func:`workers.progress.clean`), and a report for a job that is no
longer running is accepted and dropped (a late report is no error of the runner).
"""

from __future__ import annotations

import json
from typing import Any

import bottle
from bottle import request

from uws_server.auth import tokens_match
from uws_server.errors import BadRequest, Forbidden
from uws_server.models import Job, User
from uws_server.service import UWSService
from workers.progress import MAX_FILE_BYTES, clean

JOBNAME = "<jobname:re:[A-Za-z][A-Za-z0-9_-]{0,63}>"
JOB = JOBNAME + "/<job_id:re:[A-Za-z0-9_-]{1,64}>"


def progress_view(service: UWSService, job: Job) -> dict[str, object]:
    """The progress document of a job (also used by the web page's live view)."""
    try:
        default = service.definition(job.jobname).quote
    except Exception:  # noqa: BLE001 - a definition removed since: no fallback quote
        default = None
    return service.lifecycle.progress.view(job, default)


def register_progress_routes(app: bottle.Bottle, service: UWSService) -> None:
    """Add the progress routes to ``app``."""

    def user() -> User:
        return service.auth.authenticate(request.get_header("Authorization"), True)

    @app.get(f"/rest/{JOB}/progress")
    def get_progress(jobname: str, job_id: str) -> dict[str, object]:
        job = service.visible_job(user(), jobname, job_id)
        bottle.response.set_header("Cache-Control", "no-store")
        return progress_view(service, job)

    @app.post("/callback/<job_id:re:[A-Za-z0-9_-]{1,64}>/progress")
    def post_progress(job_id: str) -> dict[str, Any]:
        scheme, _, token = (request.get_header("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise BadRequest("a progress report needs Authorization: Bearer <job token>")
        job = service.store.get_job(job_id)
        if job is None or not tokens_match(token.strip(), job.callback_token_hash):
            raise Forbidden("invalid callback token for this job")
        body = request.body.read(MAX_FILE_BYTES + 1)
        if len(body) > MAX_FILE_BYTES:
            raise BadRequest(f"a progress report is at most {MAX_FILE_BYTES} bytes")
        try:
            progress = clean(json.loads(body or b"null"))
        except (ValueError, RecursionError):
            progress = None
        if progress is None:
            raise BadRequest('expected JSON {"fraction": 0..1, "message": "..."}')
        return {"accepted": service.lifecycle.report_progress(job_id, progress)}
