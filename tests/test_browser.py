"""The web pages in a real headless Chromium (Debian's ``chromium``) driven by Playwright.

Never ``playwright install``: the system browser is used. Without it these tests skip,
unless ``UWS_REQUIRE_SERVICES=1`` (the test command, CI), where they fail. Each test
also keeps a screenshot of the page it exercises under ``docs/screenshots/``.
"""

from __future__ import annotations

import gc
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Client, LiveServer, need
from uws_server.config import PROJECT_ROOT

CHROMIUM = Path("/usr/bin/chromium")
# The README's screenshots are refreshed only when asked (UWS_SCREENSHOTS=1), so that a
# test run leaves the checkout clean; otherwise they go to a temporary folder.
SHOTS = (
    PROJECT_ROOT / "docs" / "screenshots"
    if os.environ.get("UWS_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "uws-screenshots"
)
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - the package is a test dependency
    sync_playwright = None  # type: ignore[assignment]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    need(sync_playwright is not None, "the playwright Python package is not installed")
    need(CHROMIUM.exists(), f"{CHROMIUM} not found (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield b
        b.close()
    # Playwright's sync API runs on greenlets; free them here, in the thread that made
    # them, rather than whenever the collector happens to run in a server thread.
    gc.collect()


@pytest.fixture
def pages(browser: Browser) -> Iterator[Any]:
    """Opens signed-in pages, one browser context (cookie jar) per user."""
    contexts = []

    def open_as(live: LiveServer, name: str) -> Page:
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        context.set_default_timeout(15000)
        contexts.append(context)
        page = context.new_page()
        page.goto(live.base + "/ui/")
        expect(page).to_have_url(re.compile(r"/ui/login\?next="))
        page.fill("#token", live.tokens[name])
        page.click("#sign-in")
        expect(page).to_have_url(live.base + "/ui/")
        expect(page.locator("#current-user")).to_have_text(name)
        return page

    yield open_as
    for context in contexts:
        context.close()


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def watch_navigation(page: Page) -> list[str]:
    """URLs the main frame navigates to from now on (live updates must add none)."""
    navigations: list[str] = []
    page.on(
        "framenavigated",
        lambda frame: navigations.append(frame.url) if frame == page.main_frame else None,
    )
    page.evaluate("window.__stillHere = 'yes'")
    return navigations


def test_sign_in_page(browser: Browser, live: LiveServer) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 700})
    page = context.new_page()
    page.goto(live.base + "/ui/login")
    page.fill("#token", "not a token")
    page.click("#sign-in")
    expect(page.locator("#login-error")).to_have_text("Unknown token.")
    shot(page, "login")
    cookies = context.cookies()
    assert not [c for c in cookies if c["name"] == "uws_session"]
    page.fill("#token", live.tokens["alice"])
    page.click("#sign-in")
    expect(page).to_have_url(live.base + "/ui/")
    session = next(c for c in context.cookies() if c["name"] == "uws_session")
    assert session["httpOnly"] and session["sameSite"] == "Lax"
    assert page.evaluate("document.cookie").find("uws_session") == -1  # not readable by JS
    page.click("#sign-out")
    expect(page).to_have_url(live.base + "/ui/login")
    page.goto(live.base + "/ui/jobs")
    expect(page).to_have_url(re.compile(r"/ui/login\?next=%2Fui%2Fjobs"))
    context.close()


