"""ctapipe EventSource for the project's toy DL0 format (written by :mod:`cta.simulation`).

Why: with this source, ctapipe's own ``ProcessorTool`` (``ctapipe-process``) reads our
DL0 files unmodified, so calibration, image cleaning, Hillas parameters and stereo
reconstruction are ctapipe's real algorithms, not re-implementations.

Registration: ctapipe finds EventSources among the *imported* subclasses of
``EventSource`` (plus the ``ctapipe_io`` entry points). :mod:`cta.ctapipe_tool` imports
this module before running a tool, which needs no installation step. For the
stand-alone ``ctapipe-process`` command, the package would need an entry point
``ctapipe_io = ToyDL0EventSource = cta.toy.dl0:ToyDL0EventSource`` with ``cta``
importable; the chain does not depend on it.

Data flow: R0 = raw ADC; R1 = the same samples as float (no R1 calibration, like
``SimTelEventSource.skip_r1_calibration``); the per-pixel pedestal and ADC-to-p.e.
factor go into ``event.monitoring.tel[...].camera.coefficients`` where ctapipe's
``CameraCalibrator`` applies them, exactly as with a separately measured calibration.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from pathlib import Path

import astropy.units as u
import numpy as np
import tables
from astropy.time import Time
from ctapipe.containers import (
    ArrayEventContainer,
    ArrayPointingContainer,
    CameraCalibrationContainer,
    CoordinateFrameType,
    EventIndexContainer,
    EventType,
    ObservationBlockContainer,
    ObservationBlockState,
    ObservingMode,
    PixelStatus,
    PointingMode,
    R0CameraContainer,
    R1CameraContainer,
    SchedulingBlockContainer,
    SchedulingBlockType,
    SimulatedCameraContainer,
    SimulatedEventContainer,
    SimulatedShowerContainer,
    SimulatedShowerDistribution,
    SimulationConfigContainer,
    TelescopeImpactParameterContainer,
    TelescopePointingContainer,
    TelescopeTriggerContainer,
    TriggerContainer,
)
from ctapipe.coordinates import shower_impact_distance
from ctapipe.core import Provenance
from ctapipe.instrument import SubarrayDescription
from ctapipe.io import DataLevel, EventSource

from . import instrument as ti

DL0_FORMAT = "UWS-TOY-DL0"
SUPPORTED_VERSIONS = (1,)
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def read_header(path: str | Path) -> dict:
    """The DL0 file's identification attributes, or raise ``ValueError`` saying why not.

    Used by ``is_compatible`` and by the job scripts to reject a wrong input with a
    clear message instead of ctapipe's generic "no source found".
    """
    path = Path(path)
    with open(path, "rb") as f:
        if f.read(8) != HDF5_SIGNATURE:
            raise ValueError(f"{path.name} is not an HDF5 file")
    with tables.open_file(path, "r") as h5:
        attrs = h5.root._v_attrs
        if getattr(attrs, "DL0_FORMAT", None) != DL0_FORMAT:
            raise ValueError(f"{path.name} is HDF5 but not a {DL0_FORMAT} file")
        version = int(attrs.FORMAT_VERSION)
        if version not in SUPPORTED_VERSIONS:
            raise ValueError(f"{path.name}: unsupported {DL0_FORMAT} version {version}")
        instrument = str(attrs.INSTRUMENT_VERSION)
        if instrument != ti.INSTRUMENT_VERSION:
            raise ValueError(
                f"{path.name} was simulated for instrument {instrument}, "
                f"this code describes {ti.INSTRUMENT_VERSION}"
            )
        return dict(
            obs_id=int(attrs.OBS_ID),
            config=json.loads(attrs.CONFIG),
            n_triggered=int(getattr(attrs, "N_TRIGGERED", -1)),
        )


def target_meta(config: dict) -> dict[str, object]:
    """The simulated target (name, RA, Dec) for the observation block's metadata."""
    return {
        "TARGET_NAME": str(config.get("object") or ""),
        "TARGET_RA": float(config.get("source_ra", float("nan"))),
        "TARGET_DEC": float(config.get("source_dec", float("nan"))),
    }


