"""The one job helper of the CTA steps: parameters, outputs, progress, used inputs, errors.

A step runs in its job directory (``docs/architecture.md``, "CTA job steps") as
``python -P -m cta.<step>``, its ``main(params)`` wrapped by :func:`run`. Everything it
tells the service goes through the service's own job-side module, :mod:`workers.jobside`
(the same module reads it back at job end, so writer and reader cannot drift apart):

* parameters: :meth:`Params.load` reads ``$UWS_PARAMETERS_FILE``; typed accessors raise
  :class:`JobError` with a message naming the parameter;
* outputs: :func:`output_path` (the file name the service exported for an entity);
* progress: :func:`report_progress` (``$UWS_PROGRESS_FILE``);
* used inputs: :func:`record_used` (``.uws/used.json``), :func:`resolve_input`;
* context: :func:`write_context` (``.uws/context.json``, software versions);
* failure: a :class:`JobError` raised anywhere becomes ``.uws/error.txt`` and exit 1,
  any other exception ``internal error: ...`` and exit 2 (:func:`run`).

``workers`` is importable because the definition's script line puts ``$UWS_LIB`` on
``PYTHONPATH``; the job directory itself is never on ``sys.path`` (``-P``).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import shutil
import sys
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workers import jobside

__all__ = [
    "MODELS_DIR",
    "JobError",
    "Params",
    "output_path",
    "parse_obs_ids",
    "record_used",
    "report_progress",
    "resolve_input",
    "run",
    "uws_dir",
    "write_context",
    "write_json",
]

log = logging.getLogger("uws.cta")

# The committed models and IRFs of the ctapipe chain (:mod:`cta.make_models` regenerates them).
MODELS_DIR = Path(__file__).resolve().parent / "models"

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


class JobError(Exception):
    """A failure the user can act on (bad parameter, unknown obs_id...).

    Its message becomes the job's one-line error summary.
    """


# ------------------------------------------------------------------------------ running


def setup_runtime() -> None:
    """Make the scientific stack safe to run on an offline worker.

    astropy would otherwise try to download IERS tables when converting to AltAz, and
    matplotlib would look for a display: both hang or fail on a worker node.
    """
    from astropy.utils import iers

    iers.conf.auto_download = False
    iers.conf.auto_max_age = None
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


def run(
    main: Callable[[Params], None], context: Callable[[], dict[str, str]] | None = None
) -> None:
    """Run a step's ``main(params)`` with the service's error conventions.

    ``context`` (extra software versions) is written to ``.uws/context.json`` first. A
    :class:`JobError` (bad input the user can fix) exits with code 1; anything else is a
    bug: the traceback goes to stderr for the operator and the summary names the
    exception, exit code 2.
    """
    setup_runtime()
    try:
        params = Params.load()
        if context is not None:
            write_context(context())
        main(params)
    except JobError as exc:
        jobside.fail(str(exc), 1)
    except Exception as exc:  # noqa: BLE001 - last-resort reporting for the service
        traceback.print_exc()
        jobside.fail(f"internal error: {type(exc).__name__}: {exc}", 2)


def report_progress(fraction: float | None, message: str = "") -> None:
    """Tell the service how far the job is (README, "Progress").

    The runner relays a change at most once a second, so calling this per event chunk is
    cheap. Outside the service nothing happens, and a failure to write is never the
    job's failure.
    """
    value = None if fraction is None else min(1.0, max(0.0, float(fraction)))
    try:
        jobside.progress(value, message[:200])
    except OSError as exc:
        log.warning("progress not reported: %s", exc)


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
    """Typed, validated access to the job's parameters (all values are strings).

    An empty string counts as "not given" so that the service may pass every parameter
    of the definition, filled or not.
    """

    def __init__(self, values: dict[str, Any]):
        self.values = {k: "" if v is None else str(v) for k, v in values.items()}

    @classmethod
    def load(cls) -> Params:
        """The parameters file the service wrote (``$UWS_PARAMETERS_FILE``)."""
        try:
            return cls(jobside.parameters())
        except FileNotFoundError as exc:
            raise JobError(f"parameters file not found: {exc.filename}") from None
        except ValueError as exc:
            raise JobError(f"parameters file is not valid JSON: {exc}") from None

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

    def boolean(self, name: str, default: bool = False) -> bool:
        if not self.given(name):
            return default
        value = self.values[name].strip().lower()
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        raise JobError(f"parameter '{name}': '{self.values[name]}' is not a boolean")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(name, default)
        if value not in choices:
            raise JobError(f"parameter '{name}' = '{value}' must be one of {', '.join(choices)}")
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


# ------------------------------------------------------------------- inputs and outputs


def uws_dir() -> Path:
    """``.uws`` in the job directory (the working directory), created on demand."""
    path = Path(jobside.UWS_DIR)
    path.mkdir(exist_ok=True)
    return path


def resolve_input(value: str | None, name: str, default: Path | None = None) -> Path:
    """A used entity's file: relative to the job dir (where the service puts it) or absolute.

    ``default`` (a committed model, for instance) is used when the parameter is empty; it
    is copied into the job directory first, because the service only links reported
    inputs found inside the job directory or the DL3 store (by their SHA-256).
    """
    if not value:
        if default is None:
            raise JobError(f"input '{name}' is required")
        if not default.is_file():
            raise JobError(f"input '{name}' not given and no default at {default}")
        local = Path("defaults") / default.name
        local.parent.mkdir(exist_ok=True)
        shutil.copy2(default, local)
        return local.resolve()
    path = Path(value.removeprefix("file://"))
    if not path.is_file():
        raise JobError(f"input '{name}' not found: {value}")
    return path.resolve()


def record_used(path: Path, role: str, **extra: object) -> None:
    """Add an input to ``.uws/used.json`` (the job's provenance lists it as used)."""
    jobside.record_used(str(path), role, **extra)


def output_path(entity: str, default: str) -> Path:
    """The file name of a generated entity: its environment variable, else the default.

    The service exports each generated entity's default file name under the entity's
    name (OPUS's ``$output``); the name must stay inside the job directory.
    """
    try:
        return Path(jobside.output_path(entity, default))
    except ValueError as exc:
        raise JobError(str(exc)) from None


def software_versions() -> dict[str, str]:
    """Versions of Python and of the scientific packages, for provenance."""
    return {"python": platform.python_version(), **jobside.package_versions(CONTEXT_PACKAGES)}


def write_context(extra: dict[str, str] | None = None) -> None:
    """Record the software versions (plus ``extra``) as the job's provenance context."""
    jobside.write_context({**software_versions(), **(extra or {})})


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
