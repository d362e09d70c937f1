"""HTTP callbacks from a worker to the server, with bounded retries.

A worker node must survive a server restart or a network hiccup: an event is retried
with exponential backoff for a bounded time, then given up (the status file in the job
directory still holds the final state, so the server can pick it up later). Client
errors other than "try again later" are not retried: a 401 or a 409 will not get better.

The client is a few lines over a plain socket, not ``requests`` nor ``http.client``: a
runner is a short-lived process started for every job, and importing ``requests``
(urllib3, charset_normalizer, idna, importlib.metadata...) or ``http.client`` (email,
ssl) cost more CPU than everything else the runner does for a trivial job (figures in
docs/benchmarks.md, "Worker runner"). Two small JSON POSTs to our own server need only
a status line back, through :mod:`socket` (a supported interface: CPython's private
``_socket`` under it spared only ``socket``'s own import, which users do not feel; see
docs/benchmarks.md); ``ssl`` is imported for https URLs only. A worker node needs
nothing but Python and this package.
"""

from __future__ import annotations

import json
import socket
import time

from workers.logs import get_logger

TYPE_CHECKING = False  # annotations only (see workers.jobdir)
if TYPE_CHECKING:
    import threading
    from typing import Any

log = get_logger(__name__)

DEFAULT_RETRY_SECONDS = 300.0
# Statuses meaning "the server is there but cannot take it now".
_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class RetryPolicy:
    """How long and how often to retry. ``total`` bounds the whole attempt."""

    __slots__ = ("total", "first_delay", "max_delay", "connect_timeout", "read_timeout")

    def __init__(
        self,
        total: float = DEFAULT_RETRY_SECONDS,
        first_delay: float = 0.5,
        max_delay: float = 30.0,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
    ) -> None:
        self.total, self.first_delay, self.max_delay = total, first_delay, max_delay
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout


_DIGITS = frozenset("0123456789")
_IPV6_CHARS = frozenset("0123456789abcdefABCDEF:.")
_NOT_IN_HOST = frozenset("/?#:@[]")
# Characters that need no quoting in a path segment.
_SEGMENT_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-")


class CallbackURL:
    """The parts of ``http(s)://host[:port][/path]``, the only URLs a callback may use."""

    __slots__ = ("scheme", "host", "port", "path")

    def __init__(self, scheme: str, host: str, port: int, path: str) -> None:
        self.scheme, self.host, self.port, self.path = scheme, host, port, path


