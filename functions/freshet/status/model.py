"""The status model: a pure function of stored documents, the catalog and one `now`.

Everything the page, status.json, the badges and the feed show is decided here;
the renderers only format it. Nothing here reads the clock or talks to Firestore.

Dataset states are freshet.core.freshness's (`fresh warn error stale_data failing
running unknown`) plus `at_risk`: the dataset's own sync is fine, but an upstream it is
built from (directly or transitively) is stale (`warn error stale_data failing unknown`
or itself at risk), and `maintenance`: a maintenance window in scope excuses what would
otherwise be a bad state. A consumer is also `at_risk` when one of its deadlines is in
danger (freshet.core.deadlines.risks says why).

Lineage: a dataset's upstreams are those the catalog declares plus those the jobs
producing it are triggered by (`trigger.after`); its downstreams are the datasets
whose upstreams include it. The page draws both around each dataset.

The 90-day bar (`DatasetStatus.history`) has one letter per UTC day, oldest first,
from `Dataset.daily` (sync outcomes kept by bookkeeping):
  `o` ok           at least one sync succeeded and none failed;
  `p` partial      syncs both succeeded and failed that day;
  `f` failed       every sync that day failed;
  `m` maintenance  a maintenance window in scope that day, and not every sync succeeded;
  `-` none         no sync finished that day.
"""

import bisect
import functools
import gc
import hashlib
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import ParamSpec, TypeVar, assert_never

from freshet.core.alerts import RouteState, route_specs
from freshet.core.bookkeeping import HISTORY_DAYS
from freshet.core.catalog import DEFAULT_REQUIREMENT, Catalog, Consumer, DatasetSpec, Pool
from freshet.core.control import Control
from freshet.core.deadlines import Deadline, DeadlineRecord, Item, Judgement, Risk, risks
from freshet.core.freshness import (
    SEVERITY,
    STALE_STATES,
    Freshness,
    Requirement,
    State,
    as_of_words,
    evaluate,
    excuse,
    failure_note,
    watermark_note,
    worst,
)
from freshet.core.frozen import quick_init
from freshet.core.incidents import Incident
from freshet.core.links import logs_url
from freshet.core.models import AttemptOutcome, Dataset, Job, JobStatus, LastRun, Run
from freshet.core.schedules import describe, zone
from freshet.core.secrets import SECRET_MASK, redact, secret_values
from freshet.core.settings import Settings
from freshet.core.text import safe_link, shorten
from freshet.core.timeutil import format_duration, human_duration
from freshet.core.triggers import describe_trigger
from freshet.core.windows import Maintenance, Occurrence, Window
from freshet.status.loop_health import LoopHealth, loop_health

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}")
# Secret values shorter than this are not scrubbed from error texts (too many false hits).

LABELS = {
    "fresh": "Fresh", "running": "Refreshing", "maintenance": "Maintenance", "warn": "Warning",
    "at_risk": "At risk", "unknown": "Unknown", "failing": "Failing",
    "stale_data": "Stale data", "error": "Error",
}
# How bad a state is for notifications: a change of level is a state change worth a message.
# Maintenance is excused (ok), and a change into or out of it is not reported by itself
# (freshet.status.changes): the state before the window is what the next one is compared to.
LEVELS = {"fresh": "ok", "running": "ok", "maintenance": "ok", "warn": "warn",
          "at_risk": "warn", "unknown": "warn", "failing": "error", "stale_data": "error",
          "error": "error"}
OVERALL_TEXT = {
    "ok": "All data is fresh",
    "warn": "Some data needs attention",
    "error": "Some data cannot be trusted",
}
MAINTENANCE_TEXT = "Maintenance in progress"  # an ok page with something excused
DAY_CODES = {"o": "ok", "p": "partial", "f": "failed", "m": "maintenance", "-": "no sync"}


class JobHealth(StrEnum):
    """A job at a glance, in the order the page lists them (needing attention first)."""

    FAILED = "failed"  # its latest run failed
    DISABLED = "disabled"  # a kill switch has its kind off
    # its latest slot passed unrun: its kind was switched off, a maintenance window held
    # it, or the catch-up policy or max_lateness skipped it
    SKIPPED = "skipped"
    RUNNING = "running"  # its first run is in progress
    NEVER = "never"  # it has not run yet
    OK = "ok"  # its latest run succeeded
    PAUSED = "paused"
    COMPLETED = "completed"
    ARCHIVED = "archived"


JOB_HEALTH_ORDER = {health: rank for rank, health in enumerate(JobHealth)}


@functools.lru_cache(maxsize=65536)  # asked 3 times per dataset and publish
def badge_path(kind: str, ident: str) -> str:
    """`badges/dataset/<key>.svg`; ids unsafe in a path or URL get a slug and a hash."""
    if not _SAFE_NAME.fullmatch(ident) or ".." in ident:
        slug = re.sub(r"[^A-Za-z0-9_-]+", "-", ident).strip("-")[:40] or "x"
        ident = f"{slug}-{hashlib.sha256(ident.encode()).hexdigest()[:10]}"
    return f"badges/{kind}/{ident}.svg"


