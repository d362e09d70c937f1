"""Time the provenance of one realistic job: building the document and each format.

A CTAO analysis job (a gammapy/ctools-like binning step): 16 parameters with their
descriptions, 2 used and 3 generated entities, a context with 30 packages. Goals:
building the document plus PROV-JSON, PROV-XML, PROV-N and VOTable together
<= 50 ms, the SVG <= 300 ms (it runs Graphviz).

    .venv/bin/python bench/bench_provenance.py [-n RUNS] [--write-doc]

prints the median of each step over RUNS runs (after one warm-up run) and, with
``--write-doc``, replaces the ``## Provenance`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from uws_server.provenance import (  # noqa: E402
    ActivityRecord,
    ContextRecord,
    EntityRecord,
    GenerationRecord,
    JobProvenance,
    ParameterRecord,
    UsageRecord,
    build_document,
    serialize,
)

GOAL_TEXT_MS = 50.0
GOAL_SVG_MS = 300.0
BENCH_DOC = ROOT / "docs" / "benchmarks.md"


def realistic_job() -> JobProvenance:
    """One finished CTAO binning job, as the service would fill the records."""
    job_id = "9f1c2e4a-7b3d-4c55-a1e2-0d6f8b9a1c3e"
    start = datetime(2025, 3, 14, 21, 5, 12, tzinfo=UTC)
    params = [
        ("inobs", "obs_index.fits", "file", None, None, "Observation definition file"),
        ("caldb", "prod5-v0.1", "xs:string", None, None, "Calibration database"),
        ("irf", "South_z20_50h", "xs:string", None, None, "Instrument response function"),
        ("ebinalg", "LOG", "xs:string", None, None, "Energy binning algorithm"),
        ("emin", "0.03", "xs:double", "TeV", "em.energy;stat.min", "Lower energy limit"),
        ("emax", "150.0", "xs:double", "TeV", "em.energy;stat.max", "Upper energy limit"),
        ("enumbins", "40", "xs:integer", None, "meta.number", "Number of energy bins"),
        ("nxpix", "200", "xs:integer", "pix", "meta.number", "Size of the X axis"),
        ("nypix", "200", "xs:integer", "pix", "meta.number", "Size of the Y axis"),
        ("binsz", "0.02", "xs:double", "deg", "pos.angResolution", "Pixel size"),
        ("coordsys", "CEL", "xs:string", None, None, "Coordinate system"),
        ("xref", "83.63", "xs:double", "deg", "pos.eq.ra", "Right ascension of centre"),
        ("yref", "22.01", "xs:double", "deg", "pos.eq.dec", "Declination of centre"),
        ("proj", "CAR", "xs:string", None, None, "Projection"),
        ("chatter", "2", "xs:integer", None, None, "Verbosity"),
        ("comment", 'Crab "test" <run> & $(date)\nsecond line', "xs:string", None, None, "Note"),
    ]
    base = "https://uws.example.org/rest/ctbin"
    entities = [
        EntityRecord(
            "e-obs-0001",
            "obs_index.fits",
            f"{base}/prev/results/obs",
            "application/fits",
            28_800,
            "a" * 64,
            None,
        ),
        EntityRecord(
            "e-evt-0002",
            "events.fits.gz",
            "https://archive.example.org/evt/2",
            "application/fits",
            512_000_000,
            "b" * 64,
            "0a1b2c3d-prev",
        ),
        EntityRecord(
            "e-cube-0003",
            "cntcube.fits",
            f"{base}/{job_id}/results/cube",
            "application/fits",
            25_600_000,
            "c" * 64,
            job_id,
        ),
        EntityRecord(
            "e-log-0004",
            "ctbin.log",
            f"{base}/{job_id}/results/log",
            "text/plain",
            48_213,
            "d" * 64,
            job_id,
        ),
        EntityRecord(
            "e-prov-0005",
            "summary.json",
            f"{base}/{job_id}/results/summary",
            "application/json",
            2_048,
            "e" * 64,
            job_id,
        ),
    ]
    packages = {f"pkg{i:02d}": f"{i}.{i % 7}.{i % 3}" for i in range(27)}
    packages.update({"gammapy": "1.3", "astropy": "7.0.1", "numpy": "2.2.4"})
    return JobProvenance(
        activity=ActivityRecord(
            job_id=job_id,
            jobname="ctbin",
            owner="alice",
            phase="COMPLETED",
            start_time=start,
            end_time=start + timedelta(minutes=7, seconds=31),
            run_id="crab-2025-03",
            manager="slurm",
            external_id="4815162",
            description="Bin an event list into a counts cube",
            version="2.1",
            type="reduction",
            subtype="binning",
            doculink="https://docs.example.org/ctbin",
            contact_name="CTAO Science Tools",
            contact_email="tools@example.org",
        ),
        parameters=[ParameterRecord(n, v, t, u, c, d) for n, v, t, u, c, d in params],
        entities=entities,
        usages=[
            UsageRecord(job_id, "e-obs-0001", "inobs"),
            UsageRecord(job_id, "e-evt-0002", "events"),
        ],
        generations=[
            GenerationRecord(job_id, "e-cube-0003", "outcube"),
            GenerationRecord(job_id, "e-log-0004", "logfile"),
            GenerationRecord(job_id, "e-prov-0005", "summary"),
        ],
        context=ContextRecord(
            "0.1.0", "3.12.1", "cn042.cluster", packages, {"slurm_job_id": "4815162"}
        ),
    )


def timed(fn: Callable[[], object], runs: int) -> float:
    """Median wall time of fn in ms, after one warm-up call."""
    fn()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def run(runs: int) -> dict[str, float]:
    job = realistic_job()
    doc = build_document(job, base_url="https://uws.example.org")
    res = {
        "build document": timed(
            lambda: build_document(job, base_url="https://uws.example.org"), runs
        )
    }
    for fmt in ("json", "xml", "provn", "votable", "svg"):
        res[fmt] = timed(
            lambda f=fmt: serialize(doc, f), runs if fmt != "svg" else max(5, runs // 4)
        )
    return res


def report(res: dict[str, float], runs: int, command: str) -> str:
    text_total = sum(res[k] for k in ("build document", "json", "xml", "provn", "votable"))
    lines = [
        "## Provenance",
        "",
        f"One realistic job (16 parameters, 2 used + 3 generated entities, 30 packages), "
        f"median of {runs} runs, `{command}`",
        f"({platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} cores shared, {datetime.now(UTC):%Y-%m-%d}).",
        "",
        "| step | median ms |",
        "|---|---:|",
    ]
    for k, v in res.items():
        lines.append(f"| {k} | {v:.1f} |")
    ok_text = "met" if text_total <= GOAL_TEXT_MS else "MISSED"
    ok_svg = "met" if res["svg"] <= GOAL_SVG_MS else "MISSED"
    lines += [
        f"| **build + JSON + XML + PROV-N + VOTable** | **{text_total:.1f}** |",
        "",
        f"Goals: build + four text formats <= {GOAL_TEXT_MS:.0f} ms ({ok_text}); "
        f"SVG (Graphviz `dot`) <= {GOAL_SVG_MS:.0f} ms ({ok_svg}).",
        "",
    ]
    return "\n".join(lines)


def write_section(section: str, path: Path = BENCH_DOC) -> None:
    """Replace (or append) the ``## Provenance`` section, leaving the others as they are."""
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    pattern = re.compile(r"^## Provenance\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text.rstrip("\n") + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--runs", type=int, default=50)
    ap.add_argument("--write-doc", action="store_true", help="update docs/benchmarks.md")
    args = ap.parse_args()
    command = " ".join(
        shlex.quote(a) for a in [".venv/bin/python", "bench/bench_provenance.py", *sys.argv[1:]]
    )
    res = run(args.runs)
    section = report(res, args.runs, command)
    print(section)
    if args.write_doc:
        write_section(section)


if __name__ == "__main__":
    main()
