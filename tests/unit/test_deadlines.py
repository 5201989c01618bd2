"""Deadlines as tables: when they fall (DST), what they need, met / missed / excused,
the record that judges each once, attainment, and the early-warning signals."""

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from freshet.core.bookkeeping import apply_start, apply_success
from freshet.core.deadlines import (
    Deadline,
    DeadlineRecord,
    Evidence,
    Item,
    Judgement,
    Signal,
    Verdict,
    data_time_at,
    decide_deadlines,
    judge,
    make_deadline,
    needs_judging,
    risks,
)
from freshet.core.errors import ValidationError
from freshet.core.freshness import make_requirement
from freshet.core.models import Dataset, new_job
from freshet.core.windows import Maintenance, make_window

MIN, H = timedelta(minutes=1), timedelta(hours=1)
REQ = make_requirement("sales.revenue", "20h", "26h")
PARIS = Deadline(by="0 7 * * 1-5", timezone="Europe/Paris", as_of="midnight")
NO_WINDOWS = Maintenance()


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def synced_at(*times: str, watermarks: dict | None = None) -> Dataset:
    ds = Dataset(key="sales.revenue")
    for i, t in enumerate(times):
        mark = (watermarks or {}).get(t)
        ds = apply_success(ds, f"r{i}", utc(t), watermark=utc(mark) if mark else None)
    return ds


def item(ds: Dataset | None, producers=("revenue",)) -> Item:
    return Item("sales.revenue", "Daily revenue", ds, REQ, producers)


def everything(window, it) -> bool:
    return window.scope.covers_dataset(it.key, it.producers)


# -- when deadlines fall, and what they need -------------------------------------------

def test_weekday_deadlines_in_paris_across_spring_forward():
    dues = PARIS.dues(utc("2026-03-26T12:00:00+00:00"), utc("2026-03-31T12:00:00+00:00"))
    assert dues == [utc("2026-03-27T06:00:00+00:00"),  # Friday, CET
                    utc("2026-03-30T05:00:00+00:00"),  # Monday, CEST: an hour earlier in UTC
                    utc("2026-03-31T05:00:00+00:00")]


@pytest.mark.parametrize(
    ("deadline", "due", "target"),
    [
        # as_of midnight in the deadline's zone, across both DST changes
        (PARIS, "2026-03-30T05:00:00+00:00", "2026-03-29T22:00:00+00:00"),
        (PARIS, "2026-10-26T06:00:00+00:00", "2026-10-25T23:00:00+00:00"),
        (PARIS, "2026-03-27T06:00:00+00:00", "2026-03-26T23:00:00+00:00"),
        # a duration: the deadline minus it
        (Deadline(by="0 7 * * *", as_of="8h"), "2026-11-28T07:00:00+00:00",
         "2026-11-27T23:00:00+00:00"),
        # none: the requirement's own error_after (26 h)
        (Deadline(by="0 7 * * *"), "2026-11-28T07:00:00+00:00", "2026-11-27T05:00:00+00:00"),
        # a cron: its latest slot at or before the deadline
        (Deadline(by="0 7 * * *", as_of="0 6 * * *"), "2026-11-28T07:00:00+00:00",
         "2026-11-28T06:00:00+00:00"),
    ],
)
def test_the_target_of_a_deadline(deadline, due, target):
    assert deadline.target(utc(due), REQ) == utc(target)


def test_descriptions_say_when_and_what():
    assert PARIS.describe() == ("At 07:00 on Monday through Friday (Europe/Paris), "
                                "data as of midnight")
    assert Deadline(by="0 7 * * *", as_of="8h").describe().endswith("data at most 8 h old")
    assert Deadline(by="0 7 * * *").describe().endswith("data within each requirement")


# -- met, missed, excused -------------------------------------------------------------

MONDAY = utc("2026-03-30T05:00:00+00:00")  # 07:00 Paris, the day after spring forward


