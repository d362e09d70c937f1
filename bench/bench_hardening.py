"""What an outside client can make the service spend (issue 11, the HTTP layer).

Run: ``.venv/bin/python bench/bench_hardening.py`` (about two minutes; loopback only,
every phase bounded in time). It starts the real service (``python -m uws_server
serve``, SQLite, local manager, default settings) with its own ``TMPDIR`` and prints a
Markdown table for docs/benchmarks.md:

- **headers**: the service's resident memory while four clients each send a 100 MB
  header line at once, and after (growth over the idle process);
- **bodies**: disk held by unauthenticated bodies while eight clients each send a
  1 GB body (``POST /callback/x`` with a forged Bearer token, and variants): the
  service's temporary files (named in ``TMPDIR``, or open but unnamed) sampled during
  the attack, and the free space of the file system;
- **slow clients**: 1,000 connections that each drip one header line every 5 s (and
  reconnect when dropped, as an attacker would) while a probe sends a request every
  0.2 s: the probe's latency, against the same probe without them;
- **fuzz**: 10,000 requests of random shapes (methods, paths, header bytes, query
  numbers, multipart bodies): how many got a 5xx or no answer.
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import re
import selectors
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from harness import ROOT, add_user, log, service_env, start_service

sys.path.insert(0, str(ROOT))

MB = 1024 * 1024


# ------------------------------------------------------------------------ measuring
def rss(pid: int) -> int:
    """Resident memory of ``pid``, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def spooled_bytes(pid: int, tmpdir: Path) -> int:
    """Bytes in the service's temporary files: every file in ``tmpdir``, and every file
    the process holds open that has no name any more (an unnamed temporary file)."""
    total = sum(p.stat().st_size for p in tmpdir.rglob("*") if p.is_file())
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(fd_dir / fd)
            if "(deleted)" in target or target.startswith(str(tmpdir)):
                total += os.stat(fd_dir / fd).st_size
        except OSError:
            continue
    return total


