"""Timezone-aware time helpers. Every decision takes `now` as an argument.

Every date and duration a person or a file gives goes through parse_datetime or
parse_duration, which bound the range (years MIN_YEAR..MAX_YEAR; durations up to
MAX_DURATION) and accept ASCII digits only, so an extreme value is a ValidationError
naming its field, never an OverflowError deeper down.
"""

import math
from datetime import UTC, datetime, timedelta

from freshet.core.errors import ValidationError
from freshet.core.values import is_number

MIN_YEAR, MAX_YEAR = 1970, 2200
MAX_DURATION = timedelta(days=3660)  # about ten years: longer than any window, ETA or lag
_MAX_DIGITS = 12  # in one number of a duration text: past MAX_DURATION in any unit


def utcnow() -> datetime:
    """The clock, read once at an entry point and passed down."""
    return datetime.now(UTC)


def ensure_aware(value: datetime, field: str = "datetime") -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(field, "must include a timezone (e.g. 2026-11-28T09:00:00+00:00)")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+05:00 has no UTC datetime
        raise ValidationError(field, f"must lie in the years {MIN_YEAR} to {MAX_YEAR}") from None


def in_range(value: datetime, field: str) -> datetime:
    """`value` (UTC) if it lies in the years MIN_YEAR..MAX_YEAR, else a ValidationError."""
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValidationError(field, f"must lie in the years {MIN_YEAR} to {MAX_YEAR}")
    return value


def parse_datetime(value: object, field: str) -> datetime:
    """Parse an ISO 8601 string (or pass a datetime through); it must carry a zone."""
    if isinstance(value, datetime):
        return in_range(ensure_aware(value, field), field)
    if not isinstance(value, str):
        raise ValidationError(field, "must be an ISO 8601 date-time string")
    text = value.strip()
    if not text.isascii() or len(text) > 64:
        raise ValidationError(field, f"{value[:64]!r} is not an ISO 8601 date-time (ASCII "
                                     "digits, e.g. 2026-11-28T09:00:00Z)")
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError(field, f"{value!r} is not an ISO 8601 date-time") from None
    return in_range(ensure_aware(parsed, field), field)


def to_utc(value: datetime | None) -> datetime | None:
    """Normalise what Firestore returns (DatetimeWithNanoseconds) to a plain UTC datetime."""
    if value is None:
        return None
    if value.__class__ is datetime and value.tzinfo is UTC and not value.fold:
        return value  # already one (a stored model holds thousands): no new object
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return datetime(*value.timetuple()[:6], value.microsecond, tzinfo=UTC)


def isoformat(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not UTC:  # most are UTC already: no new object
        value = value.astimezone(UTC)
    return value.isoformat().replace("+00:00", "Z")


def human_duration(delta: timedelta) -> str:
    """'45 s', '12 min', '27 h', '3 d': coarse on purpose, for banners and reasons."""
    seconds = int(delta.total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 60:
        return f"{sign}{seconds} s"
    if seconds < 3600:
        return f"{sign}{seconds // 60} min"
    if seconds < 72 * 3600:
        hours, minutes = seconds // 3600, seconds % 3600 // 60
        if hours >= 10 or minutes == 0:
            return f"{sign}{hours} h"
        return f"{sign}{hours} h {minutes} min"
    return f"{sign}{seconds // 86400} d"


def parse_duration(value: object, field: str) -> timedelta:
    """'90s', '30m', '26h', '2d', '1h30m' or a number of seconds."""
    if isinstance(value, timedelta):
        result = value
    elif is_number(value):  # a bool is not a number of seconds: the else below
        if not math.isfinite(value) or abs(value) > MAX_DURATION.total_seconds():
            raise _too_long(field)
        result = timedelta(seconds=value)
    elif isinstance(value, str) and len(value) <= 40:
        result = _parse_duration_text(value.strip().lower(), field)
    else:
        raise ValidationError(field, "must be a duration like '30m', '26h' or '2d'")
    if result <= timedelta(0):
        raise ValidationError(field, "must be a positive duration")
    if result > MAX_DURATION:
        raise _too_long(field)
    return result


def _not_a_duration(text: str, field: str) -> ValidationError:
    return ValidationError(field, f"{text[:40]!r} is not a duration like '30m', '26h' or '2d'")


def _too_long(field: str) -> ValidationError:
    return ValidationError(field, f"must be a duration of at most {format_duration(MAX_DURATION)}")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _parse_duration_text(text: str, field: str) -> timedelta:
    total, number = 0, ""
    for char in text:
        if char in "0123456789":  # str.isdigit() would take '²' and '٣'
            if len(number) >= _MAX_DIGITS:
                raise _too_long(field)
            number += char
        elif char in _UNITS and number:
            total += int(number) * _UNITS[char]
            number = ""
        else:
            raise _not_a_duration(text, field)
    if number or not text:
        raise _not_a_duration(text, field)
    if total > MAX_DURATION.total_seconds():
        raise _too_long(field)
    return timedelta(seconds=total)


def format_duration(delta: timedelta) -> str:
    """The inverse of parse_duration, for configs and plans: 93600 s -> '26h'."""
    seconds = int(delta.total_seconds())
    for unit in ("w", "d", "h", "m"):
        if seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"
