"""Provenance over HTTP: a job's documents, ProvSAP across jobs, provenance search."""

from __future__ import annotations

import io

import bottle
from astropy.table import Table
from bottle import HTTPResponse, request

from uws_server.handlers import JOB
from uws_server.models import User
from uws_server.service import UWSService


def register_provenance_routes(app: bottle.Bottle, service: UWSService) -> None:
    prov = service.provenance

    def user() -> User:
        return service.auth.authenticate(request.get_header("Authorization"))

    @app.get(f"/rest/{JOB}/provenance")
    def list_formats(jobname: str, job_id: str) -> dict:
        service.visible_job(user(), jobname, job_id)
        base = f"/rest/{jobname}/{job_id}/provenance"
        return {
            "formats": {
                fmt: f"{base}/{fmt}"
                for fmt in ("json", "xml", "provn", "votable", "svg", "rocrate")
            }
        }

    @app.get(f"/rest/{JOB}/provenance/<fmt>")
    def job_provenance(jobname: str, job_id: str, fmt: str):  # type: ignore[no-untyped-def]
        job = service.visible_job(user(), jobname, job_id)
        if fmt.lower() == "rocrate":
            return HTTPResponse(
                prov.job_crate(job),
                headers={
                    "Content-Type": "application/zip",
                    "Content-Disposition": f'attachment; filename="{job_id}-rocrate.zip"',
                },
            )
        path, media = prov.job_file(job, fmt)
        return bottle.static_file(path.name, root=str(path.parent), mimetype=media)

    @app.get("/provsap")
    def provsap() -> HTTPResponse:
        body, media = prov.provsap(user(), list(request.query.allitems()))
        headers = {"Content-Type": media}
        if media == "application/zip":  # RESPONSEFORMAT=RO-CRATE
            headers["Content-Disposition"] = 'attachment; filename="provsap-rocrate.zip"'
        return HTTPResponse(body, headers=headers)

    @app.get("/provsearch")
    def provsearch():  # type: ignore[no-untyped-def]
        pairs = list(request.query.allitems())
        fmt = next((v for k, v in pairs if k.lower() == "format"), "json").lower()
        rows = prov.search(user(), pairs)
        if fmt == "votable":
            columns = [
                "entity_id",
                "name",
                "job_id",
                "jobname",
                "content_type",
                "size",
                "sha256",
                "url",
                "job_url",
            ]
            table = Table(
                rows=[[str(r[c] or "") for c in columns] for r in rows] or None,
                names=columns,
                dtype=[str] * len(columns),
            )
            out = io.BytesIO()
            table.write(out, format="votable")
            return HTTPResponse(
                out.getvalue(), headers={"Content-Type": "application/x-votable+xml"}
            )
        return {"entities": rows, "count": len(rows)}
