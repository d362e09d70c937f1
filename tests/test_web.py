"""The web pages over HTTP: sign-in, sessions, CSRF, escaping, forms, job pages, operator
and admin pages. The browser-level behaviour (live updates, the editor's script) is in
``test_browser.py``.
"""

from __future__ import annotations

import re
import stat
import time
from html import unescape
from pathlib import Path

import requests

from tests.conftest import Client, LiveServer
from uws_server.web.session import (
    SESSION_COOKIE,
    Session,
    SessionManager,
    cross_site,
    load_secret,
)

XSS = '<script>alert("x")</script>'


# ----------------------------------------------------------------------------- helpers
def sign_in(live: LiveServer, name: str, next_page: str = "/ui/") -> requests.Session:
    """A browser-like session signed in through the form."""
    s = requests.Session()
    r = s.get(live.base + "/ui/login", params={"next": next_page})
    assert r.status_code == 200
    nonce = re.search(r'name="_nonce" value="([^"]+)"', r.text).group(1)
    r = s.post(
        live.base + "/ui/login",
        data={"_nonce": nonce, "token": live.tokens[name], "next": next_page},
        allow_redirects=False,
    )
    assert r.status_code == 303, r.text
    assert r.headers["Location"] == next_page
    return s


def csrf_of(html: str) -> str:
    return re.search(r'name="_csrf" value="([^"]+)"', html).group(1)


def field_error(html: str, name: str) -> str:
    match = re.search(rf'id="err-{re.escape(name)}"[^>]*>([^<]*)<', html)
    assert match, f"no error element for {name}"
    return unescape(match.group(1))


def editor_error(html: str, key: str) -> str:
    match = re.search(rf'class="field-error" data-for="{re.escape(key)}">([^<]*)<', html)
    assert match, f"no error element for {key}"
    return unescape(match.group(1))


def job_path(location: str) -> str:
    """/ui/jobs/<jobname>/<id>?msg=... -> /rest/<jobname>/<id>"""
    path = location.split("?")[0]
    assert path.startswith("/ui/jobs/"), location
    return "/rest/" + path.removeprefix("/ui/jobs/")


def ui_path(rest: str) -> str:
    return "/ui/jobs/" + rest.removeprefix("/rest/")


def submit(client: Client, jobname: str, data: dict, **kw) -> requests.Response:  # noqa: ANN003
    return client.post(f"/ui/submit/{jobname}", data=data, **kw)


# ------------------------------------------------------------------------ session unit
def test_session_manager_signs_expires_revokes() -> None:
    m = SessionManager(b"k" * 32, lifetime=60)
    value, session = m.issue("alice", "hash1", now=1000)
    assert m.decode(value, now=1010) == session
    assert m.decode(value, now=1061) is None  # expired
    assert SessionManager(b"j" * 32).decode(value, now=1010) is None  # another secret
    body, mac = value.split(".")
    forged = m.encode(Session("root", session.sid, session.expires, session.fingerprint))
    assert m.decode(forged.split(".")[0] + "." + mac, now=1010) is None  # payload changed
    assert m.decode(body + "." + mac[:-2] + "AA", now=1010) is None
    for junk in ("", "a.b", "....", "x" * 5000, "%%%.%%%"):
        assert m.decode(junk) is None
    assert m.fingerprint("hash1") == session.fingerprint != m.fingerprint("hash2")
    token = m.csrf_token(session)
    altered = token[:-1] + ("y" if token.endswith("x") else "x")  # always a different token
    assert m.csrf_ok(session, token) and not m.csrf_ok(session, altered)
    assert not m.csrf_ok(session, "") and not m.csrf_ok(session, None)
    _, other = m.issue("alice", "hash1", now=1000)
    assert m.csrf_token(other) != token
    live_value, live_session = m.issue("alice", "hash1")
    m.revoke(live_session)
    assert m.decode(live_value) is None


