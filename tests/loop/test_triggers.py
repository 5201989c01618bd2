"""Runs triggered by fresh upstreams, against the emulator: created in the commit that
records the upstream's success, once per upstream version, never twice."""

import threading
from datetime import timedelta
from pathlib import Path

import jsonschema
import yaml

from freshet.core.models import RunStatus, TriggerSource
from freshet.core.triggers import triggered_run_id
from freshet.gcp.store import Store
from freshet.loop.backfill import start_backfill
from freshet.loop.run import handle_one
from freshet.loop.tick import tick_once
from freshet.ops import views
from freshet.ops.operations import pause_job, register_triggers, resume_job
from tests.loop.helpers import (
    MIN,
    T0,
    RecordingQueue,
    add_job,
    deliver_all,
    loop_settings,
)

H = timedelta(hours=1)
LATER = T0 + timedelta(days=30)  # each test ticks the job it means to run


def pipeline(store, when="all"):
    """orders and rates on schedules; rollup after both (or either)."""
    add_job(store, "orders", kind="slot_probe", produces=("sales.orders",), next_run_at=LATER,
            cron="0 * * * *")
    add_job(store, "rates", kind="slot_probe", produces=("fx.rates",), next_run_at=LATER,
            cron="0 * * * *")
    rollup = add_job(store, "rollup", kind="slot_probe", produces=("sales.revenue",),
                     schedule=None, next_run_at=None,
                     trigger={"after": ["sales.orders", "fx.rates"], "when": when})
    register_triggers(store, rollup)


def rollups(store):
    """The rollup job's runs, as documents (either store)."""
    return [r.to_doc() for r in store.recent_runs(job_id="rollup", limit=100)]


def run_once(store, settings, queue, job_id, at):
    """One scheduled run of `job_id` at `at`, delivered and succeeded."""
    store.update_job(job_id, {"next_run_at": at})
    (run_id,) = tick_once(store, queue, now=at, settings=settings).created
    store.update_job(job_id, {"next_run_at": LATER})  # only when a test ticks it again
    outcome = handle_one(store, queue, run_id, 1, now=at, settings=settings,
                         clock=lambda: at + MIN)
    assert outcome.state == "succeeded"
    return run_id


def test_all_runs_once_both_upstreams_are_fresh_in_the_commit_of_the_second(memory_store, probe):
    store, settings = memory_store, loop_settings()
    pipeline(store)
    queue = RecordingQueue(settings)
    o1 = run_once(store, settings, queue, "orders", T0)
    assert rollups(store) == []  # rates has never succeeded
    r1 = run_once(store, settings, queue, "rates", T0 + 5 * MIN)
    (doc,) = rollups(store)
    assert doc["id"] == triggered_run_id("rollup", {"sales.orders": o1, "fx.rates": r1})
    assert doc["upstream_versions"] == {"sales.orders": o1, "fx.rates": r1}
    assert doc["trigger_source"] == TriggerSource.UPSTREAM
    assert doc["scheduled_for"] == T0 + 6 * MIN  # its slot: when its upstreams became fresh
    assert queue.sent[-1].run_id == doc["id"]  # its task was sent after the commit
    job = store.job("rollup")
    assert job.trigger_versions == {"sales.orders": o1, "fx.rates": r1}
    # orders again: rates has nothing new for rollup yet
    o2 = run_once(store, settings, queue, "orders", T0 + H)
    assert len(rollups(store)) == 1
    r2 = run_once(store, settings, queue, "rates", T0 + H + 5 * MIN)
    assert len(rollups(store)) == 2
    second = store.run(triggered_run_id("rollup", {"sales.orders": o2, "fx.rates": r2}))
    assert second.interval_start == T0 + 6 * MIN  # from the previous trigger
    deliver_all(store, queue, settings, lambda: T0 + 2 * H)
    assert [c.slot for c in probe.seen if c.job_id == "rollup"] == [T0 + 6 * MIN,
                                                                    T0 + H + 6 * MIN]


def test_a_duplicate_delivery_of_the_upstream_triggers_nothing_more(memory_store, probe):
    store, settings = memory_store, loop_settings()
    pipeline(store, when="any")
    queue = RecordingQueue(settings)
    o1 = run_once(store, settings, queue, "orders", T0)
    again = handle_one(store, queue, o1, 1, now=T0 + 2 * MIN, settings=settings)
    assert again.state == "noop" and len(rollups(store)) == 1


def test_any_runs_for_each_new_upstream_version(memory_store, probe):
    store, settings = memory_store, loop_settings()
    pipeline(store, when="any")
    queue = RecordingQueue(settings)
    run_once(store, settings, queue, "orders", T0)
    run_once(store, settings, queue, "rates", T0 + 5 * MIN)
    run_once(store, settings, queue, "orders", T0 + H)
    assert len(rollups(store)) == 3


