"""The creation's own reading of a urlencoded form (uws_server/formdata.py) gives what
bottle gives: the same pairs in the same order, the same body left for later readers,
the same header text and errors; and every other request is left to bottle."""

from __future__ import annotations

import io
from typing import Any

import bottle
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uws_server.formdata import FORM, header, urlencoded_pairs

MAX = bottle.BaseRequest.MEMFILE_MAX


def environ(body: bytes, query: str = "", **extra: Any) -> dict[str, Any]:
    env: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/rest/echo_job",
        "QUERY_STRING": query,
        "CONTENT_TYPE": FORM,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    env.update(extra)
    return env


def through_bottle(env: dict[str, Any]) -> list[tuple[str, str]]:
    """What the other routes read: bottle's query then forms, in allitems() order."""
    request = bottle.BaseRequest(env)
    return list(request.query.allitems()) + list(request.forms.allitems())


# Form text as clients (and attackers) write it: separators, escapes, valid and broken
# UTF-8 percent escapes, raw latin-1 and non-ASCII characters, repeated names.
PIECES = st.sampled_from(
    ["a", "A", "text", "PHASE", "phase", "=", "&", "&&", "+", "%", "%2", "%20", "%26", "%3D",
     "%C3%A9", "%C3", "%FF", "%00", ";", "é", "\xff", "RUN", " ", "x=1", "n"]
)  # fmt: skip
FORM_TEXT = st.lists(st.one_of(PIECES, st.text(max_size=4)), max_size=12).map("".join)


@settings(max_examples=400, deadline=None)
@given(body=FORM_TEXT, query=FORM_TEXT)
def test_pairs_and_their_order_are_bottles(body: str, query: str) -> None:
    raw = body.encode("utf-8", "surrogatepass")
    ours_env = environ(raw, query.encode("utf-8", "surrogatepass").decode("latin1"))
    bottles_env = environ(raw, ours_env["QUERY_STRING"])
    assert urlencoded_pairs(ours_env, MAX) == through_bottle(bottles_env)
    # A later reader of the body (bottle's request.body) still finds all of it.
    assert bottle.BaseRequest(ours_env).body.read() == raw


def test_repeated_names_are_grouped_as_bottle_groups_them() -> None:
    """FormsDict keeps a list per name: the last PHASE a rule sees is the last one of
    the first-named group, not the last in the body."""
    body = b"PHASE=RUN&text=a&phase=x&PHASE=&text=b"
    pairs = urlencoded_pairs(environ(body, "n=1&text=q&n=2"), MAX)
    assert pairs == [
        ("n", "1"), ("n", "2"), ("text", "q"),
        ("PHASE", "RUN"), ("PHASE", ""), ("text", "a"), ("text", "b"), ("phase", "x"),
    ]  # fmt: skip
    assert pairs == through_bottle(environ(body, "n=1&text=q&n=2"))


def test_a_short_body_is_read_to_its_end_as_bottle_reads_it() -> None:
    """A client that sends less than its Content-Length: what arrived, nothing more."""
    env = environ(b"text=abc", CONTENT_LENGTH="50")
    assert urlencoded_pairs(env, MAX) == [("text", "abc")]
    assert through_bottle(environ(b"text=abc", CONTENT_LENGTH="50")) == [("text", "abc")]


@pytest.mark.parametrize(
    "extra",
    [
        {"CONTENT_TYPE": "multipart/form-data; boundary=x"},
        {"CONTENT_TYPE": FORM + "; charset=utf-8"},
        {"CONTENT_TYPE": "Application/X-WWW-Form-Urlencoded"},
        {"CONTENT_TYPE": "text/plain"},
        {"HTTP_TRANSFER_ENCODING": "chunked"},
        {"CONTENT_LENGTH": ""},
        {"CONTENT_LENGTH": "-1"},
        {"CONTENT_LENGTH": " 8"},
        {"CONTENT_LENGTH": "1_0"},
        {"CONTENT_LENGTH": "\u0668"},  # a digit, but not an ASCII one
        {"CONTENT_LENGTH": str(MAX + 1)},  # bottle answers 413
        {"bottle.request.body": io.BytesIO(b"")},  # already read
    ],
)
def test_any_other_request_is_left_to_bottle(extra: dict[str, Any]) -> None:
    env = environ(b"text=abc", **extra)
    assert urlencoded_pairs(env, MAX) is None
    assert env["wsgi.input"].tell() == 0  # nothing read


@settings(max_examples=200, deadline=None)
@given(value=st.text(alphabet=st.characters(max_codepoint=255), max_size=20))
def test_header_is_get_header(value: str) -> None:
    env = {"HTTP_AUTHORIZATION": value}
    try:
        expected: object = bottle.BaseRequest(dict(env)).get_header("Authorization")
    except UnicodeDecodeError:
        expected = UnicodeDecodeError
    try:
        ours: object = header(env, "HTTP_AUTHORIZATION")
    except UnicodeDecodeError:
        ours = UnicodeDecodeError
    assert ours == expected
    assert header({}, "HTTP_AUTHORIZATION") is None