@quick_init  # made thousands of times a build
@dataclass(frozen=True)
class DatasetStatus:
    key: str
    title: str
    owner: str
    description: str
    declared: bool  # in the catalog (False: only found in Firestore)
    state: str
    own_state: str  # freshness of its own syncs, before upstream risk
    reason: str
    age: timedelta | None
    requirement: Requirement
    last_started_at: datetime | None
    last_success_at: datetime | None
    last_failure_at: datetime | None
    last_error: str | None
    consecutive_failures: int
    last_record_count: int | None
    upstream: tuple[str, ...]  # declared, and those the jobs producing it are triggered by
    downstream: tuple[str, ...]  # the datasets built from it
    triggers: tuple[str, ...]  # the jobs its success triggers
    at_risk_from: tuple[str, ...]  # stale upstreams (transitively) behind an at-risk state
    consumers: tuple[str, ...]
    history_start: str  # ISO date of the bar's first day
    history: str  # one DAY_CODES letter per day
    freshness_basis: str = "sync"  # data: judged on its watermark; sync: on its last success
    data_as_of: datetime | None = None
    watermark_issue: str | None = None  # "watermark rejected: ..." while one was untrusted
    excused_by: str | None = None  # the maintenance window behind a `maintenance` state
    incidents: tuple[str, ...] = ()  # open incidents about it (ids)

    @property
    def label(self) -> str:
        return LABELS[self.state]

    @property
    def sla(self) -> str:
        return _sla_words(self.requirement.warn_after, self.requirement.error_after)


@functools.lru_cache(maxsize=256)  # datasets share a few requirements
def _sla_words(warn: timedelta, error: timedelta) -> str:
    return f"needs < {human_duration(error)} (warn at {human_duration(warn)})"


@quick_init  # made thousands of times a build
@dataclass(frozen=True)
class ConsumerDataset:
    key: str
    state: str
    reason: str
    age: timedelta | None
    requirement: Requirement
    freshness: Freshness | None = None  # the judgement behind the state (basis, excusal)


@quick_init  # made thousands of times a build
@dataclass(frozen=True)
class DeadlineStatus:
    key: str
    description: str  # "At 07:00 on Monday through Friday (Europe/Paris), data as of midnight"
    deadline: Deadline
    datasets: tuple[str, ...]
    next_due: datetime | None
    last: Judgement | None  # the latest verdict
    risks: tuple[Risk, ...]  # why the next one may be missed (empty: on track)


@quick_init  # made thousands of times a build
@dataclass(frozen=True)
class ConsumerStatus:
    id: str
    title: str
    kind: str
    url: str
    state: str
    detail: str  # "data is 27 h old (needs < 26 h); the last sync failed: ..."
    datasets: tuple[ConsumerDataset, ...]
    owner: str = ""
    deadlines: tuple[DeadlineStatus, ...] = ()
    attainment_90d: float | None = None  # met / (met + missed); None before any verdict
    attainment_30d: float | None = None
    deadline_counts: dict[str, int] = field(default_factory=dict)  # 90 days: met/missed/excused
    excused_by: str | None = None  # a maintenance window on the consumer itself
    incidents: tuple[str, ...] = ()  # open incidents about it or what it needs
    routes: tuple[str, ...] = ()

    @property
    def risks(self) -> tuple[Risk, ...]:
        return tuple(r for d in self.deadlines for r in d.risks)

    @property
    def label(self) -> str:
        return LABELS[self.state]

    @property
    def message(self) -> str:
        """The banner: "Ad Performance — data is 27 h old (needs < 26 h); ..."."""
        return f"{self.title} — {self.detail}"


@quick_init  # made thousands of times a build
@dataclass(frozen=True)
class JobSummary:
    id: str
    kind: str
    description: str
    status: str  # active | paused | archived | completed
    health: JobHealth
    schedule: str  # in words, with the timezone
    timezone: str
    next_run_at: datetime | None
    last_run_at: datetime | None
    last_run_status: str | None
    last_run_id: str | None
    last_error: str | None
    attempt: int | None  # the last run's attempt, when it is among the recent runs
    max_attempts: int
    stuck_recoveries: int  # recent runs that recovery marked as stuck
    produces: tuple[str, ...]
    params: tuple[tuple[str, str], ...]  # (name, shown value); secrets masked
    kind_enabled: bool
    trigger: str = ""  # "after sales.orders is fresh"; "" without a trigger
    pool: str | None = None
    catchup: str = "latest"  # the policy, in words when not the default


@quick_init  # made thousands of times a build
@dataclass(frozen=True)
class RunSummary:
    id: str
    job_id: str
    kind: str
    status: str
    trigger_source: str
    attempt_number: int
    max_attempts: int
    scheduled_for: datetime | None  # the slot
    interval_start: datetime | None  # the data interval is (interval_start, scheduled_for]
    queue: str | None
    backfill_id: str | None
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    duration_s: float | None
    stuck: bool
    error: str | None
    logs_url: str = ""  # the run's lines in Logs Explorer


@dataclass(frozen=True)
class RouteStatus:
    """A notification route and how its last delivery went (the footer, `freshet status`)."""

    id: str
    type: str
    target: str  # where its URL comes from ("$GROWTH_SLACK_URL", "in the config")
    min_interval: timedelta
    last_status: str  # delivered | failed | dropped | "" (nothing sent yet)
    last_attempt_at: datetime | None
    last_delivered_at: datetime | None
    last_error: str | None
    waiting: int  # messages in its backlog
    dropped: int
    delivered: int


