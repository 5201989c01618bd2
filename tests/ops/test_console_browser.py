"""The operator console in headless Chromium (Debian's package), against the Firestore
emulator: every screen and every action clicked through, a screenshot of each screen
in test-artifacts/, hostile text shown inert, refusals in words, forged POSTs refused."""

import re
import threading
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from werkzeug.serving import make_server

from freshet.core.timeutil import utcnow
from freshet.gcp.certs import CertCache
from freshet.gcp.store import Store
from freshet.ops.console import InProcessApi, create_app
from freshet.ops.deps import Deps
from tests.ops.console_seed import SETTINGS, seed_console
from tests.status.test_browser import ARTIFACTS, CHROMIUM, FLAGS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason="needs Debian's chromium: apt-get install -y chromium"),
]


@pytest.fixture(scope="module")
def console(firestore_emulator):
    """The console on a free loopback port over a freshly seeded emulator."""
    from google.cloud import firestore

    firestore_emulator.wipe()
    client = firestore.Client(project=firestore_emulator.project)
    store = Store(client)
    queue = seed_console(store, utcnow())
    deps = Deps(settings=SETTINGS, store=store, task_queue=queue,
                certs=CertCache("http://127.0.0.1:9/unused"))
    server = make_server("127.0.0.1", 0, None, threaded=True)
    port = server.server_port
    server.app = create_app(InProcessApi(deps, "ana@example.com"), port=port,
                            csrf_token="test-token")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{port}", store, queue
    server.shutdown()
    server.server_close()
    client.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("profile")), executable_path=CHROMIUM, args=FLAGS,
            headless=True, viewport={"width": 1280, "height": 900})
        yield context
        context.close()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"console-{name}.png"), full_page=True)


def notice(page) -> str:
    return page.locator("#notice").inner_text()


