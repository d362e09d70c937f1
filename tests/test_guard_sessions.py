"""The request guard accepts a large body from a signed-in browser, through the check the
web pages register (``rules_of(app).signed_in``): the guard itself knows no session, so
that it imports nothing of the web pages (the no-cycles import contract).
"""

from __future__ import annotations

import pytest
import requests

from tests.conftest import LiveServer
from tests.test_web import sign_in
from uws_server.web.session import SESSION_COOKIE

LARGE = 200_000  # over the guard's ANONYMOUS_BODY: read only from a known caller


def _post_large(session: requests.Session, live: LiveServer) -> requests.Response:
    return session.post(
        live.base + "/ui/submit/echo_job",
        data={"n": "1"},
        files={"pad": ("pad.txt", b"x" * LARGE)},  # multipart: bottle spools it
        allow_redirects=False,
    )


def test_signed_in_session_may_send_a_large_body(live: LiveServer) -> None:
    s = sign_in(live, "alice")
    r = _post_large(s, live)
    # Past the guard: the page itself answers, refusing the missing CSRF token.
    assert r.status_code == 403 and "CSRF" in r.text, r.text


@pytest.mark.parametrize("cookie", [None, "forged", "stale"])
def test_no_valid_session_no_large_body(live: LiveServer, cookie: str | None) -> None:
    s = requests.Session()
    if cookie == "forged":
        s.cookies.set(SESSION_COOKIE, "x" * 60)
    elif cookie == "stale":  # a session of a user disabled since
        stale = sign_in(live, "alice").cookies.get(SESSION_COOKIE)
        assert live.service.store.set_disabled("alice", True)
        s.cookies.set(SESSION_COOKIE, stale)
    r = _post_large(s, live)
    assert r.status_code == 401, r.text
    assert "authenticated caller" in r.text
