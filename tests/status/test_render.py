"""Renderings: hostile text is escaped everywhere, secrets appear nowhere, json meets its schema."""

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest

from freshet.core.catalog import Pool
from freshet.core.control import Control
from freshet.core.models import new_job
from freshet.core.settings import Settings
from freshet.status.changes import Memory, detect_changes, remember
from freshet.status.model import badge_path, build_model
from freshet.status.render import render_site

from .builders import (
    HOSTILE,
    MIN,
    NOW,
    SECRET,
    H,
    catalog,
    consumer,
    job,
    model,
    requirement,
    synced,
)
from .builders import run as make_run

SCHEMA = json.loads((Path(__file__).parents[2] / "site" / "status.schema.json").read_text())
ATOM = "{http://www.w3.org/2005/Atom}"


def hostile_site():
    key = "meta.ads"
    j = job(job_id="evil", description=HOSTILE, last_run_status="failed",
            last_error=f"{HOSTILE} {SECRET}", last_run_id="r1", params={
                "q": HOSTILE, "token": SECRET, HOSTILE[:20]: 1})
    ds = synced(key, 30 * H, last_failure_at=NOW - MIN, last_error=HOSTILE,
                consecutive_failures=3)
    cat = catalog({key: ()}, [consumer("ads", HOSTILE, requirement(key))])
    runs = [make_run("r1", "evil", status="failed", error=HOSTILE, stuck=True)]
    before = model(jobs=[job(job_id="evil")], datasets=[synced(key, H)], cat=cat)
    after = model(jobs=[j], datasets=[ds], runs=runs, cat=cat)
    memory = remember(before, Memory(exists=True), [])
    events = detect_changes(after, memory)
    assert {e.kind for e in events} == {"dataset_stale", "job_failed", "run_stuck"}
    return after, render_site(after, remember(after, memory, events).events)


def test_hostile_names_params_and_errors_are_escaped_in_the_page():
    _, files = hostile_site()
    html = files["index.html"].data.decode()
    assert "<script>alert" not in html
    assert "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<script>") == 1  # only the page's own


def test_hostile_text_is_escaped_in_the_feed_and_it_stays_valid_atom():
    _, files = hostile_site()
    feed = ET.fromstring(files["feed.xml"].data)
    entries = feed.findall(f"{ATOM}entry")
    assert len(entries) == 3
    summaries = [e.find(f"{ATOM}summary").text for e in entries]
    assert any(HOSTILE in s for s in summaries)  # the text survives, as text
    assert b"<script>" not in files["feed.xml"].data


def test_hostile_titles_are_escaped_in_badges_which_stay_valid_svg():
    _, files = hostile_site()
    svg = files[badge_path("consumer", "ads")].data
    assert b"<script>" not in svg and b"<img" not in svg
    root = ET.fromstring(svg)
    assert root.find("{http://www.w3.org/2000/svg}title").text.startswith("<script>")


def test_secret_params_appear_in_no_file():
    _, files = hostile_site()
    for path, out in files.items():
        assert SECRET.encode() not in out.data, path
    assert b"[secret]" in files["index.html"].data


def test_status_json_meets_its_schema():
    m, files = hostile_site()
    doc = json.loads(files["status.json"].data)
    jsonschema.validate(doc, SCHEMA, format_checker=jsonschema.FormatChecker())
    assert doc["overall"] == {"state": "error", "headline": f"{HOSTILE} cannot be trusted"}
    assert doc["datasets"][0]["history"]["days"][-1] in "opf-"