@pytest.mark.parametrize(
    ("case", "dataset", "verdict"),
    [
        ("synced after midnight Paris, before 07:00", synced_at("2026-03-30T04:50:00+00:00"),
         Verdict.MET),
        ("synced at midnight Paris exactly", synced_at("2026-03-29T22:00:00+00:00"),
         Verdict.MET),
        ("synced a minute before midnight Paris", synced_at("2026-03-29T21:59:00+00:00"),
         Verdict.MISSED),
        ("synced after the deadline: too late", synced_at("2026-03-29T21:00:00+00:00",
                                                          "2026-03-30T05:01:00+00:00"),
         Verdict.MISSED),
        ("never synced", None, Verdict.MISSED),
        # the watermark, not the sync, decides: synced in time, data from yesterday
        ("a fresh sync of old data", synced_at(
            "2026-03-30T04:50:00+00:00",
            watermarks={"2026-03-30T04:50:00+00:00": "2026-03-29T20:00:00+00:00"}),
         Verdict.MISSED),
        ("data as of midnight", synced_at(
            "2026-03-30T04:50:00+00:00",
            watermarks={"2026-03-30T04:50:00+00:00": "2026-03-29T22:00:00+00:00"}),
         Verdict.MET),
    ],
)
def test_judging_a_passed_deadline(case, dataset, verdict):
    assert judge(PARIS, MONDAY, [item(dataset)], NO_WINDOWS, everything).verdict == verdict, case


def test_a_missed_deadline_says_what_the_data_was():
    ds = synced_at("2026-03-29T21:00:00+00:00")
    result = judge(PARIS, MONDAY, [item(ds)], NO_WINDOWS, everything)
    assert result.detail == ("Daily revenue was as of 2026-03-29 21:00 UTC; needed as of "
                             "2026-03-29 22:00 UTC")


def window(scope="all", **kw):
    return Maintenance((make_window({"id": "vacuum", "cron": "0 1 * * *", "duration": "2h",
                                     "timezone": "Europe/Paris", "scope": scope, **kw}, "m"),))


@pytest.mark.parametrize(
    ("maintenance", "verdict"),
    [
        (window(), Verdict.EXCUSED),  # 01:00-03:00 Paris, between midnight and 07:00
        (window({"jobs": ["revenue"]}), Verdict.EXCUSED),  # its producer was held
        (window({"jobs": ["crm"]}), Verdict.MISSED),  # another job's window
        (window(cron="0 9 * * *"), Verdict.MISSED),  # after the deadline: no excuse
    ],
)
def test_a_missed_deadline_is_excused_by_a_window_in_scope(maintenance, verdict):
    ds = synced_at("2026-03-29T21:00:00+00:00")
    result = judge(PARIS, MONDAY, [item(ds)], maintenance, everything)
    assert result.verdict == verdict
    if verdict == Verdict.EXCUSED:
        assert "excused: maintenance 'vacuum'" in result.detail


def test_a_met_deadline_stays_met_whatever_the_windows():
    ds = synced_at("2026-03-30T04:50:00+00:00")
    assert judge(PARIS, MONDAY, [item(ds)], window(), everything).verdict == Verdict.MET


# -- evidence: the data at the deadline ---------------------------------------------------

def test_evidence_uses_the_floor_and_says_when_it_cannot_know():
    ds = synced_at(*[f"2026-03-30T0{h}:00:00+00:00" for h in range(1, 6)])
    assert data_time_at(ds, utc("2026-03-30T03:30:00+00:00")).value == \
        utc("2026-03-30T03:00:00+00:00")
    assert data_time_at(ds, utc("2026-03-30T00:30:00+00:00")) == Evidence(None, True)  # none yet
    trimmed = replace(ds, data_points=ds.data_points[3:], data_floor=ds.data_points[2])
    assert data_time_at(trimmed, utc("2026-03-30T03:30:00+00:00")).value == \
        utc("2026-03-30T03:00:00+00:00")
    assert data_time_at(trimmed, utc("2026-03-30T01:30:00+00:00")).known is False
    unverifiable = judge(PARIS, utc("2026-03-30T01:30:00+00:00"), [item(trimmed)], NO_WINDOWS,
                         everything)
    assert unverifiable.verdict == Verdict.MISSED and "not verifiable" in unverifiable.detail


