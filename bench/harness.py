"""What every benchmark needs: free ports, a service started like an operator would
(``python -m uws_server serve`` in a throw-away folder), a user token, progress lines."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def log(msg: str, tag: str = "bench") -> None:
    print(f"[{tag} {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cpu_seconds() -> float:
    """CPU time used by the whole machine so far (user + nice + system, all cores), from
    ``/proc/stat``: what a benchmark costs, its children and daemons (Slurm) included."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def service_env(workdir: Path, **settings: str) -> dict[str, str]:
    """The environment of a service living in ``workdir`` (SQLite there, a free port)."""
    env = dict(os.environ)
    env.update(
        {
            "UWS_VAR_DIR": str(workdir / "var"),
            "UWS_JOBS_DIR": str(workdir / "var" / "jobs"),
            "UWS_PROVENANCE_DIR": str(workdir / "prov"),
            "UWS_DL3_STORE": str(workdir / "dl3"),
            "UWS_PORT": str(free_port()),
        }
    )
    env.update({f"UWS_{k.upper()}": v for k, v in settings.items()})
    env.pop("UWS_DATABASE_URL", None)
    return env


def add_user(env: dict[str, str], name: str = "bench") -> str:
    """A new user's token, through the CLI."""
    return subprocess.run(
        [PY, "-m", "uws_server", "user", "add", name],
        env=env, cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def start_service(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """``python -m uws_server serve``, returned once it listens."""
    with open(log_path, "w") as logfile:
        proc = subprocess.Popen(
            [PY, "-m", "uws_server", "serve"], env=env, cwd=ROOT, stdout=logfile, stderr=logfile
        )
    wait_port(int(env["UWS_PORT"]))
    return proc