def test_submit_and_watch_job_complete(pages: Any, live: LiveServer) -> None:
    page = pages(live, "alice")
    expect(page.locator("#definitions")).to_contain_text("Job for tests, simply copies")
    shot(page, "home")
    page.click("article[data-name=test_activity_1] h2 a")
    expect(page.locator("h1")).to_have_text("test_activity_1")
    page.fill("#f-text", "Hello from Chromium")
    page.click("#create-run")
    expect(page).to_have_url(re.compile(r"/ui/jobs/test_activity_1/[\w-]+\?msg=started"))
    navigations = watch_navigation(page)
    phase = page.locator("#phase")
    assert phase.inner_text() in ("QUEUED", "EXECUTING")  # it sleeps 10 s
    expect(phase).to_have_text("EXECUTING", timeout=15000)
    expect(page.locator("#no-results")).to_be_visible()
    expect(phase).to_have_text("COMPLETED", timeout=40000)
    expect(page.locator("#results .result-link")).to_have_text("output")
    expect(page.locator("#results pre.preview")).to_contain_text("Hello from Chromium")
    expect(page.locator("#summary-phase")).to_have_text("COMPLETED")
    assert navigations == [], navigations
    assert page.evaluate("window.__stillHere") == "yes"
    # The provenance documents follow the job's end (the SVG graph last); the page picks
    # them up by itself. Their generation is not this page's job: without them the
    # section must say so.
    try:
        page.locator("#provenance-svg").wait_for(timeout=15000)
    except Exception:  # noqa: BLE001 - checked just below instead
        expect(page.locator("#provenance-links, #no-provenance").first).to_be_visible()
    else:
        expect(page.locator("#provenance-links a[data-format=svg]")).to_have_count(1)
    assert navigations == []
    shot(page, "job")
    page.click("#results .result-link")
    expect(page.locator("body")).to_contain_text("Hello from Chromium")
    assert "/results/output" in page.url


def test_out_of_range_value_shows_field_error(pages: Any, live: LiveServer) -> None:
    page = pages(live, "alice")
    page.goto(live.base + "/ui/submit/echo_job")
    expect(page.locator("#f-n")).to_have_value("1")
    expect(page.locator("#field-n .unit")).to_have_text("count")
    shot(page, "form")
    page.fill("#f-n", "500")  # the browser's own opinion, shown while typing
    expect(page.locator("#err-n")).to_contain_text("100")
    page.fill("#f-x", "7")
    page.select_option("#f-color", "green")
    page.click("#create")
    expect(page.locator("#err-n")).to_have_text("'500' is above the maximum 100")
    expect(page.locator("#err-x")).to_have_text("'7' is above the maximum 1")
    expect(page.locator("#field-n")).to_have_class(re.compile("has-error"))
    expect(page.locator("#f-n")).to_have_value("500")
    expect(page.locator("#f-color")).to_have_value("green")
    shot(page, "form_errors")
    page.fill("#f-n", "42")
    page.fill("#f-x", "0.5")
    page.click("#create")
    expect(page).to_have_url(re.compile(r"/ui/jobs/echo_job/[\w-]+\?msg=created"))
    expect(page.locator("#parameters")).to_contain_text("42")
    expect(page.locator("#phase")).to_have_text("PENDING")
    page.click("#run")
    expect(page.locator("#phase")).to_have_text("COMPLETED", timeout=20000)


def test_job_list_updates_itself(pages: Any, live: LiveServer, alice: Client) -> None:
    done = alice.create("echo_job", {"text": "first", "PHASE": "RUN", "RUNID": "calibration"})
    alice.wait_final(done)
    alice.create("echo_job", {"text": "later", "RUNID": "not started yet"})
    page = pages(live, "alice")
    page.goto(live.base + "/ui/jobs")
    expect(page.locator("#jobs-body tr")).to_have_count(2)
    navigations = watch_navigation(page)
    job = alice.create("sleep_job", {"seconds": "3", "PHASE": "RUN", "RUNID": "live one"})
    job_id = job.rsplit("/", 1)[1]
    row = page.locator(f"#jobs-body tr[data-id='{job_id}']")
    expect(row).to_be_visible(timeout=10000)
    expect(row.locator(".phase")).to_have_text(re.compile("QUEUED|EXECUTING"))
    expect(page.locator("#jobs-live")).to_have_text("updating live")
    shot(page, "jobs")
    expect(row.locator(".phase")).to_have_text("COMPLETED", timeout=30000)
    expect(page.locator("#jobs-body tr").first).to_have_attribute("data-id", job_id)
    assert navigations == [] and page.evaluate("window.__stillHere") == "yes"
    page.select_option("#phase-filter", "PENDING")
    page.click("#job-filter button")
    expect(page.locator("#jobs-body tr")).to_have_count(1)
    expect(page.locator("#jobs-body")).to_contain_text("not started yet")


