"""IRF statistics, electrons and visibility of the ctapipe chain (issue 15.4/15.5).

Small and in-process on purpose (the chain itself is built once by test_cta_chain): the
MC statistics are checked on synthetic events whose counts are known, so the stated
errors can be compared with the counts they claim to describe; the simulation runs a few
hundred showers in this process.
"""

from __future__ import annotations

import json
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

# isort: off
from tests.cta_support import error_line, run_in_process  # puts the cta package on sys.path
from cta import irf_stats, irf_uncertainty

# isort: on

pytestmark = pytest.mark.science

E_EDGES = np.geomspace(0.1, 100.0, 16)  # 5 per decade, TeV
O_EDGES = np.array([0.0, 2.5 / 3, 5.0 / 3, 2.5])  # deg
BKG_O_EDGES = np.arange(0.0, 3.01, 0.5)
AREA = np.pi * 400.0**2


def gamma_info(n_showers: int = 40_000):
    from pyirf.simulations import SimulatedEventsInfo

    return SimulatedEventsInfo(
        n_showers=n_showers,
        energy_min=0.1 * u.TeV,
        energy_max=100 * u.TeV,
        max_impact=400 * u.m,
        spectral_index=-2.0,
        viewcone_min=0 * u.deg,
        viewcone_max=2.5 * u.deg,
    )


def fake_events(rng, n: int, e_min: float, index: float, viewcone: float, p_sel) -> Table:
    """Thrown-like events: E^index energies, uniform-in-solid-angle offsets, a selection."""
    a = index + 1
    energy = (e_min**a + rng.uniform(size=n) * (100.0**a - e_min**a)) ** (1 / a)
    offset = np.rad2deg(np.arccos(rng.uniform(np.cos(np.deg2rad(viewcone)), 1.0, n)))
    t = Table()
    t["true_energy"] = energy
    t["reco_energy"] = energy * rng.normal(1.0, 0.1, n).clip(0.5)
    t["true_offset"] = offset
    t["reco_offset"] = offset
    t["selected"] = rng.uniform(size=n) < p_sel(energy)
    return t


def irf_file(path: Path, effarea: np.ndarray, bkg: np.ndarray) -> Path:
    """A GADF file with EFFECTIVE AREA (3 offsets) and BACKGROUND (6 offsets) HDUs."""
    aeff = Table()
    aeff["ENERG_LO"] = [E_EDGES[:-1]] * u.TeV
    aeff["ENERG_HI"] = [E_EDGES[1:]] * u.TeV
    aeff["THETA_LO"] = [O_EDGES[:-1]] * u.deg
    aeff["THETA_HI"] = [O_EDGES[1:]] * u.deg
    aeff["EFFAREA"] = [effarea] * u.m**2
    back = Table()
    back["ENERG_LO"] = [E_EDGES[:-1]] * u.TeV
    back["ENERG_HI"] = [E_EDGES[1:]] * u.TeV
    back["THETA_LO"] = [BKG_O_EDGES[:-1]] * u.deg
    back["THETA_HI"] = [BKG_O_EDGES[1:]] * u.deg
    back["BKG"] = [bkg] * u.Unit("s-1 MeV-1 sr-1")
    hdus = [fits.PrimaryHDU()]
    for table, name, clas2 in ((aeff, "EFFECTIVE AREA", "EFF_AREA"), (back, "BACKGROUND", "BKG")):
        hdu = fits.table_to_hdu(table)
        hdu.name = name
        hdu.header.update(HDUCLASS="GADF", HDUCLAS1="RESPONSE", HDUCLAS2=clas2)
        hdu.header.update(HDUCLAS3="FULL-ENCLOSURE", HDUCLAS4=clas2.replace("EFF_", "A") + "_2D")
        hdus.append(hdu)
    fits.HDUList(hdus).writeto(path)
    return path