def test_the_headline_names_the_affected_consumers_worst_first():
    def headline(*states):
        keys = [f"ds.{i}" for i in range(len(states))]
        ages = {"error": 30 * H, "warn": 25 * H, "fresh": H}
        cat = catalog({k: () for k in keys}, [consumer(f"c{i}", f"Consumer {i}",
                                                       requirement(k))
                                              for i, k in enumerate(keys)])
        return model(datasets=[synced(k, ages[s]) for k, s in zip(keys, states, strict=True)],
                     cat=cat).headline

    assert headline("fresh", "error") == "Consumer 1 cannot be trusted"
    assert headline("error", "warn", "error") == "Consumer 0 and 1 other cannot be trusted"
    assert headline("error", "error", "error") == "Consumer 0 and 2 others cannot be trusted"
    assert headline("warn", "fresh", "warn") == "Consumer 0 and 1 other need attention"
    assert headline("fresh", "warn") == "Consumer 1 needs attention"
    assert headline("fresh", "fresh") == "All data is fresh"


def test_the_page_is_self_contained():
    """No external assets. Links out (each run's Logs Explorer query) are plain anchors."""
    _, files = hostile_site()
    html = files["index.html"].data.decode()
    for external in ('src="http', "src='http", "@import", "url(http"):
        assert external not in html
    assert not re.search(r"<link[^>]+href=[\"']?http", html)
    anchors = re.findall(r'<a href="(https?://[^"]+)"[^>]*>', html)
    assert anchors and all(a.startswith("https://console.cloud.google.com/logs/query;")
                           for a in anchors)


def test_the_page_collapses_long_lists_and_caps_runs():
    datasets = [synced(f"ds.{i:04d}", H) for i in range(400)]
    runs = [make_run(f"r{i}", ago=i * MIN) for i in range(300)]
    html = render_site(model(datasets=datasets, runs=runs), [])["index.html"].data.decode()
    assert "250 more datasets" in html
    assert html.count('<span class="chip rs-') == 50


def test_badges_exist_per_dataset_and_consumer_with_a_text_label():
    cat = catalog({"a": ()}, [consumer("team/../x", "Team", requirement("a"))])
    files = render_site(model(cat=cat, datasets=[synced("a", H)]), [])
    assert b"aria-label=\"A: fresh\"" in files["badges/dataset/a.svg"].data
    consumer_badges = [p for p in files if p.startswith("badges/consumer/")]
    assert len(consumer_badges) == 1 and ".." not in consumer_badges[0]


# -- links: only http(s) and relative ones, whatever the stored catalog says ------------

SCRIPT_URLS = ["javascript:alert(document.domain)", " javascript:alert(1)",
               "JaVaScRiPt:alert(1)", "\tjava\nscript:alert(1)",
               "data:text/html,<script>alert(1)</script>", "vbscript:msgbox(1)"]


def linked_site(url: str, site_url: str = "https://status.example/"):
    from freshet.core.catalog import Consumer

    cat = catalog({"a": ()}, [Consumer("ads", "Ads", url=url, requires=(requirement("a"),))])
    m = model(cat=cat, datasets=[synced("a", H)], site_url=site_url)
    return render_site(m, [])


def hrefs(html: str) -> list[str]:
    import re

    return re.findall(r'href="([^"]*)"', html)


@pytest.mark.parametrize("url", SCRIPT_URLS)
def test_a_script_url_from_a_stored_catalog_is_rendered_as_plain_text(url):
    files = linked_site(url)
    html = files["index.html"].data.decode()
    assert all(h.startswith(("#", "feed.xml", "status.", "https://status.example",
                             "consumers/")) or h == "" for h in hrefs(html)), hrefs(html)
    assert "<strong>Ads</strong>" in html
    page = files["consumers/ads.html"].data.decode()
    assert all(h.startswith(("#", "../index.html")) for h in hrefs(page)), hrefs(page)
    assert json.loads(files["status.json"].data)["consumers"][0]["url"] == ""


def test_an_http_consumer_url_is_a_link_that_does_not_hand_over_the_page():
    html = linked_site("https://bi.example/ads?a=1&b=2")["index.html"].data.decode()
    assert '<a href="https://bi.example/ads?a=1&amp;b=2" rel="noopener noreferrer">Ads</a>' \
        in html


