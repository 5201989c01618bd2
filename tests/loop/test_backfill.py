"""Backfills against the emulator: planning, the tick's run ids, pacing by lanes,
reruns, cancelling, freshness, and recovery's backstop. Deliveries are in process
(RecordingQueue + run_task's step); the 48-slot test through a concurrent dispatcher
is in tests/integration/test_scheduling.py."""

from datetime import timedelta

import pytest

from freshet.core import backfill as bf
from freshet.core.control import Control
from freshet.core.created import Created
from freshet.core.errors import Conflict, NotFound, ValidationError
from freshet.core.lifecycle import SyncOutcome
from freshet.core.models import RunStatus, TriggerSource
from freshet.core.runs import scheduled_run_id
from freshet.gcp.store import Store
from freshet.loop.backfill import (
    backfill_view,
    cancel_backfill,
    fold_successes,
    plan_backfill,
    start_backfill,
    sweep_backfills,
)
from freshet.loop.recover import sweep_once
from freshet.loop.run import _claim, _finish
from freshet.loop.tick import tick_once
from tests.loop.helpers import (
    MIN,
    T0,
    RecordingQueue,
    add_job,
    deliver_all,
    loop_settings,
)
from tests.reliability.invariants import check

H = timedelta(hours=1)
NOW = T0 + 30 * MIN
SLOTS = [T0 - (11 - i) * H for i in range(12)]  # 01:00 .. 12:00


def _world(store):
    settings = loop_settings()
    add_job(store, "orders", kind="slot_probe", cron="0 * * * *", produces=("sales.orders",),
            next_run_at=T0 + H)
    return store, settings, RecordingQueue(settings)


@pytest.fixture
def world(db, probe):
    """On the emulator: for tests that read Firestore itself or check its invariants."""
    return _world(Store(db))


@pytest.fixture
def mem_world(memory_store, probe):
    """On the in-memory store: for tests of the backfill's logic alone."""
    return _world(memory_store)


def succeed(store, settings, slots):
    """Runs the tick made and that succeeded, for these slots."""
    queue = RecordingQueue(settings)
    for slot in slots:
        store.update_job("orders", {"next_run_at": slot})
        tick_once(store, queue, now=slot, settings=settings)
    deliver_all(store, queue, settings, lambda: slots[-1] + MIN)


def test_the_plan_skips_slots_that_succeeded_and_slots_in_flight(mem_world):
    store, settings, _ = mem_world
    succeed(store, settings, SLOTS[2:4])
    store.update_job("orders", {"next_run_at": SLOTS[5]})
    tick_once(store, RecordingQueue(settings), now=SLOTS[5], settings=settings)  # queued
    _, plan = plan_backfill(store, "orders", SLOTS[0], SLOTS[-1] + 5 * H, now=NOW)
    assert plan.slots == tuple(SLOTS)  # up to now, not beyond
    assert plan.done == tuple(SLOTS[2:4]) and plan.busy == (SLOTS[5],)
    assert len(plan.todo) == 9
    _, rerun = plan_backfill(store, "orders", SLOTS[0], SLOTS[-1], now=NOW, rerun=True)
    assert len(rerun.todo) == 11 and rerun.busy == (SLOTS[5],)


def test_a_backfill_runs_each_missing_slot_once_with_the_ticks_ids(mem_world, probe):
    store, settings, queue = mem_world
    succeed(store, settings, SLOTS[2:4])
    made, created = start_backfill(store, queue, "orders", SLOTS[0], SLOTS[-1], now=NOW,
                                   settings=settings, max_parallel=3)
    assert created and made.planned == 10 and made.already_done == 2 and made.lanes == 3
    assert {t.run_id for t in queue.sent} == {scheduled_run_id("orders", s) for s in SLOTS[:2]
                                              + SLOTS[4:5]}  # the 3 oldest, one per lane
    probe.seen.clear()
    deliver_all(store, queue, settings, lambda: NOW + MIN)
    assert sorted(probe.slots) == SLOTS[:2] + SLOTS[4:]
    assert all(c.trigger_source == TriggerSource.BACKFILL for c in probe.seen)
    view = backfill_view(store, made.id)
    assert (view.progress.done, view.progress.finished, view.progress.status) == (10, 10, "done")
    # repeating it (same minute) is the same backfill; a new one finds nothing to do
    again, created_again = start_backfill(store, queue, "orders", SLOTS[0], SLOTS[-1], now=NOW,
                                          settings=settings, max_parallel=3)
    assert again.id == made.id and not created_again
    later, _ = start_backfill(store, queue, "orders", SLOTS[0], SLOTS[-1], now=NOW + H,
                              settings=settings)
    assert later.planned == 0 and later.status == "done"