class Sampler:
    """Calls ``measure`` every ``interval`` seconds in a thread; keeps the maximum."""

    def __init__(self, measure: Callable[[], int], interval: float = 0.02) -> None:
        self.measure = measure
        self.interval = interval
        self.peak = measure()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.measure())
            except OSError:
                pass
            time.sleep(self.interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def status_of(port: int, data: bytes, timeout: float = 30) -> int | None:
    """Send ``data`` on a new connection; the answer's status, None without one."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            try:
                sock.sendall(data)
            except OSError:
                pass
            answer = b""
            while b"\r\n" not in answer:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
    except OSError:
        return None
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", answer)
    return int(match.group(1)) if match else None


def stream_then_read(port: int, head: bytes, total: int, seconds: float) -> int | None:
    """Send ``head`` then up to ``total`` bytes for at most ``seconds``; the status."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        chunk = b"a" * MB
        sent = 0
        until = time.monotonic() + seconds
        try:
            while sent < total and time.monotonic() < until:
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # the server answered and closed: what an attacker sees
        sock.settimeout(5)
        try:
            answer = sock.recv(4096)
        except OSError:
            return None
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", answer)
    return int(match.group(1)) if match else None


# ------------------------------------------------------------------------ phases
def headers_phase(pid: int, port: int) -> dict[str, float]:
    """Four concurrent 100 MB header lines."""
    idle = rss(pid)
    statuses: list[int | None] = []

    def attempt() -> None:
        statuses.append(stream_then_read(port, b"GET / HTTP/1.1\r\nX-Big: ", 100 * MB, 60))

    with Sampler(lambda: rss(pid)) as sampler:
        threads = [threading.Thread(target=attempt) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    time.sleep(1)
    log(f"headers: answers {Counter(statuses)}")
    return {
        "idle_mb": idle / MB,
        "peak_growth_mb": (sampler.peak - idle) / MB,
        "after_growth_mb": (rss(pid) - idle) / MB,
    }


def bodies_phase(pid: int, port: int, tmpdir: Path, token: str) -> dict[str, float]:
    """Unauthenticated large bodies, eight at once, in four variants."""
    variants = [
        (b"POST /callback/x HTTP/1.1\r\nAuthorization: Bearer forged\r\n", 1 << 30),
        (b"POST /rest/echo_job HTTP/1.1\r\n", 100 * MB),
        (b"POST /rest/echo_job HTTP/1.1\r\nAuthorization: Basic Ym9iOnNlY3JldA==\r\n", 100 * MB),
        (b"POST /ui/submit/echo_job HTTP/1.1\r\nCookie: uws_session=forged\r\n", 100 * MB),
    ]
    free_before = shutil.disk_usage(tmpdir).free
    statuses: list[int | None] = []

    def attempt(head: bytes, size: int) -> None:
        head += b"Host: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        head += b"Content-Length: %d\r\n\r\n" % size
        statuses.append(stream_then_read(port, head, size, 10))

    with Sampler(lambda: spooled_bytes(pid, tmpdir)) as sampler:
        threads = [
            threading.Thread(target=attempt, args=variants[i % len(variants)]) for i in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    lost = max(0, free_before - shutil.disk_usage(tmpdir).free)
    # an authenticated 50 MB upload, for contrast: spooled while read, gone after
    with Sampler(lambda: spooled_bytes(pid, tmpdir)) as authenticated:
        boundary = b"BENCH"
        body = b"--" + boundary + b'\r\nContent-Disposition: form-data; name="text"\r\n\r\nx\r\n'
        body += b"--" + boundary + b'\r\nContent-Disposition: form-data; name="input"; '
        body += b'filename="in.txt"\r\n\r\n' + b"a" * (50 * MB) + b"\r\n--" + boundary + b"--\r\n"
        head = (
            b"POST /rest/copy_job HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + token.encode()
            + b"\r\nContent-Type: multipart/form-data; boundary="
            + boundary
            + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        upload = status_of(port, head + body, timeout=120)
    time.sleep(0.5)
    log(f"bodies: answers {Counter(statuses)}; authenticated upload {upload}")
    return {
        "peak_spooled_mb": sampler.peak / MB,
        "free_space_lost_mb": lost / MB,
        "auth_upload_peak_mb": authenticated.peak / MB,
        "after_spooled_mb": spooled_bytes(pid, tmpdir) / MB,
    }


def probe(port: int, token: str, job: str, seconds: float) -> list[float]:
    """A request every 0.2 s on a new connection (a GET of a job): latencies, seconds."""
    head = f"GET {job} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
    data = (head + "Connection: close\r\n\r\n").encode()
    out = []
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        start = time.monotonic()
        status = status_of(port, data, timeout=30)
        out.append(time.monotonic() - start if status == 200 else 30.0)
        time.sleep(0.2)
    return out


def slow_phase(port: int, token: str, job: str, seconds: float, count: int) -> dict[str, float]:
    """``count`` connections dripping a header line every 5 s, kept at ``count``."""
    baseline = probe(port, token, job, 5)
    sel = selectors.DefaultSelector()
    conns: dict[socket.socket, float] = {}  # socket -> when it next sends a line
    stop = threading.Event()
    stats = {"opened": 0, "dropped": 0, "open_samples": []}

    def connect() -> None:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"GET /rest HTTP/1.1\r\n")
        except OSError:
            return
        sock.setblocking(False)
        conns[sock] = time.monotonic() + 5 * random.random()  # spread over 5 s
        sel.register(sock, selectors.EVENT_READ)
        stats["opened"] += 1

    def attacker() -> None:
        for _ in range(count):
            connect()
        while not stop.is_set():
            for key, _ in sel.select(timeout=0.05):  # answered or closed: reconnect
                sock = key.fileobj
                sel.unregister(sock)
                conns.pop(sock, None)
                sock.close()
                stats["dropped"] += 1
                connect()
            now = time.monotonic()
            for sock, due in list(conns.items()):
                if due <= now:
                    try:
                        sock.send(b"X-Drip: 1\r\n")
                    except OSError:
                        pass
                    conns[sock] = now + 5
            stats["open_samples"].append(len(conns))
        for sock in list(conns):
            sock.close()

    thread = threading.Thread(target=attacker, daemon=True)
    thread.start()
    time.sleep(3)  # all connected
    latencies = probe(port, token, job, seconds)
    stop.set()
    thread.join()
    return {
        "baseline_p50_ms": statistics.median(baseline) * 1000,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": sorted(latencies)[int(len(latencies) * 0.99) - 1] * 1000,
        "max_ms": max(latencies) * 1000,
        "probes": len(latencies),
        "slow_open_mean": statistics.mean(stats["open_samples"] or [0]),
        "slow_dropped": stats["dropped"],
    }


# ------------------------------------------------------------------------ fuzz
def fuzz_request(rng: random.Random, token: str, job: str) -> bytes:
    """One request of a random shape (the families of tests/test_fuzz_api.py)."""
    paths = [
        "/",
        "/rest",
        "/rest/echo_job",
        job,
        job + "/phase",
        job + "/parameters",
        job + "/results/output",
        job + "/destruction",
        "/jdl",
        "/jdl/echo_job",
        "/ui/jobs",
        "/ui/submit/echo_job",
        "/ui/login",
        "/callback/x",
        "/provsap",
        "/%ff",
    ]
    method = rng.choice(["GET", "POST", "DELETE", "PUT", "HEAD", "PATCH"])
    path = rng.choice(paths).encode()
    numbers = ["-1", "0", "1", "18446744073709551616", "1e999", "nan", "", "9" * 50, "\xff"]
    if rng.random() < 0.5:
        names = ["LAST", "AFTER", "WAIT", "PHASE", "RUNID", "ID", "last"]
        query = "&".join(
            f"{rng.choice(names)}={rng.choice(numbers)}" for _ in range(rng.randint(1, 3))
        )
        if "WAIT" in query:
            query += "&PHASE=EXECUTING"  # never blocks on the PENDING job
        path += b"?" + query.encode("latin-1")
    headers = [b"Host: 127.0.0.1"]
    auth = rng.choice(
        [
            b"Bearer " + token.encode(),
            b"Bearer forged",
            b"Basic " + base64.b64encode(b"\xffname:\xfetoken"),
            b"Basic \xe9\xe9==",
            b"Basic " + base64.b64encode(bytes(rng.randbytes(12))),
            b"",
        ]
    )
    if auth:
        headers.append(b"Authorization: " + auth)
    for _ in range(rng.randint(0, 3)):
        name = rng.choice([b"Origin", b"Sec-Fetch-Site", b"Cookie", b"Accept", b"Range"])
        value = bytes(rng.randbytes(rng.randint(0, 20))).replace(b"\r", b"").replace(b"\n", b"")
        headers.append(name + b": " + value)
    body = b""
    if method in ("POST", "PUT", "PATCH") and rng.random() < 0.6:
        boundary = rng.choice([b"B", b"xx", b"--"])
        for _ in range(rng.randint(0, 3)):
            disposition = rng.choice(
                [
                    b'form-data; name="text"',
                    b'form-data; name="file"; filename="a.xml"',
                    b'form-data; name="input"; filename=""',
                    b'form-data; filename="x"',
                    b"form-data",
                    b"",
                ]
            )
            body += b"--" + boundary + b"\r\n"
            if disposition:
                body += b"Content-Disposition: " + disposition + b"\r\n"
            body += b"\r\n" + bytes(rng.randbytes(rng.randint(0, 30))) + b"\r\n"
        if rng.random() < 0.8:
            body += b"--" + boundary + b"--\r\n"
        headers.append(b"Content-Type: multipart/form-data; boundary=" + boundary)
    elif method in ("POST", "PUT", "PATCH"):
        body = rng.choice([b"PHASE=RUN", b"text=%ff", b"ACTION=DELETE", b"text=\xff", b""])
        headers.append(b"Content-Type: application/x-www-form-urlencoded")
    headers.append(b"Content-Length: %d" % len(body))
    headers.append(b"Connection: close")
    return (
        method.encode()
        + b" "
        + path
        + b" HTTP/1.1\r\n"
        + b"\r\n".join(headers)
        + b"\r\n\r\n"
        + body
    )


def fuzz_phase(port: int, token: str, job: str, count: int) -> dict[str, float]:
    rng = random.Random(11)
    requests = [fuzz_request(rng, token, job) for _ in range(count)]
    statuses: Counter[str] = Counter()
    lock = threading.Lock()
    failures: list[bytes] = []

    def worker(part: list[bytes]) -> None:
        for data in part:
            status = status_of(port, data)
            key = "none" if status is None else f"{status // 100}xx"
            with lock:
                statuses[key] += 1
                if key in ("none", "5xx") and len(failures) < 5:
                    failures.append(data[:300])

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(requests[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for data in failures:
        log(f"fuzz failure: {data!r}")
    return {
        "requests": count,
        "seconds": time.monotonic() - started,
        **{k: float(v) for k, v in sorted(statuses.items())},
    }


# ------------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slow", type=int, default=1000, help="slow connections")
    parser.add_argument("--slow-seconds", type=float, default=30, help="probe duration")
    parser.add_argument("--fuzz", type=int, default=10000, help="fuzzed requests")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_hardening_"))
    tmpdir = work / "tmp"
    tmpdir.mkdir()
    jdl = work / "jdl"
    jdl.mkdir()
    for name in ("echo_job_vot.xml", "copy_job_vot.xml"):
        shutil.copy(ROOT / "tests" / "data" / "jdl" / name, jdl)
    env = service_env(work, job_definitions_dir=str(jdl))
    env["TMPDIR"] = str(tmpdir)
    token = add_user(env)
    proc = start_service(env, work / "service.log")
    port = int(env["UWS_PORT"])
    results: dict[str, dict[str, float]] = {}
    try:
        head = (
            f"POST /rest/echo_job HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 6\r\n\r\ntext=a"
        )
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(head.encode())
            answer = sock.recv(4096).decode("latin-1")
        found = re.search(r"Location: \S+?/rest/(\S+)", answer)
        if found is None:
            raise RuntimeError(f"no job created: {answer[:300]}")
        job = "/rest/" + found.group(1)
        log("headers: four concurrent 100 MB header lines")
        results["headers"] = headers_phase(proc.pid, port)
        log("bodies: eight concurrent unauthenticated large bodies")
        results["bodies"] = bodies_phase(proc.pid, port, tmpdir, token)
        log(f"slow clients: {args.slow} connections for {args.slow_seconds} s")
        results["slow"] = slow_phase(port, token, job, args.slow_seconds, args.slow)
        log(f"fuzz: {args.fuzz} requests")
        results["fuzz"] = fuzz_phase(port, token, job, args.fuzz)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    print("| phase | figures |\n|---|---|")
    for phase, figures in results.items():
        text = ", ".join(
            f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items()
        )
        print(f"| {phase} | {text} |")


if __name__ == "__main__":
    main()
