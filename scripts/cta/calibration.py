"""Job script: DL0 -> DL1 with ctapipe's own ``ctapipe-process``.

Why: calibration (pedestal subtraction, ADC -> p.e., charge extraction), image
cleaning and image parameters are ctapipe's real algorithms; this script only checks
the input, runs the tool through :mod:`cta.ctapipe_tool` (which registers the toy DL0
EventSource) and records provenance.

Parameters: ``dl0`` (used entity: the DL0 file), ``write_images`` (bool: also keep the
cleaned images), ``picture_threshold`` / ``boundary_threshold`` (tailcuts, p.e.),
``max_events`` (0 = all). Output: ``$dl1`` (default ``events.dl1.h5``).
"""

from __future__ import annotations

import json
import logging

import tables

from . import ctapipe_tool, job
from .toy import dl0 as toy_dl0

log = logging.getLogger("calibration")


def count_dl1(path) -> dict[str, int]:
    """Events and telescope images with parameters in a ctapipe DL1 file."""
    with tables.open_file(path, "r") as h5:
        n_events = h5.root.dl1.event.subarray.trigger.nrows
        node = h5.root.dl1.event.telescope.parameters
        n_images = sum(t.nrows for t in node._f_iter_nodes("Table"))
    return {"n_events": int(n_events), "n_images": int(n_images)}


def calibrate(p: job.Params) -> None:
    """Validate the DL0 input, run ctapipe-process, report counts."""
    dl0 = job.resolve_input(p.text("dl0", ""), "dl0")
    try:
        header = toy_dl0.read_header(dl0)
    except (ValueError, OSError, tables.HDF5ExtError) as exc:
        raise job.JobError(f"input 'dl0' is not a toy DL0 file: {exc}") from None
    job.record_used(dl0, "DL0/Event")
    picture = p.number("picture_threshold", 10.0, lo=0.0)
    boundary = p.number("boundary_threshold", 5.0, lo=0.0)
    if boundary > picture:
        raise job.JobError("boundary_threshold must not exceed picture_threshold")
    max_events = p.integer("max_events", 0, lo=0)
    output = job.output_path("dl1", "events.dl1.h5")
    log.info(
        "DL0 %s: obs_id %d, %s, %d triggered events",
        dl0.name,
        header["obs_id"],
        header["config"]["particle"],
        header["n_triggered"],
    )

    config = {
        "ImageProcessor": {
            "image_cleaner_type": "TailcutsImageCleaner",
            "TailcutsImageCleaner": {
                "picture_threshold_pe": [["type", "*", picture]],
                "boundary_threshold_pe": [["type", "*", boundary]],
                "min_picture_neighbors": [["type", "*", 2]],
            },
        },
    }
    config_path = job.uws_dir() / "calibration_config.json"
    config_path.write_text(json.dumps(config, indent=2))
    args = [
        "--input",
        dl0,
        "--output",
        output,
        "--overwrite",
        "--config",
        config_path,
        "--write-parameters",
        "--no-write-showers",
        "--write-images" if p.boolean("write_images", False) else "--no-write-images",
        "--log-level",
        "INFO",
    ]
    if max_events:
        args += ["--max-events", max_events]
    job.report_progress(0.05, f"calibrating {header['n_triggered']} events (ctapipe-process)")
    ctapipe_tool.run_ctapipe_tool("ctapipe-process", args, "ctapipe-process-dl1")
    job.report_progress(0.95, "counting the DL1 images")
    counts = count_dl1(output)
    log.info(
        "DL1 written: %d events, %d telescope images with parameters -> %s",
        counts["n_events"],
        counts["n_images"],
        output.name,
    )


if __name__ == "__main__":
    job.run(calibrate, context=ctapipe_tool.chain_context)
