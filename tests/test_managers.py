"""Adding an executor is one module and one registry entry (issue 14, part 4).

A third manager, written here as a test double of what a new executor module would be,
is registered in the test and runs jobs through the whole service: settings, the app,
the lifecycle, result collection and provenance know nothing of it but what the class
says about itself (``name``, ``remote``, ``run_id_key``, ``options_for``).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LiveServer, make_settings
from uws_server import managers
from uws_server.common import PROJECT_ROOT, utcnow
from uws_server.jobdef import JobDefinition
from uws_server.managers.base import JobSink, JobSpec, Manager
from uws_server.models import Job, Phase, WorkerEvent
from uws_server.worker_events import final_status, status_to_event
from workers.jobdir import SCRIPT_FILE, SPEC_FILE, prepare_environment, prepare_job_dir


class InlineManager(Manager):
    """Runs each job's script in a thread of the server, with the shared job rules."""

    name = "inline"
    run_id_key = "inline_run"

    def __init__(self, sink: JobSink, settings: Any) -> None:
        super().__init__(sink)
        self.settings = settings
        self.threads: list[threading.Thread] = []

    def options_for(self, defn: JobDefinition) -> dict[str, Any]:
        return {"label": f"inline run of {defn.name}"}

    def submit(self, spec: JobSpec) -> None:
        thread = threading.Thread(target=self._run, args=(spec,), daemon=True)
        self.threads.append(thread)
        thread.start()

    def _run(self, spec: JobSpec) -> None:
        run_id = f"run-{spec.job_id}"
        prepare_job_dir(spec)
        start = utcnow()
        self.sink.report(spec.job_id, WorkerEvent(Phase.EXECUTING, external_id=run_id))
        proc = subprocess.run(
            ["bash", SCRIPT_FILE], cwd=spec.job_dir, env=prepare_environment(spec), check=False
        )
        status = final_status(
            spec,
            exit_code=proc.returncode,
            signal=None,
            reason=None,
            start_time=start,
            end_time=utcnow(),
            context={self.run_id_key: run_id},
        )
        self.sink.report(spec.job_id, status_to_event(status, external_id=run_id))

    def abort(self, job: Job) -> None:
        self.sink.report(job.job_id, WorkerEvent(Phase.ABORTED, error="aborted"))

    def recover(self, jobs: list[Job], specs: dict[str, JobSpec]) -> None:
        for job in jobs:
            self.sink.report(job.job_id, WorkerEvent(Phase.ERROR, error="lost on restart"))


@pytest.fixture
def inline_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(managers.REGISTRY, "inline", InlineManager)


@pytest.fixture
def inline_live(tmp_path: Path, inline_registered: None) -> Iterator[LiveServer]:
    server = LiveServer(make_settings(tmp_path, manager="inline"))
    server.add_user("alice")
    yield server
    server.stop()


def test_a_registered_manager_runs_jobs_through_the_service(inline_live: LiveServer) -> None:
    assert isinstance(inline_live.service.lifecycle.manager, InlineManager)
    alice = inline_live.client("alice")
    job = alice.create("echo_job", {"text": "from-the-third-manager", "PHASE": "RUN"})
    assert alice.wait_final(job) == "COMPLETED"
    job_id = job.rsplit("/", 1)[1]
    assert alice.get(f"{job}/results/output").text.startswith("from-the-third-manager")
    # The manager's own options went into job.json, nothing of Slurm's.
    spec = json.loads((inline_live.settings.jobs_dir / job_id / SPEC_FILE).read_text())
    assert spec["manager_options"] == {"label": "inline run of echo_job"}
    assert "sbatch_options" not in spec and spec["owner"] == "alice"
    stored = inline_live.service.store.get_job(job_id)
    assert stored is not None and stored.manager == "inline"
    assert stored.external_id == f"run-{job_id}"
    # Provenance names the run by the key the manager declared.
    deadline = time.monotonic() + 30
    prov = alice.get(f"{job}/provenance/provn")
    while prov.status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
        prov = alice.get(f"{job}/provenance/provn")
    assert prov.status_code == 200, prov.text
    assert f"inline_run={job_id}" not in prov.text  # the run id, not the job id
    assert f"inline_run=run-{job_id}" in prov.text


def test_the_manager_setting_is_checked_against_the_registry(
    tmp_path: Path, inline_registered: None
) -> None:
    assert make_settings(tmp_path, manager="inline").manager == "inline"
    with pytest.raises(ValueError, match="'inline' or 'local' or 'slurm', not 'nosuch'"):
        make_settings(tmp_path, manager="nosuch")
    assert managers.manager_class("inline") is InlineManager
    assert managers.manager_class("gone") is None  # a job of an executor since removed


