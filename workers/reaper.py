"""A child subreaper around one command: what the local pool runs a job under when the
machine gives it no cgroup (see :mod:`workers.containment`).

``python -S -P -c BOOT GRACE COMMAND...`` (:func:`command` builds it). The process makes
itself the subreaper of everything below it, runs COMMAND in a new session with the
output it was given, and ends like COMMAND ended (same exit status, or the same signal)
only once every process COMMAND started is gone, including those that left its
process group with ``setsid``, ``nohup`` or a double fork. On SIGTERM, SIGINT or SIGHUP
(the local pool's ABORT and executionDuration) it passes SIGTERM to all of them and
SIGKILL after GRACE seconds. Standard library only; it costs the job one Python start-up
(docs/benchmarks.md), which is why a cgroup is preferred where there is one.
"""

from __future__ import annotations

import os
import signal
import sys

from workers import containment
from workers.supervise import run_script

BOOT = "import sys; sys.path.insert(0, sys.argv.pop(1)); from workers.reaper import main; main()"


def command(python: str, project_root: str, grace: float, argv: list[str]) -> list[str]:
    """The argv that runs ``argv`` under a subreaper (``-P``: nothing is imported from
    the job directory, where it starts)."""
    return [python, "-S", "-P", "-c", BOOT, project_root, repr(float(grace)), *argv]


def main(args: list[str] | None = None) -> None:
    """Run the command; exit as it did."""
    args = sys.argv[1:] if args is None else args
    if len(args) < 2:
        print("usage: reaper GRACE COMMAND...", file=sys.stderr)
        raise SystemExit(2)
    grace, argv = float(args[0]), args[1:]
    subreaper = containment.become_subreaper()
    if not subreaper:
        print("uws reaper: PR_SET_CHILD_SUBREAPER refused", file=sys.stderr)
    outcome = run_script(
        argv, os.getcwd(), dict(os.environ), 1, 2, grace=grace, subreaper=subreaper
    )
    if outcome.signal is not None:
        signal.signal(outcome.signal, signal.SIG_DFL)
        os.kill(os.getpid(), outcome.signal)
    raise SystemExit(outcome.exit_code if outcome.exit_code is not None else 1)
