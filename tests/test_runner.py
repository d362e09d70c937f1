"""The worker runner: job files, environment safety, results, status, events, CLI.

Real files and real processes throughout: scripts run under bash, the CLI runs as a
subprocess, callbacks go to a small HTTP server started by the test.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import datetime
from hashlib import sha256
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from uws_server import worker_events
from uws_server.jobdef import EntityDef
from uws_server.managers.base import JobSpec, load_spec, write_spec
from uws_server.models import Phase, Result, WorkerEvent
from workers import jobdir, node
from workers.callbacks import RetryPolicy, callback_endpoint, post_event
from workers.procs import process_state

ROOT = Path(__file__).resolve().parent.parent
OPUS_JDL = ROOT / "job_definitions" / "test_activity_1_vot.xml"
NASTY = [
    "$(touch pwned)",
    "; rm -rf victim ;",
    "`touch pwned`",
    'it\'s "quoted" | cat',
    "&& touch pwned || true",
]


def opus_script(path: Path = OPUS_JDL) -> str:
    """The script of an OPUS JDL, as OPUS stores it (CRLF line ends), without the sleep."""
    ns = {"v": "http://www.ivoa.net/xml/VOTable/v1.3"}
    root = ET.parse(path).getroot()
    for param in root.iter(f"{{{ns['v']}}}PARAM"):
        if param.get("name") == "script":
            return param.get("value", "").replace("sleep 10", "sleep 0")
    raise AssertionError(f"no script in {path}")


def make_spec(tmp_path: Path, script: str, **kw: object) -> JobSpec:
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    params = dict(kw.pop("parameters", {}))  # type: ignore[call-overload]
    (job_dir / "parameters.json").write_text(json.dumps(params))
    (job_dir / "script.sh").write_text(script)
    generated = kw.pop("generated", [EntityDef("output", default="output.txt")])
    spec = JobSpec("job1", "test", job_dir, script, params, generated=generated, **kw)  # type: ignore[arg-type]
    write_spec(spec)
    return spec


def run_bash(spec: JobSpec) -> subprocess.CompletedProcess[bytes]:
    jobdir.prepare_job_dir(spec)
    env = jobdir.prepare_environment(spec)
    return subprocess.run(
        ["bash", "script.sh"], cwd=spec.job_dir, env=env, capture_output=True, timeout=10
    )


def pid_gone(pid: int, within: float = 3.0) -> bool:
    """True once ``pid`` is gone or a zombie (dead, not yet reaped by its parent)."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        if process_state(pid) in (None, "Z", "X"):
            return True
        time.sleep(0.02)
    return False


