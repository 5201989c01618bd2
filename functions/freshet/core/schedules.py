"""Schedules: cron in an IANA timezone, or one time at `run_at`. Pure functions only.

Cron parsing and DST handling come from cronsim (the library healthchecks uses):
a daily 02:30 job runs at 03:00 on the spring-forward day (02:30 does not exist)
and once, at the first 01:30, on the fall-back day.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from freshet.core.errors import ValidationError
from freshet.core.timeutil import ensure_aware, parse_datetime


@dataclass(frozen=True)
class Schedule:
    """Either `cron` + `timezone` (recurring) or `run_at` (one time), never both."""

    cron: str | None = None
    timezone: str = "UTC"
    run_at: datetime | None = None

    @property
    def recurring(self) -> bool:
        return self.cron is not None

    def to_dict(self) -> dict:
        if self.recurring:
            return {"cron": self.cron, "timezone": self.timezone}
        return {"run_at": self.run_at}

    @classmethod
    def from_dict(cls, data: dict) -> "Schedule":
        if data.get("cron") is not None:
            return cls(cron=data["cron"], timezone=data.get("timezone") or "UTC")
        return cls(run_at=data.get("run_at"))


def zone(name: str, field: str = "schedule.timezone") -> ZoneInfo:
    if not isinstance(name, str) or not name.strip():
        raise ValidationError(field, "must be an IANA timezone name such as 'Europe/London'")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(field, f"unknown timezone {name!r}") from None


def validate_cron(expr: object, field: str = "schedule.cron") -> str:
    if not isinstance(expr, str) or not expr.strip():
        raise ValidationError(field, "must be a cron expression such as '*/15 * * * *'")
    expr = " ".join(expr.split())
    try:
        CronSim(expr, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise ValidationError(field, f"invalid cron expression {expr!r}: {exc}") from None
    return expr


def make_schedule(*, cron=None, timezone=None, run_at=None, field: str = "schedule") -> Schedule:
    """Validate raw values into a Schedule; errors name the offending field."""
    if cron is not None and run_at is not None:
        raise ValidationError(field, "give either cron or run_at, not both")
    if cron is None and run_at is None:
        raise ValidationError(field, "needs cron (recurring) or run_at (one time)")
    if run_at is not None:
        if timezone is not None:
            zone(timezone, f"{field}.timezone")
        return Schedule(run_at=parse_datetime(run_at, f"{field}.run_at"))
    tz_name = "UTC" if timezone is None else timezone
    zone(tz_name, f"{field}.timezone")
    return Schedule(cron=validate_cron(cron, f"{field}.cron"), timezone=tz_name)


def next_after(schedule: Schedule, after: datetime) -> datetime | None:
    """The first slot strictly after `after` (UTC), or None when nothing is left."""
    after = ensure_aware(after, "after")
    if not schedule.recurring:
        return schedule.run_at if schedule.run_at > after else None
    local = after.astimezone(zone(schedule.timezone))
    return next(iter(CronSim(schedule.cron, local))).astimezone(UTC)


def slots_between(schedule: Schedule, start: datetime, end: datetime) -> list[datetime]:
    """Every slot in [start, end), in UTC: one cron walk, not a next_after per slot."""
    start, end = ensure_aware(start, "start"), ensure_aware(end, "end")
    if not schedule.recurring:
        return [schedule.run_at] if start <= schedule.run_at < end else []
    found = []
    local = (start - timedelta(microseconds=1)).astimezone(zone(schedule.timezone))
    for slot in CronSim(schedule.cron, local):
        if (slot := slot.astimezone(UTC)) >= end:
            return found
        found.append(slot)
    return found


def latest_due(schedule: Schedule, next_run_at: datetime, now: datetime) -> datetime:
    """The slot to run now: the latest slot at or before `now`, or `next_run_at` itself.

    A job far behind (the scheduler was down for days) runs once, for its latest
    missed slot, rather than once per missed slot. Looking back through widening
    windows keeps the walk short for a one-minute job that is days behind.
    """
    if not schedule.recurring or next_run_at > now:
        return next_run_at
    for window in _LOOKBACK_WINDOWS:
        start = max(next_run_at, now - window)
        latest = _last_at_or_before(schedule, start, now)
        if latest is not None:
            return latest
        if start == next_run_at:
            break
    return next_run_at


def _last_at_or_before(schedule: Schedule, start: datetime, now: datetime) -> datetime | None:
    last = None
    cursor = start - _EPSILON
    for _ in range(_MAX_STEPS):
        upcoming = next_after(schedule, cursor)
        if upcoming is None or upcoming > now:
            return last
        last, cursor = upcoming, upcoming
    return last


def describe(schedule: Schedule) -> str:
    """Words for the page and the CLI: 'At 09:00 on Monday through Friday (Europe/London)'."""
    if not schedule.recurring:
        return f"Once at {schedule.run_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    try:
        words = CronSim(schedule.cron, datetime(2000, 1, 1, tzinfo=UTC)).explain()
    except Exception:  # explain() does not cover every expression cronsim accepts
        words = f"cron {schedule.cron}"
    return f"{words} ({schedule.timezone})"


_EPSILON = timedelta(microseconds=1)
_LOOKBACK_WINDOWS = tuple(timedelta(hours=h) for h in (1, 25, 24 * 8, 24 * 40, 24 * 400, 24 * 3000))
_MAX_STEPS = 100_000
