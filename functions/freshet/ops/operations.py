"""Job operations shared by the api, the CLI and apply: create, upsert, pause, resume,
archive. Each reads and writes in one Store transaction, with `now` passed in.

Runtime state (next_run_at, last_run_*, last_error) belongs to the control loop: an
upsert changes only what a definition declares (SPEC_FIELDS) and recomputes
next_run_at only when the schedule changed, so re-applying a config never shifts a job.
"""

import base64
from dataclasses import replace
from datetime import datetime

from freshet.core.errors import Conflict, NotFound, ValidationError
from freshet.core.incidents import EVERYTHING
from freshet.core.interventions import (
    adhoc_window,
    check_reason,
    decide_cancel,
    parse_until,
    paused,
    resumed,
    with_window,
    without_window,
)
from freshet.core.models import RUN_STATUSES, Job, JobStatus, Run
from freshet.core.schedules import first_slot
from freshet.core.specs import DEFAULT_POOL
from freshet.core.text import shorten
from freshet.core.triggers import check_triggers
from freshet.core.windows import Scope, Window
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


GRAPH_TRIES = 5  # creates that find the trigger graph changed since they checked it


class _GraphMoved(Exception):
    """The trigger graph changed between a create's check and its commit."""


def create_job(store: Store, job: Job, *, now: datetime) -> Job:
    """A new job; Conflict if the id is taken (archived jobs keep their id).

    A job with a trigger is checked for a cycle with every job there is, against the
    trigger graph's version read before them (settings/trigger_graph); the create's
    transaction compares that version and sets the next one, with the job and its
    listing on the datasets its trigger names. Two creates that would close a loop
    together cannot both commit on one version: the second checks again, sees the
    first, and is refused. (The check reads outside the transaction, so a create
    holds no lock on every job.)"""
    for _ in range(GRAPH_TRIES):
        version, live = _check_trigger(store, job)
        try:
            return store.transact(lambda tx, v=version, n=live: _create(tx, job, now, v, n))
        except _GraphMoved:
            continue
    raise Conflict("jobs with triggers are being created at this moment; try again")


def _check_trigger(store: Store, job: Job) -> tuple[int, int]:
    """(the graph's version, the number of jobs not archived) once the check passed."""
    if job.trigger is None:
        return 0, 0
    version = int(store.trigger_graph().get("version") or 0)  # before the jobs: see above
    others = [j for j in store.list_jobs() if j.id != job.id]
    check_triggers([*others, job])
    return version, sum(1 for j in others if j.status != JobStatus.ARCHIVED) + 1


def _create(tx: Tx, job: Job, now: datetime, version: int, live: int) -> Job:
    graph = tx.trigger_graph() if job.trigger is not None else {}
    if tx.get_job(job.id) is not None:
        raise Conflict(f"job {job.id!r} already exists")
    if job.trigger is not None and int(graph.get("version") or 0) != version:
        raise _GraphMoved()
    if job.trigger is not None:
        tx.get_datasets(list(job.trigger.after))  # where each is: read before any write
    tx.read_layout(job.id, job.produces)
    created = _fresh(job, now)
    tx.set_job(created)
    tx.lay_out(job.id, job.produces)  # its datasets' groups, as apply lays them out
    if job.trigger is not None:
        tx.set_trigger_graph(version + 1, live)
        for key in job.trigger.after:
            tx.add_dataset_trigger(key, job.id)
    return created


def check_new_job(store: Store, job: Job) -> None:
    """What a job made through the api must agree with: its pool is one the pipeline
    declares, and it produces no dataset the pipeline observes or another job produces
    (as apply refuses).
    (Its trigger's check commits with the create: create_job.)"""
    pooled = job.pool not in (None, DEFAULT_POOL)
    if not pooled and not job.produces:
        return
    catalog = store.catalog()
    if pooled and catalog.pool(job.pool) is None:
        raise ValidationError("pool", f"unknown pool {job.pool!r} (pools are declared in the "
                                      "pipeline config)")
    observed = catalog.observed
    for i, key in enumerate(job.produces):
        if key in observed:
            raise ValidationError(f"produces[{i}]", f"dataset {key!r} is observed "
                                  "(observe: in the pipeline config), so no job may produce it")
    _one_producer(store, job)


