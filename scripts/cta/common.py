"""Shared helpers for the CTA job scripts (fast path and DL4 products).

A job script runs in its job directory (see ``docs/architecture.md``). It reads its
parameters from ``parameters.json`` (never from shell text), writes its results under the
file names the service exports as environment variables (one per generated entity), and
leaves three side files for the service:

* ``.uws/context.json``: versions of the software that produced the results (provenance);
* ``.uws/used.json``: every DL3 file read, as ``{"path", "role", "obs_id", "sha256"}``, so
  that provenance links DL4 products to the DL3 observations;
* ``.uws/error.txt``: one line saying why the job failed (the job's error summary).

The DL3 store (``DL3Store``: the GADF directory shared with the ctapipe chain, its
format and locking protocol) lives in :mod:`dl3_store` and is re-exported here.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import sys
import traceback
import warnings
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from dl3_store import (
    DL3Store,
    JobError,
    ObservationFiles,
    format_ids,
    job_side_module,
    sha256_of,
)

jobside = job_side_module()

__all__ = [
    "DL3Store",
    "JobError",
    "ObservationFiles",
    "Params",
    "format_ids",
    "load_observations",
    "output_path",
    "parse_obs_ids",
    "report_progress",
    "run_job",
    "sha256_of",
    "write_context",
    "write_json",
    "write_used",
]

log = logging.getLogger("uws.cta")

UWS_DIR = Path(".uws")


# Packages whose versions are recorded in .uws/context.json. Looked up through
# importlib.metadata so that recording a version never imports a heavy package.
CONTEXT_PACKAGES = (
    "numpy",
    "scipy",
    "astropy",
    "regions",
    "iminuit",
    "gammapy",
    "ctapipe",
    "pyirf",
    "matplotlib",
)


def setup_runtime() -> None:
    """Make the scientific stack safe to run on an offline worker.

    astropy would otherwise try to download IERS tables when converting to AltAz, and
    matplotlib would look for a display: both hang or fail on a worker node.
    """
    from astropy.utils import iers

    iers.conf.auto_download = False
    # Dates past the bundled IERS-B table only degrade precision (irrelevant here).
    iers.conf.iers_degraded_accuracy = "warn"
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )
    # gammapy and astropy are chatty about things the user cannot act on.
    warnings.filterwarnings("ignore", category=RuntimeWarning, module="gammapy")
    warnings.filterwarnings("ignore", message=".*IERS.*")
    warnings.filterwarnings("ignore", message=".*dubious year.*")


def _write_uws_file(name: str, content: str) -> Path:
    UWS_DIR.mkdir(exist_ok=True)
    path = UWS_DIR / name
    path.write_text(content)
    return path


def report_progress(fraction: float | None, message: str = "") -> None:
    """Tell the service how far the job is: ``$UWS_PROGRESS_FILE`` (README, "Progress").

    Written to a temporary file then renamed, so the runner never reads half of it; the
    runner relays a change at most once a second, so calling this per event chunk is
    cheap. Outside the service (no variable) nothing happens, and a failure to write is
    never the job's failure.
    """
    value = None if fraction is None else min(1.0, max(0.0, float(fraction)))
    try:
        jobside.progress(value, message[:200])
    except OSError as exc:
        log.warning("progress not reported: %s", exc)


def fail(message: str, code: int = 1) -> None:
    """Report a failure the way the service expects, then exit non-zero.

    The message is flattened to one line: it becomes the job's error summary.
    """
    line = " ".join(message.split()) or "job failed"
    try:
        jobside.write_error(line)
    finally:
        print(f"ERROR: {line}", file=sys.stderr, flush=True)
    sys.exit(code)


def run_job(main: Callable[[], None]) -> None:
    """Run a job script's ``main`` with the error conventions of the service.

    A :class:`JobError` (bad input the user can fix) exits with code 1; anything else is
    a bug: the traceback goes to stderr for the operator and the summary names the
    exception, exit code 2.
    """
    setup_runtime()
    try:
        main()
    except JobError as exc:
        fail(str(exc), 1)
    except Exception as exc:  # noqa: BLE001 - last-resort reporting for the service
        traceback.print_exc()
        fail(f"internal error: {type(exc).__name__}: {exc}", 2)


# --------------------------------------------------------------------------- parameters

_RANGE = re.compile(r"^(\d+)-(\d+)$")


def parse_obs_ids(text: str, name: str = "obs_ids") -> list[int]:
    """Parse a list of observation ids: integers separated by spaces and/or commas.

    Inclusive ranges ``a-b`` are accepted (``1001-1004``) because run lists are often
    contiguous. Duplicates are dropped; order is ascending so results do not depend on
    how the user typed the list.
    """
    ids: set[int] = set()
    for token in re.split(r"[,\s;]+", text.strip()):
        if not token:
            continue
        match = _RANGE.match(token)
        if match:
            first, last = int(match.group(1)), int(match.group(2))
            if last < first or last - first > 100_000:
                raise JobError(f"{name}: bad range '{token}'")
            ids.update(range(first, last + 1))
            continue
        try:
            value = int(token)
        except ValueError:
            raise JobError(f"{name}: '{token}' is not an integer observation id") from None
        if value < 0:
            raise JobError(f"{name}: observation ids are non-negative, got {value}")
        ids.add(value)
    if not ids:
        raise JobError(f"{name}: empty selection, give at least one observation id")
    return sorted(ids)


class Params:
    """Typed, validated access to the job's ``parameters.json`` (all values are strings).

    An empty string counts as "not given" so that the service may pass every parameter
    of the definition, filled or not.
    """

    def __init__(self, values: dict[str, Any]):
        self.values = {k: "" if v is None else str(v) for k, v in values.items()}

    @classmethod
    def load(cls, path: str | Path | None = None) -> Params:
        """Read the parameters file named by ``UWS_PARAMETERS_FILE`` (default ./parameters.json)."""
        path = Path(path or os.environ.get("UWS_PARAMETERS_FILE") or "parameters.json")
        try:
            values = json.loads(path.read_text())
        except FileNotFoundError:
            raise JobError(f"parameters file not found: {path}") from None
        except json.JSONDecodeError as exc:
            raise JobError(f"parameters file {path} is not valid JSON: {exc}") from None
        if not isinstance(values, dict):
            raise JobError(f"parameters file {path} must hold a JSON object")
        return cls(values)

    def given(self, name: str) -> bool:
        return self.values.get(name, "").strip() != ""

    def text(self, name: str, default: str | None = None) -> str:
        value = self.values.get(name, "").strip()
        if value:
            return value
        if default is None:
            raise JobError(f"missing parameter '{name}'")
        return default

    def number(
        self,
        name: str,
        default: float | None = None,
        lo: float | None = None,
        hi: float | None = None,
        *,
        lo_open: bool = False,
        hi_open: bool = False,
    ) -> float:
        """A float within [lo, hi] (bounds open when asked); a clear error otherwise."""
        raw = self.text(name, None if default is None else repr(default))
        try:
            value = float(raw)
        except ValueError:
            raise JobError(f"parameter '{name}': '{raw}' is not a number") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise JobError(f"parameter '{name}' must be finite, got {raw}")
        too_low = lo is not None and (value <= lo if lo_open else value < lo)
        too_high = hi is not None and (value >= hi if hi_open else value > hi)
        if too_low or too_high:
            left = "(" if lo_open else "["
            right = ")" if hi_open else "]"
            raise JobError(
                f"parameter '{name}' = {raw} out of range {left}{lo if lo is not None else '-inf'}"
                f", {hi if hi is not None else 'inf'}{right}"
            )
        return value

    def integer(
        self, name: str, default: int | None = None, lo: int | None = None, hi: int | None = None
    ) -> int:
        raw = self.text(name, None if default is None else str(default))
        try:
            value = int(raw)
        except ValueError:
            raise JobError(f"parameter '{name}': '{raw}' is not an integer") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise JobError(f"parameter '{name}' = {value} out of range [{lo}, {hi}]")
        return value

    def obs_ids(self, name: str = "obs_ids") -> list[int]:
        if not self.given(name):
            raise JobError(f"{name}: empty selection, give at least one observation id")
        return parse_obs_ids(self.values[name], name)

    def sky_position(self, ra: str = "RA", dec: str = "Dec") -> tuple[float, float]:
        """ICRS position in degrees; RA in [0, 360), Dec in [-90, 90]."""
        return (
            self.number(ra, lo=0.0, hi=360.0, hi_open=True),
            self.number(dec, lo=-90.0, hi=90.0),
        )

    def energy_range(
        self, default_min: float, default_max: float, lo: str = "emin", hi: str = "emax"
    ) -> tuple[float, float]:
        """An energy band in TeV with emin < emax, both positive."""
        emin = self.number(lo, default_min, lo=0.0, lo_open=True)
        emax = self.number(hi, default_max, lo=0.0, lo_open=True)
        if emax <= emin:
            raise JobError(f"parameter '{hi}' = {emax} must be larger than '{lo}' = {emin}")
        return emin, emax


# ------------------------------------------------------------------------------ outputs


def output_path(entity: str, default: str) -> Path:
    """The file name of a generated entity: its environment variable, else the default.

    The service exports each generated entity's default file name under the entity's
    name (OPUS's ``$output``); the name must stay inside the job directory.
    """
    name = os.environ.get(entity) or default
    path = Path(name)
    if path.is_absolute() or ".." in path.parts:
        raise JobError(f"output name for '{entity}' must be relative to the job dir: {name}")
    if path.parent != Path("."):
        path.parent.mkdir(parents=True, exist_ok=True)
    return path


def software_versions() -> dict[str, str]:
    """Versions of Python and of the scientific packages, for provenance."""
    versions = {"python": platform.python_version()}
    for name in CONTEXT_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def write_context(extra: dict[str, str] | None = None) -> Path:
    """Write the flat dict of software versions the service records for provenance.

    The runner names the file in ``UWS_CONTEXT_FILE``; ``.uws/context.json`` otherwise.
    """
    context = software_versions()
    context.update(extra or {})
    jobside.write_context(context)
    return Path(os.environ.get("UWS_CONTEXT_FILE") or jobside.CONTEXT_FILE)


def write_used(observations: Iterable[ObservationFiles]) -> Path:
    """Write ``.uws/used.json``: one record per DL3 file read, for provenance."""
    records = [record for obs in observations for record in obs.used_records()]
    return _write_uws_file(Path(jobside.USED_FILE).name, json.dumps(records, indent=2) + "\n")


def publish_observations(written: dict[int, Path], prefix: str = "dl3_obs_") -> list[Path]:
    """Copy the observation files a job added to the DL3 store into its own directory.

    They then become the job's results (the definition declares ``dl3_obs_*.fits.gz``),
    byte for byte the files in the store: a later job that reads an observation from
    the store is matched to this job's result by its SHA-256, which is what chains the
    provenance of a DL4 product back to the job that made its DL3 input.
    """
    import shutil

    out = []
    for obs_id, path in sorted(written.items()):
        target = Path(f"{prefix}{obs_id:06d}.fits.gz")
        target.unlink(missing_ok=True)
        # A copy, never a hard link: the service refuses linked results (a link would
        # let the job's file and the store's change together after the job ended).
        shutil.copyfile(path, target)
        entity_id = jobside.read_fits_refs(str(target)).get("entity_id")
        if entity_id:  # stamped when it entered the store: the result gets that id
            jobside.record_stamp(str(target), entity_id)
        out.append(target)
    return out


def write_json(path: Path, content: Any) -> None:
    """Write a result as indented JSON (NaN is not valid JSON: it becomes null)."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and value != value:
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    path.write_text(json.dumps(clean(content), indent=2) + "\n")


# ------------------------------------------------------------------------- observations


def load_observations(obs_ids: list[int], store: DL3Store | None = None) -> Any:
    """Read observations from the DL3 store with gammapy, recording them in used.json.

    Resolving through the index first gives one clear error for unknown obs_ids (gammapy
    would only warn and skip them); observations lacking a full-enclosure IRF are refused
    for the same reason.
    """
    from gammapy.data import DataStore

    store = store or DL3Store()
    resolved = store.resolve(obs_ids)
    write_used(resolved)
    observations = DataStore.from_dir(store.root).get_observations(
        obs_ids, required_irf="full-enclosure"
    )
    found = {int(obs.obs_id) for obs in observations}
    lacking = [i for i in obs_ids if i not in found]
    if lacking:
        raise JobError(
            f"obs_ids {format_ids(lacking)} lack events, GTI or a full-enclosure IRF "
            "(aeff, edisp, psf, bkg) in the DL3 store"
        )
    n_events = sum(len(obs.events.table) for obs in observations)
    log.info("read %d observation(s) from %s: %d events", len(observations), store.root, n_events)
    return observations
