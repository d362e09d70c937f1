"""What containing a job's processes costs (issue 11, class 5).

The worker runner (``python -S -P -m workers.node``, one per Slurm job) run on a trivial
job (``echo ok > $output``) with a cgroup per job, with a subreaper (``ctypes`` import
and ``prctl``), and, as the reference, a copy of the runner of a given commit (before
containment). CPU time is the runner's and its children's (user + system, from
``RUSAGE_CHILDREN``), wall time from start to exit; medians over ``--rounds`` jobs,
interleaved so that the machine's load hits every variant alike.

Usage: .venv/bin/python bench/bench_containment.py [--rounds 40] [--before COMMIT]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from uws_server.jobdef import EntityDef  # noqa: E402
from uws_server.managers.base import JobSpec, write_spec  # noqa: E402
from workers import containment  # noqa: E402


def make_job(base: Path, name: str) -> Path:
    job_dir = base / name
    job_dir.mkdir()
    script = "echo ok > $output\n"
    (job_dir / "parameters.json").write_text("{}")
    (job_dir / "script.sh").write_text(script)
    spec = JobSpec(name, "bench", job_dir, script, {}, [EntityDef("output", default="out.txt")])
    write_spec(spec)
    return job_dir


def run_one(tree: Path, job_dir: Path, cgroup: str) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one runner."""
    env = {**os.environ, "PYTHONPATH": str(tree), containment.CGROUP_ENV: cgroup}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-S", "-P", "-m", "workers.node", str(job_dir)],
        cwd=job_dir,
        env=env,
        check=True,
        capture_output=True,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--before", default="", help="a commit whose workers/ to compare")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        variants: dict[str, tuple[Path, str]] = {"subreaper": (ROOT, "off")}
        if containment.cgroup_base("auto") is not None:
            variants["cgroup"] = (ROOT, "auto")
        if args.before:
            old = base / "before"
            old.mkdir()
            archive = subprocess.run(
                ["git", "-C", str(ROOT), "archive", args.before, "workers"],
                check=True,
                capture_output=True,
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(old)], check=True)
            variants["before"] = (old, "off")
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "workers")])
        samples: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
        for i in range(args.rounds):
            for name, (tree, cgroup) in variants.items():
                samples[name].append(run_one(tree, make_job(base, f"{name}-{i}"), cgroup))
        report = {
            name: {
                "cpu_ms": round(statistics.median(c for c, _ in s) * 1000, 1),
                "wall_ms": round(statistics.median(w for _, w in s) * 1000, 1),
            }
            for name, s in samples.items()
        }
        print(json.dumps({"rounds": args.rounds, "runner": report}, indent=1))


if __name__ == "__main__":
    main()