@pytest.mark.parametrize("site_url", SCRIPT_URLS)
def test_a_script_site_url_never_reaches_the_feed_or_status_json(site_url):
    files = linked_site("https://bi.example/", site_url=site_url)
    feed = ET.fromstring(files["feed.xml"].data)
    for link in feed.iter(f"{ATOM}link"):
        assert not link.get("href").lower().lstrip().startswith(("javascript", "data", "vb"))
    assert json.loads(files["status.json"].data)["site_url"] == ""


def test_the_page_allows_only_its_own_inline_style_and_script():
    import base64
    import hashlib
    import re

    html = linked_site("https://bi.example/")["index.html"].data.decode()
    policy = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', html)
    assert policy, "no Content-Security-Policy"
    policy = policy.group(1).replace("&#39;", "'")
    assert "default-src 'none'" in policy and "unsafe-inline" not in policy
    for tag in ("style", "script"):
        body = re.search(rf"<{tag}>(.*?)</{tag}>", html, re.S).group(1)
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"{tag}-src 'sha256-{digest}'" in policy


def test_the_page_draws_lineage_pools_and_run_slots_and_json_meets_the_schema():
    rollup = new_job(id="rollup", kind="noop", produces=["sales.revenue"], pool="warehouse",
                     trigger={"after": ["sales.orders"]}, catchup="all")
    cat = catalog({"sales.orders": (), "sales.revenue": ()})
    cat = type(cat)(datasets=cat.datasets, pools=(Pool("default", "q", 100),
                                                  Pool("warehouse", "q-warehouse", 2)))
    runs = [make_run("rollup__t1", "rollup", status="skipped", interval_start=NOW - 2 * H,
                     queue="q-warehouse", trigger_source="upstream"),
            make_run("orders__b", "orders", status="cancelled", backfill_id="orders--b")]
    m = build_model(jobs=[rollup], datasets=[synced("sales.orders", H, triggers=["rollup"])],
                    runs=runs, catalog=cat, control=Control(), now=NOW, settings=Settings(),
                    pool_counts={"warehouse": (1, 3)})
    files = render_site(m, [])
    page = files["index.html"].data.decode()
    assert 'class="lineage"' in page and 'href="#d-sales.revenue"' in page
    assert "Runs after sales.orders is fresh" in page and "Catch-up: all (at most 24)" in page
    assert 'id="p-warehouse"' in page and ">3<" in page and "2 at once" in page
    assert "rs-skipped" in page and "rs-cancelled" in page
    assert "since 2026-11-28 10:00 UTC" in page  # the slot's data interval
    doc = json.loads(files["status.json"].data)
    jsonschema.validate(doc, SCHEMA, cls=jsonschema.Draft202012Validator)
    assert doc["pools"][1] == {"name": "warehouse", "queue": "q-warehouse", "max_concurrent": 2,
                               "running": 1, "queued": 3}
    revenue = next(d for d in doc["datasets"] if d["key"] == "sales.revenue")
    assert revenue["upstream"] == ["sales.orders"]
    orders = next(d for d in doc["datasets"] if d["key"] == "sales.orders")
    assert orders["downstream"] == ["sales.revenue"] and orders["triggers"] == ["rollup"]
    assert doc["runs"][0]["data_interval"]["start"] == "2026-11-28T10:00:00Z"


# -- issue 20 §6: incident history cannot grow the page, status.json or the feed ----------

def heavy_incidents(count=20, notes=100, chars=2000):
    """The issue's load: 20 incidents x 100 notes x 2,000 characters (4-byte ones too)."""
    from datetime import timedelta

    from freshet.core.incidents import add_note, open_incident

    found = []
    for i in range(count):
        opened = NOW - timedelta(days=2) + i * MIN
        incident = open_incident(title=f"Incident {i}", note="o" * chars, now=opened)
        for n in range(notes - 1):
            text = (f"note {n} " + ("\U0001F30A" if n % 2 else "x") * chars)[:chars]
            incident = add_note(incident, text=text, now=opened + (n + 1) * MIN)
        found.append(incident)
    return found