def test_an_operator_clicks_through_every_screen_and_action(console, browser):
    base, store, queue = console
    page = browser.new_page()
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    # Overview: failures first, the hostile error shown as text, bidi override visible.
    response = page.goto(base + "/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert page.locator("script:not([src])").count() == 0
    rows = page.locator("#jobs tbody tr")
    assert rows.nth(0).get_attribute("id") == "j-rates" and rows.count() == 2
    error_cell = rows.nth(0).locator(".err").inner_text()
    assert "<script>alert(1)</script>" in error_cell and "\ufffdgnp.exe\ufffd" in error_cell
    assert "\u202e" not in page.content()
    shot(page, "overview")
    page.select_option("#f-state", "failing")
    page.click("form.filters button[type=submit]")
    assert page.locator("#jobs tbody tr").count() == 1
    page.fill("#f-q", "ORD")
    page.select_option("#f-state", "")
    page.click("form.filters button[type=submit]")
    assert [r.get_attribute("id") for r in page.locator("#jobs tbody tr").all()] == ["j-orders"]

    # Job: run now, pause without a reason, with one, resume.
    page.click("#j-orders a.name")
    assert page.locator("#job-h").inner_text().startswith("orders")
    page.click("#run-now")
    assert "queued" in notice(page)
    page.fill("#pause-reason", "   ")
    page.click("#pause")
    assert notice(page) == "Not done: reason: is required: say why (it is shown to everyone)"
    assert store.job("orders").status == "active"
    page.fill("#pause-reason", "vendor outage <b>bold</b>")
    page.fill("#pause-until", "2h")
    page.click("#pause")
    assert notice(page) == "Job orders paused."
    banner = page.locator("#paused-banner").inner_text()
    assert "vendor outage <b>bold</b>" in banner
    assert re.search(r"resumes by itself in (2 h|1 h 59 min) \(", banner)
    job = store.job("orders")
    assert job.paused_by == "ana@example.com" and job.paused_until is not None
    shot(page, "job")
    page.goto(base + "/?state=paused")
    assert "vendor outage" in page.locator("#j-orders .paused-reason").inner_text()
    page.click("#j-orders a.name")
    page.click("#resume")
    assert notice(page) == "Job orders resumed." and store.job("orders").status == "active"

    # Backfill: the dry run's slots first, then Confirm.
    start = (utcnow() - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    page.fill("#bf-from", start.isoformat())
    page.fill("#bf-to", (start + timedelta(minutes=45)).isoformat())
    page.click("#backfill-preview")
    assert "4 would run" in page.locator("#bf-summary").inner_text()
    assert page.locator("#bf-slots li").count() == 4
    assert store.recent_backfills(job_id="orders") == []  # nothing yet
    shot(page, "backfill-preview")
    page.click("#backfill-confirm")
    assert "started: 4 slot(s)" in notice(page)

    # Cancel the queued run from the job's runs.
    queued = [r for r in store.recent_runs(job_id="orders") if r.trigger_source == "schedule"]
    page.click(f"[aria-label='Cancel run {queued[0].id}']")
    assert notice(page) == f"Run {queued[0].id} cancelled."
    assert store.run(queued[0].id).status == "cancelled"

    # Runs: retry both failed runs with one confirmation that says how many.
    page.goto(base + "/runs?state=failed")
    boxes = page.locator("input.select")
    assert boxes.count() == 2
    page.check("#select-all")
    assert page.locator("#bulk-retry").inner_text() == "Retry 2 failed run(s)"
    page.click("#bulk-retry")
    assert page.locator("#confirm-h").inner_text() == "Retry 2 run(s)?"
    shot(page, "runs-confirm")
    page.click("#confirm")
    assert notice(page) == "2 of 2 run(s) retried."
    retried = [r for r in store.recent_runs(job_id="rates") if r.trigger_source == "retry"]
    assert len(retried) == 2 and {r.status for r in retried} == {"queued"}
    # and cancel the queued ones (the retries), again with one confirmation
    page.goto(base + "/runs?state=queued&job_id=rates")
    page.check("#select-all")
    page.click("#bulk-cancel")
    assert page.locator("#confirm-h").inner_text() == "Cancel 2 run(s)?"
    page.click("#confirm")
    assert notice(page) == "2 of 2 run(s) cancelled."
    page.goto(base + "/runs")
    shot(page, "runs")

    # Datasets and consumers: lineage as links.
    page.goto(base + "/datasets")
    revenue = page.locator("#d-sales\\.revenue")
    assert "sales.orders" in revenue.locator(".lineage").inner_text()
    assert page.locator("#c-dashboard").count() == 1
    page.click("#d-sales\\.revenue .lineage a[href='#d-sales.orders']")
    assert page.url.endswith("#d-sales.orders")
    shot(page, "datasets")

    # Incidents and maintenance: open, note, resolve; start a window now, end it.
    page.goto(base + "/incidents")
    assert "nightly-vacuum" in page.locator("#windows").inner_text()
    page.fill("#inc-title", "Bank feed down")
    page.click("#incident-open")
    assert notice(page) == "Incident opened."
    incident = page.locator("#incidents li").first
    incident.locator("input[name=text]").first.fill("vendor says 2 h")
    incident.get_by_role("button", name="Add note").click()
    assert notice(page) == "Note added."
    page.fill("#mw-minutes", "30")
    page.fill("#mw-note", "warehouse failover")
    page.click("#window-start")
    assert notice(page) == "Maintenance window started."
    assert "warehouse failover" in page.locator("#windows").inner_text()
    shot(page, "incidents")
    page.get_by_role("button", name="Resolve").click()
    assert notice(page) == "Incident resolved."
    page.locator("#windows button").first.click()
    assert notice(page) == "Maintenance window ended."

    # A kill switch: the refusal is a sentence, and nothing ran.
    store.set_control({"manual_actions_enabled": False, "reason": "bank migration"})
    page.goto(base + "/jobs/orders")
    before = len(store.recent_runs(job_id="orders", limit=100))
    page.click("#run-now")
    assert notice(page).startswith("Not done: a kill switch is on (manual actions are "
                                   "switched off by a kill switch (bank migration))")
    assert len(store.recent_runs(job_id="orders", limit=100)) == before
    store.set_control({"manual_actions_enabled": True, "reason": ""})
    assert dialogs == [] and errors == []


def test_every_control_is_labelled_and_the_keyboard_reaches_the_content(console, browser):
    base, _, _ = console
    page = browser.new_page()
    for path in ("/", "/jobs/orders", "/runs", "/incidents"):
        page.goto(base + path)
        unlabelled = page.evaluate("""() => [...document.querySelectorAll(
            'input:not([type=hidden]), select, textarea, button')].filter(e =>
            !(e.labels && e.labels.length) && !e.getAttribute('aria-label') &&
            !e.textContent.trim() && !e.hidden).map(e => e.outerHTML)""")
        assert unlabelled == [], path
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.goto(base + "/jobs/orders")
    page.focus("#pause-reason")
    page.keyboard.type("keyboard only")
    page.keyboard.press("Enter")  # submits its form
    assert notice(page) == "Job orders paused."
    page.click("#resume")


def test_a_post_without_the_token_or_from_another_origin_is_refused(console):
    base, store, _ = console
    before = len(store.recent_runs(job_id="orders", limit=100))
    origin = {"Origin": base}
    no_token = requests.post(base + "/jobs/orders/run", data={"key": "x"}, headers=origin,
                             allow_redirects=False, timeout=10)
    assert no_token.status_code == 403 and "security token" in no_token.text
    elsewhere = requests.post(base + "/jobs/orders/run", data={"key": "x", "csrf": "test-token"},
                              headers={"Origin": "http://evil.example"},
                              allow_redirects=False, timeout=10)
    assert elsewhere.status_code == 403 and "Origin" in elsewhere.text
    no_origin = requests.post(base + "/jobs/orders/run", data={"csrf": "test-token"},
                              allow_redirects=False, timeout=10)
    assert no_origin.status_code == 403
    rebound = requests.get(base + "/", headers={"Host": "evil.example"}, timeout=10)
    assert rebound.status_code == 421  # a DNS-rebinding page reads nothing
    assert len(store.recent_runs(job_id="orders", limit=100)) == before
    fine = requests.post(base + "/jobs/orders/run", data={"key": "y", "csrf": "test-token"},
                         headers=origin, allow_redirects=False, timeout=10)
    assert fine.status_code == 303
