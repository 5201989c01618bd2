"""Deadlines: "fresh by 07:00 Europe/Paris on weekdays, with data as of midnight".

Besides `warn_after`/`error_after`, a consumer may state deadlines. Each is a cron-like
`by` in an IANA `timezone`, and an `as_of` rule naming the data time it needs then:

    as_of: "0 0 * * *"   a cron in the same timezone: its latest slot at or before the
    as_of: midnight      deadline ("midnight" is "0 0 * * *");
    as_of: 8h            a duration: the deadline minus that;
    (none)               each requirement's own error_after before the deadline.

A deadline covers the datasets the consumer requires (or the `datasets` it names).
It is judged once, when it has passed, from what each dataset's data was at that
moment (`Dataset.data_points`: the data time after each recent success):

    met       every dataset's data was as of the target at the deadline;
    excused   it was not, and a maintenance window in scope overlapped the time the data
              had to arrive (from the target to the deadline);
    missed    otherwise, also when the history kept cannot prove the data was there.

The verdicts are kept per consumer in one bounded document (`DeadlineRecord`): counts
per UTC day for 90 days, the latest 20 verdicts, and per deadline the last due moment
judged (the cursor that makes each judgement happen once). Attainment is
met / (met + missed); excused deadlines count for neither.

Before a deadline, between its target and the deadline itself, a consumer whose data
has not reached the target yet is *at risk* when (`risks`): the producing job has not
started by its usual start time; its run has lasted longer than the p95 of its recent
successful durations; or an upstream is failing.
"""

import functools
import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

from freshet.core import timing
from freshet.core.errors import ValidationError, check_keys
from freshet.core.freshness import Requirement
from freshet.core.frozen import quick_init
from freshet.core.models import Dataset, Job, JobStatus
from freshet.core.schedules import (
    Schedule,
    describe,
    next_after,
    slot_at_or_before,
    validate_cron,
    zone,
)
from freshet.core.text import shorten
from freshet.core.timeutil import format_duration, human_duration, parse_duration, to_utc
from freshet.core.values import is_number
from freshet.core.windows import Maintenance, Window

ATTAINMENT_DAYS = 90
RECENT_VERDICTS = 20
MAX_PER_PASS = 200  # deadlines judged by one publish per deadline (a long outage catches up)
MAX_DETAIL = 300


class Verdict(StrEnum):
    MET = "met"
    MISSED = "missed"
    EXCUSED = "excused"


@dataclass(frozen=True)
class Deadline:
    by: str
    timezone: str = "UTC"
    as_of: str | None = None  # a cron, "midnight", a duration, or None (see above)
    datasets: tuple[str, ...] = ()  # () = every dataset the consumer requires

    @property
    def key(self) -> str:
        """Stable while the deadline is unchanged: its cursor and verdicts are filed under it."""
        text = f"{self.by}|{self.timezone}|{self.as_of or ''}|{','.join(self.datasets)}"
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def schedule(self) -> Schedule:
        return Schedule(cron=self.by, timezone=self.timezone)

    def describe(self) -> str:
        """'At 07:00 on Monday through Friday (Europe/Paris), data as of midnight'."""
        return _describe(self)

    def next_due(self, after: datetime) -> datetime:
        return next_after(self.schedule, after)

    def dues(self, after: datetime, until: datetime, limit: int = MAX_PER_PASS
             ) -> list[datetime]:
        """Deadlines in (after, until], oldest first, at most `limit`."""
        found, cursor = [], after
        while len(found) < limit:
            cursor = next_after(self.schedule, cursor)
            if cursor is None or cursor > until:
                break
            found.append(cursor)
        return found

    def target(self, due: datetime, requirement: Requirement) -> datetime:
        """The data time a dataset needs at `due`."""
        rule = _as_of_rule(self.as_of)
        if rule is None:
            return due - requirement.error_after
        if isinstance(rule, timedelta):
            return due - rule
        slot = slot_at_or_before(Schedule(cron=rule, timezone=self.timezone), due)
        return slot if slot is not None else due

    def to_doc(self) -> dict:
        return {"by": self.by, "timezone": self.timezone, "as_of": self.as_of,
                "datasets": list(self.datasets)}

    @classmethod
    def from_doc(cls, doc: dict) -> "Deadline":
        return cls(by=doc["by"], timezone=doc.get("timezone") or "UTC",
                   as_of=doc.get("as_of"), datasets=tuple(doc.get("datasets") or ()))


