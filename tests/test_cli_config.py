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
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                r = requests.get(f"http://127.0.0.1:{port}/jdl", timeout=2)
                break
            except requests.ConnectionError:
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
