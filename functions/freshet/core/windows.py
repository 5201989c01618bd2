"""Maintenance windows: planned time when jobs in scope do not start, notifications in
scope are muted, and freshness and deadlines in scope are excused rather than failed.

A window is one-off (`start`, `end`) or recurring (`cron` + `duration` in an IANA
`timezone`: cronsim places each start, so a 01:30 window runs once on the fall-back
day and at 02:00 on the spring-forward day where 01:30 does not exist; the duration
is elapsed time). Its scope is the whole pipeline (no lists) or any of:

  jobs       those jobs do not start; the datasets they produce are excused and muted;
  datasets   those datasets are excused and muted; the jobs producing them do not start;
  consumers  those consumers are excused and muted; their jobs keep running.

`mode` says what happens to work already under way when a window opens:

  skip   nothing in scope starts, not even the next attempt of a run already under way
         (that run ends, failed, saying so);
  drain  runs already under way go on, their retries included; nothing new starts.

Either way a slot falling inside the window is skipped: a recurring job runs at its
next slot after the window, a one-time job when the window ends.

Windows are declared in the pipeline config and stored by `apply` beside the kill
switches (settings/control, field `maintenance`), so the tick and run_task read them
with the document they already read. Everything here is pure.

Bounds (check_windows, at config load and wherever windows are made): a recurring
window lasts less than its cron's smallest gap (elapsed time, over a year of its
timezone: DST included), so at most one occurrence is under way at any instant and
the one in force is found by one reverse cron step (`Window.at`), never a walk; and
recurring windows together cover at most MAX_WEEKLY of any 7 days, so maintenance
cannot be on for good. One-off windows last at most MAX_DURATION each.
"""

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from cronsim import CronSim

from freshet.core.errors import ValidationError, check_keys
from freshet.core.models import check_id
from freshet.core.schedules import Schedule, slot_at_or_before, validate_cron, zone
from freshet.core.timeutil import format_duration, parse_datetime, parse_duration, to_utc

MAX_DURATION = timedelta(days=31)
# Recurring windows, all together, in any 7 days (a nightly 4 h window is 28 h).
MAX_WEEKLY = timedelta(hours=48)
WEEK = timedelta(days=7)
_GAP_SPAN = timedelta(days=366)  # a year of occurrences: both DST changes, every weekday
_CHECK_STEPS = 4000  # starts walked by the config's checks, whatever the cron says
UPCOMING = timedelta(days=7)  # status.json maintenance[]: current and upcoming
MAX_LISTED = 50
_MAX_STEPS = 20_000  # occurrences walked by one question, whatever the cron says


class Mode(StrEnum):
    SKIP = "skip"
    DRAIN = "drain"


@dataclass(frozen=True)
class Scope:
    jobs: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ()
    consumers: tuple[str, ...] = ()

    @property
    def everything(self) -> bool:
        return not (self.jobs or self.datasets or self.consumers)

    def covers_job(self, job_id: str, produces: Iterable[str]) -> bool:
        return (self.everything or job_id in self._jobs
                or any(key in self._datasets for key in produces))

    def covers_dataset(self, key: str, producers: Iterable[str]) -> bool:
        return (self.everything or key in self._datasets
                or any(job_id in self._jobs for job_id in producers))

    # Sets for the questions above: a publish asks them of every dataset (5,000), and a
    # window may name hundreds of jobs.
    @functools.cached_property
    def _jobs(self) -> frozenset[str]:
        return frozenset(self.jobs)

    @functools.cached_property
    def _datasets(self) -> frozenset[str]:
        return frozenset(self.datasets)

    def covers_consumer(self, consumer_id: str) -> bool:
        return self.everything or consumer_id in self.consumers

    def describe(self) -> str:
        if self.everything:
            return "the whole pipeline"
        parts = [f"{name} {', '.join(ids)}" for name, ids in
                 (("jobs", self.jobs), ("datasets", self.datasets),
                  ("consumers", self.consumers)) if ids]
        return "; ".join(parts)

    def to_doc(self) -> dict:
        return {"jobs": list(self.jobs), "datasets": list(self.datasets),
                "consumers": list(self.consumers)}

    def to_json(self) -> dict:
        """status.json and the API: `everything`, or the ids listed."""
        return {"everything": self.everything, **self.to_doc()}


