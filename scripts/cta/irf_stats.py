"""Monte Carlo statistics of the chain's IRFs: how many showers each bin rests on.

Why: an effective area or background rate computed from a few simulated showers per bin
is a number with a large statistical error, and a fit that uses it inherits that error.
``ctapipe-compute-irf`` writes the values only; this module recounts, from the same test
files and the same selection (``selection.select``), per bin:

* effective area (true energy x true FoV offset): the expected number of thrown gammas
  ``N`` (pyirf's ``SimulatedEventsInfo``, the normalisation pyirf divides by) and the
  number selected ``k``; A_eff = k / N x A_thrown. The number of showers thrown into a
  bin is itself Poisson around N, and each is selected with probability p (binomial), so
  k is Poisson with mean p N: the relative error of A_eff is 1 / sqrt(k). It is the
  binomial error sqrt((1 - p) / k) of a known thrown count, enlarged by 1 / sqrt(1 - p)
  for the thrown count's own fluctuation; this is what lets k / N exceed 1 where N is a
  few showers (the review's "effective area above the thrown area");
* background (reconstructed energy x reconstructed FoV offset): the raw numbers of
  selected protons and electrons and the Poisson relative error of the weighted rate,
  sqrt(sum w^2) / sum w with pyirf's weights to the measured cosmic-ray spectra.

The effective area can never honestly exceed the thrown area: a bin above it (k > N, a
fluctuation of the thrown count when N is small) is capped with a warning and counted in
``AEFFCAPN``. The numbers go into the IRF file as extra columns of the EFFECTIVE AREA
(``N_THROWN``, ``N_SELECTED``, ``EFFAREA_RELERR``) and BACKGROUND (``N_EVENTS``,
``N_ELECTRONS``, ``BKG_RELERR``) HDUs, which gammapy ignores, plus header keywords; the
DL3 writer copies the HDUs whole, so every observation carries its IRF's statistics
(``irf_uncertainty`` reads them back next to each fit).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import Table

log = logging.getLogger("uws.cta.irf_stats")

#: Version of the statistics columns and keywords (``IRFSTAT`` in the headers).
STATS_VERSION = "uws-irfstat-1"
#: Where "core energy range" errors are summarised (TeV, true energy).
CORE_ENERGY_TEV = (0.3, 10.0)
GAMMA_ID, ELECTRON_ID, PROTON_ID = 0, 1, 101


def aeff_relative_error(k: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Relative 1-sigma error of A_eff = k / n x A with n the *expected* thrown count.

    1 / sqrt(k) (see the module docstring); ``inf`` where nothing was selected (k = 0:
    only an upper limit), ``nan`` where nothing was thrown (n = 0).
    """
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(k > 0, 1.0 / np.sqrt(k), np.inf)
    return np.where(n > 0, rel, np.nan)


def simulation_info(path: Path):
    """pyirf ``SimulatedEventsInfo`` of a ctapipe DL2 file (runs summed)."""
    from ctapipe.io import read_table
    from pyirf.simulations import SimulatedEventsInfo

    runs = read_table(path, "/configuration/simulation/run")
    first = runs[0]
    return SimulatedEventsInfo(
        n_showers=int(np.sum(runs["n_showers"]) * int(first["shower_reuse"])),
        energy_min=u.Quantity(first["energy_range_min"], u.TeV),
        energy_max=u.Quantity(first["energy_range_max"], u.TeV),
        max_impact=u.Quantity(first["max_scatter_range"], u.m),
        spectral_index=float(first["spectral_index"]),
        viewcone_min=u.Quantity(first["min_viewcone_radius"], u.deg),
        viewcone_max=u.Quantity(first["max_viewcone_radius"], u.deg),
    )


def is_diffuse(path: Path) -> bool:
    """True if the file's showers were thrown over a cone (offset-dependent IRFs)."""
    return bool(simulation_info(path).viewcone_max > 0 * u.deg)


