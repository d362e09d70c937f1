"""Server-side request forgery (issue 11, class 4): families of URL tricks against real
loopback HTTP servers started here, which count every request they get.

The "victim" servers stand for internal services: whatever the URL says, they must see
no request unless the settings allow their address explicitly.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LiveServer, make_settings
from uws_server.fetch import FetchRefused, FetchTooLarge, SafeFetcher, address_problem, parse_target


class _Site(http.server.ThreadingHTTPServer):
    """A loopback HTTP server with a few behaviours chosen by path; counts requests."""

    daemon_threads = True

    def __init__(self, host: str = "127.0.0.1") -> None:
        import socket

        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, 0), _Handler)
        self.hits: list[str] = []
        self.redirect_to = ""
        self.stop_drip = threading.Event()
        threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def close(self) -> None:
        self.stop_drip.set()
        self.shutdown()
        self.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Site

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.server.hits.append(self.path)
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", self.server.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path.startswith("/drip-headers"):
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            for _ in range(200):  # one header line every 0.1 s: each read is quick
                if self.server.stop_drip.wait(0.1):
                    return
                try:
                    self.wfile.write(b"X-Drip: 1\r\n")
                    self.wfile.flush()
                except OSError:
                    return
        elif self.path.startswith("/drip"):
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            for _ in range(1000):  # one byte every 0.05 s: never a read timeout
                if self.server.stop_drip.wait(0.05):
                    return
                try:
                    self.wfile.write(b"x")
                    self.wfile.flush()
                except OSError:
                    return
        elif self.path.startswith("/big-declared"):
            self.send_response(200)
            self.send_header("Content-Length", str(10**9))
            self.end_headers()
        elif self.path.startswith("/big-undeclared"):
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                for _ in range(100):
                    self.wfile.write(b"y" * 1000)
            except OSError:
                pass
        else:
            body = b"secret of " + self.path.encode() + b"\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)


@pytest.fixture
def victim() -> Iterator[_Site]:
    site = _Site()
    yield site
    site.close()


@pytest.fixture
def victim6(victim: _Site) -> Iterator[_Site]:
    """The same on IPv6 loopback; where the machine has none, the IPv4 server stands in
    (the URLs naming [::1] must then be refused all the same)."""
    try:
        site = _Site("::1")
    except OSError:
        yield victim
        return
    yield site
    site.close()


# ---------------------------------------------------------------- parsing alone
@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://127.0.0.1:8000\\@allowed.example/x", "backslash"),
        ("http://allowed.example\\@127.0.0.1/x", "backslash"),
        ("http://127.0.0.1:8000@allowed.example/x", "user information"),
        ("http://allowed.example@127.0.0.1/x", "user information"),
        ("http://user:pw@allowed.example/x", "user information"),
        ("http://allowed.example\t@127.0.0.1/", "control character"),
        ("http://allowed.example /x", "control character"),
        ("http://allowed.example\r\nX-Injected: 1/x", "control character"),
        ("http://allowed.example\x00.evil/x", "control character"),
        ("http://2130706433/", "not a canonical IP address"),
        ("http://0177.0.0.1/", "not a canonical IP address"),
        ("http://0x7f.1/", "not a canonical IP address"),
        ("http://0x7f000001/", "not a canonical IP address"),
        ("http://127.1/", "not a canonical IP address"),
        ("http://ällowed.example/", "non-ASCII"),
        ("file:///etc/passwd", "only http and https"),
        ("gopher://allowed.example/", "only http and https"),
        ("ftp://allowed.example/x", "only http and https"),
        ("//allowed.example/x", "only http and https"),
        ("http:///x", "no host"),
        ("http://[fe80::1%25eth0]/", "zone index"),
        ("http://under_score.example/", "not a valid host name"),
    ],
)
def test_ambiguous_urls_are_refused_before_any_lookup(url: str, fragment: str) -> None:
    with pytest.raises(FetchRefused, match=fragment):
        parse_target(url)


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::7f00:1", "loopback"),
        ("2002:7f00:1::", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved|private"),  # Python lists 240/4 as private too
        ("100.64.0.1", "not a globally routable"),
        ("2001::1", "Teredo"),
    ],
)
def test_non_public_addresses_are_named(address: str, kind: str) -> None:
    import ipaddress

    problem = address_problem(ipaddress.ip_address(address))
    assert problem is not None and any(k in problem for k in kind.split("|")), problem


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1::1", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address: str) -> None:
    import ipaddress

    assert address_problem(ipaddress.ip_address(address)) is None


# ------------------------------------------------- fetching, against real servers
def _fetcher(hosts: list[str], networks: list[str] = (), **kw: float) -> SafeFetcher:  # type: ignore[assignment]
    return SafeFetcher(hosts, networks, int(kw.get("max_bytes", 10_000)), kw.get("timeout", 10))


def test_the_reported_backslash_trick_reaches_nothing(victim: _Site, tmp_path: Path) -> None:
    """The issue's example: ``allowed.example`` allowed, the URL names a loopback server."""
    fetcher = _fetcher(["allowed.example", "127.0.0.1"])
    port = victim.port
    for url in (
        f"http://127.0.0.1:{port}\\@allowed.example/x",
        f"http://127.0.0.1:{port}%5C@allowed.example/x",
        f"http://allowed.example\\@127.0.0.1:{port}/x",
        f"http://allowed.example@127.0.0.1:{port}/x",
        f"http://127.0.0.1:{port}@allowed.example/x",
        f"http://allowed.example:{port}\\\\127.0.0.1/x",
    ):
        target = tmp_path / "out"
        with pytest.raises(FetchRefused):
            fetcher.fetch(url, str(target))
        assert not target.exists()
    assert victim.hits == []


