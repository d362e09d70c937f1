"""HTTP callbacks from a worker to the server, with bounded retries.

A worker node must survive a server restart or a network hiccup: an event is retried
with exponential backoff for a bounded time, then given up (the status file in the job
directory still holds the final state, so the server can pick it up later). Client
errors other than "try again later" are not retried: a 401 or a 409 will not get better.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

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
    import requests  # imported here: the local manager never needs it

    policy = policy or RetryPolicy()
    url = callback_endpoint(base_url, job_id)
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + policy.total
    delay = policy.first_delay
    attempt = 0
    with requests.Session() as session:
        while True:
            attempt += 1
            try:
                resp = session.post(
                    url,
                    json=payload,
                    headers=headers,
                    timeout=(policy.connect_timeout, policy.read_timeout),
                )
            except requests.RequestException as exc:
                log.warning("callback %s attempt %d failed: %s", url, attempt, exc)
            else:
                if 200 <= resp.status_code < 300:
                    return True
                if resp.status_code not in _RETRY_STATUSES:
                    log.error(
                        "callback %s refused (%d): %s", url, resp.status_code, resp.text[:200]
                    )
                    return False
                log.warning("callback %s attempt %d: HTTP %d", url, attempt, resp.status_code)
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
