"""The project's toy CTA instrument, built entirely in code.

Why in code: ctapipe's instrument descriptions normally come from simulation files or
downloaded service data (``CameraGeometry.from_name`` needs the network), and this project
runs offline. Four MST-like telescopes on a 160 m square with a 1261-pixel hexagonal
camera (0.175 deg pixels, 16 m focal length) and a 1 GHz, 30-sample readout are enough for
stereo Hillas reconstruction, ML training and IRFs at CI scale.

Everything a DL0 file needs to be interpreted (pulse shape, geometry, site) lives here, so
the simulation (writer) and the ctapipe EventSource (reader) cannot disagree: the DL0
file records ``INSTRUMENT_VERSION`` and the reader refuses another version.
"""

from __future__ import annotations

from functools import lru_cache

import astropy.units as u
import numpy as np
from astropy.coordinates import EarthLocation
from ctapipe.coordinates import CameraFrame
from ctapipe.instrument import (
    CameraDescription,
    CameraGeometry,
    CameraReadout,
    OpticsDescription,
    ReflectorShape,
    SizeType,
    SubarrayDescription,
    TelescopeDescription,
)
from ctapipe.instrument.camera.geometry import PixelShape

#: Bumped whenever anything below changes the meaning of DL0 data.
INSTRUMENT_VERSION = "toy-mst-4tel-v1"

SUBARRAY_NAME = "UWS-TOY-4MST"
CAMERA_NAME = "ToyHexCam"
OPTICS_NAME = "ToyMST"

FOCAL_LENGTH = 16.0 * u.m
PIXEL_SPACING_DEG = 0.175  # angular flat-to-flat distance of neighbouring pixels
N_RINGS = 20  # 3 * n * (n + 1) + 1 = 1261 pixels
N_SAMPLES = 30
SAMPLING_RATE = 1.0 * u.GHz
PULSE_TAU_NS = 1.2  # time constant of the (t/tau)^2 exp(-t/tau) pulse: ~4 ns FWHM
MIRROR_AREA = 106.0 * u.m**2

#: Site: CTAO-South (Paranal) coordinates, built here because ``EarthLocation.of_site``
#: may need a download.
SITE = EarthLocation(lon=-70.3165 * u.deg, lat=-24.6832 * u.deg, height=2150 * u.m)

#: Telescope positions in the ground frame (x north, y west, z up), metres.
TEL_POSITIONS_M = {
    1: (80.0, 80.0, 0.0),
    2: (80.0, -80.0, 0.0),
    3: (-80.0, -80.0, 0.0),
    4: (-80.0, 80.0, 0.0),
}


def pulse_shape(t_ns: np.ndarray) -> np.ndarray:
    """Single photo-electron pulse, unit area in ns: ``(t/tau)^2 exp(-t/tau) / (2 tau)``.

    An analytic shape lets the simulation evaluate it at each photon's exact arrival time
    and gives ctapipe's extractors the same reference shape for their integration
    correction, so extracted charges come out unbiased.
    """
    t = np.clip(np.asarray(t_ns, dtype=float), 0.0, None) / PULSE_TAU_NS
    return t**2 * np.exp(-t) / (2.0 * PULSE_TAU_NS)


def pulse_cdf(t_ns: np.ndarray) -> np.ndarray:
    """Fraction of the pulse area before ``t_ns`` (analytic: a gamma(3) distribution)."""
    x = np.clip(np.asarray(t_ns, dtype=float), 0.0, None) / PULSE_TAU_NS
    return 1.0 - np.exp(-x) * (1.0 + x + 0.5 * x**2)


def pulse_in_samples(t_rel_ns: np.ndarray, sample_ns: float = 1.0) -> np.ndarray:
    """Pulse area falling in a sample starting ``t_rel_ns`` after the photon arrival.

    Samples integrate the signal over their width (as a shaper + ADC does), which is
    also how ctapipe resamples the reference pulse for its integration correction.
    """
    return pulse_cdf(t_rel_ns + sample_ns) - pulse_cdf(t_rel_ns)


def pixel_positions() -> tuple[np.ndarray, np.ndarray]:
    """Hexagonal grid of ``N_RINGS`` rings around a central pixel, in metres.

    The spacing is the focal-plane distance that subtends ``PIXEL_SPACING_DEG``.
    """
    spacing = FOCAL_LENGTH.to_value(u.m) * np.tan(np.deg2rad(PIXEL_SPACING_DEG))
    qs, rs = [], []
    for q in range(-N_RINGS, N_RINGS + 1):
        for r in range(-N_RINGS, N_RINGS + 1):
            if abs(q + r) <= N_RINGS:
                qs.append(q)
                rs.append(r)
    q = np.array(qs, dtype=float)
    r = np.array(rs, dtype=float)
    x = spacing * (q + r / 2.0)
    y = spacing * (np.sqrt(3.0) / 2.0 * r)
    order = np.lexsort((y, np.hypot(x, y).round(6)))  # pixel 0 at the centre
    return x[order], y[order]


