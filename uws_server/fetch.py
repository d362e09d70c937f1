"""Fetching a used entity's external URL without server-side request forgery (SSRF).

The URL is parsed once, here, and the connection is made from that one parse: no second
parser (``urllib.parse`` against urllib3, say) can disagree about the host. What is
refused before any connection: anything but ``http``/``https``; userinfo (``user@``);
backslashes, whitespace and control characters anywhere; a host that is not a plain
DNS name or a canonical IP address (``2130706433``, ``0177.0.0.1``, ``0x7f.1`` are the
loopback address to the C resolver); a host missing from ``allowed_fetch_hosts``.
The host is then resolved once, every address it resolves to is checked (loopback,
private, link-local, multicast, unspecified, reserved, not globally routable; IPv4
inside IPv6 — mapped, NAT64, 6to4, Teredo — by the IPv4 address it carries) unless it
lies in ``allowed_fetch_networks`` (or the URL's host is that very address, listed as
such in ``allowed_fetch_hosts``: an operator who lists ``127.0.0.1`` means it), and the
socket connects to the very address that was checked (no second DNS lookup). A
redirect is a new URL: checked again, from the start, at most ``MAX_REDIRECTS`` times.
The whole fetch (connect, headers, body) has one deadline, ``fetch_timeout`` seconds in
all, and the body a size limit.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import urljoin

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

MAX_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Anything at or below the space, DEL, the backslash: never part of a URL we accept.
_FORBIDDEN_CHARS = re.compile(r"[\x00-\x20\x7f\\]")
# A DNS name: dot-separated labels of letters, digits and hyphens.
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
# The numeric host forms inet_aton() accepts (decimal, octal, hex, 1 to 4 parts).
_NUMERIC_HOST = re.compile(r"^((0x[0-9a-f]*)|([0-9]+))(\.((0x[0-9a-f]*)|([0-9]+))){0,3}$")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class FetchRefused(Exception):
    """The URL may not be fetched, or the fetch failed; the message says why."""


class FetchTooLarge(FetchRefused):
    """The answer is larger than the size limit."""


@dataclass(frozen=True)
class Target:
    """A URL as the one parse read it: what is checked is what is connected to."""

    url: str
    scheme: str
    host: str  # lower case, no trailing dot; an IPv6 literal without brackets
    port: int
    request_uri: str  # path and query, as sent
    ip_literal: IPAddress | None


@dataclass
class Fetched:
    """A fetched body, written to a file."""

    url: str  # the final URL (after redirects)
    size: int
    sha256: str
    content_type: str | None


def parse_target(url: str) -> Target:
    """Parse a URL the way we will connect to it, refusing every ambiguous form."""
    if not isinstance(url, str) or not url:
        raise FetchRefused("an empty URL")
    if len(url) > 4096:
        raise FetchRefused("the URL is longer than 4096 characters")
    if not url.isascii():
        raise FetchRefused("the URL has non-ASCII characters (percent-encode them)")
    if _FORBIDDEN_CHARS.search(url):
        raise FetchRefused("the URL has a backslash, a space or a control character")
    try:
        parsed = parse_url(url)
    except (LocationParseError, ValueError):
        raise FetchRefused("the URL cannot be parsed") from None
    scheme = (parsed.scheme or "").lower()
    if scheme not in ("http", "https"):
        raise FetchRefused("only http and https URLs are fetched")
    if parsed.auth is not None or "@" in url.split("//", 1)[-1].split("/", 1)[0]:
        raise FetchRefused("a URL with user information (user@host) is not fetched")
    host = (parsed.host or "").lower()
    if not host:
        raise FetchRefused("the URL has no host")
    port = parsed.port or (443 if scheme == "https" else 80)
    if not 0 < port < 65536:
        raise FetchRefused(f"port {port} is not a TCP port")
    ip: IPAddress | None = None
    if host.startswith("["):
        if "%" in host:
            raise FetchRefused("an IPv6 address with a zone index is not fetched")
        try:
            ip = ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise FetchRefused(f"'{host}' is not an IPv6 address") from None
        host = str(ip)
    else:
        host = host[:-1] if host.endswith(".") else host
        try:
            ip = ipaddress.IPv4Address(host)
        except ValueError:
            if _NUMERIC_HOST.match(host):
                raise FetchRefused(
                    f"'{host}' is not a canonical IP address (write it as a.b.c.d)"
                ) from None
            labels = host.split(".")
            if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
                raise FetchRefused(f"'{host}' is not a valid host name") from None
    request_uri = parsed.request_uri or "/"
    return Target(url, scheme, host, port, request_uri, ip)


def address_problem(ip: IPAddress) -> str | None:
    """Why an address may not be fetched from (None: a public address)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return "a scoped IPv6 address"
        carried = ip.ipv4_mapped or ip.sixtofour
        if carried is None and ip in _NAT64:
            carried = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if carried is not None:
            inner = address_problem(carried)
            return f"an IPv6 address carrying {carried}, {inner}" if inner else None
        if ip.teredo is not None:
            return "a Teredo address"
    for attribute, label in (
        ("is_unspecified", "the unspecified address"),
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
        ("is_multicast", "a multicast address"),
        ("is_private", "a private address"),
        ("is_reserved", "a reserved address"),
    ):
        if getattr(ip, attribute):
            return label
    if not ip.is_global:
        return "not a globally routable address"
    return None


