"""The ``uws`` client and command line against a running service (local pool and Slurm).

The command line is called in-process through :func:`uws_client.cli.run` (the same code
the console script runs), with the service's URL and a user's token in the environment as
a user would set them.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LiveServer, make_settings, need
from uws_client import Client, ParameterError, UWSClientError
from uws_client.cli import EXIT_JOB_FAILED, EXIT_OK, EXIT_USAGE, run
from uws_client.documents import parse_job

pytestmark = pytest.mark.usefixtures("isolated_config")


@pytest.fixture
def isolated_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No user config, no UWS_* variables from the developer's shell."""
    path = tmp_path / "uws-config"
    monkeypatch.setenv("UWS_CLIENT_CONFIG", str(path))
    monkeypatch.delenv("UWS_URL", raising=False)
    monkeypatch.delenv("UWS_TOKEN", raising=False)
    return path


def uws(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def env_alice(live: LiveServer, monkeypatch: pytest.MonkeyPatch) -> Client:
    monkeypatch.setenv("UWS_URL", live.base)
    monkeypatch.setenv("UWS_TOKEN", live.tokens["alice"])
    return Client(live.base, live.tokens["alice"])


def test_submit_wait_download_through_the_python_api(env_alice: Client, tmp_path: Path) -> None:
    job = env_alice.submit("echo_job", {"text": "spectrum of PKS 2155-304", "n": 3}, run=True)
    assert job.wait(timeout=60).phase == "COMPLETED"
    files = job.raise_for_phase().download(tmp_path / "out")
    assert [f.name for f in files] == ["output.txt"]
    text = files[0].read_text()
    assert text.startswith("spectrum of PKS 2155-304\n") and "n=3" in text
    assert job.provenance("json").startswith(b"{")


def test_cli_submit_wait_download(env_alice: Client, tmp_path: Path) -> None:
    code, out, err = uws(
        "submit", "echo_job", "text=Nébula $(rm -rf /)", "n=7", "--download", str(tmp_path / "d")
    )
    assert code == EXIT_OK, err
    lines = out.splitlines()
    assert lines[0].startswith(env_alice.url + "/rest/echo_job/")
    assert lines[1].endswith("COMPLETED")
    saved = Path(lines[2])
    assert saved.parent == tmp_path / "d"
    assert saved.read_text().splitlines()[0] == "Nébula $(rm -rf /)"
    # the progress bar went to stderr, ending on COMPLETED
    assert "COMPLETED" in err.splitlines()[-1]


def test_a_job_ending_in_error_exits_non_zero_with_its_error(env_alice: Client) -> None:
    code, out, err = uws("submit", "fail_job", "--wait", "-q")
    assert code == EXIT_JOB_FAILED
    assert "ERROR" in err and "3" in err  # the exit code the script returned is named
    job_url = out.splitlines()[0]
    code, out, _ = uws("wait", job_url, "-q")
    assert code == EXIT_JOB_FAILED


def test_a_pending_jobs_parameter_is_changed_then_refused_once_running(env_alice: Client) -> None:
    code, out, err = uws("submit", "echo_job", "text=first")
    assert code == EXIT_OK, err
    job_url = out.strip()
    assert uws("set", job_url, "text=second", "n=2")[0] == EXIT_OK
    job = env_alice.job(job_url)
    assert job.info().parameters["text"] == "second"
    assert job.info().parameters["n"] == "2"
    # refused by the client's check before the request: out of range
    code, _, err = uws("set", job_url, "n=1000")
    assert code == EXIT_USAGE and "above the maximum" in err
    assert uws("run", job_url)[0] == EXIT_OK
    job.wait(timeout=60)
    code, _, err = uws("set", job_url, "text=third")
    assert code == EXIT_USAGE and "409" in err
    assert job.info().parameters["text"] == "second"


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"txet": "typo"}, "unknown parameter 'txet'"),
        ({"n": "many"}, "'many' is not an integer"),
        ({"n": "101"}, "above the maximum 100"),
        ({"x": "2"}, "above the maximum 1"),
        ({"color": "purple"}, "not one of the options"),
        ({"flag": "perhaps"}, "not true or false"),
    ],
)
def test_parameters_are_checked_before_a_job_exists(
    env_alice: Client, params: dict[str, str], problem: str
) -> None:
    before = len(env_alice.jobs("echo_job"))
    with pytest.raises(ParameterError, match=problem):
        env_alice.submit("echo_job", params)
    assert len(env_alice.jobs("echo_job")) == before
    # without the check, the service refuses the same values itself
    with pytest.raises(UWSClientError) as exc:
        env_alice.submit("echo_job", params, check=False)
    assert exc.value.status == 400


def test_a_required_parameter_is_named(live: LiveServer) -> None:
    definition = {"name": "d", "parameters": [{"name": "obs_ids", "required": True}]}
    from uws_client.params import check_parameters

    assert check_parameters(definition, {}, {}) == ["parameter 'obs_ids' is required"]
    assert check_parameters(definition, {"OBS_IDS": "1 2"}, {}) == []


