"""The job page for scientists (issue 13, items 3-5): plots first, the summary table of
a marked result, FITS quick-looks, long text folded, the clickable compact provenance
picture and the cross-job view, "run again" and editing a PENDING job's parameters."""

from __future__ import annotations

import re
import time
from html import unescape
from pathlib import Path

import pytest
from lxml import etree

from tests.conftest import Client, LiveServer
from tests.test_provenance_api import run_chain
from uws_server.jdl.votable import read_votable_file, write_votable
from uws_server.web.provgraph import graph_view, ui_href

ROOT = Path(__file__).resolve().parent.parent


def ui(rest: str) -> str:
    return "/ui/jobs/" + rest.removeprefix("/rest/")


def wait_provenance(c: Client, job: str, fmt: str = "svg") -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if c.get(job + f"/provenance/{fmt}").status_code == 200:
            return
        time.sleep(0.2)
    raise AssertionError(f"no {fmt} provenance for {job}")


def spectrum_job(c: Client, **params: str) -> str:
    job = c.create("spectrum_job", {"PHASE": "RUN", **params})
    assert c.wait_final(job) == "COMPLETED", c.get(job).text
    return job


def test_results_plots_first_summary_table_fits_quicklook_long_text(alice: Client) -> None:
    job = spectrum_job(alice, index="2.63")
    page = unescape(alice.get(ui(job)).text)
    # the summary table: marked keys in order, value ± error, a missing key left out
    table = re.search(r'<div class="summary" id="summary-fit_result">(.*?)</div>', page, re.S)
    assert table, page
    rows = re.findall(r"<th>([^<]+)</th><td class=\"num\">([^<]+)</td>", table.group(1))
    assert rows[:3] == [
        ("index", "2.63 ± 0.0812"),
        ("amplitude", "3.52e-11 ± 2.1e-12"),
        ("amplitude_unit", "cm-2 s-1 TeV-1"),
    ]
    assert ("fit_success", "yes") in rows and ("obs_ids", "1001, 1002") in rows
    assert "missing_key" not in table.group(1)
    # the summary comes before the plots, the plots before the text results
    at = {name: page.index(f'data-name="{name}"') for name in ("spectrum_preview", "fit_log")}
    assert page.index("summary-fit_result") < at["spectrum_preview"] < at["fit_log"]
    # the PNG is an image; the FITS result a quick-look image; long text folded
    base = ui(job)
    assert f'<img src="{base}/results/spectrum_preview"' in page
    assert f'<img src="{base}/quicklook/counts_map"' in page
    assert re.search(r'<details class="long-text"><summary>Show the text \(6\d lines', page)
    png = alice.get(f"{base}/quicklook/counts_map")
    assert png.status_code == 200 and png.headers["Content-Type"] == "image/png"
    assert png.content.startswith(b"\x89PNG")
    # cached: the second answer is the same file, at once
    t0 = time.monotonic()
    assert alice.get(f"{base}/quicklook/counts_map").content == png.content
    assert time.monotonic() - t0 < 2
    # not a FITS result: a 400 that says so
    r = alice.get(f"{base}/quicklook/fit_result")
    assert r.status_code == 400 and "not a FITS file" in r.text


def test_a_bad_fits_file_gives_a_message_not_a_500(alice: Client, live: LiveServer) -> None:
    job = spectrum_job(alice)
    job_id = job.rsplit("/", 1)[1]
    fits = live.service.job_dir(job_id) / "counts_map.fits"
    fits.write_bytes(b"SIMPLE  = this is not FITS at all")
    r = alice.get(ui(job) + "/quicklook/counts_map")
    assert r.status_code == 422 and r.text.startswith("no quick-look:"), r.text
    assert "Traceback" not in r.text


def test_summary_that_is_not_json_shows_the_problem(alice: Client, live: LiveServer) -> None:
    job = spectrum_job(alice)
    job_id = job.rsplit("/", 1)[1]
    (live.service.job_dir(job_id) / "fit_result.json").write_text("[1, 2")
    page = alice.get(ui(job)).text
    assert re.search(r'class="error-box">fit_result cannot be read', page), page