def wait_for(predicate, within: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + within
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


# --- job.json --------------------------------------------------------------------------


def test_spec_roundtrip_is_private(tmp_path: Path) -> None:
    gen = [EntityDef("output", default="out.txt", content_type="text/plain", multiplicity="*")]
    spec = make_spec(
        tmp_path,
        "true",
        parameters={"a": "1"},
        generated=gen,
        execution_duration=7,
        callback_url="http://x",
        callback_token="secret",
        manager_options={"sbatch": ["--mem=1G"]},
    )
    path = spec.job_dir / jobdir.SPEC_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = load_spec(spec.job_dir)
    assert loaded == spec
    assert loaded.generated[0].multiplicity == "*"
    assert [p.name for p in spec.job_dir.iterdir() if p.name.endswith(".tmp")] == []


# --- environment -----------------------------------------------------------------------


@pytest.mark.parametrize("value", NASTY)
def test_opus_script_values_stay_literal(tmp_path: Path, value: str) -> None:
    (tmp_path / "victim").mkdir()
    spec = make_spec(tmp_path, opus_script(), parameters={"text": value})
    proc = run_bash(spec)
    assert proc.returncode == 0, proc.stderr
    assert (spec.job_dir / "output.txt").read_text() == value + "\n"
    assert not (spec.job_dir / "pwned").exists() and not (tmp_path / "pwned").exists()
    assert (tmp_path / "victim").is_dir()


def test_opus_script_unquoted_glob_and_newline_are_bash_word_splitting(tmp_path: Path) -> None:
    """OPUS writes ``echo $text``: bash splits and globs the *value*, but never runs it.

    A ``*`` becomes the job directory's file names and a newline a space: that is the
    script's (unquoted) choice, not an injection. Quoted scripts keep them (next test).
    """
    spec = make_spec(tmp_path, opus_script(), parameters={"text": "* $(touch pwned)\nx"})
    names = " ".join(sorted(os.listdir(spec.job_dir)))  # before the script creates output
    assert names == "job.json parameters.json script.sh"
    assert run_bash(spec).returncode == 0
    assert (spec.job_dir / "output.txt").read_text() == f"{names} $(touch pwned) x\n"
    assert not (spec.job_dir / "pwned").exists()


@pytest.mark.parametrize("value", ["*", "line1\nline2", "  two  spaces ", "-n", "a\\tb $HOME"])
def test_quoted_script_keeps_every_character(tmp_path: Path, value: str) -> None:
    spec = make_spec(tmp_path, 'printf "%s" "$text" > "$output"', parameters={"text": value})
    assert run_bash(spec).returncode == 0
    assert (spec.job_dir / "output.txt").read_text() == value


def test_environment_contents(tmp_path: Path) -> None:
    spec = make_spec(
        tmp_path,
        "true",
        parameters={"text": "hi", "not-an-identifier": "x", "input": "data.txt"},
        generated=[EntityDef("output", default="result.fits"), EntityDef("text", default="t")],
    )
    base = {
        "PATH": "/usr/bin:/bin",
        "UWS_DATABASE_URL": "postgresql://u:pw@h/db",
        "UWS_CONFIG": "/etc/uws/settings.yml",
        "PGPASSWORD": "pw",
        "AWS_SECRET_ACCESS_KEY": "k",
        "UWS_SCRIPTS_DIR": "/opt/uws/scripts",  # exported by the server for job scripts
        "LC_ALL": "C",
    }
    env = jobdir.prepare_environment(spec, base_env=base)
    for secret in ("UWS_DATABASE_URL", "UWS_CONFIG", "PGPASSWORD", "AWS_SECRET_ACCESS_KEY"):
        assert secret not in env  # the server's secrets stay with the server
    assert env["UWS_SCRIPTS_DIR"] == "/opt/uws/scripts"
    assert env["input"] == "data.txt"
    assert env["output"] == "result.fits"
    assert env["text"] == "t"  # a generated entity wins: the script writes what we collect
    assert "not-an-identifier" not in env
    assert env["LC_ALL"] == "C"
    assert env["PATH"].endswith(":/usr/bin:/bin")
    assert env["UWS_JOB_ID"] == "job1"
    assert env["UWS_JOB_DIR"] == str(spec.job_dir.resolve())
    assert env["UWS_PARAMETERS_FILE"] == str(spec.job_dir.resolve() / "parameters.json")
    assert json.loads(Path(env["UWS_PARAMETERS_FILE"]).read_text())["text"] == "hi"


def test_dangerous_parameter_names_are_not_exported(tmp_path: Path) -> None:
    (tmp_path / "evil.sh").write_text("touch pwned\n")
    params = {
        "BASH_ENV": str(tmp_path / "evil.sh"),
        "ENV": str(tmp_path / "evil.sh"),
        "PATH": str(tmp_path),
        "LD_PRELOAD": "/nonexistent.so",
        "IFS": "e",
        "UWS_JOB_ID": "other",
        "PYTHONPATH": str(tmp_path),
    }
    spec = make_spec(tmp_path, 'echo "$UWS_JOB_ID" > "$output"', parameters=params)
    env = jobdir.prepare_environment(spec)
    for name in params:
        assert env.get(name) != params[name], name
    assert run_bash(spec).returncode == 0
    assert (spec.job_dir / "output.txt").read_text() == "job1\n"
    assert not (spec.job_dir / "pwned").exists()


def test_script_comes_from_the_spec_not_the_directory(tmp_path: Path) -> None:
    """An upload named script.sh (or a symlink there) must never be what runs."""
    spec = make_spec(tmp_path, "echo definition > output.txt\n")
    (spec.job_dir / "script.sh").write_text("touch pwned\n")
    assert run_bash(spec).returncode == 0
    assert (spec.job_dir / "output.txt").read_text() == "definition\n"
    os.unlink(spec.job_dir / "script.sh")
    (tmp_path / "outside.sh").write_text("touch pwned\n")
    os.symlink(tmp_path / "outside.sh", spec.job_dir / "script.sh")
    assert run_bash(spec).returncode == 0
    assert not (spec.job_dir / "pwned").exists()
    assert (tmp_path / "outside.sh").read_text() == "touch pwned\n"  # not written through


def test_crlf_script_is_normalised(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, opus_script(), parameters={"text": "Hello World"})
    assert b"\r\n" in (spec.job_dir / "script.sh").read_bytes()
    proc = run_bash(spec)
    assert proc.returncode == 0, proc.stderr
    assert (spec.job_dir / "output.txt").read_text() == "Hello World\n"  # not "output.txt\r"


# --- results ---------------------------------------------------------------------------


def test_collect_results(tmp_path: Path) -> None:
    job = tmp_path / "job"
    (job / "sub").mkdir(parents=True)
    (job / "job.json").write_text("{}")
    (tmp_path / "elsewhere.txt").write_text("not a result")
    (job / "out.txt").write_text("hello")
    (job / "img.png").write_bytes(b"\x89PNG")
    (job / "a.fits").write_bytes(b"1")
    (job / "b.fits").write_bytes(b"22")
    (job / "sub" / "inner.dat").write_bytes(b"x")
    generated = [
        EntityDef("text", default="out.txt", content_type="text/plain"),
        EntityDef("image", default="img.png"),  # content type guessed
        EntityDef("inner", default="sub/../sub/inner.dat"),
        EntityDef("maps", default="*.fits", multiplicity="*"),
        EntityDef("jsons", default="*.json", multiplicity="*"),  # job.json is not one
        EntityDef("outside", default="../*.txt", multiplicity="*"),
        EntityDef("optional", default="none.txt", multiplicity="0..1"),
        EntityDef("question", default="none2.txt", multiplicity="?"),
        EntityDef("star", default="none3.txt", multiplicity="*"),
        EntityDef("required", default="missing.txt"),
    ]
    results, problems = worker_events.collect_results(job, generated)
    by_name = {r.name: r for r in results}
    assert by_name["text"] == Result(
        "text", "out.txt", "text/plain", 5, sha256(b"hello").hexdigest()
    )
    assert by_name["image"].content_type == "image/png"
    assert by_name["inner"].path == "sub/inner.dat"
    assert (by_name["maps_1"].path, by_name["maps_2"].path) == ("a.fits", "b.fits")
    assert by_name["maps_2"].size == 2
    assert "jsons" not in by_name and "jsons_1" not in by_name
    assert problems == [
        "result outside: ../elsewhere.txt refused: it escapes the job directory",
        "result required: missing.txt was not produced",
    ]


def test_collect_results_refuses_escapes(tmp_path: Path) -> None:
    job = tmp_path / "job"
    (job / ".uws").mkdir(parents=True)
    (tmp_path / "secret.txt").write_text("secret")
    (job / "job.json").write_text("{}")
    (job / ".uws" / "status.json").write_text("{}")
    os.symlink(tmp_path / "secret.txt", job / "link.txt")
    os.symlink("job.json", job / "token.txt")
    os.symlink("/etc", job / "etc")
    (job / "adir").mkdir()
    cases = {
        "dotdot": "../secret.txt",
        "link": "link.txt",
        "token": "token.txt",
        "absolute": "/etc/hostname",
        "viadir": "etc/hostname",
        "private": ".uws/status.json",
        "adir": "adir",
    }
    results, problems = worker_events.collect_results(
        job, [EntityDef(n, default=p) for n, p in cases.items()]
    )
    assert results == []
    assert len(problems) == len(cases)
    for name in cases:
        assert any(p.startswith(f"result {name}: ") for p in problems), name
    # Links are refused as links (even one pointing inside), never followed.
    assert problems == [
        "result dotdot: ../secret.txt refused: it escapes the job directory",
        "result link: link.txt refused: it is a symbolic link",
        "result token: token.txt refused: it is a symbolic link",
        "result absolute: /etc/hostname refused: an absolute or empty path is not allowed",
        "result viadir: etc/hostname refused: etc in its path is a symbolic link or not a "
        "directory",
        "result private: .uws/status.json refused: it is a private file of the job",
        "result adir: adir refused: it is a directory",
    ]


# --- status and events -------------------------------------------------------------------


def test_status_roundtrip_and_garbage(tmp_path: Path) -> None:
    t0 = datetime(2024, 5, 1, 12, 0)
    status = worker_events.JobStatus(
        Phase.ERROR,
        exit_code=3,
        signal=None,
        error="boom",
        start_time=t0,
        end_time=t0,
        results=[Result("o", "o.txt", "text/plain", 1, "a" * 64)],
        context={"host": "h"},
    )
    path = worker_events.write_status(tmp_path, status)
    assert path == tmp_path / ".uws" / "status.json"
    data = json.loads(path.read_text())
    assert set(data) == {
        "exit_code",
        "signal",
        "phase",
        "error",
        "start_time",
        "end_time",
        "results",
        "context",
    }
    assert worker_events.read_status(tmp_path) == status
    assert os.listdir(tmp_path / ".uws") == ["status.json"]
    path.write_text('{"phase": "NOPE"}')
    assert worker_events.read_status(tmp_path) is None
    path.unlink()
    assert worker_events.read_status(tmp_path) is None


def test_event_json_roundtrip_and_validation() -> None:
    event = WorkerEvent(
        Phase.COMPLETED,
        results=[Result("o", "o.txt", "text/plain", 3, "0" * 64)],
        external_id="42",
        start_time=datetime(2024, 1, 1),  # naive UTC, the service's convention
        end_time=datetime(2024, 1, 1, 0, 1),
        context={"host": "n1"},
    )
    wire = json.loads(json.dumps(worker_events.event_to_json(event)))
    assert wire["phase"] == "COMPLETED" and wire["start_time"] == "2024-01-01T00:00:00+00:00"
    assert worker_events.event_from_json(wire) == event
    shifted = worker_events.event_from_json(
        {"phase": "EXECUTING", "start_time": "2024-01-01T02:00+02:00"}
    )
    assert shifted.start_time == datetime(2024, 1, 1)
    zulu = worker_events.event_from_json({"phase": "EXECUTING", "end_time": "2024-01-01T00:00:00Z"})
    assert zulu.end_time == datetime(2024, 1, 1)
    bad = [
        [],
        {"phase": "DONE"},
        {"phase": "ERROR", "error": 3},
        {"phase": "COMPLETED", "results": [{"name": "o"}]},
        {"phase": "COMPLETED", "results": [{"name": "o", "path": "p", "size": -1}]},
        {"phase": "COMPLETED", "results": [{"name": "o", "path": "p", "sha256": "xyz"}]},
        {"phase": "COMPLETED", "start_time": "yesterday"},
        {"phase": "COMPLETED", "context": ["a"]},
    ]
    for data in bad:
        with pytest.raises(ValueError):
            worker_events.event_from_json(data)


# --- the CLI, with a callback server -------------------------------------------------------


class Receiver:
    """A tiny callback server; answers 503 to the first ``failures`` requests."""

    def __init__(self, failures: int = 0) -> None:
        self.events: list[tuple[str, str, dict[str, object]]] = []
        self.failures = failures
        self.attempts = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.attempts += 1
                if owner.failures > 0:
                    owner.failures -= 1
                    self.send_response(503)
                else:
                    owner.events.append((self.path, self.headers["Authorization"], body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/base/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.close()


def run_cli(job_dir: Path, *args: str, **kw: object) -> subprocess.Popen[bytes]:
    """The runner as the Slurm batch script starts it: ``-S -P``, only the repository on
    the path."""
    return subprocess.Popen(
        [sys.executable, "-S", "-P", "-m", "workers.node", str(job_dir), *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,  # type: ignore[call-overload]
    )


def test_cli_end_to_end_with_callbacks(tmp_path: Path, receiver: Receiver) -> None:
    (tmp_path / "victim").mkdir()
    # Runs past node.EXECUTING_DELAY, so EXECUTING is reported before the end.
    script = opus_script() + 'echo "{\\"tool\\": \\"1.2\\"}" > "$UWS_CONTEXT_FILE"\nsleep 0.5\n'
    spec = make_spec(
        tmp_path,
        script,
        parameters={"text": "$(touch pwned); rm -rf ../victim"},
        generated=[EntityDef("output", default="output.txt", content_type="text/plain")],
        callback_url=receiver.url,
        callback_token="tok-123",
    )
    proc = run_cli(spec.job_dir)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    content = b"$(touch pwned); rm -rf ../victim\n"
    assert (spec.job_dir / "output.txt").read_bytes() == content
    assert not (spec.job_dir / "pwned").exists() and (tmp_path / "victim").is_dir()
    assert [e[0] for e in receiver.events] == ["/base/callback/job1"] * 2
    assert {e[1] for e in receiver.events} == {"Bearer tok-123"}
    first, final = (worker_events.event_from_json(e[2]) for e in receiver.events)
    assert first.phase is Phase.EXECUTING and first.start_time is not None
    assert final.phase is Phase.COMPLETED and final.error is None
    assert final.results == [
        Result("output", "output.txt", "text/plain", len(content), sha256(content).hexdigest())
    ]
    assert final.context["tool"] == "1.2" and final.context["host"]
    status = worker_events.read_status(spec.job_dir)
    assert status is not None and status.phase is Phase.COMPLETED and status.exit_code == 0


def test_cli_short_job_reports_once_with_its_start_time(tmp_path: Path, receiver: Receiver) -> None:
    """A job over before node.EXECUTING_DELAY sends no EXECUTING: one callback, the final
    event, which carries when the script started (QUEUED -> COMPLETED is legal)."""
    spec = make_spec(
        tmp_path, "echo hi > output.txt\n", callback_url=receiver.url, callback_token="t"
    )
    proc = run_cli(spec.job_dir)
    assert proc.wait(timeout=30) == 0
    assert [e[2]["phase"] for e in receiver.events] == ["COMPLETED"]
    final = worker_events.event_from_json(receiver.events[0][2])
    assert final.start_time is not None and final.end_time is not None
    assert final.start_time <= final.end_time


def test_the_batch_script_never_imports_from_the_job_directory(tmp_path: Path) -> None:
    """The runner starts in the job directory, where uploads land under their own
    names: an uploaded ``datetime.py`` or ``select.py`` must stay data (``python -m``
    alone would put the directory first on the import path)."""
    from uws_server.managers.slurm_cli import batch_script

    spec = make_spec(tmp_path, "echo hi > output.txt\n")
    for name in ("datetime", "select", "json", "signal", "workers"):
        (spec.job_dir / f"{name}.py").write_text(f"open('{tmp_path}/pwned-{name}', 'w')\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        ["bash", "-c", batch_script(sys.executable, str(spec.job_dir))],
        cwd=spec.job_dir,
        env=env,
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert not list(tmp_path.glob("pwned-*"))
    assert (spec.job_dir / "output.txt").read_text() == "hi\n"


def test_the_script_gets_no_descriptor_of_the_runner_and_default_signals(
    tmp_path: Path,
) -> None:
    """posix_spawn instead of subprocess: still only stdin (empty), stdout and stderr
    open in the job, SIGPIPE back to its default (Python ignores it), its own session."""
    script = (
        "ls /proc/self/fd > fds.txt\n"
        "grep -E '^(SigIgn|NSpgid|NSsid):' /proc/self/status > status.txt\n"
        "cat > stdin.txt\n"
        "echo $$ > pid.txt\n"
        "echo ok > output.txt\n"
    )
    spec = make_spec(tmp_path, script)
    read_end, write_end = os.pipe()  # an inheritable descriptor the job must not get
    os.set_inheritable(write_end, True)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-S", "-P", "-m", "workers.node", str(spec.job_dir)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            pass_fds=(write_end,),
        )
        assert proc.wait(timeout=30) == 0
    finally:
        os.close(read_end)
        os.close(write_end)
    fds = (spec.job_dir / "fds.txt").read_text().split()
    assert write_end > 3 and fds == ["0", "1", "2", "3"]  # 3: the directory ls reads
    status = dict(
        line.split(":", 1) for line in (spec.job_dir / "status.txt").read_text().splitlines()
    )
    ignored = int(status["SigIgn"].strip(), 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1))
    assert (spec.job_dir / "stdin.txt").read_text() == ""
    pid = (spec.job_dir / "pid.txt").read_text().strip()
    assert status["NSsid"].strip() == pid  # the script leads its own session


def test_cli_retries_then_delivers(tmp_path: Path) -> None:
    rec = Receiver(failures=2)
    try:
        # The job outlives the retries of EXECUTING (0.5 s, then 1 s apart).
        script = "sleep 2\necho hi > output.txt"
        spec = make_spec(tmp_path, script, callback_url=rec.url, callback_token="t")
        proc = run_cli(spec.job_dir, "--callback-retry", "20")
        assert proc.wait(timeout=30) == 0
        # Two refused, then what was still news accepted: EXECUTING and COMPLETED, or
        # COMPLETED alone when the retries outlasted the script on a loaded machine.
        phases = [e[2]["phase"] for e in rec.events]
        assert phases in (["EXECUTING", "COMPLETED"], ["COMPLETED"])
        assert rec.attempts == 2 + len(phases)
    finally:
        rec.close()


def test_cli_server_down_keeps_status_file(tmp_path: Path) -> None:
    rec = Receiver()
    url = rec.url
    rec.close()  # nothing listens there any more
    spec = make_spec(tmp_path, "echo hi > output.txt", callback_url=url, callback_token="t")
    started = time.monotonic()
    proc = run_cli(spec.job_dir, "--callback-retry", "1.5")
    _, err = proc.communicate(timeout=30)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0
    assert 1.5 <= elapsed < 10  # retried for the bounded time, then gave up
    assert b"final event not delivered" in err
    status = worker_events.read_status(spec.job_dir)
    assert status is not None and status.phase is Phase.COMPLETED
    assert [r.name for r in status.results] == ["output"]


def test_post_event_does_not_retry_a_refusal(caplog: pytest.LogCaptureFixture) -> None:
    class Refuse(BaseHTTPRequestHandler):
        calls = 0

        def do_POST(self) -> None:  # noqa: N802
            Refuse.calls += 1
            self.send_response(409)
            self.send_header("Content-Length", "22")
            self.end_headers()
            self.wfile.write(b"job is already ABORTED")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        ok = post_event(url, "j/1", "t", {"phase": "COMPLETED"}, RetryPolicy(total=5))
        assert ok is False and Refuse.calls == 1
        assert "(HTTP 409): job is already ABORTED" in caplog.text  # the server's reason
        assert callback_endpoint(url + "/", "j/1").endswith("/callback/j%2F1")
    finally:
        server.shutdown()
        server.server_close()


TREE = """
sleep 300 & echo $! >> pids
bash -c 'sleep 300 & echo $! >> pids; wait' & echo $! >> pids
echo started > started
wait
"""


def read_pids(job_dir: Path, count: int = 3) -> list[int]:
    assert wait_for(
        lambda: (
            len((job_dir / "pids").read_text().split()) >= count
            if (job_dir / "pids").exists()
            else False
        )
    )
    return [int(p) for p in (job_dir / "pids").read_text().split()]


def test_cli_execution_duration_kills_the_tree(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, TREE, execution_duration=1)
    started = time.monotonic()
    proc = run_cli(spec.job_dir, "--grace", "0.5")
    pids = read_pids(spec.job_dir)
    assert proc.wait(timeout=20) == 1
    assert time.monotonic() - started < 8
    assert all(pid_gone(p) for p in pids)
    status = worker_events.read_status(spec.job_dir)
    assert status is not None and status.phase is Phase.ERROR
    assert status.error == "execution duration of 1 s exceeded"


def test_cli_sigterm_aborts_the_tree(tmp_path: Path, receiver: Receiver) -> None:
    spec = make_spec(tmp_path, TREE, callback_url=receiver.url, callback_token="t")
    proc = run_cli(spec.job_dir, "--grace", "0.5")
    pids = read_pids(spec.job_dir)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 1
    assert all(pid_gone(p) for p in pids)
    status = worker_events.read_status(spec.job_dir)
    assert status is not None and status.phase is Phase.ABORTED
    assert status.error is not None and "SIGTERM" in status.error
    assert receiver.events[-1][2]["phase"] == "ABORTED"


def test_cli_failing_script_reports_error(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "echo 'bad input: x' >&2\nexit 3\n")
    proc = run_cli(spec.job_dir)
    assert proc.wait(timeout=20) == 1
    status = worker_events.read_status(spec.job_dir)
    assert status is not None and status.phase is Phase.ERROR and status.exit_code == 3
    assert status.error == "script exited with code 3: bad input: x"
    assert (spec.job_dir / "stderr.log").read_text() == "bad input: x\n"


def test_cli_missing_result_is_an_error(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "echo nothing\n")
    proc = run_cli(spec.job_dir)
    assert proc.wait(timeout=20) == 1
    status = worker_events.read_status(spec.job_dir)
    assert status is not None and status.phase is Phase.ERROR
    assert status.error == "result output: output.txt was not produced"
    assert (spec.job_dir / "stdout.log").read_text() == "nothing\n"


def test_post_event_refuses_a_url_that_is_not_http_and_retries_garbage() -> None:
    assert post_event("ftp://example.org", "j1", "t", {"phase": "COMPLETED"}) is False
    assert post_event("http://", "j1", "t", {"phase": "COMPLETED"}) is False
    # A server that answers something that is not HTTP: retried like a dropped
    # connection until the budget is spent, never taken as delivered.
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = b""
                while not data.endswith(b"}") and (chunk := conn.recv(65536)):
                    data += chunk
                accepted.append(data)
                conn.sendall(b"SSH-2.0-OpenSSH\r\n")

    threading.Thread(target=serve, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/base"
        policy = RetryPolicy(total=1.0, first_delay=0.2)
        assert post_event(url, "j1", "tok", {"phase": "COMPLETED"}, policy) is False
        assert len(accepted) >= 2
        request = accepted[0]
        assert request.startswith(b"POST /base/callback/j1 HTTP/1.1\r\n")
        assert b"\r\nAuthorization: Bearer tok\r\n" in request
        assert request.endswith(b'{"phase":"COMPLETED"}')
    finally:
        listener.close()


def test_cli_arguments() -> None:
    args = node.parse_arguments(["/j", "--grace", "3", "--callback-retry=7.5"])
    assert (args.job_dir, args.grace, args.callback_retry) == ("/j", 3.0, 7.5)
    for bad in ([], ["/a", "/b"], ["/j", "--grace"], ["/j", "--grace=x"], ["/j", "--other"]):
        with pytest.raises(SystemExit) as exc:
            node.parse_arguments(bad)
        assert exc.value.code == 2, bad
    proc = subprocess.run(
        [sys.executable, "-S", "-m", "workers.node", "--help"], cwd=ROOT, capture_output=True
    )
    assert proc.returncode == 0 and b"JOB_DIR" in proc.stdout and b"--grace" in proc.stdout


_NEVER = "'requests', 'urllib3', 'http', 'argparse', 'mimetypes', 'email', 'ssl'"
_SERVICE = "'uws_server', 'dataclasses', 'inspect', 'typing', 'pathlib', 'logging', " + (
    "'hashlib', 'subprocess'"
)
# What subprocess and threading would bring to every runner (the cost is in
# docs/benchmarks.md, "Worker runner"). json, socket and signal are used: supported
# interfaces rather than CPython's private _json, _socket and _signal (issue 14), for a
# few milliseconds of CPU a job.
_STDLIB_HEAVY = "'threading', 'locale', 'contextlib'"


@pytest.mark.parametrize(
    ("modules", "heavy"),
    [
        # The old command line's module: only the runner's.
        ("workers.runner", f"{_NEVER}, {_SERVICE}"),
        # What a batch system starts for every job (``python -S -m workers.node``): not
        # even the service's dataclasses and what they bring, once most of a runner's
        # CPU, which made Slurm's waves of trivial jobs spill over (docs/benchmarks.md).
        ("workers.node, workers.supervise", f"{_NEVER}, {_SERVICE}, {_STDLIB_HEAVY}"),
    ],
)
def test_runner_start_up_imports_nothing_heavy(modules: str, heavy: str) -> None:
    """A worker node needs Python and this repository, no site-packages (``-S``), and a
    runner's start-up stays cheap."""
    code = (
        f"import sys, {modules}\n"
        f"heavy = {{{heavy}}}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-S", "-c", code], cwd="/", env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_callback_token_is_scrubbed_from_the_initial_environment() -> None:
    """The job runs as the runner's user and could read the runner's
    ``/proc/<pid>/environ``: the token must be gone from there too (overwritten through
    ``/proc/self/mem``, without the cost of importing ctypes)."""
    code = (
        "import os, sys\n"
        "from workers import node\n"
        "token = node.take_callback_token()\n"
        "env = open(f'/proc/{os.getpid()}/environ', 'rb').read()\n"
        "print(token, b'tok-s3cret' in env, 'UWS_CALLBACK_TOKEN' in os.environ,\n"
        "      'ctypes' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), node.TOKEN_ENV: "tok-s3cret"}
    proc = subprocess.run(
        [sys.executable, "-S", "-c", code], cwd="/", env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["tok-s3cret", "False", "False", "False"]


def test_the_runner_reads_what_the_service_writes(tmp_path: Path) -> None:
    """``job.json`` is declared once (``JobSpec.to_json``); ``workers.node`` reads it
    generically: every attribute the service wrote is there, with the same value."""
    gen = [EntityDef("output", default="out.txt", content_type="text/plain", multiplicity="*")]
    spec = make_spec(
        tmp_path,
        "true",
        parameters={"a": "1"},
        generated=gen,
        execution_duration=7,
        callback_url="http://x",
        manager_options={"sbatch": ["--mem=1G"]},
    )
    read = node.read_spec(str(spec.job_dir))
    for name, value in spec.to_json().items():
        if name != "generated":
            assert getattr(read, name) == value, name
    assert vars(read.generated[0]) == spec.to_json()["generated"][0]
    (spec.job_dir / jobdir.SPEC_FILE).write_text("[1]")
    with pytest.raises(ValueError, match="job_id"):
        node.read_spec(str(spec.job_dir))


@pytest.mark.parametrize(
    ("url", "parts"),
    [
        ("http://127.0.0.1:8080", ("http", "127.0.0.1", 8080, "/")),
        ("https://uws.example.org/base/", ("https", "uws.example.org", 443, "/base/")),
        ("http://[::1]:9/x?y=1", ("http", "[::1]", 9, "/x?y=1")),
        ("http://h?q", ("http", "h", 80, "?q")),
        ("ftp://h/", None),
        ("http://", None),
        ("http://h:/x", None),
        ("http://h:123456/", None),
        ("http://h:8x/", None),
        ("http://u@h/", None),
        ("http://h/x#frag", None),
        ("http://[]/", None),
        ("http://[zz]/", None),
        ("http://[::1]x/", None),
        ("http://h:80:80/", None),
    ],
)
def test_callback_urls_are_read_strictly(url: str, parts: tuple[object, ...] | None) -> None:
    from workers.callbacks import parse_url

    parsed = parse_url(url)
    got = None if parsed is None else (parsed.scheme, parsed.host, parsed.port, parsed.path)
    assert got == parts


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (b"HTTP/1.1 204 No Content\r\n", 204),
        (b"HTTP/1.0 409\r\n", 409),
        (b"HTTP/2 200 OK\r\n", None),
        (b"HTTP/1.1 2x0 OK\r\n", None),
        (b"HTTP/1.1 200", None),
        (b"SSH-2.0-OpenSSH\r\n", None),
    ],
)
def test_status_lines(answer: bytes, code: int | None) -> None:
    from workers.callbacks import status_code

    assert status_code(answer) == code
