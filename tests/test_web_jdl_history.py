"""Operator pages (issue 13.5): a definition's history with numbers, definition versions,
readable dates and the diff to the version that replaced it; upload errors in an error
box with the reasons (not "could not be read" in a green success box)."""

from __future__ import annotations

import re
from html import unescape

from tests.conftest import TESTS, LiveServer
from tests.test_web_operator import editor_form


def test_history_numbers_dates_versions_and_diffs(live: LiveServer) -> None:
    oper = live.client("oper")
    assert oper.post("/ui/jdl/save", data=editor_form("hist_job")).status_code == 303
    for n, text in ((2, "second"), (3, "third")):
        form = editor_form("hist_job", description=text, version=str(n))
        assert oper.post("/ui/jdl/save", data=form).headers["Location"].endswith("msg=saved")
    page = unescape(oper.get("/ui/jdl/hist_job/history").text)
    rows = re.findall(
        r"<tr data-stamp=\"[^\"]+\"><td>#(\d+)</td><td>([^<]*)</td><td><time[^>]*>([^<]+)</time>",
        page,
    )
    assert [(n, v) for n, v, _ in rows] == [("2", "2"), ("1", "1")]  # newest first
    for _, _, when in rows:
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", when), when
    # #2 (description "second") against the current file ("third"); #1 against #2
    diff2 = re.search(r'<details class="diff" id="diff-2">(.*?)</details>', page, re.S).group(1)
    assert "Changes from #2 to current" in diff2
    assert re.search(r'<span class="del">-.*second', diff2)
    assert re.search(r'<span class="add">\+.*third', diff2)
    diff1 = re.search(r'<details class="diff" id="diff-1">(.*?)</details>', page, re.S).group(1)
    assert "Changes from #1 to #2" in diff1 and re.search(r'<span class="add">\+.*second', diff1)
    assert "third" not in diff1


def test_upload_errors_in_an_error_box_with_reasons(live: LiveServer) -> None:
    oper = live.client("oper")
    r = oper.post("/ui/jdl/upload", files={"file": ("x.xml", b"<not votable", "text/xml")})
    assert r.status_code == 400
    box = re.search(
        r'<div class="error-box" id="upload-error" role="alert">(.*?)</div>', r.text, re.S
    )
    assert box, r.text
    text = unescape(box.group(1))
    assert "x.xml could not be read:" in text
    assert re.search(r"<li>.*(XML|xml|parse|well-formed|tag).*</li>", text), text
    assert 'class="flash"' not in r.text  # no green success box
    r = oper.post("/ui/jdl/upload", files={"file": ("x.json", b"{broken", "application/json")})
    assert r.status_code == 400 and "not valid JSON" in unescape(r.text)
    assert 'id="upload-error"' in r.text
    # a readable file with invalid values: the reasons in the box and at their inputs
    data = (TESTS / "data" / "jdl" / "echo_job_vot.xml").read_bytes()
    bad = data.replace(b'"echo_job"', b'"echo_bad"').replace(b'<MAX value="100"/>', b"")
    bad = bad.replace(b'value="1" unit="count"', b'value="abc" unit="count"')
    r = oper.post("/ui/jdl/upload", files={"file": ("b.xml", bad, "text/xml")})
    box = unescape(re.search(r'id="upload-error" role="alert">(.*?)</div>', r.text, re.S).group(1))
    assert "b.xml was not saved" in box and "'abc' is not an integer" in box
