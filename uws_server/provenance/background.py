"""Provenance documents rendered in a separate process, at a lower CPU priority.

Why: rendering one job's five documents costs about 60 ms of CPU (30 ms of Python in
``prov``/``astropy``, 30 ms in Graphviz ``dot``), more than everything else the service
does for a short job. In the server process those 30 ms hold the GIL, so every request
waits behind them; and nobody is waiting for a provenance document the way a client
waits for a phase. So the work goes to one long-lived worker process with a raised nice
value (its ``dot`` children inherit it): on a busy node the kernel gives the CPU to jobs
and requests first, and provenance follows as soon as there is room. On an idle node
nothing changes.

The records cross the process boundary as pickled dataclasses; the worker writes the
files and returns their paths. If the worker cannot be started or dies, the document is
rendered in the calling thread instead: provenance is never lost to an optimisation.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from .document import build_document
from .records import JobProvenance
from .serialize import write_all

log = logging.getLogger(__name__)

NICE = 10  # added to the server's nice value: ~10x less CPU than a job when contended

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None


def render(record: JobProvenance, base_url: str, outdir: Path) -> dict[str, Path]:
    """Build the document and write the five files; ``{format: path}`` written."""
    return write_all(build_document(record, base_url=base_url), outdir)


def _lower_priority() -> None:
    """Worker initializer: lower this process's priority (and its children's)."""
    try:
        os.nice(NICE)
    except OSError:
        log.warning("provenance worker: cannot lower its priority")


def _worker_pool() -> ProcessPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            # spawn: the server has threads, and fork would copy their locks mid-use.
            _pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_lower_priority,
            )
        return _pool


def _discard(pool: ProcessPoolExecutor) -> None:
    global _pool
    with _lock:
        if _pool is pool:
            _pool = None
    pool.shutdown(wait=False, cancel_futures=True)


def render_in_background(record: JobProvenance, base_url: str, outdir: Path) -> dict[str, Path]:
    """:func:`render` in the low-priority worker; blocks the caller (a hook thread)
    until done. Errors of the rendering itself are raised here as if local."""
    for _attempt in range(2):  # a worker that died is replaced once
        try:
            pool = _worker_pool()
            return pool.submit(render, record, base_url, outdir).result()
        except BrokenProcessPool:
            log.warning("provenance worker died: starting a new one")
            _discard(pool)
        except (OSError, RuntimeError) as exc:  # cannot start a process (limits, shutdown)
            log.warning("provenance worker unavailable (%s): rendering in-process", exc)
            break
    return render(record, base_url, outdir)


def shutdown() -> None:
    """Stop the worker (tests; the interpreter's exit does it too)."""
    with _lock:
        pool = _pool
    if pool is not None:
        _discard(pool)
