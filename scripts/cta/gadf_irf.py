"""GADF IRF handling between ctapipe's ``compute-irf`` output and gammapy.

Why: ``ctapipe-compute-irf`` writes valid GADF, but what it writes for a small toy MC is
not usable by gammapy as is:

* point-like gamma MC gives one FoV-offset bin; gammapy 2.1 cannot project such an IRF
  on a 3D map, so the bin is copied over 0-3 deg (the toy's IRFs are taken as flat in
  offset, which is what a single wobble-offset MC can tell);
* at small scale no simulated proton may survive the cuts: an all-zero background IRF
  masks everything in gammapy, so empty bins get a small floor (logged, and recorded
  in the header as ``BKGFLOOR``);
* IRFs depend on zenith: the pointing of the MC goes into every IRF header
  (``ZEN_PNT``, ``ALT_PNT``, ``AZ_PNT``) so ``analysis`` can refuse a mismatch.
"""

from __future__ import annotations

import logging
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import QTable, Table

from .toy import instrument as ti

log = logging.getLogger("uws.cta.gadf_irf")

IRF_HDUS = ("EFFECTIVE AREA", "ENERGY DISPERSION", "PSF", "BACKGROUND")
#: FoV-offset bins the single-bin IRFs are copied over (deg).
OFFSET_EDGES = np.arange(0.0, 3.01, 0.5)
BKG_OFFSET_MAX = 3.0
#: (data column, numpy axis of THETA in one row) for each IRF HDU written by pyirf.
THETA_AXIS = {
    "EFFECTIVE AREA": ("EFFAREA", 0),
    "ENERGY DISPERSION": ("MATRIX", 0),
    "PSF": ("RPSF", 1),
    "BACKGROUND": ("BKG", 0),
}
ALL_ZERO_BKG_FLOOR = 1e-12  # s-1 MeV-1 sr-1, used only if no background bin is positive


def pointing_of(dl2_path: Path) -> dict[str, float]:
    """Pointing (deg) of the MC in a ctapipe DL2 file (its observation block)."""
    from ctapipe.io import read_table

    ob = read_table(dl2_path, "/configuration/observation/observation_block")
    alt = u.Quantity(ob["subarray_pointing_lat"][0], u.deg).to_value(u.deg)
    az = u.Quantity(ob["subarray_pointing_lon"][0], u.deg).to_value(u.deg)
    return {"alt": float(alt), "az": float(az), "zenith": float(90.0 - alt)}


def _expand_theta(hdu: fits.BinTableHDU) -> fits.BinTableHDU:
    """Copy a single FoV-offset bin over ``OFFSET_EDGES`` (header keywords kept)."""
    column, axis = THETA_AXIS[hdu.name]
    table = Table.read(hdu)
    if table["THETA_LO"].shape[-1] != 1:
        return hdu
    n = len(OFFSET_EDGES) - 1
    out = Table()
    for name in table.colnames:
        col = table[name]
        if name == "THETA_LO":
            out[name] = (OFFSET_EDGES[:-1][np.newaxis, :]) * u.deg
        elif name == "THETA_HI":
            out[name] = (OFFSET_EDGES[1:][np.newaxis, :]) * u.deg
        elif name == column:
            data = np.repeat(np.asarray(col), n, axis=axis + 1)
            out[name] = data * (col.unit or u.one) if col.unit else data
        else:
            out[name] = col
    new = fits.table_to_hdu(out)
    for key, value in hdu.header.items():
        if key.startswith(("HDU", "CREF", "EXTNAME", "OBS_", "TELESCOP", "INSTRUME", "BKG")):
            new.header[key] = value
    new.header["OFFSETCP"] = (True, "single FoV-offset bin copied over 0-3 deg")
    return new


def _floor_background(hdu: fits.BinTableHDU) -> tuple[fits.BinTableHDU, float | None]:
    """Replace empty background bins by a floor; returns the floor used (None: none)."""
    data = np.array(hdu.data["BKG"], dtype=float)
    zero = ~(data > 0)
    if not zero.any():
        return hdu, None
    positive = data[data > 0]
    if positive.size:
        floor = float(positive.min() / 10.0)
    else:
        floor = ALL_ZERO_BKG_FLOOR
        log.warning(
            "background IRF is all zero (no proton survived the cuts): "
            "floor %.1e s-1 MeV-1 sr-1 everywhere",
            floor,
        )
    data[zero] = floor
    hdu.data["BKG"] = data
    hdu.header["BKGFLOOR"] = (floor, "floor put in empty background bins")
    log.info("background IRF: %d of %d bins empty, set to %.2e", zero.sum(), zero.size, floor)
    return hdu, floor


def background_is_empty(path: Path) -> bool:
    """True if the BACKGROUND HDU has no positive bin (no proton survived the cuts)."""
    with fits.open(path) as hdul:
        return not np.any(np.asarray(hdul["BACKGROUND"].data["BKG"]) > 0)