@pytest.mark.parametrize(
    "host",
    ["2130706433", "0177.0.0.1", "0x7f.0.0.1", "0x7f000001", "127.1", "[::ffff:127.0.0.1]",
     "[::ffff:7f00:1]", "[0:0:0:0:0:ffff:127.0.0.1]", "[::1]", "localhost", "LOCALHOST",
     "localhost.", "127.0.0.1:1@localhost"],
)  # fmt: skip
def test_loopback_spellings_never_reach_the_server(
    victim: _Site, victim6: _Site, tmp_path: Path, host: str
) -> None:
    """Every other spelling of a loopback address is refused, with 127.0.0.1 itself and
    the name localhost allowed as hosts (a DNS name reaches a non-public address only
    through allowed_fetch_networks)."""
    fetcher = _fetcher(["allowed.example", "127.0.0.1", "localhost"])
    for site in (victim, victim6):
        with pytest.raises(FetchRefused):
            fetcher.fetch(f"http://{host}:{site.port}/x", str(tmp_path / "out"))
    assert victim.hits == [] and victim6.hits == []


def test_a_dns_name_for_loopback_is_refused_unless_its_network_is_allowed(
    victim: _Site, tmp_path: Path
) -> None:
    url = f"http://localhost:{victim.port}/data.txt"
    with pytest.raises(FetchRefused, match="resolves to .*loopback"):
        _fetcher(["localhost"]).fetch(url, str(tmp_path / "a"))
    assert victim.hits == []
    fetched = _fetcher(["localhost"], ["127.0.0.0/8", "::1/128"]).fetch(url, str(tmp_path / "b"))
    assert (tmp_path / "b").read_bytes() == b"secret of /data.txt\n"
    assert fetched.size == 20 and fetched.content_type == "text/plain"
    assert victim.hits == ["/data.txt"]


def test_an_address_listed_as_a_host_is_allowed_as_itself(victim: _Site, tmp_path: Path) -> None:
    fetched = _fetcher(["127.0.0.1"]).fetch(
        f"http://127.0.0.1:{victim.port}/ok", str(tmp_path / "o")
    )
    assert fetched.sha256 and (tmp_path / "o").read_bytes() == b"secret of /ok\n"


def test_every_redirect_is_checked_again(victim: _Site, victim6: _Site, tmp_path: Path) -> None:
    """An allowed server redirecting to an internal one: refused at the hop."""
    front = _Site()
    try:
        fetcher = _fetcher(["127.0.0.1", "localhost"])
        for to in (
            f"http://localhost:{victim.port}/internal",  # allowed name, loopback address
            f"http://[::1]:{victim6.port}/internal",  # not listed
            f"http://127.0.0.2:{victim.port}/internal",  # not listed
            f"http://2130706433:{victim.port}/internal",  # not canonical
            "file:///etc/passwd",
        ):
            front.redirect_to = to
            with pytest.raises(FetchRefused):
                fetcher.fetch(f"http://127.0.0.1:{front.port}/redirect", str(tmp_path / "r"))
            assert not (tmp_path / "r").exists()
        assert victim.hits == [] and victim6.hits == []
        # a redirect that stays within the rules is followed
        front.redirect_to = f"http://127.0.0.1:{front.port}/final"
        got = fetcher.fetch(f"http://127.0.0.1:{front.port}/redirect", str(tmp_path / "r"))
        assert (tmp_path / "r").read_bytes() == b"secret of /final\n"
        assert got.url.endswith("/final")
        # and a loop ends
        front.redirect_to = f"http://127.0.0.1:{front.port}/redirect"
        with pytest.raises(FetchRefused, match="redirects"):
            fetcher.fetch(f"http://127.0.0.1:{front.port}/redirect", str(tmp_path / "loop"))
    finally:
        front.close()


