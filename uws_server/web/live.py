"""The job page's live view (issue 13): ``GET /ui/api/jobs/<jobname>/<id>/live``.

One JSON answer per poll with what changes while a job runs: its phase, its progress
(:func:`uws_server.progress_routes.progress_view`: fraction, message, elapsed,
expected end) and the last ``bytes`` (default 16 KB, at most 64 KB) of its stdout
and stderr. ``static/live.js`` polls it every two seconds while the job is active
and stops once it is final; the template is ``templates/job_live.tpl``. The job's
owner (and admins) only, the same 404 as the job page for anyone else.
"""

from __future__ import annotations

from typing import Any

import bottle
from bottle import request

from uws_server.errors import BadRequest
from uws_server.progress_routes import progress_view
from uws_server.web.common import Ctx, WebApp, json_response
from uws_server.web.jobview import read_tail

JOBNAME = "<jobname:re:[A-Za-z][A-Za-z0-9_-]{0,63}>"
JOB = JOBNAME + "/<job_id:re:[A-Za-z0-9_-]{1,64}>"
TAIL_BYTES = 16 * 1024
MAX_TAIL_BYTES = 64 * 1024


def tail_size(text: str | None) -> int:
    """The ``bytes`` query value: a 400 saying why when it is not a positive number."""
    if text is None or text == "":
        return TAIL_BYTES
    if not (text.isascii() and text.isdigit()) or int(text) <= 0:
        raise BadRequest(f"bytes: '{text[:32]}' is not a positive integer")
    return min(int(text), MAX_TAIL_BYTES)


def register_live_routes(app: bottle.Bottle, web: WebApp) -> None:
    """Add the live view's route to ``app``."""
    service = web.service

    @app.get(f"/ui/api/jobs/{JOB}/live")
    @web.page(api=True)
    def job_live(ctx: Ctx, jobname: str, job_id: str) -> Any:
        limit = tail_size(request.query.get("bytes"))
        job = service.visible_job(ctx.user, jobname, job_id)
        data: dict[str, Any] = progress_view(service, job)
        for stream in ("stdout", "stderr"):
            path = service.log_file(ctx.user, jobname, job_id, stream)
            text, cut = read_tail(path, limit)
            data[stream] = {"text": text, "cut": cut}
        data["final"] = job.phase.is_final
        res = json_response(data)
        res.set_header("Cache-Control", "no-store")
        return res