def test_operator_creates_definition_scientist_runs_it(pages: Any, live: LiveServer) -> None:
    op = pages(live, "oper")
    op.click("text=Job definitions")
    expect(op).to_have_url(live.base + "/ui/jdl")
    shot(op, "definitions")
    op.click("#new-definition")
    op.fill("#e-name", "hello_web")
    op.fill("#e-description", "Greets someone, made in the web editor")
    op.fill("#e-execution_duration", "30")
    op.fill("#e-script", 'for i in $(seq "$repeat"); do echo "Hello $who"; done > hello.txt\n')
    op.click("#add-parameters")
    op.click("#add-parameters")
    rows = op.locator("#rows-parameters > .row")
    expect(rows).to_have_count(2)
    rows.nth(0).locator("[data-remove]").click()  # the other one becomes parameters[0]
    expect(rows).to_have_count(1)
    name = op.locator("#rows-parameters [name='parameters[0].name']")
    name.fill("1who")
    error = op.locator(".field-error[data-for='parameters[0].name']")
    expect(error).to_contain_text("is not a letter followed by")  # live, nothing saved
    expect(op.locator("#validation-status")).to_contain_text("problem")
    name.fill("who")
    expect(error).to_have_text("")
    op.fill("[name='parameters[0].default']", "world")
    op.fill("[name='parameters[0].description']", "Whom to greet")
    op.click("#add-parameters")
    op.fill("[name='parameters[1].name']", "repeat")
    op.select_option("[name='parameters[1].datatype']", "xs:integer")
    op.fill("[name='parameters[1].default']", "1")
    op.fill("[name='parameters[1].min']", "1")
    op.fill("[name='parameters[1].max']", "5")
    op.fill("[name='parameters[1].default']", "9")
    expect(op.locator(".field-error[data-for='parameters[1].default']")).to_have_text(
        "'9' is above the maximum 5"
    )
    op.fill("[name='parameters[1].default']", "1")
    op.click("#add-generated")
    op.fill("[name='generated[0].name']", "hello")
    op.fill("[name='generated[0].default']", "hello.txt")
    op.fill("[name='generated[0].content_type']", "text/plain")
    op.fill("[name='generated[0].description']", "The greetings")
    expect(op.locator("#validation-status")).to_have_text("✓ valid")
    expect(op.locator("#general-errors")).to_be_hidden()
    shot(op, "editor")
    op.click("#save")
    expect(op).to_have_url(live.base + "/ui/jdl/hello_web/edit?msg=created")
    expect(op.locator("#flash")).to_have_text("Job definition created.")
    assert "hello_web" in live.service.registry

    sci = pages(live, "alice")
    expect(sci.locator("article[data-name=hello_web]")).to_contain_text("made in the web editor")
    sci.click("article[data-name=hello_web] .button")
    expect(sci.locator("#f-repeat")).to_have_attribute("max", "5")
    sci.fill("#f-who", "CTAO")
    sci.fill("#f-repeat", "2")
    sci.click("#create-run")
    expect(sci.locator("#phase")).to_have_text("COMPLETED", timeout=30000)
    expect(sci.locator("#results pre.preview")).to_have_text("Hello CTAO\nHello CTAO\n")


