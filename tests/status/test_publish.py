"""publish_once against the Firestore emulator: one read pass, the site, memory, webhooks."""

import html
import json
from dataclasses import replace
from datetime import timedelta

import flask
import pytest

from freshet.core.models import Dataset
from freshet.core.settings import Settings
from freshet.gcp.storage import LocalSink
from freshet.gcp.store import Store
from freshet.ops import entries
from freshet.ops.deps import reset_process_deps
from freshet.ops.web import serve
from freshet.status.publish import RECENT_RUNS, publish_once

from .builders import MIN, NOW, SECRET, H
from .seed import seed_pipeline
from .webhook_server import WebhookReceiver


@pytest.fixture
def receiver():
    with WebhookReceiver() as r:
        yield r


def settings(**kw) -> Settings:
    return Settings(site_url="https://status.example/", **kw)


def test_publish_writes_the_site_from_one_read_pass(db, tmp_path):
    store = Store(db)
    seed_pipeline(store)
    store.stats.reset()
    result = publish_once(store, LocalSink(tmp_path), now=NOW, settings=settings())

    # The first publish reads in full: the stored model's manifest (missing), 4 jobs,
    # 3 datasets, 4 runs, catalog + control + status memory + loop heartbeat
    assert (result.mode, result.rebuild_reason) == ("full", "no stored model")
    # (+1: the runs' newest updated_at, which marks what the next publish asks for),
    # three empty queries (one read each): deadline records, incidents, route states;
    # and the settings' newest commit time before and after (its own status memory)
    assert result.reads == store.stats.reads == 1 + 4 + 3 + 1 + 4 + 4 + 3 + 2
    assert result.state == "error"
    for name in ("index.html", "status.json", "feed.xml", "status.schema.json",
                 "badges/dataset/meta.ads.svg", "badges/consumer/ad-performance.svg"):
        assert (tmp_path / name).is_file(), name
    doc = json.loads((tmp_path / "status.json").read_text())
    banners = {c["id"]: c for c in doc["consumers"]}
    assert banners["ad-performance"]["state"] == "error"
    assert banners["weekly-report"]["state"] == "at_risk"
    assert banners["sales"]["state"] == "fresh"
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(), path
    assert db.collection("settings").document("status_state").get().exists


def test_reads_grow_with_jobs_and_datasets_not_with_requirements(db, tmp_path):
    store = Store(db)
    seed_pipeline(store)
    store.put_many("runs", [(f"extra-{i}", {"id": f"extra-{i}", "job_id": "crm_sync",
                                            "kind": "noop", "scheduled_for": NOW - i * MIN,
                                            "created_at": NOW - i * MIN, "status": "succeeded"})
                            for i in range(RECENT_RUNS + 20)])
    store.stats.reset()
    result = publish_once(store, LocalSink(tmp_path), now=NOW, settings=settings())
    # in full (no stored model yet), the three trust queries, the settings' newest
    # commit time before and after
    assert result.reads == 1 + 4 + 3 + 1 + RECENT_RUNS + 4 + 3 + 2


def test_notifications_are_sent_once_per_change_not_once_per_publish(db, tmp_path, receiver):
    store = Store(db)
    seed_pipeline(store, meta_age=2 * H)  # meta.ads within its SLA, but failing
    sink, cfg = LocalSink(tmp_path), settings(webhook_url=receiver.url)
    first = publish_once(store, sink, now=NOW, settings=cfg)
    assert (first.changes, receiver.attempts) == (0, 0)  # the baseline

    later = NOW + 25 * H  # meta.ads now past error_after; crm.accounts past its 6 h too
    second = publish_once(store, sink, now=later, settings=cfg)
    assert second.changes == 1 and second.notifications_sent == 1
    assert len(receiver.received) == 1
    text = receiver.received[0]["text"]
    assert "Meta ads is Error (was Failing)" not in text  # failing -> error: same level
    assert "CRM accounts is Error (was Fresh)" in text
    assert "https://status.example/" in text

    third = publish_once(store, sink, now=later + 5 * MIN, settings=cfg)
    assert third.changes == 0
    assert len(receiver.received) == 1  # nothing new: nothing sent

    store.put_many("datasets", [("crm.accounts", Dataset(
        "crm.accounts", last_success_at=later + 6 * MIN).to_doc())])
    fourth = publish_once(store, sink, now=later + 10 * MIN, settings=cfg)
    assert fourth.changes == 1 and len(receiver.received) == 2
    assert "CRM accounts recovered" in receiver.received[1]["text"]
    feed = (tmp_path / "feed.xml").read_text()
    assert feed.count("<entry>") == 2


