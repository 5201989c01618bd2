from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from freshet.core.errors import ValidationError
from freshet.core.schedules import (
    Schedule,
    data_interval,
    describe,
    first_slot,
    latest_due,
    make_schedule,
    next_after,
    previous_slot,
    slot_at_or_before,
    slots_between,
)

NY = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")


def slots(schedule, start, end):
    found, cursor = [], start
    while (cursor := next_after(schedule, cursor)) is not None and cursor < end:
        found.append(cursor)
    return found


def test_daily_0230_runs_once_on_spring_forward_day():
    schedule = make_schedule(cron="30 2 * * *", timezone="America/New_York")
    start = datetime(2026, 3, 8, 0, 0, tzinfo=NY)
    day = slots(schedule, start, datetime(2026, 3, 9, 0, 0, tzinfo=NY))
    assert len(day) == 1
    assert day[0].astimezone(NY).hour == 3  # 02:30 does not exist that day


def test_daily_0130_runs_once_on_fall_back_day():
    schedule = make_schedule(cron="30 1 * * *", timezone="America/New_York")
    start = datetime(2026, 11, 1, 0, 0, tzinfo=NY)
    day = slots(schedule, start, start + timedelta(hours=25))  # that day has 25 hours
    assert len(day) == 1
    assert day[0] == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # the first 01:30, EDT


def test_daily_0230_in_london_runs_once_a_day_across_both_changes():
    schedule = make_schedule(cron="30 2 * * *", timezone="Europe/London")
    for day in (datetime(2026, 3, 29, tzinfo=LONDON), datetime(2026, 10, 25, tzinfo=LONDON)):
        assert len(slots(schedule, day, day + timedelta(days=1))) == 1


def test_hourly_job_keeps_utc_spacing_through_fall_back():
    schedule = make_schedule(cron="0 * * * *", timezone="America/New_York")
    start = datetime(2026, 11, 1, 4, 30, tzinfo=UTC)
    found = slots(schedule, start, start + timedelta(hours=4))
    assert [b - a for a, b in zip(found, found[1:], strict=False)] == [timedelta(hours=1)] * 3


def test_next_after_is_strictly_after():
    schedule = make_schedule(cron="*/15 * * * *")
    at = datetime(2026, 11, 28, 12, 15, tzinfo=UTC)
    assert next_after(schedule, at) == at + timedelta(minutes=15)
    assert next_after(schedule, at - timedelta(microseconds=1)) == at


def test_one_time_schedule_has_one_slot():
    at = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    schedule = make_schedule(run_at="2026-11-28T12:00:00Z")
    assert next_after(schedule, at - timedelta(minutes=1)) == at
    assert next_after(schedule, at) is None


def test_job_three_days_behind_runs_the_latest_missed_slot_only():
    schedule = make_schedule(cron="*/5 * * * *")
    now = datetime(2026, 11, 28, 12, 7, 30, tzinfo=UTC)
    latest = datetime(2026, 11, 28, 12, 5, tzinfo=UTC)
    assert latest_due(schedule, now - timedelta(days=3), now) == latest


def test_monthly_job_far_behind_runs_latest_slot():
    schedule = make_schedule(cron="0 0 1 * *")
    now = datetime(2026, 11, 28, tzinfo=UTC)
    latest = datetime(2026, 11, 1, tzinfo=UTC)
    assert latest_due(schedule, datetime(2026, 6, 1, tzinfo=UTC), now) == latest


def test_slot_within_lookahead_is_kept():
    schedule = make_schedule(cron="* * * * *")
    now = datetime(2026, 11, 28, 12, 0, 30, tzinfo=UTC)
    ahead = datetime(2026, 11, 28, 12, 1, tzinfo=UTC)
    assert latest_due(schedule, ahead, now) == ahead


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"cron": "61 * * * *"}, "schedule.cron"),
        ({"cron": "not a cron"}, "schedule.cron"),
        ({"cron": ""}, "schedule.cron"),
        ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, "schedule.timezone"),
        ({"run_at": "2026-11-28T12:00:00"}, "schedule.run_at"),
        ({"run_at": "tomorrow"}, "schedule.run_at"),
        ({}, "schedule"),
        ({"cron": "* * * * *", "run_at": "2026-11-28T12:00:00Z"}, "schedule"),
    ],
)
def test_bad_schedules_are_refused_naming_the_field(kwargs, field):
    with pytest.raises(ValidationError) as caught:
        make_schedule(**kwargs)
    assert caught.value.field == field


