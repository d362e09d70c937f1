"""The suite's parallel run (``tests/parallel.py``): a crash is counted once, never rerun.

A small suite in a temporary folder runs under pytest-xdist with the plugin, as
``scripts/run_tests.sh`` runs the real one: one test kills its worker's interpreter by a
segmentation fault. It must fail the run, be reported (xdist's failure and our
``CRASHED`` line), show faulthandler's stack, and run exactly once, while the other tests
of its module still run (on another worker). Without the plugin xdist's module
scheduling gives the unfinished module, the crashed test included, to a new worker: this
test then fails, which is also how an upgrade of pytest-xdist that changes its
scheduler shows.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.parallel import CRASH_PREFIX

ROOT = Path(__file__).resolve().parents[1]

CRASHING = '''
import ctypes, os, time
from pathlib import Path

RUNS = Path(os.environ["CRASH_RUNS"])

def test_before():
    time.sleep(0.3)

def test_crash():
    with RUNS.open("a") as f:
        f.write("crash\\n")
    ctypes.string_at(0)  # a segmentation fault

def test_after_1():
    pass

def test_after_2():
    pass
'''

OTHER = '''
import pytest

@pytest.fixture(scope="module")
def crash_at_teardown():
    yield
    import ctypes
    ctypes.string_at(0)  # after the module's last test, outside any test

def test_ok(crash_at_teardown):
    pass
'''


def run_suite(tmp_path: Path, files: dict[str, str]) -> tuple[int, str, Path]:
    suite = tmp_path / "suite"
    suite.mkdir()
    for name, text in files.items():
        (suite / name).write_text(text)
    runs = tmp_path / "runs.txt"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PYTHONFAULTHANDLER": "1",
        "CRASH_RUNS": str(runs),
    }
    env.pop("PYTEST_XDIST_WORKER", None)  # this test may itself run on a worker
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.parallel",
         "-n", "2", "--dist", "loadgroup", "--max-worker-restart", "4", str(suite)],
        cwd=suite, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return proc.returncode, proc.stdout + proc.stderr, runs


def test_a_crashed_test_fails_the_run_once_and_the_rest_of_its_module_runs(
    tmp_path: Path,
) -> None:
    rc, out, runs = run_suite(tmp_path, {"test_crashing.py": CRASHING})
    assert rc == 1, out
    assert runs.read_text() == "crash\n", out  # run once, never again on another worker
    assert "Fatal Python error: Segmentation fault" in out  # faulthandler's stacks
    assert "crashed while running 'test_crashing.py::test_crash'" in out
    crashed = [line for line in out.splitlines() if line.startswith(CRASH_PREFIX + " ")]
    assert len(crashed) == 1 and "test_crashing.py::test_crash" in crashed[0], out
    assert "1 failed, 3 passed" in out, out


def test_a_worker_dying_outside_a_test_fails_the_run(tmp_path: Path) -> None:
    rc, out, _ = run_suite(tmp_path, {"test_other.py": OTHER})
    assert rc == 1, out
    crashed = [line for line in out.splitlines() if line.startswith(CRASH_PREFIX + " ")]
    assert len(crashed) == 1, out