def state_changes(count):
    from freshet.core.timeutil import isoformat
    from freshet.status.changes import Event

    return [Event(f"e{n}", isoformat(NOW - 3 * 24 * H - n * MIN), "dataset_stale",
                  f"d{n}", f"Dataset d{n} is stale", "old") for n in range(count)]


def test_the_worst_incident_load_keeps_the_page_under_2_mb_and_links_every_note():
    incidents = heavy_incidents()
    m = model(incidents=incidents)
    files = render_site(m, state_changes(100))
    html = files["index.html"].data.decode()
    assert len(files["index.html"].data) < 2_000_000
    assert len(files["index.html"].data) < 300_000  # 4.35 MB before
    for incident in incidents:
        assert html.count(f'href="incidents/{incident.id}.html"') >= 2  # banner and list
        page = files[f"incidents/{incident.id}.html"].data.decode()
        assert page.count("<li>") == 100 and "note 98 " in page and "note 0 " in page
    assert "97 earlier notes" in html and "note 98 " in html and "note 95 " not in html


def test_status_json_keeps_each_incidents_latest_five_notes_with_a_count_and_a_link():
    incidents = heavy_incidents()
    files = render_site(model(incidents=incidents), [])
    doc = json.loads(files["status.json"].data)
    jsonschema.validate(doc, SCHEMA, cls=jsonschema.Draft202012Validator)
    assert len(doc["incidents"]) == len(incidents)
    for got in doc["incidents"]:
        assert len(got["notes"]) == 5 and got["notes_total"] == 100
        assert got["notes"][-1]["text"].startswith("note 98 ")  # the latest, oldest first
        assert got["notes_url"] == f"incidents/{got['id']}.html"
    assert len(files["status.json"].data) < 1_000_000  # 4.19 MB before


def test_incident_notes_never_push_state_changes_out_of_the_feed():
    from freshet.status.render import FEED_ENTRIES, FEED_NOTES, feed_entries

    m = model(incidents=heavy_incidents(notes=100, chars=20))
    entries = feed_entries(m, state_changes(100))  # every note is newer than every change
    kinds = [e.kind for e in entries]
    assert len(entries) == FEED_ENTRIES
    assert sum(k.startswith("incident_") for k in kinds) == FEED_NOTES
    assert kinds.count("dataset_stale") == FEED_ENTRIES - FEED_NOTES
    few = feed_entries(m, state_changes(3))  # with few changes, notes fill up to the cap
    assert [e.kind for e in few].count("dataset_stale") == 3 and len(few) == 3 + FEED_NOTES


def test_an_incident_page_is_the_same_at_the_next_publish_until_the_incident_changes():
    from datetime import timedelta

    from freshet.core.incidents import add_note

    incidents = heavy_incidents(count=2, notes=5, chars=50)
    first = render_site(model(incidents=incidents), [])
    later = render_site(model(incidents=incidents, now=NOW + timedelta(minutes=5)), [])
    page = f"incidents/{incidents[0].id}.html"
    assert first[page].digest == later[page].digest  # not written again
    noted = [add_note(incidents[0], text="fixed upstream", now=NOW), incidents[1]]
    again = render_site(model(incidents=noted, now=NOW + timedelta(minutes=10)), [])
    assert again[page].digest != first[page].digest
    assert "fixed upstream" in again[page].data.decode()


