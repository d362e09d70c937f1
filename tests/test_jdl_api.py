"""Job definitions: the directory registry and the ``/jdl`` HTTP routes."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import bottle
import pytest
import requests

from uws_server.errors import AuthenticationRequired, DefinitionError, NotFound
from uws_server.jdl import (
    JobDefinitionRegistry,
    error_plugin,
    from_json,
    read_votable,
    read_votable_file,
    register_jdl_routes,
    to_json,
    write_votable,
)
from uws_server.jdl.registry import HISTORY_DIR
from uws_server.jobdef import JobDefinition, ParameterDef
from uws_server.models import ANONYMOUS, User
from uws_server.server import WSGIServer

OPUS_DIR = Path("/work/shared/opus-jdl")
OPUS_1 = (OPUS_DIR / "test_activity_1_vot.xml").read_bytes()
OPUS_2 = (OPUS_DIR / "test_activity_2_vot.xml").read_bytes()
EVIL = OPUS_1.replace(b'"test_activity_1"', b'"../../evil"')


def tree(root: Path) -> set[str]:
    """Every file under ``root`` (relative paths), to prove nothing else was written."""
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """<tmp>/a/b/defs holding the two OPUS files: ``../../`` from defs is still in tmp."""
    defs = tmp_path / "a" / "b" / "defs"
    defs.mkdir(parents=True)
    for name in ("test_activity_1_vot.xml", "test_activity_2_vot.xml"):
        shutil.copy(OPUS_DIR / name, defs / name)
    return defs


def new_definition(name: str = "new_job", script: str = "echo $x > out.txt\n") -> JobDefinition:
    return dataclasses.replace(
        read_votable(OPUS_1), name=name, script=script, parameters=[ParameterDef("x")]
    )


# -- registry -----------------------------------------------------------------------------


def test_load_all_skips_bad_files_and_keeps_serving(sandbox: Path) -> None:
    (sandbox / "broken_vot.xml").write_bytes(b"<VOTABLE><RESOURCE")
    (sandbox / "evil_vot.xml").write_bytes(EVIL)
    (sandbox / "other_vot.xml").write_bytes(OPUS_2)  # names test_activity_2
    (sandbox / "test_activity_1.xml").write_bytes(OPUS_1)  # duplicate of the _vot.xml
    (sandbox / "notes.txt").write_text("not a definition")
    before = tree(sandbox.parent.parent.parent)
    registry = JobDefinitionRegistry(sandbox, reload_interval=None)
    assert registry.load_all() == ["test_activity_1", "test_activity_2"]
    errors = {e.file: e.reason for e in registry.errors}
    assert set(errors) == {"broken_vot.xml", "evil_vot.xml", "other_vot.xml", "test_activity_1.xml"}
    assert "not well-formed" in errors["broken_vot.xml"]
    assert "'../../evil' is not a letter" in errors["evil_vot.xml"]
    assert "does not match the file name" in errors["other_vot.xml"]
    assert "test_activity_1_vot.xml defines" in errors["test_activity_1.xml"]
    assert tree(sandbox.parent.parent.parent) == before


def test_get_names_all_return_copies(sandbox: Path) -> None:
    registry = JobDefinitionRegistry(sandbox, reload_interval=None)
    registry.load_all()
    assert registry.names() == ["test_activity_1", "test_activity_2"]
    assert [d.name for d in registry.all()] == registry.names()
    got = registry.get("test_activity_2")
    assert got.used[0].url == "file://$ID" and "test_activity_2" in registry
    got.script = "rm -rf /"
    registry.all()[0].parameters.clear()
    assert registry.get("test_activity_2").script.startswith("sleep 10")
    assert registry.get("test_activity_1").parameters
    with pytest.raises(NotFound, match="no job definition named 'nope'"):
        registry.get("nope")


def test_save_update_history_delete(sandbox: Path) -> None:
    registry = JobDefinitionRegistry(sandbox, reload_interval=None)
    registry.load_all()
    v1 = new_definition()
    assert registry.save(v1) is True
    stored = sandbox / "new_job_vot.xml"
    assert read_votable(stored.read_bytes()) == v1
    assert registry.history("new_job") == []
    assert registry.save(v1) is False  # identical: no new version
    assert registry.history("new_job") == []
    v2 = new_definition(script="echo two > out.txt\n")
    assert registry.save(v2) is False
    assert registry.get("new_job").script == v2.script
    (entry,) = registry.history("new_job")
    assert read_votable(registry.history_version("new_job", entry.timestamp)) == v1
    registry.delete("new_job")
    assert not stored.exists()
    with pytest.raises(NotFound):
        registry.get("new_job")
    history = registry.history("new_job")
    assert len(history) == 2
    assert read_votable(registry.history_version("new_job", history[0].timestamp)) == v2
    with pytest.raises(NotFound):
        registry.delete("new_job")
    for bad in ("../x", "20250101T000000.000000Z/../../x", ""):
        with pytest.raises(NotFound):
            registry.history_version("new_job", bad)
    with pytest.raises(NotFound):
        registry.history("never_existed")
    assert sorted(os.listdir(sandbox)) == [
        HISTORY_DIR,
        "test_activity_1_vot.xml",
        "test_activity_2_vot.xml",
    ]  # no temporary files left


def test_save_refuses_invalid_definitions_before_writing(sandbox: Path) -> None:
    registry = JobDefinitionRegistry(sandbox, reload_interval=None)
    registry.load_all()
    root = sandbox.parent.parent.parent
    before = tree(root)
    evil = read_votable(EVIL, check=False)
    with pytest.raises(DefinitionError) as err:
        registry.save(evil)
    assert err.value.problems[0][0] == "name"
    bad = dataclasses.replace(new_definition(), script="", execution_duration=-3)
    with pytest.raises(DefinitionError) as err:
        registry.save(bad)
    assert [f for f, _ in err.value.problems] == ["script", "execution_duration"]
    for name in ("../../evil", "..", "a/b", "x y", ".hidden"):
        with pytest.raises(DefinitionError):
            registry.save(dataclasses.replace(new_definition(), name=name))
        with pytest.raises(NotFound):
            registry.delete(name)
    assert tree(root) == before
    assert not (root / "evil_vot.xml").exists() and not (root / "a" / "evil_vot.xml").exists()


def test_reload_on_change(sandbox: Path) -> None:
    registry = JobDefinitionRegistry(sandbox, reload_interval=0)
    registry.load_all()
    hand_made = new_definition("hand_made")
    (sandbox / "hand_made.xml").write_bytes(write_votable(hand_made))
    assert registry.get("hand_made") == dataclasses.replace(
        hand_made, source_file=str(sandbox / "hand_made.xml")
    )
    edited = new_definition("hand_made", script="echo edited\n")
    (sandbox / "hand_made.xml").write_bytes(write_votable(edited))
    assert registry.get("hand_made").script == "echo edited\n"
    (sandbox / "hand_made.xml").write_bytes(b"oops")
    assert "hand_made" not in registry
    assert [e.file for e in registry.errors] == ["hand_made.xml"]
    (sandbox / "hand_made.xml").write_bytes(write_votable(edited))
    # Saving replaces the hand-made <name>.xml by <name>_vot.xml and keeps it in history.
    assert registry.save(new_definition("hand_made", script="echo saved\n")) is False
    assert not (sandbox / "hand_made.xml").exists()
    assert len(registry.history("hand_made")) == 1
    (sandbox / "hand_made_vot.xml").unlink()
    assert "hand_made" not in registry and registry.errors == []


def test_concurrent_saves_and_reads(sandbox: Path) -> None:
    registry = JobDefinitionRegistry(sandbox, reload_interval=0)
    registry.load_all()
    failures: list[BaseException] = []
    scripts = {f"echo {t}-{i}\n" for t in range(4) for i in range(5)}

    def writer(t: int) -> None:
        try:
            for i in range(5):
                registry.save(new_definition("shared", script=f"echo {t}-{i}\n"))
        except BaseException as exc:  # reported below
            failures.append(exc)

    def reader() -> None:
        try:
            for _ in range(50):
                if "shared" in registry:
                    assert registry.get("shared").script in scripts
                assert "test_activity_1" in registry.names()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert read_votable_file(sandbox / "shared_vot.xml").script in scripts
    assert len(registry.history("shared")) == len(scripts) - 1


# -- HTTP routes ---------------------------------------------------------------------------

USERS = {
    "op": User("op", "", roles=("operator",)),
    "root": User("root", "", is_admin=True),
    "alice": User("alice", "", roles=("user",)),
}


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


def make_app(registry: JobDefinitionRegistry, anonymous_can_list: bool = True) -> bottle.Bottle:
    def authenticate(required: bool) -> User:
        user = bottle.request.get_header("X-User")
        if user in USERS:
            return USERS[user]
        if required or not anonymous_can_list:
            raise AuthenticationRequired("log in first")
        return ANONYMOUS

    app = bottle.Bottle()
    app.install(error_plugin)
    register_jdl_routes(app, registry, authenticate)
    return app


def call(
    app: bottle.Bottle,
    method: str,
    path: str,
    body: bytes = b"",
    user: str | None = None,
    content_type: str | None = None,
) -> Response:
    """A WSGI request without a server."""
    environ: dict[str, object] = {}
    setup_testing_defaults(environ)
    environ.update(
        REQUEST_METHOD=method,
        PATH_INFO=path,
        CONTENT_LENGTH=str(len(body)),
        **{"wsgi.input": io.BytesIO(body)},
    )
    if content_type:
        environ["CONTENT_TYPE"] = content_type
    if user:
        environ["HTTP_X_USER"] = user
    started: dict[str, object] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: object = None):
        started.update(status=int(status.split()[0]), headers=dict(headers))

    chunks = app(environ, start_response)
    data = b"".join(chunks)
    return Response(started["status"], started["headers"], data)  # type: ignore[arg-type]


def multipart(data: bytes, filename: str = "def_vot.xml") -> tuple[bytes, str]:
    prepared = requests.Request(
        "POST", "http://x/jdl", files={"file": (filename, data, "text/xml")}
    ).prepare()
    return prepared.body, prepared.headers["Content-Type"]  # type: ignore[return-value]


@pytest.fixture
def api(sandbox: Path) -> Iterator[tuple[bottle.Bottle, JobDefinitionRegistry]]:
    registry = JobDefinitionRegistry(sandbox, reload_interval=None)
    registry.load_all()
    yield make_app(registry), registry


def test_reading_routes(api: tuple[bottle.Bottle, JobDefinitionRegistry]) -> None:
    app, registry = api
    r = call(app, "GET", "/jdl")
    assert r.status == 200 and r.headers["Content-Type"].startswith("application/json")
    listing = r.json()
    assert [(d["name"], d["parameters"], d["used"]) for d in listing] == [
        ("test_activity_1", 1, 0),
        ("test_activity_2", 1, 1),
    ]
    assert listing[0]["description"] == "Job for tests, simply copies input text in a file"
    r = call(app, "GET", "/jdl/test_activity_2")
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("application/x-votable+xml")
    assert read_votable(r.body) == dataclasses.replace(
        registry.get("test_activity_2"), source_file=None
    )
    r = call(app, "GET", "/jdl/test_activity_2/json")
    assert from_json(r.json()) == read_votable(OPUS_2)
    r = call(app, "GET", "/jdl/test_activity_1/script")
    assert r.body == b"sleep 10\necho $text > $output\n"
    for path in ("/jdl/nope", "/jdl/nope/json", "/jdl/..", "/jdl/%2e%2e"):
        r = call(app, "GET", path)
        assert r.status == 404 and b"no job definition" in r.body
    closed = make_app(registry, anonymous_can_list=False)
    assert call(closed, "GET", "/jdl").status == 401
    assert call(closed, "GET", "/jdl", user="alice").status == 200


def test_sbatch_options_are_shown_to_operators_only(
    api: tuple[bottle.Bottle, JobDefinitionRegistry],
) -> None:
    app, registry = api
    registry.save(dataclasses.replace(new_definition("slurm_job"), sbatch_options=["--mem=8G"]))
    assert call(app, "GET", "/jdl/slurm_job/json", user="op").json()["sbatch_options"] == [
        "--mem=8G"
    ]
    assert "sbatch_options" not in call(app, "GET", "/jdl/slurm_job/json", user="alice").json()
    assert read_votable(call(app, "GET", "/jdl/slurm_job").body).sbatch_options == []
    assert read_votable(call(app, "GET", "/jdl/slurm_job", user="root").body).sbatch_options


def test_upload_in_every_form(api: tuple[bottle.Bottle, JobDefinitionRegistry]) -> None:
    app, registry = api
    body, ctype = multipart(write_votable(new_definition("uploaded")))
    r = call(app, "POST", "/jdl", body, "op", ctype)
    assert r.status == 201, r.body
    assert r.json() == {"name": "uploaded", "created": True, "href": "/jdl/uploaded"}
    assert r.headers["Location"] == "/jdl/uploaded"
    assert registry.get("uploaded").parameters == [ParameterDef("x")]
    raw = write_votable(new_definition("uploaded", script="echo raw\n"))
    r = call(app, "POST", "/jdl", raw, "op", "application/x-votable+xml")
    assert (r.status, r.json()["created"]) == (200, False)
    assert registry.get("uploaded").script == "echo raw\n"
    as_json = json.dumps(to_json(new_definition("uploaded", script="echo json\n"))).encode()
    r = call(app, "POST", "/jdl", as_json, "root", "application/json")
    assert r.status == 200 and registry.get("uploaded").script == "echo json\n"
    r = call(app, "POST", "/jdl", OPUS_2.replace(b"sleep 10", b"sleep 1"), "op")  # sniffed
    assert r.status == 200 and registry.get("test_activity_2").script.startswith("sleep 1\n")
    body, ctype = multipart(as_json.replace(b"echo json", b"echo jf"), "def.json")
    assert call(app, "POST", "/jdl", body, "op", ctype).status == 200
    assert registry.get("uploaded").script == "echo jf\n"
    assert len(call(app, "GET", "/jdl/uploaded/history", user="op").json()) == 3


def test_writes_need_the_operator_role(api: tuple[bottle.Bottle, JobDefinitionRegistry]) -> None:
    app, registry = api
    raw = write_votable(new_definition("sneaky"))
    assert call(app, "POST", "/jdl", raw, None, "text/xml").status == 401
    r = call(app, "POST", "/jdl", raw, "alice", "text/xml")
    assert r.status == 403 and b"operator" in r.body
    assert call(app, "DELETE", "/jdl/test_activity_1", user="alice").status == 403
    assert call(app, "GET", "/jdl/test_activity_1/history", user="alice").status == 403
    assert registry.names() == ["test_activity_1", "test_activity_2"]


def test_bad_uploads_get_clear_4xx(
    api: tuple[bottle.Bottle, JobDefinitionRegistry], sandbox: Path
) -> None:
    app, registry = api
    root = sandbox.parent.parent.parent
    before = tree(root)
    r = call(app, "POST", "/jdl", EVIL, "op", "application/x-votable+xml")
    assert r.status == 400 and r.headers["Content-Type"].startswith("application/json")
    assert r.json()["errors"][0]["field"] == "name"
    bad = json.dumps({"name": "x y", "script": "", "parameters": [{"name": "p", "datatype": "n"}]})
    r = call(app, "POST", "/jdl", bad.encode(), "op", "application/json")
    assert r.status == 400
    assert [e["field"] for e in r.json()["errors"]] == [
        "name",
        "script",
        "parameters[0].datatype",
    ]
    r = call(app, "POST", "/jdl", b'{"name": "x", "nope": 1}', "op", "application/json")
    assert r.json() == {"errors": [{"field": "nope", "reason": "unknown field"}]}
    r = call(app, "POST", "/jdl", b"<VOTABLE", "op", "text/xml")
    assert r.status == 400 and r.json()["errors"][0]["field"] == "xml"
    r = call(app, "POST", "/jdl", b"{not json", "op", "application/json")
    assert r.status == 400 and r.body.startswith(b"request body: not valid JSON")
    assert call(app, "POST", "/jdl", b"", "op", "text/xml").status == 400
    assert (
        call(app, "POST", "/jdl", b"a=b", "op", "application/x-www-form-urlencoded").status == 415
    )
    body, ctype = multipart(OPUS_1)
    assert (
        call(app, "POST", "/jdl", body.replace(b'name="file"', b'name="f"'), "op", ctype).status
        == 400
    )
    huge = b"<VOTABLE>" + b" " * (5 * 1024 * 1024) + b"</VOTABLE>"
    assert call(app, "POST", "/jdl", huge, "op", "text/xml").status == 413
    assert tree(root) == before
    assert registry.names() == ["test_activity_1", "test_activity_2"]


def test_validate_route(api: tuple[bottle.Bottle, JobDefinitionRegistry], sandbox: Path) -> None:
    app, registry = api
    before = tree(sandbox)
    good = write_votable(new_definition("candidate"))
    r = call(app, "POST", "/jdl/candidate/validate", good, "alice", "text/xml")
    assert (r.status, r.json()) == (200, {"valid": True})
    r = call(app, "POST", "/jdl/other/validate", good, "alice", "text/xml")
    assert r.status == 400 and r.json()["errors"][0]["field"] == "name"
    bad = write_votable(dataclasses.replace(new_definition("candidate"), quote=-1))
    r = call(app, "POST", "/jdl/candidate/validate", bad, "alice", "text/xml")
    assert r.status == 400
    assert r.json() == {
        "valid": False,
        "errors": [{"field": "quote", "reason": "must not be negative"}],
    }
    r = call(app, "POST", "/jdl/candidate/validate", b"{oops", "alice", "application/json")
    assert r.status == 400 and r.json()["errors"][0]["field"] == "body"
    assert call(app, "POST", "/jdl/test_activity_1/validate", b"", "alice").json() == {
        "valid": True
    }
    assert call(app, "POST", "/jdl/candidate/validate", good).status == 401
    assert tree(sandbox) == before and "candidate" not in registry


def test_delete_and_history_routes(api: tuple[bottle.Bottle, JobDefinitionRegistry]) -> None:
    app, registry = api
    r = call(app, "DELETE", "/jdl/test_activity_1", user="op")
    assert (r.status, r.json()) == (200, {"name": "test_activity_1", "deleted": True})
    assert call(app, "GET", "/jdl/test_activity_1").status == 404
    assert call(app, "DELETE", "/jdl/test_activity_1", user="op").status == 404
    (entry,) = call(app, "GET", "/jdl/test_activity_1/history", user="op").json()
    r = call(app, "GET", entry["href"], user="op")
    assert r.status == 200 and r.body == OPUS_1
    assert call(app, "GET", "/jdl/test_activity_1/history/../../x", user="op").status == 404
    # Restoring the old version through the API brings it back.
    assert call(app, "POST", "/jdl", r.body, "op", "text/xml").status == 201
    assert registry.get("test_activity_1").script == "sleep 10\necho $text > $output\n"


def test_unexpected_errors_become_a_bare_500(sandbox: Path) -> None:
    def authenticate(required: bool) -> User:
        raise RuntimeError("secret detail")

    app = bottle.Bottle()
    app.install(error_plugin)
    register_jdl_routes(app, JobDefinitionRegistry(sandbox), authenticate)
    r = call(app, "GET", "/jdl")
    assert (r.status, r.body.strip()) == (500, b"internal server error")


def test_over_a_real_server(api: tuple[bottle.Bottle, JobDefinitionRegistry]) -> None:
    app, registry = api
    server = WSGIServer(app, "127.0.0.1", 0, threads=2, timeout=10)
    thread = server.start_in_thread()
    try:
        base = f"http://127.0.0.1:{server.port}"
        data = write_votable(new_definition("via_http"))
        r = requests.post(
            f"{base}/jdl",
            files={"file": ("via_http_vot.xml", data)},
            headers={"X-User": "op"},
            timeout=10,
        )
        assert r.status_code == 201, r.text
        r = requests.get(f"{base}/jdl/via_http", timeout=10)
        assert read_votable(r.content).name == "via_http"
        assert "via_http" in [d["name"] for d in requests.get(f"{base}/jdl", timeout=10).json()]
    finally:
        server.stop()
        thread.join(timeout=10)
    assert not thread.is_alive()
