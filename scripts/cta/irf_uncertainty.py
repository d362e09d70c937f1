"""The IRF statistical uncertainty of a fit: what the MC statistics of its IRFs allow.

Why: a flux or amplitude is only as good as the effective area it is divided by. The
chain's IRFs come from a finite number of simulated showers; ``irf_production`` writes
per bin the relative error of the effective area (selected gammas: binomial selection of
a Poisson thrown count) and of the background rate (Poisson) as extra columns of the
EFFECTIVE AREA and BACKGROUND HDUs (``irf_stats``), and the DL3 writer copies them into
every observation file. This module reads them back for the observations and energy range
a fit used, so each fit result states, next to its statistical error, how uncertain its
IRFs are. Analytic IRFs (the fast path) carry no
such columns: ``stated`` is then False, which says "no MC statistics", not "exact".

Averaging: for each observation, the effective-area bins (true energy) overlapping the
fit's range at the target's FoV offset (interpolated between offset-bin centres, the way
gammapy evaluates the IRF); ``aeff_relerr_combined`` is the relative error of the
effective area summed over those bins with weights ~ E^-2.5 x bin width (independent
bins), the number that scales a fitted amplitude or integral flux.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

METHOD = (
    "effective area: 1/sqrt(selected MC gammas) per (true energy, FoV offset) bin (binomial "
    "selection of a Poisson thrown count); background: Poisson on the weighted MC events"
)
DEFAULT_OFFSET_DEG = 0.5
WEIGHT_INDEX = 2.5


def _edges(table, name: str, unit: str) -> np.ndarray:

    lo = table[f"{name}_LO"].quantity[0].to_value(unit).ravel()
    hi = table[f"{name}_HI"].quantity[0].to_value(unit).ravel()
    return np.append(lo, hi[-1])


def _target_offset(header, target: tuple[float, float] | None) -> float:
    """FoV offset (deg) of the target from the EVENTS header's pointing."""
    if target is None or "RA_PNT" not in header:
        return DEFAULT_OFFSET_DEG
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    pnt = SkyCoord(header["RA_PNT"], header["DEC_PNT"], unit="deg")
    return float(pnt.separation(SkyCoord(*target, unit="deg")).to_value(u.deg))


def _at_offset(values: np.ndarray, o_edges: np.ndarray, offset: float) -> np.ndarray:
    """Values (n_offset, n_energy) at ``offset``: linear between bin centres, clipped."""
    centres = 0.5 * (o_edges[1:] + o_edges[:-1])
    if len(centres) == 1:
        return values[0]
    x = float(np.clip(offset, centres[0], centres[-1]))
    i = int(np.clip(np.searchsorted(centres, x) - 1, 0, len(centres) - 2))
    f = (x - centres[i]) / (centres[i + 1] - centres[i])
    return (1 - f) * values[i] + f * values[i + 1]


