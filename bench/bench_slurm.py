"""Benchmark: 200 trivial jobs through the service against the same scripts run bare.

Run: ``.venv/bin/python bench/bench_slurm.py`` (Slurm must be up: ``bash
scripts/slurm_start.sh``; about two minutes). In one run, each measured ``--rounds``
times, alternating so that the load of the shared machine hits both sides alike:

- **Slurm**: 200 jobs POSTed with ``PHASE=RUN`` to the real service (``python -m
  uws_server serve``, SQLite, ``manager: slurm``) until every one is COMPLETED, against
  the same 200 scripts submitted with bare ``sbatch`` until squeue shows all COMPLETED.
- **Local pool**: the same through the service with ``manager: local``, against bare
  fork+exec of the 200 scripts with as many at once as the pool has slots.

Both sides submit from the same number of client threads. Prints a Markdown table (the
median of the rounds) for docs/benchmarks.md, and the command line. Goal: <= 1.25x.
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
sys.path.insert(0, str(ROOT))

from harness import cpu_seconds, free_port, log, wait_port  # noqa: E402

SCRIPT = 'echo "$UWS_JOB_ID" > $output\n'  # the trivial job, for both sides
FINAL = ("COMPLETED", "ERROR", "ABORTED")


def script(sleep: float) -> str:
    """The job: trivial, or sleeping first (to see the overhead amortised)."""
    return (f"sleep {sleep}\n" if sleep else "") + SCRIPT


def write_definition(jdl: Path, sleep: float) -> None:
    from uws_server.jdl.votable import write_votable
    from uws_server.jobdef import EntityDef, JobDefinition

    defn = JobDefinition(
        "trivial",
        script=script(sleep),
        execution_duration=600,
        contact_name="bench",
        contact_email="bench@example.org",
        generated=[EntityDef("output", default="output.txt", content_type="text/plain")],
    )
    jdl.mkdir(parents=True, exist_ok=True)
    (jdl / "trivial_vot.xml").write_bytes(write_votable(defn))


@contextmanager
def service(
    workdir: Path, manager: str, slots: int, sleep: float = 0
) -> Iterator[tuple[int, str, int]]:
    """The real service in its own process; yields (port, token, pid)."""
    jdl = workdir / "jdl"
    write_definition(jdl, sleep)
    env = {k: v for k, v in os.environ.items() if not k.startswith("UWS_")}
    port = free_port()
    env.update(
        {
            "UWS_VAR_DIR": str(workdir / "var"),
            "UWS_JOBS_DIR": str(workdir / "var" / "jobs"),
            "UWS_SLURM_SHARED_DIR": str(workdir / "var" / "jobs"),
            "UWS_PROVENANCE_DIR": str(workdir / "prov"),
            "UWS_JOB_DEFINITIONS_DIR": str(jdl),
            "UWS_MANAGER": manager,
            "UWS_LOCAL_SLOTS": str(slots),
            "UWS_PORT": str(port),
            "UWS_MAX_WAIT": "120",
        }
    )
    token = subprocess.run(
        [PY, "-m", "uws_server", "user", "add", "bench"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with open(workdir / f"server-{manager}.log", "w") as logfile:
        srv = subprocess.Popen(
            [PY, "-m", "uws_server", "serve"], env=env, cwd=ROOT, stdout=logfile, stderr=logfile
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or srv.poll() is not None:
                    raise RuntimeError(f"the service did not start: see {logfile.name}") from None
                time.sleep(0.1)
        yield port, token, srv.pid
    finally:
        srv.terminate()  # waits for the final hooks (provenance) still queued
        try:
            srv.wait(60)
        except subprocess.TimeoutExpired:  # seen: cheroot's thread pool stop can hang
            log("the service did not stop in 60 s: killed")
            srv.kill()
            srv.wait()
        if manager == "slurm":
            # Runners whose job the poll already settled from its status file may still
            # be retrying their final callback: end them, or they hold Slurm slots (and
            # skew the next round) for the whole retry time.
            # (scancel --name takes one name; squeue -n takes a list.)
            names = ",".join(f"uws-{d.name}" for d in (workdir / "var" / "jobs").iterdir())
            listed = subprocess.run(
                ["squeue", "-h", "-t", "PENDING,RUNNING", "-n", names, "-o", "%i"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.split()
            if listed:
                subprocess.run(["scancel", *listed], check=False)


class Http:
    """One keep-alive connection per thread (the client must not be what is measured)."""

    def __init__(self, port: int, token: str) -> None:
        self.port, self.token = port, token
        self.local = threading.local()

    def request(self, method: str, path: str, body: str | None = None) -> tuple[int, str, str]:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=180)
        headers = {"Authorization": f"Bearer {self.token}"}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Location") or "", resp.read().decode()


def phase_of(job_xml: str) -> str:
    """The phase in a UWS job document."""
    return job_xml.split("<uws:phase>", 1)[1].split("</uws:phase>", 1)[0]


def http_floor(workdir: Path, count: int, threads: int) -> float:
    """The requests a client of the service makes for ``count`` jobs (a POST, a phase
    GET, a WAIT GET), against bare bottle endpoints on the same WSGI server
    (``bench/bare_app.py``): what HTTP alone costs, without any job nor service.
    A service cannot finish the same jobs faster than this plus running them."""
    port = free_port()
    with open(workdir / "bare.log", "w") as logfile:
        bare = subprocess.Popen(
            [PY, str(ROOT / "bench" / "bare_app.py"), "--port", str(port)],
            cwd=ROOT,
            stdout=logfile,
            stderr=logfile,
        )
    try:
        wait_port(port)
        http_ = Http(port, "unused")

        def one(_: int) -> str:
            status, location, _text = http_.request("POST", "/bare/trivial", "PHASE=RUN")
            assert status == 303, status
            http_.request("GET", location + "?phase")
            return phase_of(http_.request("GET", location + "?WAIT=60")[2])

        start = time.monotonic()
        with ThreadPoolExecutor(threads) as pool:
            phases = list(pool.map(one, range(count)))
        elapsed = time.monotonic() - start
        assert phases == ["PENDING"] * count
        return elapsed
    finally:
        bare.terminate()
        bare.wait(30)


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, from ``/proc/<pid>/stat``."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def through_service(port: int, token: str, count: int, threads: int) -> float:
    """Seconds from the first POST (PHASE=RUN) until every job is COMPLETED."""
    http_ = Http(port, token)

    def create(_: int) -> str:
        status, location, text = http_.request("POST", "/rest/trivial", "PHASE=RUN")
        assert status == 303, (status, text)
        return "/rest/" + location.split("/rest/", 1)[1]

    def wait(job: str) -> str:
        phase = http_.request("GET", job + "/phase")[2]
        while phase not in FINAL:  # the WAIT's answer is the job, with its new phase
            phase = phase_of(http_.request("GET", f"{job}?WAIT=60&PHASE={phase}")[2])
        return phase

    start = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        jobs = list(pool.map(create, range(count)))
        phases = list(pool.map(wait, jobs))
    elapsed = time.monotonic() - start
    assert phases == ["COMPLETED"] * count, sorted(set(phases))
    return elapsed


def bare_dirs(workdir: Path, count: int, sleep: float) -> list[Path]:
    dirs = []
    for i in range(count):
        d = workdir / f"j{i}"
        d.mkdir(parents=True)
        # The variables the service would export; in the script, not in sbatch's
        # --export=ALL,VAR=..., which makes Slurm launch each job several times slower.
        prefix = f"#!/bin/bash\nexport UWS_JOB_ID={d.name} output=output.txt\n"
        (d / "script.sh").write_text(prefix + script(sleep))
        dirs.append(d)
    return dirs


def bare_sbatch(
    workdir: Path, count: int, threads: int, sleep: float = 0, poll: float = 0.25
) -> float:
    """The same scripts with bare sbatch, until squeue shows them all COMPLETED."""
    dirs = bare_dirs(workdir, count, sleep)

    def submit(d: Path) -> str:
        out = subprocess.run(
            [
                "sbatch",
                "--parsable",
                f"--chdir={d}",
                f"--output={d / 'slurm.out'}",
                f"--job-name=bare-{d.name}",
                str(d / "script.sh"),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip().split(";")[0]

    start = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        ids = list(pool.map(submit, dirs))
    while True:
        out = subprocess.run(
            ["squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o", "%T"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        if len(out) == count and all(s in ("COMPLETED", "FAILED", "CANCELLED") for s in out):
            break
        time.sleep(poll)
    elapsed = time.monotonic() - start
    assert out.count("COMPLETED") == count, sorted(set(out))
    return elapsed


def bare_fork_exec(workdir: Path, count: int, slots: int, sleep: float = 0) -> float:
    """The same scripts with fork+exec, ``slots`` at a time (the pool's parallelism)."""
    dirs = bare_dirs(workdir, count, sleep)

    def run(d: Path) -> int:
        return subprocess.run(["bash", "script.sh"], cwd=d, check=False).returncode

    start = time.monotonic()
    with ThreadPoolExecutor(slots) as pool:
        codes = list(pool.map(run, dirs))
    elapsed = time.monotonic() - start
    assert codes == [0] * count
    return elapsed


def rounds(
    n: int, measures: dict[str, Callable[[Path], float]]
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Run each measure ``n`` times, alternating, each in a fresh directory.

    Returns the wall times and the machine-wide CPU seconds each run used (service,
    runners, Slurm daemons, clients: everything, set-up and tear-down included).
    """
    times: dict[str, list[float]] = {name: [] for name in measures}
    cpu: dict[str, list[float]] = {name: [] for name in measures}
    for r in range(n):
        for name, measure in measures.items():
            with tempfile.TemporaryDirectory(prefix="uws-bench-") as tmp:
                before = cpu_seconds()
                seconds = measure(Path(tmp))
                used = cpu_seconds() - before
            times[name].append(seconds)
            cpu[name].append(used)
            log(f"round {r + 1}: {name}: {seconds:.2f} s, {used:.1f} CPU-s machine-wide")
    return times, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=8, help="client threads, both sides")
    parser.add_argument("--slots", type=int, default=2, help="local pool slots")
    parser.add_argument("--sleep", type=float, default=0, help="seconds each job sleeps")
    parser.add_argument("--skip-slurm", action="store_true")
    parser.add_argument("--skip-local", action="store_true")
    args = parser.parse_args()
    n, threads, sleep = args.jobs, args.threads, args.sleep

    def service_run(manager: str) -> Callable[[Path], float]:
        def measure(workdir: Path) -> float:
            with service(workdir, manager, args.slots, sleep) as (port, token, pid):
                before = process_cpu(pid)
                seconds = through_service(port, token, n, threads)
                log(f"service process: {process_cpu(pid) - before:.1f} CPU-s during the run")
                return seconds

        return measure

    measures: dict[str, Callable[[Path], float]] = {}
    if not args.skip_slurm:
        if shutil.which("sbatch") is None:
            sys.exit("Slurm is not installed (scripts/install_test_deps.sh)")
        measures["slurm service"] = service_run("slurm")
        measures["slurm bare"] = lambda w: bare_sbatch(w, n, threads, sleep)
    if not args.skip_local:
        measures["local service"] = service_run("local")
        measures["local bare"] = lambda w: bare_fork_exec(w, n, args.slots, sleep)
        measures["local http floor"] = lambda w: http_floor(w, n, threads)
    times, cpu = rounds(args.rounds, measures)
    med = {name: statistics.median(values) for name, values in times.items()}

    kind_of_job = f"jobs sleeping {sleep:g} s" if sleep else "trivial jobs"
    python = Path(PY).relative_to(ROOT) if Path(PY).is_relative_to(ROOT) else Path(PY)
    print(
        f"\n{n} {kind_of_job}, median of {args.rounds} rounds, {threads} client threads, "
        f"{args.slots} local slots (Python {platform.python_version()}, "
        f"{os.cpu_count()} cores shared, {date.today().isoformat()}):\n"
    )
    print(f"`{python} {' '.join(sys.argv)}`\n")
    print("| executor | through the service (s) | bare (s) | ratio | goal |")
    print("|---|---:|---:|---:|---|")
    for kind, bare in (("slurm", "bare sbatch"), ("local", "bare fork+exec")):
        if f"{kind} service" not in med:
            continue
        svc, base = med[f"{kind} service"], med[f"{kind} bare"]
        verdict = "met" if svc / base <= 1.25 else "missed"
        row = f"| {kind} vs {bare} | {svc:.2f} | {base:.2f} | {svc / base:.2f}x |"
        print(f"{row} <= 1.25x ({verdict}) |")
    if "local http floor" in med:
        floor, base = med["local http floor"], med["local bare"]
        print(
            f"\nHTTP alone, the same requests against bare endpoints and no job run: "
            f"{floor:.2f} s, {floor / base:.2f}x the bare fork+exec: the floor of any "
            f"service answering these requests, before its jobs run."
        )
    rounds_text = "; ".join(f"{k} {', '.join(f'{v:.2f}' for v in vs)}" for k, vs in times.items())
    print(f"\nEvery round (s): {rounds_text}.")
    cpu_text = "; ".join(f"{k} {statistics.median(vs):.1f}" for k, vs in cpu.items())
    print(f"\nMachine-wide CPU seconds per run (median): {cpu_text}.")


if __name__ == "__main__":
    main()