def test_two_upstreams_finishing_at_once_make_one_run_in_all_mode(db, probe):
    store, settings = Store(db), loop_settings()
    pipeline(store)
    queue = RecordingQueue(settings)
    run_once(store, settings, queue, "orders", T0)
    run_once(store, settings, queue, "rates", T0)  # rollup ran for both
    assert len(rollups(store)) == 1
    # both again, finishing together: only the second commit sees both fresh
    ids = []
    for job_id in ("orders", "rates"):
        store.update_job(job_id, {"next_run_at": T0 + H})
        ids += tick_once(store, queue, now=T0 + H, settings=settings).created
    barrier = threading.Barrier(2)
    probe.sleep = 0.0

    def finish(run_id):
        def clock():
            barrier.wait(10)
            return T0 + H + MIN
        handle_one(Store(db), queue, run_id, 1, now=T0 + H, settings=settings, clock=clock)

    threads = [threading.Thread(target=finish, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(store.run(i).status == RunStatus.SUCCEEDED for i in ids)
    assert len(rollups(store)) == 2


def test_a_paused_downstream_is_not_triggered_and_catches_up_when_resumed(memory_store, probe):
    store, settings = memory_store, loop_settings()
    pipeline(store)
    queue = RecordingQueue(settings)
    pause_job(store, "rollup", reason="hold the rollup", now=T0)
    run_once(store, settings, queue, "orders", T0)
    run_once(store, settings, queue, "rates", T0)
    assert rollups(store) == []
    resume_job(store, "rollup", now=T0 + H)
    run_once(store, settings, queue, "orders", T0 + H)
    assert len(rollups(store)) == 1  # both have versions rollup never ran with


def test_a_backfill_of_an_old_slot_triggers_nothing_downstream(memory_store, probe):
    store, settings = memory_store, loop_settings()
    pipeline(store, when="any")
    queue = RecordingQueue(settings)
    run_once(store, settings, queue, "orders", T0)
    assert len(rollups(store)) == 1
    start_backfill(store, queue, "orders", T0 - 5 * H, T0 - H, now=T0 + 10 * MIN,
                   settings=settings, max_parallel=2)
    deliver_all(store, queue, settings, lambda: T0 + 20 * MIN, start=len(queue.sent) - 2)
    assert len([c for c in probe.seen if c.trigger_source == "backfill"]) == 5
    assert len(rollups(store)) == 1


def test_a_trigger_loop_that_got_in_stops_at_the_depth_bound_and_says_so(db, probe):
    """Defense in depth (issue 20): a loop written past every check (here: directly)
    runs no deeper than the number of jobs; the refusal is recorded on the job."""
    store, settings = Store(db), loop_settings()
    a = add_job(store, "a", kind="slot_probe", produces=("x",), next_run_at=LATER,
                cron="0 * * * *", trigger={"after": ["y"]})
    b = add_job(store, "b", kind="slot_probe", produces=("y",), schedule=None,
                next_run_at=None, trigger={"after": ["x"]})
    register_triggers(store, a)
    register_triggers(store, b)
    store.put_trigger_graph(jobs=2)
    queue = RecordingQueue(settings)
    first = run_once(store, settings, queue, "a", T0)
    deliver_all(store, queue, settings, lambda: T0 + 2 * MIN)
    runs = {d.id: d.to_dict() for d in db.collection("runs").stream()}
    depths = sorted((r["job_id"], r["trigger_depth"]) for r in runs.values())
    assert depths == [("a", 0), ("a", 2), ("b", 1)]  # b at depth 3 was not created
    assert all(r["status"] == RunStatus.SUCCEEDED for r in runs.values())
    refused = store.job("b").trigger_refused
    assert refused["depth"] == 3 and refused["limit"] == 2
    assert refused["upstream_run_id"] != first and "trigger loop" in refused["reason"]
    assert store.job("a").trigger_refused is None
    shown = views.job_json(store.job("b"))["trigger_refused"]  # the api and `jobs show`
    assert shown["depth"] == 3 and shown["at"].endswith("Z")
    spec = yaml.safe_load((Path(views.__file__).parent / "openapi.yaml").read_text())
    jsonschema.validate(views.job_json(store.job("b")), {
        **spec["components"]["schemas"]["Job"], "components": spec["components"]})
    run_schema = {**spec["components"]["schemas"]["Run"], "components": spec["components"]}
    for run in store.recent_runs(limit=10):
        jsonschema.validate(views.run_json(run, "demo"), run_schema)
