"""The built page in headless Chromium (Debian's package): banners, states, stale warning."""

import functools
import re
import threading
from datetime import timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from freshet.core.settings import Settings
from freshet.gcp.storage import LocalSink
from freshet.gcp.store import Store
from freshet.status.publish import publish_once

from .builders import NOW, SECRET
from .seed import seed_pipeline

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason="needs Debian's chromium: apt-get install -y chromium"),
]


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _served(db, folder, seed):
    """Seed the store, publish the site to `folder`, serve it on a free port."""
    store = Store(db)
    seed(store)
    publish_once(store, LocalSink(folder), now=NOW, settings=Settings(page_stale_after_s=900),
                 environ={})
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


@pytest.fixture
def site(db, tmp_path):
    """The seeded pipeline published to a folder, served by a local static server."""
    server, url = _served(db, tmp_path, seed_pipeline)
    yield url
    server.shutdown()
    server.server_close()


@pytest.fixture
def browser(tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, args=FLAGS, headless=True,
            viewport={"width": 1280, "height": 900})
        yield context
        context.close()


def test_page_shows_banners_and_states_of_the_seeded_pipeline(site, browser):
    page = browser.new_page()
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.clock.install(time=(NOW + timedelta(minutes=2)).timestamp())
    page.goto(site)
    assert page.title() == "Ad Performance cannot be trusted · Freshet status"
    banners = page.locator("#consumers .banner")
    assert banners.count() == 3
    first = banners.nth(0).inner_text()
    assert "Ad Performance — data is 27 h old (needs < 26 h); the last 3 syncs failed:" in first
    assert "<script>alert(1)</script>" in first  # shown as text, never run
    assert "Error" in first
    assert "built from stale upstream data: meta.ads" in banners.nth(1).inner_text()
    assert "At risk" in banners.nth(1).inner_text()
    assert "Fresh" in banners.nth(2).inner_text()
    assert page.locator("#d-meta\\.ads .chip").inner_text() == "Error"
    assert page.locator("#d-ads\\.daily .chip").inner_text() == "At risk"
    assert page.locator("#j-meta_sync .chip").inner_text() == "failed"
    assert "1 stuck recovery" in page.locator("#j-meta_sync").inner_text()
    assert page.locator("#page-stale").is_hidden()
    assert SECRET not in page.content()
    assert dialogs == []  # the hostile alert(1) payloads never ran
    for landmark in ("header", "nav", "main", "footer"):
        assert page.locator(landmark).count() == 1
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "status-page.png"), full_page=True)


def test_page_warns_when_it_has_not_been_rebuilt_in_time(site, browser):
    page = browser.new_page()
    page.clock.install(time=(NOW + timedelta(minutes=5)).timestamp())
    page.goto(site)
    assert page.locator("#page-stale").is_hidden()
    page.clock.fast_forward("02:00:00")  # two hours without a rebuild
    warning = page.locator("#page-stale")
    warning.wait_for(state="visible")
    assert "This page is out of date" in warning.inner_text()
    assert "2 h 5 min ago" in warning.inner_text()
    assert warning.get_attribute("role") == "alert"


def test_a_consumers_page_judges_freshet_alive_by_its_heartbeat_not_its_own_age(
        db, tmp_path, browser):
    """A consumer's page is rebuilt when its states change: while heartbeat.json says
    Freshet publishes, an older page is no cause for alarm; when the heartbeat stops,
    the page says so within the page's stale window."""
    import json

    server, url = _served(db, tmp_path, seed_pipeline)
    try:
        page = browser.new_page()
        page.clock.install(time=(NOW + timedelta(minutes=5)).timestamp())
        page.goto(url + "consumers/sales.html")
        warning = page.locator("#page-stale")
        assert warning.is_hidden()
        # Publishes go on for 50 minutes (the page itself is not rebuilt): no alarm.
        beat = {"generated_at": (NOW + timedelta(minutes=55)).isoformat()}
        (tmp_path / "heartbeat.json").write_text(json.dumps(beat))
        page.clock.fast_forward("00:50:00")
        page.wait_for_timeout(500)  # the heartbeat's fetch
        assert warning.is_hidden()
        # Then they stop: 16 minutes later (the window is 15), the page says so.
        page.clock.fast_forward("00:16:00")
        warning.wait_for(state="visible")
        assert "Freshet last published 16 min ago" in warning.inner_text()
    finally:
        server.shutdown()
        server.server_close()


def test_page_is_readable_on_a_phone(site, browser):
    page = browser.new_page()
    page.set_viewport_size({"width": 390, "height": 844})
    page.clock.install(time=(NOW + timedelta(minutes=2)).timestamp())
    page.goto(site)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "status-page-phone.png"), full_page=True)


