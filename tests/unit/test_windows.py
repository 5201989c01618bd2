"""Maintenance windows as tables: occurrences across DST, overlapping windows, scope,
skip vs drain, and what the claim rule does with them. No emulator."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from freshet.core import runs
from freshet.core.control import Control
from freshet.core.errors import ValidationError
from freshet.core.lifecycle import ClaimVerdict, DatasetEvent, decide_claim
from freshet.core.models import new_job
from freshet.core.settings import load_settings
from freshet.core.windows import Maintenance, Mode, Scope, Window, check_windows, make_window

MIN, H = timedelta(minutes=1), timedelta(hours=1)
SETTINGS = load_settings({})


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def nightly(**kw) -> Window:
    """01:30 Europe/London for two hours: straddles both DST changes of 2026."""
    return make_window({"id": "nightly", "cron": "30 1 * * *", "duration": "2h",
                        "timezone": "Europe/London", **kw}, "maintenance[0]")


@pytest.mark.parametrize(
    ("at", "active", "ends"),
    [
        # winter (GMT): 01:30-03:30 UTC
        ("2026-01-10T01:29:59+00:00", False, None),
        ("2026-01-10T01:30:00+00:00", True, "2026-01-10T03:30:00+00:00"),
        ("2026-01-10T03:29:59+00:00", True, "2026-01-10T03:30:00+00:00"),
        ("2026-01-10T03:30:00+00:00", False, None),  # the end is exclusive
        # summer (BST): 01:30 local is 00:30 UTC
        ("2026-07-01T00:30:00+00:00", True, "2026-07-01T02:30:00+00:00"),
        ("2026-07-01T02:30:00+00:00", False, None),
        # spring forward, 29 March: 01:30 does not exist, cronsim starts it at 02:00
        # BST = 01:00 UTC; it lasts two real hours
        ("2026-03-29T00:59:00+00:00", False, None),
        ("2026-03-29T01:00:00+00:00", True, "2026-03-29T03:00:00+00:00"),
        # fall back, 25 October: 01:30 happens twice; the window starts once, at the
        # first (BST, 00:30 UTC), and lasts two real hours
        ("2026-10-25T00:30:00+00:00", True, "2026-10-25T02:30:00+00:00"),
        ("2026-10-25T01:30:00+00:00", True, "2026-10-25T02:30:00+00:00"),
        ("2026-10-25T02:30:00+00:00", False, None),
    ],
)
def test_recurring_window_across_dst(at, active, ends):
    occurrence = nightly().at(utc(at))
    assert (occurrence is not None) == active
    if active:
        assert occurrence.end == utc(ends)


def test_one_off_window_is_half_open():
    w = make_window({"id": "migration", "start": "2026-12-01T22:00:00Z",
                     "end": "2026-12-02T02:00:00Z"}, "m")
    assert w.at(utc("2026-12-01T21:59:59+00:00")) is None
    assert w.at(utc("2026-12-01T22:00:00+00:00")).end == utc("2026-12-02T02:00:00+00:00")
    assert w.at(utc("2026-12-02T02:00:00+00:00")) is None


def test_overlapping_windows_each_count_and_the_longest_keeps_a_job_out():
    short = make_window({"id": "short", "cron": "0 2 * * *", "duration": "30m",
                         "scope": {"jobs": ["orders"]}}, "m")
    long = make_window({"id": "long", "cron": "0 1 * * *", "duration": "3h",
                        "scope": {"datasets": ["sales.orders"]}}, "m")
    maintenance = Maintenance((short, long))
    at = utc("2026-11-28T02:10:00+00:00")
    assert {o.window.id for o in maintenance.active(at)} == {"short", "long"}
    blocking = maintenance.blocking_job("orders", ["sales.orders"], at)
    assert blocking is not None
    later = utc("2026-11-28T03:00:00+00:00")  # the short one is over, the long one is not
    assert maintenance.blocking_job("orders", ["sales.orders"], later).window.id == "long"
    assert maintenance.blocking_job("orders", ["sales.orders"], utc(
        "2026-11-28T04:00:00+00:00")) is None


@pytest.mark.parametrize(
    ("scope", "job", "dataset", "consumer"),
    [
        # (job orders produces sales.orders, consumer revenue needs it)
        ({}, True, True, True),  # the whole pipeline
        ({"jobs": ["orders"]}, True, True, False),
        ({"datasets": ["sales.orders"]}, True, True, False),
        ({"consumers": ["revenue"]}, False, False, True),
        ({"jobs": ["other"]}, False, False, False),
    ],
)
def test_scope_table(scope, job, dataset, consumer):
    s = make_window({"id": "w", "start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z",
                     "scope": scope or "all"}, "m").scope
    assert s.covers_job("orders", ["sales.orders"]) == job
    assert s.covers_dataset("sales.orders", ["orders"]) == dataset
    assert s.covers_consumer("revenue") == consumer


def test_listed_windows_are_current_and_within_seven_days():
    hourly = make_window({"id": "hourly", "cron": "0 * * * *", "duration": "5m"}, "m")
    old = make_window({"id": "old", "start": "2026-01-01T00:00:00Z",
                       "end": "2026-01-02T00:00:00Z"}, "m")
    later = make_window({"id": "later", "start": "2026-12-20T00:00:00Z",
                         "end": "2026-12-21T00:00:00Z"}, "m")
    now = utc("2026-11-28T12:02:00+00:00")
    listed = Maintenance((hourly, old, later)).listed(now)
    assert listed[0].start == utc("2026-11-28T12:00:00+00:00")  # under way
    assert {o.window.id for o in listed} == {"hourly"}  # old is over, later beyond 7 days
    assert len(listed) == 50  # bounded


def test_the_documents_round_trip():
    maintenance = Maintenance((nightly(mode="drain", note="vacuum",
                                       scope={"jobs": ["a"], "consumers": ["c"]}),
                               make_window({"id": "x", "start": "2026-12-01T22:00:00Z",
                                            "end": "2026-12-02T02:00:00Z"}, "m")))
    assert Maintenance.from_doc(maintenance.to_doc()) == maintenance


@pytest.mark.parametrize(
    ("doc", "field", "message"),
    [
        ({"id": "w", "cron": "0 2 * * *"}, "m.duration", "is required with cron"),
        ({"id": "w", "cron": "0 2 * * *", "duration": "32d"}, "m.duration", "at most 31 days"),
        ({"id": "w", "cron": "61 2 * * *", "duration": "1h"}, "m.cron", "invalid cron"),
        ({"id": "w", "cron": "0 2 * * *", "duration": "1h", "timezone": "Mars/X"},
         "m.timezone", "unknown timezone"),
        ({"id": "w", "cron": "0 2 * * *", "duration": "1h", "end": "2026-01-01T00:00:00Z"},
         "m.end", "not start/end"),
        ({"id": "w", "start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
         "m.end", "must be after start"),
        ({"id": "w", "start": "2026-01-02T00:00:00", "end": "2026-01-03T00:00:00Z"}, "m.start",
         "timezone"),
        ({"id": "w", "start": "2026-01-02T00:00:00Z"}, "m.end", "is required"),
        ({"id": "w", "cron": "0 2 * * *", "duration": "1h", "mode": "pause"}, "m.mode",
         "skip or drain"),
        ({"id": "w", "cron": "0 2 * * *", "duration": "1h", "scope": {"teams": ["x"]}},
         "m.scope.teams", "unknown key"),
        ({"id": "W!", "cron": "0 2 * * *", "duration": "1h"}, "m.id", "lowercase"),
    ],
)
def test_window_errors_name_the_field(doc, field, message):
    with pytest.raises(ValidationError, match=message) as caught:
        make_window(doc, "m")
    assert caught.value.field == field


# -- the claim rule ---------------------------------------------------------------------

T0 = utc("2026-11-28T02:10:00+00:00")


def job():
    return new_job(id="orders", kind="noop", schedule={"cron": "0 * * * *"},
                   produces=["sales.orders"], max_retries=3)


def control(mode: str, scope=None) -> Control:
    w = make_window({"id": "vacuum", "cron": "0 2 * * *", "duration": "30m", "mode": mode,
                     "note": "warehouse vacuum", **({"scope": scope} if scope else {})}, "m")
    return Control(maintenance=Maintenance((w,)))


def queued():
    return runs.new_run(job(), "orders__1", T0, source="schedule", now=T0, settings=SETTINGS)


def retry_due():
    """Its first attempt failed before the window; the second arrives during it."""
    started = runs.started(queued(), 1, T0 - 20 * MIN, 30 * MIN)
    waiting = runs.retrying(started, T0 - 15 * MIN, "HTTP 503", 10 * MIN)
    return runs.redispatched(waiting, T0 - 15 * MIN, 10 * MIN, next_attempt=True)


@pytest.mark.parametrize(
    ("case", "run", "attempt", "mode", "scope", "verdict"),
    [
        ("a first attempt does not start (skip)", queued(), 1, "skip", None,
         ClaimVerdict.MAINTENANCE),
        ("a first attempt does not start (drain)", queued(), 1, "drain", None,
         ClaimVerdict.MAINTENANCE),
        ("a retry is stopped (skip)", retry_due(), 2, "skip", None, ClaimVerdict.MAINTENANCE),
        ("a retry goes on (drain: let it finish)", retry_due(), 2, "drain", None,
         ClaimVerdict.START),
        ("a window on another job", queued(), 1, "skip", {"jobs": ["crm"]}, ClaimVerdict.START),
        ("a window on the dataset it writes", queued(), 1, "skip",
         {"datasets": ["sales.orders"]}, ClaimVerdict.MAINTENANCE),
        ("a window on a consumer only", queued(), 1, "skip", {"consumers": ["revenue"]},
         ClaimVerdict.START),
    ],
)
def test_claim_during_a_window(case, run, attempt, mode, scope, verdict):
    decision = decide_claim(run, job(), None, attempt, control(mode, scope), T0, SETTINGS)
    assert decision.verdict == verdict, case


def test_a_run_stopped_before_it_started_just_ends_saying_why():
    decision = decide_claim(queued(), job(), None, 1, control("skip"), T0, SETTINGS)
    assert decision.run.status == "failed"
    assert decision.run.error == ("not started: maintenance 'vacuum' until 2026-11-28 02:30 UTC "
                                  "(warehouse vacuum)")
    assert decision.job_fields is None and decision.datasets is None


def test_a_retry_stopped_by_a_skip_window_fails_the_run_and_its_datasets():
    decision = decide_claim(retry_due(), job(), None, 2, control("skip"), T0, SETTINGS)
    assert decision.run.status == "failed"
    assert decision.job_fields["last_run_status"] == "failed"
    assert decision.datasets.event == DatasetEvent.FAILURE
    assert decision.run.error.startswith("not retried: maintenance 'vacuum'")


def test_after_the_window_the_claim_starts():
    later = replace(queued(), scheduled_for=T0 + 30 * MIN)
    decision = decide_claim(later, job(), None, 1, control("skip"), T0 + 20 * MIN, SETTINGS)
    assert decision.verdict == ClaimVerdict.START


def test_scope_describes_itself():
    assert Scope().describe() == "the whole pipeline"
    assert Scope(jobs=("a",), consumers=("c", "d")).describe() == "jobs a; consumers c, d"
    assert Mode("drain") == Mode.DRAIN


# -- issue 20 §4: a recurring window cannot be on forever, and judging it costs two steps --

@pytest.mark.parametrize(("cron", "tz", "duration", "refused"), [
    ("* * * * *", "UTC", "31d", True),  # the attack: on at every instant
    ("* * * * *", "UTC", "1m", True),  # a minute-long window every minute never closes
    ("* * * * *", "UTC", "59s", False),
    ("0 3 * * 1-5", "UTC", "1d", True),  # weekdays: the smallest gap is a day
    ("0 3 * * 1-5", "UTC", "23h", False),
    ("0,5 * * * *", "UTC", "5m", True),  # gaps of 5 and 55 minutes
    ("0,5 * * * *", "UTC", "4m", False),
    # 01:30 London: the spring-forward day starts it at 02:00 BST, 23.5 real hours after
    # the day before's
    ("30 1 * * *", "Europe/London", "23h30m", True),
    ("30 1 * * *", "Europe/London", "23h", False),
])
def test_a_recurring_window_must_be_shorter_than_its_crons_smallest_gap(cron, tz, duration,
                                                                        refused):
    doc = {"id": "w", "cron": cron, "duration": duration, "timezone": tz}
    if refused:
        with pytest.raises(ValidationError, match="shorter than the smallest gap") as caught:
            make_window(doc, "maintenance[0]")
        assert caught.value.field == "maintenance[0].duration"
    else:
        assert make_window(doc, "maintenance[0]").duration is not None


@pytest.mark.parametrize(("windows", "refused_at"), [
    ([("0 1 * * *", "6h")], None),  # 42 h a week
    ([("0 1 * * *", "7h")], 0),  # 49 h
    ([("0 1 * * *", "4h"), ("0 13 * * *", "3h")], 1),  # 28 h + 21 h
    ([("0 1 * * *", "3h"), ("0 13 * * *", "3h")], None),  # 42 h
    ([("0 * * * *", "17m")], None),  # 47.6 h
    ([("0 * * * *", "18m")], 0),  # 50.4 h
    ([("*/15 * * * *", "4m")], None),  # the demo's: 44.8 h
    ([("*/10 * * * *", "4m")], 0),  # 67.2 h: the demo's before the cap
    ([("0 0 * * 0", "47h")], None),  # weekly
    ([("0 0 1 * *", "20d")], 0),  # monthly, but 7 days of 7 at once
])
def test_recurring_windows_together_cover_at_most_48h_of_any_7_days(windows, refused_at):
    made = [make_window({"id": f"w{i}", "cron": cron, "duration": d}, f"maintenance[{i}]")
            for i, (cron, d) in enumerate(windows)]
    if refused_at is None:
        check_windows(made)
        return
    with pytest.raises(ValidationError, match="at most 48 h in any 7 days") as caught:
        check_windows(made)
    assert caught.value.field == f"maintenance[{refused_at}].duration"


def test_one_off_windows_do_not_count_toward_the_weekly_cap():
    migration = make_window({"id": "m", "start": "2026-12-01T00:00:00Z",
                             "end": "2026-12-20T00:00:00Z"}, "maintenance[0]")
    check_windows([migration, nightly()])


def _walked(window: Window, when: datetime):
    """The reference: every occurrence that may be under way, walked forward."""
    found = None
    for occurrence in window.occurrences(when - timedelta(hours=1),
                                         when + timedelta(microseconds=1)):
        if occurrence.active(when):  # a walk from a fall-back hour may start too early
            found = occurrence
    return found


@pytest.mark.parametrize("window", [
    nightly(), make_window({"id": "q", "cron": "*/15 * * * *", "duration": "14m",
                            "timezone": "America/New_York"}, "m"),
    make_window({"id": "wd", "cron": "30 1 * * 1-5", "duration": "23h",
                 "timezone": "Europe/London"}, "m"),
    make_window({"id": "h", "cron": "30 * * * *", "duration": "59m",
                 "timezone": "Australia/Lord_Howe"}, "m")])
def test_the_window_in_force_by_one_reverse_step_is_the_one_a_walk_finds(window):
    """Every 13 minutes across both 2026 DST changes of London and New York."""
    for day in ("2026-03-08", "2026-03-29", "2026-10-25", "2026-11-01", "2026-04-05"):
        start = utc(f"{day}T00:00:00+00:00") - timedelta(hours=6)
        for step in range(0, 36 * 60, 13):
            when = start + timedelta(minutes=step)
            expected = _walked(window, when)
            got = window.at(when)
            assert (got and (got.start, got.end)) == (expected and (expected.start,
                                                                    expected.end)), when


def test_a_span_question_asks_each_window_for_its_first_overlap_only():
    every = make_window({"id": "e", "cron": "* * * * *", "duration": "30s"}, "m")
    maintenance = Maintenance((every, nightly()))
    start, end = utc("2026-11-28T00:00:00+00:00"), utc("2026-11-29T00:00:00+00:00")
    found = maintenance.first_overlapping(start, end)
    assert [(o.window.id, o.start) for o in found] == [
        ("e", start), ("nightly", utc("2026-11-28T01:30:00+00:00"))]
    assert maintenance.first_overlapping(start + timedelta(seconds=40),
                                         start + timedelta(seconds=50)) == []