def test_a_result_that_lies_about_its_type_is_only_an_image(
    alice: Client, live: LiveServer
) -> None:
    job = spectrum_job(alice)
    job_id = job.rsplit("/", 1)[1]
    # SVG with a script in place of the PNG plot: the page shows it only through <img>
    # (no script runs in an image), and the file is served as PNG with nosniff
    svg = live.service.job_dir(job_id) / "spectrum_preview.png"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')
    page = alice.get(ui(job)).text
    assert "<script>alert" not in page and "&lt;script&gt;alert" not in page
    r = alice.get(ui(job) + "/results/spectrum_preview")
    assert r.headers["Content-Type"] == "image/png"
    assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_marker_round_trips_and_opus_files_load_unchanged() -> None:
    spectra = read_votable_file(ROOT / "job_definitions" / "gammapy_spectra_vot.xml")
    fit = next(e for e in spectra.generated if e.name == "fit_result")
    assert fit.summary.startswith("index+-index_err, amplitude+-amplitude_err")
    light = read_votable_file(ROOT / "job_definitions" / "gammapy_lightcurve_vot.xml")
    assert "mean_flux+-mean_flux_err" in next(e.summary for e in light.generated if e.summary)
    assert (
        read_votable_file(ROOT / "tests" / "data" / "jdl" / "copy_job_vot.xml").generated[0].summary
        == ""
    )
    # written back: the marker survives, and a definition without it writes no PARAM
    from uws_server.jdl.votable import read_votable

    assert read_votable(write_votable(spectra)).generated[-1].summary == fit.summary
    plain = read_votable_file(ROOT / "tests" / "data" / "jdl" / "copy_job_vot.xml")
    assert b'name="summary"' not in write_votable(plain)


def test_provenance_picture_is_compact_and_clickable(alice: Client, live: LiveServer) -> None:
    first, second, third = run_chain(alice)
    for job in (first, second, third):
        wait_provenance(alice, job)
    page = alice.get(ui(second)).text
    # the stored picture in an <img> with an image map whose areas open pages
    assert f'<img src="{ui(second)}/provenance/svg"' in page
    areas = re.findall(r'<area shape="rect" coords="([\d,-]+)" href="([^"]+)"', page)
    hrefs = {h for _, h in areas}
    assert ui(second) in hrefs  # its own job box
    assert f"{ui(first)}/results/output" in hrefs  # the input, generated by the first job
    for coords, _ in areas:
        x1, y1, x2, y2 = map(int, coords.split(","))
        assert 0 <= x1 < x2 and 0 <= y1 < y2
    # the cross-job view: BACK to depth 3 draws the three jobs, FORWARD from the first too
    back = alice.get(ui(third) + "/provenance-graph", params={"direction": "BACK", "depth": "3"})
    assert back.status_code == 200
    linked = set(
        re.findall(
            r'<area shape="rect" coords="[\d,-]+" href="(/ui/jobs/copy_job/[^"/]+)"', back.text
        )
    )
    assert linked == {ui(first), ui(second), ui(third)}
    one = alice.get(ui(third) + "/provenance-graph", params={"direction": "BACK", "depth": "1"})
    assert set(re.findall(r'href="(/ui/jobs/copy_job/[^"/]+)"', one.text)) >= {ui(third)}
    assert ui(first) not in re.findall(r'<area[^>]+href="([^"]+)"', one.text)
    fwd = alice.get(
        ui(first) + "/provenance-graph", params={"direction": "FORWARD", "depth": "ALL"}
    )
    assert {ui(second), ui(third)} <= set(re.findall(r'<area[^>]+href="([^"]+)"', fwd.text))
    # the picture comes with the page (a data: URI in an <img>), and through /ui/provsap
    assert 'src="data:image/svg+xml;base64,' in back.text
    svg_link = unescape(
        re.search(
            r'id="chain-svg" href="([^"]+)"|href="([^"]+)" class="small" id="chain-svg"', back.text
        ).group(2)
    )
    svg = alice.get(svg_link)
    assert svg.status_code == 200 and svg.headers["Content-Type"].startswith("image/svg+xml")
    assert "sandbox" in svg.headers["Content-Security-Policy"]
    nodes = etree.fromstring(svg.content).findall(".//{http://www.w3.org/2000/svg}g[@class='node']")
    assert len(nodes) == 3 + 4  # three jobs, the seed and three outputs: no parameter nodes
    # bad input: clear 400s
    assert alice.get(ui(third) + "/provenance-graph", params={"direction": "UP"}).status_code == 400
    assert alice.get(ui(third) + "/provenance-graph", params={"depth": "99"}).status_code == 400


