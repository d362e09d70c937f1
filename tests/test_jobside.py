"""The job-side contract module (workers/jobside.py): what a script writes, and the
service's readers of the same files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from workers import jobside
from workers.jobdir import prepare_environment
from workers.progress import clean
from workers.results import collect_context, hash_file


@pytest.fixture
def job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A job directory as the runner sets it up: its working directory and the UWS_*
    variables of workers.jobdir.prepare_environment (not a copy of them)."""
    (tmp_path / ".uws").mkdir()
    (tmp_path / "parameters.json").write_text(json.dumps({"n": 3, "name": "x"}))
    monkeypatch.chdir(tmp_path)
    spec = SimpleNamespace(
        job_id="J1", jobname="maps", job_dir=str(tmp_path), python="", parameters={}, generated=[]
    )
    env = prepare_environment(spec, {"UWS_BASE_URL": "http://example.org/uws"})
    for key, value in env.items():
        if key.startswith("UWS_"):
            monkeypatch.setenv(key, value)
    return tmp_path


def test_parameters_outputs_and_used(job: Path) -> None:
    assert jobside.parameters() == {"n": "3", "name": "x"}
    assert jobside.output_path("out", "sub/a.fits") == "sub/a.fits"
    assert (job / "sub").is_dir()
    with pytest.raises(ValueError, match="relative to the job dir"):
        jobside.output_path("out", "../a.fits")
    data = job / "in.txt"
    data.write_text("hello")
    jobside.record_used(str(data), "input")
    jobside.record_used(str(data), "input")  # once per path and role
    used = jobside.read_used(str(job))
    assert used == [{"path": "in.txt", "role": "input", "sha256": hash_file(str(data))[1]}]


def test_progress_is_the_progress_protocol(job: Path) -> None:
    jobside.progress(0.25, "a quarter")
    raw = json.loads((job / ".uws/progress.json").read_text())
    assert clean(raw) == {"fraction": 0.25, "message": "a quarter"}
    assert not [p for p in os.listdir(job / ".uws") if p.endswith(".tmp")]


def test_context_and_failure_read_by_the_service(job: Path) -> None:
    jobside.write_context({"gammapy": "2.0"})
    jobside.write_context({"toy": 1})
    context = collect_context(job)
    assert context["gammapy"] == "2.0" and context["toy"] == "1"
    with pytest.raises(SystemExit) as exc:
        jobside.fail("bad   input\nhere", 3)
    assert exc.value.code == 3
    assert jobside.read_error(str(job)) == "bad input here"


def test_activity_records_a_step(job: Path) -> None:
    src = job / "in.fits"
    src.write_bytes(b"x" * 10)
    with jobside.activity("fit", config={"model": {"index": 2}}, packages=("pytest",)) as act:
        act.used(str(src), "events")
        (job / "out.txt").write_text("y")
        act.generated(str(job / "out.txt"), "result")
    with pytest.raises(RuntimeError), jobside.activity("broken"):
        raise RuntimeError("boom")
    steps = jobside.read_activities(str(job))
    assert [s["name"] for s in steps] == ["fit", "broken"]
    fit = steps[0]
    assert fit["status"] == "completed" and steps[1]["status"] == "error"
    assert fit["config"] == {"model": '{"index":2}'}
    assert fit["used"][0]["path"] == "in.fits" and fit["used"][0]["role"] == "events"
    assert fit["generated"][0]["sha256"] == hash_file(str(job / "out.txt"))[1]
    assert fit["system"]["packages"]["pytest"] == pytest.__version__
    assert fit["start"] <= fit["stop"]


def test_ctapipe_logs_are_normalised(job: Path) -> None:
    log = [
        {
            "activity_name": "ctapipe-process",
            "activity_uuid": "u1",
            "status": "completed",
            "start": {"time_utc": "2026-01-01T00:00:00.000"},
            "stop": {"time_utc": "2026-01-01T00:00:05.000"},
            "system": {
                "ctapipe_version": "0.32.0",
                "executable": "/venv/bin/python",
                "platform": {"node": "worker1"},
                "python": {
                    "version": ["3", "12", "1"],
                    "packages": [{"name": "numpy", "version": "2.1"}],
                },
            },
            "input": [{"url": "events.dl0.h5", "role": "DL0/Event"}],
            "output": [{"url": "file://events.dl1.h5", "role": "DL1/Event"}],
            "config": {"ProcessorTool": {"progress_bar": False}},
        },
        "not an activity",
    ]
    (job / ".uws/ctapipe_provenance.json").write_text(json.dumps(log))
    (steps,) = jobside.read_activities(str(job))
    assert steps["name"] == "ctapipe-process" and steps["start"].endswith("Z")
    assert steps["used"] == [{"path": "events.dl0.h5", "role": "DL0/Event"}]
    assert steps["generated"] == [{"path": "events.dl1.h5", "role": "DL1/Event"}]
    assert steps["system"]["packages"] == {"ctapipe": "0.32.0", "numpy": "2.1"}
    assert steps["system"]["python"] == "3.12.1" and steps["system"]["host"] == "worker1"
    assert steps["config"] == {"ProcessorTool.progress_bar": "false"}


