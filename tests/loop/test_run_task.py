import threading
from datetime import timedelta

import pytest

from freshet.core.bookkeeping import with_running
from freshet.core.errors import PermanentError
from freshet.gcp.store import Store
from freshet.loop import registry
from freshet.loop.run import handle_one
from freshet.loop.tick import tick_once
from freshet.ops.views import all_datasets
from tests.loop.helpers import MIN, T0, RecordingQueue, add_job, loop_settings


class Calls:
    def __init__(self):
        self.count = 0
        self.lock = threading.Lock()
        self.gate = threading.Event()
        self.gate.set()
        self.behaviour = lambda ctx: {k: 5 for k in ctx.produces}

    def __call__(self, ctx):
        with self.lock:
            self.count += 1
        self.gate.wait(10)
        return self.behaviour(ctx)


@pytest.fixture
def calls():
    c = Calls()
    registry.sync("test_counted")(c)
    yield c
    registry.unregister("test_counted")


def queued_run(store, settings, job_id="a", **kw):
    add_job(store, job_id, kind="test_counted", produces=("ds.a",), next_run_at=T0, **kw)
    queue = RecordingQueue(settings)
    run_id = tick_once(store, queue, now=T0, settings=settings).created[0]
    return run_id, queue


def test_a_run_marks_its_job_running_and_writes_its_datasets_once_when_it_ends(
        memory_store, calls):
    """The start writes the run and the job, however many datasets: the page, the API
    and the console show the datasets running from the job (with_running)."""
    store, settings = memory_store, loop_settings()
    keys = [f"ds.{i}" for i in range(5)]
    add_job(store, "five", kind="test_counted", produces=keys, next_run_at=T0)
    store.lay_out("five", keys)  # as apply does
    queue = RecordingQueue(settings)
    run_id = tick_once(store, queue, now=T0, settings=settings).created[0]
    seen = {}

    def during(ctx):
        job = store.job("five")
        seen["stored"] = [store.get_dataset(k) for k in keys]
        seen["shown"] = with_running([], [job])
        seen["api"] = all_datasets(store, T0 + MIN, [job])
        return {k: 1 for k in ctx.produces}

    calls.behaviour = during
    store.stats.reset()
    assert handle_one(store, queue, run_id, 1, now=T0 + MIN, settings=settings,
                      clock=lambda: T0 + 2 * MIN).state == "succeeded"
    assert seen["stored"] == [None] * 5  # the start wrote no dataset
    assert {(d.key, d.running_run_id, d.last_started_at) for d in seen["shown"]} == {
        (k, run_id, T0 + MIN) for k in keys}
    assert {d["key"]: d["last_started_at"] for d in seen["api"]} == {
        k: "2026-11-28T12:01:00Z" for k in keys}
    assert store.stats.writes == 2 + 2 + 1  # claim: run, job; finish: run, job, datasets
    # (the five in one document: their group, core.groups)
    after = store.get_dataset("ds.0")
    assert after.last_started_at == T0 + MIN and after.last_started_run_id == run_id
    assert not after.running and not store.job("five").refreshing


def test_success_records_the_run_the_job_and_the_dataset(memory_store, calls):
    store, settings = memory_store, loop_settings()
    run_id, queue = queued_run(store, settings)
    store.update_job("a", {"last_error": "old failure"})
    outcome = handle_one(store, queue, run_id, 1, now=T0 + MIN, settings=settings,
                         clock=lambda: T0 + 2 * MIN)
    assert (outcome.status, outcome.state) == (200, "succeeded")
    run = store.run(run_id)
    assert run.status == "succeeded" and run.records == {"ds.a": 5}
    assert run.started_at == T0 + MIN and run.finished_at == T0 + 2 * MIN
    assert run.lease_expires_at is None
    job = store.job("a")
    assert job.last_run_status == "succeeded" and job.last_error is None
    ds = store.get_dataset("ds.a")
    assert ds.last_success_at == T0 + 2 * MIN and ds.last_record_count == 5


def test_duplicate_delivery_of_a_finished_run_is_a_noop(memory_store, calls):
    store, settings = memory_store, loop_settings()
    run_id, queue = queued_run(store, settings)
    handle_one(store, queue, run_id, 1, now=T0 + MIN, settings=settings)
    again = handle_one(store, queue, run_id, 1, now=T0 + 2 * MIN, settings=settings)
    assert (again.status, again.state) == (200, "noop") and calls.count == 1