@dataclass(frozen=True)
class Window:
    id: str
    note: str = ""
    start: datetime | None = None  # one-off
    end: datetime | None = None
    cron: str | None = None  # recurring
    duration: timedelta | None = None
    timezone: str = "UTC"
    scope: Scope = field(default_factory=Scope)
    mode: Mode = Mode.SKIP

    @property
    def recurring(self) -> bool:
        return self.cron is not None

    def occurrences(self, start: datetime, end: datetime) -> Iterator["Occurrence"]:
        """Every occurrence overlapping [start, end), in order."""
        if not self.recurring:
            if self.start < end and self.end > start:
                yield Occurrence(self, self.start, self.end)
            return
        local = (start - self.duration).astimezone(zone(self.timezone))
        for step, begins in enumerate(CronSim(self.cron, local)):
            begins = begins.astimezone(UTC)
            if begins >= end or step >= _MAX_STEPS:
                return
            yield Occurrence(self, begins, begins + self.duration)

    def at(self, when: datetime) -> "Occurrence | None":
        """The occurrence under way at `when`: one reverse cron step to the latest start
        at or before it (a window lasts less than its cron's smallest gap, so no earlier
        one can still be under way)."""
        if not self.recurring:
            return Occurrence(self, self.start, self.end) if self.start <= when < self.end \
                else None
        begins = slot_at_or_before(Schedule(cron=self.cron, timezone=self.timezone), when)
        if begins is None or begins + self.duration <= when:
            return None
        return Occurrence(self, begins, begins + self.duration)

    def first_overlapping(self, start: datetime, end: datetime) -> "Occurrence | None":
        """The earliest occurrence overlapping [start, end): the one in force at `start`,
        else the first to begin before `end` (a reverse and a forward step)."""
        return self.at(start) or next((o for o in self.occurrences(start, end)
                                       if o.end > start), None)  # a fall-back hour's walk

    def to_doc(self) -> dict:
        return {"id": self.id, "note": self.note, "start": self.start, "end": self.end,
                "cron": self.cron, "timezone": self.timezone,
                "duration": format_duration(self.duration) if self.duration else None,
                "scope": self.scope.to_doc(), "mode": str(self.mode)}

    @classmethod
    def from_doc(cls, doc: dict) -> "Window":
        scope = doc.get("scope") or {}
        return cls(
            id=doc["id"], note=doc.get("note") or "", start=to_utc(doc.get("start")),
            end=to_utc(doc.get("end")), cron=doc.get("cron"),
            duration=parse_duration(doc["duration"], "duration") if doc.get("duration") else None,
            timezone=doc.get("timezone") or "UTC",
            scope=Scope(tuple(scope.get("jobs") or ()), tuple(scope.get("datasets") or ()),
                        tuple(scope.get("consumers") or ())),
            mode=Mode(doc.get("mode") or Mode.SKIP),
        )


@dataclass(frozen=True)
class Occurrence:
    window: Window
    start: datetime
    end: datetime

    def active(self, at: datetime) -> bool:
        return self.start <= at < self.end

    def describe(self) -> str:
        """"maintenance 'vacuum' until 02:30 UTC (warehouse vacuum)"."""
        note = f" ({self.window.note})" if self.window.note else ""
        return f"maintenance '{self.window.id}' until {self.end:%Y-%m-%d %H:%M} UTC{note}"


