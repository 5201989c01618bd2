"""publish_once against the Firestore emulator: one read pass, the site, memory, webhooks."""

import json

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
    # (+1: the runs' newest updated_at, which marks what the next publish asks for)
    assert result.reads == store.stats.reads == 1 + 4 + 3 + 1 + 4 + 4
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
    assert result.reads == 1 + 4 + 3 + 1 + RECENT_RUNS + 4  # in full: no stored model yet


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
    again = publish_once(store, sink, now=NOW + MIN, settings=settings())
    assert first.badges_unchanged == 0
    assert again.badges_unchanged == 6  # 3 datasets + 3 consumers
    assert again.files_unchanged == 7  # and status.schema.json
    assert again.files_written == first.files_written - 7 == 3  # page, json, feed
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