class ToyDL0EventSource(EventSource):
    """Reads ``UWS-TOY-DL0`` HDF5 files: R0/R1 waveforms, calibration, truth."""

    def __init__(self, input_url=None, config=None, parent=None, **kwargs):
        super().__init__(input_url=input_url, config=config, parent=parent, **kwargs)
        header = read_header(self.input_url)
        self._obs_id = header["obs_id"]
        self._config = header["config"]
        self._subarray = ti.subarray()
        if self.allowed_tels:
            self._subarray = self._subarray.select_subarray(sorted(self.allowed_tels))
        self._file = tables.open_file(self.input_url, "r")
        cal = self._file.root.calibration
        tel_ids = [int(t) for t in cal.tel_ids.read()]
        ped = cal.pedestal_per_sample.read()
        dc_to_pe = cal.dc_to_pe.read()
        self._coefficients = {}
        for i, tel_id in enumerate(tel_ids):
            n_pix = ped.shape[1]
            self._coefficients[tel_id] = dict(
                pedestal_offset=ped[i][np.newaxis, :].astype(np.float32),
                factor=dc_to_pe[i][np.newaxis, :].astype(np.float32),
                time_shift=np.zeros((1, n_pix), dtype=np.float32),
                outlier_mask=np.zeros((1, n_pix), dtype=bool),
            )
        cfg = self._config
        self._pointing_alt = np.deg2rad(cfg["pointing_alt"]) * u.rad
        self._pointing_az = np.deg2rad(cfg["pointing_az"]) * u.rad
        start = Time(cfg["obs_start"], scale="utc")
        self._scheduling_blocks = {
            self._obs_id: SchedulingBlockContainer(
                sb_id=np.uint64(self._obs_id),
                sb_type=SchedulingBlockType.OBSERVATION,
                producer_id="simulation",
                observing_mode=ObservingMode.WOBBLE,
                pointing_mode=PointingMode.DRIFT,
            )
        }
        self._observation_blocks = {
            self._obs_id: ObservationBlockContainer(
                obs_id=np.uint64(self._obs_id),
                sb_id=np.uint64(self._obs_id),
                producer_id="simulation",
                state=ObservationBlockState.COMPLETED_SUCCEDED,
                subarray_pointing_lat=self._pointing_alt,
                subarray_pointing_lon=self._pointing_az,
                subarray_pointing_frame=CoordinateFrameType.ALTAZ,
                scheduled_start_time=start,
                scheduled_duration=cfg["obs_duration"] * u.s,
                actual_start_time=start,
                actual_duration=cfg["obs_duration"] * u.s,
            )
        }
        # ctapipe's containers have no target field: the target travels as table metadata
        # of the observation block (written to DL1/DL2 as HDF5 attributes), for OBJECT
        self._observation_blocks[self._obs_id].meta.update(target_meta(cfg))
        particle = cfg["particle"]
        self._simulation_config = {
            self._obs_id: SimulationConfigContainer(
                run_number=np.int32(self._obs_id),
                energy_range_min=cfg["energy_min"] * u.TeV,
                energy_range_max=cfg["energy_max"] * u.TeV,
                prod_site_alt=ti.SITE.height.to(u.m),
                spectral_index=cfg["spectral_index"],
                n_showers=cfg["n_showers"],
                shower_reuse=1,
                max_alt=self._pointing_alt,
                min_alt=self._pointing_alt,
                max_az=self._pointing_az,
                min_az=self._pointing_az,
                diffuse=particle != "gamma",
                max_viewcone_radius=cfg["viewcone"] * u.deg,
                min_viewcone_radius=0.0 * u.deg,
                max_scatter_range=cfg["max_scatter"] * u.m,
                min_scatter_range=0.0 * u.m,
                core_pos_mode=1,
            )
        }
        Provenance().add_input_file(str(self.input_url), role="DL0/Event")

    @staticmethod
    def is_compatible(file_path) -> bool:
        try:
            read_header(file_path)
        except (OSError, ValueError, tables.HDF5ExtError, AttributeError, KeyError):
            return False
        return True

    @property
    def subarray(self) -> SubarrayDescription:
        return self._subarray

    @property
    def is_simulation(self) -> bool:
        return True

    @property
    def datalevels(self) -> tuple[DataLevel, ...]:
        return (DataLevel.R0, DataLevel.R1)

    @property
    def observation_blocks(self) -> dict[int, ObservationBlockContainer]:
        return self._observation_blocks

    @property
    def scheduling_blocks(self) -> dict[int, SchedulingBlockContainer]:
        return self._scheduling_blocks

    @property
    def simulation_config(self) -> dict[int, SimulationConfigContainer]:
        return self._simulation_config

    @property
    def simulated_shower_distributions(self) -> dict[int, SimulatedShowerDistribution]:
        """Histogram of *all* simulated showers, so IRF tools can normalise."""
        ev = self._file.root.events.read()
        cfg = self._config
        bins_e = np.geomspace(cfg["energy_min"], cfg["energy_max"], 41)
        bins_r = np.linspace(0.0, cfg["max_scatter"], 21)
        hist, _, _ = np.histogram2d(
            ev["energy"], np.hypot(ev["core_x"], ev["core_y"]), bins=[bins_e, bins_r]
        )
        return {
            self._obs_id: SimulatedShowerDistribution(
                obs_id=self._obs_id,
                hist_id=1,
                n_entries=len(ev),
                bins_energy=bins_e * u.TeV,
                bins_core_dist=bins_r * u.m,
                histogram=hist,
            )
        }

    def close(self) -> None:
        if self._file.isopen:
            self._file.close()

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.close()

    def _generator(self) -> Generator[ArrayEventContainer, None, None]:
        root = self._file.root
        events = root.events.read()
        tel_events = root.telescope_events.read()
        by_event: dict[int, list] = {}
        for row in tel_events:
            by_event.setdefault(int(row["event_id"]), []).append(row)
        waveforms = root.waveforms
        true_images = root.true_images
        n_pix = waveforms.shape[1]
        gain_channel = np.zeros(n_pix, dtype=np.int8)
        status = np.full(n_pix, PixelStatus.HIGH_GAIN_STORED, dtype=np.uint8)
        array_pointing = ArrayPointingContainer(
            array_altitude=self._pointing_alt, array_azimuth=self._pointing_az
        )
        allowed = set(self.allowed_tels) if self.allowed_tels else None
        counter = 0
        for ev in events[events["n_tels"] > 0]:
            rows = by_event.get(int(ev["event_id"]), [])
            if allowed is not None:
                rows = [r for r in rows if int(r["tel_id"]) in allowed]
            if not rows:
                continue
            event_time = Time(ev["time_mjd"], format="mjd", scale="utc")
            tel_ids = np.array(sorted(int(r["tel_id"]) for r in rows), dtype=np.uint16)
            trigger = TriggerContainer(
                time=event_time, tels_with_trigger=tel_ids, event_type=EventType.SUBARRAY
            )
            shower = SimulatedShowerContainer(
                energy=ev["energy"] * u.TeV,
                alt=ev["alt"] * u.deg,
                az=ev["az"] * u.deg,
                core_x=ev["core_x"] * u.m,
                core_y=ev["core_y"] * u.m,
                h_first_int=ev["h_first_int"] * u.m,
                x_max=ev["x_max"] * u.g / u.cm**2,
                starting_grammage=0.0 * u.g / u.cm**2,
                shower_primary_id=int(ev["primary_id"]),
            )
            data = ArrayEventContainer(
                index=EventIndexContainer(obs_id=self._obs_id, event_id=int(ev["event_id"])),
                count=counter,
                trigger=trigger,
                simulation=SimulatedEventContainer(shower=shower),
            )
            data.meta["origin"] = DL0_FORMAT
            data.meta["input_url"] = self.input_url
            data.monitoring.pointing = array_pointing
            impacts = shower_impact_distance(shower_geom=shower, subarray=self.subarray)
            for row in sorted(rows, key=lambda r: int(r["tel_id"])):
                tel_id = int(row["tel_id"])
                idx = int(row["index"])
                adc = waveforms[idx][np.newaxis, ...]
                trigger.tel[tel_id] = TelescopeTriggerContainer(
                    time=event_time, event_type=EventType.SUBARRAY
                )
                data.monitoring.tel[tel_id].pointing = TelescopePointingContainer(
                    altitude=self._pointing_alt, azimuth=self._pointing_az
                )
                data.r0.tel[tel_id] = R0CameraContainer(waveform=adc)
                data.r1.tel[tel_id] = R1CameraContainer(
                    event_type=EventType.SUBARRAY,
                    event_time=event_time,
                    waveform=adc.astype(np.float32),
                    selected_gain_channel=gain_channel,
                    pixel_status=status.copy(),
                )
                data.monitoring.tel[tel_id].camera.coefficients = CameraCalibrationContainer(
                    time=event_time, is_valid=True, **self._coefficients[tel_id]
                )
                data.simulation.tel[tel_id] = SimulatedCameraContainer(
                    true_image_sum=int(row["true_image_sum"]),
                    true_image=true_images[idx],
                    impact=TelescopeImpactParameterContainer(
                        distance=impacts[self.subarray.tel_index_array[tel_id]],
                        distance_uncert=0 * u.m,
                        prefix="true_impact",
                    ),
                )
            yield data
            counter += 1
