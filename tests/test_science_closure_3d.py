"""Closure of the 3D likelihood fit (``gammapy_3d_fit``) on held-out truths (issue 15.1).

Eight fits, each a (case, seed) pair fixed before looking at results: point sources at the
cube centre and 0.2-0.3 deg off it at several angles, indices 2.0-3.0, a power law, a
log-parabola and a cut-off power law, the counts drawn in this process from the fast
path's IRFs (CTA prod3b) reduced by the job's own code (``bench/bench_closure_3d.py``, which
runs the same harness over many seeds and all cases, the Gaussian source included).
Every pull within 3 sigma, and the mean pull of index, amplitude, RA and Dec over the
eight within 3 standard errors of 0. Checked against the code it guards: with the fit
started at the target instead of the brightest excess, 6 of the 8 fits lose their
off-centre source (TS 0, amplitude pulls down to -10^7, one fit not converging) and the
test fails. The pixel-grid position-error fix (``robust_position_errors``) is not caught
by these eight seeds (largest pull without it 2.7): it was found on the former analytic
IRFs (an RA pull of 4.7 there) and stays as a safeguard.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import bench_closure_3d  # noqa: E402

from tests import cta_support  # noqa: E402, F401  (makes the ``cta`` package importable)

pytestmark = pytest.mark.science

CASES = bench_closure_3d.CASES
# (index into CASES, seed): chosen in advance; the Gaussian case is left to the bench
# (its fit costs twice a point source's).
FITS = ((0, 11), (1, 12), (2, 13), (3, 14), (4, 15), (1, 16), (2, 17), (0, 18))


@pytest.fixture(scope="module")
def closures() -> list[dict]:
    import logging

    from cta import job

    job.setup_runtime()
    logging.getLogger().setLevel(logging.WARNING)
    # the log-parabola's fit is also compared with the power law refitted on its data
    return [bench_closure_3d.closure(CASES[i], seed, compare=i == 3) for i, seed in FITS]


def test_every_fit_converges_and_finds_its_source(closures) -> None:
    for run in closures:
        fit, case = run["fit"], run["case"]
        assert fit["fit_success"] and fit["covariance_success"], run
        assert fit["ts"] > 100, run  # ~20 sigma sources at this exposure
        # the position is where the truth is, not at the (requested) cube centre
        pos = bench_closure_3d.true_position(case)
        assert abs(fit["ra"] - pos.ra.deg) * math.cos(math.radians(fit["dec"])) < 0.05, run
        assert abs(fit["dec"] - pos.dec.deg) < 0.05, run
        assert fit["offset_from_target_deg"] == pytest.approx(case["offset"], abs=0.05)
        assert fit["background_norm"] == pytest.approx(1.0, abs=5 * fit["background_norm_err"])
        assert fit["spectral_model"] == case["model"] and fit["spatial_model"] == "point"


def test_every_pull_within_three_sigma(closures) -> None:
    for run in closures:
        assert set(bench_closure_3d.MAIN_PULLS) <= set(run["pulls"]), run["pulls"]
        bad = {k: round(v, 2) for k, v in run["pulls"].items() if not abs(v) < 3}
        assert not bad, (run["case"], run["seed"], bad)
    # the curved models' own parameters are pulled too
    assert any("beta" in r["pulls"] for r in closures)
    assert any("lambda" in r["pulls"] for r in closures)


def test_mean_pulls_within_three_standard_errors(closures) -> None:
    assert len({seed for _, seed in FITS}) >= 8
    stats = bench_closure_3d.mean_pulls(closures)
    for name in bench_closure_3d.MAIN_PULLS:
        s = stats[name]
        assert s["n"] == len(FITS)
        assert abs(s["mean"]) < 3 / math.sqrt(s["n"]), (name, s)
        # errors neither far too small nor far too large (a unit-variance pull)
        assert 0.3 < s["sd"] < 2.0, (name, s)


def test_curved_model_is_compared_with_the_power_law(closures) -> None:
    (run,) = [r for r in closures if r["case"]["model"] == "log_parabola"]
    comparison = run["fit"]["comparison_with_power_law"]
    assert comparison["against"] == "power_law" and comparison["delta_dof"] == 1
    assert comparison["power_law_fit_success"]
    # TS is the Cash gain of the log-parabola over the power law, from the same start
    gain = comparison["cash_power_law"] - comparison["cash_model"]
    assert comparison["ts"] == pytest.approx(gain) and comparison["ts"] > -1e-3
    assert 0 <= comparison["p_value"] <= 1 and math.isfinite(comparison["significance_sigma"])
    # a power law fitted to a curved spectrum: its slope differs from alpha at 1 TeV
    assert comparison["power_law_index"] != pytest.approx(run["fit"]["index"], abs=1e-6)
    others = [r["fit"]["comparison_with_power_law"] for r in closures if r is not run]
    assert others == [None] * (len(FITS) - 1)  # power laws: none; curved: not asked