@dataclass(frozen=True)
class StatusModel:
    built_at: datetime
    state: str  # ok | warn | error
    headline: str
    stale_after_s: int
    site_url: str
    control: Control
    consumers: tuple[ConsumerStatus, ...]
    datasets: tuple[DatasetStatus, ...]  # worst first, then by key
    jobs: tuple[JobSummary, ...]  # needing attention first, then by id
    runs: tuple[RunSummary, ...]  # newest first
    dataset_counts: dict[str, int]
    job_counts: dict[str, int]
    loop: LoopHealth | None = None
    pools: tuple["PoolStatus", ...] = ()
    incidents: tuple[Incident, ...] = ()  # open first, then the newest
    maintenance: tuple[Occurrence, ...] = ()  # current and upcoming within 7 days
    routes: tuple[RouteStatus, ...] = ()

    @property
    def open_incidents(self) -> tuple[Incident, ...]:
        return tuple(i for i in self.incidents if i.open)

    @property
    def active_maintenance(self) -> tuple[Occurrence, ...]:
        return tuple(o for o in self.maintenance if o.active(self.built_at))

    def dataset(self, key: str) -> DatasetStatus:
        return next(d for d in self.datasets if d.key == key)

    def consumer(self, consumer_id: str) -> ConsumerStatus:
        return next(c for c in self.consumers if c.id == consumer_id)

    def job(self, job_id: str) -> JobSummary:
        return next(j for j in self.jobs if j.id == job_id)


@dataclass(frozen=True)
class PoolStatus:
    name: str
    queue: str
    max_concurrent: int
    running: int
    queued: int  # queued or waiting for a retry


P = ParamSpec("P")
R = TypeVar("R")


def collector_paused(fn: Callable[P, R]) -> Callable[P, R]:
    """`fn` with Python's cycle collector paused while it runs (unless already paused).
    A build allocates hundreds of thousands of objects beside its inputs' million (at
    5,000 datasets, their data points and day counts), and each of the collector's full
    passes walks all of them, for cycles a build hardly makes: a fifth of a build's time.
    Its garbage is freed by reference counting meanwhile, the rest by the next pass."""
    @functools.wraps(fn)
    def paused(*args: P.args, **kwargs: P.kwargs) -> R:
        if not gc.isenabled():
            return fn(*args, **kwargs)
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            gc.enable()

    return paused


@collector_paused
def build_model(*, jobs: list[Job], datasets: list[Dataset], runs: list[Run], catalog: Catalog,
                control: Control, now: datetime, settings: Settings,
                heartbeats: dict | None = None,
                pool_counts: dict[str, tuple[int, int]] | None = None,
                deadlines: dict[str, DeadlineRecord] | None = None,
                incidents: Iterable[Incident] = (),
                routes: dict[str, RouteState] | None = None) -> StatusModel:
    """`pool_counts`: {pool name: (running, queued)} counted in Firestore."""
    secrets = _secrets_by_job(jobs)
    dataset_secrets = _secrets_by_dataset(jobs, secrets)
    docs = {d.key: d for d in datasets}
    keys = sorted(set(docs) | set(catalog.datasets)
                  | {r.dataset for c in catalog.consumers for r in c.requires})
    reqs = requirements_index(catalog, keys)
    producers = producers_of(jobs)
    windows = control.maintenance
    own = {k: _excused(evaluate(docs.get(k), reqs[k], now),
                       windows.covering_dataset(k, producers.get(k, ()), now)) for k in keys}
    states = {k: f.state for k, f in own.items()}
    ups = lineage(catalog, jobs)
    stale_up = _upstreams(ups, states, STALE_STATES)
    downs = _downstreams(ups)
    consumers_of = _consumers_of(catalog)
    incidents = tuple(incidents)
    about = _incidents_about(incidents, catalog, producers, downs)
    halted = halted_producers(jobs)
    maintained = _maintenance_days(windows, now)
    statuses = [
        _dataset_status(k, docs.get(k), catalog, reqs[k], own[k], stale_up.get(k, ()),
                        consumers_of.get(k, ()), now, dataset_secrets.get(k, ()),
                        ups.get(k, ()), downs.get(k, ()),
                        _days_for(maintained, k, producers.get(k, ())),
                        incidents_of(about, f"dataset:{k}"), halted.get(k, ""))
        for k in keys
    ]
    statuses.sort(key=lambda d: (-SEVERITY[d.state], d.key))
    by_key = {d.key: d for d in statuses}
    context = _ConsumerContext(
        docs=docs, by_key=by_key, stale_up=stale_up,
        failing_up=_upstreams(ups, states, FAILING_STATES),
        dataset_secrets=dataset_secrets, producers=producers, catalog=catalog,
        jobs={j.id: j for j in jobs}, maintenance=windows, records=deadlines or {},
        about=about, now=now, reqs=reqs, own=own)
    consumers = tuple(_consumer_status(c, context) for c in catalog.consumers)
    run_statuses = sorted((_run_status(r, secrets.get(r.job_id, ()), settings.project)
                           for r in runs),
                          key=_run_order, reverse=True)
    job_statuses = _job_statuses(jobs, runs, control, secrets)
    level = _overall_level(consumers, statuses)
    return StatusModel(
        built_at=now, state=level, headline=_headline(level, consumers, statuses),
        stale_after_s=settings.page_stale_after_s, site_url=safe_link(settings.site_url) or "",
        control=control,
        consumers=consumers, datasets=tuple(statuses), jobs=job_statuses,
        runs=tuple(run_statuses),
        dataset_counts=dict(Counter(d.state for d in statuses)),
        job_counts=dict(Counter(j.health for j in job_statuses)),
        loop=None if heartbeats is None else loop_health(heartbeats, now),
        pools=_pool_statuses(catalog.pools, pool_counts or {}),
        incidents=incidents, maintenance=tuple(windows.listed(now)),
        routes=route_statuses(catalog, routes or {}, settings.webhook_url),
    )