@pytest.mark.parametrize("path", ["/drip", "/drip-headers"])
def test_the_time_limit_is_for_the_whole_fetch(victim: _Site, tmp_path: Path, path: str) -> None:
    """A server sending a byte (or a header line) at a time never trips a per-read
    timeout; the total limit cuts it."""
    fetcher = _fetcher(["127.0.0.1"], timeout=1.0, max_bytes=10**6)
    start = time.monotonic()
    with pytest.raises(FetchRefused, match="longer than 1 s"):
        fetcher.fetch(f"http://127.0.0.1:{victim.port}{path}", str(tmp_path / "slow"))
    assert time.monotonic() - start < 5  # 1 s, plus a loaded machine's slack
    assert not (tmp_path / "slow").exists()


@pytest.mark.parametrize("path", ["/big-declared", "/big-undeclared"])
def test_the_size_limit_holds_with_or_without_a_length(
    victim: _Site, tmp_path: Path, path: str
) -> None:
    fetcher = _fetcher(["127.0.0.1"], max_bytes=5_000)
    with pytest.raises(FetchTooLarge, match="exceeds 5000 bytes"):
        fetcher.fetch(f"http://127.0.0.1:{victim.port}{path}", str(tmp_path / "big"))
    assert not (tmp_path / "big").exists()


def test_the_fetch_never_writes_through_a_link(victim: _Site, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("keep\n")
    (tmp_path / "link").symlink_to(elsewhere)
    with pytest.raises(FileExistsError):
        _fetcher(["127.0.0.1"]).fetch(f"http://127.0.0.1:{victim.port}/x", str(tmp_path / "link"))
    assert elsewhere.read_text() == "keep\n"


# --------------------------------------------------------- through the service
def test_the_service_refuses_the_family_with_a_400(victim: _Site, tmp_path: Path) -> None:
    """Over HTTP: each trick is a 400 naming the input and the reason; the positive
    case (an explicitly allowed network) is fetched into the job and used."""
    live = LiveServer(
        make_settings(
            tmp_path / "srv",
            allowed_fetch_hosts=["allowed.example", "localhost"],
            allowed_fetch_networks=[],
            fetch_timeout=5,
        )
    )
    try:
        c = live.add_user("carol")
        port = victim.port
        for url, fragment in (
            (f"http://127.0.0.1:{port}\\@allowed.example/x", "backslash"),
            (f"http://allowed.example@127.0.0.1:{port}/x", "user information"),
            (f"http://2130706433:{port}/x", "canonical"),
            (f"http://[::ffff:127.0.0.1]:{port}/x", "allowed_fetch_hosts"),
            (f"http://localhost:{port}/x", "loopback"),
            ("http://169.254.169.254/latest/meta-data", "allowed_fetch_hosts"),
        ):
            r = c.post("/rest/copy_job", data={"input": url})
            assert r.status_code == 400, (url, r.status_code, r.text)
            assert "input 'input'" in r.text and fragment in r.text, (url, r.text)
        assert victim.hits == []
        assert not any(live.settings.jobs_dir.iterdir())  # no job directory left behind
    finally:
        live.stop()
    live = LiveServer(
        make_settings(
            tmp_path / "srv2",
            allowed_fetch_hosts=["localhost"],
            allowed_fetch_networks=["127.0.0.0/8", "::1/128"],
        )
    )
    try:
        c = live.add_user("carol")
        job = c.create(
            "copy_job", {"input": f"http://localhost:{victim.port}/in.txt", "PHASE": "RUN"}
        )
        assert c.wait_final(job) == "COMPLETED"
        assert c.get(job + "/results/output").text == "secret of /in.txt\n+\n"
    finally:
        live.stop()


def test_the_checked_addresses_are_tried_in_turn(victim: _Site, tmp_path: Path) -> None:
    """A name with several (checked) addresses: the next one is tried when one refuses
    the connection (nothing listens on [::1] at the IPv4 server's port), as any client
    does; only addresses that were checked are ever given to it."""
    import hashlib
    import ipaddress

    fetcher = _fetcher(["localhost"], ["127.0.0.0/8", "::1/128"])
    target = parse_target(f"http://localhost:{victim.port}/both")
    with (tmp_path / "out").open("wb") as out:
        status, _, _, size = fetcher._get(
            target,
            [ipaddress.ip_address("::1"), ipaddress.ip_address("127.0.0.1")],
            time.monotonic() + 10,
            out,
            hashlib.sha256(),
        )
    assert status == 200 and size == len(b"secret of /both\n")
    assert victim.hits == ["/both"]
