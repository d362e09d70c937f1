"""The real services the test suite relies on: Slurm, PostgreSQL, headless Chromium.

Started by ``scripts/run_tests.sh`` (``slurm_start.sh``, ``pg_start.sh``). With
``UWS_REQUIRE_SERVICES`` set (the test command sets it) a missing service is a failure;
otherwise the test is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("UWS_CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
FINAL_SLURM_STATES = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
    "PREEMPTED",
}


def service_missing(reason: str) -> None:
    """Fail when the services are required (UWS_REQUIRE_SERVICES), else skip."""
    if os.environ.get("UWS_REQUIRE_SERVICES"):
        pytest.fail(f"required service missing: {reason}", pytrace=False)
    pytest.skip(reason)


def _run(*cmd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def _slurm_job_state(job_id: str) -> str:
    out = _run("squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T").stdout.strip()
    if out:
        return out.splitlines()[0].strip()
    # squeue may not list it (yet or any more): ask scontrol.
    show = _run("scontrol", "show", "job", "-o", job_id).stdout
    for field in show.split():
        if field.startswith("JobState="):
            return field.split("=", 1)[1]
    return ""


def test_slurm_runs_a_batch_job(tmp_path: Path) -> None:
    for tool in ("sbatch", "squeue", "scontrol"):
        if shutil.which(tool) is None:
            service_missing(f"Slurm client '{tool}' not on PATH (scripts/install_test_deps.sh)")
    ping = _run("scontrol", "ping")
    if "is UP" not in ping.stdout:
        service_missing(
            "slurmctld does not answer 'scontrol ping' (scripts/slurm_start.sh): "
            + (ping.stdout + ping.stderr).strip()
        )

    out_file = tmp_path / "hello.txt"
    submit = _run(
        "sbatch",
        "--parsable",
        "--job-name=uws-test-infra",
        f"--chdir={tmp_path}",
        f"--output={tmp_path / 'slurm-%j.out'}",
        "--wrap",
        f"echo hi > {out_file}",
    )
    assert submit.returncode == 0, f"sbatch failed: {submit.stderr}"
    job_id = submit.stdout.strip().split(";")[0]
    assert job_id.isdigit(), f"sbatch --parsable printed {submit.stdout!r}"

    deadline = time.monotonic() + 60
    state = ""
    try:
        while time.monotonic() < deadline:
            state = _slurm_job_state(job_id)
            if state in FINAL_SLURM_STATES:
                break
            time.sleep(0.2)
    finally:
        if state not in FINAL_SLURM_STATES:
            _run("scancel", job_id)
    detail = _run("scontrol", "show", "job", "-o", job_id).stdout.strip()
    assert state == "COMPLETED", f"job {job_id} ended {state or 'unknown'}: {detail}"
    assert "ExitCode=0:0" in detail
    assert out_file.read_text() == "hi\n"


def test_postgresql_accepts_sqlalchemy_connection() -> None:
    url = os.environ.get("UWS_TEST_DATABASE_URL")
    if not url:
        service_missing("UWS_TEST_DATABASE_URL not set (scripts/pg_start.sh prints it)")
    sqlalchemy = pytest.importorskip("sqlalchemy")

    engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 5})
    try:
        try:
            conn = engine.connect()
        except sqlalchemy.exc.OperationalError as exc:
            service_missing(f"cannot connect to PostgreSQL at {url}: {exc.orig}")
        with conn:
            assert conn.execute(sqlalchemy.text("SELECT 1")).scalar_one() == 1
            version = conn.execute(sqlalchemy.text("SHOW server_version")).scalar_one()
            assert int(version.split(".")[0]) >= 12
            # The test role can create and use tables in its database.
            conn.execute(sqlalchemy.text("CREATE TEMPORARY TABLE infra_probe (x int)"))
            conn.execute(sqlalchemy.text("INSERT INTO infra_probe VALUES (41), (1)"))
            total = conn.execute(sqlalchemy.text("SELECT sum(x) FROM infra_probe")).scalar_one()
            assert total == 42
    finally:
        engine.dispose()


def test_chromium_headless_loads_a_page() -> None:
    if not os.access(CHROMIUM, os.X_OK):
        service_missing(f"Chromium not found at {CHROMIUM} (Debian package chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        service_missing("playwright is not installed (pip install -e '.[test]')")

    html = "<html><head><title>uws infra probe</title></head><body><p id=t>hi</p></body></html>"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto("data:text/html," + html)
            assert page.title() == "uws infra probe"
            assert page.text_content("#t") == "hi"
        finally:
            browser.close()
