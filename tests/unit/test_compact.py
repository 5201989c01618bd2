"""core.compact: a dataset's days and data points as texts, and back."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from freshet.core.compact import (
    MAX_DAYS_SPAN,
    compacted,
    days_from_text,
    days_text,
    expanded,
    points_from_text,
    points_text,
)

T = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def test_days_read_back_from_the_first_day_with_gaps():
    daily = {"2026-11-27": {"fail": 0, "ok": 3}, "2026-11-29": {"fail": 1, "ok": 1}}
    assert days_text(daily) == "2026-11-27|3.0 _ 1.1"
    assert days_from_text("2026-11-27|3.0 _ 1.1") == daily


def test_points_read_back_as_utc_times():
    paris = timezone(timedelta(hours=1))
    points = [{"at": T, "as_of": None},
              {"at": T.astimezone(paris), "as_of": T - timedelta(microseconds=1)}]
    text = points_text(points)
    assert text == ("2026-11-28T12:00:00+00:00/- "
                    "2026-11-28T12:00:00+00:00/2026-11-28T11:59:59.999999+00:00")
    back = points_from_text(text)
    assert back == points and all(p["at"].tzinfo is UTC for p in back)


@pytest.mark.parametrize("daily", [
    {}, None, [], {"20261128": {"ok": 1, "fail": 0}},  # read by fromisoformat, not ISO
    {"2026-11-28": {"ok": 1}}, {"2026-11-28": {"ok": 1, "fail": 0, "x": 1}},
    {"2026-11-28": {"ok": -1, "fail": 0}}, {"2026-11-28": {"ok": True, "fail": 0}},
    {"2026-11-28": {"ok": 1.0, "fail": 0}}, {"2026-11-28": 3}, {"x": {"ok": 1, "fail": 0}},
    {"2026-11-28": {"ok": 1, "fail": 0},  # further apart than MAX_DAYS_SPAN days
     (T + timedelta(days=MAX_DAYS_SPAN)).date().isoformat(): {"ok": 1, "fail": 0}},
])
def test_days_of_another_shape_are_left_as_they_are(daily):
    assert days_text(daily) is None
    doc = {"key": "d", "daily": daily}
    assert compacted(doc) is doc


@pytest.mark.parametrize("points", [
    [], None, [{"at": T}], [{"at": T, "as_of": None, "x": 1}], [{"at": None, "as_of": None}],
    [{"at": T.replace(tzinfo=None), "as_of": None}], [{"at": T, "as_of": "yesterday"}],
    ["2026-11-28"],
])
def test_points_of_another_shape_are_left_as_they_are(points):
    assert points_text(points) is None


def test_a_document_compacted_expands_to_itself_and_an_old_one_is_read_as_it_is():
    doc = {"key": "d", "daily": {"2026-11-28": {"fail": 0, "ok": 1}},
           "data_points": [{"at": T, "as_of": T - timedelta(hours=1)}], "last_error": None}
    small = compacted(doc)
    assert set(small) == {"key", "daily_text", "data_points_text", "last_error"}
    assert expanded(small) == doc and doc["daily"]  # the original is not changed
    assert expanded(doc) is doc
    one = compacted({**doc, "data_points": [{"at": T}]})  # only the days are usual
    assert one["data_points"] == [{"at": T}] and expanded(one) == {**doc, "data_points": [
        {"at": T}]}