def _pool_statuses(pools: tuple[Pool, ...], counts: dict[str, tuple[int, int]]
                   ) -> tuple[PoolStatus, ...]:
    return tuple(PoolStatus(p.name, p.queue, p.max_concurrent, *counts.get(p.name, (0, 0)))
                 for p in pools)


def halted_producers(jobs: Iterable[Job]) -> dict[str, str]:
    """dataset key -> "its job X is paused" when every job producing it is paused or
    archived: nothing will sync it until someone resumes one."""
    found: dict[str, list[Job]] = {}
    for job in jobs:
        for key in job.produces:
            found.setdefault(key, []).append(job)
    halted = (JobStatus.PAUSED, JobStatus.ARCHIVED)
    return {key: "; ".join(f"its job {j.id} is {j.status}" for j in producing)
            for key, producing in found.items()
            if all(j.status in halted for j in producing)}


def producers_of(jobs: Iterable[Job]) -> dict[str, tuple[str, ...]]:
    """dataset key -> the jobs that produce it."""
    found: dict[str, list[str]] = {}
    for job in jobs:
        for key in job.produces:
            found.setdefault(key, []).append(job.id)
    return {k: tuple(v) for k, v in found.items()}


def _excused(freshness: Freshness, occurrence: Occurrence | None) -> Freshness:
    if occurrence is None:
        return freshness
    return excuse(freshness, occurrence.describe(), occurrence.window.id)


# What the headline says of the consumers at the page's level: (one, several).
AFFECTED_WORDS = {"warn": ("needs attention", "need attention"),
                  "error": ("cannot be trusted", "cannot be trusted")}


def _headline(level: str, consumers, datasets) -> str:
    """Who is affected, first: "Revenue dashboard and 2 others cannot be trusted" (the
    worst first); with no consumer at that level, what the data is."""
    states = [c.state for c in consumers] if consumers else [d.state for d in datasets]
    if level == "ok" and State.MAINTENANCE in states:
        return MAINTENANCE_TEXT
    affected = sorted((c for c in consumers if LEVELS[c.state] == level),
                      key=lambda c: -SEVERITY[c.state])
    if level not in AFFECTED_WORDS or not affected:
        return OVERALL_TEXT[level]
    one, several = AFFECTED_WORDS[level]
    first = shorten(affected[0].title, 60)
    if len(affected) == 1:
        return f"{first} {one}"
    others = len(affected) - 1
    return f"{first} and {others} other{'s' if others > 1 else ''} {several}"


# -- datasets -------------------------------------------------------------------


def lineage(catalog: Catalog, jobs: list[Job]) -> dict[str, tuple[str, ...]]:
    """{dataset: its upstreams}: declared in the catalog, and implied by triggers (a job
    triggered by `a` that produces `b` builds `b` from `a`)."""
    found: dict[str, set[str]] = {k: set(d.upstream) for k, d in catalog.datasets.items()}
    for job in jobs:
        if job.trigger is None or job.status == JobStatus.ARCHIVED:
            continue
        for key in job.produces:
            found.setdefault(key, set()).update(k for k in job.trigger.after if k != key)
    return {k: tuple(sorted(v)) for k, v in found.items() if v}


