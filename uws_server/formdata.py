"""A job creation's header and form read straight from the WSGI environ.

A creation is the service's busiest POST, and bottle turns even its two-pair body into
three ``FormsDict``s (the query, the POST and the forms) and its headers into a header
dict before the handler sees a value: ~10 µs of the GIL per request, a quarter of what
the handler itself costs. For the one shape clients send (a plain
``application/x-www-form-urlencoded`` body with its ``Content-Length``, no transfer
coding), :func:`urlencoded_pairs` reads the same pairs itself:

- the same bytes from ``wsgi.input`` (read as bottle reads them, and left behind in
  ``wsgi.input`` as bottle leaves them, for any later reader);
- split and unquoted as bottle's ``_parse_qsl`` does (``&`` between pairs, ``+`` for a
  space, percent escapes decoded as latin-1, a pair without ``=`` has an empty value);
- in the order of bottle's ``FormsDict.allitems()``: the query's pairs then the body's,
  each grouped by name in order of first appearance, so that the rules downstream (the
  last control value wins, a repeated parameter is refused) see what they saw before.

Any other request (multipart, chunked, no or odd Content-Length, a body larger than
bottle keeps in memory) returns None and goes through bottle, whose errors (413...)
it then gets. ``tests/test_formdata.py`` checks both readings agree on random input.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any
from urllib.parse import unquote

FORM = "application/x-www-form-urlencoded"


def header(environ: dict[str, Any], key: str) -> str | None:
    """A request header by its environ key (``HTTP_AUTHORIZATION``), as bottle's
    ``request.get_header`` returns it: the server's latin-1 text recoded to UTF-8 (a
    header that is not UTF-8 raises, as it does through bottle)."""
    value = environ.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("latin1").decode("utf8")
    return value.decode("utf8")


def _parse_qsl(text: str) -> list[tuple[str, str]]:
    """bottle's ``_parse_qsl``: (name, value) pairs in order, percent escapes as latin-1."""
    pairs = []
    for pair in text.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        pairs.append(
            (
                unquote(name.replace("+", " "), encoding="latin1"),
                unquote(value.replace("+", " "), encoding="latin1"),
            )
        )
    return pairs


def _grouped(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The pairs in ``FormsDict.allitems()`` order: grouped by name, first seen first."""
    if len(pairs) < 2:
        return pairs
    groups: dict[str, list[str]] = {}
    for name, value in pairs:
        groups.setdefault(name, []).append(value)
    if len(groups) == len(pairs):  # no name repeated: the order is unchanged
        return pairs
    return [(name, value) for name, values in groups.items() for value in values]


def urlencoded_pairs(environ: dict[str, Any], memfile_max: int) -> list[tuple[str, str]] | None:
    """The query's then the body's (name, value) pairs as bottle's ``request.query``
    and ``request.forms`` hand them over (latin-1 text), or None when the request is
    not a plain urlencoded body of at most ``memfile_max`` bytes (bottle's
    ``request.MEMFILE_MAX``) that nothing has read yet."""
    if environ.get("CONTENT_TYPE") != FORM or "HTTP_TRANSFER_ENCODING" in environ:
        return None
    length = environ.get("CONTENT_LENGTH")
    if not length or not (length.isascii() and length.isdigit()):
        return None
    size = int(length)
    stream = environ.get("wsgi.input")
    if size > memfile_max or stream is None or "bottle.request.body" in environ:
        return None
    chunks = []
    left = size
    while left:  # bottle's _iter_body: up to Content-Length, or the end of the stream
        part = stream.read(min(left, memfile_max))
        if not part:
            break
        chunks.append(part)
        left -= len(part)
    body = b"".join(chunks)
    environ["wsgi.input"] = BytesIO(body)  # what bottle leaves there once it has read it
    query = environ.get("QUERY_STRING")
    pairs = _grouped(_parse_qsl(query)) if query else []
    pairs += _grouped(_parse_qsl(body.decode("latin1")))
    return pairs