def test_malformed_files_are_ignored(job: Path) -> None:
    (job / ".uws/activities.json").write_text("{not json")
    (job / ".uws/used.json").write_text('{"path": 1}')
    (job / ".uws/stamped.json").write_text('{"a.fits": "no-prefix", "b.fits": "ent_ok"}')
    assert jobside.read_activities(str(job)) == []
    assert jobside.read_used(str(job)) == []
    assert jobside.read_stamped(str(job)) == {"b.fits": "ent_ok"}


def test_fits_stamp_is_valid_fits_and_recorded(job: Path) -> None:
    from astropy.io import fits

    path = job / "map.fits"
    hdu = fits.PrimaryHDU(data=[[1.0, 2.0]])
    # a full first header block: the stamp needs a new 2880-byte block
    for i in range(30):
        hdu.header[f"K{i}"] = i
    fits.HDUList(
        [hdu, fits.BinTableHDU.from_columns([fits.Column("a", "E", array=[1.0])])]
    ).writeto(path)
    refs = jobside.stamp(str(path))
    assert refs["job_url"] == "http://example.org/uws/rest/maps/J1"
    assert refs["entity_id"].startswith("ent_")
    assert refs["provsap_url"] == f"http://example.org/uws/provsap?ID={refs['entity_id']}&DEPTH=ALL"
    with fits.open(path) as hdul:
        hdul.verify("exception")
        header = hdul[0].header
        assert header["UWSJOB"] == refs["job_url"]
        assert header["UWSENTID"] == refs["entity_id"]
        assert header["UWSPROV"] == refs["provsap_url"]  # long string: CONTINUE cards
        assert header["UWSACT"] == "job:maps/J1" and header["K29"] == 29
        assert list(hdul[1].data["a"]) == [1.0]
        assert hdul[0].data.tolist() == [[1.0, 2.0]]
    assert jobside.read_fits_refs(str(path)) == refs
    assert jobside.read_stamped(str(job)) == {"map.fits": refs["entity_id"]}
    again = jobside.stamp(str(path), refs["entity_id"])  # stamping twice replaces the cards
    assert again == refs and jobside.read_fits_refs(str(path)) == refs


def test_hdf5_stamp(job: Path) -> None:
    import tables  # installed with ctapipe (the science extra)

    path = job / "events.dl1.h5"
    with tables.open_file(path, "w") as f:
        f.create_array("/", "x", [1, 2])
    refs = jobside.stamp(str(path))
    with tables.open_file(path) as f:
        assert f.root._v_attrs["uws_entity_id"] == refs["entity_id"]
        assert f.root._v_attrs["uws_job_url"] == refs["job_url"]
        assert list(f.root.x[:]) == [1, 2]


def test_importable_by_another_interpreter(tmp_path: Path) -> None:
    """The environment the runner gives a job lets any Python import the module."""
    spec = SimpleNamespace(
        job_id="J2",
        jobname="demo",
        job_dir=tmp_path,
        python=sys.executable,
        parameters={},
        generated=[],
    )
    env = prepare_environment(spec, base_env={"PATH": os.environ["PATH"]})
    assert env["UWS_JOBNAME"] == "demo"
    code = (
        "import os, sys; sys.path.insert(0, os.environ['UWS_LIB']);"
        "from workers import jobside; jobside.progress(0.5, 'half'); print(jobside.__file__)"
    )
    (tmp_path / ".uws").mkdir()
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    done = subprocess.run(
        [python, "-I", "-c", code],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == jobside.__file__
    assert json.loads((tmp_path / ".uws/progress.json").read_text())["fraction"] == 0.5


def test_gzipped_fits_stamp(job: Path) -> None:
    """DL3 files are gzipped FITS: stamped inside, compressed again the same way."""
    import gzip

    from astropy.io import fits

    path = job / "obs.fits.gz"
    fits.HDUList([fits.PrimaryHDU()]).writeto(path)
    assert jobside.product_kind(str(path)) == "fits"
    refs = jobside.stamp(str(path))
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    with fits.open(path) as hdul:
        assert hdul[0].header["UWSENTID"] == refs["entity_id"]
    assert jobside.read_fits_refs(str(path)) == refs
    copy = job / "copy.fits.gz"
    copy.write_bytes(gzip.compress(gzip.decompress(path.read_bytes()), mtime=0))
    assert copy.read_bytes() == path.read_bytes()


def test_runner_stamps_only_the_jobs_own_files(job: Path, tmp_path_factory) -> None:
    """stamp_results never writes through a link: a symlinked or hard-linked FITS result
    (which the service refuses anyway) is left untouched; a plain one is stamped once."""
    header = "".join(c.ljust(80) for c in ["SIMPLE  =                    T", "END"]).ljust(2880)
    outside = tmp_path_factory.mktemp("outside") / "victim.fits"
    outside.write_bytes(header.encode())
    (job / "link.fits").symlink_to(outside)
    (job / "hard.fits").hardlink_to(outside)
    (job / "own.fits").write_bytes(header.encode())
    (job / "job.json").write_text(json.dumps({"job_id": "J1", "jobname": "maps"}))
    stamped = jobside.stamp_results(str(job), ["link.fits", "hard.fits", "own.fits"])
    assert set(stamped) == {"own.fits"}
    assert outside.read_bytes() == header.encode()
    assert jobside.read_fits_refs(str(job / "own.fits"))["entity_id"] == stamped["own.fits"]
    again = jobside.stamp_results(str(job), ["own.fits"])  # a second collection: same id
    assert again == stamped
