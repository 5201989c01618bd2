"""Schedules: cron in an IANA timezone, one time at `run_at`, or none (a job that only
runs when triggered by fresh upstreams). Pure functions only.

Cron parsing and DST handling come from cronsim (the library healthchecks uses):
a daily 02:30 job runs at 03:00 on the spring-forward day (02:30 does not exist)
and once, at the first 01:30, on the fall-back day.
"""

import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from freshet.core.errors import ValidationError
from freshet.core.timeutil import ensure_aware, in_range, parse_datetime


@dataclass(frozen=True)
class Schedule:
    """Either `cron` + `timezone` (recurring) or `run_at` (one time), never both; neither
    for a job that runs only when its upstreams are fresh (`trigger`)."""

    cron: str | None = None
    timezone: str = "UTC"
    run_at: datetime | None = None

    @property
    def recurring(self) -> bool:
        return self.cron is not None

    @property
    def one_time(self) -> bool:
        return self.cron is None and self.run_at is not None

    @property
    def none(self) -> bool:
        return self.cron is None and self.run_at is None

    def to_dict(self) -> dict:
        if self.recurring:
            return {"cron": self.cron, "timezone": self.timezone}
        return {"run_at": self.run_at} if self.one_time else {}

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
    if not expr.isascii() or len(expr) > 200:
        raise ValidationError(field, "must be a cron expression such as '*/15 * * * *' "
                                     "(ASCII, at most 200 characters)")
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
    if schedule.none:
        return None
    if not schedule.recurring:
        return schedule.run_at if schedule.run_at > after else None
    local = after.astimezone(zone(schedule.timezone))
    return next(iter(CronSim(schedule.cron, local))).astimezone(UTC)


# A one-time job created (or moved) to a moment this recently past runs once, at once:
# the user was a little late. Further back it is refused: it would never run.
ONE_TIME_GRACE = timedelta(days=1)


def first_slot(schedule: Schedule, now: datetime,
               field: str = "schedule.run_at") -> datetime | None:
    """The first slot of a job being created or rescheduled at `now`.

    None only for a job without a schedule (it runs when its upstreams are fresh);
    otherwise never: a job that could not run would stay active forever. A recurring
    job's next slot always exists (cronsim refuses expressions that never fire)."""
    if schedule.none:
        return None
    if schedule.recurring:
        return next_after(schedule, now)
    if schedule.run_at >= now - ONE_TIME_GRACE:
        return schedule.run_at  # still to come, or due at once
    raise ValidationError(field, f"{schedule.run_at:%Y-%m-%d %H:%M} UTC is more than a day "
                          "in the past: a one-time job would never run; give a time still "
                          "to come")


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


def previous_slot(schedule: Schedule, slot: datetime) -> datetime | None:
    """The latest slot strictly before `slot`: where the data interval of `slot` starts.

    Walks forward through widening windows (cronsim's reverse mode misreads the
    repeated hour of a fall-back day); None for a one-time or unscheduled job."""
    if not schedule.recurring:
        return None
    before = ensure_aware(slot, "slot") - _EPSILON
    # Most schedules are regular: the gap after the slot is about the gap before it (a
    # DST change moves it by at most an hour), so a window of two gaps finds it in a few
    # steps; irregular ones (weekdays only) fall back to the widening windows.
    gap = next_after(schedule, slot) - slot
    for window in (2 * gap + min(gap, timedelta(hours=1)), *_LOOKBACK_WINDOWS):
        found = _last_at_or_before(schedule, before - window, before)
        if found is not None:
            return found
    return None


def data_interval(schedule: Schedule, slot: datetime) -> tuple[datetime | None, datetime]:
    """(previous slot, this slot]: the data a run for `slot` stands for."""
    return previous_slot(schedule, slot), slot


