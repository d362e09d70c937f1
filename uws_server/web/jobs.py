"""Pages for scientists: the submit form, the job list, the job page and its files.

Files (results, logs, uploaded inputs, provenance) are served under ``/ui`` because a
browser session cannot authenticate to ``/rest``; the service still decides who may read
what (another user's job is a 404, as in the REST API).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import bottle
from bottle import HTTPResponse, request

from uws_server.dl3 import observation_ids
from uws_server.errors import BadRequest, Conflict, NotFound, UWSError
from uws_server.models import ACTIVE_PHASES, Job, Phase, User
from uws_server.served_files import file_headers
from uws_server.service import UWSService
from uws_server.web import forms, joblist, jobview, provgraph, quicklook
from uws_server.web.common import (
    Ctx,
    WebApp,
    form_values,
    json_response,
    safe_next,
    see_other,
    url_part,
)

JOBNAME = "<jobname:re:[A-Za-z][A-Za-z0-9_-]{0,63}>"
JOB = JOBNAME + "/<job_id:re:[A-Za-z0-9_-]{1,64}>"
MAX_WAIT = 30
LIVE_PHASES = frozenset({Phase.PENDING, *ACTIVE_PHASES})

MESSAGES = {
    "created": "Job created.",
    "started": "Job started.",
    "aborted": "Job aborted.",
    "deleted": "Job deleted.",
    "destruction": "Destruction time changed.",
    "parameters": "Parameters changed.",
}


def list_jobs(
    service: UWSService, user: User, phases: list[Phase], jobname: str = "", last: int = 5
) -> list[dict[str, Any]]:
    """The newest ``last`` jobs the user may see (the home page's "recent jobs")."""
    names = [jobname] if jobname else service.registry.names()
    return [joblist.row(r) for r in service.store.jobs_visible_to(user, names, phases, None, last)]


def file_response(path: Any, mimetype: str, download: bool) -> HTTPResponse:
    res = bottle.static_file(
        path.name, root=str(path.parent), mimetype=mimetype or "application/octet-stream"
    )
    if download and isinstance(res, HTTPResponse) and res.status_code == 200:
        res.set_header("Content-Disposition", f'attachment; filename="{path.name}"')
    return res


Picker = Callable[[User], tuple[Sequence[forms.ObsChoice | int], int]]


def register_job_routes(app: bottle.Bottle, web: WebApp, picker: Picker | None = None) -> None:
    """``picker`` gives the observations a user may tick in an ``obs_ids`` field (with
    their metadata, from the catalogue) and how many more there are; without it the
    form offers the store's bare ids."""
    service = web.service

    def observations(user: User) -> tuple[Sequence[forms.ObsChoice | int], int]:
        if picker is not None:
            return picker(user)
        return observation_ids(service.settings.dl3_store), 0

    def show_form(
        ctx: Ctx, jobname: str, values: dict[str, str], errors: dict[str, str], **extra: Any
    ) -> str:
        defn = service.definition(jobname)
        choices, more = (
            observations(ctx.user)
            if defn.parameter(forms.OBS_IDS_PARAMETER) is not None
            else ([], 0)
        )
        return web.render(
            ctx,
            "submit.tpl",
            400 if errors or extra.get("error") else 200,
            title=f"Submit {defn.name}",
            defn=defn,
            fields=forms.build_fields(defn, values, errors, choices, more),
            run_id=values.get(forms.RUNID_FIELD, ""),
            **extra,
        )

    @app.get(f"/ui/submit/{JOBNAME}")
    @web.page()
    def submit_form(ctx: Ctx, jobname: str) -> Any:
        # values in the query string pre-fill the form ("Analyse with" of Find data)
        defn = service.definition(jobname)
        try:
            query = request.query.decode()  # UTF-8, as the forms are
        except UnicodeError:
            raise BadRequest("query values must be UTF-8") from None
        values = forms.prefill(defn, query)
        run_id = str(query.get(forms.RUNID_FIELD) or "")[: forms.MAX_PREFILL]
        if run_id:
            values[forms.RUNID_FIELD] = run_id  # "run again" keeps the run id
        return show_form(ctx, jobname, values, {})

    @app.post(f"/ui/submit/{JOBNAME}")
    @web.page()
    def submit(ctx: Ctx, jobname: str) -> Any:
        defn = service.definition(jobname)
        try:
            files = request.files
        except (ValueError, KeyError, IndexError) as exc:
            raise BadRequest(f"malformed upload: {exc}") from None
        sub = forms.parse_submission(defn, form_values(), files)
        values = {**sub.values, forms.RUNID_FIELD: form_values().get(forms.RUNID_FIELD, "")}
        if sub.errors:
            return show_form(ctx, jobname, values, sub.errors)
        try:
            job = service.create_job(ctx.user, jobname, sub.pairs, sub.uploads)
        except UWSError as exc:
            names = {f.name for f in forms.build_fields(defn)}
            target = forms.field_of_error(exc.message, names)
            if target is not None:
                return show_form(ctx, jobname, values, {target: exc.message})
            return show_form(ctx, jobname, values, {}, error=exc.message)
        msg = "started" if sub.run else "created"
        return see_other(f"{jobview.job_base(job)}?msg={msg}")

    @app.get("/ui/jobs")
    @web.page()
    def job_list(ctx: Ctx) -> Any:
        query = joblist.ListQuery.parse(request.query)
        page = joblist.job_page(service, ctx.user, query)
        values = {
            "jobs": page.rows,
            "page": page,
            "lq": query,
            "back": query.link(page=page.page),
        }
        if request.query.get("fragment"):
            return web.render(ctx, "jobs_rows.tpl", **values)
        return web.render(
            ctx,
            "jobs.tpl",
            title="Jobs",
            phase=query.phase,
            jobname=query.jobname,
            names=service.registry.names(),
            phases=[p.value for p in Phase],
            sorts=joblist.SORTS,
            sizes=joblist.PAGE_SIZES,
            message=MESSAGES.get(request.query.get("msg", ""), ""),
            **values,
        )

    @app.get("/ui/api/jobs")
    @web.page(api=True)
    def job_list_json(ctx: Ctx) -> Any:
        query = joblist.ListQuery.parse(request.query)
        page = joblist.job_page(service, ctx.user, query)
        return json_response(
            {"jobs": page.rows, "total": page.total, "page": page.page, "pages": page.pages}
        )

    def back_to(default: str) -> str:
        """Where a row action of the job list returns: the list as it was shown."""
        back = str(form_values().get("back", ""))
        return safe_next(back) if back.startswith("/ui/jobs?") or back == "/ui/jobs" else default

    @app.get(f"/ui/jobs/{JOB}/rerun")
    @web.page()
    def rerun(ctx: Ctx, jobname: str, job_id: str) -> Any:
        """The list's "run again": the submit form pre-filled with this job's values."""
        return see_other(jobview.rerun_url(job_of(ctx, jobname, job_id)))

    def job_of(ctx: Ctx, jobname: str, job_id: str) -> Job:
        return service.visible_job(ctx.user, jobname, job_id)

    @app.get(f"/ui/jobs/{JOB}")
    @web.page()
    def job_page(ctx: Ctx, jobname: str, job_id: str) -> Any:
        job = job_of(ctx, jobname, job_id)
        details = jobview.job_details(service, job)
        if request.query.get("fragment"):
            return web.render(ctx, "job_details.tpl", **details)
        return web.render(
            ctx,
            "job.tpl",
            title=f"Job {job.job_id}",
            message=MESSAGES.get(request.query.get("msg", ""), ""),
            **details,
        )

    @app.get(f"/ui/api/jobs/{JOB}")
    @web.page(api=True)
    def job_status(ctx: Ctx, jobname: str, job_id: str) -> Any:
        wait = request.query.get("wait")
        if wait is None:
            job = job_of(ctx, jobname, job_id)
        else:
            try:
                seconds = int(wait)
            except ValueError:
                raise BadRequest(f"wait: '{wait[:32]}' is not an integer") from None
            seconds = max(0, min(seconds, MAX_WAIT))
            phase = request.query.get("phase") or None
            job = service.wait(ctx.user, jobname, job_id, seconds, phase)
        return json_response(jobview.job_status(service, job))

    @app.post(f"/ui/jobs/{JOB}/phase")
    @web.page()
    def change_phase(ctx: Ctx, jobname: str, job_id: str) -> Any:
        action = str(form_values().get("phase", "")).upper()
        if action not in ("RUN", "ABORT"):
            raise BadRequest("phase must be RUN or ABORT")
        service.change_phase(ctx.user, jobname, job_id, action)
        msg = "started" if action == "RUN" else "aborted"
        page = f"/ui/jobs/{url_part(jobname)}/{url_part(job_id)}"
        target = back_to(page)
        return see_other(f"{target}{'&' if '?' in target else '?'}msg={msg}")

    @app.post(f"/ui/jobs/{JOB}/delete")
    @web.page()
    def delete(ctx: Ctx, jobname: str, job_id: str) -> Any:
        service.delete_job(ctx.user, jobname, job_id)
        target = back_to("/ui/jobs")
        return see_other(f"{target}{'&' if '?' in target else '?'}msg=deleted")

    @app.post(f"/ui/jobs/{JOB}/destruction")
    @web.page()
    def destruction(ctx: Ctx, jobname: str, job_id: str) -> Any:
        value = str(form_values().get("destruction", "")).strip()
        if not value:
            raise BadRequest("destruction: give a date and time (UTC)")
        service.set_destruction(ctx.user, jobname, job_id, value)
        return see_other(f"/ui/jobs/{url_part(jobname)}/{url_part(job_id)}?msg=destruction")

    @app.post(f"/ui/jobs/{JOB}/parameters")
    @web.page()
    def edit_parameters(ctx: Ctx, jobname: str, job_id: str) -> Any:
        """A PENDING job's parameters, changed from its page (only those that differ)."""
        job = job_of(ctx, jobname, job_id)
        if job.phase != Phase.PENDING:
            raise Conflict(f"parameters can change only while PENDING (it is {job.phase.value})")
        form = form_values()
        editable = {name for name, _, _ in jobview.editable_parameters(service, job)}
        pairs = [
            (name, str(form[name]))
            for name in sorted(editable)
            if name in form and str(form[name]) != job.parameters.get(name, "")
        ]
        if pairs:
            service.update_parameters(ctx.user, jobname, job_id, pairs)
        return see_other(f"{jobview.job_base(job)}?msg=parameters")

    @app.get(f"/ui/jobs/{JOB}/quicklook/<name>")
    @web.page()
    def quicklook_png(ctx: Ctx, jobname: str, job_id: str, name: str) -> Any:
        """A FITS result's quick-look PNG, drawn on first request and cached."""
        path, ctype = service.result_file(ctx.user, jobname, job_id, name)
        if not quicklook.is_fits(ctype, str(path)):
            raise BadRequest(f"{name[:64]} is not a FITS file")
        cache = service.settings.provenance_dir / job_id / "quicklook"
        try:
            png = quicklook.quicklook(path, cache, name)
        except quicklook.QuickLookError as exc:
            return HTTPResponse(
                str(exc), status=422, headers={"Content-Type": "text/plain; charset=utf-8"}
            )
        return file_response(png, "image/png", False)

    @app.get(f"/ui/jobs/{JOB}/provenance-graph")
    @web.page()
    def provenance_graph(ctx: Ctx, jobname: str, job_id: str) -> Any:
        """The cross-job view: the chain BACK or FORWARD from this job, to a depth."""
        job = job_of(ctx, jobname, job_id)
        direction = request.query.get("direction", "BACK").upper()
        depth = request.query.get("depth", "2").upper()
        if direction not in ("BACK", "FORWARD"):
            raise BadRequest("direction must be BACK or FORWARD")
        if depth not in provgraph.DEPTHS:
            raise BadRequest(f"depth must be one of {', '.join(provgraph.DEPTHS)}")
        # ProvSAP's DEPTH counts relations: 2 per job step from a job.
        relations = "ALL" if depth == "ALL" else str(2 * (int(depth) - 1))
        svg, _media = service.provenance.provsap(
            ctx.user,
            [
                ("ID", job.job_id),
                ("DIRECTION", direction),
                ("DEPTH", relations),
                ("RESPONSEFORMAT", "PROV-SVG"),
                ("AGENT", "false"),
            ],
        )
        graph = provgraph.graph_view(svg, service.provenance.base_url(), embed=True)
        return web.render(
            ctx,
            "provgraph.tpl",
            title=f"Provenance of job {job.job_id}",
            job=job,
            base=jobview.job_base(job),
            graph=graph,
            direction=direction,
            depth=depth,
            depths=provgraph.DEPTHS,
            svg_url=f"/ui/provsap?ID={url_part(job.job_id)}&DIRECTION={direction}"
            f"&DEPTH={relations}",
        )

    @app.get("/ui/provsap")
    @web.page()
    def provsap_svg(ctx: Ctx) -> Any:
        """ProvSAP for a browser session (which /provsap cannot authenticate): the
        PROV-SVG picture only; the other formats are the API's."""
        query = [(k, v) for k, v in request.query.allitems() if k.upper() != "RESPONSEFORMAT"]
        svg, media = service.provenance.provsap(ctx.user, [*query, ("RESPONSEFORMAT", "PROV-SVG")])
        res = HTTPResponse(svg, headers=file_headers(media))
        res.set_header("Content-Type", media)
        return res

    @app.get(f"/ui/jobs/{JOB}/results/<name>")
    @web.page()
    def result(ctx: Ctx, jobname: str, job_id: str, name: str) -> Any:
        path, ctype = service.result_file(ctx.user, jobname, job_id, name)
        return file_response(path, ctype, bool(request.query.get("download")))

    @app.get(f"/ui/jobs/{JOB}/log/<stream:re:stdout|stderr>")
    @web.page()
    def log(ctx: Ctx, jobname: str, job_id: str, stream: str) -> Any:
        path = service.log_file(ctx.user, jobname, job_id, stream)
        if path is None:
            return HTTPResponse("", headers={"Content-Type": "text/plain; charset=utf-8"})
        return file_response(path, "text/plain", bool(request.query.get("download")))

    @app.get(f"/ui/jobs/{JOB}/parameters/<name>")
    @web.page()
    def parameter(ctx: Ctx, jobname: str, job_id: str, name: str) -> Any:
        job, path = service.parameter_file(ctx.user, jobname, job_id, name)
        if path is None:
            return HTTPResponse(
                job.parameters[name], headers={"Content-Type": "text/plain; charset=utf-8"}
            )
        return file_response(path, "application/octet-stream", True)

    @app.get(f"/ui/jobs/{JOB}/provenance/<fmt>")
    @web.page()
    def provenance(ctx: Ctx, jobname: str, job_id: str, fmt: str) -> Any:
        job = job_of(ctx, jobname, job_id)
        found = jobview.provenance_path(service, job, fmt)
        if found is None:
            formats = ", ".join(jobview.PROVENANCE_FILES)
            raise NotFound(f"no {fmt[:16]!r} provenance for job {job_id} (formats: {formats})")
        path, media = found
        return file_response(path, media, bool(request.query.get("download")))