def test_unregistered_names_are_refused_by_create(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown manager 'inline'"):
        managers.create("inline", sink=None, settings=None)  # type: ignore[arg-type]


def test_the_built_in_managers_declare_their_specifics() -> None:
    local, slurm = managers.manager_class("local"), managers.manager_class("slurm")
    assert local is not None and slurm is not None
    assert (local.remote, local.run_id_key) == (False, "pid")
    assert (slurm.remote, slurm.run_id_key) == (True, "slurm_job_id")
    defn = JobDefinition(name="d", script="true", sbatch_options=["--mem=1G"])
    assert slurm.options_for(slurm.__new__(slurm), defn) == {"sbatch": ["--mem=1G"]}
    assert local.options_for(local.__new__(local), defn) == {}


def test_log_lines_about_a_job_carry_its_context(
    inline_live: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    """One format for every line about a job: id, owner and definition, also as the
    record's attributes."""
    alice = inline_live.client("alice")
    job = alice.create("echo_job", {"PHASE": "RUN"})
    assert alice.wait_final(job) == "COMPLETED"
    job_id = job.rsplit("/", 1)[1]
    with caplog.at_level(logging.INFO, logger="uws_server.lifecycle"):
        late = WorkerEvent(Phase.EXECUTING)
        assert inline_live.service.lifecycle.report(job_id, late) is False
    (record,) = [r for r in caplog.records if "ignored" in r.getMessage()]
    assert record.getMessage() == (
        f"job {job_id} [owner=alice definition=echo_job]: ignored COMPLETED -> EXECUTING"
    )
    assert (record.job_id, record.owner, record.definition) == (job_id, "alice", "echo_job")  # type: ignore[attr-defined]


def test_the_sbatch_option_rules_are_the_slurm_managers_own() -> None:
    """A definition's ``#SBATCH`` lines are checked by the Slurm manager's own module
    (``managers/slurm_options.py``, where ``option_argv`` also lives), and checking a
    definition imports neither the Slurm manager nor its command-line layer."""
    code = (
        "import sys\n"
        "from uws_server.jdl.validate import validate\n"
        "from uws_server.jobdef import JobDefinition\n"
        "d = JobDefinition(name='d', script='true', sbatch_options=['--mem 8G', '-vW', '-o x'])\n"
        "print(sorted(validate(d)))\n"
        "print(sorted(m for m in sys.modules if m.startswith('uws_server.managers.')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    problems, loaded = out.stdout.splitlines()
    assert "('sbatch_options[1]', '-W is set by the service itself or breaks tracking')" in problems
    assert "('sbatch_options[2]', '-o is set by the service itself or breaks tracking')" in problems
    assert "sbatch_options[0]" not in problems
    assert loaded == "['uws_server.managers.slurm_options']"
    from uws_server.managers.slurm_options import option_argv

    assert option_argv("--mem 8G") == ["--mem", "8G"] and option_argv("-c4") == ["-c4"]


def manager_names_tested(source: str, names: set[str]) -> list[int]:
    """Lines of ``source`` comparing something with a manager's name (``== "slurm"``,
    ``in ("local", ...)``, ``!= 'local'``): what a registry makes unnecessary."""
    import ast

    def named(node: ast.AST) -> bool:
        if isinstance(node, ast.Constant):
            return node.value in names
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return any(named(e) for e in node.elts)
        return False

    return sorted(
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Compare) and any(named(n) for n in [node.left, *node.comparators])
    )


def test_no_module_outside_the_managers_tests_a_manager_name() -> None:
    """Adding an executor is one module and one registry entry (issue 14.4): no module
    of the service outside ``uws_server/managers/`` compares a value with a manager's
    name; it asks the registry or the manager class."""
    names = set(managers.names())
    found = [
        f"{path.relative_to(PROJECT_ROOT)}:{line}"
        for path in sorted((PROJECT_ROOT / "uws_server").rglob("*.py"))
        if "managers" not in path.relative_to(PROJECT_ROOT).parts
        for line in manager_names_tested(path.read_text(), names)
    ]
    assert found == []
    sample = "if m == 'slurm': pass\nif x in ('local', 'other'): pass\nmanager = 'local'\n"
    assert manager_names_tested(sample, names) == [1, 2]  # the check can fail