def test_each_consumer_has_a_page_with_only_what_it_depends_on():
    from freshet.core.incidents import open_incident
    from freshet.core.windows import Scope
    from freshet.status.render import consumer_key, consumer_page

    on_orders = open_incident(title="Orders export late", scope=Scope(jobs=("orders-sync",)),
                              now=NOW)
    cat = catalog({"sales.orders": (), "sales.revenue": ("sales.orders",), "crm": ()},
                  [consumer("revenue", "Revenue dashboard", requirement("sales.revenue")),
                   consumer("crm team/é", "CRM team", requirement("crm"))])
    m = model(datasets=[synced("sales.orders", 30 * H), synced("sales.revenue", H),
                        synced("crm", H)], cat=cat, incidents=[on_orders],
              jobs=[job("orders-sync", produces=["sales.orders"])])
    files = render_site(m, [])
    page = files["consumers/revenue.html"].data.decode()
    assert "Revenue dashboard" in page and "Orders export late" in page
    assert "sales.orders" in page and "(upstream)" in page and "crm" not in page
    doc = json.loads(files["consumers/revenue.json"].data)
    assert doc["consumer"]["id"] == "revenue" and doc["built_from"] == ["sales.orders"]
    assert files["consumers/revenue.json"].key == consumer_key(doc)  # made from parts
    assert [d["key"] for d in doc["datasets"]] == ["sales.revenue", "sales.orders"]
    assert [i["id"] for i in doc["incidents"]] == [on_orders.id]
    unsafe = consumer_page("crm team/é")
    assert unsafe.startswith("consumers/crm-team-") and unsafe in files
    assert "Orders export late" not in files[unsafe].data.decode()
    index = files["index.html"].data.decode()
    assert 'href="consumers/revenue.html"' in index


def test_a_consumer_whose_published_files_are_current_is_not_rendered_again():
    cat = catalog({"a": (), "b": ()}, [consumer("one", "One", requirement("a")),
                                       consumer("two", "Two", requirement("b"))])
    m = model(datasets=[synced("a", H), synced("b", H)], cat=cat)
    full = render_site(m, [])
    asked = []

    def current(path, out):  # what the memory says: one's JSON is current, its page too
        asked.append(path)
        return path.startswith("consumers/one.") and out.key == full[path].key

    files = render_site(m, [], current=current)
    assert {"consumers/one.html", "consumers/one.json", "consumers/two.html"} <= set(asked)
    for path in ("consumers/one.html", "consumers/one.json"):
        assert files[path].kept and files[path].data == b"" and files[path].key == full[path].key
    for path in ("consumers/two.html", "consumers/two.json"):
        assert not files[path].kept and files[path] == full[path]
    assert {p: o for p, o in files.items() if not p.startswith("consumers/one.")} == {
        p: o for p, o in full.items() if not p.startswith("consumers/one.")}


def test_a_reason_is_timed_the_same_from_its_build_cache_and_a_text_apart_from_markup():
    from datetime import timedelta

    import markupsafe

    from freshet.status.render import live

    d = synced("a.b", 2 * H)
    words = "a<b synced 2 h ago"
    first, again = live(words, d, NOW), live(words, d, NOW)
    assert first == again == (f'a&lt;b synced <time datetime="{(NOW - 2 * H):%Y-%m-%dT%H:%M:%SZ}"'
                              ' data-rel>2 h ago</time>')
    assert live(markupsafe.Markup(words), d, NOW).startswith("a<b synced <time")
    assert live(words, d, NOW + timedelta(hours=1)) == "a&lt;b synced 2 h ago"  # 3 h now
    assert live(words, [d], NOW) == first  # a list: the same words, made apart


def test_equal_moments_in_other_zones_are_written_in_utc_by_the_build_cache():
    from datetime import timedelta, timezone

    from freshet.status.render import _iso, _moment_html

    paris = timezone(timedelta(hours=1))
    assert _iso(NOW) == _iso(NOW.astimezone(paris)) == f"{NOW:%Y-%m-%dT%H:%M:%SZ}"
    assert _moment_html(NOW.astimezone(paris)) == _moment_html(NOW)
    assert _iso(None) is None
