"""How the suite runs on several pytest-xdist workers (``-n N --dist loadgroup``).

A pytest plugin (registered by ``tests/conftest.py``), on the controller's side:

* **Work units are modules** (a module's fixtures, often a server or a science chain of
  ``scope="module"``, are built once), or an ``xdist_group`` when tests of several modules
  must share a worker. xdist's ``loadgroup`` alone would send every ungrouped test on its
  own; ``loadfile`` knows no groups.
* **Units go out in collection order** (``tests/conftest.py`` puts the long modules first),
  not xdist's "most tests first": a module of 3 tests that runs for two minutes must not
  start last.
* **A crash is counted, never rerun.** When a worker's interpreter dies, xdist reports the
  test it was running as failed, but its scope schedulers then give the whole unfinished
  unit, the crashed test included, to another worker: the test runs again and may pass,
  hiding the crash. Here the crashed test is marked done before the unit goes back to the
  queue, so only the tests that never ran are run elsewhere. A worker that dies outside any
  test (while tearing a module down, at exit) fails no test in xdist's report; it is counted
  too. Every crash is listed at the end of the terminal summary as one line
  ``CRASHED <worker>: <test or "outside a test"> (<reason>)``, which ``scripts/run_tests.sh``
  counts; faulthandler's stacks of the dead worker are in the output above it (the worker's
  standard error is the controller's; ``PYTHONFAULTHANDLER=1``).

It relies on internals of ``xdist.scheduler.LoadScopeScheduling`` (``assigned_work``, a
``{scope: {nodeid: completed}}`` per worker, and ``_split_scope``), so pytest-xdist is pinned
in ``setup.py`` and ``tests/test_parallel.py`` runs a crashing test under this plugin.
"""

from __future__ import annotations

from typing import Any

import pytest

try:
    from xdist.scheduler import LoadGroupScheduling
except ImportError:  # pytest-xdist not installed: the suite runs in one process
    LoadGroupScheduling = None  # type: ignore[assignment,misc]

CRASH_PREFIX = "CRASHED"


if LoadGroupScheduling is not None:

    class ModuleScheduling(LoadGroupScheduling):  # type: ignore[misc,valid-type]
        """``loadgroup`` whose ungrouped tests go by module; no rerun of a crashed test."""

        def __init__(self, config: pytest.Config, log: Any = None) -> None:
            super().__init__(config, log)
            # the order of the collection (long modules first), not "most tests first"
            config.option.loadscopereorder = False
            assert hasattr(self, "assigned_work"), "pytest-xdist changed: see tests/parallel.py"

        def _split_scope(self, nodeid: str) -> str:
            if nodeid.rfind("@") > nodeid.rfind("]"):  # xdist_group's "@<group>" suffix
                return nodeid.rsplit("@", 1)[-1]
            return nodeid.split("::", 1)[0]

        def remove_node(self, node: Any) -> str | None:
            """The crashed test (first unfinished one) marked done, then xdist's removal:
            the unit's other unfinished tests go back to the queue."""
            crashed = None
            for unit in self.assigned_work.get(node, {}).values():
                for nodeid, completed in unit.items():
                    if not completed:
                        crashed = nodeid
                        unit[nodeid] = True
                        break
                if crashed is not None:
                    break
            super().remove_node(node)
            return crashed


class CrashRecorder:
    """Collects the crashes the controller sees, for the summary's ``CRASHED`` lines."""

    def __init__(self) -> None:
        self.crashes: list[tuple[str, str, str]] = []  # worker, test, reason

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        if config.getvalue("dist") in ("loadgroup", "loadfile"):
            return ModuleScheduling(config, log)
        return None

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object | None) -> None:
        """A worker gone: with an error it died (xdist then calls
        :meth:`pytest_handlecrashitem` if a test was running)."""
        if error:
            self.crashes.append((node.gateway.id, "outside a test", str(error)))

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem: str, report: pytest.TestReport, sched: Any) -> None:
        name = getattr(getattr(getattr(report, "node", None), "gateway", None), "id", "?")
        for i in range(len(self.crashes) - 1, -1, -1):
            worker, test, reason = self.crashes[i]
            if worker == name and test == "outside a test":
                self.crashes[i] = (worker, crashitem, reason)
                return
        self.crashes.append((name, crashitem, str(report.longrepr)))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.crashes:
            return
        terminalreporter.section("crashed workers", sep="=", red=True)
        for worker, test, reason in self.crashes:
            terminalreporter.line(f"{CRASH_PREFIX} {worker}: {test} ({reason})")

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.crashes and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist)
        config.pluginmanager.register(CrashRecorder(), "uws-crash-recorder")
