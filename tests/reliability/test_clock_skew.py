"""Clocks of the functions skewed by ±30 s: every caller passes its own `now`.

Ticks, deliveries and sweeps each run on a clock 30 s ahead of or behind the truth,
minute after minute, with the production lookahead (60 s): each slot still gets one
run, recovery never takes over a healthy run, and every dataset agrees with its runs.
"""

from datetime import timedelta

from freshet.core.settings import load_settings
from freshet.gcp.store import Store
from freshet.loop.recover import sweep_once
from freshet.loop.tick import tick_once
from tests.loop.helpers import MIN, T0, add_job
from tests.reliability import syncs
from tests.reliability.harness import CloudTasks, concurrently, in_process, settle
from tests.reliability.invariants import check

SKEW = timedelta(seconds=30)
MINUTES = 4


def run_minutes(db, tmp_path, deliver_skew, **params):
    settings = load_settings({}, auth_mode="local", lookahead_s=60)
    store = Store(db)
    log = tmp_path / "exec.log"
    for i in range(3):
        add_job(store, f"s{i}", kind="rel_probe", cron="* * * * *", next_run_at=T0,
                produces=(f"ds.s{i}",), params={"log": str(log), **params})
    queue = CloudTasks(settings)
    for minute in range(MINUTES):
        truth = T0 + minute * MIN + timedelta(seconds=5)
        concurrently(*(lambda skew=skew, truth=truth: tick_once(
                           Store(db), queue, now=truth + skew, settings=settings)
                       for skew in (SKEW, -SKEW)))
        queue.drain(deliver_skew(store, queue, settings), truth)
        for skew in (SKEW, -SKEW):
            result = sweep_once(store, queue, now=truth + skew, settings=settings)
            assert result.stuck_retried == [] and result.stuck_failed == []
    settle(store, queue, settings, in_process(store, queue, settings), T0 + MINUTES * MIN)
    world = check(db, executions=syncs.executions(log))
    for job_id in ("s0", "s1", "s2"):
        slots = sorted(r.scheduled_for for r in world.runs.values() if r.job_id == job_id)
        # every minute from T0 on, none twice, none skipped
        assert slots == [T0 + m * MIN for m in range(len(slots))] and len(slots) >= MINUTES
    return world


def alternating(store, queue, settings):
    """Each delivery lands on an instance whose clock is +30 s or -30 s, by turns."""
    fast = in_process(store, queue, settings, clock_skew=SKEW)
    slow = in_process(store, queue, settings, clock_skew=-SKEW)
    turn = iter(range(10**6))
    return lambda *a: (fast if next(turn) % 2 else slow)(*a)


def test_skewed_ticks_sweeps_and_deliveries_run_each_slot_once(db, tmp_path):
    world = run_minutes(db, tmp_path, alternating)
    assert all(r.status == "succeeded" for r in world.runs.values())


def by_attempt(store, queue, settings):
    """Attempt 1 runs on an instance 30 s ahead, its retry on one 30 s behind."""
    fast = in_process(store, queue, settings, clock_skew=SKEW)
    slow = in_process(store, queue, settings, clock_skew=-SKEW)
    return lambda run_id, attempt, retries, now: (
        fast if attempt + retries == 1 else slow)(run_id, attempt, retries, now)


def test_a_retry_on_a_slower_clock_leaves_the_dataset_not_running(db, tmp_path):
    run_minutes(db, tmp_path, by_attempt, mode="raise", upto=1)
