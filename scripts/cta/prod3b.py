"""CTA prod3b-v2 public performance curves as the fast path's IRFs.

Why: the fast path needs IRFs a CTAO scientist recognises. The CTA Observatory published
the prod3b-v2 performance of its baseline arrays (www.cta-observatory.org/science/
cta-performance/, "prod3b-v2"): effective area, 68 % angular resolution, energy
resolution, residual background rate per deg² and differential sensitivity, for CTA South
(Paranal) and North (La Palma), at 20°, 40° and 60° zenith, with cuts optimised for
0.5 h, 5 h and 50 h. The PyPI package ``ctaplot`` (0.6.6, MIT) ships those text tables
as data files (installed under ``<sys.prefix>/ctaplot/`` by ``pip install --no-deps
ctaplot==0.6.6``, see ``scripts/install_test_deps.sh``). They are read from there, found
through the distribution's file list: ``import ctaplot`` would need Jupyter widgets.

What the tables give and what is assumed here (``docs/science.md``, "CTA performance"):

* the IRF set is the 50 h one, the only cut optimisation with all four curves (0.5 h and
  5 h have effective area and sensitivity only), at the tabulated zenith nearest to the
  run's (20/40/60°: no interpolation between zenith angles);
* effective area: the "no direction cut" curve (after gamma/hadron cuts), i.e. a
  full-enclosure IRF; log-log interpolated in true energy, zero below the table, the last
  value held above it;
* PSF: a 2D Gaussian whose 68 % containment radius is the published angular resolution
  (sigma = R68 / 1.5096); energy dispersion: Gaussian in migra, no bias, sigma = the
  published energy resolution (the half-width of the 68 % interval of ΔE/E). Both held at
  their end values outside the tables;
* background: the published rate per deg² in each reconstructed-energy bin, divided by
  the bin width, log-log interpolated (extrapolated by the end slopes, never rising) and
  rescaled within each bin so that its integral over the bin is the published rate;
* field-of-view offset: the tables are on-axis only. Assumed (not from prod3b): effective
  area and background fall off as exp(-θ²/2/σ²) with σ = ``OFFSET_SIGMA_DEG``; PSF and
  energy dispersion are flat in offset.
"""

from __future__ import annotations

import importlib.metadata
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

#: The release read (its header says "prod3b-v2"); v1 has no 60° tables.
VERSION = "prod3b-v2"
ZENITHS = (20, 40, 60)
SITES = {"south": "South", "north": "North"}
#: Observation time the cuts were optimised for: the only set with all four curves.
CUTS = "50h"
#: Baseline arrays of the prod3b performance: South 4 LST + 25 MST + 70 SST, North 4 LST
#: + 15 MST.
N_TELS = {"south": 99, "north": 19}
#: Assumed FoV fall-off of effective area and background (deg): not in the tables.
OFFSET_SIGMA_DEG = 2.5
SOURCE_URL = "https://www.cta-observatory.org/science/cta-performance/"
CTAPLOT = "ctaplot"
CTAPLOT_VERSION = "0.6.6"
#: Energy bins per decade of the IRFs: fine enough for gammapy's interpolation to follow
#: the tables near threshold.
PER_DECADE = 20
#: R68 / sigma of a 2D Gaussian: sqrt(-2 ln(1 - 0.68)).
R68_PER_SIGMA = math.sqrt(-2.0 * math.log(1.0 - 0.68))

_QUANTITIES = ("EffAreaNoDirectionCut", "EffArea", "Angres", "Eres", "BackgroundSqdeg", "DiffSens")


class PerformanceNotFound(RuntimeError):
    """The ctaplot data files are not installed (or lack the requested table)."""