@pytest.fixture(scope="module")
def annotated(tmp_path_factory):
    """A synthetic production: 40 000 diffuse gammas, protons and electrons; the IRF
    values are k / N x A as pyirf computes them, with one bin pushed above the area."""
    from pyirf.simulations import SimulatedEventsInfo

    rng = np.random.default_rng(7)
    info = gamma_info()
    efficiency = lambda e: 0.4 * (1 - np.exp(-e / 0.5))  # noqa: E731
    gammas = fake_events(rng, info.n_showers, 0.1, -2.0, 2.5, efficiency)
    thrown = info.calculate_n_showers_per_energy_and_fov(E_EDGES * u.TeV, O_EDGES * u.deg).T
    sel = gammas[gammas["selected"]]
    k, _, _ = np.histogram2d(sel["true_offset"], sel["true_energy"], bins=[O_EDGES, E_EDGES])
    effarea = k / thrown * AREA
    effarea[0, -1] = 1.3 * AREA  # a fluctuation above the thrown area, as seen in review
    samples = {}
    for pid, n, p_sel in ((101, 30_000, 0.01), (1, 3_000, 0.3)):
        sim = SimulatedEventsInfo(
            n_showers=n,
            energy_min=0.1 * u.TeV,
            energy_max=100 * u.TeV,
            max_impact=400 * u.m,
            spectral_index=-2.0,
            viewcone_min=0 * u.deg,
            viewcone_max=3 * u.deg,
        )
        events = fake_events(rng, n, 0.1, -2.0, 3.0, lambda e, p=p_sel: np.full(e.shape, p))
        samples[pid] = (events, sim)
    bkg = np.full((len(BKG_O_EDGES) - 1, len(E_EDGES) - 1), 1e-6)
    path = irf_file(tmp_path_factory.mktemp("irf") / "irf.fits.gz", effarea, bkg)
    summary = irf_stats.annotate_irf(path, gammas, info, samples, background_single_bin=True)
    return path, summary, gammas, samples, k, thrown


@pytest.mark.parametrize(("n_expected", "p"), [(400.0, 0.25), (12.0, 0.9), (300.0, 0.02)])
def test_aeff_error_describes_the_spread_of_productions(n_expected, p):
    """Repeat the production 20 000 times: the thrown count of a bin is Poisson around
    the expected N pyirf divides by, each shower selected with probability p. The stated
    error (from one production's k) is the spread of k/N relative to p -- also where
    p is near 1 and k/N exceeds 1, which a binomial error of k/N would call tiny."""
    rng = np.random.default_rng(3)
    k = rng.binomial(rng.poisson(n_expected, 20_000), p)
    spread = np.std(k / n_expected) / p
    stated = irf_stats.aeff_relative_error(np.array([p * n_expected]), np.array([n_expected]))
    assert stated[0] == pytest.approx(spread, rel=0.05)
    if p > 0.5:
        assert np.mean(k > n_expected) > 0.2  # A_eff above the thrown area: a fluctuation
        assert stated[0] > 2 * np.sqrt((1 - p) / (n_expected * p))  # binomial: too small
    rel = irf_stats.aeff_relative_error(np.array([0, 5, 5, 0]), np.array([10.0, 5.0, 0.0, 0.0]))
    assert np.isinf(rel[0])  # nothing selected: an upper limit, not a 0 % error
    assert rel[1] == pytest.approx(1 / np.sqrt(5))  # all selected: still an error
    assert np.isnan(rel[2]) and np.isnan(rel[3])  # nothing thrown