def parse_networks(values: Iterable[str]) -> list[IPNetwork]:
    """``allowed_fetch_networks`` as networks; a bad entry is a start-up error."""
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"allowed_fetch_networks: '{value}' is not a network") from None
    return out


class SafeFetcher:
    """Fetches allowed URLs into files (see the module's docstring for the rules)."""

    def __init__(
        self,
        allowed_hosts: Iterable[str],
        allowed_networks: Iterable[str],
        max_bytes: int,
        timeout: float,
    ) -> None:
        self.allowed_hosts = {self._host_key(h) for h in allowed_hosts if h.strip()}
        self.allowed_networks = parse_networks(allowed_networks)
        self.max_bytes = max_bytes
        self.timeout = timeout

    @staticmethod
    def _host_key(host: str) -> str:
        host = host.strip().lower().rstrip(".")
        try:
            return str(ipaddress.ip_address(host.strip("[]")))
        except ValueError:
            return host

    # --------------------------------------------------------------- checks
    def check(self, url: str) -> tuple[Target, list[IPAddress]]:
        """The parsed URL and the addresses to connect to (all checked), or FetchRefused."""
        target = parse_target(url)
        if target.host not in self.allowed_hosts:
            raise FetchRefused(f"host '{target.host}' is not in allowed_fetch_hosts")
        if target.ip_literal is not None:
            addresses: list[IPAddress] = [target.ip_literal]
        else:
            try:
                infos = socket.getaddrinfo(
                    target.host, target.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
                )
            except (OSError, UnicodeError):
                raise FetchRefused(f"cannot resolve host '{target.host}'") from None
            addresses = []
            for info in infos:
                address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
                if address not in addresses:
                    addresses.append(address)
        if not addresses:
            raise FetchRefused(f"host '{target.host}' has no address")
        for address in addresses:  # every answer: DNS may mix public and private ones
            problem = address_problem(address)
            if problem and target.ip_literal is not None:
                problem = None  # this very address is listed in allowed_fetch_hosts
            if problem and not any(address in net for net in self.allowed_networks):
                raise FetchRefused(
                    f"'{target.host}' resolves to {address}, {problem} "
                    "(only addresses in allowed_fetch_networks are fetched from)"
                )
        return target, addresses

    # ---------------------------------------------------------------- fetch
    def fetch(self, url: str, path: str) -> Fetched:
        """Fetch ``url`` into a new file ``path`` (created, never followed if a link);
        the file is removed when the fetch fails."""
        deadline = time.monotonic() + self.timeout
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                current = url
                for _ in range(MAX_REDIRECTS + 1):
                    target, addresses = self.check(current)
                    h = hashlib.sha256()
                    status, location, ctype, size = self._get(target, addresses, deadline, out, h)
                    if status in _REDIRECTS and location:
                        current = urljoin(current, location)
                        out.seek(0)
                        out.truncate()
                        continue
                    if status != 200:
                        raise FetchRefused(f"{current} answered HTTP {status}")
                    return Fetched(current, size, h.hexdigest(), ctype)
                raise FetchRefused(f"more than {MAX_REDIRECTS} redirects")
        except BaseException:
            try:
                os.unlink(path)
            except OSError:
                pass
            raise

    def _get(
        self, target: Target, addresses: list[IPAddress], deadline: float, out: BinaryIO, h: Any
    ) -> tuple[int, str | None, str | None, int]:
        """One GET on the first of ``addresses`` that accepts the connection; the body (of
        a 200) into ``out``. Returns the status,
        the Location header, the Content-Type and the body's size."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchRefused(f"the fetch took longer than {self.timeout:g} s")
        conn = _PinnedConnection(target, addresses, remaining, deadline)
        expired = threading.Event()

        def expire() -> None:  # the total time limit: cut the socket, whatever it waits on
            expired.set()
            sock = conn.pinned_socket  # http.client drops conn.sock once it has a response
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        timer = threading.Timer(remaining, expire)
        timer.daemon = True
        timer.start()
        try:
            conn.request(
                "GET",
                target.request_uri,
                headers={"User-Agent": "uws-server", "Accept-Encoding": "identity"},
            )
            resp = conn.getresponse()
            if resp.status != 200:
                return resp.status, resp.getheader("Location"), None, 0
            length = resp.getheader("Content-Length")
            if length and length.strip().isdigit() and int(length) > self.max_bytes:
                raise FetchTooLarge(
                    f"{target.url} exceeds {self.max_bytes} bytes ({int(length)} bytes)"
                )
            size = 0
            while True:
                chunk = resp.read1(1 << 16)
                if not chunk:
                    break
                size += len(chunk)
                if size > self.max_bytes:
                    raise FetchTooLarge(f"{target.url} exceeds {self.max_bytes} bytes")
                h.update(chunk)
                out.write(chunk)
            if expired.is_set():
                raise FetchRefused(f"the fetch took longer than {self.timeout:g} s")
            return 200, None, resp.getheader("Content-Type"), size
        except FetchRefused:
            raise
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if expired.is_set():
                raise FetchRefused(f"the fetch took longer than {self.timeout:g} s") from None
            raise FetchRefused(f"cannot fetch {target.url}: {type(exc).__name__}") from None
        finally:
            timer.cancel()
            conn.close()


class _PinnedConnection(http.client.HTTPConnection):
    """An HTTP(S) connection to addresses checked beforehand: the Host header, SNI and
    the certificate check use the URL's host, the socket goes to the first of
    ``addresses`` that accepts it (as ``socket.create_connection`` tries a name's)."""

    def __init__(
        self, target: Target, addresses: list[IPAddress], timeout: float, deadline: float
    ) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self._deadline = deadline
        self._addresses = [str(a) for a in addresses]
        self._tls = target.scheme == "https"
        self.pinned_socket: socket.socket | None = None

    def connect(self) -> None:
        error: OSError | None = None
        for address in self._addresses:
            try:
                left = self._deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("the fetch's time is up")
                sock = socket.create_connection((address, self.port), left)
                break
            except OSError as exc:
                error = exc
        else:
            raise error or OSError("no address")
        if self._tls:
            context = ssl.create_default_context()
            sock = context.wrap_socket(sock, server_hostname=self.host)
        self.sock = self.pinned_socket = sock