def parse_url(url: str) -> CallbackURL | None:
    """Split a callback URL, or None when it is not ``http(s)://host[:port][/path]``.

    The host is a name or an IPv4 address (none of ``/?#:@[]``) or a bracketed IPv6
    address; the port has one to five digits; the path starts with ``/`` or ``?``; a
    fragment (``#``) is refused anywhere.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("http", "https") or "#" in rest:
        return None
    cut = len(rest)
    for mark in "/?":
        at = rest.find(mark)
        if 0 <= at < cut:
            cut = at
    authority, path = rest[:cut], rest[cut:] or "/"
    if authority.startswith("["):
        close = authority.find("]") + 1
        host, port_part = authority[:close], authority[close:]
        if close < 3 or not _IPV6_CHARS.issuperset(host[1:-1]):
            return None
    else:
        host, colon, port_text = authority.partition(":")
        port_part = colon + port_text
        if not host or not _NOT_IN_HOST.isdisjoint(host):
            return None
    if port_part:
        digits = port_part[1:]
        if port_part[0] != ":" or not 1 <= len(digits) <= 5 or not _DIGITS.issuperset(digits):
            return None
        port = int(digits)
    else:
        port = 443 if scheme == "https" else 80
    return CallbackURL(scheme, host, port, path)


def callback_endpoint(base_url: str, job_id: str) -> str:
    """``<base>/callback/<job_id>``; the job id is quoted so it stays one path segment."""
    if not job_id or not _SEGMENT_CHARS.issuperset(job_id):
        from urllib.parse import quote  # rare: the service's ids never need it

        job_id = quote(job_id, safe="")
    return f"{base_url.rstrip('/')}/callback/{job_id}"


def _post_once(
    url: str, body: bytes, headers: dict[str, str], policy: RetryPolicy
) -> tuple[int, str]:
    """One HTTP/1.1 POST (``Connection: close``); the status code and the start of the
    answer's body as far as the first read got it (the server's reason for a refusal).

    ``OSError`` when the server cannot be reached or answers something that is not HTTP.
    The connect timeout bounds the connection, the read timeout each read after it.
    """
    parts = parse_url(url)
    assert parts is not None  # checked by post_event
    host, port = parts.host, parts.port
    address = host.strip("[]")
    # bytes when ASCII: a str host makes getaddrinfo import the idna codec, every job
    peer: str | bytes = address.encode("ascii") if address.isascii() else address
    sock = socket.create_connection((peer, port), timeout=policy.connect_timeout)
    if parts.scheme == "https":
        import ssl

        sock = ssl.create_default_context().wrap_socket(sock, server_hostname=address)
    try:
        sock.settimeout(policy.read_timeout)
        head = [f"POST {parts.path} HTTP/1.1", f"Host: {host}:{port}"]
        head += [f"{key}: {value}" for key, value in headers.items()]
        head += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
        sock.sendall("\r\n".join(head).encode("latin-1") + body)
        answer = _receive(sock, b"", until=b"\r\n")
        code = status_code(answer)
        if code is None:
            raise OSError(f"not an HTTP answer: {answer[:40]!r}")
        if not 200 <= code < 300:  # read on (to the close) for the server's reason
            answer = _receive(sock, answer, until=None)
    finally:
        sock.close()
    reason = answer.partition(b"\r\n\r\n")[2][:300].decode("utf-8", "replace")
    return code, reason


def status_code(answer: bytes) -> int | None:
    """The status of an answer starting ``HTTP/1.x NNN`` (then a blank or the line's
    end), or None."""
    line = answer[:13]
    if (
        len(line) == 13
        and line[:7] == b"HTTP/1."
        and line[7:8] in (b"0", b"1")
        and line[8:9] == b" "
        and _DIGITS.issuperset(line[9:12].decode("latin-1"))
        and line[12:13] in (b" ", b"\r")
    ):
        return int(line[9:12])
    return None


def _receive(sock: socket.socket, answer: bytes, until: bytes | None) -> bytes:
    """Read on until ``until`` has arrived, the server closed, or 8 KiB are in."""
    while (until is None or until not in answer) and len(answer) < 8192:
        chunk = sock.recv(4096)
        if not chunk:
            break
        answer += chunk
    return answer


def post_event(
    base_url: str,
    job_id: str,
    token: str,
    payload: dict[str, Any],
    policy: RetryPolicy | None = None,
    cancel: threading.Event | None = None,
    suffix: str = "",
) -> bool:
    """POST one event (to ``/callback/<job_id>`` + ``suffix``: ``/progress`` for a
    progress report); True once the server accepted it (2xx).

    Returns False when the time budget is spent, the server refused it for good (4xx),
    or ``cancel`` was set (a newer event supersedes this one). The first attempt is
    always made, so an EXECUTING event reaches a live server before the final one.
    """
    policy = policy or RetryPolicy()
    url = callback_endpoint(base_url, job_id) + suffix
    if parse_url(url) is None:
        log.error("callback URL %r is not http(s)://host[:port]/...: event not sent", url)
        return False
    body = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    deadline = time.monotonic() + policy.total
    delay = policy.first_delay
    attempt = 0
    while True:
        attempt += 1
        try:
            status, reason = _post_once(url, body, headers, policy)
        except OSError as exc:
            log.warning("callback %s attempt %d failed: %s", url, attempt, exc)
        else:
            if 200 <= status < 300:
                return True
            if status not in _RETRY_STATUSES:
                log.error("callback %s refused (HTTP %d): %s", url, status, reason.strip())
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