def test_a_script_url_in_the_stored_catalog_cannot_run_when_clicked(db, tmp_path, browser):
    """The catalog document may predate the config's check (or be written by hand)."""
    from freshet.core.catalog import Catalog, Consumer, DatasetSpec

    from .builders import requirement

    store = Store(db)
    urls = ["javascript:alert(document.domain)", " JaVaScRiPt:alert(1)",
            "\tjava\nscript:alert(2)", "data:text/html,<script>alert(3)</script>"]
    store.put_catalog_doc(Catalog(
        datasets={"a": DatasetSpec("a", "A")},
        consumers=tuple(Consumer(f"c{i}", f"Consumer {i}", url=url,
                                 requires=(requirement("a"),)) for i, url in enumerate(urls)),
    ).to_doc())
    publish_once(store, LocalSink(tmp_path), now=NOW, settings=Settings())
    handler = functools.partial(QuietHandler, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page = browser.new_page()
        dialogs = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
        for i in range(len(urls)):
            page.get_by_text(f"Consumer {i}", exact=True).click()
        page.wait_for_timeout(200)
        assert dialogs == []
        assert page.evaluate("document.querySelectorAll('a[href]').length") > 0
        assert page.evaluate("[...document.querySelectorAll('a[href]')].every("
                             "a => ['http:', 'https:'].includes(a.protocol))")
        assert page.url.startswith("http://127.0.0.1")
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def trust_site(db, tmp_path):
    """seed_trust: stale data, a deadline with 90 days of verdicts, maintenance under way,
    incidents, routes and a kill switch."""
    from .seed import seed_trust

    server, url = _served(db, tmp_path, seed_trust)
    yield url
    server.shutdown()
    server.server_close()


def test_page_shows_maintenance_incident_and_kill_switch_banners_and_attainment(trust_site,
                                                                              browser):
    page = browser.new_page()
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.clock.install(time=(NOW + timedelta(minutes=2)).timestamp())
    page.goto(trust_site)
    notices = page.locator("#notices .banner")
    assert notices.count() == 3
    kill = page.locator("#kill-switch").inner_text()
    assert "Kill switch on:" in kill and "Reason: vendor API rate limits" in kill
    maintenance = page.locator("#maintenance-crm-upgrade").inner_text()
    assert "Maintenance: CRM vendor upgrade" in maintenance
    assert "until 2026-11-28 13:00 UTC" in maintenance
    assert re.search(r"\(in 5[78] min\)", maintenance)  # the page's clock runs on
    incident = page.locator("#notices .incident")
    text = incident.inner_text()
    assert "Meta ads API outage" in text and "ETA 2026-11-28 14:00 UTC" in text
    notes = incident.locator(".notes li")
    assert notes.count() == 2
    assert "Meta confirmed the outage" in notes.nth(0).inner_text()  # newest first
    assert "bob@example.com" in notes.nth(0).inner_text()
    revenue = page.locator("#c-revenue")
    assert revenue.locator(".chip").inner_text() == "Maintenance"
    attainment = revenue.locator(".attainment")
    assert attainment.get_attribute("data-90d") == "0.9"
    assert attainment.locator("strong").inner_text() == "90%"
    assert "90% of deadlines over 90 days, 90% over 30" in attainment.inner_text()
    assert "81 met, 9 missed, 0 excused" in revenue.inner_text()
    events = page.locator("#c-events-team").inner_text()
    assert "Stale data" in events
    assert "synced 2 min ago, but the data is as of yesterday 23:00 UTC" in events
    assert "data as of 2026-11-27 23:00 UTC" in page.locator("#d-web\\.events").inner_text()
    assert "Incident: Meta ads API outage" in page.locator("#c-ad-performance").inner_text()
    footer = page.locator("#alerts").inner_text()
    assert re.search(r"growth-slack \(slack\) delivered 2[12] min ago", footer)
    assert re.search(r"ops-hook \(webhook\) failed [67] min ago: HTTP 503: try later", footer)
    resolved = page.locator("#incidents .incident-list > li").nth(1)
    assert "CRM export duplicated rows" in resolved.inner_text()
    assert dialogs == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "status-page-trust.png"), full_page=True)


def test_ages_in_words_are_kept_current_by_the_browser_on_a_page_not_rebuilt(
        db, tmp_path, browser):
    """Pages are not rebuilt while their states hold (an idle publish writes only
    heartbeat.json): the ages they show in words move with the reader's clock."""
    server, url = _served(db, tmp_path, seed_pipeline)  # crm.accounts: 30 min old at NOW
    try:
        page = browser.new_page()
        page.clock.install(time=(NOW + timedelta(minutes=5)).timestamp())
        page.goto(url + "consumers/sales.html")
        row = page.locator("#datasets tbody tr").filter(has_text="crm.accounts")
        # the server wrote "30 min ago"; the reader's clock says 5 minutes later
        assert re.search(r"last success 3[45] min ago", row.inner_text())
        page.clock.fast_forward("02:00:00")
        page.wait_for_function(
            "/last success 2 h 3[45] min ago/.test("
            "document.querySelector('#datasets tbody').innerText)")
        assert "Fresh" in row.inner_text()  # the state is the last publish's
        main = browser.new_page()
        main.clock.install(time=(NOW + timedelta(minutes=10)).timestamp())
        main.goto(url)
        cell = main.locator("#d-crm\\.accounts")
        assert re.search(r"last success (39|40) min ago", cell.inner_text())
    finally:
        server.shutdown()
        server.server_close()