def test_the_same_task_delivered_twice_at_once_runs_the_sync_once(db, calls):
    store, settings = Store(db), loop_settings()
    run_id, queue = queued_run(store, settings)
    calls.gate.clear()
    outcomes = []

    def deliver():
        outcomes.append(handle_one(Store(db), queue, run_id, 1, now=T0 + MIN,
                                   settings=settings).state)

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for t in threads:
        t.start()
    threads[0].join(0.5)
    calls.gate.set()
    for t in threads:
        t.join()
    assert calls.count == 1
    assert sorted(outcomes) == ["noop", "succeeded"]


def test_max_retries_n_gives_n_plus_one_attempts_then_fails_with_last_error(memory_store, calls):
    store, settings = memory_store, loop_settings()
    run_id, queue = queued_run(store, settings, max_retries=2)

    def fail(ctx):
        raise ConnectionError(f"upstream down on attempt {ctx.attempt}")

    calls.behaviour = fail
    answers = [handle_one(store, queue, run_id, attempt, now=T0 + attempt * MIN,
                          settings=settings).status for attempt in (1, 2, 3)]
    assert answers == [503, 503, 200]
    assert calls.count == 3
    run = store.run(run_id)
    assert run.status == "failed" and run.attempt_number == 3
    assert [a.error for a in run.attempts] == [
        f"ConnectionError: upstream down on attempt {n}" for n in (1, 2, 3)]
    assert store.job("a").last_error == "ConnectionError: upstream down on attempt 3"
    ds = store.get_dataset("ds.a")
    assert ds.consecutive_failures == 1 and ds.last_success_at is None
    late = handle_one(store, queue, run_id, 4, now=T0 + 9 * MIN, settings=settings)
    assert (late.status, calls.count) == (200, 3)


def test_permanent_error_is_not_retried(memory_store, calls):
    store, settings = memory_store, loop_settings()
    run_id, queue = queued_run(store, settings, max_retries=5)

    def bad(ctx):
        raise PermanentError("params.url is missing")

    calls.behaviour = bad
    outcome = handle_one(store, queue, run_id, 1, now=T0 + MIN, settings=settings)
    assert (outcome.status, outcome.state) == (200, "failed")
    assert store.run(run_id).status == "failed"
    assert store.job("a").last_error == "PermanentError: params.url is missing"


def test_unknown_kind_fails_permanently(memory_store):
    store, settings = memory_store, loop_settings()
    add_job(store, "ghost", kind="no_such_kind", next_run_at=T0)
    queue = RecordingQueue(settings)
    run_id = tick_once(store, queue, now=T0, settings=settings).created[0]
    outcome = handle_one(store, queue, run_id, 1, now=T0 + MIN, settings=settings)
    assert outcome.state == "failed" and "no sync is registered" in store.run(run_id).error


def test_second_run_of_a_job_waits_while_the_first_is_running(memory_store, calls):
    store, settings = memory_store, loop_settings()
    add_job(store, "a", kind="test_counted", produces=("ds.a",), cron="* * * * *",
            next_run_at=T0)
    queue = RecordingQueue(settings)
    first = tick_once(store, queue, now=T0, settings=settings).created[0]
    second = tick_once(store, queue, now=T0 + MIN, settings=settings).created[0]
    calls.gate.clear()
    runner = threading.Thread(target=handle_one, args=(memory_store, queue, first, 1),
                              kwargs={"now": T0 + MIN, "settings": settings})
    runner.start()
    for _ in range(100):
        if store.run(first).status == "running":
            break
        threading.Event().wait(0.05)
    outcome = handle_one(store, queue, second, 1, now=T0 + MIN, settings=settings)
    calls.gate.set()
    runner.join()
    assert outcome.state == "deferred"
    assert store.run(second).status == "queued" and store.run(second).dispatches == 1
    assert queue.sent[-1].schedule_time == T0 + MIN + timedelta(seconds=30)
    assert calls.count == 1