def file_uncertainty(
    path: Path, energy_range_tev: Sequence[float], target: tuple[float, float] | None = None
) -> dict[str, Any]:
    """The statistics of one DL3 (or IRF) file over ``energy_range_tev`` at the target."""
    from astropy.io import fits
    from astropy.table import Table

    path = Path(path)
    try:
        with fits.open(path) as hdul:
            names = [h.name for h in hdul]
            if "EFFECTIVE AREA" not in names:
                raise ValueError(f"{path.name}: no EFFECTIVE AREA HDU (not a DL3/IRF file)")
            events = hdul["EVENTS"].header if "EVENTS" in names else {}
            aeff = Table.read(hdul["EFFECTIVE AREA"])
            aeff_header = hdul["EFFECTIVE AREA"].header
            bkg = Table.read(hdul["BACKGROUND"]) if "BACKGROUND" in names else None
    except OSError as exc:
        raise ValueError(f"{path.name}: not a FITS file ({exc})") from None
    offset = _target_offset(events, target)
    out: dict[str, Any] = {
        "file": path.name,
        "obs_id": int(events.get("OBS_ID", aeff_header.get("OBS_ID", -1))),
        "offset_deg": offset,
        "stated": "EFFAREA_RELERR" in aeff.colnames,
    }
    if not out["stated"]:
        return out
    emin, emax = float(energy_range_tev[0]), float(energy_range_tev[1])
    e_edges = _edges(aeff, "ENERG", "TeV")
    o_edges = _edges(aeff, "THETA", "deg")
    inside = (e_edges[1:] > emin) & (e_edges[:-1] < emax)
    rel = _at_offset(np.asarray(aeff["EFFAREA_RELERR"][0], dtype=float), o_edges, offset)
    area = _at_offset(np.asarray(aeff["EFFAREA"][0], dtype=float), o_edges, offset)
    n_sel = _at_offset(np.asarray(aeff["N_SELECTED"][0], dtype=float), o_edges, offset)
    rel, area, n_sel = rel[inside], area[inside], n_sel[inside]
    centres = np.sqrt(e_edges[1:] * e_edges[:-1])[inside]
    widths = np.diff(e_edges)[inside]
    usable = np.isfinite(rel) & np.isfinite(area) & (area > 0)
    if usable.any():
        w = area[usable] * centres[usable] ** -WEIGHT_INDEX * widths[usable]
        combined = float(np.sqrt(np.sum((w * rel[usable]) ** 2)) / np.sum(w))
        out.update(
            aeff_relerr_mean=float(np.mean(rel[usable])),
            aeff_relerr_max=float(np.max(rel[usable])),
            aeff_relerr_combined=combined,
        )
    else:
        out.update(aeff_relerr_mean=None, aeff_relerr_max=None, aeff_relerr_combined=None)
    out["aeff_bins"] = int(inside.sum())
    out["aeff_bins_without_mc"] = int(inside.sum() - usable.sum())
    out["n_gamma_selected"] = int(round(float(np.nansum(n_sel))))
    out["thrown_area_m2"] = aeff_header.get("AREATHR")
    if bkg is not None and "BKG_RELERR" in bkg.colnames:
        be = _edges(bkg, "ENERG", "TeV")
        bo = _edges(bkg, "THETA", "deg")
        brel = _at_offset(np.asarray(bkg["BKG_RELERR"][0], dtype=float), bo, offset)
        brel = brel[(be[1:] > emin) & (be[:-1] < emax)]
        finite = brel[np.isfinite(brel)]
        out["bkg_relerr_mean"] = float(np.mean(finite)) if finite.size else None
        out["bkg_bins_without_mc"] = int(brel.size - finite.size)
    else:
        out["bkg_relerr_mean"] = None
    return out


def irf_uncertainty(
    paths: Iterable[Path],
    energy_range_tev: Sequence[float],
    target: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Summary over the observations of a fit (see the module docstring and the table in
    docs/science.md); JSON-ready. ``ValueError`` for a file that is not DL3/IRF."""
    per_file = [file_uncertainty(Path(p), energy_range_tev, target) for p in paths]
    stated = [f for f in per_file if f["stated"] and f.get("aeff_relerr_mean") is not None]

    def mean(key: str) -> float | None:
        values = [f[key] for f in stated if f.get(key) is not None]
        return float(np.mean(values)) if values else None

    combined = [f["aeff_relerr_combined"] for f in stated]
    return {
        "stated": bool(per_file) and len(stated) == len(per_file),
        "method": METHOD,
        "energy_range_tev": [float(energy_range_tev[0]), float(energy_range_tev[1])],
        "n_observations": len(per_file),
        "n_observations_with_statistics": len(stated),
        "aeff_relerr_mean": mean("aeff_relerr_mean"),
        "aeff_relerr_max": max((f["aeff_relerr_max"] for f in stated), default=None),
        # observations sharing one IRF share its errors: averaged, not added in quadrature
        "aeff_relerr_combined": float(np.mean(combined)) if combined else None,
        "bkg_relerr_mean": mean("bkg_relerr_mean"),
        "n_gamma_selected": sum(f.get("n_gamma_selected", 0) for f in stated) if stated else None,
        "note": None
        if stated
        else "no MC statistics in these IRFs (analytic or external): IRF error not stated",
        "observations": per_file,
    }


def scaled_error(value: float, summary: dict[str, Any]) -> float | None:
    """|value| x the combined effective-area relative error (None if not stated)."""
    rel = summary.get("aeff_relerr_combined")
    return None if rel is None else float(abs(value) * rel)


def for_obs_ids(
    obs_ids: Iterable[int],
    energy_range_tev: Sequence[float],
    target: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """:func:`irf_uncertainty` for observations of the DL3 store (``$UWS_DL3_STORE``)."""
    from .dl3_store import DL3Store

    files = [obs.events_file for obs in DL3Store().resolve(list(obs_ids))]
    return irf_uncertainty(files, energy_range_tev, target)
