"""Syncs that raise, hang past their lease, or kill their process: every run still ends
exactly once, and its datasets tell the truth.

The HTTP cases serve run_task with functions-framework (one request per worker, a
3 s request timeout); deliveries and Cloud Tasks' retries come from harness.CloudTasks
so the test controls time; recovery runs in-process with `now` past the lease."""

import threading
from datetime import timedelta

from freshet.core.timeutil import utcnow
from freshet.gcp.store import Store
from freshet.loop.run import handle_one
from freshet.loop.tick import tick_once
from tests.loop.helpers import MIN, T0, add_job
from tests.reliability import syncs
from tests.reliability.harness import CloudTasks, in_process, over_http, settle
from tests.reliability.invariants import check


def probe_job(store, tmp_path, job_id, *, next_run_at=T0, max_retries=3, **params):
    log = tmp_path / f"{job_id}.log"
    add_job(store, job_id, kind="rel_probe", produces=(f"ds.{job_id}",), cron="* * * * *",
            next_run_at=next_run_at, max_retries=max_retries, stuck_threshold_minutes=1,
            params={"log": str(log), **params})
    return log


def tick(store, settings, now):
    queue = CloudTasks(settings)
    created = tick_once(store, queue, now=now, settings=settings).created
    return queue, created


# -- in-process ------------------------------------------------------------------


def test_a_sync_that_raises_is_retried_until_it_succeeds(db, settings, tmp_path):
    store = Store(db)
    log = probe_job(store, tmp_path, "raise", mode="raise", upto=2)
    queue, (run_id,) = tick(store, settings, T0)
    settle(store, queue, settings, in_process(store, queue, settings), T0)
    run = store.run(run_id)
    assert (run.status, run.attempt_number) == ("succeeded", 3)
    assert [a.outcome for a in run.attempts] == ["retrying", "retrying", "succeeded"]
    check(db, slots={"raise": [T0]}, executions=syncs.executions(log))


def test_a_sync_that_fails_permanently_runs_once_and_marks_the_dataset_failing(
        db, settings, tmp_path):
    store = Store(db)
    log = probe_job(store, tmp_path, "perm", mode="permanent", upto=9)
    queue, (run_id,) = tick(store, settings, T0)
    settle(store, queue, settings, in_process(store, queue, settings), T0)
    assert store.run(run_id).status == "failed"
    assert syncs.executions(log) == [(run_id, 1)]
    world = check(db, executions=syncs.executions(log))
    assert world.datasets["ds.perm"].failing
    assert "404" in world.jobs["perm"].last_error


def test_a_hung_attempt_that_wakes_after_recovery_does_not_overwrite_the_verdict(
        db, settings, tmp_path):
    store = Store(db)
    release, entered = threading.Event(), threading.Event()

    def hang_first(ctx):
        if ctx.attempt == 1:
            entered.set()
            release.wait(30)

    syncs.HOOKS["hang_first"] = hang_first
    log = probe_job(store, tmp_path, "hang", hook="hang_first")
    queue, (run_id,) = tick(store, settings, T0)
    late = []
    worker = threading.Thread(target=lambda: late.append(
        handle_one(Store(db), queue, run_id, 1, now=T0, settings=settings,
                   clock=lambda: T0 + 5 * MIN)))
    worker.start()
    assert entered.wait(10)
    queue.sent.clear()
    # The lease (1 min) runs out: recovery retries; attempt 2 succeeds.
    settle(store, queue, settings, in_process(store, queue, settings), T0 + 2 * MIN)
    release.set()
    worker.join(30)
    assert late[0].state == "noop"  # attempt 1's late finish is discarded
    run = store.run(run_id)
    assert (run.status, run.attempt_number, run.stuck) == ("succeeded", 2, True)
    world = check(db, executions=syncs.executions(log))
    assert world.datasets["ds.hang"].last_success_at == run.finished_at


# -- through functions-framework -------------------------------------------------


def test_a_sync_that_kills_its_process_is_recovered_and_runs_again(
        db, settings, served_run_task, tmp_path):
    store = Store(db)
    now = utcnow()
    log = probe_job(store, tmp_path, "exit", mode="exit", next_run_at=now)
    queue, (run_id,) = tick(store, settings, now)
    deliver = over_http(served_run_task.url)
    statuses = queue.drain(deliver, now)
    # attempt 1 died with its worker; Cloud Tasks' retry finds the run still running
    assert statuses[0] == 0 and statuses[-1] == 200
    assert store.run(run_id).status == "running"
    settle(store, queue, settings, deliver, now)
    run = store.run(run_id)
    assert (run.status, run.attempt_number) == ("succeeded", 2)
    assert run.attempts[0].outcome == "stuck"
    assert syncs.executions(log) == [(run_id, 1), (run_id, 2)]
    check(db, slots={"exit": [now]}, executions=syncs.executions(log))


def test_a_sync_that_hangs_past_the_request_timeout_is_killed_recovered_and_retried(
        db, settings, served_run_task, tmp_path):
    store = Store(db)
    now = utcnow()
    log = probe_job(store, tmp_path, "hangs", mode="hang", seconds=3600, next_run_at=now)
    queue, (run_id,) = tick(store, settings, now)
    deliver = over_http(served_run_task.url)
    statuses = queue.drain(deliver, now)
    # the request timeout aborted the worker: gunicorn answers 500 (the platform 504)
    assert statuses[0] == 0 or statuses[0] >= 500
    assert store.run(run_id).status == "running"
    settle(store, queue, settings, deliver, now + timedelta(seconds=5))
    run = store.run(run_id)
    assert (run.status, run.attempt_number, run.stuck) == ("succeeded", 2, True)
    assert "stuck" in run.attempts[0].error
    check(db, slots={"hangs": [now]}, executions=syncs.executions(log))


def test_a_sync_that_raises_over_http_answers_503_then_200(
        db, settings, served_run_task, tmp_path):
    store = Store(db)
    now = utcnow()
    log = probe_job(store, tmp_path, "flaky", mode="raise", upto=1, next_run_at=now)
    queue, (run_id,) = tick(store, settings, now)
    assert queue.drain(over_http(served_run_task.url), now) == [503, 200]
    assert store.run(run_id).status == "succeeded"
    check(db, executions=syncs.executions(log))