def test_job_that_allows_overlap_runs_concurrently(memory_store, calls):
    store, settings = memory_store, loop_settings()
    add_job(store, "a", kind="test_counted", produces=("ds.a",), cron="* * * * *",
            next_run_at=T0, allow_overlap=True)
    queue = RecordingQueue(settings)
    first = tick_once(store, queue, now=T0, settings=settings).created[0]
    second = tick_once(store, queue, now=T0 + MIN, settings=settings).created[0]
    calls.gate.clear()
    runner = threading.Thread(target=handle_one, args=(memory_store, queue, first, 1),
                              kwargs={"now": T0 + MIN, "settings": settings})
    runner.start()
    while store.run(first).status != "running":
        threading.Event().wait(0.05)
    calls.gate.set()
    outcome = handle_one(store, queue, second, 1, now=T0 + MIN, settings=settings)
    runner.join()
    assert outcome.state == "succeeded" and calls.count == 2


def test_kind_switched_off_fails_the_run_without_running_it(memory_store, calls):
    store, settings = memory_store, loop_settings()
    run_id, queue = queued_run(store, settings)
    store.set_control({"disabled_kinds": ["test_counted"], "reason": "vendor outage"})
    outcome = handle_one(store, queue, run_id, 1, now=T0 + MIN, settings=settings)
    assert outcome.state == "failed" and calls.count == 0
    assert "vendor outage" in store.run(run_id).error
    assert store.get_dataset("ds.a") is None


def test_one_time_job_completes_after_its_run(memory_store, calls):
    store, settings = memory_store, loop_settings()
    add_job(store, "once", kind="test_counted", schedule={"run_at": T0}, next_run_at=T0)
    queue = RecordingQueue(settings)
    run_id = tick_once(store, queue, now=T0, settings=settings).created[0]
    handle_one(store, queue, run_id, 1, now=T0, settings=settings, clock=lambda: T0 + MIN)
    job = store.job("once")
    assert job.status == "completed" and job.completed_at == T0 + MIN


def test_a_watermark_without_a_timezone_fails_the_run_permanently(memory_store, calls):
    from datetime import datetime

    store, settings = memory_store, loop_settings()
    calls.behaviour = lambda ctx: registry.SyncResult(
        records={"ds.a": 1}, watermarks={"ds.a": datetime(2026, 11, 28, 9, 0)})
    run_id, queue = queued_run(store, settings, max_retries=3)
    outcome = handle_one(store, queue, run_id, 1, now=T0 + MIN, settings=settings)
    assert (outcome.status, outcome.state) == (200, "failed")  # not retried
    assert "must be a timezone-aware datetime" in store.run(run_id).error


def test_a_success_keeps_the_job_timings_and_the_data_time(memory_store, calls):
    store, settings = memory_store, loop_settings()
    calls.behaviour = lambda ctx: registry.SyncResult(
        records={"ds.a": 1}, watermarks={"ds.a": T0 - 3 * MIN})
    run_id, queue = queued_run(store, settings)
    handle_one(store, queue, run_id, 1, now=T0 + MIN, settings=settings,
               clock=lambda: T0 + 3 * MIN)
    job = store.job("a")
    assert (job.recent_durations_s, job.recent_start_lags_s) == ([120.0], [60.0])
    ds = store.get_dataset("ds.a")
    assert ds.data_as_of == T0 - 3 * MIN
    assert ds.data_points == [{"at": T0 + 3 * MIN, "as_of": T0 - 3 * MIN}]


def test_a_delivery_during_a_maintenance_window_does_not_start_the_sync(memory_store, calls):
    from freshet.core.errors import Conflict
    from freshet.core.windows import Maintenance, make_window
    from freshet.loop.manual import run_now

    store, settings = memory_store, loop_settings()
    run_id, queue = queued_run(store, settings)
    window = make_window({"id": "vacuum", "start": "2026-11-28T12:00:30Z",
                          "end": "2026-11-28T12:30:00Z"}, "m")
    store.set_control({"maintenance": Maintenance((window,)).to_doc()})
    outcome = handle_one(store, queue, run_id, 1, now=T0 + MIN, settings=settings)
    assert (outcome.status, outcome.state) == (200, "failed")
    assert calls.count == 0
    assert store.run(run_id).error.startswith("not started: maintenance 'vacuum' until")
    assert store.get_dataset("ds.a") is None  # nothing ran: nothing to record
    with pytest.raises(Conflict, match="does not start during maintenance 'vacuum'"):
        run_now(store, queue, "a", now=T0 + MIN, settings=settings)