def _downstreams(ups: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    found: dict[str, set[str]] = {}
    for key, upstream in ups.items():
        for up in upstream:
            found.setdefault(up, set()).add(key)
    return {k: tuple(sorted(v)) for k, v in found.items()}


FAILING_STATES = frozenset({State.FAILING, State.ERROR})


def _upstreams(ups: dict[str, tuple[str, ...]], states: dict[str, str],
               bad: frozenset) -> dict[str, tuple[str, ...]]:
    """For each dataset, the upstreams (transitively) whose state is `bad`. Cycle-safe."""
    memo: dict[str, frozenset[str]] = {}

    def visit(key: str, path: frozenset[str]) -> frozenset[str]:
        if key in memo:
            return memo[key]
        found: set[str] = set()
        for up in ups.get(key, ()):
            if up in path:
                continue  # a cycle: check_catalog refuses them, but never loop here
            behind = visit(up, path | {up})
            if behind or states.get(up, "unknown") in bad:
                found.add(up)  # bad itself, or behind one that is
            found |= behind
        memo[key] = frozenset(found)
        return memo[key]

    return {k: tuple(sorted(v)) for k in states if (v := visit(k, frozenset({k})))}


def requirements_index(catalog: Catalog, keys: Iterable[str]) -> dict[str, Requirement]:
    """`catalog.requirement_for` for every key at once: O(requirements + keys), not a product."""
    by_key: dict[str, list[Requirement]] = {}
    for c in catalog.consumers:
        for r in c.requires:
            by_key.setdefault(r.dataset, []).append(r)
    index = {}
    for key in keys:
        found = by_key.get(key)
        if found and len(found) == 1:  # most are needed by one consumer: its own
            index[key] = found[0]
        elif found:
            index[key] = Requirement(key, min(r.warn_after for r in found),
                                     min(r.error_after for r in found))
        else:
            index[key] = Requirement(key, *DEFAULT_REQUIREMENT)
    return index


def _consumers_of(catalog: Catalog) -> dict[str, tuple[str, ...]]:
    found: dict[str, list[str]] = {}
    for c in catalog.consumers:
        for r in c.requires:
            found.setdefault(r.dataset, []).append(c.id)
    return {k: tuple(v) for k, v in found.items()}


def _with_risk(state: str, stale_upstreams: tuple[str, ...]) -> str:
    return worst((state, State.AT_RISK)) if stale_upstreams else state


def _dataset_status(key: str, doc: Dataset | None, catalog: Catalog, req: Requirement,
                    own: Freshness,
                    stale_up: tuple[str, ...], consumers: tuple[str, ...], now: datetime,
                    secrets: tuple[str, ...], upstream: tuple[str, ...],
                    downstream: tuple[str, ...], maintained: frozenset[str] = frozenset(),
                    incidents: tuple[str, ...] = (), halted: str = "") -> DatasetStatus:
    spec = catalog.datasets.get(key) or DatasetSpec(key=key)
    doc = doc or Dataset(key=key)
    state = _with_risk(own.state, stale_up)
    reason = own.reason
    if stale_up:
        reason = f"{reason}; upstream stale: {', '.join(stale_up)}"
    if halted:
        reason = f"{reason}; {halted}"
    start, history = day_history(doc.daily, now, maintained=maintained)
    return DatasetStatus(
        key=key, title=spec.title or key, owner=spec.owner, description=spec.description,
        declared=key in catalog.datasets, state=state, own_state=own.state,
        reason=redact(reason, secrets), age=own.age, requirement=req,
        last_started_at=doc.last_started_at, last_success_at=doc.last_success_at,
        last_failure_at=doc.last_failure_at, last_error=redact(doc.last_error, secrets),
        consecutive_failures=doc.consecutive_failures, last_record_count=doc.last_record_count,
        upstream=upstream, downstream=downstream, triggers=tuple(doc.triggers),
        at_risk_from=stale_up, consumers=consumers,
        history_start=start, history=history, freshness_basis=own.basis,
        data_as_of=own.data_as_of, watermark_issue=watermark_note(doc).lstrip("; ") or None,
        excused_by=own.excused_by, incidents=incidents,
    )


def day_history(daily: dict[str, dict[str, int]], now: datetime,
                days: int = HISTORY_DAYS, *, maintained: frozenset[str] = frozenset()
                ) -> tuple[str, str]:
    """(first day, one DAY_CODES letter per UTC day up to today). A day in `maintained`
    (ISO dates a window in scope touched) that was not all ok shows as maintenance, from
    the dataset's first recorded day on (a window declared today says nothing of before)."""
    start, order = _day_index(now.date(), days)
    try:  # each day's counts as bookkeeping writes them ({"ok": n, "fail": n})
        letters = _letters(daily, order)
    except KeyError:  # a day stored without one of them: none
        letters = _letters({day: {"ok": c.get("ok"), "fail": c.get("fail")} if c else c
                            for day, c in daily.items()}, order)
    bar = "".join(letters)
    if not maintained:
        return start, bar
    # From the first recorded day on (the days are ISO dates, in order), each stretch
    # of maintained days with its letters but "o" made "m": one translate a stretch,
    # not a question a day (a daily window touches every day of the bar).
    since = 0 if order[0] in daily else bisect.bisect_left(
        order, min(daily, default=now.date().isoformat()))
    parts, done = [], 0
    for a, b in _stretches(maintained, order):
        a = max(a, since)
        if a < b:
            parts += (bar[done:a], bar[a:b].translate(_MAINTAINED))
            done = b
    return start, "".join(parts) + bar[done:]


_MAINTAINED = str.maketrans("pf-", "mmm")


@functools.lru_cache(maxsize=64)  # datasets share their windows' days
def _stretches(maintained: frozenset[str], order: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
    """The [start, end) positions in `order` of its runs of days in `maintained`."""
    found: list[tuple[int, int]] = []
    for i, day in enumerate(order):
        if day in maintained:
            if found and found[-1][1] == i:
                found[-1] = (found[-1][0], i + 1)
            else:
                found.append((i, i + 1))
    return tuple(found)


def _maintenance_days(maintenance: Maintenance, now: datetime,
                      days: int = HISTORY_DAYS) -> list[tuple[Window, frozenset[str]]]:
    """Each window and the UTC days of the bar it touched: one question per window and
    day, so a window every minute costs what a daily one does."""
    today = datetime.combine(now.date(), time(), tzinfo=UTC)
    found = []
    for window in maintenance.windows:
        touched = set()
        for back in range(days):
            start = today - timedelta(days=back)
            end = min(start + timedelta(days=1), now)
            if start < end and next(window.occurrences(start, end), None) is not None:
                touched.add(start.date().isoformat())
        if touched:
            found.append((window, frozenset(touched)))
    return found


def _days_for(maintained: list[tuple[Window, frozenset[str]]], key: str,
              producers: tuple[str, ...]) -> frozenset[str]:
    found = [touched for window, touched in maintained
             if window.scope.covers_dataset(key, producers)]
    # One window (most often): its own set, whose hash is made once a build, not once a
    # dataset (day_history's _stretches are looked up by it).
    return found[0] if len(found) == 1 else frozenset().union(*found)


def _letters(daily: dict[str, dict[str, int]], order: tuple[str, ...]) -> list[str]:
    """One letter per day of `order`: one expression per day, no call but the map's
    (5,000 datasets x 90 days were a tenth of a build); KeyError for a day whose counts
    lack "ok" or "fail"."""
    return ["-" if not c else ("p" if c["fail"] else "o") if c["ok"] else
            "f" if c["fail"] else "-" for c in map(daily.get, order)]


@functools.lru_cache(maxsize=8)
def _day_index(today: date, days: int) -> tuple[str, tuple[str, ...]]:
    """The bar's first day and its days in order (one question per publish, not per
    dataset: 5,000 datasets asked for the same 90 dates)."""
    first = today - timedelta(days=days - 1)
    return first.isoformat(), tuple((first + timedelta(days=i)).isoformat()
                                    for i in range(days))


# -- consumers ------------------------------------------------------------------


@dataclass(frozen=True)
class _ConsumerContext:
    """What every consumer's status is computed from (one publish, one `now`)."""

    docs: dict[str, Dataset]
    by_key: dict[str, DatasetStatus]
    stale_up: dict[str, tuple[str, ...]]
    failing_up: dict[str, tuple[str, ...]]
    dataset_secrets: dict[str, tuple[str, ...]]
    producers: dict[str, tuple[str, ...]]
    catalog: Catalog
    jobs: dict[str, Job]
    maintenance: Maintenance
    records: dict[str, DeadlineRecord]
    about: dict[str, tuple[str, ...]]
    now: datetime
    # each dataset judged against its strictest requirement (build_model's): a consumer
    # whose requirement is that one, with no window on the consumer, is judged the same
    reqs: dict[str, Requirement] = field(default_factory=dict)
    own: dict[str, Freshness] = field(default_factory=dict)


def _consumer_status(consumer: Consumer, ctx: _ConsumerContext) -> ConsumerStatus:
    """Judged against this consumer's own requirement, not the strictest one."""
    now, windows = ctx.now, ctx.maintenance
    on_consumer = windows.covering_consumer(consumer.id, now)
    items = []
    for req in consumer.requires:
        own = ctx.own.get(req.dataset) if on_consumer is None else None
        if own is None or ctx.reqs.get(req.dataset) != req:
            on_dataset = windows.covering_dataset(
                req.dataset, ctx.producers.get(req.dataset, ()), now)
            own = _excused(evaluate(ctx.docs.get(req.dataset), req, now),
                           on_consumer or on_dataset)
        ups = () if own.state == State.MAINTENANCE else ctx.stale_up.get(req.dataset, ())
        secrets = ctx.dataset_secrets.get(req.dataset, ())
        if secrets and (reason := redact(own.reason, secrets)) != own.reason:
            own = replace(own, reason=reason)
        items.append(ConsumerDataset(
            key=req.dataset, state=_with_risk(own.state, ups), reason=own.reason,
            age=own.age, requirement=req, freshness=own,
        ))
    deadlines = tuple(_deadline_status(consumer, d, ctx, excused=on_consumer is not None)
                      for d in consumer.deadlines)
    risks = tuple(r for d in deadlines for r in d.risks)
    state = worst([*(i.state for i in items), *([State.AT_RISK] if risks else [])])
    detail = _banner_text(items, ctx.docs, ctx.by_key, ctx.dataset_secrets)
    if risks and worst(i.state for i in items) != state:  # the deadline is the news
        detail = _risk_text(deadlines)
    record = ctx.records.get(consumer.id)
    today = now.date()
    return ConsumerStatus(
        # The catalog document may predate the config's check: links are checked again.
        id=consumer.id, title=consumer.title, kind=consumer.kind,
        url=safe_link(consumer.url) or "", state=state,
        detail=detail, datasets=tuple(items), owner=consumer.owner, deadlines=deadlines,
        attainment_90d=record.attainment(today) if record else None,
        attainment_30d=record.attainment(today, 30) if record else None,
        deadline_counts=record.counts(today) if record else {},
        excused_by=on_consumer.window.id if on_consumer else None,
        incidents=_consumer_incidents(consumer, ctx.about), routes=consumer.routes,
    )


def deadline_items(consumer: Consumer, deadline: Deadline, docs: dict[str, Dataset],
                   catalog: Catalog, producers: dict[str, tuple[str, ...]]) -> list[Item]:
    """The datasets a deadline covers, as freshet.core.deadlines judges them."""
    reqs = {r.dataset: r for r in consumer.requires}
    return [Item(key, (catalog.datasets.get(key) or DatasetSpec(key)).title or key,
                 docs.get(key), reqs[key], producers.get(key, ()))
            for key in consumer.deadline_keys(deadline) if key in reqs]


def covers(consumer: Consumer) -> Callable[[Window, Item], bool]:
    """Does a window excuse a deadline item of this consumer."""
    return lambda window, item: (window.scope.covers_consumer(consumer.id)
                                 or window.scope.covers_dataset(item.key, item.producers))


def _deadline_status(consumer: Consumer, deadline: Deadline, ctx: _ConsumerContext, *,
                     excused: bool) -> DeadlineStatus:
    record = ctx.records.get(consumer.id)
    due = deadline.next_due(ctx.now)
    items = deadline_items(consumer, deadline, ctx.docs, ctx.catalog, ctx.producers)
    found = () if excused or due is None else tuple(
        risks(deadline, due, items, ctx.jobs, ctx.failing_up, ctx.maintenance, ctx.now))
    return DeadlineStatus(
        key=deadline.key, description=deadline.describe(), deadline=deadline,
        datasets=consumer.deadline_keys(deadline), next_due=due,
        last=record.last(deadline.key) if record else None, risks=found)


def _risk_text(deadlines: tuple[DeadlineStatus, ...]) -> str:
    first = next(d for d in deadlines if d.risks)
    due = first.next_due.astimezone(zone(first.deadline.timezone))
    when = f"{due:%a %H:%M} {first.deadline.timezone}"
    return (f"at risk of missing its deadline ({when}): "
            + "; ".join(r.text for r in first.risks))


def _banner_text(items: list[ConsumerDataset], docs: dict[str, Dataset],
                 by_key: dict[str, DatasetStatus],
                 dataset_secrets: dict[str, tuple[str, ...]]) -> str:
    if not items:
        return "requires no datasets"
    bad = sorted((i for i in items if i.state != "fresh"), key=lambda i: -SEVERITY[i.state])
    if not bad:
        oldest = max((i.age for i in items if i.age is not None), default=None)
        tightest = min(i.requirement.error_after for i in items)
        if len(items) == 1:
            return (f"data is fresh ({human_duration(oldest)} old, "
                    f"needs < {human_duration(tightest)})")
        return (f"all {len(items)} datasets are fresh (oldest {human_duration(oldest)}, "
                f"needs < {human_duration(tightest)})")
    first = bad[0]
    subject = "data" if len(items) == 1 else by_key[first.key].title
    text = _item_text(first, subject, docs.get(first.key), by_key[first.key],
                      dataset_secrets.get(first.key, ()))
    if len(bad) > 1:
        others = ", ".join(f"{by_key[i.key].title} ({LABELS[i.state].lower()})" for i in bad[1:4])
        more = f" and {len(bad) - 4} more" if len(bad) > 4 else ""
        text += f". Also: {others}{more}"
    return text


def _item_text(item: ConsumerDataset, subject: str, doc: Dataset | None,
               status: DatasetStatus, secrets: tuple[str, ...]) -> str:
    judged = item.freshness
    if item.state == State.MAINTENANCE and judged is not None:
        before = replace(item, state=judged.excused_state)
        why = judged.reason.rsplit("; excused: ", 1)[-1]
        return f"{_item_text(before, subject, doc, status, secrets)}; excused: {why}"
    needs = f"needs < {human_duration(item.requirement.error_after)}"
    age = f"{human_duration(item.age)} old" if item.age is not None else None
    if item.state == State.STALE_DATA and judged is not None:
        whose = "the data" if subject == "data" else "its data"
        who = "" if subject == "data" else f"{subject} "
        return (f"{who}synced {human_duration(judged.synced_age)} ago, but {whose} is as of "
                f"{as_of_words(judged.data_as_of, judged.data_as_of + judged.age)} ({needs})"
                + _failure_note(doc, secrets))
    if item.state == "unknown":
        text = f"{subject} has never been synced"
    elif item.state == "running" and age is None:
        text = f"{subject} is being synced for the first time"
    elif item.state == "running":
        text = f"{subject} is {age} ({needs}); a refresh is in progress"
    elif item.state == "failing" and age is None:
        text = f"{subject} has never synced successfully"
    elif item.state == "at_risk":
        said = f"is {age}" if age is not None else "has not been synced yet"
        text = (f"{subject} {said} ({needs}), but it is built from stale upstream data: "
                f"{', '.join(status.at_risk_from)}")
    elif age is None:
        text = f"{subject} has never synced successfully ({needs})"
    else:
        text = f"{subject} is {age} ({needs})"
    return text + _failure_note(doc, secrets)


def _failure_note(doc: Dataset | None, secrets: tuple[str, ...]) -> str:
    error = shorten(redact(doc.last_error, secrets), 300) if doc and doc.last_error else None
    return failure_note(doc, error)


def _overall_level(consumers: tuple[ConsumerStatus, ...], datasets: list[DatasetStatus]) -> str:
    """Consumers decide when there are any (that is who reads the page); else all datasets."""
    states = [c.state for c in consumers] if consumers else [d.state for d in datasets]
    return LEVELS[worst(states)]


# -- incidents and routes -----------------------------------------------------------

EVERYTHING = "*"


def _incidents_about(incidents: tuple[Incident, ...], catalog: Catalog,
                     producers: dict[str, tuple[str, ...]],
                     downstream: dict[str, tuple[str, ...]] | None = None
                     ) -> dict[str, tuple[str, ...]]:
    """"dataset:<key>" / "consumer:<id>" / "job:<id>" -> the open incidents about it
    (directly, through the jobs producing a dataset, or through what a consumer needs,
    built from any upstream: an incident on orders reaches the revenue dashboard built
    from them); EVERYTHING holds those opened on the whole pipeline."""
    produced: dict[str, list[str]] = {}
    for key, jobs in producers.items():
        for job_id in jobs:
            produced.setdefault(job_id, []).append(key)
    consumers_of = _consumers_of(catalog)
    found: dict[str, list[str]] = {}
    for incident in (i for i in incidents if i.open):
        scope = incident.scope
        if scope.everything:
            found.setdefault(EVERYTHING, []).append(incident.id)
            continue
        keys = set(scope.datasets).union(*(produced.get(j, ()) for j in scope.jobs))
        built_from = _closure(keys, downstream or {})
        consumers = set(scope.consumers).union(*(consumers_of.get(k, ())
                                                 for k in keys | built_from))
        subjects = ([f"dataset:{k}" for k in keys] + [f"consumer:{c}" for c in consumers]
                    + [f"job:{j}" for j in scope.jobs])
        for subject in subjects:
            found.setdefault(subject, []).append(incident.id)
    return {k: tuple(v) for k, v in found.items()}


def _closure(keys: set[str], edges: dict[str, tuple[str, ...]]) -> set[str]:
    """Every key reachable from `keys` along `edges` (not `keys` themselves)."""
    found: set[str] = set()
    todo = [n for k in keys for n in edges.get(k, ())]
    while todo:
        key = todo.pop()
        if key not in found:
            found.add(key)
            todo.extend(edges.get(key, ()))
    return found - keys


def incidents_of(about: dict[str, tuple[str, ...]], subject: str) -> tuple[str, ...]:
    return about.get(subject, ()) + about.get(EVERYTHING, ())


def _consumer_incidents(consumer: Consumer, about: dict[str, tuple[str, ...]]
                        ) -> tuple[str, ...]:
    return incidents_of(about, f"consumer:{consumer.id}")


def route_statuses(catalog: Catalog, states: dict[str, RouteState],
                   webhook_url: str | None) -> tuple[RouteStatus, ...]:
    found = []
    for spec in route_specs(catalog.routes, webhook_url):
        state = states.get(spec.id) or RouteState(spec.id)
        found.append(RouteStatus(
            id=spec.id, type=spec.type, target=spec.url.describe(),
            min_interval=spec.min_interval, last_status=state.last_status,
            last_attempt_at=state.last_attempt_at, last_delivered_at=state.last_delivered_at,
            last_error=state.last_error, waiting=len(state.backlog), dropped=state.dropped,
            delivered=state.delivered))
    return tuple(found)


# -- jobs and runs --------------------------------------------------------------


def _secrets_by_job(jobs: list[Job]) -> dict[str, tuple[str, ...]]:
    return {job.id: secret_values(job) for job in jobs}


def _secrets_by_dataset(jobs: list[Job],
                        secrets: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    found: dict[str, set[str]] = {}
    for job in jobs:
        for key in job.produces:
            found.setdefault(key, set()).update(secrets.get(job.id, ()))
    return {k: tuple(sorted(v, key=len, reverse=True)) for k, v in found.items()}


def _as_text(value: object) -> str:
    return value if isinstance(value, str) else repr(value)


def _shown_params(job: Job) -> tuple[tuple[str, str], ...]:
    secret = set(job.secret_params)
    return tuple(
        (name, SECRET_MASK if name in secret else shorten(_as_text(value), 200))
        for name, value in sorted(job.params.items())
    )


def _run_is_stuck(run: Run) -> bool:
    return run.stuck or any(a.outcome == AttemptOutcome.STUCK for a in run.attempts)


def job_health(job: Job, control: Control) -> JobHealth:
    match job.status:
        case JobStatus.ACTIVE:
            pass
        case JobStatus.PAUSED:
            return JobHealth.PAUSED
        case JobStatus.COMPLETED:
            return JobHealth.COMPLETED
        case JobStatus.ARCHIVED:
            return JobHealth.ARCHIVED
        case _:
            assert_never(job.status)
    if not control.kind_enabled(job.kind):
        return JobHealth.DISABLED
    match job.last_run_status:
        case None:
            return JobHealth.RUNNING if job.running_run_id else JobHealth.NEVER
        case LastRun.SUCCEEDED:
            return JobHealth.OK
        case LastRun.FAILED:
            return JobHealth.FAILED
        case LastRun.SKIPPED:
            return JobHealth.SKIPPED
        case _:
            assert_never(job.last_run_status)


def _job_statuses(jobs: list[Job], runs: list[Run], control: Control,
                  secrets: dict[str, tuple[str, ...]]) -> tuple[JobSummary, ...]:
    runs_by_id = {r.id: r for r in runs}
    stuck = Counter(r.job_id for r in runs if _run_is_stuck(r))
    statuses = []
    for job in jobs:
        last = runs_by_id.get(job.last_run_id) if job.last_run_id else None
        statuses.append(JobSummary(
            id=job.id, kind=job.kind, description=job.description, status=job.status,
            health=job_health(job, control), schedule=_schedule_words(job.schedule),
            timezone=job.schedule.timezone if job.schedule.recurring else "UTC",
            next_run_at=job.next_run_at, last_run_at=job.last_run_at,
            last_run_status=job.last_run_status, last_run_id=job.last_run_id,
            last_error=redact(job.last_error, secrets.get(job.id, ())),
            attempt=last.attempt_number if last else None, max_attempts=job.max_attempts,
            stuck_recoveries=stuck.get(job.id, 0), produces=tuple(job.produces),
            params=_shown_params(job), kind_enabled=control.kind_enabled(job.kind),
            trigger=describe_trigger(job), pool=job.pool, catchup=_catchup_words(job),
        ))
    statuses.sort(key=lambda j: (JOB_HEALTH_ORDER[j.health], -j.stuck_recoveries, j.id))
    return tuple(statuses)


# Jobs share a few dozen schedules; cronsim's explainer costs ~0.1 ms a call.
_schedule_words = functools.lru_cache(maxsize=4096)(describe)


def _catchup_words(job: Job) -> str:
    words = str(job.catchup)
    if job.catchup == "all":
        words += f" (at most {job.max_catchup})"
    if job.max_lateness is not None:
        words += f", max lateness {format_duration(job.max_lateness)}"
    return words


def _run_status(run: Run, secrets: tuple[str, ...], project: str) -> RunSummary:
    return RunSummary(
        id=run.id, job_id=run.job_id, kind=run.kind, status=run.status,
        trigger_source=run.trigger_source, attempt_number=run.attempt_number,
        max_attempts=run.max_attempts, scheduled_for=run.scheduled_for,
        interval_start=run.interval_start, queue=run.queue, backfill_id=run.backfill_id,
        created_at=run.created_at, started_at=run.started_at, finished_at=run.finished_at,
        duration_s=run.duration_s, stuck=_run_is_stuck(run), error=redact(run.error, secrets),
        logs_url=logs_url(project, run.id),
    )


def _run_order(run: RunSummary):
    when = run.created_at or run.scheduled_for or run.started_at
    return (when.timestamp() if when else 0.0, run.id)