@dataclass(frozen=True)
class Performance:
    """One published IRF set: a site, a zenith angle, the 50 h cuts."""

    site: str  # "south" | "north"
    zenith: int  # deg, one of ZENITHS
    aeff: np.ndarray  # (E TeV, m²) after gamma/hadron cuts, no direction cut
    aeff_direction_cut: np.ndarray  # (E TeV, m²) with the direction cut too
    angres: np.ndarray  # (E TeV, R68 deg)
    eres: np.ndarray  # (E TeV, ΔE/E)
    background: np.ndarray  # (E_min TeV, E_max TeV, Hz/deg²) in reconstructed energy
    sensitivity: np.ndarray  # (E_min TeV, E_max TeV, E² F erg cm⁻² s⁻¹), 50 h
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """Human-readable IRF name written into the DL3 headers."""
        return f"{VERSION} {SITES[self.site]} {self.zenith}deg {CUTS}"

    @property
    def caldb_name(self) -> str:
        """CALDB-style IRF name (as in CTA's own IRF releases, e.g. South_z20_50h)."""
        return f"{SITES[self.site]}_z{self.zenith}_{CUTS}"


def _ctaplot() -> importlib.metadata.Distribution:
    """The installed ctaplot distribution (its file list locates the tables)."""
    return importlib.metadata.distribution(CTAPLOT)


def data_files() -> dict[str, Path]:
    """The prod3b-v2 tables installed with ctaplot, by file name."""
    try:
        dist = _ctaplot()
    except importlib.metadata.PackageNotFoundError:
        raise PerformanceNotFound(
            f"{CTAPLOT} {CTAPLOT_VERSION} is not installed: the CTA prod3b performance "
            "curves come from its data files (run scripts/install_test_deps.sh)"
        ) from None
    found = {}
    for entry in dist.files or ():
        name = Path(str(entry)).name
        if name.startswith(f"CTA-Performance-{VERSION}-") and name.endswith(".txt"):
            found[name] = Path(dist.locate_file(entry)).resolve()
    if not found:
        raise PerformanceNotFound(f"{CTAPLOT} {dist.version} lists no {VERSION} tables")
    return found


def data_version() -> str:
    """Version of the installed ctaplot whose tables are read (checks they are there)."""
    data_files()
    return _ctaplot().version


def read_table(path: Path) -> np.ndarray:
    """The numeric rows of a CTA performance text file (its prose header skipped)."""
    rows = []
    for line in path.read_text().splitlines():
        parts = line.split()
        try:
            values = [float(p) for p in parts]
        except ValueError:
            continue
        if values:
            rows.append(values)
    if not rows:
        raise PerformanceNotFound(f"{path.name}: no numeric rows")
    return np.array(rows, dtype=float)


def nearest_zenith(zenith_deg: float) -> int:
    """The tabulated zenith angle nearest to ``zenith_deg`` (ties go to the larger)."""
    return min(ZENITHS, key=lambda z: (abs(z - zenith_deg), -z))


@lru_cache(maxsize=8)
def load(site: str, zenith: int) -> Performance:
    """The published curves of ``site`` at tabulated ``zenith`` (cached per process)."""
    if site not in SITES:
        raise ValueError(f"site {site!r} is not one of {', '.join(SITES)}")
    if zenith not in ZENITHS:
        raise ValueError(f"zenith {zenith} is not one of {ZENITHS}")
    available = data_files()
    tables, files = {}, {}
    for quantity in _QUANTITIES:
        name = f"CTA-Performance-{VERSION}-{SITES[site]}-{zenith}deg-{CUTS}-{quantity}.txt"
        if name not in available:
            raise PerformanceNotFound(f"{CTAPLOT} lacks {name}")
        files[quantity] = available[name]
        tables[quantity] = read_table(available[name])
    return Performance(
        site=site,
        zenith=zenith,
        aeff=tables["EffAreaNoDirectionCut"],
        aeff_direction_cut=tables["EffArea"],
        angres=tables["Angres"],
        eres=tables["Eres"],
        background=tables["BackgroundSqdeg"],
        sensitivity=tables["DiffSens"],
        files=files,
    )


