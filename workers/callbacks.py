"""HTTP callbacks from a worker to the server, with bounded retries.

A worker node must survive a server restart or a network hiccup: an event is retried
with exponential backoff for a bounded time, then given up (the status file in the job
directory still holds the final state, so the server can pick it up later). Client
errors other than "try again later" are not retried: a 401 or a 409 will not get better.

The client is the standard library's ``http.client``, not ``requests``: a runner is a
short-lived process started for every job, and importing ``requests`` (urllib3,
charset_normalizer, idna, importlib.metadata...) cost about 100 ms of CPU per job, four
times everything else the runner does for a trivial job (measured in
docs/benchmarks.md). Two small JSON POSTs need none of what it adds; and a worker node
then needs nothing but Python and this package.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

log = logging.getLogger(__name__)

DEFAULT_RETRY_SECONDS = 300.0
# Statuses meaning "the server is there but cannot take it now".
_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass
class RetryPolicy:
    """How long and how often to retry. ``total`` bounds the whole attempt."""

    total: float = DEFAULT_RETRY_SECONDS
    first_delay: float = 0.5
    max_delay: float = 30.0
    connect_timeout: float = 5.0
    read_timeout: float = 30.0


def callback_endpoint(base_url: str, job_id: str) -> str:
    """``<base>/callback/<job_id>``; the job id is quoted so it stays one path segment."""
    return f"{base_url.rstrip('/')}/callback/{quote(job_id, safe='')}"


def _post_once(
    url: str, body: bytes, headers: dict[str, str], policy: RetryPolicy
) -> tuple[int, str]:
    """One POST; (status, start of the body). ``OSError`` when the server is unreachable.

    The connect timeout bounds the connection; the read timeout then bounds each read.
    """
    parts = urlsplit(url)
    conn_class = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    conn = conn_class(parts.hostname, parts.port, timeout=policy.connect_timeout)
    try:
        conn.connect()
        conn.sock.settimeout(policy.read_timeout)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request("POST", target, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read(4096).decode("utf-8", "replace")
    except http.client.HTTPException as exc:  # a garbled answer: like a dropped connection
        raise OSError(f"bad HTTP answer: {exc!r}") from exc
    finally:
        conn.close()


def post_event(
    base_url: str,
    job_id: str,
    token: str,
    payload: dict[str, Any],
    policy: RetryPolicy | None = None,
    cancel: threading.Event | None = None,
) -> bool:
    """POST one event; True once the server accepted it (2xx).

    Returns False when the time budget is spent, the server refused it for good (4xx),
    or ``cancel`` was set (a newer event supersedes this one). The first attempt is
    always made, so an EXECUTING event reaches a live server before the final one.
    """
    policy = policy or RetryPolicy()
    url = callback_endpoint(base_url, job_id)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        log.error("callback URL %r is not http(s)://host/...: event not sent", url)
        return False
    body = json.dumps(payload).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    deadline = time.monotonic() + policy.total
    delay = policy.first_delay
    attempt = 0
    while True:
        attempt += 1
        try:
            status, text = _post_once(url, body, headers, policy)
        except OSError as exc:
            log.warning("callback %s attempt %d failed: %s", url, attempt, exc)
        else:
            if 200 <= status < 300:
                return True
            if status not in _RETRY_STATUSES:
                log.error("callback %s refused (%d): %s", url, status, text[:200])
                return False
            log.warning("callback %s attempt %d: HTTP %d", url, attempt, status)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            log.error("callback %s: giving up after %d attempts", url, attempt)
            return False
        pause = min(delay, remaining)
        if cancel is not None:
            if cancel.wait(pause):
                return False
        else:
            time.sleep(pause)
        delay = min(delay * 2, policy.max_delay)
