"""Pools: a job's runs, and every task sent for them later (retries by recovery,
deferrals behind an overlapping run), go to the job's pool queue."""

from datetime import timedelta

from freshet.core.control import Control
from freshet.loop.manual import run_now
from freshet.loop.recover import sweep_once
from freshet.loop.run import _claim, handle_one
from freshet.loop.tick import tick_once
from tests.loop.helpers import MIN, T0, RecordingQueue, add_job, loop_settings

POOL_QUEUE = "freshet-runs-warehouse"


def test_a_pooled_jobs_runs_and_every_later_task_go_to_its_pool_queue(memory_store):
    store, settings = memory_store, loop_settings(queued_grace_s=60)
    add_job(store, "load", pool="warehouse", next_run_at=T0, cron="*/5 * * * *")
    add_job(store, "plain", next_run_at=T0)
    queue = RecordingQueue(settings)
    tick_once(store, queue, now=T0, settings=settings)
    wanted = {"load__20261128T120000Z": POOL_QUEUE, "plain__20261128T120000Z": "freshet-runs"}
    assert {t.run_id: t.queue for t in queue.sent} == wanted
    assert store.run("load__20261128T120000Z").queue == POOL_QUEUE
    # their tasks never arrive: recovery sends them again, each to its own queue
    sweep_once(store, queue, now=T0 + 2 * MIN, settings=settings)
    assert {t.run_id: t.queue for t in queue.sent[2:]} == wanted


def test_a_deferred_run_waits_in_its_pool_queue(memory_store):
    store, settings = memory_store, loop_settings()
    add_job(store, "load", pool="warehouse", next_run_at=T0, cron="*/5 * * * *")
    queue = RecordingQueue(settings)
    first = tick_once(store, queue, now=T0, settings=settings).created[0]
    store.transact(lambda tx: _claim(tx, first, 1, Control(), T0, settings))  # running
    store.update_job("load", {"next_run_at": T0 + 5 * MIN})
    second = tick_once(store, queue, now=T0 + 5 * MIN, settings=settings).created[0]
    outcome = handle_one(store, queue, second, 1, now=T0 + 5 * MIN, settings=settings)
    assert outcome.state == "deferred"
    assert (queue.sent[-1].run_id, queue.sent[-1].queue) == (second, POOL_QUEUE)


def test_a_manual_run_of_a_pooled_job_goes_to_its_pool(memory_store):
    store, settings = memory_store, loop_settings()
    add_job(store, "load", pool="warehouse", next_run_at=T0 + timedelta(days=1))
    queue = RecordingQueue(settings)
    run, _ = run_now(store, queue, "load", now=T0, settings=settings)
    assert run.queue == POOL_QUEUE and queue.sent[0].queue == POOL_QUEUE
    # a manual run's slot is when it was asked for; its interval starts at the last slot
    assert run.slot == T0 and run.interval_start == T0 - 5 * MIN
