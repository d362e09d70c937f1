"""Toy air showers seen by the toy array, photon by photon, down to ADC waveforms.

Why a toy and not CORSIKA/sim_telarray: those are not installable here, and the chain
only needs images whose geometry and light content carry the information ctapipe's real
algorithms (Hillas, stereo reconstruction, random forests) extract. The model:

* longitudinal profile: Cherenkov light emitted at slant depths drawn from a Gaussian
  around an energy-dependent shower maximum, converted to heights with an isothermal
  atmosphere, so images get longer and closer to the camera centre as energy grows;
* lateral spread: a Gaussian around the axis (hadrons wider, with 1-3 sub-showers on
  tilted axes, so they look irregular and the classifier has something to learn);
* light yield proportional to energy, flat light pool to 120 m impact then exponential
  fall-off, log-normal shower-to-shower fluctuations;
* each photon's camera position is the direction from the telescope to its emission
  point (plus optical PSF), its arrival time the geometric delay, so images show the
  usual displacement with impact and a time gradient along the major axis;
* waveforms: per-photon pulses with single-p.e. charge spread, night-sky background,
  electronic noise, per-pixel pedestal and gain, 12-bit ADC.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from . import instrument as ti

C_M_PER_NS = 0.299792458
SCALE_HEIGHT_KM = 8.4
SEA_LEVEL_DEPTH = 1030.0  # g / cm2
SITE_HEIGHT_KM = ti.SITE.height.to_value("km")

GAMMA_ID = 0  # sim_telarray / ctapipe convention (true_shower_primary_id)
ELECTRON_ID = 1
PROTON_ID = 101
#: Primaries whose showers are purely electromagnetic: a gamma-like image.
ELECTROMAGNETIC = (GAMMA_ID, ELECTRON_ID)

YIELD_PE_PER_TEV = {GAMMA_ID: 1000.0, ELECTRON_ID: 1000.0, PROTON_ID: 330.0}
#: An electron starts its cascade at once, a gamma only after converting (about 9/7
#: radiation lengths of 36.7 g/cm2): electron maxima sit that much higher.
ELECTRON_XMAX_SHIFT = -47.0
NSB_RATE_PE_PER_NS = 0.05
ELECTRONIC_NOISE_ADC = 1.0
ADC_MAX = 4095
PSF_SIGMA_DEG = 0.03
TRIGGER_PIXEL_PE = 5
TRIGGER_N_PIXELS = 3
TRIGGER_N_TELS = 2
PEAK_SAMPLE = 11.0  # where the readout window puts the median arrival time


@dataclass
class Shower:
    """True properties of one simulated shower (ctapipe SimulatedShowerContainer units)."""

    energy: float  # TeV
    alt: float  # rad
    az: float  # rad
    core_x: float  # m
    core_y: float  # m
    primary_id: int
    x_max: float  # g / cm2 (slant)
    h_first_int: float  # m above sea level


@dataclass
class CameraCalibration:
    """Per-telescope, per-pixel electronics truth, stored in the DL0 file.

    ``pedestal`` is the electronic baseline in ADC per sample, ``gain`` the ADC integral
    (ADC x ns) of one photo-electron. A calibration run would measure the pedestal with
    the night-sky background included; ``pedestal_with_nsb`` is that value.
    """

    pedestal: np.ndarray  # (n_tel, n_pix)
    gain: np.ndarray  # (n_tel, n_pix)

    @property
    def pedestal_with_nsb(self) -> np.ndarray:
        """Mean baseline per sample including the NSB contribution (rate x gain x 1 ns)."""
        sample_ns = 1.0 / ti.SAMPLING_RATE.to_value("GHz")
        return self.pedestal + self.gain * NSB_RATE_PE_PER_NS * sample_ns


def make_calibration(rng: np.random.Generator, n_tel: int, n_pix: int) -> CameraCalibration:
    """Pedestals around 400 ADC and gains around 10 ADC ns / p.e. with 10 % spread."""
    pedestal = rng.normal(400.0, 20.0, size=(n_tel, n_pix))
    gain = rng.normal(10.0, 1.0, size=(n_tel, n_pix)).clip(6.0, 14.0)
    return CameraCalibration(pedestal=pedestal, gain=gain)


def direction_vector(alt: float, az: float) -> np.ndarray:
    """Unit vector towards (alt, az) in ctapipe's GroundFrame (x north, y west, z up)."""
    return np.array([np.cos(alt) * np.cos(az), -np.cos(alt) * np.sin(az), np.sin(alt)])


def height_from_slant_depth(depth: np.ndarray, alt: float) -> np.ndarray:
    """Height above sea level (km) of a slant depth along an axis at altitude ``alt``."""
    vertical = np.clip(depth * np.sin(alt), 1e-3, None)
    return SCALE_HEIGHT_KM * np.log(SEA_LEVEL_DEPTH / vertical)