def test_describe_says_the_schedule_in_words_with_its_timezone():
    text = describe(make_schedule(cron="0 9 * * 1-5", timezone="Europe/London"))
    assert "09:00" in text and "Europe/London" in text


# -- a one-time job always has a moment to run in ----------------------------------------

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("run_at", [NOW + timedelta(minutes=1), NOW, NOW - timedelta(hours=3),
                                    NOW - timedelta(days=1)])
def test_a_one_time_job_to_come_or_just_missed_runs_at_its_moment(run_at):
    assert first_slot(make_schedule(run_at=run_at), NOW) == run_at  # due at once if past


@pytest.mark.parametrize("run_at", ["2026-11-27T11:59:00Z", "1970-01-01T00:00:00+00:00"])
def test_a_one_time_job_further_back_than_a_day_is_refused_naming_run_at(run_at):
    with pytest.raises(ValidationError) as caught:
        first_slot(make_schedule(run_at=run_at), NOW)
    assert caught.value.field == "schedule.run_at" and "would never run" in caught.value.message


@pytest.mark.parametrize("run_at", ["0001-01-01T00:00:00Z", "0001-01-01T00:00:00+05:00",
                                    "9999-12-31T23:59:59-05:00", "1969-12-31T23:59:59Z",
                                    "1970-01-01T00:30:00+01:00", "2201-01-01T00:00:00Z",
                                    "2200-12-31T23:00:00-05:00"])
def test_a_run_at_outside_1970_to_2200_is_refused_naming_it(run_at):
    with pytest.raises(ValidationError) as caught:
        make_schedule(run_at=run_at)
    assert caught.value.field == "schedule.run_at"
    assert "years 1970 to 2200" in caught.value.message


@pytest.mark.parametrize("cron", ["٣ * * * *", "０ * * * *", "0 ² * * *", "*/5" + " *" * 200])
def test_a_cron_with_non_ascii_digits_or_of_any_length_is_refused_naming_it(cron):
    with pytest.raises(ValidationError) as caught:
        make_schedule(cron=cron)
    assert caught.value.field == "schedule.cron"


def test_a_recurring_jobs_first_slot_is_its_next_one():
    schedule = make_schedule(cron="0 6 * * *", timezone="UTC")
    assert first_slot(schedule, NOW) == datetime(2026, 11, 29, 6, tzinfo=UTC)
# -- the slot's data interval: (previous slot, this slot] -------------------------------


@pytest.mark.parametrize("cron,tz,slot,previous", [
    # hourly in New York across fall-back: 01:00 EDT (05:00 UTC) then 01:00 EST (06:00 UTC)
    ("0 * * * *", "America/New_York", datetime(2026, 11, 1, 6, 0, tzinfo=UTC),
     datetime(2026, 11, 1, 5, 0, tzinfo=UTC)),
    ("0 * * * *", "America/New_York", datetime(2026, 11, 1, 7, 0, tzinfo=UTC),
     datetime(2026, 11, 1, 6, 0, tzinfo=UTC)),
    # hourly across spring-forward: 01:00 EST (06:00 UTC) then 03:00 EDT (07:00 UTC)
    ("0 * * * *", "America/New_York", datetime(2026, 3, 8, 7, 0, tzinfo=UTC),
     datetime(2026, 3, 8, 6, 0, tzinfo=UTC)),
    # daily 02:30 New York: the spring-forward day's slot is 03:00 EDT; the day before 02:30 EST
    ("30 2 * * *", "America/New_York", datetime(2026, 3, 8, 7, 0, tzinfo=UTC),
     datetime(2026, 3, 7, 7, 30, tzinfo=UTC)),
    ("30 2 * * *", "America/New_York", datetime(2026, 3, 9, 6, 30, tzinfo=UTC),
     datetime(2026, 3, 8, 7, 0, tzinfo=UTC)),
    # daily 01:30 on fall-back day runs once (the first 01:30, EDT): the next day's interval
    # starts there, 25 hours earlier
    ("30 1 * * *", "America/New_York", datetime(2026, 11, 2, 6, 30, tzinfo=UTC),
     datetime(2026, 11, 1, 5, 30, tzinfo=UTC)),
    # London, daily 02:30 across the autumn change (25 Oct 02:00 BST -> 01:00 GMT): the
    # interval ending at that day's 02:30 GMT starts at the day before's 02:30 BST, 25 h
    ("30 2 * * *", "Europe/London", datetime(2026, 10, 25, 2, 30, tzinfo=UTC),
     datetime(2026, 10, 24, 1, 30, tzinfo=UTC)),
    # every 15 minutes, weekdays only: Monday 00:00's interval starts Friday 23:45
    ("*/15 * * * 1-5", "UTC", datetime(2026, 11, 30, 0, 0, tzinfo=UTC),
     datetime(2026, 11, 27, 23, 45, tzinfo=UTC)),
    # yearly: the walk reaches back a year
    ("0 0 1 1 *", "UTC", datetime(2027, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)),
])
def test_previous_slot_across_dst_and_gaps(cron, tz, slot, previous):
    schedule = make_schedule(cron=cron, timezone=tz)
    assert previous_slot(schedule, slot) == previous
    assert data_interval(schedule, slot) == (previous, slot)
    # and the slot itself follows its previous slot
    assert next_after(schedule, previous) == slot