@functools.lru_cache(maxsize=1024)
def _describe(deadline: Deadline) -> str:
    rule = _as_of_rule(deadline.as_of)
    if rule is None:
        need = "data within each requirement"
    elif isinstance(rule, timedelta):
        need = f"data at most {human_duration(rule)} old"
    elif deadline.as_of == "midnight" or rule == "0 0 * * *":
        need = "data as of midnight"
    else:
        need = f"data as of the latest '{rule}'"
    return f"{describe(deadline.schedule)}, {need}"


@functools.lru_cache(maxsize=1024)
def _as_of_rule(text: str | None) -> str | timedelta | None:
    if text is None:
        return None
    if text == "midnight":
        return "0 0 * * *"
    if " " not in text.strip():
        return parse_duration(text, "as_of")
    return text


DEADLINE_KEYS = ("by", "timezone", "as_of", "datasets")


def make_deadline(doc: object, where: str, required: Iterable[str]) -> Deadline:
    """One `deadlines:` entry of a consumer requiring `required`; errors name the field."""
    check_keys(doc, where, DEADLINE_KEYS, "with by, timezone and as_of")
    if "by" not in doc:
        raise ValidationError(f"{where}.by", "is required (a cron such as '0 7 * * 1-5')")
    tz = doc.get("timezone", "UTC")
    zone(tz, f"{where}.timezone")
    as_of = doc.get("as_of")
    if as_of is not None:
        as_of = _checked_as_of(as_of, f"{where}.as_of")
    required = set(required)
    datasets = doc.get("datasets") or []
    if not isinstance(datasets, list) or not all(isinstance(d, str) for d in datasets):
        raise ValidationError(f"{where}.datasets", "must be a list of dataset keys")
    for i, key in enumerate(datasets):
        if key not in required:
            raise ValidationError(f"{where}.datasets[{i}]",
                                  f"{key!r} is not among the datasets this consumer requires")
    if not required:
        raise ValidationError(where, "a consumer with a deadline must require datasets")
    return Deadline(by=validate_cron(doc["by"], f"{where}.by"), timezone=tz, as_of=as_of,
                    datasets=tuple(datasets))


def _checked_as_of(value: object, field: str) -> str:
    if is_number(value):
        return format_duration(parse_duration(value, field))
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field, "must be a cron such as '0 0 * * *', 'midnight' or a "
                                     "duration such as '8h'")
    text = " ".join(value.split())
    if text == "midnight":
        return text
    if " " not in text:
        return format_duration(parse_duration(text, field))
    return validate_cron(text, field)


# -- evidence: what the data was at a moment ----------------------------------------------

@dataclass(frozen=True)
class Evidence:
    """A dataset's data time at a past moment, as far as its history tells."""

    value: datetime | None  # None: no data at all then (when known)
    known: bool


def _data_time(point: dict) -> datetime:
    return point["as_of"] or point["at"]


def data_time_at(dataset: Dataset | None, when: datetime) -> Evidence:
    if dataset is None or dataset.last_success_at is None:
        return Evidence(None, True)
    before = [p for p in dataset.data_points if p["at"] <= when]
    if before:
        return Evidence(_data_time(before[-1]), True)
    floor = dataset.data_floor
    if floor is not None and floor["at"] <= when:
        return Evidence(_data_time(floor), True)
    if floor is None and not dataset.data_points:
        # A document from before data points were kept: only its latest success is known.
        if dataset.last_success_at <= when:
            return Evidence(dataset.data_as_of or dataset.last_success_at, True)
        return Evidence(None, False)
    if floor is None:  # every success kept came after `when`: there was none before
        return Evidence(None, True)
    return Evidence(None, False)  # the points kept begin after `when`


def data_time_now(dataset: Dataset | None) -> datetime | None:
    if dataset is None or dataset.last_success_at is None:
        return None
    return dataset.data_as_of or dataset.last_success_at


# -- judging ------------------------------------------------------------------------------

