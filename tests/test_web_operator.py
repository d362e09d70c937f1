"""The operator pages (job definition editor, upload, history) and the admin page, over
HTTP. The editor's script and the live updates are exercised in ``test_browser.py``.
"""

from __future__ import annotations

import re

import pytest

from tests.conftest import TESTS, Client, LiveServer
from tests.test_web import csrf_of, editor_error, job_path, sign_in, submit, ui_path


# --------------------------------------------------------------------- operator pages
def editor_form(name: str, **extra: str) -> dict[str, str]:
    form = {
        "name": name,
        "description": "made in the editor",
        "version": "1",
        "execution_duration": "30",
        "quote": "",
        "script": "echo $greeting > $result\n",
        "parameters[0].name": "greeting",
        "parameters[0].datatype": "xs:string",
        "parameters[0].default": "hi",
        "parameters[0].required": "true",
        "parameters[0].options": "",
        "generated[0].name": "result",
        "generated[0].default": "result.txt",
        "generated[0].content_type": "text/plain",
    }
    form.update(extra)
    return form


def test_operator_pages_need_the_role(live: LiveServer, alice: Client) -> None:
    for path in ("/ui/jdl", "/ui/jdl/new", "/ui/jdl/echo_job/edit", "/ui/jdl/echo_job/history"):
        r = alice.get(path)
        assert r.status_code == 403 and "operator role" in r.text, path
    assert alice.post("/ui/jdl/save", data=editor_form("sneaky")).status_code == 403
    assert alice.post("/ui/jdl/echo_job/delete").status_code == 403
    assert "sneaky" not in live.service.registry
    assert 'href="/ui/jdl"' not in alice.get("/ui/").text  # no link either
    assert live.client("root").get("/ui/jdl").status_code == 200


def test_editor_saves_and_reports_problems(live: LiveServer, alice: Client) -> None:
    oper = live.client("oper")
    new = oper.get("/ui/jdl/new").text
    assert 'id="tpl-parameters"' in new and 'name="parameters[__i__].name"' in new
    r = oper.post("/ui/jdl/save", data=editor_form("greet_job"))
    assert r.status_code == 303 and r.headers["Location"] == "/ui/jdl/greet_job/edit?msg=created"
    saved = oper.get("/jdl/greet_job/json").json()
    assert saved["parameters"][0]["name"] == "greeting"
    assert saved["parameters"][0]["default"] == "hi" and saved["parameters"][0]["required"]
    assert saved["generated"][0]["default"] == "result.txt" and saved["quote"] is None
    page = oper.get("/ui/jdl/greet_job/edit?msg=created").text
    assert "Job definition created." in page and 'value="greeting"' in page
    bad = editor_form(
        "bad name",
        execution_duration="soon",
        **{
            "parameters[0].datatype": "xs:integer",
            "parameters[0].default": "abc",
            "parameters[1].name": "n",
            "parameters[1].datatype": "xs:integer",
            "parameters[1].options": "1\nx",
            "generated[0].name": "../x",
        },
    )
    r = oper.post("/ui/jdl/save", data=bad)
    assert r.status_code == 400
    assert "is not a letter followed by" in editor_error(r.text, "name")
    assert editor_error(r.text, "execution_duration") == "must be an integer number of seconds"
    assert editor_error(r.text, "parameters[0].default") == "'abc' is not an integer"
    assert editor_error(r.text, "parameters[1].options") == "'x' is not an integer"
    assert "not a plain file name" in editor_error(r.text, "generated[0].name")
    assert 'value="bad name"' in r.text and 'value="soon"' in r.text  # nothing lost
    assert "bad name" not in live.service.registry.names()
    # Saving the same definition again changes nothing; a change is kept in history.
    r = oper.post("/ui/jdl/save", data=editor_form("greet_job"))
    assert r.headers["Location"].endswith("msg=unchanged")
    r = oper.post("/ui/jdl/save", data=editor_form("greet_job", description="second"))
    assert r.headers["Location"].endswith("msg=saved")
    history = oper.get("/ui/jdl/greet_job/history").text
    stamps = re.findall(r"/ui/jdl/greet_job/history/([0-9T.Z-]+)\"", history)
    assert len(stamps) == 1
    old = oper.get(f"/ui/jdl/greet_job/history/{stamps[0]}")
    assert "made in the editor" in old.text and old.headers["Content-Type"].startswith("text/plain")
    restore = oper.get(f"/ui/jdl/greet_job/edit?version={stamps[0]}").text
    assert "made in the editor" in restore and "loaded from the history" in restore
    # A scientist sees and runs it.
    assert "greet_job" in alice.get("/ui/").text
    r = submit(alice, "greet_job", {"greeting": "hello there", "_action": "run"})
    job = job_path(r.headers["Location"])
    assert alice.wait_final(job) == "COMPLETED"
    assert alice.get(ui_path(job) + "/results/result").text == "hello there\n"
    r = oper.post("/ui/jdl/greet_job/delete")
    assert r.status_code == 303 and "greet_job" not in live.service.registry


