"""Make the world match the pipeline config: plan (the diff), then apply it.

    plan(config, store=..., task_queue=..., now=...)  -> Plan      reads only
    apply(plan_or_config, store=..., task_queue=..., now=...)       writes

Applying is idempotent: a second plan after an apply is empty. Jobs are upserted
without losing runtime state; a job the file no longer declares is archived, never
deleted. Only jobs an earlier apply declared are archived that way (the ids are kept
in settings/applied), so jobs made through the api are not swept away.

Apply also creates a Cloud Tasks queue per pool, and writes on each dataset document
the jobs its success triggers (`triggers`), so that run_task's finish finds them
without a query.
"""

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from freshet.core.catalog import APPLIED_FROM, AppliedFrom
from freshet.core.control import Control
from freshet.core.egress import EgressPolicy
from freshet.core.errors import ValidationError
from freshet.core.groups import relayout
from freshet.core.models import Catchup, Job, JobStatus
from freshet.core.observe import due_now
from freshet.core.schedules import first_slot
from freshet.core.text import shorten
from freshet.core.timeutil import format_duration, isoformat
from freshet.core.triggers import check_triggers, describe_trigger
from freshet.core.windows import Maintenance
from freshet.gcp.scheduler import SchedulerAdmin, SchedulerDiff, build_jobs
from freshet.gcp.store import Store
from freshet.gcp.tasks import QueueSpec, TaskQueue
from freshet.ops.config import PipelineConfig
from freshet.ops.operations import archive_job, job_changes, upsert_job

Progress = Callable[[str], None]


@dataclass
class JobChange:
    job_id: str
    action: str  # create | update | archive
    changes: dict[str, tuple] = field(default_factory=dict)
    job: Job | None = None  # the declared job (create / update)


@dataclass
class QueueChange:
    spec: QueueSpec
    action: str  # create | update
    changes: list[str] = field(default_factory=list)


@dataclass
class Plan:
    config: PipelineConfig
    jobs: list[JobChange] = field(default_factory=list)
    catalog_changes: list[str] = field(default_factory=list)
    control_changes: dict[str, tuple] = field(default_factory=dict)
    maintenance_changes: list[str] = field(default_factory=list)
    egress_changes: list[str] = field(default_factory=list)
    queues: list[QueueChange] = field(default_factory=list)
    # dataset -> (the jobs it triggers now, after apply)
    triggers: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)
    # group -> the datasets it will hold (core.groups.relayout): laid out again
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    scheduler: SchedulerDiff | None = None  # None: Cloud Scheduler not managed here
    applied_ids: frozenset[str] = frozenset()
    live_jobs: int = 0  # jobs not archived once applied: the trigger depth bound
    # Jobs an operator paused: runtime state that apply keeps, shown so nobody is surprised.
    paused: list[Job] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.jobs or self.catalog_changes or self.control_changes or self.queues
                    or self.triggers or self.maintenance_changes or self.egress_changes
                    or self.groups
                    or (self.scheduler is not None and not self.scheduler.empty))

    def count(self) -> int:
        """The changes the plan lists, one per line."""
        sched = self.scheduler
        return (len(self.jobs) + len(self.catalog_changes) + len(self.control_changes)
                + len(self.maintenance_changes) + len(self.egress_changes)
                + len(self.queues) + len(self.triggers) + len(self.groups)
                + (0 if sched is None
                   else len(sched.create) + len(sched.update) + len(sched.delete)))

    def steps(self) -> int:
        """The writes apply reports as it goes ([step/steps])."""
        sched = self.scheduler
        return (len(self.jobs) + bool(self.catalog_changes) + bool(self.control_changes)
                + bool(self.maintenance_changes) + bool(self.egress_changes)
                + len(self.queues) + len(self.triggers) + len(self.groups)
                + (sched is not None and not sched.empty))

    def lines(self) -> list[str]:
        """The plan as a terminal reads it: one line per change, '+' '~' '-' marks."""
        if self.empty:
            return ["No changes: Firestore, Cloud Tasks and Cloud Scheduler match "
                    f"{self.config.path}.", *self.paused_lines()]
        out = [f"Plan for {self.config.project} ({self.config.region}) "
               f"from {self.config.path}:"]
        marks = {"create": "+", "update": "~", "archive": "-"}
        for change in self.jobs:
            detail = ", ".join(f"{k}: {_short(old)} -> {_short(new)}"
                               for k, (old, new) in change.changes.items())
            if change.action == "create":
                detail = scheduling(change.job)
            out.append(f"  {marks[change.action]} job {change.job_id}: {change.action}"
                       + (f" ({detail})" if detail else ""))
        out += [f"  ~ catalog: {c}" for c in self.catalog_changes]
        for name, (old, new) in self.control_changes.items():
            out.append(f"  ~ kill switch {name}: {_short(old)} -> {_short(new)}")
        out += [f"  ~ maintenance: {c}" for c in self.maintenance_changes]
        out += [f"  ~ http_fetch: {c}" for c in self.egress_changes]
        pools = {q.queue(self.config.queue): q for q in self.config.pools}
        for q in self.queues:
            extra = list(q.changes)
            if q.spec.name in pools:
                extra.insert(0, f"pool {pools[q.spec.name].name}, at most "
                                f"{q.spec.max_concurrent_dispatches} at once")
            extra_text = f" ({', '.join(extra)})" if extra else ""
            out.append(f"  {marks[q.action]} queue {q.spec.name}: {q.action}{extra_text}")
        for gid, keys in self.groups.items():
            out.append(f"  ~ dataset group {gid}: {len(keys)} dataset(s)")
        for key, (old, new) in self.triggers.items():
            out.append(f"  ~ dataset {key}: triggers {_short(old)} -> {_short(new)}")
        if self.scheduler is not None:
            out += [f"  + scheduler job {_leaf(j.name)}: create" for j in self.scheduler.create]
            out += [f"  ~ scheduler job {_leaf(j.name)}: update ({', '.join(c)})"
                    for j, c in self.scheduler.update]
            out += [f"  - scheduler job {_leaf(n)}: delete" for n in self.scheduler.delete]
        out.append(f"{self.count()} change(s).")
        return out + self.paused_lines()

    def paused_lines(self) -> list[str]:
        """`= job X: paused ...`: kept as it is (pausing is an operator's decision)."""
        return [f"  = job {j.id}: paused (kept) — {j.paused_reason or 'no reason given'}"
                + (f", by {j.paused_by}" if j.paused_by else "")
                + (f", resumes by itself at {j.paused_until:%Y-%m-%d %H:%M} UTC"
                   if j.paused_until else "")
                for j in sorted(self.paused, key=lambda j: j.id)
                if j.status == JobStatus.PAUSED][:50]


