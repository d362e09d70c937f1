"""Time the provenance search (``GET /provsearch``'s service call) over many jobs.

    .venv/bin/python bench/bench_provsearch.py [--jobs N] [--root DIR]

Stores N finished jobs of one user (two results and one used upload each) in a fresh
SQLite database, then times ``ProvenanceService.search`` for all of that user's jobs
(every job a candidate) and for one parameter value (one match). ``--root`` runs the
same against another checkout of the project (e.g. an older commit unpacked with
``git archive``), for a before/after comparison in one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    args = ap.parse_args()
    sys.path.insert(0, str(args.root))
    from uws_server.config import load_settings
    from uws_server.db import make_engine
    from uws_server.models import Job, Phase, User
    from uws_server.provenance_service import ProvenanceService
    from uws_server.storage import EntityRow, Store

    try:
        from uws_server.storage.schema import create_schema
    except ImportError:  # before migrations
        from uws_server.db import create_schema  # type: ignore[attr-defined,no-redef]

    tmp = Path(tempfile.mkdtemp())
    settings = load_settings(
        environ={}, var_dir=tmp / "var", jobs_dir=tmp / "jobs", provenance_dir=tmp / "prov"
    )
    engine = make_engine(f"sqlite:///{tmp / 'p.sqlite'}")
    create_schema(engine)
    store = Store(engine)
    t0 = datetime(2026, 1, 1)
    entities, usages = [], []
    for i in range(args.jobs):
        job = Job(
            job_id=f"job{i:06d}", jobname="echo_job", owner="alice", phase=Phase.COMPLETED,
            creation_time=t0 + timedelta(seconds=i), destruction_time=t0 + timedelta(days=9),
            execution_duration=60, parameters={"text": f"value {i}"},
        )  # fmt: skip
        store.insert_job(job, lambda: "x")
        for k in range(2):
            entities.append(EntityRow(
                f"ent_{i}_{k}", job.job_id, f"out{k}", None, None, "text/plain", 3, "ab",
                "alice", f"out{k}", "result", t0,
            ))  # fmt: skip
        entities.append(EntityRow(
            f"ent_{i}_in", None, "in.txt", None, None, "text/plain", 3, "cd", "alice", "in",
            "upload", t0,
        ))  # fmt: skip
        usages.append((job.job_id, f"ent_{i}_in"))
    store.add_entities(entities)
    for job_id, entity_id in usages:
        store.add_usages(job_id, [(entity_id, "in")])
    prov = ProvenanceService(settings, store, lambda name: None)
    alice = User("alice", "h")
    for label, query in (
        ("every job", [("activity", "echo_job")]),
        ("one parameter value", [("param", "text=value 7")]),
    ):
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            found = prov.search(alice, query)
            times.append(time.perf_counter() - start)
        print(
            f"{label}: {len(found)} entities, median {statistics.median(times) * 1000:.0f} ms "
            f"over {args.runs} runs ({args.jobs} jobs)"
        )
    engine.dispose()


if __name__ == "__main__":
    main()