def test_live_validation_endpoint(live: LiveServer) -> None:
    oper = live.client("oper")
    form = editor_form(
        "v_job",
        **{
            "parameters[0].datatype": "xs:integer",
            "parameters[0].options": "1\n2\nthree",
            "parameters[0].default": "1",
            "sbatch_options": "--output=/etc/x",
        },
    )
    data = oper.post("/ui/api/jdl/validate", data=form).json()
    assert data["valid"] is False
    inputs = {e["input"]: e["reason"] for e in data["errors"]}
    assert inputs["parameters[0].options"] == "'three' is not an integer"
    assert "set by the service" in inputs["sbatch_options"]
    fields = {e["field"] for e in data["errors"]}
    assert "parameters[0].options[2]" in fields and "sbatch_options[0]" in fields
    ok = oper.post("/ui/api/jdl/validate", data=editor_form("v_job")).json()
    assert ok == {"valid": True, "errors": []}
    assert "v_job" not in live.service.registry  # validation never saves


def test_upload_votable(live: LiveServer) -> None:
    oper = live.client("oper")
    data = (TESTS / "data" / "jdl" / "echo_job_vot.xml").read_bytes()
    data = data.replace(b'"echo_job"', b'"echo_copy"')
    r = oper.post("/ui/jdl/upload", files={"file": ("echo_copy_vot.xml", data, "text/xml")})
    assert r.status_code == 303 and r.headers["Location"] == "/ui/jdl/echo_copy/edit?msg=created"
    assert "echo_copy" in live.service.registry
    broken = data.replace(b'"echo_copy"', b'"echo_bad"').replace(b'<MAX value="100"/>', b"")
    broken = broken.replace(b'value="1" unit="count"', b'value="abc" unit="count"')
    r = oper.post("/ui/jdl/upload", files={"file": ("b.xml", broken, "text/xml")})
    assert r.status_code == 400 and "was not saved" in r.text
    assert "'abc' is not an integer" in editor_error(r.text, "parameters[1].default")
    assert "echo_bad" not in live.service.registry
    r = oper.post("/ui/jdl/upload", files={"file": ("x.xml", b"<not votable", "text/xml")})
    assert r.status_code == 400 and "could not be read" in r.text
    assert oper.post("/ui/jdl/upload", data={"x": "1"}).status_code == 400


# ------------------------------------------------------------------------ admin page
def test_admin_page(live: LiveServer, alice: Client, bob: Client) -> None:
    assert alice.get("/ui/admin").status_code == 403
    assert alice.post("/ui/admin/users/bob/disable").status_code == 403
    root = live.client("root")
    job = job_path(submit(bob, "sleep_job", {"_action": "run"}).headers["Location"])
    page = root.get("/ui/admin").text
    for name in ("alice", "bob", "oper", "root"):
        assert f'data-user="{name}"' in page
    assert 'value="operator"' in page
    assert job.rsplit("/")[-1] in page  # bob's running job among the active jobs
    r = root.post("/ui/admin/users/bob/disable")
    assert r.status_code == 303
    assert bob.get("/rest/echo_job").status_code == 403  # at once, not after the cache
    assert "disabled" in root.get("/ui/admin").text
    assert root.post("/ui/admin/users/bob/enable").status_code == 303
    assert bob.get("/rest/echo_job").status_code == 200
    assert root.post("/ui/admin/users/root/disable").status_code == 400
    assert root.post("/ui/admin/users/nobody/disable").status_code == 404
    r = root.post("/ui/admin/users/alice/roles", data={"roles": "operator, curator"})
    assert r.status_code == 303
    assert live.service.store.user_by_name("alice").roles == ("operator", "curator")
    assert alice.get("/ui/jdl").status_code == 200
    assert root.post("/ui/admin/users/alice/roles", data={"roles": "<x>"}).status_code == 400
    # New user: the token is shown once and works.
    r = root.post("/ui/admin/users", data={"name": "carol", "roles": "operator"})
    assert r.status_code == 200
    token = re.search(r'id="token-value">([^<]+)<', r.text).group(1)
    assert Client(live.base, token).get("/ui/jdl").status_code == 200
    assert token not in root.get("/ui/admin").text
    assert root.post("/ui/admin/users", data={"name": "carol"}).status_code == 409
    assert root.post("/ui/admin/users", data={"name": "bad name"}).status_code == 400
    # New token for bob: the old one and his browser session stop working.
    session = sign_in(live, "bob")
    r = root.post("/ui/admin/users/bob/token")
    new = re.search(r'id="token-value">([^<]+)<', r.text).group(1)
    assert bob.get("/rest/echo_job").status_code == 401
    assert Client(live.base, new).get("/rest/echo_job").status_code == 200
    r = session.get(live.base + "/ui/", allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"].startswith("/ui/login")


def test_admin_new_own_token_keeps_session(live: LiveServer) -> None:
    s = sign_in(live, "root", "/ui/admin")
    page = s.get(live.base + "/ui/admin").text
    r = s.post(live.base + "/ui/admin/users/root/token", data={"_csrf": csrf_of(page)})
    assert r.status_code == 200 and 'id="token-value"' in r.text
    again = s.get(live.base + "/ui/admin")
    assert again.status_code == 200  # re-issued session bound to the new token
    r = s.post(
        live.base + "/ui/admin/users/bob/disable",
        data={"_csrf": csrf_of(r.text)},
        allow_redirects=False,
    )
    assert r.status_code == 303


@pytest.mark.parametrize("path", ["/ui/jdl/..%2f..%2fetc/edit", "/ui/jdl/a%20b/history"])
def test_definition_names_in_urls_are_checked(live: LiveServer, path: str) -> None:
    r = live.client("oper").get(path)
    assert r.status_code == 404 and "Traceback" not in r.text