def test_irf_statistics_are_the_counts(annotated):
    path, summary, gammas, samples, k, thrown = annotated
    with fits.open(path) as hdul:
        aeff = hdul["EFFECTIVE AREA"]
        data = {c: np.asarray(aeff.data[c][0], dtype=float) for c in aeff.columns.names}
        header = aeff.header
        bkg = hdul["BACKGROUND"]
        bdata = {c: np.asarray(bkg.data[c][0], dtype=float) for c in bkg.columns.names}
        bheader = bkg.header
    # never above the area the showers were thrown over; the fluctuation capped and counted
    assert header["AREATHR"] == pytest.approx(AREA)
    assert np.nanmax(data["EFFAREA"]) <= AREA
    assert header["AEFFCAPN"] == 1 and summary["irf_statistics"]["aeff_bins_capped"] == 1
    np.testing.assert_array_equal(data["N_SELECTED"], k)
    np.testing.assert_allclose(data["N_THROWN"], thrown)
    assert data["N_THROWN"].sum() == pytest.approx(gammas["true_energy"].size, rel=1e-6)
    ok = data["N_SELECTED"] > 0
    ok[0, -1] = False
    np.testing.assert_allclose(
        data["EFFAREA"][ok], (data["N_SELECTED"] / data["N_THROWN"] * AREA)[ok], rtol=1e-9
    )
    np.testing.assert_allclose(
        data["EFFAREA_RELERR"], irf_stats.aeff_relative_error(k, thrown), rtol=1e-12
    )
    assert header["NGAMSEL"] == int(gammas["selected"].sum())
    # background: every selected proton and electron inside 0-3 deg, in each copied bin
    for pid, column in ((1, "N_ELECTRONS"),):
        events = samples[pid][0]
        sel = events[events["selected"]]
        expected, _ = np.histogram(sel["reco_energy"], bins=E_EDGES)
        for row in bdata[column]:
            np.testing.assert_array_equal(row, expected)
    n_all = sum(int(ev["selected"].sum()) for ev, _ in samples.values())
    inside = sum(
        int((ev["selected"] & (ev["reco_energy"] >= 0.1) & (ev["reco_energy"] < 100)).sum())
        for ev, _ in samples.values()
    )
    assert bheader["NBKGEVT"] == inside <= n_all
    assert bheader["NELEEVT"] > 0 and summary["irf_statistics"]["background_electrons"] > 0
    measured = bdata["N_EVENTS"] > 0
    # weighted Poisson: never better than the raw count allows
    assert np.all(bdata["BKG_RELERR"][measured] >= 1 / np.sqrt(bdata["N_EVENTS"][measured]) - 1e-12)
    assert np.all(np.isinf(bdata["BKG_RELERR"][~measured]))
    # gammapy still reads both HDUs
    from gammapy.irf import Background2D, EffectiveAreaTable2D

    assert EffectiveAreaTable2D.read(path, hdu="EFFECTIVE AREA").data.shape == (15, 3)
    assert Background2D.read(path, hdu="BACKGROUND").data.shape == (15, 6)


def test_irf_uncertainty_reads_them_back(annotated, tmp_path):
    path, _, _, _, k, thrown = annotated
    rel = irf_stats.aeff_relative_error(k, thrown)
    out = irf_uncertainty.irf_uncertainty([path], (1.0, 10.0))
    assert out["stated"] and out["n_observations_with_statistics"] == 1
    inside = (E_EDGES[1:] > 1.0) & (E_EDGES[:-1] < 10.0)
    # no EVENTS header: the default offset, 0.5 deg, is inside the first offset bin's
    # centre (0.417 deg) and the second's (1.25 deg): interpolated between them
    f = (0.5 - 2.5 / 6) / (2.5 / 3)
    expected = ((1 - f) * rel[0] + f * rel[1])[inside]
    assert out["aeff_relerr_mean"] == pytest.approx(expected.mean(), rel=1e-9)
    assert out["aeff_relerr_max"] == pytest.approx(expected.max(), rel=1e-9)
    # combined: the error of the summed A_eff (bins independent, E^-2.5 x width weights)
    with fits.open(path) as hdul:
        area = np.asarray(hdul["EFFECTIVE AREA"].data["EFFAREA"][0], dtype=float)
    area = ((1 - f) * area[0] + f * area[1])[inside]
    centres = np.sqrt(E_EDGES[1:] * E_EDGES[:-1])[inside]
    w = area * centres**-2.5 * np.diff(E_EDGES)[inside]
    combined = np.sqrt(np.sum((w * expected) ** 2)) / np.sum(w)
    assert out["aeff_relerr_combined"] == pytest.approx(combined, rel=1e-9)
    assert expected.min() / np.sqrt(inside.sum()) < combined < expected.max()
    assert irf_uncertainty.scaled_error(-2e-11, out) == pytest.approx(
        2e-11 * out["aeff_relerr_combined"]
    )
    assert out["bkg_relerr_mean"] is not None
    json.dumps(out)  # JSON-ready
    # analytic IRFs (no statistics columns): said so, nothing invented
    plain = irf_file(tmp_path / "plain.fits", np.ones((3, 15)), np.ones((6, 15)))
    out = irf_uncertainty.irf_uncertainty([plain], (1.0, 10.0))
    assert not out["stated"] and out["aeff_relerr_mean"] is None and out["note"]
    assert irf_uncertainty.scaled_error(1.0, out) is None
    with pytest.raises(ValueError, match="not a FITS file"):
        irf_uncertainty.irf_uncertainty([tmp_path / "plain.fits.missing"], (1, 10))


