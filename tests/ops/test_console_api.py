"""What the API grew for the console, against the Firestore emulator, each answer checked
against openapi.yaml: pause with reason and until (the tick resumes it), cancel and
retry of runs, ad-hoc maintenance windows, runs a page at a time, the overview's reads."""

from datetime import timedelta

import pytest

from freshet.core import runs
from freshet.core.models import RunStatus, TriggerSource
from freshet.gcp.storage import LocalSink
from freshet.loop.tick import tick_once
from freshet.ops.apply import plan
from freshet.ops.config import parse_config
from freshet.ops.operations import pause_job
from freshet.ops.overview import Filters, forget, overview
from freshet.status.publish import publish_once
from tests.loop.helpers import RecordingQueue
from tests.ops.helpers import PIPELINE, T0
from tests.ops.test_api import JOB, SETTINGS, Api, SigningKey
from tests.ops.test_api import CertCache as _CertCache
from tests.ops.test_api import CertServer as _CertServer

MIN = timedelta(minutes=1)


@pytest.fixture(scope="module")
def signing():
    key = SigningKey("console-api-key")
    server = _CertServer([key])
    yield key, _CertCache(server.url)
    server.close()


@pytest.fixture()
def api(db, signing, monkeypatch):
    made = Api(db, signing, monkeypatch)
    made.call("POST", "/jobs", json=JOB)
    return made


def add_run(api, status: RunStatus, minutes: int, job_id: str = "orders"):
    job = api.store.job(job_id)
    slot = T0 - minutes * MIN
    run = runs.new_run(job, runs.scheduled_run_id(job_id, slot), slot,
                       source=TriggerSource.SCHEDULE, now=slot, settings=SETTINGS)
    if status != RunStatus.QUEUED:
        run = runs.started(run, 1, slot, timedelta(minutes=30))
    if status == RunStatus.FAILED:
        run = runs.failed(run, slot + MIN, "boom")
    api.store.create_run(run)
    return run


def test_a_pause_needs_a_reason_and_changes_nothing_without_one(api):
    status, body = api.call("POST", "/jobs/{job_id}/pause", {"job_id": "orders"}, json={})
    assert (status, body["error"]["field"]) == (400, "reason")
    status, body = api.call("POST", "/jobs/{job_id}/pause", {"job_id": "orders"},
                            json={"reason": "x", "until": "yesterday"})
    assert (status, body["error"]["field"]) == (400, "until")
    assert api.store.job("orders").status == "active"


def test_a_pause_until_ends_by_itself_at_the_first_tick_after_until(api):
    status, body = api.call("POST", "/jobs/{job_id}/pause", {"job_id": "orders"},
                            json={"reason": "vendor outage", "until": "2h"})
    assert status == 200 and body["job"]["paused_until"] == "2026-11-28T14:00:00Z"
    assert body["job"]["paused_reason"] == "vendor outage"
    assert body["job"]["paused_by"] == "ops@example.com"
    queue = RecordingQueue(SETTINGS)
    early = tick_once(api.store, queue, now=T0 + 119 * MIN, settings=SETTINGS)
    assert early.resumed == [] and api.store.job("orders").status == "paused"
    late = tick_once(api.store, queue, now=T0 + 120 * MIN, settings=SETTINGS)
    assert late.resumed == ["orders"] and late.created == []
    job = api.store.job("orders")
    assert (job.status, job.paused_reason, job.paused_until) == ("active", "", None)
    assert job.next_run_at == T0 + 135 * MIN  # the missed slots are skipped


def test_apply_keeps_a_pause_and_its_dry_run_shows_it(api):
    config = parse_config(PIPELINE, "pipeline.yaml", env={})
    pause_job(api.store, "orders", reason="bank migration", until="3h", by="ana", now=T0)
    todo = plan(config, store=api.store, task_queue=_NoQueues(SETTINGS), now=T0)
    assert "  = job orders: paused (kept) — bank migration, by ana, resumes by itself at " \
           "2026-11-28 15:00 UTC" in todo.lines()
    assert all(c.job_id != "orders" or "status" not in c.changes for c in todo.jobs)


class _NoQueues(RecordingQueue):
    def queues(self) -> dict:
        return {}


def test_cancel_ends_a_queued_run_once_and_refuses_a_finished_one(api):
    queued = add_run(api, RunStatus.QUEUED, 5)
    status, body = api.call("POST", "/runs/{run_id}/cancel", {"run_id": queued.id})
    assert status == 200 and body["run"]["status"] == "cancelled"
    assert body["run"]["lease_expires_at"] is None
    assert api.call("POST", "/runs/{run_id}/cancel", {"run_id": queued.id})[0] == 200
    failed = add_run(api, RunStatus.FAILED, 30)
    status, body = api.call("POST", "/runs/{run_id}/cancel", {"run_id": failed.id})
    assert status == 409 and "only a queued or running run" in body["error"]["message"]
    assert api.call("POST", "/runs/{run_id}/cancel", {"run_id": "orders__ghost"})[0] == 404


def test_cancelling_a_running_run_releases_its_job_and_leaves_its_datasets(api):
    running = add_run(api, RunStatus.RUNNING, 3)
    api.store.update_job("orders", {"running_run_id": running.id})
    api.call("POST", "/runs/{run_id}/cancel", {"run_id": running.id})
    assert api.store.job("orders").running_run_id is None
    assert api.store.get_dataset("sales.orders") is None  # no failure was recorded


