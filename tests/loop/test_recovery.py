from datetime import timedelta

import pytest

from freshet.gcp.store import Store
from freshet.loop import registry
from freshet.loop.recover import sweep_once
from freshet.loop.run import handle_one
from freshet.loop.tick import tick_once
from tests.loop.helpers import MIN, T0, RecordingQueue, add_job, loop_settings


@pytest.fixture
def crash_then_succeed():
    """Attempt 1 'crashes' (the process dies mid-run: simulated by starting the run and
    never finishing it); later attempts succeed."""
    registry.sync("test_ok")(lambda ctx: {k: 1 for k in ctx.produces})
    yield
    registry.unregister("test_ok")


def start_and_abandon(store, settings, job_id="a", **kw):
    """Claim attempt 1 the way run_task does, then 'crash' before finishing."""
    from freshet.loop import run as runner

    add_job(store, job_id, kind="test_ok", produces=("ds.a",), next_run_at=T0, **kw)
    queue = RecordingQueue(settings)
    run_id = tick_once(store, queue, now=T0, settings=settings).created[0]
    from freshet.core.control import Control

    store.transact(lambda tx: runner._claim(tx, run_id, 1, Control(), T0, settings))
    return run_id, queue


def test_crash_mid_run_is_recovered_and_retried(db, crash_then_succeed):
    store, settings = Store(db), loop_settings(default_stuck_minutes=30)
    run_id, queue = start_and_abandon(store, settings)
    result = sweep_once(store, queue, now=T0 + 31 * MIN, settings=settings)
    assert result.stuck_retried == [run_id]
    run = store.run(run_id)
    assert run.status == "queued" and run.attempt_number == 2 and run.stuck
    assert run.attempts[0].outcome == "stuck"
    assert queue.sent[-1].attempt == 2
    ds = store.get_dataset("ds.a")
    assert ds.last_failure_at == T0 + 31 * MIN and "stuck" in ds.last_error
    outcome = handle_one(store, queue, run_id, 2, now=T0 + 32 * MIN, settings=settings)
    assert outcome.state == "succeeded"
    assert store.get_dataset("ds.a").consecutive_failures == 0


def test_stuck_threshold_boundary_per_job(db, crash_then_succeed):
    store, settings = Store(db), loop_settings(default_stuck_minutes=30)
    run_id, queue = start_and_abandon(store, settings, stuck_threshold_minutes=90)
    assert sweep_once(store, queue, now=T0 + 89 * MIN, settings=settings).expired == 0
    assert sweep_once(store, queue, now=T0 + 91 * MIN, settings=settings).stuck_retried == [
        run_id]


def test_default_threshold_boundary(db, crash_then_succeed):
    store, settings = Store(db), loop_settings(default_stuck_minutes=30)
    run_id, queue = start_and_abandon(store, settings)
    assert sweep_once(store, queue, now=T0 + 29 * MIN, settings=settings).expired == 0
    assert sweep_once(store, queue, now=T0 + 31 * MIN, settings=settings).expired == 1


def test_stuck_on_the_last_attempt_fails_the_run_as_stuck(db, crash_then_succeed):
    store, settings = Store(db), loop_settings()
    run_id, queue = start_and_abandon(store, settings, max_retries=0)
    result = sweep_once(store, queue, now=T0 + 31 * MIN, settings=settings)
    assert result.stuck_failed == [run_id]
    run = store.run(run_id)
    assert run.status == "failed" and run.stuck and "stuck" in run.error
    assert "stuck" in store.job("a").last_error


def test_queued_run_whose_task_never_arrived_is_sent_again(db):
    store, settings = Store(db), loop_settings(queued_grace_s=600)
    add_job(store, "a", next_run_at=T0)
    lost = RecordingQueue(settings, fail=True)
    run_id = tick_once(store, lost, now=T0, settings=settings).created[0]
    queue = RecordingQueue(settings)
    assert sweep_once(store, queue, now=T0 + 9 * MIN, settings=settings).redispatched == []
    result = sweep_once(store, queue, now=T0 + 11 * MIN, settings=settings)
    assert result.redispatched == [run_id]
    assert (queue.sent[0].attempt, queue.sent[0].dispatch) == (1, 1)


def test_recovery_reports_jobs_the_scheduler_did_not_tick(db):
    store, settings = Store(db), loop_settings(not_ticking_after_s=600)
    add_job(store, "idle", next_run_at=T0)
    queue = RecordingQueue(settings)
    assert sweep_once(store, queue, now=T0 + 9 * MIN, settings=settings).not_ticking == []
    assert sweep_once(store, queue, now=T0 + 11 * MIN, settings=settings).not_ticking == [
        "idle"]


def test_sweep_reads_only_expired_runs(db, crash_then_succeed):
    store, settings = Store(db), loop_settings()
    run_id, queue = start_and_abandon(store, settings)
    for i in range(20):
        add_job(store, f"ok{i}", next_run_at=T0 + timedelta(days=1))
    store.stats.reset()
    sweep_once(store, queue, now=T0 + 31 * MIN, settings=settings)
    # the expired run + its transactional re-read + job + dataset + not-ticking query
    # + the (empty) query for active backfills
    assert store.stats.reads <= 7
