"""Job operations shared by the api, the CLI and apply: create, upsert, pause, resume,
archive. Each reads and writes in one Store transaction, with `now` passed in.

Runtime state (next_run_at, last_run_*, last_error) belongs to the control loop: an
upsert changes only what a definition declares (SPEC_FIELDS) and recomputes
next_run_at only when the schedule changed, so re-applying a config never shifts a job.
"""

from dataclasses import replace
from datetime import datetime

from freshet.core.errors import Conflict, NotFound, ValidationError
from freshet.core.models import Job, JobStatus
from freshet.core.schedules import first_slot, next_after
from freshet.core.specs import DEFAULT_POOL
from freshet.core.triggers import check_triggers
from freshet.gcp.store import Store, Tx

SPEC_FIELDS = ("kind", "params", "secret_params", "schedule", "max_retries",
               "stuck_threshold_minutes", "expected_runtime_minutes", "produces",
               "allow_overlap", "description", "catchup", "max_catchup", "max_lateness_s",
               "trigger", "pool")


def _value(job: Job, name: str):
    value = getattr(job, name)
    return value.to_dict() if name in ("schedule", "trigger") and value is not None else value


def job_changes(current: Job, desired: Job) -> dict[str, tuple]:
    """Pure: {field: (old, new)} for the declared fields that differ.

    A recurring job that was archived and is declared again comes back active; a
    paused job stays paused (pausing is an operator's decision, not the file's).
    """
    changes = {name: (_value(current, name), _value(desired, name))
               for name in SPEC_FIELDS if _value(current, name) != _value(desired, name)}
    if current.status == JobStatus.ARCHIVED and (desired.schedule.recurring
                                                 or desired.trigger is not None):
        changes["status"] = (JobStatus.ARCHIVED, JobStatus.ACTIVE)
    return changes


def _merged(current: Job, desired: Job, changes: dict, now: datetime) -> Job:
    updated = replace(current, **{name: getattr(desired, name) for name in SPEC_FIELDS},
                      updated_at=now)
    if "status" in changes:
        updated = replace(updated, status=JobStatus.ACTIVE, archived_at=None)
    if "schedule" in changes or "status" in changes:
        updated = replace(updated, next_run_at=first_slot(desired.schedule, now))
    return updated


def _fresh(job: Job, now: datetime) -> Job:
    return replace(job, next_run_at=first_slot(job.schedule, now), created_at=now,
                   updated_at=now, archived_at=None, completed_at=None)


def upsert_job(store: Store, job: Job, *, now: datetime) -> tuple[str, dict[str, tuple]]:
    """Create the job or bring its definition up to date, keeping its runtime state.

    Returns ('created' | 'updated' | 'unchanged', the changes)."""

    def body(tx: Tx) -> tuple[str, dict]:
        current = tx.get_job(job.id)
        if current is None:
            tx.set_job(_fresh(job, now))
            return "created", {}
        changes = job_changes(current, job)
        if not changes:
            return "unchanged", {}
        tx.set_job(_merged(current, job, changes, now))
        return "updated", changes

    return store.transact(body)


def create_job(store: Store, job: Job, *, now: datetime) -> Job:
    """A new job; Conflict if the id is taken (archived jobs keep their id)."""

    def body(tx: Tx) -> Job:
        if tx.get_job(job.id) is not None:
            raise Conflict(f"job {job.id!r} already exists")
        created = _fresh(job, now)
        tx.set_job(created)
        return created

    return store.transact(body)


def check_new_job(store: Store, job: Job) -> None:
    """What a job made through the api must agree with: its pool is one the pipeline
    declares, and its trigger makes no cycle with the jobs there are."""
    if job.pool not in (None, DEFAULT_POOL) and \
            store.catalog().pool(job.pool) is None:
        raise ValidationError("pool", f"unknown pool {job.pool!r} (pools are declared in the "
                                      "pipeline config)")
    if job.trigger is not None:
        check_triggers([*(j for j in store.list_jobs() if j.id != job.id), job])


def register_triggers(store: Store, job: Job) -> None:
    """List the job on each dataset its trigger names (apply rewrites these lists whole)."""
    for key in job.trigger.after if job.trigger else ():
        store.add_dataset_trigger(key, job.id)


def _change_status(store: Store, job_id: str, change) -> Job:
    def body(tx: Tx) -> Job:
        job = tx.get_job(job_id)
        if job is None:
            raise NotFound("job", job_id)
        updated = change(job)
        if updated is not job:
            tx.set_job(updated)
        return updated

    return store.transact(body)


def pause_job(store: Store, job_id: str, *, now: datetime) -> Job:
    """Stop scheduling the job (already paused: no change)."""

    def change(job: Job) -> Job:
        if job.status == JobStatus.PAUSED:
            return job
        if job.status != JobStatus.ACTIVE:
            raise Conflict(f"job {job_id!r} is {job.status}; only an active job can be paused")
        return replace(job, status=JobStatus.PAUSED, updated_at=now)

    return _change_status(store, job_id, change)


def resume_job(store: Store, job_id: str, *, now: datetime) -> Job:
    """Schedule the job again from `now` on: missed slots while paused are skipped; a
    one-time job whose moment passed while it was paused runs once, at once (or is
    completed, if its run happened meanwhile): none is left active with nothing to run."""

    def change(job: Job) -> Job:
        if job.status == JobStatus.ACTIVE:
            return job
        if job.status != JobStatus.PAUSED:
            raise Conflict(f"job {job_id!r} is {job.status}; only a paused job can be resumed")
        if job.schedule.recurring:
            return replace(job, status=JobStatus.ACTIVE,
                           next_run_at=next_after(job.schedule, now), updated_at=now)
        if job.last_run_id is not None:  # its one run happened while it was paused
            return replace(job, status=JobStatus.COMPLETED, completed_at=now, next_run_at=None,
                           updated_at=now)
        return replace(job, status=JobStatus.ACTIVE, next_run_at=job.schedule.run_at,
                       updated_at=now)

    return _change_status(store, job_id, change)


def archive_job(store: Store, job_id: str, *, now: datetime) -> Job:
    """Retire the job; its document and runs stay (never deleted)."""

    def change(job: Job) -> Job:
        if job.status == JobStatus.ARCHIVED:
            return job
        return replace(job, status=JobStatus.ARCHIVED, archived_at=now, next_run_at=None,
                       updated_at=now)

    return _change_status(store, job_id, change)
