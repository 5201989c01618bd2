"""What the API answers and the CLI prints: jobs, runs, datasets and the overall status
as JSON-ready dicts. Pure functions of documents and `now`, plus two reads that
gather what `GET /datasets` and `GET /status` show."""

from datetime import datetime

from freshet.core.backfill import Backfill, Progress, SlotPlan, progress_bar
from freshet.core.bookkeeping import with_running
from freshet.core.catalog import Catalog
from freshet.core.control import Control
from freshet.core.freshness import Requirement, State, evaluate, excuse, worst
from freshet.core.links import logs_url
from freshet.core.models import JOB_STATUSES, Dataset, External, Job, JobStatus, Run
from freshet.core.schedules import describe
from freshet.core.secrets import SECRET_MASK
from freshet.core.settings import Settings
from freshet.core.timeutil import format_duration, isoformat
from freshet.core.triggers import describe_trigger
from freshet.core.windows import NO_MAINTENANCE, Maintenance, Window
from freshet.gcp.store import Store
from freshet.status.model import halted_producers, route_statuses
from freshet.status.render import route_json


def job_json(job: Job) -> dict:
    params = {k: (SECRET_MASK if k in job.secret_params else v) for k, v in job.params.items()}
    sched = job.schedule
    return {
        "id": job.id, "kind": job.kind, "status": job.status, "description": job.description,
        "schedule": {"cron": sched.cron, "timezone": sched.timezone if sched.recurring else None,
                     "run_at": isoformat(sched.run_at), "description": describe(sched)},
        "params": params, "secret_params": list(job.secret_params),
        "max_retries": job.max_retries, "stuck_threshold_minutes": job.stuck_threshold_minutes,
        "expected_runtime_minutes": job.expected_runtime_minutes,
        "produces": list(job.produces), "allow_overlap": job.allow_overlap,
        "trigger_source": job.trigger_source, "catchup": job.catchup,
        "max_catchup": job.max_catchup,
        "max_lateness": None if job.max_lateness is None else format_duration(job.max_lateness),
        "trigger": None if job.trigger is None else {
            **job.trigger.to_dict(), "description": describe_trigger(job)},
        "pool": job.pool, "trigger_versions": dict(job.trigger_versions),
        "trigger_refused": _refusal_json(job.trigger_refused),
        **{name: isoformat(getattr(job, name)) for name in Job._TIMES},
        "last_run_id": job.last_run_id, "last_run_status": job.last_run_status,
        "last_error": job.last_error,
        "paused_reason": job.paused_reason, "paused_by": job.paused_by,
    }


def _refusal_json(refused: dict | None) -> dict | None:
    """A triggered run refused for its chain's depth (core.triggers), as stored."""
    if not refused:
        return None
    at = refused.get("at")
    return {**refused, "at": isoformat(at) if isinstance(at, datetime) else at}


def run_json(run: Run, project: str) -> dict:
    """`project` names the run's Logs Explorer link."""
    return {
        "id": run.id, "job_id": run.job_id, "kind": run.kind, "status": run.status,
        "slot": isoformat(run.slot),
        "data_interval": {"start": isoformat(run.interval_start), "end": isoformat(run.slot)},
        "queue": run.queue, "backfill_id": run.backfill_id,
        "upstream_versions": dict(run.upstream_versions), "trigger_depth": run.trigger_depth,
        "trigger_source": run.trigger_source, "attempt_number": run.attempt_number,
        "max_attempts": run.max_attempts, "produces": list(run.produces),
        "task_name": run.task_name, "idempotency_key": run.idempotency_key,
        "stuck": run.stuck, "error": run.error, "records": dict(run.records),
        "duration_s": run.duration_s,
        **{name: isoformat(getattr(run, name)) for name in Run._TIMES},
        "attempts": [{"number": a.number, "started_at": isoformat(a.started_at),
                      "finished_at": isoformat(a.finished_at), "outcome": a.outcome,
                      "error": a.error} for a in run.attempts],
        "logs_url": logs_url(project, run.id),
        "external": external_json(run.external),
    }


def external_json(external: External | None) -> dict | None:
    """A waiting run's work on its engine (kept after the end, for the record)."""
    if external is None:
        return None
    return {"engine": external.engine, "id": external.external_id,
            "location": external.location, "link": external.link, "polls": external.polls,
            "adopted": external.adopted, "cancel_reason": external.cancel_reason or None,
            **{name: isoformat(getattr(external, name)) for name in External._TIMES}}


