"""Timezone-aware time helpers. Every decision takes `now` as an argument."""

from datetime import UTC, datetime, timedelta

from freshet.core.errors import ValidationError
from freshet.core.values import is_number


def utcnow() -> datetime:
    """The clock, read once at an entry point and passed down."""
    return datetime.now(UTC)


def ensure_aware(value: datetime, field: str = "datetime") -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(field, "must include a timezone (e.g. 2026-11-28T09:00:00+00:00)")
    return value.astimezone(UTC)


def parse_datetime(value: object, field: str) -> datetime:
    """Parse an ISO 8601 string (or pass a datetime through); it must carry a zone."""
    if isinstance(value, datetime):
        return ensure_aware(value, field)
    if not isinstance(value, str):
        raise ValidationError(field, "must be an ISO 8601 date-time string")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError(field, f"{value!r} is not an ISO 8601 date-time") from None
    return ensure_aware(parsed, field)


def to_utc(value: datetime | None) -> datetime | None:
    """Normalise what Firestore returns (DatetimeWithNanoseconds) to a plain UTC datetime."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return datetime(*value.timetuple()[:6], value.microsecond, tzinfo=UTC)


def isoformat(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


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
        result = timedelta(seconds=value)
    elif isinstance(value, str):
        result = _parse_duration_text(value.strip().lower(), field)
    else:
        raise ValidationError(field, "must be a duration like '30m', '26h' or '2d'")
    if result <= timedelta(0):
        raise ValidationError(field, "must be a positive duration")
    return result


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _parse_duration_text(text: str, field: str) -> timedelta:
    total, number = 0, ""
    for char in text:
        if char.isdigit():
            number += char
        elif char in _UNITS and number:
            total += int(number) * _UNITS[char]
            number = ""
        else:
            raise ValidationError(field, f"{text!r} is not a duration like '30m', '26h' or '2d'")
    if number or not text:
        raise ValidationError(field, f"{text!r} is not a duration like '30m', '26h' or '2d'")
    return timedelta(seconds=total)


def format_duration(delta: timedelta) -> str:
    """The inverse of parse_duration, for configs and plans: 93600 s -> '26h'."""
    seconds = int(delta.total_seconds())
    for unit in ("w", "d", "h", "m"):
        if seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"
