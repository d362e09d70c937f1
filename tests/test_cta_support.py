"""The test harness that runs CTA steps in-process (tests/cta_support.py) leaves the test
process as it found it: a later step in the same pytest worker must not depend on which
step ran before (xdist hands modules to workers in varying orders)."""

from __future__ import annotations

import subprocess
import sys

from tests.cta_support import REPO

FRESH = """
import datetime
import matplotlib.units
from tests import cta_support
saved = cta_support.unit_converters()
assert datetime.datetime in saved and datetime.date in saved, sorted(map(str, saved))
"""


def test_the_restored_unit_converters_include_matplotlibs_date_ones() -> None:
    """In a new interpreter (no pyplot imported yet), the converters run_in_process puts
    back after a step hold matplotlib's date ones: a copy taken before matplotlib.dates
    was first imported dropped them, and a light curve's time axis then failed in the
    next step run in the same worker (a CI failure)."""
    proc = subprocess.run(
        [sys.executable, "-c", FRESH],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(REPO), "MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