def backfill_json(backfill: Backfill, progress: Progress) -> dict:
    return {
        "id": backfill.id, "job_id": backfill.job_id, "source": backfill.source,
        "from": isoformat(backfill.start), "to": isoformat(backfill.end),
        "rerun": backfill.rerun, "max_parallel": backfill.max_parallel,
        "status": progress.status, "note": backfill.note,
        "slots": backfill.slots, "already_done": backfill.already_done,
        "busy_at_plan": backfill.busy_at_plan,
        "progress": {"planned": progress.planned, "done": progress.done,
                     "failed": progress.failed, "skipped": progress.skipped,
                     "cancelled": progress.cancelled, "running": progress.running,
                     "waiting": progress.waiting, "fraction": round(progress.fraction, 4),
                     "bar": progress_bar(progress)},
        "current_runs": list(progress.current_runs),
        "requested_by": backfill.requested_by,
        **{name: isoformat(getattr(backfill, name))
           for name in ("created_at", "updated_at", "finished_at", "cancelled_at")},
    }


def plan_json(job_id: str, start: datetime, end: datetime, rerun: bool, max_parallel: int,
              plan: SlotPlan) -> dict:
    """A backfill's dry run: what it would run, and what it would leave alone."""
    return {"dry_run": True, "job_id": job_id, "from": isoformat(start), "to": isoformat(end),
            "rerun": rerun, "max_parallel": max_parallel, "slots": len(plan.slots),
            "todo": [isoformat(t) for t in plan.todo[:500]], "todo_count": len(plan.todo),
            "already_done": len(plan.done), "busy": len(plan.busy)}


def dataset_json(key: str, dataset: Dataset | None, catalog: Catalog, now: datetime,
                 maintenance: Maintenance = NO_MAINTENANCE,
                 producers: tuple[str, ...] = (), index: "CatalogIndex | None" = None) -> dict:
    spec = catalog.datasets.get(key)
    requirement = index.requirement(key) if index else catalog.requirement_for(key)
    fresh = evaluate(dataset, requirement, now)
    window = maintenance.covering_dataset(key, producers, now)
    if window is not None:
        fresh = excuse(fresh, window.describe(), window.window.id)
    d = dataset or Dataset(key=key)
    return {
        "key": key, "declared": spec is not None, "producers": list(producers),
        "title": spec.title if spec else "", "owner": spec.owner if spec else "",
        "upstream": list(spec.upstream) if spec else [],
        "consumers": list(index.consumers.get(key, ())) if index else [
            c.id for c in catalog.consumers if any(r.dataset == key for r in c.requires)],
        "state": fresh.state, "reason": fresh.reason,
        "age_s": None if fresh.age is None else int(fresh.age.total_seconds()),
        "warn_after_s": int(requirement.warn_after.total_seconds()),
        "error_after_s": int(requirement.error_after.total_seconds()),
        "triggers": list(d.triggers),
        "last_started_at": isoformat(d.last_started_at),
        "last_success_at": isoformat(d.last_success_at),
        "last_success_slot": isoformat(d.last_success_slot),
        "last_failure_at": isoformat(d.last_failure_at),
        "last_error": d.last_error, "consecutive_failures": d.consecutive_failures,
        "last_run_id": d.last_run_id, "last_record_count": d.last_record_count,
        "data_as_of": isoformat(fresh.data_as_of), "freshness_basis": fresh.basis,
        "excused_by": fresh.excused_by,
        "observe": spec.observe.to_dict() if spec and spec.observe else None,
    }


