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
"""

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from cronsim import CronSim

from freshet.core.errors import ValidationError, check_keys
from freshet.core.models import check_id
from freshet.core.schedules import validate_cron, zone
from freshet.core.timeutil import format_duration, parse_datetime, parse_duration, to_utc

MAX_DURATION = timedelta(days=31)
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
        return (self.everything or job_id in self.jobs
                or any(key in self.datasets for key in produces))

    def covers_dataset(self, key: str, producers: Iterable[str]) -> bool:
        return (self.everything or key in self.datasets
                or any(job_id in self.jobs for job_id in producers))

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
        """The occurrence under way at `when` (the latest, should two overlap)."""
        found = None
        for occurrence in self.occurrences(when, when + timedelta(microseconds=1)):
            found = occurrence
        return found

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
    return Window(id=_id(doc, where), cron=validate_cron(doc["cron"], f"{where}.cron"),
                  duration=duration, timezone=tz, **base)


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