def test_a_failed_webhook_does_not_fail_the_publish_and_is_retried_later(db, tmp_path, receiver):
    store = Store(db)
    seed_pipeline(store, meta_age=2 * H)
    sink, cfg = LocalSink(tmp_path), settings(webhook_url=receiver.url)
    publish_once(store, sink, now=NOW, settings=cfg)
    receiver.fail_next = 1
    failed = publish_once(store, sink, now=NOW + 25 * H, settings=cfg)
    assert (failed.notifications_sent, failed.notifications_pending) == (0, 1)
    assert (tmp_path / "index.html").is_file()
    retried = publish_once(store, sink, now=NOW + 25 * H + 5 * MIN, settings=cfg)
    assert (retried.changes, retried.notifications_sent, retried.notifications_pending) == (0, 1, 0)
    assert (receiver.attempts, len(receiver.received)) == (2, 1)


def test_unchanged_badges_are_not_rewritten_unless_asked(db, tmp_path):
    store = Store(db)
    seed_pipeline(store)
    sink = LocalSink(tmp_path)
    first = publish_once(store, sink, now=NOW, settings=settings())
    store.set_control({})  # a setting written (the same): the next publish rebuilds
    again = publish_once(store, sink, now=NOW + MIN, settings=settings())
    assert again.mode == "incremental"
    assert first.badges_unchanged == 0
    assert again.badges_unchanged == 6  # 3 datasets + 3 consumers
    assert again.files_unchanged == 13  # and status.schema.json, each consumer's 2 files
    # page, json, feed and heartbeat: they say when they were built
    assert again.files_written == first.files_written - 13 == 4
    full = publish_once(store, sink, now=NOW + 2 * MIN, settings=settings(), full=True)
    assert full.files_written == first.files_written


@pytest.fixture
def local_env(monkeypatch, tmp_path):
    monkeypatch.setenv("FRESHET_AUTH", "local")
    monkeypatch.setenv("FRESHET_SITE_DIR", str(tmp_path / "public"))
    reset_process_deps()
    yield tmp_path / "public"
    reset_process_deps()


def call(query: str = "", body: str | None = None):
    app = flask.Flask(__name__)
    with app.test_request_context(f"/publish_status{query}", method="POST", data=body,
                                  content_type="application/json" if body else None):
        return serve(flask.request, entries.publish_status)


def test_http_entry_publishes_and_answers_a_summary(db, local_env):
    seed_pipeline(Store(db))
    response = call(body='{"full": true}')
    assert response.status_code == 200
    assert response.get_json()["files_written"] >= 10
    assert (local_env / "index.html").is_file()


@pytest.mark.parametrize(("query", "body", "field"), [
    ("?fast=1", None, "fast"),
    ("?full=maybe", None, "full"),
    ("", '{"full": "yes"}', "full"),
    ("", "[1]", "body"),
])
def test_http_entry_refuses_bad_options_naming_the_field(local_env, query, body, field):
    response = call(query, body)
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == field


def test_http_entry_requires_authentication(monkeypatch):
    monkeypatch.setenv("FRESHET_AUTH", "oidc")
    reset_process_deps()
    try:
        assert call().status_code == 401
    finally:
        reset_process_deps()


# -- trust: data time, deadlines, maintenance, incidents, routes --------------------------