def test_cross_site_detection() -> None:
    assert not cross_site(None, None, "h:1")
    assert not cross_site("http://h:1", "same-origin", "h:1")
    assert cross_site("http://evil.example", None, "h:1")
    assert cross_site(None, "cross-site", "h:1")
    assert cross_site(None, "same-site", "h:1")
    assert cross_site("null", None, "h:1")


def test_secret_generated_once_private(tmp_path: Path) -> None:
    first = load_secret(tmp_path / "var")
    path = tmp_path / "var" / "web_secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) == 32 and load_secret(tmp_path / "var") == first
    assert load_secret(tmp_path / "other") != first
    path.chmod(0o644)  # loosened by hand: tightened again at start
    assert load_secret(tmp_path / "var") == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in (tmp_path / "var").iterdir()] == ["web_secret"]  # no temp left


# --------------------------------------------------------------------- sign-in, cookie
def test_pages_need_sign_in(live: LiveServer) -> None:
    for page in ("/ui/", "/ui/jobs?phase=PENDING", "/ui/jdl", "/ui/admin", "/ui/submit/echo_job"):
        r = requests.get(live.base + page, allow_redirects=False)
        assert r.status_code == 303, page
        assert r.headers["Location"].startswith("/ui/login?next=%2Fui%2F"), page
    r = requests.get(live.base + "/ui/api/jobs")
    assert r.status_code == 401 and "sign in" in r.json()["error"]
    r = requests.post(live.base + "/ui/submit/echo_job", data={"n": "1"})
    assert r.status_code == 401 and "Traceback" not in r.text
    r = requests.get(live.base + "/ui", allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"] == "/ui/"


def test_sign_in_cookie_flags_and_next(live: LiveServer) -> None:
    s = requests.Session()
    r = s.get(live.base + "/ui/login", params={"next": "/ui/jobs"})
    nonce = re.search(r'name="_nonce" value="([^"]+)"', r.text).group(1)
    r = s.post(
        live.base + "/ui/login",
        data={"_nonce": nonce, "token": live.tokens["alice"], "next": "/ui/jobs"},
        allow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["Location"] == "/ui/jobs"
    cookie = next(c for c in r.raw.headers.getlist("Set-Cookie") if c.startswith(SESSION_COOKIE))
    flags = [f.strip().lower() for f in cookie.split(";")]
    assert "httponly" in flags
    assert "samesite=lax" in flags
    assert "path=/ui" in flags
    assert any(f.startswith("max-age=") and int(f.split("=")[1]) > 3600 for f in flags)
    assert "secure" not in flags  # plain http in tests; https adds it
    value = s.cookies.get(SESSION_COOKIE)
    assert value and value.count(".") == 1 and "alice" not in value
    page = s.get(live.base + "/ui/")
    assert page.status_code == 200
    assert 'id="current-user">alice<' in page.text and "echo_job" in page.text
    # Open redirects are refused: only /ui/ paths are followed after sign-in.
    for evil in ("https://evil.example/", "//evil.example/ui/", "/rest/echo_job"):
        r = requests.Session()
        form = r.get(live.base + "/ui/login")
        nonce = re.search(r'name="_nonce" value="([^"]+)"', form.text).group(1)
        res = r.post(
            live.base + "/ui/login",
            data={"_nonce": nonce, "token": live.tokens["alice"], "next": evil},
            allow_redirects=False,
        )
        assert res.headers["Location"] == "/ui/", evil


def test_sign_in_refusals(live: LiveServer, admin: Client) -> None:
    s = requests.Session()
    r = s.get(live.base + "/ui/login")
    nonce = re.search(r'name="_nonce" value="([^"]+)"', r.text).group(1)
    bad = s.post(live.base + "/ui/login", data={"_nonce": nonce, "token": "nope"})
    assert bad.status_code == 401 and "Unknown token" in bad.text
    assert SESSION_COOKIE not in s.cookies
    # No nonce (a cross-site sign-in form): refused before the token is even looked at.
    r = requests.post(live.base + "/ui/login", data={"token": live.tokens["alice"]})
    assert r.status_code == 403 and SESSION_COOKIE not in r.cookies
    r = s.post(live.base + "/ui/login", data={"_nonce": "forged", "token": live.tokens["alice"]})
    assert r.status_code == 403
    live.service.store.set_disabled("bob", True)
    form = s.get(live.base + "/ui/login")
    nonce = re.search(r'name="_nonce" value="([^"]+)"', form.text).group(1)
    r = s.post(live.base + "/ui/login", data={"_nonce": nonce, "token": live.tokens["bob"]})
    assert r.status_code == 403 and "disabled" in r.text


def test_forged_or_stale_cookies_are_refused(live: LiveServer) -> None:
    s = sign_in(live, "alice")
    value = s.cookies.get(SESSION_COOKIE)
    body, mac = value.split(".")
    for forged in (body + "." + mac[::-1], body[:-2] + "." + mac, "garbage"):
        r = requests.get(
            live.base + "/ui/", cookies={SESSION_COOKIE: forged}, allow_redirects=False
        )
        assert r.status_code == 303 and r.headers["Location"].startswith("/ui/login"), forged
    # A session signed with the right secret but expired.
    manager = SessionManager(load_secret(live.settings.var_dir))
    user = live.service.store.user_by_name("alice")
    old, _ = manager.issue("alice", user.token_hash, now=time.time() - 10 * 3600)
    r = requests.get(live.base + "/ui/", cookies={SESSION_COOKIE: old}, allow_redirects=False)
    assert r.status_code == 303
    fresh, _ = manager.issue("alice", user.token_hash)
    r = requests.get(live.base + "/ui/", cookies={SESSION_COOKIE: fresh}, allow_redirects=False)
    assert r.status_code == 200


def test_sign_out_revokes_the_cookie(live: LiveServer) -> None:
    s = sign_in(live, "alice")
    stolen = s.cookies.get(SESSION_COOKIE)
    page = s.get(live.base + "/ui/")
    r = s.post(live.base + "/ui/logout", data={}, allow_redirects=False)
    assert r.status_code == 403  # sign-out is a form POST too: CSRF token needed
    r = s.post(live.base + "/ui/logout", data={"_csrf": csrf_of(page.text)}, allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"] == "/ui/login"
    assert SESSION_COOKIE not in s.cookies
    r = requests.get(live.base + "/ui/", cookies={SESSION_COOKIE: stolen}, allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"].startswith("/ui/login")


# ------------------------------------------------------------------------------ CSRF
def test_csrf_required_for_session_posts(live: LiveServer, alice: Client) -> None:
    s = sign_in(live, "alice")
    other = sign_in(live, "alice")
    token = csrf_of(s.get(live.base + "/ui/submit/echo_job").text)
    foreign = csrf_of(other.get(live.base + "/ui/submit/echo_job").text)
    url = live.base + "/ui/submit/echo_job"
    for data in ({}, {"_csrf": ""}, {"_csrf": "x" * 32}, {"_csrf": foreign}):
        r = s.post(url, data={"n": "1", **data}, allow_redirects=False)
        assert r.status_code == 403 and "CSRF" in r.text, data
    assert alice.get("/rest/echo_job").text.count("<uws:jobref") == 0
    r = s.post(url, data={"n": "1", "_csrf": token}, allow_redirects=False)
    assert r.status_code == 303
    assert alice.get("/rest/echo_job").text.count("<uws:jobref") == 1
    # The JSON endpoint of the editor takes the token as a header.
    r = s.post(live.base + "/ui/api/jdl/validate", data={"name": "x"})
    assert r.status_code in (403,)  # alice is no operator: refused either way
    op = sign_in(live, "oper")
    op_token = csrf_of(op.get(live.base + "/ui/jdl/new").text)
    r = op.post(live.base + "/ui/api/jdl/validate", data={"name": "x"})
    assert r.status_code == 403 and "CSRF" in r.json()["error"]
    r = op.post(
        live.base + "/ui/api/jdl/validate", data={"name": "x"}, headers={"X-CSRF-Token": op_token}
    )
    assert r.status_code == 200 and r.json()["valid"] is False


def test_header_credentials_need_no_csrf_but_same_site(live: LiveServer, alice: Client) -> None:
    r = submit(alice, "echo_job", {"n": "2"})
    assert r.status_code == 303
    basic = requests.post(
        live.base + "/ui/submit/echo_job",
        data={"n": "3"},
        auth=("alice", live.tokens["alice"]),
        allow_redirects=False,
    )
    assert basic.status_code == 303
    for headers in (
        {"Origin": "http://evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "null"},
    ):
        r = submit(alice, "echo_job", {"n": "4"}, headers=headers)
        assert r.status_code == 403 and "cross-site" in r.text, headers
    host = live.base.split("://")[1]
    r = submit(alice, "echo_job", {"n": "5"}, headers={"Origin": f"http://{host}"})
    assert r.status_code == 303
    assert alice.get("/rest/echo_job").text.count("<uws:jobref") == 3
    r = requests.get(live.base + "/ui/", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and "invalid credentials" in r.text


# --------------------------------------------------------------------- submit form
def test_form_widgets_from_definition(alice: Client) -> None:
    html = alice.get("/ui/submit/echo_job").text
    n = re.search(r'<input type="number" id="f-n"[^>]*>', html).group(0)
    assert 'step="1"' in n and 'min="0"' in n and 'max="100"' in n and 'value="1"' in n
    x = re.search(r'<input type="number" id="f-x"[^>]*>', html).group(0)
    assert 'step="any"' in x and 'min="-1"' in x and 'max="1"' in x
    assert re.search(r'<input type="checkbox" id="f-flag" name="flag" value="true"', html)
    select = re.search(r'<select id="f-color" name="color">(.*?)</select>', html, re.S).group(1)
    assert re.findall(r'<option value="([^"]*)"', select) == ["", "red", "green", "blue"]
    assert 'value="hello"' in html  # default of text
    assert '<span class="unit">count</span>' in html and "A count" in html
    assert 'name="_action" value="create"' in html and 'name="_action" value="run"' in html
    assert "novalidate" in html  # the server's messages are the ones shown
    copy = alice.get("/ui/submit/copy_job").text
    assert 'type="file" id="f-input" name="file.input" accept="text/plain"' in copy
    assert 'id="r-input" name="input"' in copy
    assert re.search(r'for="f-input">input\s*<span class="req"', copy)


def test_field_errors_all_at_once(live: LiveServer, alice: Client) -> None:
    r = submit(alice, "echo_job", {"n": "500", "x": "5", "color": "purple", "text": "kept"})
    assert r.status_code == 400
    assert field_error(r.text, "n") == "'500' is above the maximum 100"
    assert field_error(r.text, "x") == "'5' is above the maximum 1"
    assert "is not one of the options" in field_error(r.text, "color")
    assert field_error(r.text, "text") == ""
    assert re.search(r'id="f-n" name="n" value="500"', r.text)  # typed values kept
    assert 'value="kept"' in r.text
    r = submit(alice, "echo_job", {"n": "abc"})
    assert field_error(r.text, "n") == "'abc' is not an integer"
    assert alice.get("/rest/echo_job").text.count("<uws:jobref") == 0


def test_service_errors_land_on_their_field(alice: Client) -> None:
    # Control characters pass the definition's value rules; the service refuses them.
    r = submit(alice, "echo_job", {"text": "a\x01b"})
    assert r.status_code == 400
    assert field_error(r.text, "text") == "parameter 'text': value contains control characters"
    r = submit(alice, "copy_job", {})
    assert field_error(r.text, "input") == "upload a file or give an entity id or URL"
    r = submit(alice, "copy_job", {"input": "ent_doesnotexist"})
    assert r.status_code in (400, 404) and "Traceback" not in r.text
    assert 'class="error-box"' in r.text


def test_upload_input_and_run(live: LiveServer, alice: Client) -> None:
    r = submit(
        alice,
        "copy_job",
        {"text": "tail", "_action": "run", "_runid": "my run"},
        files={"file.input": ("data.txt", b"uploaded line\n", "text/plain")},
    )
    assert r.status_code == 303, r.text
    job = job_path(r.headers["Location"])
    assert alice.wait_final(job) == "COMPLETED"
    page = alice.get(ui_path(job)).text
    assert "my run" in page
    link = re.search(r'href="([^"]+/parameters/input)"', page).group(1)
    assert alice.get(link).content == b"uploaded line\n"
    assert "uploaded line\ntail" in unescape(page)  # the text preview of output


# ------------------------------------------------------------------------- escaping
def test_definition_and_values_are_escaped(live: LiveServer, alice: Client) -> None:
    oper = live.client("oper")
    defn = oper.get("/jdl/echo_job/json").json()
    defn.update(name="xss_job", description=XSS, contact_name=XSS)
    defn["parameters"][0].update(description='<img src=x onerror="alert(1)">', default=XSS)
    defn["parameters"][4]["options"] = ["red", "<b>bold</b>"]
    r = oper.post("/jdl", json=defn)
    assert r.status_code == 201, r.text
    for page in ("/ui/", "/ui/submit/xss_job"):
        html = alice.get(page).text
        assert "<script>alert" not in html and "<img src=x" not in html and "<b>bold" not in html
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html, page
    html = alice.get("/ui/submit/xss_job").text
    assert 'value="&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"' in html
    assert '<option value="&lt;b&gt;bold&lt;/b&gt;"' in html
    for page in ("/ui/jdl", "/ui/jdl/xss_job/edit"):
        html = oper.get(page).text
        assert "<script>alert" not in html and "<img src=x" not in html, page
    r = submit(alice, "xss_job", {"text": XSS, "_runid": "<img src=x onerror=alert(2)>"})
    assert r.status_code == 303
    job = job_path(r.headers["Location"])
    for page in (ui_path(job), "/ui/jobs", "/ui/"):
        html = alice.get(page).text
        assert "<script>alert" not in html and "<img src=x" not in html, page
    page = alice.get(ui_path(job)).text
    assert '<span class="value">&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;</span>' in page
    # The JSON list carries the raw text; the page's script inserts it with textContent.
    listed = alice.get("/ui/api/jobs").json()["jobs"][0]
    assert listed["run_id"] == "<img src=x onerror=alert(2)>"
    # An error message echoing user input is escaped too.
    r = submit(alice, "echo_job", {"n": "<script>1</script>"})
    assert "<script>1" not in r.text and "&lt;script&gt;1" in r.text


def test_utf8_values_round_trip(alice: Client) -> None:
    r = submit(alice, "echo_job", {"text": "café ✓ – Ω"})
    assert r.status_code == 303
    page = alice.get(r.headers["Location"]).text
    assert '<span class="value">café ✓ – Ω</span>' in page


# ------------------------------------------------------------------------- job pages
def test_job_page_actions(live: LiveServer, alice: Client) -> None:
    r = submit(alice, "echo_job", {"text": "page test", "n": "7"})
    job = job_path(r.headers["Location"])
    page = alice.get(r.headers["Location"])
    assert page.status_code == 200 and "Job created." in page.text
    assert 'id="phase" class="phase big phase-PENDING"' in page.text
    assert 'id="run"' in page.text and 'id="abort"' in page.text
    assert "No provenance yet" in page.text
    base = ui_path(job)
    r = alice.post(base + "/destruction", data={"destruction": "2099-01-02T03:04:05"})
    assert r.status_code == 303
    assert "2099-01-02 03:04:05Z" in alice.get(base).text
    for bad, reason in (("soon", "not an ISO 8601"), ("2001-01-01T00:00", "in the future")):
        r = alice.post(base + "/destruction", data={"destruction": bad})
        assert r.status_code == 400 and reason in r.text and "Traceback" not in r.text
    r = alice.post(base + "/phase", data={"phase": "SUSPEND"})
    assert r.status_code == 400
    r = alice.post(base + "/phase", data={"phase": "RUN"})
    assert r.status_code == 303 and r.headers["Location"].endswith("?msg=started")
    assert alice.wait_final(job) == "COMPLETED"
    page = alice.get(base).text
    assert 'id="run"' not in page and 'id="abort"' not in page and 'id="destruction"' not in page
    assert "page test" in page and "n=7" in page  # text preview of the result
    result = alice.get(base + "/results/output")
    assert result.status_code == 200 and result.text.startswith("page test")
    assert "sandbox" in result.headers["Content-Security-Policy"]
    assert result.headers["X-Content-Type-Options"] == "nosniff"
    download = alice.get(base + "/results/output?download=1")
    assert download.headers["Content-Disposition"].startswith("attachment")
    assert alice.get(base + "/log/stdout").status_code == 200
    assert alice.get(base + "/results/nope").status_code == 404
    r = alice.post(base + "/phase", data={"phase": "RUN"})
    assert r.status_code == 409 and "COMPLETED" in r.text
    # Abort a pending job, then delete it.
    r = submit(alice, "echo_job", {})
    other = ui_path(job_path(r.headers["Location"]))
    assert alice.post(other + "/phase", data={"phase": "ABORT"}).status_code == 303
    assert "phase-ABORTED" in alice.get(other).text
    r = alice.post(other + "/delete")
    assert r.status_code == 303 and r.headers["Location"] == "/ui/jobs?msg=deleted"
    gone = alice.get(other)
    assert gone.status_code == 404 and "no job" in gone.text


def test_provenance_section(live: LiveServer, alice: Client) -> None:
    r = submit(alice, "echo_job", {})
    job = job_path(r.headers["Location"])
    job_id = job.rsplit("/", 1)[1]
    base = ui_path(job)
    assert "No provenance yet" in alice.get(base).text
    assert alice.get(base + "/provenance/svg").status_code == 404
    folder = live.settings.provenance_dir / job_id
    folder.mkdir(parents=True)
    (folder / "provenance.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"><a/></svg>')
    (folder / "provenance.json").write_text('{"entity": {}}')
    page = alice.get(base).text
    assert "No provenance yet" not in page
    assert f'<img src="{base}/provenance/svg"' in page
    links = re.findall(r'data-format="([a-z]+)"', page)
    assert links == ["svg", "json"]
    assert f"/rest/echo_job/{job_id}/provenance/json" in page
    svg = alice.get(base + "/provenance/svg")
    assert svg.headers["Content-Type"].startswith("image/svg+xml")
    assert "sandbox" in svg.headers["Content-Security-Policy"]
    assert alice.get(base + "/provenance/json").json() == {"entity": {}}
    missing = alice.get(base + "/provenance/xml")
    assert missing.status_code == 404 and "formats: svg, json" in missing.text
    assert alice.get(base + "/provenance/..%2f..%2fetc").status_code == 404
    status = alice.get(f"/ui/api/jobs/echo_job/{job_id}").json()
    assert status["provenance"] == ["svg", "json"] and status["phase"] == "PENDING"


def test_job_list_ownership_filter_and_json(live: LiveServer, alice: Client, bob: Client) -> None:
    a1 = job_path(submit(alice, "echo_job", {"_runid": "first"}).headers["Location"])
    a2 = job_path(submit(alice, "sleep_job", {}).headers["Location"])
    b1 = job_path(submit(bob, "echo_job", {}).headers["Location"])
    alice.post(ui_path(a1) + "/phase", data={"phase": "ABORT"})
    jobs = alice.get("/ui/api/jobs").json()["jobs"]
    assert [j["job_id"] for j in jobs] == [a2.rsplit("/")[-1], a1.rsplit("/")[-1]]  # newest first
    assert {j["owner"] for j in jobs} == {"alice"}
    pending = alice.get("/ui/api/jobs?phase=PENDING").json()["jobs"]
    assert [j["job_id"] for j in pending] == [a2.rsplit("/")[-1]]
    assert len(alice.get("/ui/api/jobs?jobname=echo_job").json()["jobs"]) == 1
    assert len(alice.get("/ui/api/jobs?phase=active").json()["jobs"]) == 1
    page = alice.get("/ui/jobs?phase=ABORTED").text
    assert a1.rsplit("/")[-1] in page and a2.rsplit("/")[-1] not in page
    assert b1.rsplit("/")[-1] not in alice.get("/ui/jobs").text
    everyone = live.client("root").get("/ui/api/jobs").json()["jobs"]
    assert len(everyone) == 3
    bad = alice.get("/ui/api/jobs?phase=BOGUS")
    assert bad.status_code == 400 and "not a UWS phase" in bad.json()["error"]
    assert alice.get("/ui/jobs?jobname=nope").status_code == 404
    assert bob.get(ui_path(a1)).status_code == 404  # another user's job does not exist
    assert bob.get(ui_path(a1) + "/results/output").status_code == 404


def test_job_status_long_poll(alice: Client) -> None:
    job = job_path(submit(alice, "echo_job", {}).headers["Location"])
    url = "/ui/api/jobs/" + job.removeprefix("/rest/")
    start = time.monotonic()
    status = alice.get(url, params={"wait": 1, "phase": "PENDING"}).json()
    assert status["phase"] == "PENDING" and time.monotonic() - start >= 0.9
    start = time.monotonic()
    status = alice.get(url, params={"wait": 20, "phase": "EXECUTING"}).json()
    assert time.monotonic() - start < 5  # not in that phase: answered at once
    assert alice.get(url, params={"wait": "x"}).status_code == 400
    assert alice.get(url.replace("echo_job", "copy_job")).status_code == 404


def test_a_finished_jobs_page_matches_its_status(alice: Client) -> None:
    """The page's counts (data-results, data-provenance) are what its status poll
    reports, once provenance is written: the page has nothing to re-render after
    loading (it did, once, on every finished job: the status counted the provenance
    documents among the results, and a depth the user had just chosen was lost)."""
    from tests.test_web_results import wait_provenance

    job = alice.create("echo_job", {"PHASE": "RUN"})
    assert alice.wait_final(job) == "COMPLETED"
    wait_provenance(alice, job)
    page = alice.get(ui_path(job)).text
    status = alice.get("/ui/api/jobs/" + job.removeprefix("/rest/")).json()
    shown = re.search(r'data-results="(\d+)" data-provenance="(\d+)"', page)
    assert shown, page[:2000]
    assert (int(shown[1]), int(shown[2])) == (len(status["results"]), len(status["provenance"]))
    assert len(status["provenance"]) == 5 and status["results"] == ["output"]


def test_bad_requests_get_clear_pages(alice: Client) -> None:
    for path, status, text in (
        ("/ui/submit/nope", 404, "no job definition named 'nope'"),
        ("/ui/jobs/echo_job/doesnotexist", 404, "no job"),
        ("/ui/jobs?phase=<b>", 400, "not a UWS phase"),
        ("/ui/static/..%2fcommon.py", 404, ""),
    ):
        r = alice.get(path)
        assert r.status_code == status, path
        assert text in unescape(r.text) and "Traceback" not in r.text
    r = alice.post(
        "/ui/submit/echo_job",
        data=b"--xx\r\nbroken",
        headers={"Content-Type": "multipart/form-data; boundary=xx"},
    )
    assert 400 <= r.status_code < 500 and "Traceback" not in r.text


def test_security_headers_and_static(live: LiveServer, alice: Client) -> None:
    r = alice.get("/ui/")
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp.split("style-src")[0]
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["Cache-Control"] == "no-store"
    assert "<script>" not in r.text.replace('<script src="/ui/static/app.js" defer></script>', "")
    js = requests.get(live.base + "/ui/static/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["Content-Type"]
    css = requests.get(live.base + "/ui/static/style.css")
    assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css")