def load_events(path: Path, cuts) -> Table:
    """Events with true/reco energy, true/reco FoV offset and the selection mask."""
    from ctapipe.io import TableLoader

    from .selection import ENERGY_PREFIX, GEOMETRY_PREFIX, select

    with TableLoader(
        path, dl2=True, simulated=True, observation_info=True, dl1_parameters=False
    ) as loader:
        events = loader.read_subarray_events()
    mask, _ = select(events, cuts)
    pnt_alt = u.Quantity(events["subarray_pointing_lat"], u.deg)
    pnt_az = u.Quantity(events["subarray_pointing_lon"], u.deg)

    def offset(alt, az) -> np.ndarray:
        from astropy.coordinates import angular_separation

        return angular_separation(az, alt, pnt_az, pnt_alt).to_value(u.deg)

    out = Table()
    out["true_energy"] = u.Quantity(events["true_energy"], u.TeV).to_value(u.TeV)
    out["reco_energy"] = u.Quantity(events[f"{ENERGY_PREFIX}_energy"], u.TeV).to_value(u.TeV)
    out["true_offset"] = offset(u.Quantity(events["true_alt"]), u.Quantity(events["true_az"]))
    reco_alt = u.Quantity(events[f"{GEOMETRY_PREFIX}_alt"], u.deg)
    reco_az = u.Quantity(events[f"{GEOMETRY_PREFIX}_az"], u.deg)
    out["reco_offset"] = np.nan_to_num(offset(reco_alt, reco_az), nan=np.inf)
    out["primary"] = np.asarray(events["true_shower_primary_id"])
    out["selected"] = mask
    return out


@dataclass
class Binned:
    """Counts on an IRF's (energy, offset) grid; arrays are (n_offset, n_energy) like GADF."""

    energy_edges: np.ndarray  # TeV
    offset_edges: np.ndarray  # deg
    values: dict[str, np.ndarray]


def _hist(energy, offset, e_edges, o_edges, weights=None) -> np.ndarray:
    h, _, _ = np.histogram2d(offset, energy, bins=[o_edges, e_edges], weights=weights)
    return h


def aeff_statistics(gammas: Table, sim_info, e_edges: np.ndarray, o_edges: np.ndarray) -> Binned:
    """Thrown (expected) and selected gammas per (true offset, true energy) bin."""
    if sim_info.viewcone_max > 0 * u.deg:
        thrown = sim_info.calculate_n_showers_per_energy_and_fov(
            e_edges * u.TeV, o_edges * u.deg
        ).T  # (offset, energy)
    else:  # point source: every thrown shower at the one offset, spread over the bins
        thrown = np.repeat(
            sim_info.calculate_n_showers_per_energy(e_edges * u.TeV)[np.newaxis, :],
            len(o_edges) - 1,
            axis=0,
        )
    sel = gammas[gammas["selected"]]
    offset = sel["true_offset"] if sim_info.viewcone_max > 0 * u.deg else None
    if offset is None:  # point-like: the selected counts are the same in every copied bin
        one = _hist(sel["true_energy"], np.zeros(len(sel)), e_edges, [0.0, 1.0])
        selected = np.repeat(one, len(o_edges) - 1, axis=0)
    else:
        selected = _hist(sel["true_energy"], offset, e_edges, o_edges)
    return Binned(
        e_edges,
        o_edges,
        {
            "N_THROWN": np.asarray(thrown, dtype=float),
            "N_SELECTED": selected,
            "EFFAREA_RELERR": aeff_relative_error(selected, thrown),
        },
    )