def _one_producer(store: Store, job: Job) -> None:
    """A dataset has one producing job, as the config says (ops.config): its state is
    kept with that job's other datasets (core.groups)."""
    if not job.produces:
        return
    producer = {k: j.id for j in store.list_jobs() if j.status != JobStatus.ARCHIVED
                and j.id != job.id for k in j.produces}
    for i, key in enumerate(job.produces):
        if key in producer:
            raise ValidationError(f"produces[{i}]", f"dataset {key!r} is produced by job "
                                  f"{producer[key]!r} already (one producer per dataset)")


def register_triggers(store: Store, job: Job) -> None:
    """List the job on each dataset its trigger names, outside any create (tests, and a
    job written directly); the api's create does this in its own transaction."""
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


def pause_job(store: Store, job_id: str, *, reason: object, until: object = None,
              by: str = "", now: datetime) -> Job:
    """Stop scheduling the job, saying why; with `until` (a time, or '2h') the tick
    resumes it by itself then. A paused job gets the new reason and until."""
    why = check_reason(reason)
    ends = parse_until(until, now)
    return _change_status(store, job_id, lambda job: paused(
        job, reason=why, until=ends, by=shorten(by, 200) or "", now=now))


def resume_job(store: Store, job_id: str, *, now: datetime) -> Job:
    """Schedule the job again from `now` on (freshet.core.interventions.resumed)."""
    return _change_status(store, job_id, lambda job: resumed(job, now))


def archive_job(store: Store, job_id: str, *, now: datetime) -> Job:
    """Retire the job; its document and runs stay (never deleted)."""

    def change(job: Job) -> Job:
        if job.status == JobStatus.ARCHIVED:
            return job
        return replace(job, status=JobStatus.ARCHIVED, archived_at=now, next_run_at=None,
                       updated_at=now)

    return _change_status(store, job_id, change)


# -- runs, windows: what the console asks of the operations layer ----------------------

def cancel_run(store: Store, run_id: str, *, by: str = "", now: datetime) -> Run:
    """End a queued or running run `cancelled` (freshet.core.interventions.decide_cancel):
    its later task is a no-op, a running sync's ending is discarded, its lease and its
    job's hold are released, its datasets are left alone. Cancelled already: no change."""

    def body(tx: Tx) -> Run:
        run = tx.get_run(run_id)
        if run is None:
            raise NotFound("run", run_id)
        job = tx.get_job(run.job_id)
        decision = decide_cancel(run, job, by=by, now=now)
        if decision is None:
            return run
        tx.set_run(decision.run)
        if decision.job_fields:
            tx.update_job(run.job_id, decision.job_fields)
        return decision.run

    return store.transact(body)


def open_window(store: Store, *, minutes: object, note: object, by: str = "",
                scope: Scope = EVERYTHING, mode: object = "skip", now: datetime) -> Window:
    """A maintenance window from now for N minutes, beside the declared ones."""
    window = adhoc_window(minutes=minutes, note=note, by=by, now=now, scope=scope, mode=mode)
    store.change_adhoc_windows(lambda stored: with_window(stored, window, now))
    return window


def end_window(store: Store, window_id: str, *, now: datetime) -> None:
    """End an ad-hoc window now (a declared one ends in the config)."""
    store.change_adhoc_windows(lambda stored: without_window(stored, window_id, now))


def encode_cursor(run_id: str | None) -> str | None:
    return None if run_id is None else base64.urlsafe_b64encode(run_id.encode()).decode()


def decode_cursor(cursor: str | None) -> str | None:
    if cursor is None or cursor == "":
        return None
    try:
        run_id = base64.urlsafe_b64decode(cursor.encode("ascii")).decode()
    except (ValueError, UnicodeError):
        raise ValidationError("cursor", "is not a cursor this API gave") from None
    if not run_id or len(run_id) > 500 or "/" in run_id:
        raise ValidationError("cursor", "is not a cursor this API gave")
    return run_id


def runs_page(store: Store, *, job_id: str | None = None, states: tuple[str, ...] = (),
              since: datetime | None = None, until: datetime | None = None,
              cursor: str | None = None, limit: int = 50) -> tuple[list[Run], str | None]:
    """Runs newest first, `limit` at a time: (the page, the cursor of the next one)."""
    for i, state in enumerate(states):
        if state not in RUN_STATUSES:
            raise ValidationError(f"state[{i}]" if len(states) > 1 else "state",
                                  f"must be one of {', '.join(RUN_STATUSES)}")
    if since is not None and until is not None and until <= since:
        raise ValidationError("until", "must be after since")
    page, last = store.runs_page(job_id=job_id, statuses=tuple(states), since=since,
                                 until=until, after=decode_cursor(cursor), limit=limit)
    return page, encode_cursor(last)
