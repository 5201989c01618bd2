"""Every date and duration parser bounds its range and takes ASCII digits only (issue 20
§5): an extreme or exotic value is a ValidationError naming its field, never an
OverflowError or ValueError from deeper down. Tables, then a property over all of them."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from freshet.core.backfill import check_max_parallel
from freshet.core.deadlines import make_deadline
from freshet.core.errors import ValidationError
from freshet.core.incidents import parse_eta
from freshet.core.schedules import make_schedule, slots_between
from freshet.core.timeutil import (
    MAX_DURATION,
    ensure_aware,
    parse_datetime,
    parse_duration,
)
from freshet.core.windows import make_window

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("text, expected", [
    ("1970-01-01T00:00:00Z", datetime(1970, 1, 1, tzinfo=UTC)),
    ("2200-12-31T23:59:59Z", datetime(2200, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ("2026-11-28T09:00:00+05:00", datetime(2026, 11, 28, 4, tzinfo=UTC)),
])
def test_dates_from_1970_to_2200_are_read(text, expected):
    assert parse_datetime(text, "at") == expected


@pytest.mark.parametrize("text", [
    "0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00Z",
    "1969-12-31T23:59:59Z", "1970-01-01T00:00:00+00:01", "2201-01-01T00:00:00Z",
    "2200-12-31T23:59:59-00:01"])
def test_dates_outside_1970_to_2200_are_refused_naming_the_field(text):
    with pytest.raises(ValidationError) as caught:
        parse_datetime(text, "from")
    assert caught.value.field == "from" and "1970 to 2200" in caught.value.message


@pytest.mark.parametrize("text", ["２０２６-11-28T09:00:00Z", "2026-11-28T0٩:00:00Z",
                                  "2026-11-28T09:00:00+0٥:00", "2026-11-28T09:00:00Z" + " " * 80
                                  + "x", "2026\u202e-11-28"])
def test_dates_with_other_than_ascii_digits_are_refused(text):
    with pytest.raises(ValidationError) as caught:
        parse_datetime(text, "run_at")
    assert caught.value.field == "run_at"


def test_an_aware_datetime_at_the_ends_of_python_is_refused_not_overflowed():
    for value in (datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))),
                  datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-5)))):
        with pytest.raises(ValidationError):
            ensure_aware(value, "at")


@pytest.mark.parametrize("value, expected", [
    ("90s", timedelta(seconds=90)), ("1h30m", timedelta(minutes=90)), ("2w", timedelta(days=14)),
    (3600, timedelta(hours=1)), (1.5, timedelta(seconds=1.5)), ("3660d", MAX_DURATION)])
def test_durations_up_to_the_maximum_are_read(value, expected):
    assert parse_duration(value, "eta") == expected


@pytest.mark.parametrize("value", [
    "999999999d", "99999999999d", "99999999999999d", "3661d", "523w", "1" * 5000 + "s",
    "1s" * 100_000, float("nan"), float("inf"), float("-inf"), 1e300, 10**30, -(10**30),
    "1²h", "٣h", "１h", "1h²", "", "h", "1", "-1h", "1.5h", "1 h", 0, "0s"])
def test_durations_beyond_the_maximum_or_not_ascii_are_refused_naming_the_field(value):
    with pytest.raises(ValidationError) as caught:
        parse_duration(value, "duration")
    assert caught.value.field == "duration"


@pytest.mark.parametrize("value", ["999999999d", "1²h", "99999999999999d", "0001-01-01T00:00Z",
                                   "9999-12-31T23:59:59-05:00", float("nan")])
def test_an_incident_eta_out_of_range_is_refused_naming_eta(value):
    with pytest.raises(ValidationError) as caught:
        parse_eta(value, NOW)
    assert caught.value.field == "eta"


def test_a_slot_walk_from_the_first_allowed_instant_does_not_overflow():
    schedule = make_schedule(cron="0 0 1 1 *")
    start = datetime(1970, 1, 1, tzinfo=UTC)
    assert slots_between(schedule, start, start + timedelta(days=400))[0] == start
    with pytest.raises(ValidationError):
        slots_between(schedule, datetime(1, 1, 1, tzinfo=UTC), start)


def test_a_max_parallel_of_zero_is_refused_naming_it():
    with pytest.raises(ValidationError) as caught:
        check_max_parallel(0)
    assert caught.value.field == "max_parallel"


# -- the property: every parser, fed anything extreme or exotic --------------------------

EXTREME_TEXT = st.one_of(
    st.sampled_from(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59-05:00", "1²h", "٣d",
                     "99999999999999999999d", ".nan", "nan", "inf", "-0", "1e999", "\x00",
                     "2026-11-28T09:00:00+99:00", "2026-02-30T00:00:00Z", "9" * 5000 + "s",
                     "２０２６-01-01T00:00:00Z", "* * * * *", "0 0 31 2 *"]),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=30),
    st.from_regex(r"[0-9²³¹٠-٩０-９]{1,25}[smhdw]", fullmatch=True),
    st.builds(lambda y, rest: f"{y:04d}{rest}", st.integers(0, 9999),
              st.sampled_from(["-01-01T00:00:00Z", "-12-31T23:59:59-05:00",
                               "-06-15T12:00:00+14:00"])))
EXTREME = st.one_of(EXTREME_TEXT, st.integers(-(10**40), 10**40),
                    st.floats(allow_nan=True, allow_infinity=True), st.none(), st.booleans())


def _parsers(value):
    """Every pure parser of a date, a duration or a time-bearing declaration."""
    yield lambda: parse_datetime(value, "f")
    yield lambda: parse_duration(value, "f")
    yield lambda: parse_eta(value, NOW, "f")
    yield lambda: make_schedule(run_at=value, field="f")
    yield lambda: make_schedule(cron=value, field="f")
    yield lambda: make_deadline({"by": "0 7 * * *", "as_of": value, "datasets": []}, "f",
                                ["d"])
    yield lambda: make_window({"id": "w", "start": value, "end": "2026-12-01T00:00:00Z"}, "f")
    yield lambda: make_window({"id": "w", "start": "2026-11-30T00:00:00Z", "end": value}, "f")
    yield lambda: make_window({"id": "w", "cron": "0 3 * * *", "duration": value}, "f")


@settings(max_examples=150, deadline=None, derandomize=True)
@given(EXTREME)
def test_every_date_and_duration_parser_answers_a_validation_error_or_a_bounded_value(value):
    for parse in _parsers(value):
        try:
            result = parse()
        except ValidationError as exc:
            assert exc.field and exc.message
            continue
        if isinstance(result, datetime):
            assert 1970 <= result.year <= 2200
        if isinstance(result, timedelta):
            assert timedelta(0) < result <= MAX_DURATION