def ground_slant_depth(alt: float) -> float:
    """Slant depth of the site's ground along the axis (flat atmosphere)."""
    return SEA_LEVEL_DEPTH * np.exp(-SITE_HEIGHT_KM / SCALE_HEIGHT_KM) / np.sin(alt)


def x_max_mean(energy: float, primary_id: int) -> float:
    """Mean slant depth of maximum: elongation rate ~80 (gamma) / 60 (proton) per decade."""
    if primary_id == GAMMA_ID:
        return 340.0 + 80.0 * np.log10(energy)
    if primary_id == ELECTRON_ID:
        return 340.0 + ELECTRON_XMAX_SHIFT + 80.0 * np.log10(energy)
    return 420.0 + 60.0 * np.log10(energy)


def light_pool(impact_m: np.ndarray) -> np.ndarray:
    """Relative Cherenkov density vs impact distance: flat to 120 m, then exponential."""
    return np.where(impact_m < 120.0, 1.0, np.exp(-(impact_m - 120.0) / 70.0))


def impact_distances(core: np.ndarray, axis: np.ndarray, tel_pos: np.ndarray) -> np.ndarray:
    """Perpendicular distances (m) of telescopes to the shower axis."""
    d = tel_pos - core[np.newaxis, :]
    along = d @ axis
    return np.linalg.norm(d - along[:, np.newaxis] * axis[np.newaxis, :], axis=1)


