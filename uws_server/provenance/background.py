"""Provenance documents rendered in a separate process, at a lower CPU priority.

Why: rendering one job's five documents (Python in ``prov``/``astropy``, and Graphviz
``dot``) costs more CPU than everything else the service does for a short job
(docs/benchmarks.md, "Provenance"). In the server process the Python part holds the
GIL, so every request
waits behind them; and nobody waits for a provenance document the way a client waits
for a phase. So the work goes to one long-lived worker process under Linux's
``SCHED_IDLE`` policy (a raised nice value where that is refused; its ``dot`` children
inherit either): on a busy node the kernel gives the CPU to jobs and requests first,
and provenance follows as soon as there is room. Even nice 10 still took a noticeable
share of a contended core, which on a 2-core node running Slurm's waves of short jobs was CPU the
jobs' runners were waiting for. On an idle node nothing changes.

The worker is ``python -m uws_server.provenance.background``, fed over its stdin and
answering on its stdout, one length-prefixed pickle each way (both ends are this
code). ``multiprocessing`` was not used: its spawn start method re-runs the main script
of whatever process embeds the service, and fork copies a threaded server's locks. If
the worker cannot be started or dies, the document is rendered in the calling thread
instead: provenance is never lost to an optimisation.
"""

from __future__ import annotations

import logging
import os
import pickle
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

from .document import build_document
from .records import JobProvenance
from .serialize import write_all

log = logging.getLogger(__name__)

NICE = 19  # where SCHED_IDLE is refused: the lowest priority a nice value gives
_ROOT = Path(__file__).resolve().parents[2]  # where ``uws_server`` can be imported from
_HEADER = struct.Struct("!I")


def render(record: JobProvenance, base_url: str, outdir: Path) -> dict[str, Path]:
    """Build the document and write the five files; ``{format: path}`` written."""
    return write_all(build_document(record, base_url=base_url), outdir)


def _send(stream: IO[bytes], obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    """The next message; ``EOFError`` when the other end is gone."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("provenance worker pipe closed")
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("provenance worker pipe closed mid-message")
    return pickle.loads(data)  # noqa: S301 - our own child process, over its own pipe


class Worker:
    """The worker process, started on first use and replaced once if it dies."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # one request at a time on the pipe
        self._proc: subprocess.Popen[bytes] | None = None

    def _start(self) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        path = env.get("PYTHONPATH", "")
        env["PYTHONPATH"] = f"{_ROOT}{os.pathsep}{path}" if path else str(_ROOT)
        return subprocess.Popen(
            [sys.executable, "-m", "uws_server.provenance.background"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=_ROOT,
        )

    def render(self, record: JobProvenance, base_url: str, outdir: Path) -> dict[str, Path]:
        """:func:`render` in the worker; errors of the rendering are raised here."""
        with self._lock:
            for _attempt in range(2):  # a worker that died is replaced once
                try:
                    if self._proc is None or self._proc.poll() is not None:
                        self._proc = self._start()
                    assert self._proc.stdin is not None and self._proc.stdout is not None
                    _send(self._proc.stdin, (record, base_url, str(outdir)))
                    ok, value = _receive(self._proc.stdout)
                except (OSError, EOFError, pickle.PickleError) as exc:
                    log.warning("provenance worker failed (%s)", exc)
                    self._stop_locked()
                    continue
                if ok:
                    return value
                raise RuntimeError(f"provenance rendering failed: {value}")
        log.warning("provenance worker unavailable: rendering in the server process")
        return render(record, base_url, outdir)

    def pid(self) -> int | None:
        """The worker's pid while it runs (for tests and the admin)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def stop(self) -> None:
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()  # the worker sees EOF and exits
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


WORKER = Worker()


def render_in_background(record: JobProvenance, base_url: str, outdir: Path) -> dict[str, Path]:
    """:func:`render` in the shared low-priority worker (blocks the calling hook thread)."""
    return WORKER.render(record, base_url, outdir)


def serve(stdin: IO[bytes], stdout: IO[bytes]) -> None:
    """The worker's loop: one request in, one answer out, until stdin closes."""
    while True:
        try:
            record, base_url, outdir = _receive(stdin)
        except EOFError:
            return
        try:
            answer: tuple[bool, Any] = (True, render(record, base_url, Path(outdir)))
        except Exception as exc:  # noqa: BLE001 - reported to the server, which logs it
            answer = (False, f"{type(exc).__name__}: {exc}")
        _send(stdout, answer)


def lower_priority() -> str:
    """Run only on CPU time nothing else wants: ``SCHED_IDLE``, else nice 19. Returns
    which one was applied (``"idle"``, ``"nice"`` or ``""``)."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return "idle"
    except (AttributeError, OSError):
        pass
    try:
        os.nice(NICE)
        return "nice"
    except OSError:
        log.warning("cannot lower the provenance worker's priority")
        return ""


def main() -> None:
    """The worker process: lower its priority, keep the protocol pipe for itself."""
    logging.basicConfig(level=logging.WARNING, format="provenance worker %(levelname)s %(message)s")
    lower_priority()
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything a library prints goes to stderr, not into the protocol
    serve(sys.stdin.buffer, answers)


if __name__ == "__main__":
    main()
