"""When could the status page change by time alone? Pure: documents and `now` in.

A publish that finds nothing written since the last one (no job, dataset, run, setting
or incident changed: freshet.status.publish) need not rebuild anything, as long as the
clock has not turned a state since: a dataset crossing its warn or error threshold, a
maintenance window starting, ending or coming within the 7 days the page lists, a
deadline falling due, a deadline's risk starting or ending (its target time reached, a
job's usual start time passing, a run outlasting its usual duration, the next slot), the
control loop's heartbeat growing late, a resolved incident leaving the 90-day history,
a new UTC day (the 90-day bars, the on-time ratios). `next_change` returns the earliest
of those after `now`, capped by `until`; the last publish stores it (the stored model's
manifest) and an idle publish before it rebuilds nothing.

The candidates are a superset: any moment at which something the page shows (its
ages in words excepted) may change; a candidate at which nothing changes only costs a
rebuild. tests/status/test_quiet.py builds the model at moments before the answer and
checks that the page's states are the same.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from freshet.core.catalog import Catalog
from freshet.core.control import Control
from freshet.core.deadlines import data_time_now
from freshet.core.incidents import Incident
from freshet.core.models import Dataset, Job, JobStatus
from freshet.core.schedules import next_after, slot_at_or_before
from freshet.core.timeutil import to_utc
from freshet.core.timing import usual_duration, usual_start_lag
from freshet.core.windows import UPCOMING
from freshet.status.loop_health import SWEEP_LATE_AFTER, TICK_LATE_AFTER
from freshet.status.model import deadline_items, producers_of, requirements_index

INCIDENT_HISTORY = timedelta(days=90)  # freshet.status.publish lists resolved ones this long
# What a strict comparison (`now > t`) turns at: the first moment after t.
JUST_AFTER = timedelta(microseconds=1)


@dataclass(frozen=True)
class Quiet:
    """What the last publish leaves for the next: nothing it showed changes before
    `until` unless a document does; `settings` is the newest commit time it saw in the
    settings collection (its own status memory included); `build` names what else the
    page is made of (freshet.status.publish.build_id)."""

    until: datetime
    settings: datetime | None
    build: str
    state: str = "ok"  # the page's overall level, as it was built

    def to_doc(self) -> dict:
        return {"until": self.until, "settings": self.settings, "build": self.build,
                "state": self.state}

    @classmethod
    def from_doc(cls, doc: object) -> "Quiet | None":
        if not isinstance(doc, dict) or not isinstance(doc.get("until"), datetime):
            return None
        settings = doc.get("settings")
        return cls(to_utc(doc["until"]), to_utc(settings) if isinstance(settings, datetime)
                   else None, str(doc.get("build") or ""), str(doc.get("state") or "ok"))


def next_change(*, jobs: list[Job], datasets: list[Dataset], catalog: Catalog,
                control: Control, heartbeats: Mapping, incidents: Iterable[Incident],
                now: datetime, until: datetime) -> datetime:
    """The earliest moment in (now, until) at which the page may change with no document
    written, else `until`. States that turn just after a moment (a risk once `now >
    expected`, a late tick once `now - tick > 3 min`) count from JUST_AFTER it."""
    found = [until, _next_midnight(now)]
    found += _thresholds(datasets, catalog)
    found += _windows(control, now, until)
    found += _deadlines(jobs, datasets, catalog, control, now)
    found += _loop(heartbeats)
    found += [i.updated_at + INCIDENT_HISTORY + JUST_AFTER for i in incidents
              if not i.open and i.updated_at is not None]
    return min((t for t in found if t is not None and now < t < until), default=until)


def _next_midnight(now: datetime) -> datetime:
    return datetime.combine(now.astimezone(UTC).date() + timedelta(days=1), time(), tzinfo=UTC)


def _thresholds(datasets: list[Dataset], catalog: Catalog) -> list[datetime]:
    """Every dataset's age against every threshold any requirement on it uses: its own
    (the strictest) and each consumer's (freshet.core.freshness.evaluate)."""
    keys = [d.key for d in datasets]
    limits: dict[str, set[timedelta]] = {k: {r.warn_after, r.error_after}
                                         for k, r in requirements_index(catalog, keys).items()}
    for consumer in catalog.consumers:
        for r in consumer.requires:
            limits.setdefault(r.dataset, set()).update((r.warn_after, r.error_after))
    found = []
    for d in datasets:
        if d.last_success_at is None:
            continue  # unknown, failing or running: no clock in it
        bases = {d.last_success_at, d.data_as_of or d.last_success_at}
        found += [b + limit for b in bases for limit in limits.get(d.key, ())]
    return found


def _windows(control: Control, now: datetime, until: datetime) -> list[datetime]:
    """Starts and ends (what is excused, what is listed as under way), and the moments
    an occurrence comes within the listed 7 days."""
    found = []
    for o in control.maintenance.overlapping(now, until + UPCOMING):
        found += [o.start, o.end, o.start - UPCOMING + JUST_AFTER]
    return found


def _deadlines(jobs: list[Job], datasets: list[Dataset], catalog: Catalog, control: Control,
               now: datetime) -> list[datetime]:
    """Each deadline's due time; and, for the datasets whose deadline risk is or will be
    judged (freshet.core.deadlines.risks), their target time and their producers'."""
    docs = {d.key: d for d in datasets}
    producers = producers_of(jobs)
    by_id = {j.id: j for j in jobs}
    found = []
    for consumer in catalog.consumers:
        for deadline in consumer.deadlines:
            due = deadline.next_due(now)
            if due is None:
                continue
            found.append(due)
            for item in deadline_items(consumer, deadline, docs, catalog, producers):
                target = deadline.target(due, item.requirement)
                current = data_time_now(item.dataset)
                if current is not None and current >= target:
                    continue  # on track until a document changes
                found.append(target)
                found += [t for job_id in item.producers if (job := by_id.get(job_id))
                          for t in _job_moments(job, item.dataset, now)]
    return found


def _job_moments(job: Job, dataset: Dataset | None, now: datetime) -> list[datetime]:
    """When the job's risk (not started, overrunning) may start or end by time alone."""
    if job.status != JobStatus.ACTIVE or not job.schedule.recurring:
        return []
    found = []
    if dataset is not None and dataset.running:
        usual = usual_duration(job)
        if usual is not None:
            found.append(dataset.last_started_at + usual + JUST_AFTER)
    slot = slot_at_or_before(job.schedule, now)
    following = next_after(job.schedule, now)
    lag = usual_start_lag(job)
    found += [t + lag + JUST_AFTER for t in (slot, following) if t is not None]
    found += [following] if following is not None else []
    return found


def _loop(heartbeats: Mapping) -> list[datetime]:
    tick = to_utc((heartbeats.get("tick") or {}).get("at"))
    sweep = to_utc((heartbeats.get("recover") or {}).get("at"))
    return [t + late + JUST_AFTER for t, late in ((tick, TICK_LATE_AFTER),
                                                  (sweep, SWEEP_LATE_AFTER)) if t is not None]
