"""An attempt that already ran must not run again (found by the soak).

After a transient failure the run is `retrying` and keeps the failed attempt's number
until the next attempt starts. Two deliveries then start that same attempt number a
second time: a duplicate (or late) delivery of the failed attempt's task, and the
retry itself when the overlap rule defers it (the claim re-dispatches it with
`next_attempt=False`, so the new task carries the old number). Each time the sync
runs again under an attempt number that has already run, `runs.started` replaces that
attempt's entry in the history (its error is lost), and the extra run does not count
against max_retries."""


from freshet.core.control import Control
from freshet.gcp.store import Store
from freshet.loop import run as runner
from freshet.loop.run import handle_one
from freshet.loop.tick import tick_once
from tests.loop.helpers import MIN, T0, add_job
from tests.reliability import syncs
from tests.reliability.harness import CloudTasks


def failed_once(db, settings, tmp_path, **kw):
    store = Store(db)
    log = tmp_path / "exec.log"
    add_job(store, "a", kind="rel_probe", cron="* * * * *", next_run_at=T0, produces=("ds.a",),
            params={"log": str(log), "mode": "raise", "upto": 1}, **kw)
    queue = CloudTasks(settings)
    (run_id,) = tick_once(store, queue, now=T0, settings=settings).created
    assert handle_one(store, queue, run_id, 1, now=T0, settings=settings).state == "retrying"
    return store, queue, run_id, log


def test_a_duplicate_delivery_of_a_failed_attempt_does_not_run_it_again(
        db, settings, tmp_path):
    store, queue, run_id, log = failed_once(db, settings, tmp_path)
    again = handle_one(store, queue, run_id, 1, now=T0 + MIN, settings=settings)
    assert again.state == "noop"
    assert syncs.executions(log) == [(run_id, 1)]


def test_a_retry_deferred_by_the_overlap_rule_keeps_its_attempt_number(
        db, settings, tmp_path):
    store, queue, run_id, log = failed_once(db, settings, tmp_path)
    # Another run of the same job starts (and is still running) before the retry arrives.
    (other,) = tick_once(store, queue, now=T0 + MIN, settings=settings).created
    store.transact(lambda tx: runner._claim(tx, other, 1, Control(), T0 + MIN, settings))
    queue.sent.clear()
    deferred = handle_one(store, queue, run_id, 2, now=T0 + MIN, settings=settings)
    assert deferred.state == "deferred"
    assert [t.attempt for t in queue.sent] == [2]
    assert store.run(run_id).attempts[0].outcome == "retrying"