def test_a_document_from_before_data_points_starts_its_history_with_the_old_success():
    legacy = Dataset(key="sales.revenue", last_success_at=utc("2026-03-30T03:00:00+00:00"))
    assert data_time_at(legacy, utc("2026-03-30T04:00:00+00:00")).value == \
        utc("2026-03-30T03:00:00+00:00")
    assert data_time_at(legacy, utc("2026-03-30T02:00:00+00:00")).known is False
    later = apply_success(legacy, "r", utc("2026-03-30T05:10:00+00:00"))
    assert data_time_at(later, utc("2026-03-30T05:00:00+00:00")).value == \
        utc("2026-03-30T03:00:00+00:00")


# -- the record: each deadline judged once --------------------------------------------------

def met(deadline, due):
    return Judgement(deadline.key, due, Verdict.MET, "ok")


def test_a_new_deadline_starts_judging_from_now():
    now = utc("2026-03-30T10:00:00+00:00")
    record, judged = decide_deadlines(None, "revenue", [PARIS], now, met)
    assert judged == [] and record.cursors == {PARIS.key: now}
    assert not needs_judging(record, [PARIS], now + H)


def test_each_deadline_is_judged_once_across_publishes():
    start = utc("2026-03-26T10:00:00+00:00")
    record, _ = decide_deadlines(None, "revenue", [PARIS], start, met)
    seen = []
    for minutes in range(0, 6 * 24 * 60, 5):  # every publish for six days
        now = start + minutes * MIN
        if needs_judging(record, [PARIS], now):
            record, judged = decide_deadlines(record, "revenue", [PARIS], now, met)
            seen += [j.due for j in judged]
    assert seen == PARIS.dues(start, start + 6 * 24 * H)
    assert len(seen) == len(set(seen)) == 4  # Fri, Mon, Tue, Wed


def test_a_long_outage_catches_up_in_bounded_steps():
    every_minute = Deadline(by="* * * * *")
    start = utc("2026-03-26T10:00:00+00:00")
    record, _ = decide_deadlines(None, "c", [every_minute], start, met)
    record, judged = decide_deadlines(record, "c", [every_minute], start + 10 * H, met)
    assert len(judged) == 200 and record.cursors[every_minute.key] == start + 200 * MIN
    record, judged = decide_deadlines(record, "c", [every_minute], start + 10 * H, met)
    assert len(judged) == 200


def test_attainment_over_90_and_30_days_and_the_bounds_of_the_record():
    record = DeadlineRecord("c")
    verdicts = {0: "met", 10: "missed", 40: "met", 45: "missed", 50: "excused", 95: "met"}
    today = date(2026, 11, 28)
    record.days = {(today - timedelta(days=d)).isoformat(): {v: 1} for d, v in verdicts.items()}
    assert record.attainment(today) == 2 / 4  # day 95 is out; the excused one counts for none
    assert record.attainment(today, 30) == 1 / 2
    assert DeadlineRecord("empty").attainment(today) is None
    judgement = Judgement("k", utc("2026-11-28T07:00:00+00:00"), Verdict.MET, "x")
    record, _ = decide_deadlines(record, "c", [], utc("2026-11-28T12:00:00+00:00"),
                                 lambda d, due: judgement)
    assert (today - timedelta(days=95)).isoformat() not in record.days  # pruned
    assert len(DeadlineRecord.from_doc(record.to_doc()).days) == len(record.days)


def test_removed_deadlines_lose_their_cursor():
    now = utc("2026-03-30T10:00:00+00:00")
    record, _ = decide_deadlines(None, "c", [PARIS], now, met)
    record, _ = decide_deadlines(record, "c", [], now + H, met)
    assert record.cursors == {}