@dataclass(frozen=True)
class Maintenance:
    windows: tuple[Window, ...] = ()

    @functools.cached_property
    def _memo(self) -> dict[datetime, tuple[Occurrence, ...]]:
        return {}

    def active(self, at: datetime) -> list[Occurrence]:
        """Occurrences under way at `at` (remembered: a page asks once per dataset)."""
        found = self._memo.get(at)
        if found is None:
            if len(self._memo) > 16:
                self._memo.clear()
            found = self._memo[at] = tuple(o for w in self.windows if (o := w.at(at)))
        return list(found)

    def blocking_job(self, job_id: str, produces: Iterable[str], at: datetime, *,
                     under_way: bool = False) -> Occurrence | None:
        """The window that keeps the job from starting at `at`. `under_way`: the run
        already had an attempt, which a `drain` window lets go on."""
        produces = tuple(produces)
        for occurrence in self.active(at):
            window = occurrence.window
            if not window.scope.covers_job(job_id, produces):
                continue
            if under_way and window.mode == Mode.DRAIN:
                continue
            return occurrence
        return None

    def covering_dataset(self, key: str, producers: Iterable[str],
                         at: datetime) -> Occurrence | None:
        producers = tuple(producers)
        return next((o for o in self.active(at)
                     if o.window.scope.covers_dataset(key, producers)), None)

    def covering_consumer(self, consumer_id: str, at: datetime) -> Occurrence | None:
        return next((o for o in self.active(at)
                     if o.window.scope.covers_consumer(consumer_id)), None)

    def overlapping(self, start: datetime, end: datetime) -> list[Occurrence]:
        return [o for w in self.windows for o in w.occurrences(start, end)]

    def first_overlapping(self, start: datetime, end: datetime) -> list[Occurrence]:
        """Each window's earliest occurrence overlapping [start, end): what a question
        about a span (was this excused?) needs, at two cron steps per window."""
        return [o for w in self.windows if (o := w.first_overlapping(start, end))]

    def listed(self, now: datetime) -> list[Occurrence]:
        """Current and upcoming within 7 days, soonest first (status.json maintenance[])."""
        found = sorted(self.overlapping(now, now + UPCOMING), key=lambda o: (o.start, o.window.id))
        return found[:MAX_LISTED]

    def to_doc(self) -> list[dict]:
        return [w.to_doc() for w in self.windows]

    @classmethod
    def from_doc(cls, doc: list | None) -> "Maintenance":
        return cls(tuple(Window.from_doc(w) for w in doc or ()))


NO_MAINTENANCE = Maintenance()


# -- validation (the pipeline config) -----------------------------------------------

WINDOW_KEYS = ("id", "note", "start", "end", "cron", "duration", "timezone", "scope", "mode")
SCOPE_KEYS = ("jobs", "datasets", "consumers")


def make_window(doc: object, where: str) -> Window:
    """One `maintenance:` entry; every error names its field under `where`."""
    check_keys(doc, where, WINDOW_KEYS, "with id and cron + duration, or start + end")
    note = doc.get("note") or ""
    if not isinstance(note, str) or len(note) > 500:
        raise ValidationError(f"{where}.note", "must be a string of at most 500 characters")
    mode = doc.get("mode", "skip")
    if mode not in tuple(Mode):
        raise ValidationError(f"{where}.mode", "must be skip or drain")
    base = dict(note=note, scope=_scope(doc.get("scope"), f"{where}.scope"), mode=Mode(mode))
    if "cron" in doc:
        return _recurring(doc, where, base)
    return _one_off(doc, where, base)


def _recurring(doc: dict, where: str, base: dict) -> Window:
    for key in ("start", "end"):
        if key in doc:
            raise ValidationError(f"{where}.{key}", "a recurring window (cron) has a duration, "
                                  "not start/end")
    if "duration" not in doc:
        raise ValidationError(f"{where}.duration", "is required with cron")
    tz = doc.get("timezone", "UTC")
    zone(tz, f"{where}.timezone")
    duration = parse_duration(doc["duration"], f"{where}.duration")
    if duration > MAX_DURATION:
        raise ValidationError(f"{where}.duration", "must be at most 31 days")
    cron = validate_cron(doc["cron"], f"{where}.cron")
    gap = smallest_gap(cron, tz)
    if duration >= gap:
        raise ValidationError(f"{where}.duration", f"must be shorter than the smallest gap "
                              f"between the cron's starts ({format_duration(gap)}): "
                              "occurrences would overlap")
    return Window(id=_id(doc, where), cron=cron, duration=duration, timezone=tz, **base)


