"""The baseline: bare bottle endpoints on the same WSGI server (waitress), same threads.

``POST /bare/<name>`` answers 303 like a job creation; ``GET /bare/<name>/<id>``
answers a small fixed XML document like a job read. No storage, no auth, no rules:
what is left is the cost of the HTTP stack itself.
"""

from __future__ import annotations

import argparse

import bottle
from waitress.server import create_server

DOC = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<uws:job xmlns:uws="http://www.ivoa.net/xml/UWS/v1.0" '
    'version="1.1"><uws:jobId>abc</uws:jobId><uws:phase>PENDING</uws:phase></uws:job>\n'
)


def make_app() -> bottle.Bottle:
    app = bottle.Bottle()

    @app.post("/bare/<name>")
    def create(name: str) -> bottle.HTTPResponse:
        _ = bottle.request.forms.get("text")
        return bottle.HTTPResponse(status=303, headers={"Location": f"/bare/{name}/abc"})

    @app.get("/bare/<name>/<job_id>")
    def read(name: str, job_id: str) -> str:
        bottle.response.content_type = "application/xml; charset=utf-8"
        return DOC

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=600)
    args = parser.parse_args()
    server = create_server(
        make_app(),
        host="127.0.0.1",
        port=args.port,
        threads=args.threads,
        connection_limit=2000,
        asyncore_use_poll=True,
        backlog=2048,
    )
    print(f"bare on {args.port}", flush=True)
    server.run()


if __name__ == "__main__":
    main()