def test_at_most_max_parallel_runs_exist_unfinished_at_once(world, db):
    store, settings, queue = world
    start_backfill(store, queue, "orders", SLOTS[0], SLOTS[-1], now=NOW, settings=settings,
                   max_parallel=4)
    unfinished = []
    for index in range(12):
        runs = [d.to_dict() for d in db.collection("runs").stream()]
        unfinished.append(sum(r["status"] not in ("succeeded", "failed") for r in runs))
        deliver_all(store, queue, settings, lambda: NOW + MIN, start=index, limit=1)
    assert max(unfinished) == 4 and unfinished[-1] <= 1


def test_a_backfill_racing_the_tick_never_makes_a_slot_twice(world, db):
    store, settings, queue = world
    store.update_job("orders", {"next_run_at": SLOTS[-1]})
    made, _ = start_backfill(store, queue, "orders", SLOTS[-3], SLOTS[-1], now=SLOTS[-1],
                             settings=settings, max_parallel=3)  # 12:00 is the backfill's
    result = tick_once(store, queue, now=SLOTS[-1], settings=settings)
    assert result.created == []  # the slot's run exists: the tick only moves on
    assert store.job("orders").next_run_at == SLOTS[-1] + H
    ids = [d.id for d in db.collection("runs").stream()]
    assert sorted(ids) == sorted(scheduled_run_id("orders", s) for s in SLOTS[-3:])


def test_failed_slots_run_again_as_the_next_generation_and_rerun_runs_everything(mem_world,
                                                                                  probe):
    store, settings, queue = mem_world
    probe.fail = {SLOTS[1]}
    first, _ = start_backfill(store, queue, "orders", SLOTS[0], SLOTS[2], now=NOW,
                              settings=settings, max_parallel=2)
    deliver_all(store, queue, settings, lambda: NOW + MIN)
    assert backfill_view(store, first.id).progress.failed == 1
    probe.fail, sent = set(), len(queue.sent)
    second, _ = start_backfill(store, queue, "orders", SLOTS[0], SLOTS[2], now=NOW + H,
                               settings=settings)
    assert second.planned == 1
    assert [t.run_id for t in queue.sent[sent:]] == [scheduled_run_id("orders", SLOTS[1]) + "G1"]
    deliver_all(store, queue, settings, lambda: NOW + H, start=sent)
    rerun, _ = start_backfill(store, queue, "orders", SLOTS[0], SLOTS[2], now=NOW + 2 * H,
                              settings=settings, rerun=True, max_parallel=3)
    assert rerun.planned == 3
    assert sorted(t.run_id for t in queue.sent[-3:]) == sorted(
        [scheduled_run_id("orders", SLOTS[0]) + "G1", scheduled_run_id("orders", SLOTS[1]) + "G2",
         scheduled_run_id("orders", SLOTS[2]) + "G1"])


def test_cancelling_ends_queued_runs_lets_running_ones_finish_and_starts_nothing(mem_world, probe):
    store, settings, queue = mem_world
    made, _ = start_backfill(store, queue, "orders", SLOTS[0], SLOTS[-1], now=NOW,
                             settings=settings, max_parallel=2)
    first, second = (t.run_id for t in queue.sent[:2])
    # the first lane's run is running when the cancel comes
    store.transact(lambda tx: _claim(tx, first, 1, Control(), NOW, settings))
    cancel_backfill(store, made.id, now=NOW + MIN, who="ops@example.com")
    assert store.run(second).status == RunStatus.CANCELLED
    assert "cancelled by ops@example.com" in store.run(second).error
    assert store.run(first).status == RunStatus.RUNNING
    view = backfill_view(store, made.id)
    assert view.progress.status == "cancelled" and view.progress.cancelled == 11
    # the queued run's task arrives: nothing runs; the running one finishes; nothing follows
    sent = len(queue.sent)
    deliver_all(store, queue, settings, lambda: NOW + 2 * MIN, start=1)
    running = store.run(first)
    store.transact(lambda tx: _finish(tx, running, SyncOutcome(records={}), NOW + 3 * MIN,
                                      settings))
    assert store.run(first).status == RunStatus.SUCCEEDED and len(queue.sent) == sent
    assert backfill_view(store, made.id).progress.done == 1
    assert probe.seen == []


def test_an_old_slots_backfill_never_makes_the_dataset_look_fresher(world):
    store, settings, queue = world
    succeed(store, settings, [T0])  # the live 12:00 run finished at 12:01
    fresh = store.get_dataset("sales.orders")
    start_backfill(store, queue, "orders", SLOTS[0], SLOTS[5], now=NOW, settings=settings,
                   max_parallel=2)
    deliver_all(store, queue, settings, lambda: NOW + 5 * H)  # they finish hours later
    sweep_once(store, queue, now=NOW + 5 * H, settings=settings)
    after = store.get_dataset("sales.orders")
    check(store.db)
    assert after.last_success_at == fresh.last_success_at == T0 + MIN
    assert after.last_success_run_id == fresh.last_success_run_id
    assert after.daily == fresh.daily  # the live bar counts live syncs only


