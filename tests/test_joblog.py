"""Log lines about a job carry its context: id, owner, definition (issue 14.7).

``uws_server.joblog.job_log`` binds them; these tests check the binding (also for lines
that only have the job's id), and that no module of the service writes a line about a
job by hand (``log.info("job %s ...", job_id)``), which would carry the id alone.
"""

from __future__ import annotations

import ast
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import LiveServer
from uws_server import joblog
from uws_server.common import PROJECT_ROOT
from uws_server.joblog import job_log, remember

LEVELS = {"debug", "info", "warning", "error", "exception", "critical", "log"}
# A line about one job written with a plain logger: its id in the text, nothing bound.
BY_HAND = re.compile(r"\bjob %[sr]|^%[sr]: |\bof %[sr]\b", re.IGNORECASE)
SCOPE = [
    p for p in sorted((PROJECT_ROOT / "uws_server").rglob("*.py")) if "migrations" not in p.parts
]


@dataclass
class _Job:
    job_id: str
    jobname: str
    owner: str


def _line(
    logger: logging.Logger, job: object, caplog: pytest.LogCaptureFixture
) -> logging.LogRecord:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=logger.name):
        job_log(logger, job).info("started %s", "now")  # type: ignore[arg-type]
    (record,) = caplog.records
    return record


def test_a_line_carries_the_job_context_in_text_and_attributes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("uws_server.test_joblog")
    record = _line(logger, _Job("J1", "echo_job", "alice"), caplog)
    assert record.getMessage() == "job J1 [owner=alice definition=echo_job]: started now"
    assert (record.job_id, record.owner, record.definition) == ("J1", "alice", "echo_job")  # type: ignore[attr-defined]


def test_a_line_with_only_the_id_gets_the_remembered_context(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Managers and the notifier name a job by id: the context the lifecycle saw when it
    started the job is bound all the same; an id never seen gets ``-``; the memory is
    bounded (oldest forgotten first)."""
    logger = logging.getLogger("uws_server.test_joblog")
    monkeypatch.setattr(joblog, "KEEP", 3)
    monkeypatch.setattr(joblog, "_known", type(joblog._known)())
    remember(_Job("J2", "maps", "bob"))
    record = _line(logger, "J2", caplog)
    assert record.getMessage() == "job J2 [owner=bob definition=maps]: started now"
    assert record.owner == "bob"  # type: ignore[attr-defined]
    assert _line(logger, "J9", caplog).getMessage() == "job J9 [owner=- definition=-]: started now"
    for i in range(3):
        remember(_Job(f"K{i}", "echo_job", "carol"))
    assert _line(logger, "J2", caplog).owner == "-"  # type: ignore[attr-defined]
    assert _line(logger, "K0", caplog).owner == "carol"  # type: ignore[attr-defined]


def _hand_written_job_lines(source: str, name: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in LEVELS
            and isinstance(node.func.value, ast.Name)  # log.info(...), not job_log(...).info
            and node.args
        ):
            continue
        first = node.args[1] if node.func.attr == "log" and len(node.args) > 1 else node.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            if BY_HAND.search(first.value):
                found.append(f"{name}:{node.lineno}: {first.value}")
    return found


def test_no_line_about_a_job_is_written_by_hand() -> None:
    found = []
    for path in SCOPE:
        found += _hand_written_job_lines(path.read_text(), str(path.relative_to(PROJECT_ROOT)))
    assert found == []


def test_the_source_check_can_fail() -> None:
    source = (
        "log.warning('job %s: lost', job_id)\n"
        "logger.info('%s: unreadable status file', d)\n"
        "log.info('provenance of %s written', job_id)\n"
        "job_log(log, job).info('fine %s', x)\n"
        "log.info('recovering %d job(s)', n)\n"
    )
    assert [line.split(": ", 1)[0] for line in _hand_written_job_lines(source, "m")] == [
        "m:1",
        "m:2",
        "m:3",
    ]
    assert len(SCOPE) > 40 and all(isinstance(p, Path) for p in SCOPE)


@pytest.mark.in_process
def test_a_job_run_through_the_service_logs_with_its_context(
    live: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The lifecycle's own lines (finished, deleted) and a line that only has the id
    (as the managers and the notifier write) all carry the owner and definition."""
    alice = live.client("alice")
    with caplog.at_level(logging.INFO, logger="uws_server"):
        job = alice.create("echo_job", {"PHASE": "RUN"})
        assert alice.wait_final(job) == "COMPLETED"
        job_id = job.rsplit("/", 1)[1]
        job_log(logging.getLogger("uws_server.managers.local"), job_id).info("by id")
        assert alice.delete(job).status_code in (200, 303)
    context = f"job {job_id} [owner=alice definition=echo_job]: "
    lines = [r.getMessage() for r in caplog.records if job_id in r.getMessage()]
    for wanted in ("finished: COMPLETED", "by id", "deleted"):
        assert context + wanted in lines, lines
    assert all(line.startswith(context) for line in lines), lines


def test_the_runner_names_its_job_on_every_line(tmp_path: Path) -> None:
    """The job side too (``workers.logs.bind_job``): a runner whose server is down says
    so with the job's id, owner and definition, in the service's format."""
    import os
    import socket
    import subprocess
    import sys

    from uws_server.managers.base import JobSpec, write_spec

    with socket.socket() as s:  # a port nothing listens on any more
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    (job_dir / "parameters.json").write_text("{}")
    (job_dir / "script.sh").write_text("true\n")
    spec = JobSpec("J7", "echo_job", job_dir, "true\n", {}, owner="alice")
    spec.callback_url, spec.callback_token = f"http://127.0.0.1:{port}/callback", "t"
    write_spec(spec)
    proc = subprocess.run(
        [sys.executable, "-S", "-P", "-m", "workers.node", str(job_dir), "--callback-retry", "0"],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if " runner " in line]
    assert lines, proc.stderr
    assert all("job J7 [owner=alice definition=echo_job]: " in line for line in lines), lines
    assert any("final event not delivered" in line for line in lines), lines
