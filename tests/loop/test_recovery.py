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
    store.lay_out(job_id, ["ds.a"])  # as apply does: its ending reads its group, no more
    queue = RecordingQueue(settings)
    run_id = tick_once(store, queue, now=T0, settings=settings).created[0]
    from freshet.core.control import Control

    store.transact(lambda tx: runner._claim(tx, run_id, 1, Control(), T0, settings))
    return run_id, queue


def test_crash_mid_run_is_recovered_and_retried(memory_store, crash_then_succeed):
    store, settings = memory_store, loop_settings(default_stuck_minutes=30)
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


def test_stuck_threshold_boundary_per_job(memory_store, crash_then_succeed):
    store, settings = memory_store, loop_settings(default_stuck_minutes=30)
    run_id, queue = start_and_abandon(store, settings, stuck_threshold_minutes=90)
    assert sweep_once(store, queue, now=T0 + 89 * MIN, settings=settings).expired == 0
    assert sweep_once(store, queue, now=T0 + 91 * MIN, settings=settings).stuck_retried == [
        run_id]


def test_default_threshold_boundary(memory_store, crash_then_succeed):
    store, settings = memory_store, loop_settings(default_stuck_minutes=30)
    run_id, queue = start_and_abandon(store, settings)
    assert sweep_once(store, queue, now=T0 + 29 * MIN, settings=settings).expired == 0
    assert sweep_once(store, queue, now=T0 + 31 * MIN, settings=settings).expired == 1


def test_stuck_on_the_last_attempt_fails_the_run_as_stuck(memory_store, crash_then_succeed):
    store, settings = memory_store, loop_settings()
    run_id, queue = start_and_abandon(store, settings, max_retries=0)
    result = sweep_once(store, queue, now=T0 + 31 * MIN, settings=settings)
    assert result.stuck_failed == [run_id]
    run = store.run(run_id)
    assert run.status == "failed" and run.stuck and "stuck" in run.error
    assert "stuck" in store.job("a").last_error


def test_queued_run_whose_task_never_arrived_is_sent_again(memory_store):
    store, settings = memory_store, loop_settings(queued_grace_s=600)
    add_job(store, "a", next_run_at=T0)
    lost = RecordingQueue(settings, fail=True)
    run_id = tick_once(store, lost, now=T0, settings=settings).created[0]
    queue = RecordingQueue(settings)
    assert sweep_once(store, queue, now=T0 + 9 * MIN, settings=settings).redispatched == []
    result = sweep_once(store, queue, now=T0 + 11 * MIN, settings=settings)
    assert result.redispatched == [run_id]
    assert (queue.sent[0].attempt, queue.sent[0].dispatch) == (1, 1)


def test_recovery_reports_jobs_the_scheduler_did_not_tick(memory_store):
    store, settings = memory_store, loop_settings(not_ticking_after_s=600)
    add_job(store, "idle", next_run_at=T0)
    queue = RecordingQueue(settings)
    assert sweep_once(store, queue, now=T0 + 9 * MIN, settings=settings).not_ticking == []
    assert sweep_once(store, queue, now=T0 + 11 * MIN, settings=settings).not_ticking == [
        "idle"]


def test_sweep_reads_only_expired_runs(memory_store, crash_then_succeed):
    store, settings = memory_store, loop_settings()
    run_id, queue = start_and_abandon(store, settings)
    for i in range(20):
        add_job(store, f"ok{i}", next_run_at=T0 + timedelta(days=1))
    store.stats.reset()
    result = sweep_once(store, queue, now=T0 + 31 * MIN, settings=settings)
    # The expired run (the query), its dataset and the not-ticking query: the run is not
    # read again (its write is a compare-and-set on the version the query found) and
    # neither is its job (the run carries its stuck threshold); and the (empty) query
    # for active backfills.
    assert result.stuck_retried == [run_id]
    assert store.stats.reads == 4


def test_a_run_that_changed_after_the_query_is_decided_on_what_it_is_now(
        memory_store, crash_then_succeed):
    from freshet.loop import recover

    store, settings = memory_store, loop_settings()
    run_id, queue = start_and_abandon(store, settings)
    [(found, version)] = store.expired_runs_versioned(T0 + 31 * MIN)
    store.update_run(run_id, {"lease_expires_at": T0 + 60 * MIN})  # a late heartbeat
    decision = recover._recover_run(store, found, version, T0 + 31 * MIN, settings)
    assert decision.verdict == "settled"
    assert store.run(run_id).status == "running"


def test_a_stuck_run_whose_job_is_gone_is_still_recovered(db, crash_then_succeed):
    store, settings = Store(db), loop_settings()
    run_id, queue = start_and_abandon(store, settings)
    db.collection("jobs").document("a").delete()
    result = sweep_once(store, queue, now=T0 + 31 * MIN, settings=settings)
    assert result.stuck_retried == [run_id]
    assert store.run(run_id).attempt_number == 2
    assert db.collection("jobs").document("a").get().exists is False  # not recreated


def test_a_stuck_run_of_a_one_time_job_reads_the_job_and_completes_it(memory_store,
                                                                      crash_then_succeed):
    store, settings = memory_store, loop_settings()
    run_id, queue = start_and_abandon(store, settings, max_retries=0,
                                      schedule={"run_at": T0.isoformat()})
    store.stats.reset()
    assert sweep_once(store, queue, now=T0 + 31 * MIN, settings=settings).stuck_failed == [
        run_id]
    # the query; run, job, dataset; not-ticking; active backfills
    assert store.stats.reads == 1 + 3 + 1 + 1
    assert store.job("a").status == "completed"


def test_a_run_started_before_runs_kept_their_threshold_takes_it_from_the_job(
        memory_store, crash_then_succeed):
    store, settings = memory_store, loop_settings()
    run_id, queue = start_and_abandon(store, settings, stuck_threshold_minutes=40)
    store.update_run(run_id, {"stuck_threshold_minutes": None})
    result = sweep_once(store, queue, now=T0 + 41 * MIN, settings=settings)
    assert result.stuck_retried == [run_id]
    assert "no heartbeat for 40 min" in store.run(run_id).error