def _loglog(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """log-log interpolation, end values held outside ``xp``."""
    return np.exp(np.interp(np.log(x), np.log(xp), np.log(fp)))


def effective_area_m2(perf: Performance, energy_tev: np.ndarray) -> np.ndarray:
    """On-axis full-enclosure effective area; zero below the table's first energy."""
    e, a = perf.aeff[:, 0], perf.aeff[:, 1]
    out = _loglog(energy_tev, e, a)
    return np.where(energy_tev < e[0], 0.0, out)


def psf_sigma_deg(perf: Performance, energy_tev: np.ndarray) -> np.ndarray:
    """Gaussian PSF sigma whose 68 % containment is the published angular resolution."""
    return _loglog(energy_tev, perf.angres[:, 0], perf.angres[:, 1]) / R68_PER_SIGMA


def energy_resolution(perf: Performance, energy_tev: np.ndarray) -> np.ndarray:
    """Published ΔE/E (68 % half-width), used as the Gaussian sigma in migra."""
    return _loglog(energy_tev, perf.eres[:, 0], perf.eres[:, 1])


def _background_shape(perf: Performance, energy_tev: np.ndarray) -> np.ndarray:
    """Each bin's rate / width at the bin's log centre, joined log-log; outside the table
    extrapolated with the slope of the two end points, never rising towards the ends."""
    lo, hi, rate = perf.background.T
    x, y = np.log(np.sqrt(lo * hi)), np.log(rate / (hi - lo))
    le = np.log(np.asarray(energy_tev, dtype=float))
    out = np.interp(le, x, y)
    slope_lo = min((y[1] - y[0]) / (x[1] - x[0]), 0.0)
    slope_hi = min((y[-1] - y[-2]) / (x[-1] - x[-2]), 0.0)
    out = np.where(le < x[0], y[0] + slope_lo * (le - x[0]), out)
    out = np.where(le > x[-1], y[-1] + slope_hi * (le - x[-1]), out)
    return np.exp(out)


def background_rate(perf: Performance, energy_tev: np.ndarray) -> np.ndarray:
    """On-axis differential background rate in s⁻¹ TeV⁻¹ deg⁻².

    The log-log curve through each bin's mean (``_background_shape``), rescaled inside
    each published bin so that its integral over the bin is the published rate: the
    background counts the DL3 predicts per bin are the published ones.
    """
    energy_tev = np.asarray(energy_tev, dtype=float)
    lo, hi, rate = perf.background.T
    out = _background_shape(perf, energy_tev)
    for e_lo, e_hi, r in zip(lo, hi, rate, strict=True):
        grid = np.geomspace(e_lo, e_hi, 64)
        integral = np.trapezoid(_background_shape(perf, grid), grid)
        inside = (energy_tev >= e_lo) & (energy_tev < e_hi)
        out = np.where(inside, out * (r / integral), out)
    return out


def offset_fall_off(offset_deg: np.ndarray) -> np.ndarray:
    """Assumed relative acceptance at FoV offset (not in the on-axis tables)."""
    return np.exp(-0.5 * (np.asarray(offset_deg) / OFFSET_SIGMA_DEG) ** 2)


def header_keywords(perf: Performance) -> dict[str, tuple]:
    """Keywords naming the IRF set in every DL3 HDU (CALDB-style boundaries + names)."""
    return {
        "TELESCOP": ("CTA", "CTA Observatory"),
        "INSTRUME": (SITES[perf.site], "CTA site (array of the prod3b performance)"),
        "IRF_NAME": (perf.name, "CTA performance the IRFs come from"),
        "IRF_VERS": (VERSION, "CTA performance release"),
        "IRF_ZEN": (perf.zenith, "deg, zenith angle of the tables used"),
        "IRF_CUTS": (CUTS, "observation time the cuts were optimised for"),
        "IRF_SRC": (f"{CTAPLOT} {CTAPLOT_VERSION} CTA_Performance", "where the tables ship"),
        "IRF_URL": (SOURCE_URL, ""),
        "IRF_OFF": (
            f"on-axis tables; aeff,bkg x exp(-off^2/2/{OFFSET_SIGMA_DEG:g}deg^2) assumed",
            "",
        ),
        "CBD10001": (f"NAME({perf.caldb_name})", "CALDB boundary: IRF name"),
        "CBD20001": (f"VERSION({VERSION})", "CALDB boundary: release"),
    }


def make_irfs(perf: Performance, max_offset_deg: float = 4.0) -> dict:
    """gammapy full-enclosure IRFs (aeff, edisp, psf, bkg) built from ``perf``."""
    import astropy.units as u
    from gammapy.irf import PSF3D, Background2D, EffectiveAreaTable2D, EnergyDispersion2D
    from gammapy.maps import MapAxis

    energy_true = MapAxis.from_energy_bounds(
        0.03, 300, nbin=PER_DECADE, per_decade=True, unit="TeV", name="energy_true"
    )
    energy = MapAxis.from_energy_bounds(0.03, 300, nbin=PER_DECADE, per_decade=True, unit="TeV")
    offset = MapAxis.from_bounds(0, max_offset_deg, nbin=16, unit="deg", name="offset")
    e_true = energy_true.center.to_value("TeV")
    fall_off = offset_fall_off(offset.center.to_value("deg"))
    meta = {key: value for key, (value, _) in header_keywords(perf).items()}

    aeff = EffectiveAreaTable2D(
        axes=[energy_true, offset],
        data=effective_area_m2(perf, e_true)[:, None] * fall_off[None, :],
        unit="m2",
        meta=dict(meta),
    )

    # migra bins of 0.01, finer than the best published resolution (~0.035); PSF and
    # energy dispersion are flat in offset, so a few offset bins carry them.
    migra = MapAxis.from_bounds(0.2, 3.0, nbin=280, node_type="edges", name="migra")
    flat = MapAxis.from_bounds(0, max_offset_deg, nbin=4, unit="deg", name="offset")
    m_edges = migra.edges.to_value("")
    sigma_e = energy_resolution(perf, e_true)[:, None]
    from scipy.special import erf

    cdf = 0.5 * (1 + erf((m_edges[None, :] - 1.0) / (np.sqrt(2) * sigma_e)))
    pdf = np.diff(cdf, axis=1) / np.diff(m_edges)[None, :]
    edisp = EnergyDispersion2D(
        axes=[energy_true, migra, flat],
        data=pdf[:, :, None] * np.ones(flat.nbin)[None, None, :],
        meta=dict(meta),
    )

    rad = MapAxis.from_bounds(0, 1.5, nbin=150, unit="deg", name="rad")
    sigma = psf_sigma_deg(perf, e_true)
    r = rad.center.to_value("deg")
    profile = np.exp(-0.5 * (r[None, :] / sigma[:, None]) ** 2)
    norm = 2 * np.pi * np.deg2rad(sigma)[:, None] ** 2
    psf = PSF3D(
        axes=[energy_true, flat, rad],
        data=(profile / norm)[:, None, :] * np.ones(flat.nbin)[None, :, None],
        unit="sr-1",
        meta=dict(meta),
    )

    rate = background_rate(perf, energy.center.to_value("TeV"))  # s-1 TeV-1 deg-2
    bkg = Background2D(
        axes=[energy, offset],
        data=rate[:, None] * fall_off[None, :],
        unit=u.Unit("s-1 TeV-1 deg-2"),
        meta=dict(meta),
    )
    bkg = Background2D(
        axes=bkg.axes,
        data=bkg.quantity.to_value("s-1 MeV-1 sr-1"),
        unit="s-1 MeV-1 sr-1",
        meta=dict(meta),
    )
    return {"aeff": aeff, "edisp": edisp, "psf": psf, "bkg": bkg}


def describe(perf: Performance) -> dict:
    """What the summary says about the IRFs (numbers at 1 TeV, on axis)."""
    one = np.array([1.0])
    return {
        "name": perf.name,
        "release": VERSION,
        "site": perf.site,
        "zenith_deg": perf.zenith,
        "cuts": CUTS,
        "source": f"{CTAPLOT} {CTAPLOT_VERSION} data files CTA_Performance ({SOURCE_URL})",
        "files": sorted(p.name for p in perf.files.values()),
        "aeff_1tev_m2": float(effective_area_m2(perf, one)[0]),
        "psf_r68_1tev_deg": float(psf_sigma_deg(perf, one)[0] * R68_PER_SIGMA),
        "energy_resolution_1tev": float(energy_resolution(perf, one)[0]),
        "background_1tev_per_s_tev_deg2": float(background_rate(perf, one)[0]),
        "offset_dependence": (
            f"tables on-axis; effective area and background x exp(-offset^2/2/"
            f"{OFFSET_SIGMA_DEG:g}deg^2) assumed; PSF and energy dispersion flat in offset"
        ),
    }