def test_cosmic_ray_spectra_not_the_source_index():
    """Mixed observations draw protons and electrons from the measured spectra."""
    from cta import simulation
    from pyirf.spectral import IRFDOC_ELECTRON_SPECTRUM, IRFDOC_PROTON_SPECTRUM

    rng = np.random.default_rng(5)
    for spectrum in (IRFDOC_PROTON_SPECTRUM, IRFDOC_ELECTRON_SPECTRUM):
        energies = simulation.sample_spectrum(rng, 20_000, 0.1, 10.0, spectrum)
        grid, cumulative = simulation.spectrum_table(spectrum, 0.1, 10.0)
        for e in (0.2, 0.5, 1.0, 3.0):
            expected = np.interp(e, grid, cumulative) / cumulative[-1]
            assert np.mean(energies < e) == pytest.approx(expected, abs=0.01)
    # the proton slope is the cosmic rays' (~ -2.7), not a source's -2
    e = simulation.sample_spectrum(rng, 20_000, 0.5, 5.0, IRFDOC_PROTON_SPECTRUM)
    slope = -1 - 1 / np.mean(np.log(e / 0.5))  # MLE of a power law (upper cut far)
    assert -3.0 < slope < -2.4
    share = simulation.electron_share(0.05, 50.0)
    assert 1e-4 < share < 0.02  # electrons are ~0.1-1 % of the cosmic rays


def test_simulation_electrons_object_and_visibility(tmp_path):
    import tables

    params = dict(particle="mixed", n_showers=150, proton_fraction=0.6, electron_fraction=0.5)
    proc = run_in_process("simulation", params, tmp_path / "mixed", tmp_path / "store")
    assert proc.returncode == 0, proc.stderr[-2000:]
    with tables.open_file(tmp_path / "mixed" / "events.dl0.h5") as h5:
        config = json.loads(h5.root._v_attrs.CONFIG)
        ids = set(np.unique(h5.root.events.col("primary_id")).tolist())
    assert ids == {0, 1, 101}
    counts = config["n_primaries"]
    assert counts["electron"] > 20 and counts["proton"] > 20 and counts["gamma"] > 20
    assert config["object"] == "PKS 2155-304 (simulated)"  # from the position
    assert config["source_altitude_min"] > 30
    from cta.toy import dl0

    with dl0.ToyDL0EventSource(tmp_path / "mixed" / "events.dl0.h5") as source:
        (block,) = source.observation_blocks.values()
        assert block.meta["TARGET_NAME"] == "PKS 2155-304 (simulated)"
    # the Crab from Paranal at the default time is below the limit: a clear refusal
    crab = dict(source_ra=83.633, source_dec=22.015, n_showers=10)
    proc = run_in_process("simulation", crab, tmp_path / "crab", tmp_path / "store")
    assert proc.returncode == 1
    line = error_line(proc, tmp_path / "crab")
    assert "below the altitude limit min_altitude=30" in line and "South" in line
    named = dict(n_showers=5, object="My target", particle="electron")
    proc = run_in_process("simulation", named, tmp_path / "named", tmp_path / "store")
    assert proc.returncode == 0, proc.stderr[-2000:]
    with tables.open_file(tmp_path / "named" / "events.dl0.h5") as h5:
        config = json.loads(h5.root._v_attrs.CONFIG)
        assert config["object"] == "My target"
        assert set(h5.root.events.col("primary_id").tolist()) == {1}
    bad = dict(particle="mixed", proton_fraction=0.9, electron_fraction=2)
    proc = run_in_process("simulation", bad, tmp_path / "bad", tmp_path / "store")
    assert proc.returncode == 1 and "electron_fraction" in error_line(proc, tmp_path / "bad")
