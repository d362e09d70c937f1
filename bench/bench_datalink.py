"""DataLink and cone search on a real DL3 store, against a bare endpoint of the same
service in the same run (the guide's anchors, GAVO DaCHS: DataLink 7 ms, cone search
9-15 ms).

A store of a few observations is simulated with the fast path
(``cta.simulate_dl3``); the service starts as an operator starts it
(``python -m uws_server serve``, its own process, SQLite or ``--pg-url``) and one
client sends, one after the other:

- ``datalink``: GET /datalink?ID=<a store observation> (its file, preview, IRFs and
  the service descriptors of the repository's job definitions that take obs_ids);
- ``scs``: GET /scs?RA&DEC&SR=1 around the simulated source;
- ``bare``: GET /availability (the same server, authentication and one SQL statement).

Usage:
  .venv/bin/python bench/bench_datalink.py [--requests 300] [--pg-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import PY, ROOT, add_user, log, service_env, start_service  # noqa: E402

SOURCE = (329.717, -30.226)


def simulate(store: Path, workdir: Path, n_obs: int) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    params = {"RA": str(SOURCE[0]), "Dec": str(SOURCE[1]), "n_obs": str(n_obs), "livetime": "2"}
    (workdir / "parameters.json").write_text(json.dumps(params))
    env = dict(os.environ, UWS_DL3_STORE=str(store), UWS_PARAMETERS_FILE="parameters.json")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "scripts"), str(ROOT)])  # cta, workers
    subprocess.run(
        [PY, "-P", "-m", "cta.simulate_dl3"],
        cwd=workdir, env=env, check=True, capture_output=True,
    )  # fmt: skip


def p50_ms(session: requests.Session, url: str, params: dict, n: int) -> float:
    r = session.get(url, params=params, timeout=60)  # warm-up (preview, caches)
    r.raise_for_status()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        r = session.get(url, params=params, timeout=60)
        times.append(time.perf_counter() - t)
        r.raise_for_status()
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--observations", type=int, default=4)
    parser.add_argument("--pg-url", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        log(f"simulating {args.observations} observations (fast path)")
        simulate(work / "dl3", work / "sim", args.observations)
        env = service_env(work)
        if args.pg_url:
            env["UWS_DATABASE_URL"] = args.pg_url
        token = add_user(env)
        proc = start_service(env, work / "service.log")
        try:
            base = f"http://127.0.0.1:{env['UWS_PORT']}"
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {token}"
            ident = "ivo://uws-server.example/cta?1001"
            # the start-up sync runs in the background: the first search waits for it
            links = session.get(base + "/datalink", params={"ID": ident}, timeout=120)
            assert b"#proc" in links.content and b"NotFoundFault" not in links.content
            n = args.requests
            cone = {"RA": SOURCE[0], "DEC": SOURCE[1], "SR": 1}
            result = {
                "database": "postgresql" if args.pg_url else "sqlite",
                "observations": args.observations,
                "requests": n,
                "datalink_p50_ms": round(p50_ms(session, base + "/datalink", {"ID": ident}, n), 2),
                "scs_p50_ms": round(p50_ms(session, base + "/scs", cone, n), 2),
                "bare_p50_ms": round(p50_ms(session, base + "/availability", {}, n), 2),
                "load_average": os.getloadavg()[0],
            }
            result["datalink_ratio"] = round(result["datalink_p50_ms"] / result["bare_p50_ms"], 1)
            result["scs_ratio"] = round(result["scs_p50_ms"] / result["bare_p50_ms"], 1)
            print(json.dumps(result, indent=1))
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