@quick_init  # made thousands of times a build
@dataclass(frozen=True)
class Item:
    """One dataset a deadline covers: its document, the requirement and who produces it."""

    key: str
    title: str
    dataset: Dataset | None
    requirement: Requirement
    producers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Judgement:
    deadline: str  # Deadline.key
    due: datetime
    verdict: Verdict
    detail: str

    def to_doc(self) -> dict:
        return {"key": self.deadline, "due": self.due, "verdict": str(self.verdict),
                "detail": self.detail}

    @classmethod
    def from_doc(cls, doc: dict) -> "Judgement":
        return cls(doc["key"], to_utc(doc["due"]), Verdict(doc["verdict"]),
                   doc.get("detail") or "")


def judge(deadline: Deadline, due: datetime, items: Iterable[Item], maintenance: Maintenance,
          covers: Callable[[Window, Item], bool]) -> Judgement:
    """The verdict on one passed deadline. `covers(window, item)`: is the item (or its
    consumer) in the window's scope."""
    items = list(items)
    late: list[str] = []
    for item in items:
        target = deadline.target(due, item.requirement)
        evidence = data_time_at(item.dataset, due)
        if evidence.known and evidence.value is not None and evidence.value >= target:
            continue
        late.append(_late_text(item, target, evidence))
        start = min(target, due - timedelta(minutes=1))
        for occurrence in maintenance.first_overlapping(start, due):  # 2 steps a window
            if covers(occurrence.window, item):
                return Judgement(deadline.key, due, Verdict.EXCUSED,
                                 shorten(f"{late[-1]}; excused: {occurrence.describe()}",
                                         MAX_DETAIL))
    if late:
        return Judgement(deadline.key, due, Verdict.MISSED, shorten("; ".join(late), MAX_DETAIL))
    names = "the data" if len(items) == 1 else f"all {len(items)} datasets"
    return Judgement(deadline.key, due, Verdict.MET, f"{names} on time")


def _late_text(item: Item, target: datetime, evidence: Evidence) -> str:
    need = f"needed as of {target:%Y-%m-%d %H:%M} UTC"
    if not evidence.known:
        return f"{item.title}: not verifiable (its history at the deadline was not kept); {need}"
    if evidence.value is None:
        return f"{item.title}: no data yet; {need}"
    return f"{item.title} was as of {evidence.value:%Y-%m-%d %H:%M} UTC; {need}"


# -- the per-consumer record ------------------------------------------------------------

def _day(at: datetime) -> str:
    return at.astimezone(UTC).date().isoformat()


@dataclass
class DeadlineRecord:
    consumer: str
    cursors: dict[str, datetime] = field(default_factory=dict)  # key -> last due judged
    days: dict[str, dict[str, int]] = field(default_factory=dict)  # UTC date -> counts
    recent: list[Judgement] = field(default_factory=list)  # newest first
    updated_at: datetime | None = None

    def attainment(self, today: date, span: int = ATTAINMENT_DAYS) -> float | None:
        """met / (met + missed) over the last `span` UTC days; None before any verdict."""
        first = (today - timedelta(days=span - 1)).isoformat()
        met = sum(c.get("met", 0) for d, c in self.days.items() if d >= first)
        missed = sum(c.get("missed", 0) for d, c in self.days.items() if d >= first)
        return None if met + missed == 0 else met / (met + missed)

    def counts(self, today: date, span: int = ATTAINMENT_DAYS) -> dict[str, int]:
        first = (today - timedelta(days=span - 1)).isoformat()
        return {v: sum(c.get(v, 0) for d, c in self.days.items() if d >= first)
                for v in ("met", "missed", "excused")}

    def last(self, key: str) -> Judgement | None:
        return next((j for j in self.recent if j.deadline == key), None)

    def to_doc(self) -> dict:
        return {"consumer": self.consumer, "cursors": dict(self.cursors),
                "days": {d: dict(c) for d, c in self.days.items()},
                "recent": [j.to_doc() for j in self.recent], "updated_at": self.updated_at}

    @classmethod
    def from_doc(cls, doc: dict) -> "DeadlineRecord":
        return cls(consumer=doc["consumer"],
                   cursors={k: to_utc(v) for k, v in (doc.get("cursors") or {}).items()},
                   days={d: dict(c) for d, c in (doc.get("days") or {}).items()},
                   recent=[Judgement.from_doc(j) for j in doc.get("recent") or []],
                   updated_at=to_utc(doc.get("updated_at")))