def test_upload_list_show_results_abort_delete(env_alice: Client, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("uploaded content\n")
    code, out, err = uws(
        "submit", "copy_job", "text=appended", "--file", f"input={src}", "--wait", "-q"
    )
    assert code == EXIT_OK, err
    job_url = out.splitlines()[0]
    job_id = job_url.rsplit("/", 1)[1]

    code, out, _ = uws("list", "--name", "copy_job", "--phase", "COMPLETED")
    assert code == EXIT_OK and job_id in out
    code, out, _ = uws("show", job_id)  # a bare id is found in the job lists
    assert code == EXIT_OK and "COMPLETED" in out and "result    output" in out
    code, out, _ = uws("results", f"copy_job/{job_id}", "-o", str(tmp_path / "r"))
    assert code == EXIT_OK
    assert Path(out.splitlines()[0]).read_text() == "uploaded content\nappended\n"
    code, out, _ = uws("prov", job_id, "--format", "provn")
    assert code == EXIT_OK and out.startswith("document")

    code, out, _ = uws("submit", "sleep_job", "seconds=30", "--run")
    sleeping = out.strip()
    assert uws("abort", sleeping)[0] == EXIT_OK
    code, _, err = uws("wait", sleeping, "-q", "--timeout", "30")
    assert code == EXIT_JOB_FAILED and "ABORTED" in err
    assert uws("delete", sleeping)[0] == EXIT_OK
    code, _, err = uws("show", sleeping)
    assert code == EXIT_USAGE and "404" in err


def test_wait_blocks_on_the_server_instead_of_polling(env_alice: Client) -> None:
    """A 3-second job is followed with a handful of requests, not a polling loop."""
    requests_made: list[str] = []
    env_alice.session.hooks["response"].append(lambda r, *a, **k: requests_made.append(r.url))
    job = env_alice.submit("sleep_job", {"seconds": "3"}, run=True)
    requests_made.clear()
    job.wait(timeout=60)
    assert job.phase == "COMPLETED"
    waits = [u for u in requests_made if "WAIT=" in u]
    assert waits, requests_made
    assert len(requests_made) <= 8, requests_made


def test_the_config_file_must_be_private(
    live: LiveServer, isolated_config: Path, tmp_path: Path
) -> None:
    isolated_config.write_text(f"[default]\nurl = {live.base}\ntoken = {live.tokens['bob']}\n")
    isolated_config.chmod(0o644)
    code, _, err = uws("list")
    assert code == EXIT_USAGE and "chmod 600" in err
    isolated_config.chmod(0o600)
    code, out, err = uws("submit", "echo_job", "text=from the config file")
    assert code == EXIT_OK, err
    job = Client(live.base, live.tokens["bob"]).job(out.strip())
    assert job.info().owner == "bob"


def test_no_url_and_bad_arguments_are_usage_errors(isolated_config: Path) -> None:
    code, _, err = uws("list")
    assert code == EXIT_USAGE and "UWS_URL" in err
    assert uws("submit")[0] == EXIT_USAGE
    assert uws("--url", "http://127.0.0.1:9", "submit", "x", "novalue")[0] == EXIT_USAGE


def test_another_users_job_is_not_found(live: LiveServer, env_alice: Client) -> None:
    job = env_alice.submit("echo_job", {"text": "private"})
    code, _, err = uws("--token", live.tokens["bob"], "show", job.url)
    assert code == EXIT_USAGE and "404" in err


def test_the_console_script_is_installed(live: LiveServer, tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("uws")
    assert exe.exists(), "pip install -e . installs the uws command"
    env = dict(os.environ, UWS_URL=live.base, UWS_TOKEN=live.tokens["alice"],
               UWS_CLIENT_CONFIG=str(tmp_path / "none"))
    done = subprocess.run(
        [str(exe), "definitions"], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    names = [line.split()[0] for line in done.stdout.splitlines()]
    assert "echo_job" in names and "test_activity_1" in names


def test_job_documents_parse_as_the_schema_describes() -> None:
    # the UWS standard's own example, in shared/ beside the repository
    example = Path(__file__).resolve().parents[2] / "shared" / "ivoa" / "example-job.xml"
    info = parse_job(example.read_bytes())
    assert info.phase == "COMPLETED" and info.owner is None
    assert info.parameters["scaleFactor"] == "1.8"
    assert info.results[0].size == 3000960 and info.results[0].mime_type == "image/fits"
    assert info.error == "we have problem"


# ------------------------------------------------------------------ Slurm
@pytest.fixture
def slurm_server(tmp_path: Path) -> Iterator[LiveServer]:
    ready = all(shutil.which(t) for t in ("sbatch", "squeue", "scontrol")) and "is UP" in (
        subprocess.run(["scontrol", "ping"], capture_output=True, text=True).stdout
    )
    need(ready, "Slurm is not running (bash scripts/slurm_start.sh)")
    server = LiveServer(make_settings(tmp_path, manager="slurm", slurm_poll_interval=0.5))
    server.add_user("alice")
    yield server
    server.stop()


def test_cli_on_slurm_submit_wait_download_and_error(
    slurm_server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UWS_URL", slurm_server.base)
    monkeypatch.setenv("UWS_TOKEN", slurm_server.tokens["alice"])
    code, out, err = uws(
        "submit", "echo_job", "text=on slurm", "--download", str(tmp_path / "s"),
        "--timeout", "120",
    )
    assert code == EXIT_OK, err
    assert Path(out.splitlines()[-1]).read_text().startswith("on slurm\n")
    code, _, err = uws("submit", "fail_job", "--wait", "-q", "--timeout", "120")
    assert code == EXIT_JOB_FAILED and "ERROR" in err