def background_statistics(
    samples: dict[int, tuple[Table, object]],
    e_edges: np.ndarray,
    o_edges: np.ndarray,
    single_bin: bool,
) -> Binned:
    """Selected protons/electrons per (reco offset, reco energy) bin and the Poisson error.

    ``samples``: primary id -> (events of ``load_events``, sim_info). Weights are pyirf's,
    to the spectra ctapipe's IRF tool uses (``IRFDOC_PROTON_SPECTRUM``,
    ``IRFDOC_ELECTRON_SPECTRUM``), so the error is that of the rate actually written.
    ``single_bin``: the background was computed in one offset bin (copied over the FoV):
    every copy carries the counts of the whole field.
    """
    from pyirf.spectral import (
        IRFDOC_ELECTRON_SPECTRUM,
        IRFDOC_PROTON_SPECTRUM,
        PowerLaw,
        calculate_event_weights,
    )

    target = {PROTON_ID: IRFDOC_PROTON_SPECTRUM, ELECTRON_ID: IRFDOC_ELECTRON_SPECTRUM}
    edges = np.array([o_edges[0], o_edges[-1]]) if single_bin else o_edges
    shape = (len(edges) - 1, len(e_edges) - 1)
    n_events = {pid: np.zeros(shape) for pid in target}
    sum_w, sum_w2 = np.zeros(shape), np.zeros(shape)
    for pid, (events, sim_info) in samples.items():
        sel = events[events["selected"]]
        simulated = PowerLaw.from_simulation(sim_info, obstime=1 * u.s)
        w = calculate_event_weights(sel["true_energy"] * u.TeV, target[pid], simulated)
        w = np.asarray(w, dtype=float)
        n_events[pid] += _hist(sel["reco_energy"], sel["reco_offset"], e_edges, edges)
        sum_w += _hist(sel["reco_energy"], sel["reco_offset"], e_edges, edges, w)
        sum_w2 += _hist(sel["reco_energy"], sel["reco_offset"], e_edges, edges, w**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        relerr = np.where(sum_w > 0, np.sqrt(sum_w2) / sum_w, np.inf)
    values = {
        "N_EVENTS": n_events[PROTON_ID] + n_events[ELECTRON_ID],
        "N_ELECTRONS": n_events[ELECTRON_ID],
        "BKG_RELERR": relerr,
    }
    if single_bin:
        values = {k: np.repeat(v, len(o_edges) - 1, axis=0) for k, v in values.items()}
    return Binned(e_edges, o_edges, values)


def hdu_edges(hdu: fits.BinTableHDU, energy: str = "ENERG") -> tuple[np.ndarray, np.ndarray]:
    """(energy edges TeV, offset edges deg) of a GADF IRF table HDU."""
    t = Table.read(hdu)
    lo = t[f"{energy}_LO"].quantity[0].to_value(u.TeV).ravel()
    hi = t[f"{energy}_HI"].quantity[0].to_value(u.TeV).ravel()
    olo = t["THETA_LO"].quantity[0].to_value(u.deg).ravel()
    ohi = t["THETA_HI"].quantity[0].to_value(u.deg).ravel()
    return np.append(lo, hi[-1]), np.append(olo, ohi[-1])


def _with_columns(hdu: fits.BinTableHDU, columns: dict[str, np.ndarray]) -> fits.BinTableHDU:
    """A copy of a one-row GADF table HDU with extra array columns; header kept."""
    t = Table.read(hdu)
    for name, data in columns.items():
        t[name] = np.asarray(data, dtype=float)[np.newaxis, ...]
    new = fits.table_to_hdu(t)
    for key, value in hdu.header.items():
        if key not in new.header and not key.startswith(("TTYPE", "TFORM", "TUNIT", "TDIM")):
            new.header[key] = value
    return new


def core_mask(e_edges: np.ndarray, core: tuple[float, float] = CORE_ENERGY_TEV) -> np.ndarray:
    """Energy bins entirely inside the core range."""
    return (e_edges[:-1] >= core[0] * 0.999) & (e_edges[1:] <= core[1] * 1.001)


def _finite_stats(values: np.ndarray) -> dict:
    finite = values[np.isfinite(values)]
    if not finite.size:
        return {"median": None, "max": None}
    return {"median": float(np.median(finite)), "max": float(np.max(finite))}


def annotate_irf(
    path: Path,
    gammas: Table,
    gamma_info,
    background: dict[int, tuple[Table, object]],
    background_single_bin: bool,
    source_offset_deg: float = 0.5,
) -> dict:
    """Add the statistics to the IRF file at ``path``, cap A_eff at the thrown area.

    Returns the summary for ``irf_summary.json``.
    """
    area = float(np.pi * gamma_info.max_impact.to_value(u.m) ** 2)
    with fits.open(path) as hdul:
        hdus = [h.copy() for h in hdul]
    names = [h.name for h in hdus]
    i_aeff, i_bkg = names.index("EFFECTIVE AREA"), names.index("BACKGROUND")
    aeff_hdu, bkg_hdu = hdus[i_aeff], hdus[i_bkg]

    e_edges, o_edges = hdu_edges(aeff_hdu)
    a = aeff_statistics(gammas, gamma_info, e_edges, o_edges)
    effarea = np.array(aeff_hdu.data["EFFAREA"][0], dtype=float)
    above = np.nan_to_num(effarea) > area * (1 + 1e-9)
    if above.any():
        worst = float(np.nanmax(effarea[above]) / area)
        log.warning(
            "effective area above the thrown area (%.0f m2) in %d bin(s), up to %.2f times: "
            "too few thrown showers there (a fluctuation of the thrown count); capped",
            area,
            int(above.sum()),
            worst,
        )
        effarea[above] = area
    new_aeff = _with_columns(aeff_hdu, a.values)
    new_aeff.data["EFFAREA"][0] = effarea
    # the recount must reproduce ctapipe's A_eff: k / N x A (a check on both)
    with np.errstate(divide="ignore", invalid="ignore"):
        recount = np.where(
            a.values["N_THROWN"] > 0, a.values["N_SELECTED"] / a.values["N_THROWN"] * area, 0
        )
    ok = np.isfinite(effarea) & (a.values["N_THROWN"] > 0)
    mismatch = float(np.max(np.abs(np.minimum(recount, area)[ok] - effarea[ok]))) if ok.any() else 0
    core = core_mask(e_edges)
    o_centres = 0.5 * (o_edges[1:] + o_edges[:-1])
    i_src = int(np.clip(np.searchsorted(o_edges, source_offset_deg) - 1, 0, len(o_centres) - 1))
    rel_src = a.values["EFFAREA_RELERR"][i_src][core]
    h = new_aeff.header
    h["IRFSTAT"] = (STATS_VERSION, "MC statistics columns (uws irf_stats)")
    h["AEFFSTAT"] = ("1/sqrt(N_SELECTED)", "EFFAREA_RELERR: Poisson x binomial, 1 sigma")
    h["AREATHR"] = (area, "m2, area the showers were thrown over")
    h["NGAMTHR"] = (int(gamma_info.n_showers), "gammas thrown")
    h["NGAMSEL"] = (int(np.count_nonzero(gammas["selected"])), "gammas selected")
    h["AEFFCAPN"] = (int(above.sum()), "bins capped at the thrown area")
    h["AEFFERRM"] = (
        _finite_stats(rel_src)["median"] or -1.0,
        f"median rel. err. {CORE_ENERGY_TEV[0]}-{CORE_ENERGY_TEV[1]} TeV at the source",
    )
    hdus[i_aeff] = new_aeff

    be, bo = hdu_edges(bkg_hdu)
    b = background_statistics(background, be, bo, background_single_bin)
    new_bkg = _with_columns(bkg_hdu, b.values)
    hb = new_bkg.header
    hb["IRFSTAT"] = (STATS_VERSION, "MC statistics columns (uws irf_stats)")
    hb["BKGSTAT"] = ("Poisson, weighted", "BKG_RELERR = sqrt(sum w2) / sum w")
    hb["BKGSMOOT"] = (
        "one FoV bin copied" if background_single_bin else "none",
        "FoV smoothing of the background",
    )
    n_bkg = b.values["N_EVENTS"][0] if background_single_bin else b.values["N_EVENTS"].sum(0)
    n_el = b.values["N_ELECTRONS"][0] if background_single_bin else b.values["N_ELECTRONS"].sum(0)
    hb["NBKGEVT"] = (int(n_bkg.sum()), "selected background MC events")
    hb["NELEEVT"] = (int(n_el.sum()), "of which electrons")
    hdus[i_bkg] = new_bkg
    fits.HDUList(hdus).writeto(path, overwrite=True)

    bkg_core = core_mask(be)
    bkg_rel = b.values["BKG_RELERR"][0][bkg_core]
    measured = np.isfinite(b.values["BKG_RELERR"])
    summary = {
        "irf_statistics": {
            "version": STATS_VERSION,
            "thrown_area_m2": area,
            "gammas_thrown": int(gamma_info.n_showers),
            "gammas_selected": int(np.count_nonzero(gammas["selected"])),
            "gamma_viewcone_deg": float(gamma_info.viewcone_max.to_value(u.deg)),
            "aeff_bins_capped": int(above.sum()),
            "aeff_recount_max_abs_diff_m2": mismatch,
            "core_energy_range_tev": list(CORE_ENERGY_TEV),
            "aeff_offset_bins_deg": o_edges.tolist(),
            "aeff_source_offset_deg": float(o_centres[i_src]),
            "aeff_relerr_core_median": _finite_stats(rel_src)["median"],
            "aeff_relerr_core_max": _finite_stats(rel_src)["max"],
            "aeff_relerr_core_by_offset": [
                _finite_stats(a.values["EFFAREA_RELERR"][i][core]) for i in range(len(o_centres))
            ],
            "aeff_selected_core_by_offset": [
                int(a.values["N_SELECTED"][i][core].sum()) for i in range(len(o_centres))
            ],
            "background_events": int(n_bkg.sum()),
            "background_electrons": int(n_el.sum()),
            "background_smoothing": hb["BKGSMOOT"],
            "background_bins_measured": int(measured.sum()),
            "background_bins": int(measured.size),
            "bkg_relerr_core_median": _finite_stats(bkg_rel)["median"],
            "bkg_relerr_core_max": _finite_stats(bkg_rel)["max"],
        }
    }
    log.info(
        "IRF statistics: %d of %d gammas selected; A_eff relative error %s-%s TeV at "
        "%.2f deg: median %s, max %s; background: %d events (%d electrons), %d of %d bins "
        "measured; %d A_eff bin(s) capped",
        summary["irf_statistics"]["gammas_selected"],
        gamma_info.n_showers,
        *CORE_ENERGY_TEV,
        o_centres[i_src],
        summary["irf_statistics"]["aeff_relerr_core_median"],
        summary["irf_statistics"]["aeff_relerr_core_max"],
        n_bkg.sum(),
        n_el.sum(),
        measured.sum(),
        measured.size,
        above.sum(),
    )
    return summary