def slots_between(schedule: Schedule, start: datetime, end: datetime,
                  limit: int = 100_000) -> list[datetime]:
    """Every slot in [start, end], oldest first, at most `limit` of them."""
    found: list[datetime] = []
    cursor = in_range(ensure_aware(start, "start"), "start") - _EPSILON
    while len(found) < limit:
        upcoming = next_after(schedule, cursor)
        if upcoming is None or upcoming > end:
            break
        found.append(upcoming)
        cursor = upcoming
    return found


def newest_due(schedule: Schedule, first: datetime, now: datetime, count: int
               ) -> tuple[list[datetime], bool]:
    """The newest `count` slots in [first, now], oldest first, and whether older due
    slots exist beyond them. Widening windows keep a minutely job years behind cheap."""
    for window in _LOOKBACK_WINDOWS:
        start = max(first, now - window)
        found = slots_between(schedule, start, now, limit=_MAX_STEPS)
        if len(found) > count or start == first:
            return found[-count:] if count else [], len(found) > count or start > first
    return found[-count:] if count else [], True


@functools.lru_cache(maxsize=4096)
def slot_at_or_before(schedule: Schedule, at: datetime) -> datetime | None:
    """The latest slot at or before `at` (a page asks the same of many datasets of one
    job, hence the cache).

    cronsim's reverse walk is one step, but around a fall-back it can skip the first
    pass of a repeated hour (01:30 EDT, looking back from 01:04 EST), and its idea of a
    missing spring-forward slot need not be next_after's. So its answer is only a hint:
    it is kept when it is a forward slot, walked forward to the last one at or before
    `at`, and replaced by the forward search when it is not."""
    if not schedule.recurring:  # one time (None before it), or no schedule (triggered)
        return schedule.run_at if schedule.run_at is not None and schedule.run_at <= at \
            else None
    at = ensure_aware(at, "at")
    local = (at + _EPSILON).astimezone(zone(schedule.timezone))
    hint = next(iter(CronSim(schedule.cron, local, reverse=True)), None)
    found = None if hint is None else next_after(schedule, hint.astimezone(UTC) - _EPSILON)
    if found is None or found > at:
        return _search_back(schedule, at)
    while (later := next_after(schedule, found)) is not None and later <= at:
        found = later
    return found


def _search_back(schedule: Schedule, at: datetime) -> datetime | None:
    for window in _LOOKBACK_WINDOWS:
        latest = _last_at_or_before(schedule, at - window, at)
        if latest is not None:
            return latest
    return None


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
    if schedule.none:
        return "No schedule: runs when triggered"
    if not schedule.recurring:
        return f"Once at {schedule.run_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    try:
        words = uniform_steps(CronSim(schedule.cron, datetime(2000, 1, 1, tzinfo=UTC)).explain())
    except Exception:  # explain() does not cover every expression cronsim accepts
        words = f"cron {schedule.cron}"
    return f"{words} ({schedule.timezone})"


_ORDINALS = {"second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
             "eighth": 8, "ninth": 9}
_STEP = re.compile(r"\b(every) (second|third|fourth|fifth|sixth|seventh|eighth|ninth|"
                   r"(\d+)(?:st|nd|rd|th)) (minute|hour|day)( of every hour)?", re.IGNORECASE)


def uniform_steps(words: str) -> str:
    """One wording for steps: 'Every 2 minutes', 'Every 10 minutes', 'past every 2 hours'
    (cron's explainer says 'Every second minute of every hour' but 'Every 10th minute')."""
    def step(match: re.Match) -> str:
        count = int(match.group(3)) if match.group(3) else _ORDINALS[match.group(2).lower()]
        return f"{match.group(1)} {count} {match.group(4)}s"

    return _STEP.sub(step, words)


_EPSILON = timedelta(microseconds=1)
_LOOKBACK_WINDOWS = tuple(timedelta(hours=h) for h in (1, 25, 24 * 8, 24 * 40, 24 * 400, 24 * 3000))
_MAX_STEPS = 100_000