@pytest.mark.parametrize(
    ("doc", "field", "message"),
    [
        ({"timezone": "UTC"}, "d.by", "is required"),
        ({"by": "0 25 * * *"}, "d.by", "invalid cron"),
        ({"by": "0 7 * * *", "timezone": "Paris"}, "d.timezone", "unknown timezone"),
        ({"by": "0 7 * * *", "as_of": "yesterday"}, "d.as_of", "not a duration"),
        ({"by": "0 7 * * *", "as_of": "0 0 * *"}, "d.as_of", "invalid cron"),
        ({"by": "0 7 * * *", "datasets": ["crm"]}, "d.datasets[0]", "not among"),
        ({"by": "0 7 * * *", "when": "x"}, "d.when", "unknown key"),
    ],
)
def test_deadline_errors_name_the_field(doc, field, message):
    with pytest.raises(ValidationError, match=message) as caught:
        make_deadline(doc, "d", ["sales.revenue"])
    assert caught.value.field == field


def test_as_of_forms_are_normalised():
    assert make_deadline({"by": "0 7 * * *", "as_of": "480m"}, "d", ["x"]).as_of == "8h"
    assert make_deadline({"by": "0 7 * * *", "as_of": " 0  0 * * * "}, "d", ["x"]).as_of == \
        "0 0 * * *"


# -- early warning --------------------------------------------------------------------------

NOW = utc("2026-03-30T04:20:00+00:00")  # 06:20 Paris, 40 min before Monday's deadline


def producer(**kw):
    job = new_job(id="revenue", kind="noop", schedule={"cron": "0 4 * * *"},  # 04:00 UTC
                  produces=["sales.revenue"])
    return replace(job, **kw)


def yesterday() -> Dataset:
    return synced_at("2026-03-29T04:10:00+00:00")


def signals(ds, job=None, failing=None, now=NOW, maintenance=NO_WINDOWS):
    found = risks(PARIS, MONDAY, [item(ds)], {"revenue": job or producer()},
                  failing or {}, maintenance, now)
    return [(r.signal, r.text) for r in found]


def test_not_started_by_its_usual_start_time():
    assert signals(yesterday()) == [(Signal.NOT_STARTED, "revenue has not started (due 04:00 "
                                     "UTC, usually within 2 min)")]
    # within its usual lag (p95 of recent starts: 30 min here) it is not late yet
    patient = producer(recent_start_lags_s=[60.0, 1800.0])
    assert signals(yesterday(), patient) == []


def test_running_longer_than_the_p95_of_recent_successes():
    running = apply_start(yesterday(), "today", utc("2026-03-30T04:01:00+00:00"))
    usual = producer(recent_durations_s=[600.0] * 10)
    assert signals(running, usual) == [(Signal.OVERRUNNING, "revenue has been running 19 min, "
                                        "longer than its usual 10 min (p95 of 10 runs)")]
    slow = producer(recent_durations_s=[1500.0] * 10)
    assert signals(running, slow) == []


def test_an_upstream_failing():
    found = signals(apply_start(yesterday(), "x", utc("2026-03-30T04:01:00+00:00")),
                    failing={"sales.revenue": ("sales.orders",)})
    assert found == [(Signal.UPSTREAM_FAILING, "upstream sales.orders is failing")]


@pytest.mark.parametrize(
    ("case", "dataset", "now"),
    [
        ("the target is already met", synced_at("2026-03-30T04:05:00+00:00"), NOW),
        ("before the target (midnight Paris) nothing is at risk", yesterday(),
         utc("2026-03-29T21:30:00+00:00")),
    ],
)
def test_no_signal(case, dataset, now):
    assert signals(dataset, now=now) == [], case


def test_a_job_held_by_maintenance_is_excused_not_at_risk():
    assert signals(yesterday(), maintenance=window(cron="0 6 * * *")) == []