def test_a_gap_filled_by_a_backfill_is_as_fresh_as_its_newest_slot(world):
    store, settings, queue = world
    succeed(store, settings, [SLOTS[0]])
    start_backfill(store, queue, "orders", SLOTS[1], SLOTS[-1], now=NOW, settings=settings,
                   max_parallel=4)
    deliver_all(store, queue, settings, lambda: NOW + 5 * H)
    # the lanes' runs left the dataset alone (parallel lanes would contend on it)...
    assert store.get_dataset("sales.orders").last_success_slot == SLOTS[0]
    # ...recovery's sweep folds their newest success in, as of its slot
    sweep_once(store, queue, now=NOW + 5 * H, settings=settings)
    ds = store.get_dataset("sales.orders")
    assert ds.last_success_at == SLOTS[-1] and ds.last_success_slot == SLOTS[-1]
    assert ds.last_success_run_id == scheduled_run_id("orders", SLOTS[-1])
    check(store.db)


def test_recovery_releases_a_lane_whose_next_run_was_never_made(world, db):
    store, settings, queue = world
    made, _ = start_backfill(store, queue, "orders", SLOTS[0], SLOTS[3], now=NOW,
                             settings=settings, max_parallel=2)
    run_id = queue.sent[0].run_id
    # as if the process died after the lane's run finished but before anything else:
    store.update_run(run_id, {"status": "succeeded", "lease_expires_at": None})
    lane = db.collection("backfills").document(made.id).collection("lanes").document("000")
    lane.update({"current_run_id": None, "done": 1})
    created = sweep_backfills(store, queue, now=NOW + MIN, settings=settings)
    assert created == [scheduled_run_id("orders", SLOTS[2])]
    assert sweep_once(store, queue, now=NOW + 2 * MIN, settings=settings).backfill_runs == []


def test_a_switched_off_kind_pauses_the_backfill_instead_of_failing_every_slot(mem_world):
    store, settings, queue = mem_world
    made, _ = start_backfill(store, queue, "orders", SLOTS[0], SLOTS[3], now=NOW,
                             settings=settings, max_parallel=1)
    store.set_control({"disabled_kinds": ["slot_probe"]})
    deliver_all(store, queue, settings, lambda: NOW + MIN)
    view = backfill_view(store, made.id)
    assert (view.progress.failed, view.progress.running, view.progress.waiting) == (1, 0, 3)
    assert sweep_backfills(store, queue, now=NOW + 2 * MIN, settings=settings) == []
    store.set_control({"disabled_kinds": []})
    assert sweep_backfills(store, queue, now=NOW + 3 * MIN, settings=settings) == [
        scheduled_run_id("orders", SLOTS[1])]


def test_refusals_name_what_is_wrong(mem_world):
    store, settings, queue = mem_world
    with pytest.raises(NotFound):
        start_backfill(store, queue, "nope", SLOTS[0], SLOTS[1], now=NOW, settings=settings)
    with pytest.raises(ValidationError) as err:
        start_backfill(store, queue, "orders", SLOTS[1], SLOTS[0], now=NOW, settings=settings)
    assert err.value.field == "from"
    with pytest.raises(ValidationError) as err:
        start_backfill(store, queue, "orders", SLOTS[0], SLOTS[1], now=NOW, settings=settings,
                       max_parallel=0)
    assert err.value.field == "max_parallel"
    store.update_job("orders", {"status": "archived"})
    with pytest.raises(Conflict):
        start_backfill(store, queue, "orders", SLOTS[0], SLOTS[1], now=NOW, settings=settings)
    with pytest.raises(NotFound):
        cancel_backfill(store, "missing", now=NOW)


def test_the_largest_backfill_fits_its_documents(world):
    """10,000 slots in one lane: the lane document is the biggest Freshet writes for a
    backfill; the emulator enforces production's 1 MiB limit."""
    store, _, _ = world
    minutely = tuple(T0 - (bf.MAX_SLOTS - 1 - i) * MIN for i in range(bf.MAX_SLOTS))
    job = store.job("orders")
    plan = bf.SlotPlan(slots=minutely, todo=minutely, done=(), busy=())
    made = bf.new_backfill(job, plan, start=minutely[0], end=minutely[-1], max_parallel=1,
                           rerun=False, now=NOW)
    assert store.create_backfill(made, bf.lanes_for(made, minutely)) is Created.NEW
    (lane,) = store.lanes(made.id)
    assert len(lane.slots) == bf.MAX_SLOTS and lane.slots[-1] == T0


def test_folding_a_backfills_success_twice_writes_once(mem_world):
    store, settings, queue = mem_world
    made, _ = start_backfill(store, queue, "orders", SLOTS[-3], SLOTS[-1], now=NOW,
                             settings=settings, max_parallel=3)
    deliver_all(store, queue, settings, lambda: NOW + MIN)
    lanes = store.lanes(made.id)
    assert fold_successes(store, "orders", lanes, NOW) == ["sales.orders"]
    assert fold_successes(store, "orders", lanes, NOW) == []