def _tilt(axis: np.ndarray, angle: float, phi: float) -> np.ndarray:
    """Rotate a unit vector by ``angle`` towards azimuthal direction ``phi`` around it."""
    ref = np.array([0.0, 0.0, 1.0]) if abs(axis[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    e1 = np.cross(axis, ref)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(axis, e1)
    v = np.cos(angle) * axis + np.sin(angle) * (np.cos(phi) * e1 + np.sin(phi) * e2)
    return v / np.linalg.norm(v)


class ToyCameraSimulator:
    """Turns showers into per-telescope photo-electron lists and ADC waveforms."""

    def __init__(self, rng: np.random.Generator, calibration: CameraCalibration):
        self.rng = rng
        self.calibration = calibration
        self.subarray = ti.subarray()
        self.tel_ids = list(self.subarray.tel_ids)
        self.tel_pos = np.array([ti.TEL_POSITIONS_M[t] for t in self.tel_ids])
        geom = self.subarray.tel[self.tel_ids[0]].camera.geometry
        self.pix_xy = np.column_stack([geom.pix_x.to_value("m"), geom.pix_y.to_value("m")])
        self.n_pix = len(self.pix_xy)
        self.tree = cKDTree(self.pix_xy)
        spacing = ti.FOCAL_LENGTH.to_value("m") * np.tan(np.deg2rad(ti.PIXEL_SPACING_DEG))
        self.max_pix_dist = spacing / np.sqrt(3.0)
        self.sample_times = np.arange(ti.N_SAMPLES, dtype=float)

    # -- shower --------------------------------------------------------------------
    def sub_showers(self, shower: Shower) -> list[tuple[np.ndarray, np.ndarray, float, float]]:
        """(axis, core, light fraction, x_max) of each component of the shower."""
        axis = direction_vector(shower.alt, shower.az)
        core = np.array([shower.core_x, shower.core_y, 0.0])
        if shower.primary_id in ELECTROMAGNETIC:
            return [(axis, core, 1.0, shower.x_max)]
        n_sub = self.rng.integers(1, 4)
        fractions = self.rng.dirichlet(np.full(n_sub, 1.5))
        parts = []
        for k in range(n_sub):
            if k == 0:
                parts.append((axis, core, fractions[k], shower.x_max))
                continue
            tilt = abs(self.rng.normal(0.0, np.deg2rad(0.4)))
            sub_axis = _tilt(axis, tilt, self.rng.uniform(0, 2 * np.pi))
            sub_core = core + np.append(self.rng.normal(0.0, 40.0, 2), 0.0)
            sub_xmax = shower.x_max + self.rng.normal(0.0, 80.0)
            parts.append((sub_axis, sub_core, fractions[k], sub_xmax))
        return parts

    def photons(
        self, shower: Shower, pointing_alt: float, pointing_az: float
    ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Photo-electrons per telescope: {tel_id: (pixel index, arrival time in ns)}.

        Times are relative to the core reaching the ground; the caller places them in
        the readout window.
        """
        result: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {t: [] for t in self.tel_ids}
        is_gamma = shower.primary_id in ELECTROMAGNETIC  # electrons look like gammas
        fluct = self.rng.lognormal(0.0, 0.12 if is_gamma else 0.4)
        lateral_sigma = 22.0 if is_gamma else 32.0
        long_sigma = 90.0 if is_gamma else 120.0
        x_ground = ground_slant_depth(shower.alt)
        psf = ti.FOCAL_LENGTH.to_value("m") * np.deg2rad(PSF_SIGMA_DEG)
        for axis, core, fraction, x_max in self.sub_showers(shower):
            alt_axis = np.arcsin(axis[2])
            dist = impact_distances(core, axis, self.tel_pos)
            n_mean = YIELD_PE_PER_TEV[shower.primary_id] * shower.energy * fraction * fluct
            n_mean = n_mean * light_pool(dist)
            for i, tel_id in enumerate(self.tel_ids):
                if n_mean[i] < 5.0:
                    continue
                n = self.rng.poisson(n_mean[i])
                if n == 0:
                    continue
                depth = self.rng.normal(x_max, long_sigma, n)
                depth = np.clip(depth, 30.0, x_ground - 20.0)
                height_km = height_from_slant_depth(depth, alt_axis) - SITE_HEIGHT_KM
                s = height_km * 1000.0 / np.sin(alt_axis)  # along the axis from the core
                # lateral offset perpendicular to the axis
                ref = np.array([0.0, 0.0, 1.0]) if abs(axis[2]) < 0.9 else np.array([1, 0, 0])
                e1 = np.cross(axis, ref)
                e1 /= np.linalg.norm(e1)
                e2 = np.cross(axis, e1)
                lat = self.rng.normal(0.0, lateral_sigma, (n, 2))
                points = (
                    core[np.newaxis, :]
                    + s[:, np.newaxis] * axis[np.newaxis, :]
                    + lat[:, :1] * e1[np.newaxis, :]
                    + lat[:, 1:] * e2[np.newaxis, :]
                )
                d = points - self.tel_pos[i][np.newaxis, :]
                r = np.linalg.norm(d, axis=1)
                alt = np.arcsin(d[:, 2] / r)
                az = np.arctan2(-d[:, 1], d[:, 0])
                x, y = ti.altaz_to_camera(alt, az, pointing_alt, pointing_az)
                x = x + self.rng.normal(0.0, psf, n)
                y = y + self.rng.normal(0.0, psf, n)
                dist_pix, pix = self.tree.query(
                    np.column_stack([x, y]), distance_upper_bound=self.max_pix_dist
                )
                inside = np.isfinite(dist_pix)
                times = (r - s) / C_M_PER_NS
                result[tel_id].append((pix[inside], times[inside]))
        out = {}
        for tel_id, chunks in result.items():
            if chunks:
                out[tel_id] = (
                    np.concatenate([c[0] for c in chunks]),
                    np.concatenate([c[1] for c in chunks]),
                )
        return out

    # -- trigger and electronics -------------------------------------------------------
    def triggered(self, pe: dict[int, tuple[np.ndarray, np.ndarray]]) -> list[int]:
        """Telescopes passing the toy trigger (>= 3 pixels with >= 5 Cherenkov p.e.)."""
        tels = []
        for tel_id, (pix, _) in pe.items():
            counts = np.bincount(pix, minlength=self.n_pix)
            if np.count_nonzero(counts >= TRIGGER_PIXEL_PE) >= TRIGGER_N_PIXELS:
                tels.append(tel_id)
        return tels if len(tels) >= TRIGGER_N_TELS else []

    def waveform(self, tel_index: int, pix: np.ndarray, times: np.ndarray, t0: float) -> np.ndarray:
        """12-bit ADC waveform (n_pix, n_samples) of one telescope event.

        ``t0`` is the shower time mapped onto ``PEAK_SAMPLE`` (the array trigger time).
        """
        rng = self.rng
        n_nsb_window = ti.N_SAMPLES + 10.0
        n_nsb = rng.poisson(NSB_RATE_PE_PER_NS * n_nsb_window, self.n_pix)
        nsb_pix = np.repeat(np.arange(self.n_pix), n_nsb)
        nsb_t = rng.uniform(-10.0, ti.N_SAMPLES, nsb_pix.size)
        all_pix = np.concatenate([pix, nsb_pix])
        all_t = np.concatenate([times - t0 + PEAK_SAMPLE, nsb_t])
        charge = rng.normal(1.0, 0.35, all_pix.size).clip(0.05, None)
        gain = self.calibration.gain[tel_index]
        amp = charge * gain[all_pix]
        wf = np.empty((self.n_pix, ti.N_SAMPLES))
        for s in range(ti.N_SAMPLES):
            wf[:, s] = np.bincount(
                all_pix, weights=amp * ti.pulse_in_samples(s - all_t), minlength=self.n_pix
            )
        wf += self.calibration.pedestal[tel_index][:, np.newaxis]
        wf += rng.normal(0.0, ELECTRONIC_NOISE_ADC, wf.shape)
        return np.clip(np.rint(wf), 0, ADC_MAX).astype(np.uint16)

    def true_image(self, pix: np.ndarray) -> np.ndarray:
        """Cherenkov photo-electrons per pixel (simulation truth)."""
        return np.bincount(pix, minlength=self.n_pix).astype(np.int32)
