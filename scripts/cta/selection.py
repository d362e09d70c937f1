"""The event selection shared by IRF production and DL3 writing.

Why one module: the DL3 event list is only described by the IRFs if its events pass the
very same selection -- the quality criteria stored in the cuts file and the
energy-dependent gammaness cut evaluated with ``pyirf.cuts.evaluate_binned_cut``. Both
``irf_production`` (to measure how many protons survive) and ``analysis`` (to select
the DL3 events) call :func:`select`.
"""

from __future__ import annotations

import operator
from pathlib import Path

import astropy.units as u
import numpy as np

from .job import JobError

ENERGY_PREFIX = "ExtraTreesRegressor"
CLASSIFIER_PREFIX = "ExtraTreesClassifier"
GEOMETRY_PREFIX = "HillasReconstructor"


def load_cuts(path: Path):
    """The ctapipe ``OptimizationResult`` stored by ``irf_production`` (``JobError`` if not)."""
    from ctapipe.irf import OptimizationResult

    try:
        return OptimizationResult.read(path)
    except Exception as exc:  # noqa: BLE001 - any failure means "not a cuts file"
        raise JobError(
            f"input 'cuts' ({Path(path).name}) is not a ctapipe cuts file: {type(exc).__name__}"
        ) from None


def without_gh_cut(cuts_path: Path, output: Path) -> None:
    """A copy of a cuts file whose gammaness cut keeps everything (quality cuts kept)."""
    from astropy.io import fits

    load_cuts(cuts_path)  # a clear error if not a cuts file
    with fits.open(cuts_path) as hdul:
        hdul["GH_CUTS"].data["cut"] = 0.0
        hdul.writeto(output, overwrite=True)


def read_events(dl2: Path):
    """Subarray events of a DL2 file with the columns the selection and DL3 need."""
    from ctapipe.io import TableLoader

    with TableLoader(
        dl2, dl2=True, simulated=False, observation_info=True, dl1_parameters=False
    ) as loader:
        return loader.read_subarray_events(), loader.subarray


def select(events, cuts) -> tuple[np.ndarray, dict[str, int]]:
    """Mask of events passing the cuts' quality criteria and gammaness cut, with counts."""
    from pyirf.cuts import evaluate_binned_cut

    counts = {"n_events": len(events)}
    quality = np.asarray(cuts.quality_query.get_table_mask(events), dtype=bool)
    counts["n_quality"] = int(np.count_nonzero(quality))
    energy = u.Quantity(events[f"{ENERGY_PREFIX}_energy"], u.TeV)
    score = np.asarray(events[f"{cuts.clf_prefix}_prediction"], dtype=float)
    gh = np.zeros(len(events), dtype=bool)
    if quality.any():
        gh[quality] = evaluate_binned_cut(
            score[quality], energy[quality], cuts.gh_cuts, operator.ge
        )
    mask = quality & gh
    counts["n_selected"] = int(np.count_nonzero(mask))
    return mask, counts