def camera_geometry() -> CameraGeometry:
    """1261 hexagonal pixels with a CameraFrame carrying the focal length.

    The focal length must be in the frame, otherwise ctapipe cannot convert images into
    the TelescopeFrame used by ImageProcessor and the reconstructors.
    """
    x, y = pixel_positions()
    spacing = FOCAL_LENGTH.to_value(u.m) * np.tan(np.deg2rad(PIXEL_SPACING_DEG))
    area = np.full(x.size, np.sqrt(3.0) / 2.0 * spacing**2)
    return CameraGeometry(
        name=CAMERA_NAME,
        pix_id=np.arange(x.size),
        pix_x=x * u.m,
        pix_y=y * u.m,
        pix_area=area * u.m**2,
        pix_type=PixelShape.HEXAGON,
        pix_rotation=30 * u.deg,
        cam_rotation=0 * u.deg,
        frame=CameraFrame(focal_length=FOCAL_LENGTH),
    )


def camera_readout(n_pixels: int) -> CameraReadout:
    """1 GHz, 30 samples, one gain channel, with the analytic reference pulse."""
    width = 0.1  # ns
    t = np.arange(0.0, 30.0, width)
    # leading zeros: ctapipe's integration correction clips a window starting before
    # the first reference sample, which would overestimate the captured fraction
    ref = pulse_shape(t - 5.0)[np.newaxis, :]
    return CameraReadout(
        name=CAMERA_NAME,
        sampling_rate=SAMPLING_RATE,
        reference_pulse_shape=ref,
        reference_pulse_sample_width=width * u.ns,
        n_channels=1,
        n_pixels=n_pixels,
        n_samples=N_SAMPLES,
    )


def optics() -> OpticsDescription:
    """MST-like single-mirror optics (only the focal length and area matter here)."""
    return OpticsDescription(
        name=OPTICS_NAME,
        size_type=SizeType.MST,
        n_mirrors=1,
        equivalent_focal_length=FOCAL_LENGTH,
        effective_focal_length=FOCAL_LENGTH,
        mirror_area=MIRROR_AREA,
        n_mirror_tiles=86,
        reflector_shape=ReflectorShape.HYBRID,
    )


@lru_cache(maxsize=1)
def subarray() -> SubarrayDescription:
    """The four-telescope toy array (cached: geometry neighbour lookups are not free)."""
    geom = camera_geometry()
    camera = CameraDescription(
        name=CAMERA_NAME, geometry=geom, readout=camera_readout(geom.n_pixels)
    )
    tel = TelescopeDescription(name=OPTICS_NAME, optics=optics(), camera=camera)
    positions = {tid: u.Quantity(pos, u.m) for tid, pos in TEL_POSITIONS_M.items()}
    return SubarrayDescription(
        name=SUBARRAY_NAME,
        tel_positions=positions,
        tel_descriptions={tid: tel for tid in positions},
        reference_location=SITE,
    )


def altaz_to_camera(
    alt: np.ndarray, az: np.ndarray, pointing_alt: float, pointing_az: float
) -> tuple[np.ndarray, np.ndarray]:
    """Directions (radians) to camera-plane positions (metres), vectorised.

    Same rotation as ctapipe's AltAz -> TelescopeFrame transformation, then the
    equidistant mapping of CameraFrame (x = f * fov_lat, y = f * fov_lon). Doing it with
    numpy instead of SkyCoord is what makes photon-by-photon simulation affordable;
    tests compare it to ctapipe's own transformation.
    """
    cos_alt = np.cos(alt)
    v = np.stack([cos_alt * np.cos(az), cos_alt * np.sin(az), np.sin(alt)])
    ca, sa = np.cos(pointing_az), np.sin(pointing_az)
    # rotation_matrix(lon, "z") in astropy rotates the frame: x' = c x + s y
    x1 = ca * v[0] + sa * v[1]
    y1 = -sa * v[0] + ca * v[1]
    z1 = v[2]
    cb, sb = np.cos(pointing_alt), np.sin(pointing_alt)
    # rotation_matrix(-lat, "y"): x'' = c x + s z ... with angle -lat
    x2 = cb * x1 + sb * z1
    z2 = -sb * x1 + cb * z1
    fov_lon = np.arctan2(y1, x2)
    fov_lat = np.arcsin(np.clip(z2, -1.0, 1.0))
    f = FOCAL_LENGTH.to_value(u.m)
    return f * fov_lat, f * fov_lon