def finalise_irf(
    raw: Path,
    output: Path,
    pointing: dict[str, float],
    background: tuple[Path, float] | None = None,
) -> dict:
    """Write the gammapy-ready IRF file; returns figures for the summary.

    ``background`` = (IRF file computed without gammaness cut, scale) replaces an empty
    background by that file's BACKGROUND times ``scale``.
    """
    summary: dict = {
        "pointing": pointing,
        "background_floor_applied": None,
        "background_scaled_from_quality_cut": None,
    }
    with fits.open(raw) as hdul:
        hdus = [fits.PrimaryHDU()]
        for hdu in hdul[1:]:
            if hdu.name not in IRF_HDUS:
                continue
            if hdu.name == "BACKGROUND" and background is not None:
                with fits.open(background[0]) as other:
                    hdu = other["BACKGROUND"].copy()
                hdu.data["BKG"] = np.asarray(hdu.data["BKG"]) * background[1]
                hdu.header["BKGSCALE"] = (background[1], "no-gh-cut background x survival")
                summary["background_scaled_from_quality_cut"] = background[1]
            new = _expand_theta(hdu)
            if new.name == "BACKGROUND":
                new, floor = _floor_background(new)
                summary["background_floor_applied"] = floor
            new.header["ALT_PNT"] = (pointing["alt"], "deg, MC pointing altitude")
            new.header["AZ_PNT"] = (pointing["az"], "deg, MC pointing azimuth")
            new.header["ZEN_PNT"] = (pointing["zenith"], "deg, MC pointing zenith angle")
            new.header["TELESCOP"] = "CTAO-TOY"
            new.header["INSTRUME"] = ti.SUBARRAY_NAME
            new.header["TOYINSTR"] = ti.INSTRUMENT_VERSION
            hdus.append(new)
    names = [h.name for h in hdus[1:]]
    missing = [n for n in IRF_HDUS if n not in names]
    if missing:
        raise ValueError(f"compute-irf output lacks {', '.join(missing)}")
    fits.HDUList(hdus).writeto(output, overwrite=True)
    summary.update(irf_figures(output))
    return summary


def irf_figures(path: Path) -> dict:
    """Key numbers of an IRF file (through gammapy, as the analysis will read it)."""
    from gammapy.irf import PSF3D, EffectiveAreaTable2D, EnergyDispersion2D

    offset = 0.5 * u.deg
    aeff = EffectiveAreaTable2D.read(path, hdu="EFFECTIVE AREA")
    psf = PSF3D.read(path, hdu="PSF")
    edisp = EnergyDispersion2D.read(path, hdu="ENERGY DISPERSION")
    energy = 1 * u.TeV
    aeff_values = aeff.evaluate(offset=offset, energy_true=aeff.axes["energy_true"].center)
    psf68 = psf.containment_radius(0.68, energy_true=energy, offset=offset)
    migra = edisp.axes["migra"].center
    pdf = edisp.evaluate(offset=offset, energy_true=energy, migra=migra)
    pdf = np.nan_to_num(np.asarray(pdf, dtype=float))
    if pdf.sum() > 0:
        cdf = np.cumsum(pdf) / pdf.sum()
        lo, hi = np.interp([0.16, 0.84], cdf, migra)
        resolution = float((hi - lo) / 2)
    else:
        resolution = float("nan")
    return {
        "aeff_max_m2": float(np.nanmax(aeff_values.to_value(u.m**2))),
        "aeff_1tev_m2": float(aeff.evaluate(offset=offset, energy_true=energy).to_value(u.m**2)),
        "psf68_1tev_deg": float(psf68.to_value(u.deg)),
        "energy_resolution_1tev": resolution,
    }


def benchmark_summary(path: Path, energy: u.Quantity = 1 * u.TeV) -> dict:
    """Benchmarks written by compute-irf, in the energy bin containing ``energy``."""
    wanted = {
        "ANGULAR RESOLUTION": ("ANGULAR_RESOLUTION_68", "angular_resolution_68_deg", u.deg),
        "ENERGY BIAS RESOLUTION": ("RESOLUTION", "energy_resolution_benchmark", u.one),
    }
    out: dict = {}
    with fits.open(path) as hdul:
        names = {h.name for h in hdul}
    for hdu, (column, key, unit) in wanted.items():
        if hdu not in names:
            continue
        table = QTable.read(path, hdu=hdu)
        lo = u.Quantity(table["ENERG_LO"][0]).to_value(u.TeV).ravel()
        hi = u.Quantity(table["ENERG_HI"][0]).to_value(u.TeV).ravel()
        values = np.asarray(u.Quantity(table[column][0]).to_value(unit)).reshape(-1, lo.size)
        inside = np.flatnonzero((lo <= energy.to_value(u.TeV)) & (hi > energy.to_value(u.TeV)))
        if inside.size:
            out[key] = float(values[0, inside[0]])
    return out


def read_irf_pointing(path: Path) -> dict[str, float]:
    """The MC pointing recorded in the IRF's EFFECTIVE AREA header."""
    header = fits.getheader(path, extname="EFFECTIVE AREA")
    if "ZEN_PNT" not in header:
        raise ValueError(f"{path.name}: no ZEN_PNT in EFFECTIVE AREA (not from irf_production)")
    return {"alt": header["ALT_PNT"], "az": header["AZ_PNT"], "zenith": header["ZEN_PNT"]}