@functools.lru_cache(maxsize=256)
def _starts(cron: str, timezone: str) -> tuple[tuple[datetime, ...], bool]:
    """A year of the cron's starts (UTC) from a fixed date, at most _CHECK_STEPS of them,
    and whether the year was walked whole. A cron starting more often than that repeats
    within days: its first _CHECK_STEPS starts show its gaps and busiest weeks."""
    begin = datetime(2026, 1, 1, tzinfo=UTC).astimezone(zone(timezone))
    found: list[datetime] = []
    for start in CronSim(cron, begin):
        start = start.astimezone(UTC)
        if start - begin > _GAP_SPAN:
            return tuple(found), True
        if len(found) >= _CHECK_STEPS:
            return tuple(found), False
        found.append(start)
    return tuple(found), True


def smallest_gap(cron: str, timezone: str) -> timedelta:
    """The shortest elapsed time between two starts of `cron` in `timezone` (over a
    year: DST changes included)."""
    starts, _ = _starts(cron, timezone)
    return min((b - a for a, b in zip(starts, starts[1:], strict=False)), default=_GAP_SPAN)


def weekly_share(window: Window) -> timedelta:
    """The most time a recurring window covers in any 7 days: the busiest 7-day span of
    its starts (one begins at a start). A frequent cron whose walk spans under two
    weeks counts as many starts as its smallest gap allows: an upper bound."""
    starts, whole = _starts(window.cron, window.timezone)
    if not whole and (len(starts) < 2 or starts[-1] - starts[0] < 2 * WEEK):
        gap = smallest_gap(window.cron, window.timezone)
        return min(WEEK, window.duration * -(-WEEK // gap))
    most, j = timedelta(0), 0
    for i, first in enumerate(starts):  # two pointers: starts within [first, first + WEEK)
        if not whole and first + WEEK > starts[-1]:
            break  # the walk stopped: this span is not seen whole
        j = max(j, i)
        while j + 1 < len(starts) and starts[j + 1] < first + WEEK:
            j += 1
        covered = (j - i) * window.duration + min(window.duration, first + WEEK - starts[j])
        most = max(most, covered)
    return min(most, WEEK)


def check_windows(windows: Iterable[Window], where: str = "maintenance") -> None:
    """Recurring windows together cover at most MAX_WEEKLY of any 7 days: the window
    that passes it is refused, naming its duration."""
    total = timedelta(0)
    for i, window in enumerate(windows):
        if not window.recurring:
            continue
        total += weekly_share(window)
        if total > MAX_WEEKLY:
            raise ValidationError(
                f"{where}[{i}].duration", f"recurring maintenance would cover "
                f"{_hours(total)} of some 7 days (at most {_hours(MAX_WEEKLY)} in any 7 "
                "days, all recurring windows together)")


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:.3g} h"


def _one_off(doc: dict, where: str, base: dict) -> Window:
    for key in ("duration", "timezone"):
        if key in doc:
            raise ValidationError(f"{where}.{key}", "belongs to a recurring window (cron)")
    for key in ("start", "end"):
        if key not in doc:
            raise ValidationError(f"{where}.{key}", "is required (or give cron and duration)")
    start = parse_datetime(doc["start"], f"{where}.start")
    end = parse_datetime(doc["end"], f"{where}.end")
    if end <= start:
        raise ValidationError(f"{where}.end", "must be after start")
    if end - start > MAX_DURATION:
        raise ValidationError(f"{where}.end", "a window lasts at most 31 days")
    return Window(id=_id(doc, where), start=start, end=end, **base)


def _id(doc: dict, where: str) -> str:
    return check_id(doc.get("id"), f"{where}.id")


def _scope(value: object, where: str) -> Scope:
    if value is None or value == "all":
        return Scope()
    if not isinstance(value, dict):
        raise ValidationError(where, "must be 'all' or a mapping of jobs, datasets, consumers")
    lists = {}
    for key in value:
        if key not in SCOPE_KEYS:
            raise ValidationError(f"{where}.{key}", "unknown key (expected jobs, datasets "
                                  "or consumers)")
        items = value[key] or []
        if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
            raise ValidationError(f"{where}.{key}", "must be a list of ids")
        lists[key] = tuple(items)
    return Scope(**lists)