def test_a_retry_is_one_run_however_often_it_is_asked(api):
    failed = add_run(api, RunStatus.FAILED, 60)
    first = api.call("POST", "/runs/{run_id}/retry", {"run_id": failed.id})
    second = api.call("POST", "/runs/{run_id}/retry", {"run_id": failed.id})
    assert (first[0], second[0]) == (201, 200)
    assert first[1]["run"]["id"] == second[1]["run"]["id"]
    assert first[1]["run"]["slot"] == "2026-11-28T11:00:00Z"
    assert first[1]["run"]["trigger_source"] == "retry"
    assert [e.run_id for e in api.queue.sent] == [first[1]["run"]["id"]]
    queued = add_run(api, RunStatus.QUEUED, 1)
    assert api.call("POST", "/runs/{run_id}/retry", {"run_id": queued.id})[0] == 409


def test_runs_come_a_page_at_a_time_with_filters(api):
    made = [add_run(api, RunStatus.FAILED if i % 2 else RunStatus.QUEUED, 10 * i)
            for i in range(1, 8)]
    seen, cursor = [], None
    while True:
        query = {"job_id": "orders", "limit": "3", **({"cursor": cursor} if cursor else {})}
        status, body = api.call("GET", "/runs", query_string=query)
        assert status == 200 and len(body["runs"]) <= 3
        seen += [r["id"] for r in body["runs"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [r.id for r in made]  # newest first (created_at), each once
    status, body = api.call("GET", "/runs", query_string={"state": "failed", "limit": "10"})
    assert {r["status"] for r in body["runs"]} == {"failed"} and len(body["runs"]) == 4
    since = (T0 - 35 * MIN).isoformat()
    status, body = api.call("GET", "/runs", query_string={"since": since})
    assert [r["id"] for r in body["runs"]] == [r.id for r in made[:3]]
    for bad, field in (({"state": "done"}, "state"), ({"cursor": "%%%"}, "cursor"),
                       ({"since": "yesterday"}, "since")):
        status, body = api.call("GET", "/runs", query_string=bad)
        assert (status, body["error"]["field"]) == (400, field)


def test_an_adhoc_window_is_listed_beside_the_declared_ones_and_ends(api):
    status, body = api.call("POST", "/maintenance", json={"minutes": 30, "note": "failover"})
    assert status == 201 and body["window"]["end"] == "2026-11-28T12:30:00Z"
    window_id = body["window"]["id"]
    listed = api.call("GET", "/maintenance")[1]
    assert [w["id"] for w in listed["adhoc"]] == [window_id] and listed["adhoc"][0]["active"]
    status, body = api.call("POST", "/jobs/{job_id}/run", {"job_id": "orders"})
    assert status == 409 and "maintenance" in body["error"]["message"]
    status, body = api.call("POST", "/maintenance/{window_id}/end", {"window_id": window_id})
    assert status == 200 and body["adhoc"] == []
    assert api.call("POST", "/jobs/{job_id}/run", {"job_id": "orders"})[0] == 201
    status, body = api.call("POST", "/maintenance", json={"minutes": 0, "note": "x"})
    assert (status, body["error"]["field"]) == (400, "minutes")


def test_the_overview_lists_failures_first_and_filters(api):
    api.call("POST", "/jobs", json={**JOB, "id": "rates", "produces": ["finance.rates"]})
    api.store.update_job("rates", {"last_run_status": "failed", "last_error": "boom\nline 2"})
    status, body = api.call("GET", "/overview")
    assert [j["id"] for j in body["jobs"]] == ["rates", "orders"]
    assert body["jobs"][0]["last_error"] == "boom" and body["counts"]["failing"] == 1
    body = api.call("GET", "/overview", query_string={"q": "ORD"})[1]
    assert [j["id"] for j in body["jobs"]] == ["orders"]
    body = api.call("GET", "/overview", query_string={"limit": "1"})[1]
    assert body["next_cursor"] == "1"
    body = api.call("GET", "/overview", query_string={"limit": "1", "cursor": "1"})[1]
    assert [j["id"] for j in body["jobs"]] == ["orders"] and body["next_cursor"] is None
    status, body = api.call("GET", "/overview", query_string={"state": "sleepy"})
    assert (status, body["error"]["field"]) == (400, "state")


def test_the_overview_reads_each_collection_once_whatever_the_page(api, tmp_path):
    for i in range(30):
        api.call("POST", "/jobs", json={**JOB, "id": f"job-{i:02}", "produces": []})
    forget()
    api.store.stats.reset()
    overview(api.store, T0, Filters(), limit=5)
    first = api.store.stats.reads
    forget()
    api.store.stats.reset()
    overview(api.store, T0, Filters(q="job-2"), limit=50)
    assert api.store.stats.reads == first
    # No publish yet: the manifest (absent), 31 jobs, the (empty) dataset query, control,
    # catalog, the incidents' one (empty) query: no read per job, no run read
    assert first == 1 + 31 + 1 + 1 + 1 + 1
    publish_once(api.store, LocalSink(tmp_path), now=T0, settings=SETTINGS, environ={})
    api.store.update_job("job-07", {"description": "changed since the publish"})
    forget()
    api.store.stats.reset()
    rows = overview(api.store, T0, Filters(q="changed since"), limit=50)["jobs"]
    assert [r["id"] for r in rows] == ["job-07"]
    # the manifest, a chunk each for jobs and datasets, the one changed job, the (empty)
    # dataset changes, control, catalog, incidents (one empty query)
    assert api.store.stats.reads == 1 + 2 + 1 + 1 + 1 + 1 + 1