class CatalogIndex:
    """Who requires what, looked up once: every dataset's strictest requirement and its
    consumers, without walking every consumer per dataset (quadratic at 5,000)."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self.found: dict[str, list] = {}
        self.consumers: dict[str, list[str]] = {}
        for c in catalog.consumers:
            for r in c.requires:
                self.found.setdefault(r.dataset, []).append(r)
                if c.id not in self.consumers.get(r.dataset, ()):
                    self.consumers.setdefault(r.dataset, []).append(c.id)
        self._strictest: dict[str, Requirement] = {}

    def requirement(self, key: str) -> Requirement:
        if key not in self.found:
            return self.catalog.requirement_for(key)  # the default
        if key not in self._strictest:
            rs = self.found[key]
            self._strictest[key] = Requirement(key, min(r.warn_after for r in rs),
                                               min(r.error_after for r in rs))
        return self._strictest[key]


def all_datasets(store: Store, now: datetime, jobs: list[Job] | None = None,
                 control: Control | None = None, catalog: Catalog | None = None,
                 stored: list[Dataset] | None = None) -> list[dict]:
    catalog = catalog or store.catalog()
    control = control or store.control()
    jobs = store.list_jobs() if jobs is None else jobs
    producers: dict[str, list[str]] = {}
    for job in jobs:
        for key in job.produces:
            producers.setdefault(key, []).append(job.id)
    halted = halted_producers(jobs)  # as the page says it: "its job X is paused"
    found = {d.key: d for d in with_running(
        store.list_datasets() if stored is None else stored, jobs)}
    keys = list(catalog.datasets) + sorted(k for k in found if k not in catalog.datasets)
    index = CatalogIndex(catalog)
    docs = [dataset_json(k, found.get(k), catalog, now, control.maintenance,
                         tuple(producers.get(k, ())), index) for k in keys]
    for doc in docs:
        if doc["key"] in halted:
            doc["reason"] = f"{doc['reason']}; {halted[doc['key']]}"
    return docs


def routes_json(store: Store, catalog: Catalog, settings: Settings) -> list[dict]:
    """Each notification route and how its last delivery went (as status.json says it)."""
    statuses = route_statuses(catalog, store.route_states(), settings.webhook_url)
    return [route_json(r) for r in statuses]


def status_summary(store: Store, settings: Settings, now: datetime) -> dict:
    """Counts, the worst dataset state, late jobs, the kill switches, maintenance under
    way, open incidents and the notification routes (api and CLI)."""
    jobs = store.list_jobs()
    control = store.control()
    datasets = all_datasets(store, now, jobs, control)
    late = sorted(j.id for j in jobs
                  if j.status == JobStatus.ACTIVE and j.next_run_at is not None
                  and (now - j.next_run_at).total_seconds() > settings.not_ticking_after_s)
    return {
        "now": isoformat(now),
        "jobs": {s: sum(j.status == s for j in jobs) for s in JOB_STATUSES},
        "datasets": {s: sum(d["state"] == s for d in datasets)
                     for s in State if s != State.AT_RISK},
        "worst": worst(d["state"] for d in datasets),
        "late_jobs": late,
        "control": control.to_doc(),
        "maintenance": [{"id": o.window.id, "note": o.window.note, "end": isoformat(o.end),
                         "scope": o.window.scope.to_json(), "mode": str(o.window.mode)}
                        for o in control.maintenance.active(now)],
        "incidents": [{"id": i.id, "title": i.title, "eta": isoformat(i.eta),
                       "scope": i.scope.to_json()}
                      for i in store.incidents(now) if i.open],
        "routes": routes_json(store, store.catalog(), settings),
    }


def window_json(window: Window, *, adhoc: bool, now: datetime) -> dict:
    """A maintenance window: declared in the config, or opened now (ad-hoc)."""
    current = window.at(now)
    return {"id": window.id, "note": window.note, "adhoc": adhoc,
            "mode": str(window.mode), "scope": window.scope.to_json(),
            "start": isoformat(window.start), "end": isoformat(window.end),
            "cron": window.cron, "timezone": window.timezone if window.recurring else None,
            "duration": format_duration(window.duration) if window.duration else None,
            "active": current is not None,
            "current_end": isoformat(current.end) if current else None}


def maintenance_json(store: Store, now: datetime) -> dict:
    """Declared windows (the config's, written by apply), then the ad-hoc ones not over."""
    doc = store.control_doc()
    declared = Maintenance.from_doc(doc.get("maintenance")).windows
    adhoc = [w for w in Maintenance.from_doc(doc.get("adhoc_maintenance")).windows
             if w.end is not None and w.end > now]
    return {"now": isoformat(now),
            "declared": [window_json(w, adhoc=False, now=now) for w in declared],
            "adhoc": [window_json(w, adhoc=True, now=now) for w in adhoc]}


def consumers_json(store: Store, now: datetime) -> list[dict]:
    """Each consumer: what it requires, its deadlines and their attainment (30 and 90
    days), from the catalog and the deadline records (one query)."""
    catalog = store.catalog()
    records = store.deadline_records()
    today = now.date()
    found = []
    for c in catalog.consumers:
        record = records.get(c.id)
        found.append({
            "id": c.id, "title": c.title, "kind": c.kind, "owner": c.owner,
            "requires": [{"dataset": r.dataset,
                          "warn_after_s": int(r.warn_after.total_seconds()),
                          "error_after_s": int(r.error_after.total_seconds())}
                         for r in c.requires],
            "deadlines": [d.describe() for d in c.deadlines],
            "attainment_30d": record.attainment(today, 30) if record else None,
            "attainment_90d": record.attainment(today) if record else None,
            "deadline_counts": record.counts(today) if record else {},
        })
    return found
