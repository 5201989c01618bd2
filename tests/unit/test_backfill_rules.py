"""Backfill planning and pacing rules as tables: ranges, reruns, generations, lanes and
progress. No emulator (freshet.core.backfill is pure)."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from freshet.core import backfill as bf
from freshet.core import runs
from freshet.core.backfill import SlotState
from freshet.core.errors import ValidationError
from freshet.core.models import RunStatus, TriggerSource, new_job
from freshet.core.settings import load_settings

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
SETTINGS = load_settings({}, queued_grace_s=600)
JOB = new_job(id="orders", kind="noop", schedule={"cron": "0 * * * *"}, produces=["sales.orders"])


def run_in(status, slot=T0, source=TriggerSource.SCHEDULE):
    made = runs.new_run(JOB, runs.scheduled_run_id(JOB.id, slot), slot, source=source, now=slot,
                        settings=SETTINGS)
    return replace(made, status=status)


# -- what a backfill finds at a slot ---------------------------------------------------

STATES = [
    # (case, run at this generation, rerun, state)
    ("no run yet", None, False, SlotState.FREE),
    ("succeeded", run_in(RunStatus.SUCCEEDED), False, SlotState.DONE),
    ("succeeded, --rerun", run_in(RunStatus.SUCCEEDED), True, SlotState.NEXT),
    ("failed", run_in(RunStatus.FAILED), False, SlotState.NEXT),
    ("skipped by catch-up", run_in(RunStatus.SKIPPED), False, SlotState.NEXT),
    ("cancelled backfill run", run_in(RunStatus.CANCELLED), False, SlotState.NEXT),
    ("queued by the tick", run_in(RunStatus.QUEUED), False, SlotState.BUSY),
    ("running", run_in(RunStatus.RUNNING), True, SlotState.BUSY),
    ("retrying", run_in(RunStatus.RETRYING), False, SlotState.BUSY),
]


@pytest.mark.parametrize("case,run,rerun,state", STATES, ids=[s[0] for s in STATES])
def test_slot_state_table(case, run, rerun, state):
    assert bf.slot_state(run, rerun) == state


def test_generation_zero_is_the_ticks_own_id_and_later_ones_are_deterministic():
    assert bf.generation_run_id("orders", T0, 0) == runs.scheduled_run_id("orders", T0)
    assert bf.generation_run_id("orders", T0, 2) == "orders__20261128T120000ZG2"
    from freshet.loop.delivery import RUN_ID

    assert RUN_ID.match(bf.generation_run_id("a" * 100, T0, bf.MAX_GENERATIONS - 1))


# -- ranges --------------------------------------------------------------------------------

def test_range_is_inclusive_and_stops_at_now():
    slots = bf.range_slots(JOB, T0 - 47 * H, T0 + 10 * H, now=T0 + 30 * timedelta(minutes=1))
    assert slots[0] == T0 - 47 * H and slots[-1] == T0 and len(slots) == 48


@pytest.mark.parametrize("start,end,field", [
    (T0, T0 - H, "from"),
    (T0 - timedelta(days=500), T0, "to"),  # more than MAX_SLOTS hourly slots
])
def test_bad_ranges_name_the_field(start, end, field):
    with pytest.raises(ValidationError) as err:
        bf.range_slots(JOB, start, end, now=T0)
    assert err.value.field == field


def test_a_job_without_cron_has_nothing_to_backfill():
    once = new_job(id="once", kind="noop", schedule={"run_at": T0})
    with pytest.raises(ValidationError) as err:
        bf.range_slots(once, T0 - H, T0, now=T0)
    assert err.value.field == "job_id"


def test_plan_splits_slots_into_todo_done_and_busy():
    slots = tuple(T0 - i * H for i in range(5))[::-1]
    states = {slots[0]: SlotState.DONE, slots[1]: SlotState.NEXT, slots[2]: SlotState.BUSY}
    plan = bf.plan_slots(slots, states)
    assert plan.todo == (slots[1], slots[3], slots[4])
    assert plan.done == (slots[0],) and plan.busy == (slots[2],)


# -- lanes and pacing --------------------------------------------------------------------

def backfill(todo, parallel=4):
    plan = bf.SlotPlan(slots=todo, todo=todo, done=(), busy=())
    return bf.new_backfill(JOB, plan, start=todo[0], end=todo[-1], max_parallel=parallel,
                           rerun=False, now=T0)


def test_lanes_share_the_slots_round_robin_oldest_first():
    todo = tuple(T0 - i * H for i in range(10))[::-1]
    lanes = bf.lanes_for(backfill(todo), todo)
    assert [len(x.slots) for x in lanes] == [3, 3, 2, 2]
    assert [x.slots[0] for x in lanes] == list(todo[:4])  # the first wave is the 4 oldest
    assert sorted(s for x in lanes for s in x.slots) == list(todo)  # each slot once


def test_fewer_slots_than_max_parallel_make_fewer_lanes():
    todo = (T0 - H, T0)
    made = backfill(todo, parallel=8)
    assert made.lanes == 2 and len(bf.lanes_for(made, todo)) == 2


def test_a_lane_counts_each_ending_once_and_frees_itself():
    lane = bf.lanes_for(backfill((T0 - H, T0), 1), (T0 - H, T0))[0]
    lane = bf.taken(lane, "r1", T0)
    assert lane.current_run_id == "r1" and lane.next == 1 and not lane.idle
    ended = replace(run_in(RunStatus.FAILED), id="r1")
    lane = bf.settled(lane, ended, T0)
    assert (lane.failed, lane.current_run_id) == (1, None) and lane.idle
    assert bf.settled(lane, ended, T0) == lane  # a repeated ending changes nothing
    lane = bf.passed_over(lane, T0)
    assert lane.finished and lane.skipped == 1


def test_a_lane_ignores_an_unfinished_or_foreign_run():
    lane = bf.taken(bf.lanes_for(backfill((T0,), 1), (T0,))[0], "r1", T0)
    assert bf.settled(lane, replace(run_in(RunStatus.RUNNING), id="r1"), T0) == lane
    assert bf.settled(lane, replace(run_in(RunStatus.SUCCEEDED), id="other"), T0) == lane


def test_cancelling_counts_what_never_started():
    todo = tuple(T0 - i * H for i in range(6))[::-1]
    lane = bf.taken(bf.lanes_for(backfill(todo, 2), todo)[0], "r1", T0)  # 3 slots, 1 taken
    stopped = bf.stopped(lane, T0)
    assert stopped.cancelled == 2 and stopped.stopped and stopped.current_run_id == "r1"
    assert not stopped.finished  # its running run still finishes
    assert bf.stopped(stopped, T0) == stopped


def test_progress_sums_the_lanes_and_reports_done_once_every_lane_finished():
    todo = tuple(T0 - i * H for i in range(4))[::-1]
    made = backfill(todo, 2)
    lanes = [replace(x, next=len(x.slots), done=1, failed=1) for x in bf.lanes_for(made, todo)]
    p = bf.progress(made, lanes)
    assert (p.planned, p.done, p.failed, p.finished, p.status) == (4, 2, 2, 4, "done")
    assert p.fraction == 1.0
    busy = [replace(lanes[0], current_run_id="r9"), lanes[1]]
    assert bf.progress(made, busy).status == "active" and bf.progress(made, busy).running == 1


def test_progress_bar():
    p = bf.Progress(planned=48, done=24, failed=6, skipped=0, cancelled=0)
    assert bf.progress_bar(p, width=16) == "[########!!......] 30/48"
    assert bf.progress_bar(bf.Progress(planned=0)).endswith("0/0")


def test_same_request_same_backfill_and_a_key_makes_it_explicit():
    a = bf.backfill_id("orders", T0 - H, T0, False, "20261128T1200")
    assert a == bf.backfill_id("orders", T0 - H, T0, False, "20261128T1200")
    assert a != bf.backfill_id("orders", T0 - H, T0, True, "20261128T1200")
    assert a != bf.backfill_id("orders", T0 - H, T0, False, "20261128T1201")


@pytest.mark.parametrize("value", [0, 51, True, "4"])
def test_max_parallel_is_checked(value):
    with pytest.raises(ValidationError) as err:
        bf.check_max_parallel(value)
    assert err.value.field == "max_parallel"


def test_lane_documents_round_trip():
    lane = bf.taken(bf.lanes_for(backfill((T0 - H, T0), 1), (T0 - H, T0))[0], "r1", T0)
    assert bf.Lane.from_doc(lane.to_doc()) == lane
    made = backfill((T0 - H, T0))
    assert bf.Backfill.from_doc(made.to_doc()) == made


def test_a_lane_remembers_its_newest_success_for_freshness():
    todo = (T0 - 2 * H, T0 - H, T0)
    lane = bf.lanes_for(backfill(todo, 1), todo)[0]
    for slot, status in ((T0 - 2 * H, RunStatus.SUCCEEDED), (T0 - H, RunStatus.SUCCEEDED),
                         (T0, RunStatus.FAILED)):
        run = replace(run_in(status, slot), id=f"r{slot:%H}")
        lane = bf.settled(bf.taken(lane, run.id, T0), run, T0)
    assert (lane.newest_success_slot, lane.newest_success_run_id) == (T0 - H, "r11")
    other = replace(lane, index=1, newest_success_slot=T0 - 3 * H, newest_success_run_id="x")
    assert bf.newest_success([other, lane]) == (T0 - H, "r11")
    assert bf.newest_success([replace(lane, newest_success_slot=None)]) is None