def test_admin_page(pages: Any, live: LiveServer, bob: Client) -> None:
    bob.create("sleep_job", {"seconds": "20", "PHASE": "RUN"})
    page = pages(live, "root")
    page.click("text=Admin")
    expect(page.locator("#users tr[data-user=oper]")).to_contain_text("oper")
    expect(page.locator("#active-jobs")).to_contain_text("bob")
    shot(page, "admin")
    row = page.locator("#users tr[data-user=bob]")
    row.locator("button", has_text="Disable").click()
    expect(page.locator("#flash")).to_have_text("User disabled.")
    expect(page.locator("#users tr[data-user=bob] .status")).to_have_text("disabled")
    assert bob.get("/rest/echo_job").status_code == 403
    page.locator("#users tr[data-user=bob] button", has_text="Enable").click()
    expect(page.locator("#users tr[data-user=bob] .status")).to_have_text("enabled")
    page.locator("#users tr[data-user=alice] button", has_text="New token").click()
    token = page.locator("#token-value").inner_text()
    assert Client(live.base, token).get("/rest/echo_job").status_code == 200
    assert live.client("alice").get("/rest/echo_job").status_code == 401


# ---------------------------------------------------------------- Find data (issue 12)
def simulate_store(store: Path, work: Path) -> None:
    """Three 1-minute observations of PKS 2155-304 (obs ids 3001-3003) in a DL3 store,
    made by the project's simulate_dl3 job script as the runner would run it (its
    definition's defaults, the job environment of workers.jobdir; no service)."""
    from tests import cta_support

    defn = cta_support.definition("simulate_dl3")
    params = {p.name: p.default for p in defn.parameters if p.default}  # as the service sends
    params.update(first_obs_id="3001", n_obs="3", livetime="1", seed="3")
    done = cta_support.run_job(
        "simulate_dl3", params, work, store, env={"MPLBACKEND": "Agg"}, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def science(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server with the project's CTA job definitions over a small simulated DL3 store;
    the service catalogues the store's observations itself."""
    from tests.conftest import make_settings

    root = Path(tmp_path_factory.mktemp("find_browser"))
    simulate_store(root / "dl3", root / "simulate")
    live = LiveServer(
        make_settings(root, job_definitions_dir=PROJECT_ROOT / "job_definitions", local_slots=2)
    )
    try:
        live.add_user("alice")
        live.add_user("bob")
        yield live
    finally:
        live.stop()


def test_find_tick_analyse_runs_on_the_ticked_observations(pages: Any, science: LiveServer) -> None:
    page = pages(science, "alice")
    page.click("#nav-find")
    expect(page.locator("h1")).to_have_text("Find data")
    expect(page.locator("#results-body tr[data-obs-id='3001']")).to_be_visible()
    expect(page.locator("#analyse-gammapy_maps")).to_be_disabled()  # nothing ticked yet
    page.fill("#f-target", "PKS 2155")
    page.fill("#f-radius", "1.5")
    page.select_option("#f-type", "event")
    shot(page, "find")
    page.click("#find-search")
    expect(page.locator("#target-resolved")).to_contain_text("PKS 2155-304")
    rows = page.locator("#results-body tr")
    store_rows = page.locator("#results-body tr:has(input[name=obs_id])")
    expect(store_rows).to_have_count(3)
    assert rows.count() >= 3  # alice's own DL3 products show up too (not tickable)
    expect(page.locator("#results-body tr[data-obs-id='3001'] td.offset")).to_contain_text("°")
    # sorting by a header keeps the search
    page.click("th a[data-sort=obs_id]")
    expect(page.locator("th.sorted a")).to_contain_text("Obs id ▲")
    expect(page.locator("#target-resolved")).to_contain_text("PKS 2155-304")
    ticked = ["3001", "3003"]
    for obs_id in ticked:
        page.check(f"#results-body input[name=obs_id][value='{obs_id}']")
    expect(page.locator("#selected-count")).to_have_text("2 selected")
    expect(page.locator("#analyse-gammapy_maps")).to_be_enabled()
    shot(page, "find_results")
    page.click("#analyse-gammapy_maps")
    expect(page).to_have_url(re.compile(r"/ui/submit/gammapy_maps\?obs_ids=3001\+3003&RA="))
    for obs_id in ("3001", "3002", "3003"):
        box = page.locator(f"#pick-obs_ids-{obs_id}")
        (expect(box).to_be_checked if obs_id in ticked else expect(box).not_to_be_checked)()
    expect(page.locator("#picked-obs_ids")).to_have_text("2 ticked")
    # the search position: the target's position as the catalogue knows it (the mean
    # pointing of its observations, which wobble 0.5 deg around the source)
    assert abs(float(page.locator("#f-RA").input_value()) - 329.717) < 0.6
    assert abs(float(page.locator("#f-Dec").input_value()) + 30.226) < 0.6
    page.fill("#f-nxpix", "20")
    page.fill("#f-nypix", "20")
    page.fill("#f-binsz", "0.1")
    shot(page, "analyse_form")
    page.click("#create-run")
    expect(page).to_have_url(re.compile(r"/ui/jobs/gammapy_maps/[\w-]+\?msg=started"))
    expect(page.locator("#phase")).to_have_text("COMPLETED", timeout=120000)
    job_id = page.url.split("?")[0].rsplit("/", 1)[1]
    alice = science.client("alice")
    value = alice.get(f"/rest/gammapy_maps/{job_id}/parameters/obs_ids").text
    assert sorted(value.split()) == ticked
    # the new maps are alice's products (catalogued by the job's final hook, which runs
    # just after the phase changes): in her search, never in bob's
    from uws_server.models import User
    from uws_server.vo.routes import catalogue_for

    owner = science.service.store.user_by_name("alice")
    assert isinstance(owner, User)
    deadline = time.monotonic() + 30
    while not catalogue_for(science.service).search(owner, obs_collection="gammapy_maps").total:
        assert time.monotonic() < deadline, "the maps were never catalogued"
        time.sleep(0.2)
    mine = pages(science, "alice")
    mine.goto(science.base + "/ui/find?collection=gammapy_maps")
    expect(mine.locator("#results-body tr").first).to_contain_text("(yours)")
    assert job_id in mine.locator("#results-body").inner_html()
    other = pages(science, "bob")
    other.goto(science.base + "/ui/find?collection=gammapy_maps")
    expect(other.locator("#no-results")).to_be_visible()


def test_find_selection_survives_new_searches(pages: Any, science: LiveServer) -> None:
    page = pages(science, "alice")
    page.goto(science.base + "/ui/find?obs_ids=3001")
    page.check("#results-body input[name=obs_id][value='3001']")
    page.goto(science.base + "/ui/find?obs_ids=3002")  # another search, no 3001 on it
    expect(page.locator("#selected-count")).to_have_text("1 selected (1 on other pages)")
    page.check("#results-body input[name=obs_id][value='3002']")
    expect(page.locator("#selected-count")).to_have_text("2 selected (1 on other pages)")
    page.click("#analyse-gammapy_spectra")
    expect(page).to_have_url(re.compile(r"/ui/submit/gammapy_spectra\?obs_ids=3002\+3001$"))
    expect(page.locator("#pick-obs_ids-3001")).to_be_checked()
    expect(page.locator("#pick-obs_ids-3002")).to_be_checked()
    page.goto(science.base + "/ui/find?obs_ids=3001")  # the selection went with the form
    expect(page.locator("#selected-count")).to_have_text("0 selected")
    page.check("#results-body input[name=obs_id][value='3001']")
    page.click("#clear-selection")
    expect(page.locator("#selected-count")).to_have_text("0 selected")
    expect(page.locator("#results-body input[name=obs_id][value='3001']")).not_to_be_checked()
    expect(page.locator("#analyse-gammapy_spectra")).to_be_disabled()


def test_job_page_live_progress_and_log(pages: Any, tmp_path: Path) -> None:
    """A running job's page: the progress bar, its message, elapsed time and expected
    end, and the stdout tail move while it runs, without reloading the page (issue 13)."""
    from tests.test_progress import progress_server

    server = progress_server(tmp_path)
    try:
        alice = server.client("alice")
        job = alice.create("progress_job", {"pause": "2.5", "PHASE": "RUN"})
        job_id = job.rsplit("/", 1)[1]
        page = pages(server, "alice")
        page.goto(f"{server.base}/ui/jobs/progress_job/{job_id}")
        navigations = watch_navigation(page)
        expect(page.locator("#live-message")).to_contain_text("step 2 of 3", timeout=20000)
        expect(page.locator("#live-percent")).to_have_text("60 %")
        assert float(page.locator("#live-bar").get_attribute("value") or 0) == 0.6
        expect(page.locator("#stdout")).to_contain_text("step 2 of 3")
        expect(page.locator("#stderr")).to_contain_text("warning 2")
        assert page.locator("#live-elapsed").inner_text() != "—"
        expect(page.locator("#live-expected")).to_contain_text("Z")
        shot(page, "job_live")
        expect(page.locator("#phase")).to_have_text("COMPLETED", timeout=30000)
        expect(page.locator("#live-percent")).to_have_text("100 %")
        expect(page.locator("#live-message")).to_be_hidden()  # no stale message
        assert navigations == [], navigations
    finally:
        server.stop()


# ---------------------------------------------------------------- issue 13, items 3-5
def _area_point(page: Page, img: str, href: str) -> tuple[float, float]:
    """Where on the screen the centre of an image-map area is, after zoom and pan."""
    return page.evaluate(
        """([img, href]) => {
          const im = document.querySelector(img);
          const a = Array.from(document.querySelectorAll('area'))
            .find((x) => x.getAttribute('href') === href);
          const [x1, y1, x2, y2] = a.coords.split(',').map(Number);
          const r = im.getBoundingClientRect();
          const k = r.width / im.width;
          return [r.left + ((x1 + x2) / 2) * k, r.top + ((y1 + y2) / 2) * k];
        }""",
        [img, href],
    )


def test_provenance_chain_compact_zoom_pan_and_links(
    pages: Any, live: LiveServer, alice: Client
) -> None:
    """The cross-job view of a chain fits a 1,280 px window, zooms, pans, and its job
    boxes open their pages (screenshot: provenance_chain)."""
    from tests.test_provenance_api import run_chain
    from tests.test_web_results import ui, wait_provenance

    chain = run_chain(alice)
    for job in chain:
        wait_provenance(alice, job)
    page = pages(live, "alice")
    page.goto(live.base + ui(chain[2]))
    graph = page.locator("#provenance-svg")
    expect(graph).to_be_visible()
    page.select_option("#cross-job select[name=depth]", "ALL")
    page.click("#cross-job button")
    expect(page).to_have_url(re.compile(r"/provenance-graph\?direction=BACK&depth=ALL"))
    img = page.locator("#chain-graph")
    expect(img).to_be_visible()
    page.wait_for_function("document.querySelector('.graph-view').classList.contains('live')")
    box = img.bounding_box()
    port = page.locator("#chain .graph-port").bounding_box()
    assert box and port and box["width"] <= port["width"] + 1  # fit to width
    assert page.locator("#chain area").count() >= 6  # 3 jobs + their files
    shot(page, "provenance_chain")
    # zoom in: bigger; fit: back to the width
    page.click("#chain [data-zoom=in]")
    assert img.bounding_box()["width"] > box["width"] * 1.2
    page.click("#chain [data-zoom=fit]")
    assert abs(img.bounding_box()["width"] - box["width"]) < 2
    # pan: a drag moves the picture and is not a click
    start = img.bounding_box()
    page.mouse.move(port["x"] + 20, port["y"] + 20)
    page.mouse.down()
    page.mouse.move(port["x"] + 120, port["y"] + 60, steps=5)
    page.mouse.up()
    assert img.bounding_box()["x"] > start["x"] + 50
    assert "/provenance-graph" in page.url
    # a click on the first job's box opens its page
    page.click("#chain [data-zoom=fit]")
    x, y = _area_point(page, "#chain-graph", ui(chain[0]))
    page.mouse.click(x, y)
    expect(page).to_have_url(live.base + ui(chain[0]))


def test_spectrum_results_summary_plots_quicklook(
    pages: Any, live: LiveServer, alice: Client
) -> None:
    """Key numbers on top, the plot and the FITS quick-look as images, long text folded
    (screenshot: results)."""
    from tests.test_web_results import spectrum_job, ui, wait_provenance

    job = spectrum_job(alice, index="2.63", target="Crab Nebula")
    wait_provenance(alice, job)
    page = pages(live, "alice")
    # not until "load": that waits for the quick-looks, drawn when first asked for (at
    # nice 10, over 15 s on a loaded CI machine); they get their own wait below
    page.goto(live.base + ui(job), wait_until="domcontentloaded")
    table = page.locator("#summary-fit_result table.numbers")
    expect(table).to_contain_text("2.63 ± 0.0812")
    expect(table).to_contain_text("significance")
    for name in ("spectrum_preview", "counts_map"):
        image = page.locator(f"figure[data-name={name}] img")
        page.wait_for_function(
            "(el) => el.complete && el.naturalWidth > 0", arg=image.element_handle(), timeout=90000
        )
        expect(image).to_be_visible()
    long_text = page.locator("div[data-name=fit_log] details.long-text")
    expect(long_text).not_to_have_attribute("open", "")
    expect(long_text.locator("pre")).to_be_hidden()
    page.set_viewport_size({"width": 1280, "height": 1000})
    page.locator("#results").scroll_into_view_if_needed()
    page.locator("#results").screenshot(path=str(_shot_path("results")))
    long_text.locator("summary").click()
    expect(long_text.locator("pre")).to_contain_text("iteration 59")


def _shot_path(name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS / f"{name}.png"


def test_paged_job_list_sort_filter_actions(pages: Any, live: LiveServer, alice: Client) -> None:
    """45 jobs on pages of 20, sorted by a header, a row's Run returns to the same page
    (screenshot: jobs_paged)."""
    ids = []
    for i in range(45):
        job = alice.create("echo_job", {"text": f"t{i}", "RUNID": f"obs-{1001 + i % 9}"})
        ids.append(job.rsplit("/", 1)[1])
    done = alice.create("echo_job", {"text": "done", "PHASE": "RUN", "RUNID": "finished"})
    alice.wait_final(done)
    page = pages(live, "alice")
    page.goto(live.base + "/ui/jobs?size=20")
    expect(page.locator("#jobs-count")).to_have_text("46 jobs · page 1 of 3")
    expect(page.locator("#jobs-body tr")).to_have_count(20)
    page.click("#page-next")
    expect(page.locator("#jobs-count")).to_have_text("46 jobs · page 2 of 3")
    page.click("th a[data-sort=run_id]")
    expect(page).to_have_url(re.compile(r"sort=run_id"))
    runs = page.locator("#jobs-body tr td:nth-child(4)").all_inner_texts()
    assert runs == sorted(runs, reverse=True) and runs[0] == "obs-1009"
    page.click("th a[data-sort=run_id]")  # the same header again: the other way
    expect(page.locator("th a[data-sort=run_id]")).to_have_class("sorted asc")
    runs = page.locator("#jobs-body tr td:nth-child(4)").all_inner_texts()
    assert runs == sorted(runs) and runs[0] == "finished"
    row = page.locator(f"#jobs-body tr[data-id='{ids[0]}']")
    if row.count() == 0:
        page.goto(live.base + "/ui/jobs?size=20&sort=created&order=asc")
        row = page.locator(f"#jobs-body tr[data-id='{ids[0]}']")
    list_url = page.url
    shot(page, "jobs_paged")
    row.locator("button[data-action=run]").click()
    expect(page.locator("#flash")).to_have_text("Job started.")
    assert page.url.split("&msg=")[0] == list_url
    expect(page.locator(f"#jobs-body tr[data-id='{ids[0]}'] .phase")).to_have_text(
        "COMPLETED", timeout=20000
    )
