"""The ``uws-server`` command and the settings it reads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port
from tests.timing import MACHINE
from uws_server.config import PROJECT_ROOT, load_settings


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "uws_server", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
        timeout=60,
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = dict(os.environ)
    e["UWS_VAR_DIR"] = str(tmp_path / "var")
    e["UWS_JOBS_DIR"] = str(tmp_path / "var" / "jobs")
    e["UWS_PROVENANCE_DIR"] = str(tmp_path / "prov")
    e.pop("UWS_DATABASE_URL", None)
    return e


def test_user_commands(env: dict[str, str]) -> None:
    added = run_cli("user", "add", "alice", "--roles", "operator", env=env)
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    assert len(token) >= 40
    again = run_cli("user", "add", "alice", env=env)
    assert again.returncode == 1 and "exists" in again.stderr
    listed = run_cli("user", "list", env=env)
    assert "alice" in listed.stdout and "operator" in listed.stdout
    new = run_cli("user", "token", "alice", env=env).stdout.strip()
    assert new and new != token
    assert run_cli("user", "disable", "alice", env=env).returncode == 0
    assert "disabled" in run_cli("user", "list", env=env).stdout
    assert run_cli("user", "disable", "nobody", env=env).returncode == 1
    assert run_cli("user", "add", env=env).returncode == 2


def test_settings_environment_overrides(tmp_path: Path) -> None:
    s = load_settings(
        PROJECT_ROOT / "settings.yml",
        environ={
            "UWS_PORT": "9123",
            "UWS_ALLOW_ANONYMOUS": "yes",
            "UWS_ALLOWED_FETCH_HOSTS": "a.org, b.org",
        },
    )
    assert s.port == 9123 and s.allow_anonymous is True
    assert s.allowed_fetch_hosts == ["a.org", "b.org"]
    assert s.effective_database_url.startswith("sqlite:///")
    assert s.jobs_dir.is_absolute()
    with pytest.raises(ValueError, match="UWS_PORT|port"):
        load_settings(PROJECT_ROOT / "settings.yml", environ={"UWS_PORT": "eighty"})
    bad = tmp_path / "bad.yml"
    bad.write_text("prot: 1\n")
    with pytest.raises(ValueError, match="unknown settings: prot"):
        load_settings(bad, environ={})
    bad.write_text("manager: cloud\n")
    with pytest.raises(ValueError, match="manager"):
        load_settings(bad, environ={})


def test_serve_starts_on_defaults_and_stops_cleanly(env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    env["UWS_PORT"] = str(port)
    proc = subprocess.Popen(
        [sys.executable, "-m", "uws_server", "serve"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # a start is an interpreter, the service's imports, the migrations and the
        # definitions: the machine's budget, twice (it returns as soon as it answers)
        deadline = time.monotonic() + 2 * MACHINE
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}: {proc.stdout.read()}")
            try:
                r = requests.get(f"http://127.0.0.1:{port}/jdl", timeout=MACHINE)
                break
            except requests.RequestException:
                time.sleep(0.2)
        else:
            pytest.fail("server did not start")
        assert r.status_code == 200  # anonymous listing of definitions is allowed
        assert (
            requests.get(f"http://127.0.0.1:{port}/rest/test_activity_1", timeout=5).status_code
            == 401
        )
        assert (tmp_path / "var" / "uws.sqlite").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "Traceback" not in out


BAD_NAMES = [
    "<script>alert(1)</script>",
    "a<b",
    "alice:secret",
    "bob\n",
    " carol",
    "1st",
    "_x",
    "x" * 65,
    "é",
    "anonymous",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_user_add_refuses_what_the_admin_page_refuses(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 11, class 11: one rule for user names (uws_server.auth.check_user_name),
    the admin page's: markup, ':' (it would split Basic credentials) and the rest are a
    message and exit status 2, never a stored user."""
    from uws_server.auth import check_user_name
    from uws_server.cli import main
    from uws_server.errors import BadRequest

    with pytest.raises(BadRequest):
        check_user_name(name)
    monkeypatch.setenv("UWS_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("UWS_DATABASE_URL", raising=False)
    assert main(["user", "add", name]) == 2
    err = capsys.readouterr().err
    assert "user name" in err and "Traceback" not in err
    assert main(["user", "list"]) == 0
    assert capsys.readouterr().out == ""  # nobody was added
    assert main(["user", "add", "ok.name@site-1", "--roles", "operator"]) == 0
    assert main(["user", "add", "dave", "--roles", "<b>"]) == 2
    assert "roles" in capsys.readouterr().err


def test_concurrent_user_add_of_one_name(env: dict[str, str]) -> None:
    """Issue 11, class 11: processes adding the same name at once: one gets the token,
    every other a one-line 'exists' and exit status 1, none a traceback."""
    assert run_cli("user", "list", env=env).returncode == 0  # the database exists
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "uws_server", "user", "add", "carol"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=PROJECT_ROOT,
        )
        for _ in range(4)
    ]
    outcomes = [(p.wait(60), *p.communicate()) for p in procs]
    assert sorted(rc for rc, _, _ in outcomes) == [0, 1, 1, 1], outcomes
    for rc, out, err in outcomes:
        assert "Traceback" not in err
        if rc == 1:
            assert "exists already" in err and out == ""


def test_a_name_taken_between_check_and_insert_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The race itself, made certain: the check passes, the insert meets the name."""
    from uws_server.cli import main
    from uws_server.storage import Store

    monkeypatch.setenv("UWS_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("UWS_DATABASE_URL", raising=False)
    assert main(["user", "add", "erin"]) == 0
    capsys.readouterr()
    monkeypatch.setattr(Store, "user_by_name", lambda self, name: None)
    assert main(["user", "add", "erin"]) == 1
    captured = capsys.readouterr()
    assert "exists already" in captured.err and "Traceback" not in captured.err
    assert captured.out == ""
