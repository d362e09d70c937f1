"""The per-job fast paths of a local job's start and end, checked against the plain code
they replace: the same bytes in the job directory, the same environment, the same answers.

``JobSpec.to_json`` without ``asdict`` (``job.json``), the cached server environment, the
cached definition snapshot, the ``os.path`` version of ``within`` and the cached field
lists of the JDL JSON form.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uws_server.common import within
from uws_server.jdl import json_form
from uws_server.jobdef import EntityDef, JobDefinition, ParameterDef
from uws_server.managers.base import JobSpec, write_spec
from uws_server.provenance_service import (
    definition_from_snapshot,
    definition_snapshot,
    snapshot_definition,
)
from workers import jobdir

TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
# --- JobSpec.to_json ----------------------------------------------------------------------

ENTITIES = st.builds(
    EntityDef, name=TEXT, default=TEXT, content_type=TEXT, multiplicity=TEXT, url=TEXT
)
SPECS = st.builds(
    JobSpec,
    job_id=TEXT,
    jobname=TEXT,
    job_dir=st.just(Path("/var/jobs/x")),
    script=TEXT,
    parameters=st.dictionaries(TEXT, TEXT, max_size=4),
    generated=st.lists(ENTITIES, max_size=3),
    execution_duration=st.integers(0, 10**6),
    callback_url=TEXT,
    callback_token=TEXT,
    python=TEXT,
    manager_options=st.dictionaries(TEXT, TEXT, max_size=3),
)


@settings(max_examples=200, deadline=None)
@given(SPECS)
def test_spec_to_json_is_asdict_with_the_directory_as_text(spec: JobSpec) -> None:
    want = dataclasses.asdict(spec)
    want["job_dir"] = str(spec.job_dir)
    got = spec.to_json()
    assert got == want and list(got) == list(want)
    assert [list(e) for e in got["generated"]] == [list(e) for e in want["generated"]]
    assert json.dumps(got, indent=1) == json.dumps(want, indent=1)
    got["parameters"]["changed"] = "x"  # a copy, as asdict's
    got["manager_options"]["changed"] = "x"
    assert "changed" not in spec.parameters and "changed" not in spec.manager_options


def test_written_spec_is_what_json_dumps_wrote(tmp_path: Path) -> None:
    spec = JobSpec(
        "j1", "act", tmp_path, "echo é\r\n", {"a": "1", "b": "$(x)"},
        [EntityDef("output", default="out.txt", content_type="text/plain")], 60,
    )  # fmt: skip
    path = write_spec(spec)
    want = dataclasses.asdict(spec) | {"job_dir": str(tmp_path)}
    assert path.read_bytes() == json.dumps(want, indent=1).encode()
    assert (path.stat().st_mode & 0o777) == 0o600


# --- the server's environment, cached --------------------------------------------------


def _spec(tmp_path: Path, python: str = "") -> JobSpec:
    return JobSpec("j1", "act", tmp_path, "true", {"text": "hi"}, python=python)


def _uncached(spec: JobSpec) -> dict[str, str]:
    return jobdir.prepare_environment(spec, base_env=dict(os.environ))


def test_cached_environment_follows_every_change_of_os_environ(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _spec(tmp_path)
    first = jobdir.prepare_environment(spec)
    assert first == _uncached(spec)
    first["LANG"] = "changed by a caller"  # a copy: the next job must not see this
    monkeypatch.setenv("UWS_SCRIPTS_DIR", "/opt/a")
    monkeypatch.setenv("LC_ALL", "C")
    env = jobdir.prepare_environment(spec)
    assert env["UWS_SCRIPTS_DIR"] == "/opt/a" and env["LC_ALL"] == "C" and env == _uncached(spec)
    monkeypatch.setenv("UWS_SCRIPTS_DIR", "/opt/b")
    monkeypatch.setenv("UWS_SECRET_TOKEN", "s3cret")  # never passed, cached or not
    monkeypatch.setenv("PATH", "/only/here")
    env = jobdir.prepare_environment(spec)
    assert env["UWS_SCRIPTS_DIR"] == "/opt/b" and "UWS_SECRET_TOKEN" not in env
    assert env["PATH"].endswith(os.pathsep + "/only/here") and env == _uncached(spec)
    monkeypatch.delenv("LC_ALL")
    env = jobdir.prepare_environment(spec)
    assert "LC_ALL" not in env and env == _uncached(spec)


def test_cached_environment_follows_the_interpreter_and_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for python in ("/opt/py/bin/python3", "", "/usr/bin/python3", "venv/bin/python"):
        env = jobdir.prepare_environment(_spec(tmp_path, python))
        assert env == _uncached(_spec(tmp_path, python))
    monkeypatch.chdir(tmp_path)  # a relative interpreter is relative to the cwd
    env = jobdir.prepare_environment(_spec(tmp_path, "venv/bin/python"))
    assert env["PATH"].split(os.pathsep)[0] == str(tmp_path / "venv" / "bin")


# --- the definition snapshot -----------------------------------------------------------


def _definition(script: str = "echo hi") -> JobDefinition:
    return JobDefinition(
        "act",
        script=script,
        description="é",
        parameters=[ParameterDef("x", options=["a", "b"])],
        generated=[EntityDef("output", default="out.txt")],
        sbatch_options=["--mem=1G"],
        source_file="/secret/place.xml",
    )


def test_snapshot_is_the_json_form_and_follows_a_new_definition(tmp_path: Path) -> None:
    defn = _definition()
    want = json.dumps(json_form.to_json(defn, include_operator=False))
    assert definition_snapshot(defn) == want
    snapshot_definition(tmp_path, defn)
    assert (tmp_path / ".uws" / "definition.json").read_text() == want
    assert "sbatch" not in want and "secret" not in want
    edited = _definition("echo edited")  # what the registry holds after an edit
    assert "echo edited" in definition_snapshot(edited)
    assert definition_snapshot(defn) == want
    read = definition_from_snapshot(want)
    assert read == dataclasses.replace(defn, sbatch_options=[], source_file=None)
    assert definition_from_snapshot(want) is read  # one read per distinct text
    with pytest.raises(ValueError):
        definition_from_snapshot("{not json")


def test_dump_matches_the_dataclass_fields() -> None:
    def plain(value: object) -> object:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {
                f.name: plain(getattr(value, f.name))
                for f in dataclasses.fields(value)
                if f.name not in json_form.HIDDEN_FIELDS
            }
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    defn = _definition()
    for value in (defn, defn.parameters, EntityDef, [EntityDef("a")], "x", None):
        assert json_form._dump(value) == plain(value)
    assert list(json_form.to_json(defn)) == [
        f.name for f in dataclasses.fields(JobDefinition) if f.name != "source_file"
    ]


# --- within ----------------------------------------------------------------------------


def _old_within(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, ValueError):
        return False


def test_within_answers_as_path_resolve_did(tmp_path: Path) -> None:
    root = tmp_path / "job"
    (root / "sub").mkdir(parents=True)
    (root / "out.txt").write_text("x")
    (tmp_path / "outside.txt").write_text("x")
    (root / "link_out").symlink_to(tmp_path / "outside.txt")
    (root / "link_in").symlink_to(root / "out.txt")
    (root / "dangling").symlink_to(tmp_path / "nowhere")
    (root / "loop").symlink_to(root / "loop")
    (tmp_path / "jobx").mkdir()
    (tmp_path / "root_link").symlink_to(root)
    names = [
        "out.txt", "sub", "sub/../out.txt", "../outside.txt", "link_out", "link_in",
        "dangling", "missing", ".", "", "sub//./", "../jobx", "a\x00b", "/", "/etc/passwd",
    ]  # fmt: skip
    for top in (root, tmp_path / "root_link", Path("/")):
        for name in names:
            for path in (root / name, Path(str(root) + "/" + name)):
                assert within(path, top) == _old_within(path, top), (path, top)
                assert within(str(path), str(top)) == _old_within(path, top), (path, top)
    with pytest.raises(RuntimeError) as old:
        _old_within(root / "loop", root)
    with pytest.raises(RuntimeError) as new:
        within(root / "loop", root)
    assert str(new.value) == str(old.value)
