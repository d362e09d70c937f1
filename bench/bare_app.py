"""The baseline: bare bottle endpoints on the same WSGI server (cheroot), same threads.

``POST /bare/<name>`` answers 303 like a job creation; ``GET /bare/<name>/<id>``
answers a small fixed XML document like a job read. No storage, no auth, no rules:
what is left is the cost of the HTTP stack itself.
"""

from __future__ import annotations

import argparse

import bottle

from uws_server.server import WSGIServer

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
    # The same WSGI server, built the same way, as the service uses.
    server = WSGIServer(make_app(), "127.0.0.1", args.port, args.threads, timeout=180)
    print(f"bare on {args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