def test_previous_slot_of_a_time_between_slots_is_the_last_slot_before_it():
    schedule = make_schedule(cron="0 * * * *")
    asked = datetime(2026, 11, 28, 10, 37, tzinfo=UTC)  # a manual run at 10:37
    assert previous_slot(schedule, asked) == datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def test_one_time_and_unscheduled_jobs_have_no_previous_slot():
    at = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    assert previous_slot(make_schedule(run_at=at), at) is None
    assert previous_slot(Schedule(), at) is None
    assert next_after(Schedule(), at) is None and describe(Schedule()).startswith("No schedule")


def test_slots_between_is_inclusive_and_bounded():
    schedule = make_schedule(cron="0 * * * *")
    start = datetime(2026, 11, 28, 0, 0, tzinfo=UTC)
    found = slots_between(schedule, start, start + timedelta(hours=3))
    assert found == [start + timedelta(hours=h) for h in range(4)]
    assert len(slots_between(schedule, start, start + timedelta(days=30), limit=5)) == 5


@pytest.mark.parametrize("cron, tz, day", [
    ("30 2 * * *", "America/New_York", datetime(2026, 3, 8, tzinfo=UTC)),  # 02:30 missing
    ("30 1 * * *", "America/New_York", datetime(2026, 11, 1, tzinfo=UTC)),  # 01:30 twice
    ("0 * * * *", "Europe/Paris", datetime(2026, 10, 25, tzinfo=UTC)),
    ("*/20 2 * * *", "Europe/Paris", datetime(2026, 3, 29, tzinfo=UTC)),
    ("0 7 * * 1-5", "Europe/Paris", datetime(2026, 3, 27, tzinfo=UTC)),  # Fri -> Mon
    ("0 0 1 * *", "UTC", datetime(2026, 2, 15, tzinfo=UTC)),
])
def test_slot_at_or_before_is_the_last_forward_slot_across_dst(cron, tz, day):
    """slot_at_or_before walks backwards (one cronsim step): it must find exactly the slots
    next_after walks forwards to, on both DST changes, every 7 minutes of three days."""
    schedule = make_schedule(cron=cron, timezone=tz)
    forward = slots(schedule, day - timedelta(days=40), day + timedelta(days=3))
    at = day
    while at < day + timedelta(days=3):
        expected = max((s for s in forward if s <= at), default=None)
        assert slot_at_or_before(schedule, at) == expected, at
        if expected is not None:
            assert slot_at_or_before(schedule, expected) == expected  # at a slot: that slot
        at += timedelta(minutes=7)


def test_slot_at_or_before_of_a_one_time_schedule():
    at = datetime(2026, 5, 1, 9, tzinfo=UTC)
    schedule = make_schedule(run_at=at.isoformat())
    assert slot_at_or_before(schedule, at - timedelta(seconds=1)) is None
    assert slot_at_or_before(schedule, at) == at


@pytest.mark.parametrize("cron, words", [
    ("*/2 * * * *", "Every 2 minutes (UTC)"),
    ("*/10 * * * *", "Every 10 minutes (UTC)"),
    ("*/5 * * * *", "Every 5 minutes (UTC)"),
    ("0 */2 * * *", "At minute 0 past every 2 hours (UTC)"),
    ("* * * * *", "Every minute (UTC)"),
    ("0 6 * * *", "At 06:00 every day (UTC)"),
])
def test_schedules_are_described_in_one_wording(cron, words):
    from freshet.core.models import Schedule
    from freshet.core.schedules import describe

    assert describe(Schedule(cron=cron, timezone="UTC")) == words