def decide_deadlines(record: DeadlineRecord | None, consumer: str,
                     deadlines: Iterable[Deadline], now: datetime,
                     judge_one: Callable[[Deadline, datetime], Judgement]
                     ) -> tuple[DeadlineRecord, list[Judgement]]:
    """Judge every deadline that passed since its cursor, once. A deadline seen for the
    first time starts its cursor at `now` (deadlines before it are not judged)."""
    record = record or DeadlineRecord(consumer)
    cursors: dict[str, datetime] = {}
    judged: list[Judgement] = []
    for deadline in deadlines:
        cursor = record.cursors.get(deadline.key)
        if cursor is None:
            cursors[deadline.key] = now
            continue
        dues = deadline.dues(cursor, now)
        judged += [judge_one(deadline, due) for due in dues]
        cursors[deadline.key] = dues[-1] if dues else cursor
    judged.sort(key=lambda j: j.due)
    days = {d: dict(c) for d, c in record.days.items()}
    for j in judged:
        counts = days.setdefault(_day(j.due), {"met": 0, "missed": 0, "excused": 0})
        counts[j.verdict] = counts.get(j.verdict, 0) + 1
    oldest = (now - timedelta(days=ATTAINMENT_DAYS)).date().isoformat()
    days = {d: c for d, c in days.items() if d > oldest}
    recent = (list(reversed(judged)) + record.recent)[:RECENT_VERDICTS]
    return DeadlineRecord(consumer, cursors, days, recent, now), judged


def needs_judging(record: DeadlineRecord | None, deadlines: Iterable[Deadline],
                  now: datetime) -> bool:
    """Whether decide_deadlines would change anything (a publish then writes)."""
    deadlines = list(deadlines)
    cursors = record.cursors if record is not None else {}
    if {d.key for d in deadlines} != set(cursors):
        return True
    return any(d.next_due(cursors[d.key]) <= now for d in deadlines)


# -- early warning ----------------------------------------------------------------------

class Signal(StrEnum):
    NOT_STARTED = "not_started"
    OVERRUNNING = "overrunning"
    UPSTREAM_FAILING = "upstream_failing"


@dataclass(frozen=True)
class Risk:
    signal: Signal
    text: str


def risks(deadline: Deadline, due: datetime, items: Iterable[Item],
          jobs: Mapping[str, Job], failing_upstreams: Mapping[str, tuple[str, ...]],
          maintenance: Maintenance, now: datetime) -> list[Risk]:
    """Why the next deadline (`due`) may be missed, from now (empty: on track)."""
    found: list[Risk] = []
    for item in items:
        target = deadline.target(due, item.requirement)
        current = data_time_now(item.dataset)
        if now < target or (current is not None and current >= target):
            continue  # not its time yet, or already there
        for job_id in item.producers:
            job = jobs.get(job_id)
            if job is not None:
                found += _job_risks(job, item, maintenance, now)
        for up in failing_upstreams.get(item.key, ()):
            found.append(Risk(Signal.UPSTREAM_FAILING, f"upstream {up} is failing"))
    unique = {(r.signal, r.text): r for r in found}
    return list(unique.values())


def _job_risks(job: Job, item: Item, maintenance: Maintenance, now: datetime) -> list[Risk]:
    if job.status != JobStatus.ACTIVE or not job.schedule.recurring:
        return []
    if maintenance.blocking_job(job.id, job.produces, now) is not None:
        return []  # excused, not at risk
    dataset = item.dataset
    if dataset is not None and dataset.running:
        usual = timing.usual_duration(job)
        ran = now - dataset.last_started_at
        if usual is not None and ran > usual:
            return [Risk(Signal.OVERRUNNING,
                         f"{job.id} has been running {human_duration(ran)}, longer than its "
                         f"usual {human_duration(usual)} (p95 of {len(job.recent_durations_s)} "
                         f"runs)")]
        return []
    slot = slot_at_or_before(job.schedule, now)
    if slot is None:
        return []
    started = dataset.last_started_at if dataset is not None else None
    expected = slot + timing.usual_start_lag(job)
    if (started is None or started < slot) and now > expected:
        return [Risk(Signal.NOT_STARTED,
                     f"{job.id} has not started (due {slot:%H:%M} UTC, usually within "
                     f"{human_duration(timing.usual_start_lag(job))})")]
    return []
