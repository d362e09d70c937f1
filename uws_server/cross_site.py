"""The one rule for "did a browser send this from another site's page?".

A browser that once answered the service's Basic challenge re-sends those credentials
by itself, to any request a page of any site makes it send (a form POST, an image):
without this rule, a page elsewhere could create, run or delete jobs as its visitor.
Browsers say where a request comes from: ``Sec-Fetch-Site`` (every current browser) and
``Origin`` (on every POST, on cross-origin requests). The request is cross-site when
``Sec-Fetch-Site`` is anything but ``same-origin`` or ``none`` (typed in, bookmark), or
when ``Origin`` is ``null`` or names another origin than the service's own: the
configured ``base_url``, or the host the request was sent to (``Host``, or a proxy's
``X-Forwarded-Host``, which a page of another site cannot make a browser send without
the service's consent). A client that is not a browser sends neither header and is
never refused by this rule.

Used by :mod:`uws_server.request_guard` for every API route and by the web pages
(:meth:`uws_server.web.common.WebApp.check_post`) for requests authenticated by header.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

SAME = frozenset({"same-origin", "none"})
DEFAULT_PORTS = {"http": "80", "https": "443"}


def _netloc(scheme: str, netloc: str) -> str:
    """``host[:port]`` in lower case, without the scheme's default port."""
    netloc = netloc.strip().lower().rstrip("/")
    port = DEFAULT_PORTS.get(scheme.lower())
    if port and netloc.endswith(":" + port):
        netloc = netloc[: -len(port) - 1]
    return netloc


def own_origins(environ: dict[str, Any], base_url: str = "") -> set[str]:
    """The service's own ``host[:port]`` names as seen in this request."""
    scheme = environ.get("wsgi.url_scheme", "http")
    names = set()
    host = environ.get("HTTP_HOST")
    if host:
        names.add(_netloc(scheme, host))
    else:
        server = f"{environ.get('SERVER_NAME', '')}:{environ.get('SERVER_PORT', '')}"
        names.add(_netloc(scheme, server))
    forwarded = environ.get("HTTP_X_FORWARDED_HOST")
    if forwarded:  # a proxy's; a page elsewhere cannot make a browser send it
        proto = environ.get("HTTP_X_FORWARDED_PROTO", scheme).split(",")[0].strip()
        names.add(_netloc(proto, forwarded.split(",")[0]))
    if base_url:
        parts = urlsplit(base_url)
        names.add(_netloc(parts.scheme, parts.netloc))
    return names


def is_cross_site(environ: dict[str, Any], base_url: str = "") -> bool:
    """True when the browser says this request comes from another site's page."""
    fetch_site = environ.get("HTTP_SEC_FETCH_SITE")
    if fetch_site and fetch_site.strip().lower() not in SAME:
        return True
    origin = environ.get("HTTP_ORIGIN")
    if origin is None:
        return False
    origin = origin.strip()
    if origin.lower() == "null" or "://" not in origin:
        return True
    try:
        parts = urlsplit(origin)
    except ValueError:  # not a URL a browser would send
        return True
    return _netloc(parts.scheme, parts.netloc) not in own_origins(environ, base_url)