def test_cross_job_view_stops_at_other_owners(alice: Client, bob: Client) -> None:
    first, second, _third = run_chain(alice)
    wait_provenance(alice, second)
    assert bob.get(ui(second) + "/provenance-graph").status_code == 404
    assert bob.get("/ui/provsap", params={"ID": second.rsplit("/", 1)[1]}).status_code == 404


def test_ui_href_keeps_only_this_service() -> None:
    base = "http://svc.example/uws"
    assert ui_href("http://svc.example/uws/rest/copy_job/abc", base) == "/ui/jobs/copy_job/abc"
    assert (
        ui_href("http://svc.example/uws/rest/copy_job/abc/results/out%20put", base)
        == "/ui/jobs/copy_job/abc/results/out%20put"
    )
    assert ui_href("http://evil.example/uws/rest/copy_job/abc", base) is None
    assert ui_href("javascript:alert(1)", base) is None
    assert ui_href("http://svc.example/uws/other/x", base) is None
    assert graph_view(b"not xml", base).areas == []


def test_run_again_prefills_the_form(alice: Client) -> None:
    job = alice.create("echo_job", {"text": "again & again", "n": "7", "runid": "r-42"})
    page = alice.get(ui(job)).text
    link = unescape(re.search(r'<a href="([^"]+)" class="button" id="run-again"', page).group(1))
    assert link.startswith("/ui/submit/echo_job?")
    form = unescape(alice.get(link).text)
    assert re.search(r'name="text"[^>]*value="again & again"', form), form
    assert re.search(r'name="n"[^>]*value="7"', form)
    assert 'value="r-42"' in form


@pytest.mark.parametrize(("value", "status"), [("9", 303), ("not a number", 400)])
def test_pending_job_parameters_edited_on_its_page(alice: Client, value: str, status: int) -> None:
    job = alice.create("echo_job", {"text": "before", "n": "1"})
    page = alice.get(ui(job)).text
    assert 'id="edit-parameters"' in page
    csrf = re.search(r'name="_csrf" value="([^"]*)"', page).group(1)
    r = alice.post(ui(job) + "/parameters", data={"_csrf": csrf, "n": value, "text": "after"})
    assert r.status_code == status, r.text
    params = alice.get(job + "/parameters").text
    if status == 303:
        assert "?msg=parameters" in r.headers["Location"]
        assert re.search(r'id="n"[^>]*>9<', params) and "after" in params
    else:
        assert "n" in r.text and "before" in params  # nothing changed
    # once it has run, the page offers no editing and the route refuses
    alice.post(job + "/phase", data={"PHASE": "RUN"})
    alice.wait_final(job)
    assert 'id="edit-parameters"' not in alice.get(ui(job)).text
    r = alice.post(ui(job) + "/parameters", data={"_csrf": csrf, "n": "3"})
    assert r.status_code == 409 and "only while PENDING" in r.text


@pytest.mark.parametrize(
    ("summary", "problem"),
    [
        ("index+-index_err, significance", None),
        ("index+-a+-b", "'index+-a+-b' is not a key or a key+-error_key pair"),
        ("in dex", "'in dex' is not a key or a key+-error_key pair"),
        ("a," * 600, "must be text of at most 1000 characters"),
    ],
)
def test_summary_marker_is_validated(summary: str, problem: str | None) -> None:
    from uws_server.jdl.validate import validate

    defn = read_votable_file(ROOT / "tests" / "data" / "jdl" / "spectrum_job_vot.xml")
    defn.generated[1].summary = summary
    problems = [r for f, r in validate(defn) if f == "generated[1].summary"]
    assert problems == ([problem] if problem else [])
