"""Job script: DL1 -> DL2 with ctapipe (stereo geometry, energy, gammaness).

Why two ctapipe tools: ``ctapipe-process`` on the DL1 file runs the
``HillasReconstructor`` (direction, core, h_max) from the stored image parameters;
``ctapipe-apply-models`` then adds the energy (``ExtraTreesRegressor``) and the
gammaness (``ExtraTreesClassifier``) trained by ``irf_production``. The energy model is
applied first because the classifier uses the reconstructed energy as a feature.

Parameters: ``dl1`` (used: ctapipe DL1 file with image parameters), ``energy_model``,
``classifier_model`` (used: ctapipe model pickles; empty = the committed models in
``scripts/cta/models``), ``apply_models`` (false = geometry only, the input of
``irf_production``). Output: ``$dl2`` (default ``events.dl2.h5``).
"""

from __future__ import annotations

import logging
import shutil

import numpy as np
import tables

from . import ctapipe_tool, job

log = logging.getLogger("uws.cta.reconstruction")

ENERGY_MODEL = "energy_regressor.pkl"
CLASSIFIER_MODEL = "particle_classifier.pkl"
GEOMETRY = "HillasReconstructor"


def check_dl1(path) -> int:
    """Number of events with image parameters; ``JobError`` if not a ctapipe DL1 file."""
    try:
        with tables.open_file(path, "r") as h5:
            if "/dl1/event/telescope/parameters" not in h5:
                raise job.JobError(
                    f"input 'dl1' ({path.name}) has no DL1 image parameters "
                    "(/dl1/event/telescope/parameters): not a calibration output"
                )
            return int(h5.root.dl1.event.subarray.trigger.nrows)
    except (tables.HDF5ExtError, OSError):
        raise job.JobError(f"input 'dl1' ({path.name}) is not an HDF5 file") from None


def check_model(path, name: str) -> None:
    """A ctapipe model is a joblib pickle, plain or zlib-compressed: refuse anything else.

    Checking the first bytes gives a clear message before ctapipe tries to unpickle.
    """
    with open(path, "rb") as f:
        head = f.read(2)
    if not (head[:1] == b"\x80" or head in (b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda")):
        raise job.JobError(f"input '{name}' ({path.name}) is not a ctapipe model (joblib)")


def dl2_summary(path, prefixes: list[str]) -> dict[str, int]:
    """Events, and events with a valid prediction of each reconstructor."""
    out = {}
    with tables.open_file(path, "r") as h5:
        out["n_events"] = int(h5.root.dl1.event.subarray.trigger.nrows)
        for prefix in prefixes:
            for group in ("geometry", "energy", "particle_type"):
                node = f"/dl2/event/subarray/{group}/{prefix}"
                if node in h5:
                    valid = h5.get_node(node).col(f"{prefix}_is_valid")
                    out[prefix] = int(np.count_nonzero(valid))
    return out


def reconstruct(p: job.Params) -> None:
    """Geometry with ctapipe-process, then the ML models with ctapipe-apply-models."""
    dl1 = job.resolve_input(p.text("dl1", ""), "dl1")
    n_events = check_dl1(dl1)
    job.record_used(dl1, "DL1/Event")
    apply_models = p.boolean("apply_models", True)
    models = []
    if apply_models:
        for name, default in (
            ("energy_model", ENERGY_MODEL),
            ("classifier_model", CLASSIFIER_MODEL),
        ):
            path = job.resolve_input(p.text(name, ""), name, job.MODELS_DIR / default)
            check_model(path, name)
            job.record_used(path, name)
            models.append(path)
    output = job.output_path("dl2", "events.dl2.h5")
    log.info(
        "DL1 %s: %d events; models: %s",
        dl1.name,
        n_events,
        ", ".join(m.name for m in models) or "none (geometry only)",
    )

    geometry_file = output.with_name(output.name + ".geometry.tmp") if models else output
    job.report_progress(0.05, "reconstructing the geometry (ctapipe-process)")
    ctapipe_tool.run_ctapipe_tool(
        "ctapipe-process",
        [
            "--input",
            dl1,
            "--output",
            geometry_file,
            "--overwrite",
            "--write-showers",
            "--write-parameters",
            "--no-write-images",
            "--reconstructor",
            GEOMETRY,
        ],
        "ctapipe-process-dl2",
    )
    prefixes = [GEOMETRY]
    if models:
        args = [
            "--input",
            geometry_file,
            "--output",
            output,
            "--overwrite",
            "--ApplyModels.progress_bar=False",
            "--n-jobs",
            1,
        ]
        for model in models:
            args += ["--reconstructor", model]
        job.report_progress(0.5, "energy and particle type (ctapipe-apply-models)")
        ctapipe_tool.run_ctapipe_tool("ctapipe-apply-models", args, "ctapipe-apply-models")
        geometry_file.unlink(missing_ok=True)
        prefixes += ["ExtraTreesRegressor", "ExtraTreesClassifier"]
    elif geometry_file != output:
        shutil.move(geometry_file, output)
    job.report_progress(0.95, "summarising the DL2 events")
    summary = dl2_summary(output, prefixes)
    log.info(
        "DL2 written: %d events; valid: %s -> %s",
        summary.pop("n_events"),
        ", ".join(f"{k} {v}" for k, v in summary.items()),
        output.name,
    )


if __name__ == "__main__":
    job.run(reconstruct, context=ctapipe_tool.chain_context)