def scheduling(job: Job) -> str:
    """How a job is scheduled, in a plan line: its catch-up policy, lateness, pool and
    trigger."""
    parts = [f"catchup: {job.catchup}"
             + (f" (at most {job.max_catchup})" if job.catchup == Catchup.ALL else "")]
    if job.max_lateness is not None:
        parts.append(f"max_lateness: {format_duration(job.max_lateness)}")
    if job.pool is not None:
        parts.append(f"pool: {job.pool}")
    if job.trigger is not None:
        parts.append(f"runs {describe_trigger(job)}")
    if job.schedule.none:
        parts[0] = "no schedule"
    return ", ".join(parts)


def _leaf(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def _short(value: object, limit: int = 60) -> str:
    return shorten(isoformat(value) if isinstance(value, datetime) else repr(value), limit)


def control_jobs(config: PipelineConfig, *, base_url: str | None = None,
                 invoker_email: str | None = None) -> list:
    """The config's control schedules as Cloud Scheduler jobs (default: the deployed
    functions' URLs, called as the invoker account)."""
    fn = config.functions
    return build_jobs(config.project, config.region, config.control_schedules,
                      base_url=base_url or fn.base_url,
                      invoker_email=fn.invoker_email if invoker_email is None else invoker_email)


# -- plan ------------------------------------------------------------------------------

def applied_ids(store: Store) -> frozenset[str]:
    return frozenset(store.applied_doc().get("job_ids") or [])


def plan_jobs(declared: tuple[Job, ...], current: dict[str, Job],
              previously_applied: frozenset[str]) -> list[JobChange]:
    """Pure: the job changes that make `current` match `declared`."""
    changes = []
    for job in declared:
        existing = current.get(job.id)
        if existing is None:
            changes.append(JobChange(job.id, "create", job=job))
            continue
        diff = job_changes(existing, job)
        if diff:
            changes.append(JobChange(job.id, "update", diff, job=job))
    names = {j.id for j in declared}
    for job_id in sorted(previously_applied - names):
        existing = current.get(job_id)
        if existing is not None and existing.status != JobStatus.ARCHIVED:
            changes.append(JobChange(job_id, "archive", {"status": (existing.status,
                                                                    "archived")}))
    return changes


def check_first_slots(config: PipelineConfig, changes: list[JobChange], now: datetime) -> None:
    """A job created or rescheduled must have a slot to run in (a one-time job's moment
    may not lie days back): refused here, at its line, before anything is written."""
    index = {job.id: i for i, job in enumerate(config.jobs)}
    for change in changes:
        if change.action == "create" or "schedule" in change.changes:
            try:
                first_slot(change.job.schedule, now)
            except ValidationError as exc:
                raise config.error(f"jobs[{index[change.job_id]}].{exc.field}",
                                   exc.message) from None


def config_source(config: PipelineConfig) -> AppliedFrom:
    """The config's file and the sha256 of its bytes (empty when it cannot be read)."""
    try:
        digest = hashlib.sha256(Path(config.path).read_bytes()).hexdigest()
    except OSError:
        digest = ""
    return AppliedFrom(str(config.path), digest)


def declared_catalog(config: PipelineConfig) -> dict:
    """The catalog document apply stores: the config's catalog and where it came from."""
    return {**config.catalog.to_doc(), APPLIED_FROM: config_source(config).to_doc()}


def plan_catalog(declared: dict, stored: dict) -> list[str]:
    """Pure: what differs between the declared and the stored catalog documents."""
    out = []
    source, before = (AppliedFrom.from_doc(d.get(APPLIED_FROM)) for d in (declared, stored))
    if source != before:
        out.append(f"applied from {source.describe() if source else '-'}"
                   + (f" (was {before.describe()})" if before else ""))
    for section, key in (("datasets", "key"), ("consumers", "id"), ("pools", "name"),
                         ("routes", "id")):
        want = {d[key]: d for d in declared.get(section) or []}
        have = {d.get(key): d for d in stored.get(section) or []}
        noun = section[:-1]
        out += [f"{noun} {k} added" for k in want if k not in have]
        out += [f"{noun} {k} changed" for k in want if k in have and have[k] != want[k]]
        out += [f"{noun} {k} removed" for k in have if k not in want]
    if not out and declared != stored:
        out.append("order or layout changed")
    return out


def plan_control(declared: Control | None, stored: dict) -> dict[str, tuple]:
    if declared is None:
        return {}
    current = Control.from_doc(stored).to_doc()
    wanted = declared.to_doc()
    return {k: (current.get(k), v) for k, v in wanted.items() if current.get(k) != v}


def plan_maintenance(declared: Maintenance, stored: dict) -> list[str]:
    """Pure: which windows the file adds, changes or removes."""
    want = {w["id"]: w for w in declared.to_doc()}
    have = {w["id"]: w for w in Maintenance.from_doc(stored.get("maintenance")).to_doc()}
    out = [f"window {k} added" for k in want if k not in have]
    out += [f"window {k} changed" for k in want if k in have and have[k] != want[k]]
    out += [f"window {k} removed" for k in have if k not in want]
    if not out and list(want) != list(have):
        out.append("order changed")
    return out


def plan_egress(declared: EgressPolicy, stored: dict) -> list[str]:
    """Pure: how the http_fetch/route egress policy the file declares differs from the
    stored one (no section and nothing stored are both the defaults)."""
    have = EgressPolicy.from_doc(stored.get("egress")).to_doc()
    return [f"{k}: {_short(have[k])} -> {_short(v)}" for k, v in declared.to_doc().items()
            if have[k] != v]


def plan_queue(task_queue: TaskQueue, spec: QueueSpec, existing: dict) -> QueueChange | None:
    current = existing.get(spec.name)
    if current is None:
        return QueueChange(spec, "create")
    changed = task_queue.queue_changes(spec, current)
    return QueueChange(spec, "update", changed) if changed else None


def plan_triggers(jobs: list[Job], listed: dict[str, list[str]]
                  ) -> dict[str, tuple[list[str], list[str]]]:
    """Pure: the datasets whose `triggers` list must change, given every job there will
    be. Refuses a trigger cycle, naming it, and a dataset triggering too many jobs."""
    wanted = check_triggers(jobs, "jobs.trigger")
    return {k: (listed.get(k, []), wanted.get(k, []))
            for k in sorted(set(wanted) | set(listed)) if listed.get(k, []) != wanted.get(k, [])}


def jobs_after(declared: tuple[Job, ...], current: dict[str, Job],
               changes: list[JobChange]) -> list[Job]:
    """Every job as it will be once the plan is applied (jobs made through the api too)."""
    archived = {c.job_id for c in changes if c.action == "archive"}
    names = {j.id for j in declared}
    return list(declared) + [j for j in current.values()
                             if j.id not in names and j.id not in archived]


def plan(config: PipelineConfig, *, store: Store, task_queue: TaskQueue,
         scheduler_admin: SchedulerAdmin | None = None, now: datetime) -> Plan:
    """Read the current state and diff it against the config. Changes nothing."""
    current = {j.id: j for j in store.list_jobs()}
    previously = applied_ids(store)
    result = Plan(config=config, applied_ids=previously,
                  paused=[j for j in current.values() if j.status == JobStatus.PAUSED])
    result.jobs = plan_jobs(config.jobs, current, previously)
    check_first_slots(config, result.jobs, now)
    listed = {d.key: list(d.triggers) for d in store.list_datasets() if d.triggers}
    after = jobs_after(config.jobs, current, result.jobs)
    result.groups = relayout([(j.id, j.produces) for j in after if j.status != JobStatus.ARCHIVED],
                             *store.dataset_layout())
    result.triggers = plan_triggers(after, listed)
    result.live_jobs = sum(1 for j in after if j.status != JobStatus.ARCHIVED)
    result.catalog_changes = plan_catalog(declared_catalog(config), store.catalog_doc())
    stored_control = store.control_doc()
    result.control_changes = plan_control(config.control, stored_control)
    result.maintenance_changes = plan_maintenance(config.maintenance, stored_control)
    result.egress_changes = plan_egress(config.egress, stored_control)
    existing = task_queue.queues()
    result.queues = [c for c in (plan_queue(task_queue, s, existing)
                                 for s in config.all_queues) if c]
    if scheduler_admin is not None:
        result.scheduler = scheduler_admin.diff(control_jobs(config))
    return result


# -- apply -----------------------------------------------------------------------------

def _ensure_queue(task_queue: TaskQueue, change: QueueChange) -> str:
    if change.action == "create":
        task_queue.create_queue(change.spec)
        return "created"
    task_queue.update_queue(change.spec)
    return "updated"


@dataclass
class ApplyResult:
    jobs: dict[str, str] = field(default_factory=dict)  # job id -> what happened
    catalog_written: bool = False
    control_written: bool = False
    maintenance_written: bool = False
    egress_written: bool = False
    queues: dict[str, str] = field(default_factory=dict)
    scheduler_requests: int = 0


def apply(plan_or_config: Plan | PipelineConfig, *, store: Store, task_queue: TaskQueue,
          scheduler_admin: SchedulerAdmin | None = None, now: datetime,
          progress: Progress | None = None) -> ApplyResult:
    """Carry out a plan (computing it first when given a config)."""
    todo = plan_or_config
    if isinstance(todo, PipelineConfig):
        todo = plan(todo, store=store, task_queue=task_queue,
                    scheduler_admin=scheduler_admin, now=now)
    say = progress or (lambda _msg: None)
    config, result, step, total = todo.config, ApplyResult(), 0, max(todo.steps(), 1)

    def tell(message: str) -> None:
        nonlocal step
        step += 1
        say(f"[{step}/{total}] {message}")

    for change in todo.jobs:
        if change.action == "archive":
            archive_job(store, change.job_id, now=now)
            result.jobs[change.job_id] = "archived"
        else:
            result.jobs[change.job_id], _ = upsert_job(store, change.job, now=now)
        tell(f"job {change.job_id}: {result.jobs[change.job_id]}")
    if todo.catalog_changes:
        store.put_catalog_doc(declared_catalog(config))
        # What is observed may have changed: the next tick's observe pass reads it.
        store.put_observations_doc(due_now(store.observations_doc()))
        result.catalog_written = True
        tell("catalog written")
    if todo.control_changes:
        store.set_control(config.control.to_doc())
        result.control_written = True
        tell("kill switches written")
    if todo.maintenance_changes:
        store.set_control({"maintenance": config.maintenance.to_doc()})
        result.maintenance_written = True
        tell("maintenance windows written")
    if todo.egress_changes:
        store.set_control({"egress": config.egress.to_doc()})
        result.egress_written = True
        tell("http_fetch and route egress policy written")
    for q in todo.queues:
        result.queues[q.spec.name] = _ensure_queue(task_queue, q)
        tell(f"queue {q.spec.name}: {result.queues[q.spec.name]}")
    for gid, keys in todo.groups.items():  # before the triggers: they go where the state is
        store.regroup(gid, list(keys))
        tell(f"dataset group {gid}: {len(keys)} dataset(s)")
    for key, (_, jobs) in todo.triggers.items():
        store.set_dataset_triggers(key, jobs)
        tell(f"dataset {key}: triggers {', '.join(jobs) or 'nothing'}")
    if todo.jobs or todo.triggers:
        store.put_trigger_graph(todo.live_jobs)
    if todo.scheduler is not None and scheduler_admin is not None:
        result.scheduler_requests = scheduler_admin.execute(todo.scheduler)
        tell(f"Cloud Scheduler: {result.scheduler_requests} request(s)")
    declared = sorted(config.job_ids)
    if set(declared) != todo.applied_ids:
        store.put_applied_doc({"job_ids": declared, "config": config.path, "applied_at": now})
    return result