def test_status_json_and_the_feed_carry_data_time_deadlines_incidents_and_maintenance(
        db, tmp_path):
    import jsonschema

    from .seed import seed_trust

    store = Store(db)
    seed_trust(store)
    publish_once(store, LocalSink(tmp_path), now=NOW, settings=settings(), environ={})
    doc = json.loads((tmp_path / "status.json").read_text())
    schema = json.loads((tmp_path / "status.schema.json").read_text())
    jsonschema.validate(doc, schema, format_checker=jsonschema.FormatChecker())
    datasets = {d["key"]: d for d in doc["datasets"]}
    events = datasets["web.events"]
    assert (events["state"], events["freshness_basis"]) == ("stale_data", "data")
    assert events["data_as_of"] == "2026-11-27T23:00:00Z"
    assert datasets["meta.ads"]["freshness_basis"] == "sync"
    assert datasets["meta.ads"]["data_as_of"] is None
    crm = datasets["crm.accounts"]
    assert (crm["state"], crm["excused_by"]) == ("maintenance", "crm-upgrade")
    assert datasets["meta.ads"]["incidents"] == [doc["incidents"][0]["id"]]
    consumers = {c["id"]: c for c in doc["consumers"]}
    assert consumers["events-team"]["message"] == (
        "Events team — synced 2 min ago, but the data is as of yesterday 23:00 UTC "
        "(needs < 8 h)")
    revenue = consumers["revenue"]
    assert revenue["state"] == "maintenance"
    assert revenue["attainment_90d"] == 0.9 and revenue["attainment_30d"] == 0.9
    assert revenue["deadline_counts_90d"] == {"met": 81, "missed": 9, "excused": 0}
    (deadline,) = revenue["deadlines"]
    assert deadline["next_due"] == "2026-11-29T06:00:00Z"  # 07:00 Paris
    assert deadline["last"]["verdict"] == "met"
    assert [i["status"] for i in doc["incidents"]] == ["open", "resolved"]
    assert doc["incidents"][0]["notes"][-1]["author"] == "bob@example.com"
    (window,) = doc["maintenance"]
    assert (window["id"], window["active"], window["end"]) == ("crm-upgrade", True,
                                                               "2026-11-28T13:00:00Z")
    assert {r["id"]: r["last_status"] for r in doc["routes"]} == {"growth-slack": "delivered",
                                                                   "ops-hook": "failed"}
    assert doc["overall"]["headline"] == "Ad Performance and 1 other cannot be trusted"
    feed = (tmp_path / "feed.xml").read_text()
    assert feed.count("<entry>") == 4  # the notes of both incidents; no change yet
    assert "Incident update: Meta ads API outage" in feed
    assert "Meta confirmed the outage; token refresh pending." in feed
    assert "Incident resolved: CRM export duplicated rows" in feed
    page = (tmp_path / "index.html").read_text()
    for text in ("Kill switch on:", "vendor API rate limits", "CRM vendor upgrade",
                 "Meta ads API outage", "On time:", "90%", "ops-hook"):
        assert text in page, text


