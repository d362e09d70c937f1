"""Property-based: random methods, paths, names and values never give a 500, a
traceback, or a change to another user's job."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import LiveServer, make_settings


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    live = LiveServer(make_settings(Path(tmp_path_factory.mktemp("fuzz"))))
    attacker = live.add_user("mallory")
    victim = live.add_user("victim")
    victim_job = victim.create("echo_job", {"text": "precious", "RUNID": "keep"})
    before = victim.get(victim_job).text
    yield live, attacker, victim, victim_job, before
    live.stop()


SEGMENTS = st.one_of(
    st.sampled_from(
        [
            "rest",
            "echo_job",
            "sleep_job",
            "phase",
            "parameters",
            "results",
            "error",
            "owner",
            "destruction",
            "executionduration",
            "quote",
            "stdout",
            "..",
            "%2e%2e",
            "jdl",
            "json",
            "callback",
            "output",
            "text",
            "provenance",
            "",
        ]
    ),
    st.text(alphabet=string.ascii_letters + string.digits + "-_.%$;'\"<>&()", max_size=12),
)
METHODS = st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"])
NAMES = st.one_of(
    st.sampled_from(
        [
            "PHASE",
            "text",
            "n",
            "x",
            "flag",
            "color",
            "ACTION",
            "WAIT",
            "LAST",
            "AFTER",
            "DESTRUCTION",
            "EXECUTIONDURATION",
            "RUNID",
            "input",
            "file",
        ]
    ),
    st.text(max_size=20),
)
VALUES = st.one_of(
    st.sampled_from(
        [
            "RUN",
            "ABORT",
            "DELETE",
            "1",
            "-1",
            "0",
            "nan",
            "1e999",
            "$(id)",
            "; rm -rf /",
            "../../etc/passwd",
            "2030-01-01T00:00:00Z",
            "true",
            "red",
            "\x00",
            "é",
        ]
    ),
    st.text(max_size=60),
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    method=METHODS,
    segments=st.lists(SEGMENTS, min_size=0, max_size=5),
    use_victim_job=st.booleans(),
    fields=st.lists(st.tuples(NAMES, VALUES), max_size=4),
    in_query=st.booleans(),
)
def test_random_requests(world, method, segments, use_victim_job, fields, in_query) -> None:  # type: ignore[no-untyped-def]
    live, attacker, victim, victim_job, before = world
    path = (victim_job if use_victim_job else "") + "/" + "/".join(segments)
    # WAIT cannot block here: the attacker only ever names the victim's job (a 404).
    query = in_query or method in ("GET", "HEAD", "OPTIONS", "DELETE")
    kwargs = {"params": fields} if query else {"data": fields}
    r = attacker.request(method, path, **kwargs)
    assert r.status_code < 500, (method, path, fields, r.status_code, r.text[:200])
    assert "Traceback" not in r.text
    assert 'File "' not in r.text
    # the victim's job is unchanged, whatever was thrown at it
    assert victim.get(victim_job).text == before
