"""Catch-up policies as tables: what the tick runs and skips after an outage, with
`now` passed in. No emulator."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from freshet.core.catchup import MAX_SKIP_RECORDS, ON_TIME, plan_catchup
from freshet.core.errors import ValidationError
from freshet.core.models import new_job

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
H, MIN = timedelta(hours=1), timedelta(minutes=1)
OUTAGE = timedelta(days=3)


def job(cron="0 * * * *", **kw):
    next_run_at = kw.pop("next_run_at", T0 - OUTAGE)
    made = new_job(id="orders", kind="noop", schedule={"cron": cron, "timezone": "UTC"}, **kw)
    return replace(made, next_run_at=next_run_at)


def hourly(start, count):
    return tuple(start + i * H for i in range(count))


# -- a three-day outage of an hourly job, ticked at 12:07 ------------------------------

NOW = T0 + 7 * MIN  # the scheduler comes back at 12:07; slots 3 days ago .. 12:00 are due
DUE = hourly(T0 - OUTAGE, 73)  # 09:00 three days ago through 12:00 today


def test_latest_runs_only_the_latest_slot_and_records_nothing():
    plan = plan_catchup(job(), NOW)
    assert plan.run == (T0,) and plan.skipped == () and plan.next_run_at == T0 + H


def test_all_runs_the_newest_max_catchup_oldest_first_and_skips_the_rest():
    plan = plan_catchup(job(catchup="all"), NOW)
    assert plan.run == DUE[-24:]  # oldest first
    assert plan.chain
    assert [s.slot for s in plan.skipped] == list(DUE[:-24])
    assert all("max_catchup (24)" in s.reason for s in plan.skipped)
    assert plan.next_run_at == T0 + H


def test_all_with_a_smaller_max_catchup():
    plan = plan_catchup(job(catchup="all", max_catchup=3), NOW)
    assert plan.run == DUE[-3:] and len(plan.skipped) == 70


def test_all_with_few_missed_slots_runs_each_and_skips_none():
    plan = plan_catchup(job(catchup="all", next_run_at=T0 - 2 * H), NOW)
    assert plan.run == (T0 - 2 * H, T0 - H, T0) and plan.skipped == ()


def test_skip_records_every_missed_slot_and_waits_for_the_next():
    plan = plan_catchup(job(catchup="skip"), NOW)
    assert plan.run == ()
    assert [s.slot for s in plan.skipped] == list(DUE)
    assert "catchup: skip" in plan.skipped[-1].reason
    assert plan.next_run_at == T0 + H  # the next slot runs on time


def test_skip_still_runs_a_slot_seen_on_time():
    # the tick normally claims a slot before it (lookahead) or within a late tick
    assert plan_catchup(job(catchup="skip", next_run_at=T0), T0 + ON_TIME).run == (T0,)
    late = plan_catchup(job(catchup="skip", next_run_at=T0), T0 + ON_TIME + MIN)
    assert late.run == () and [s.slot for s in late.skipped] == [T0]


def test_max_lateness_skips_the_latest_slot_when_it_is_too_late():
    plan = plan_catchup(job(max_lateness="5m"), NOW)
    assert plan.run == () and [s.slot for s in plan.skipped] == [T0]
    assert "max_lateness (5m)" in plan.skipped[0].reason


@pytest.mark.parametrize("late_by,runs", [(timedelta(minutes=9), True),
                                          (timedelta(minutes=10), True),
                                          (timedelta(minutes=11), False)])
def test_max_lateness_boundary(late_by, runs):
    plan = plan_catchup(job(max_lateness="10m", next_run_at=T0), T0 + late_by)
    assert (plan.run == (T0,)) is runs
    assert (len(plan.skipped) == 1) is not runs


def test_all_with_max_lateness_runs_only_the_slots_still_in_time():
    plan = plan_catchup(job(catchup="all", max_lateness="3h"), NOW)
    assert plan.run == (T0 - 2 * H, T0 - H, T0)  # 10:00 is 3 h 7 min late at 12:07
    reasons = {s.slot: s.reason for s in plan.skipped}
    assert "max_lateness (3h)" in reasons[T0 - 3 * H]
    assert len(plan.skipped) == 70


def test_skip_with_max_lateness_uses_it_as_the_on_time_window():
    plan = plan_catchup(job(catchup="skip", max_lateness="2h"), NOW)
    assert plan.run == (T0,)  # the newest slot within 2 h
    assert T0 - H in {s.slot for s in plan.skipped}  # an older one, also within 2 h


def test_a_slot_claimed_ahead_of_time_is_never_late():
    plan = plan_catchup(job(cron="30 * * * *", catchup="skip", max_lateness="1m",
                            next_run_at=T0 + 30 * MIN), T0)
    assert plan.run == (T0 + 30 * MIN,) and plan.next_run_at == T0 + 90 * MIN


def test_a_one_time_job_past_its_lateness_is_skipped():
    one = replace(new_job(id="once", kind="noop", schedule={"run_at": T0}, max_lateness="5m"),
                  next_run_at=T0)
    assert plan_catchup(one, T0 + 4 * MIN).run == (T0,)
    late = plan_catchup(one, T0 + 6 * MIN)
    assert late.run == () and late.next_run_at is None


# -- bounded records ---------------------------------------------------------------------

def test_a_minutely_job_three_days_behind_records_a_bounded_number_of_skips():
    plan = plan_catchup(job(cron="* * * * *", catchup="skip"), NOW)
    assert len(plan.skipped) == MAX_SKIP_RECORDS
    assert plan.run == (NOW,)  # 12:07 is on time at 12:07
    assert plan.skipped[-1].slot == NOW - MIN  # the newest skipped ones are recorded
    assert "older slots back to" in plan.skipped[0].reason  # the rest are counted there


def test_all_for_a_minutely_job_counts_what_it_could_not_record():
    plan = plan_catchup(job(cron="* * * * *", catchup="all"), NOW)
    assert len(plan.run) == 24 and plan.run[-1] == NOW.replace(second=0)
    assert len(plan.skipped) == MAX_SKIP_RECORDS
    assert "older slots back to 2026-11-25 12:00 UTC" in plan.skipped[0].reason


def test_all_counts_exactly_when_every_skipped_slot_was_seen():
    plan = plan_catchup(job(catchup="all", max_catchup=1), NOW)  # 72 skipped < 100
    assert len(plan.skipped) == 72 and "older" not in plan.skipped[0].reason


# -- across DST --------------------------------------------------------------------------

def test_all_across_a_fall_back_night_runs_each_hour_once():
    """New York's 01:00 happens twice on 2026-11-01; an hourly job has 25 slots that day."""
    ny = replace(new_job(id="ny", kind="noop", catchup="all", max_catchup=30,
                         schedule={"cron": "0 * * * *", "timezone": "America/New_York"}),
                 next_run_at=datetime(2026, 11, 1, 4, 0, tzinfo=UTC))  # 00:00 EDT
    plan = plan_catchup(ny, datetime(2026, 11, 2, 5, 0, tzinfo=UTC))  # 00:00 EST next day
    assert len(plan.run) == 26  # 25 hours of the day + the next midnight
    assert len(set(plan.run)) == 26
    assert all(b - a == H for a, b in zip(plan.run, plan.run[1:], strict=False))


def test_policy_fields_are_validated_naming_the_field():
    for kw, name in (({"catchup": "some"}, "catchup"), ({"max_catchup": 0}, "max_catchup"),
                     ({"max_catchup": True}, "max_catchup"),
                     ({"max_lateness": "soon"}, "max_lateness")):
        with pytest.raises(ValidationError) as err:
            job(**kw)
        assert err.value.field == name