def test_each_deadline_is_judged_once_even_by_publishes_at_the_same_time(db, tmp_path):
    import threading

    from freshet.core.catalog import Catalog, Consumer, DatasetSpec
    from freshet.core.deadlines import Deadline

    from .builders import requirement

    store = Store(db)
    every_ten = Deadline(by="*/10 * * * *", as_of="10m")
    store.put_catalog_doc(Catalog(
        datasets={"d": DatasetSpec("d")},
        consumers=(Consumer("c", "C", requires=(requirement("d", 1, 2),),
                            deadlines=(every_ten,)),)).to_doc())
    store.put_many("datasets", [("d", Dataset("d", last_success_at=NOW + 3 * MIN, data_points=[
        {"at": NOW + 3 * MIN, "as_of": None}]).to_doc())])
    publish_once(store, LocalSink(tmp_path), now=NOW, settings=settings())  # cursor: now
    barrier, results = threading.Barrier(3), []

    def publish():
        barrier.wait()
        results.append(publish_once(Store(db), LocalSink(tmp_path), now=NOW + 11 * MIN,
                                    settings=settings()).deadlines_judged)

    threads = [threading.Thread(target=publish) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [0, 0, 1]
    record = store.deadline_records()["c"]
    assert record.days == {"2026-11-28": {"met": 1, "missed": 0, "excused": 0}}
    assert record.recent[0].due == NOW + 10 * MIN
    later = publish_once(store, LocalSink(tmp_path), now=NOW + 21 * MIN, settings=settings())
    assert later.deadlines_judged == 1  # 12:20: nothing since 12:03, data needed as of 12:10
    assert store.deadline_records()["c"].recent[0].verdict == "missed"
    feed = (tmp_path / "feed.xml").read_text()
    assert "C missed its deadline of 2026-11-28 12:20 UTC" in feed


def test_deadlines_are_judged_many_consumers_to_a_commit(db, tmp_path, monkeypatch):
    from freshet.core.catalog import Catalog, Consumer, DatasetSpec
    from freshet.core.deadlines import Deadline
    from freshet.gcp import store as store_module

    from .builders import requirement

    monkeypatch.setattr(store_module, "JUDGED_PER_COMMIT", 2)
    store = Store(db)
    every_ten = Deadline(by="*/10 * * * *", as_of="10m")
    store.put_catalog_doc(Catalog(
        datasets={"d": DatasetSpec("d")},
        consumers=tuple(Consumer(f"c{i}", f"C{i}", requires=(requirement("d", 1, 2),),
                                 deadlines=(every_ten,)) for i in range(3))).to_doc())
    store.put_many("datasets", [("d", Dataset("d", last_success_at=NOW + 3 * MIN).to_doc())])
    publish_once(store, LocalSink(tmp_path), now=NOW, settings=settings())  # cursors: now
    assert sorted(store.deadline_records()) == ["c0", "c1", "c2"]
    judged = publish_once(store, LocalSink(tmp_path), now=NOW + 11 * MIN, settings=settings())
    assert judged.deadlines_judged == 3
    assert {c: r.recent[0].verdict for c, r in store.deadline_records().items()} == {
        "c0": "met", "c1": "met", "c2": "met"}
    # three consumers, two to a commit; a record that the decision leaves as it is (a
    # publish that lost the race finds the cursors moved) is not written again
    records = store.deadline_records()
    commits, writes = store.stats.commits, store.stats.writes
    done = store.judge_deadlines(["c0", "c1", "c2"], lambda c, current: (
        current if c != "c1" else replace(current, cursors={}), []))
    assert store.stats.commits - commits == 2 and store.stats.writes - writes == 1
    assert done["c0"] == (records["c0"], []) and done["c1"][0].cursors == {}
    assert store.deadline_records()["c1"].cursors == {}
    assert store.deadline_records()["c2"] == records["c2"]


@pytest.fixture
def two_receivers():
    with WebhookReceiver() as slack, WebhookReceiver() as hook:
        yield slack, hook


def routed_pipeline(store, min_interval=10 * MIN):
    from freshet.core.alerts import Reference, RouteSpec, RouteType
    from freshet.core.catalog import Catalog, Consumer, DatasetSpec

    from .builders import requirement

    store.put_catalog_doc(Catalog(
        datasets={"sales.orders": DatasetSpec("sales.orders", "Orders", routes=("ops",))},
        consumers=(Consumer("ads", "Ad Performance", requires=(requirement("sales.orders", 1, 2),),
                            routes=("growth", "ops")),),
        routes=(RouteSpec("growth", RouteType.SLACK, Reference(env="GROWTH_URL"),
                          min_interval=min_interval),
                RouteSpec("ops", RouteType.WEBHOOK, Reference(env="OPS_URL"),
                          Reference(env="OPS_SECRET"))),
    ).to_doc())


def synced_at(store, at):
    store.put_many("datasets", [("sales.orders", Dataset(
        "sales.orders", last_started_at=at - MIN, last_success_at=at).to_doc())])


def test_two_routes_each_get_one_message_per_change_and_keep_their_own_interval(
        db, tmp_path, two_receivers):
    from freshet.status.notify import signature_ok

    slack, hook = two_receivers
    env = {"GROWTH_URL": slack.url, "OPS_URL": hook.url, "OPS_SECRET": "k-123456"}
    store, sink = Store(db), LocalSink(tmp_path)
    routed_pipeline(store)
    synced_at(store, NOW)

    def publish(at):
        return publish_once(store, sink, now=at, settings=settings(), environ=env)

    publish(NOW)  # baseline: nothing is told
    assert (slack.attempts, hook.attempts) == (0, 0)
    broken = publish(NOW + 3 * H)  # 3 h old, needs < 2 h
    assert broken.notifications_sent == 2
    assert [e["kind"] for e in slack.received[0]["freshet"]["events"]] == ["consumer_error"]
    assert "Ad Performance cannot be trusted" in slack.received[0]["text"]
    assert [e["kind"] for e in hook.received[0]["events"]] == ["consumer_error", "dataset_error"]
    headers, body = hook.requests[0]
    assert signature_ok("k-123456", headers["X-Freshet-Timestamp"], body,
                        headers["X-Freshet-Signature"])
    publish(NOW + 3 * H + 5 * MIN)  # nothing new
    assert (len(slack.received), len(hook.received)) == (1, 1)
    synced_at(store, NOW + 3 * H + 6 * MIN)  # recovers 6 minutes after the alert
    publish(NOW + 3 * H + 7 * MIN)
    assert [e["kind"] for e in hook.received[1]["events"]] == ["consumer_recovered",
                                                              "dataset_recovered"]
    assert len(slack.received) == 1  # growth's 10-minute interval holds it back
    publish(NOW + 3 * H + 11 * MIN)
    assert "Ad Performance recovered" in slack.received[1]["text"]
    doc = json.loads((tmp_path / "status.json").read_text())
    routes = {r["id"]: r for r in doc["routes"]}
    assert routes["ops"]["delivered"] == 2 and routes["growth"]["last_status"] == "delivered"


def test_a_route_is_muted_during_maintenance_and_told_what_remains_after(
        db, tmp_path, two_receivers):
    from freshet.core.windows import Maintenance, make_window

    slack, hook = two_receivers
    env = {"GROWTH_URL": slack.url, "OPS_URL": hook.url, "OPS_SECRET": "k-123456"}
    store, sink = Store(db), LocalSink(tmp_path)
    routed_pipeline(store, min_interval=0 * MIN)
    synced_at(store, NOW)
    window = make_window({"id": "upgrade", "start": (NOW + 2 * H).isoformat(),
                          "end": (NOW + 4 * H).isoformat(),
                          "scope": {"datasets": ["sales.orders"]}}, "m")
    store.set_control({"maintenance": Maintenance((window,)).to_doc()})
    publish_once(store, sink, now=NOW, settings=settings(), environ=env)
    during = publish_once(store, sink, now=NOW + 3 * H, settings=settings(), environ=env)
    assert during.notifications_sent == 0 and (slack.attempts, hook.attempts) == (0, 0)
    doc = json.loads((tmp_path / "status.json").read_text())
    assert doc["consumers"][0]["state"] == "maintenance"
    after = publish_once(store, sink, now=NOW + 4 * H + MIN, settings=settings(), environ=env)
    assert after.notifications_sent == 2  # still stale when the window ended: told now
    assert "Ad Performance cannot be trusted" in slack.received[0]["text"]


def test_a_failing_route_keeps_its_message_shows_why_and_delivers_later(db, tmp_path,
                                                                     two_receivers):
    slack, hook = two_receivers
    env = {"GROWTH_URL": slack.url, "OPS_URL": hook.url}  # OPS_SECRET is missing
    store, sink = Store(db), LocalSink(tmp_path)
    routed_pipeline(store, min_interval=0 * MIN)
    synced_at(store, NOW)
    publish_once(store, sink, now=NOW, settings=settings(), environ=env)
    slack.fail_next = 1
    failed = publish_once(store, sink, now=NOW + 3 * H, settings=settings(), environ=env)
    assert (failed.notifications_sent, failed.notifications_pending) == (0, 2)
    assert failed.routes == {"growth": "failed", "ops": "failed"}
    page = publish_once(store, sink, now=NOW + 3 * H + 30 * timedelta(seconds=1),
                        settings=settings(), environ=env)  # not due yet: tried in a minute
    assert page.notifications_sent == 0 and slack.attempts == 1
    doc = json.loads((tmp_path / "status.json").read_text())
    routes = {r["id"]: r for r in doc["routes"]}
    assert routes["ops"]["last_error"] == "the route's secret is not set ($OPS_SECRET)"
    assert routes["growth"]["last_error"].startswith("HTTP 500") and routes["growth"][
        "waiting"] == 1
    footer = (tmp_path / "index.html").read_text()
    assert "the route&#39;s secret is not set ($OPS_SECRET)" in footer
    retried = publish_once(store, sink, now=NOW + 3 * H + 2 * MIN, settings=settings(),
                           environ={**env, "OPS_SECRET": "k"})
    assert retried.notifications_sent == 2 and len(slack.received) == 1
    assert retried.routes == {"growth": "delivered", "ops": "delivered"}


def test_an_observed_dataset_is_judged_on_its_data_time_on_the_page_json_and_feed(
        db, tmp_path):
    """An observed table (no job produces it) whose data stopped changing: stale_data,
    basis observed, its consumer's banner turned, status.json valid, the feed told."""
    import jsonschema

    from freshet.core.catalog import Catalog, Consumer, DatasetSpec
    from freshet.core.observe import Observation, ObserveKind, ObserveSpec, apply_observation

    from .builders import requirement

    store = Store(db)
    spec = ObserveSpec(ObserveKind.BIGQUERY_TABLE, "vendor-proj.sales.orders")
    store.put_catalog_doc(Catalog(
        datasets={"vendor.orders": DatasetSpec("vendor.orders", "Vendor orders",
                                               observe=spec)},
        consumers=(Consumer("finance", "Finance", requires=(
            requirement("vendor.orders", 2, 3),)),)).to_doc())
    seen = apply_observation(Dataset("vendor.orders"),
                             Observation("vendor.orders", NOW - 5 * H), NOW - 5 * H + MIN)
    store.put_many("datasets", [("vendor.orders", seen.to_doc())])
    for at in (NOW - 4 * H, NOW):  # fresh then (1 h old data), stale now: a change
        publish_once(store, LocalSink(tmp_path), now=at, settings=settings(), environ={})
    doc = json.loads((tmp_path / "status.json").read_text())
    schema = json.loads((tmp_path / "status.schema.json").read_text())
    jsonschema.validate(doc, schema, format_checker=jsonschema.FormatChecker())
    (orders,) = doc["datasets"]
    assert (orders["state"], orders["freshness_basis"]) == ("stale_data", "observed")
    assert "has not changed since" in orders["reason"]
    (finance,) = doc["consumers"]
    assert finance["state"] == "stale_data"
    assert "observed" in (tmp_path / "index.html").read_text()
    feed = (tmp_path / "feed.xml").read_text()
    assert "Vendor orders" in feed and "stale" in feed.lower()


def test_a_consumers_files_are_rewritten_when_their_states_change_only(db, tmp_path):
    """Each consumer's page and JSON show ages, but are rewritten only when what they
    say changes (a state, a success, an incident; the page's script keeps its ages
    current); heartbeat.json, written at every publish, tells their page Freshet is
    alive."""
    store = Store(db)
    seed_pipeline(store)  # sales needs crm.accounts, 30 minutes old: warn at 2 hours
    sink = LocalSink(tmp_path)

    def consumers_written(at) -> set[str]:
        before = {p: p.stat().st_mtime_ns for p in (tmp_path / "consumers").iterdir()} \
            if (tmp_path / "consumers").is_dir() else {}
        publish_once(store, sink, now=at, settings=settings())
        after = {p: p.stat().st_mtime_ns for p in (tmp_path / "consumers").iterdir()}
        beat = json.loads((tmp_path / "heartbeat.json").read_text())
        assert beat["generated_at"] == at.isoformat().replace("+00:00", "Z")
        return {p.name for p in after if before.get(p) != after[p]}

    everyone = {f"{c}.{ext}" for c in ("ad-performance", "weekly-report", "sales")
                for ext in ("html", "json")}
    assert consumers_written(NOW) == everyone
    assert consumers_written(NOW + MIN) == set()
    assert consumers_written(NOW + 59 * MIN) == set()  # ages moved, states did not
    assert consumers_written(NOW + 61 * MIN) == set()  # an hour on: no refresh
    # crm.accounts passes 2 hours: the sales dashboard turns warn, the others stay
    assert consumers_written(NOW + 95 * MIN) == {"sales.html", "sales.json"}
    page = html.unescape((tmp_path / "consumers" / "sales.html").read_text())
    assert 'data-heartbeat="../heartbeat.json"' in page and "connect-src 'self'" in page


def test_a_consumers_key_moves_with_states_not_with_times_or_ages():
    from freshet.status.render import consumer_key

    doc = {"generated_at": "2026-11-28T12:00:00Z", "consumer": {
        "state": "ok", "label": "Fresh", "message": "all fresh", "incidents": [],
        "datasets": [{"key": "a", "state": "ok", "age_s": 60.0, "reason": "synced 1 min ago",
                      "data_as_of": "2026-11-28T11:59:00Z"}],
        "deadlines": [{"key": "d", "next_due": "2026-11-28T13:00:00Z",
                       "last": {"due": "2026-11-28T12:00:00Z", "verdict": "met",
                                "detail": "met 5 min early"}, "at_risk": False}],
        "attainment_90d": 0.5, "attainment_30d": 0.5, "deadline_counts_90d": {"met": 1}},
        "datasets": [{"key": "a", "state": "ok", "last_success_at": "2026-11-28T11:59:00Z",
                      "history": {"start": "2026-09-01", "days": "ooo"}}]}
    later = json.loads(json.dumps(doc).replace("11:59", "12:04").replace("60.0", "360.0")
                       .replace("0.5", "0.6").replace('{"met": 1}', '{"met": 2}')
                       .replace("1 min ago", "6 min ago").replace('"ooo"', '"oooo"'))
    assert consumer_key(later) == consumer_key(doc)  # a sync succeeded: same states
    for change in ('"state": "ok", "label": "Fresh"', '"verdict": "met"', '"incidents": []'):
        moved = json.dumps(doc).replace(change, change.replace("ok", "warn").replace(
            "met", "missed").replace("[]", '["i-1"]'), 1)
        assert consumer_key(json.loads(moved)) != consumer_key(doc), change
