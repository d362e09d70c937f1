"""The creation route's own fast paths (the form and header read from the environ, the
303 set on bottle's response) answer exactly as the general paths do."""

from __future__ import annotations

import io
import sys
from typing import Any
from urllib.parse import quote

import bottle

from tests.conftest import Client, LiveServer


def call(app: Any, body: bytes, token: str | None, ctype: str, query: str = "") -> tuple:
    """The WSGI answer to POST /rest/echo_job: (status, headers, body)."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/rest/echo_job", "SCRIPT_NAME": "",
        "QUERY_STRING": query, "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "example.org:8080",
        "CONTENT_TYPE": ctype, "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr, "wsgi.version": (1, 0),
        "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
    }  # fmt: skip
    if token is not None:
        environ["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list, exc_info: Any = None) -> None:
        answer.update(status=status, headers=headers)

    out = b"".join(app(environ, start_response))
    return answer["status"], answer["headers"], out


def test_the_303_is_see_others(live: LiveServer) -> None:
    """Status, headers and their order, and the empty body: what see_other() gives."""
    token = live.tokens["alice"]
    status, headers, body = call(live.app, b"text=hi", token, "application/x-www-form-urlencoded")
    assert status == "303 See Other" and body == b""
    location = dict(headers)["Location"]
    assert location.startswith("http://example.org:8080/rest/echo_job/")
    bottle.response.bind()
    expected = bottle.HTTPResponse(status=303, headers={"Location": location})
    expected.apply(bottle.response)
    bottle.response["Content-Length"] = 0  # what bottle adds for the empty body
    assert headers == bottle.response.headerlist


def test_urlencoded_and_multipart_creations_store_the_same(live: LiveServer, alice: Client) -> None:
    """The environ reading (urlencoded) and bottle's (multipart) agree on names, values,
    '+', escapes, the query string and the control parameters. (ASCII: a non-ASCII
    multipart value is refused as not UTF-8, an older limit of the multipart path.)"""
    text = "cafe + 50% & more=yes;"
    fast = alice.post("/rest/echo_job?RUNID=r1", data={"text": text, "n": " 7 ", "PHASE": ""})
    slow = alice.post(
        "/rest/echo_job?RUNID=r1",
        files={"text": (None, text), "n": (None, " 7 "), "PHASE": (None, "")},
    )
    assert fast.status_code == slow.status_code == 303
    jobs = [
        live.service.store.get_job(r.headers["Location"].rsplit("/", 1)[1]) for r in (fast, slow)
    ]
    assert jobs[0].parameters == jobs[1].parameters == {"text": text, "n": "7"}
    assert jobs[0].run_id == jobs[1].run_id == "r1"


def test_a_repeated_name_is_refused_either_way(live: LiveServer, alice: Client) -> None:
    body = "text=a&n=1&text=b"
    r = alice.post(
        "/rest/echo_job",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 400 and "'text' is given more than once" in r.text


def test_the_caller_is_checked_before_the_body_is_read(live: LiveServer) -> None:
    """No credentials: 401 even for a body bottle would refuse as too large (413)."""
    huge = b"text=" + b"x" * (bottle.BaseRequest.MEMFILE_MAX + 10)
    status, _, _ = call(live.app, huge, None, "application/x-www-form-urlencoded")
    assert status.startswith("401")
    status, _, _ = call(live.app, huge, live.tokens["alice"], "application/x-www-form-urlencoded")
    assert status.startswith("413")


def test_percent_encoded_utf8_and_invalid_utf8(live: LiveServer) -> None:
    token = live.tokens["alice"]
    body = ("text=" + quote("\u00e9t\u00e9 \u2713")).encode()
    status, headers, _ = call(live.app, body, token, "application/x-www-form-urlencoded")
    assert status == "303 See Other"
    job_id = dict(headers)["Location"].rsplit("/", 1)[1]
    assert live.service.store.get_job(job_id).parameters["text"] == "\u00e9t\u00e9 \u2713"
    status, _, out = call(live.app, b"text=%FF", token, "application/x-www-form-urlencoded")
    assert status.startswith("400") and b"UTF-8" in out
