"""Run identity and the pure transitions of a run's state machine.

    queued -> running -> succeeded | failed
                 \\-> retrying -> running ...     (transient failure, attempts remain)
                 \\-> waiting -> succeeded | failed | retrying   (work on an engine)

Every run that is not finished has `lease_expires_at`: the moment by which
something must have happened to it (its task arrived, its heartbeat renewed, its
retry arrived). Recovery queries that one field; a finished run has none.
"""

import hashlib
from dataclasses import replace
from datetime import datetime, timedelta
from enum import StrEnum

from freshet.core.errors import ValidationError
from freshet.core.models import (
    MAX_ATTEMPTS,
    Attempt,
    AttemptOutcome,
    External,
    Job,
    Run,
    RunStatus,
    TriggerSource,
)
from freshet.core.schedules import previous_slot
from freshet.core.settings import Settings
from freshet.core.specs import pool_queue
from freshet.core.text import MAX_ERROR_CHARS, shorten
from freshet.core.values import INT64_MAX, is_int

MAX_KEY_CHARS = 200


class SlotClaim(StrEnum):
    """How the tick's compare-and-set of a job's slot went."""

    CLAIMED = "claimed"  # the job advanced and the slot's run was created, atomically
    LOST = "lost"  # the job changed since it was read: another writer came first
    EXISTS = "exists"  # the slot's run was there already (next_run_at moved back by hand)


def task_id(run_id: str, attempt: int, dispatch: int = 0) -> str:
    """`<hash>-<readable run id>-a<attempt>-d<dispatch>`: unique per dispatch of an attempt."""
    key = f"{run_id}|{attempt}|{dispatch}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    readable = "".join(c if c.isalnum() or c in "-_" else "-" for c in run_id)[:300]
    return f"{digest}-{readable}-a{attempt}-d{dispatch}"


def poll_task_id(run_id: str, attempt: int, poll: int) -> str:
    """The task of poll number `poll` of a waiting run's attempt: a duplicate of one
    poll has the same name (Cloud Tasks refuses it), the next poll a new one."""
    key = f"{run_id}|{attempt}|poll|{poll}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    readable = "".join(c if c.isalnum() or c in "-_" else "-" for c in run_id)[:300]
    return f"{digest}-{readable}-a{attempt}-p{poll}"


def scheduled_run_id(job_id: str, slot: datetime) -> str:
    """One run per job and slot: creating this document is the dedup."""
    return f"{job_id}__{slot:%Y%m%dT%H%M%S}Z"


def job_of_run(run_id: str) -> str:
    """The job a run id belongs to (every run id is `<job id>__<slot or key>`)."""
    return run_id.split("__", 1)[0]


def manual_run_id(job_id: str, now: datetime, idempotency_key: str | None) -> str:
    """Same key -> same run; no key -> one run per job per minute (double clicks)."""
    if idempotency_key is None:
        return f"{job_id}__m{now:%Y%m%dT%H%M}Z"
    if not isinstance(idempotency_key, str) or not 1 <= len(idempotency_key) <= MAX_KEY_CHARS:
        raise ValidationError("idempotency_key",
                              f"must be a string of 1-{MAX_KEY_CHARS} characters")
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]
    return f"{job_id}__k{digest}"


def stuck_threshold(job: Job | None, settings: Settings) -> timedelta:
    minutes = job.stuck_threshold_minutes if job and job.stuck_threshold_minutes else None
    return timedelta(minutes=minutes or settings.default_stuck_minutes)


def recorded_threshold(run: Run, job: Job | None, settings: Settings) -> timedelta:
    """The threshold the run's attempt started under; the job's for a run that started
    before runs recorded it."""
    if run.stuck_threshold_minutes:
        return timedelta(minutes=run.stuck_threshold_minutes)
    return stuck_threshold(job, settings)


def queued_grace(settings: Settings) -> timedelta:
    """A task should arrive within this (the queue's max backoff included); past it,
    recovery sends the attempt itself."""
    return timedelta(seconds=settings.queued_grace_s)


def new_run(job: Job, run_id: str, slot: datetime, *, source: TriggerSource, now: datetime,
            settings: Settings, idempotency_key: str | None = None,
            backfill_id: str | None = None, lane: int | None = None,
            upstream_versions: dict[str, str] | None = None, trigger_depth: int = 0) -> Run:
    """A queued run for `slot`, sent to its job's pool queue. Its data interval starts
    at the schedule's previous slot (a triggered run: the previous trigger)."""
    source = TriggerSource(source)
    start = job.last_triggered_at if source == TriggerSource.UPSTREAM else \
        previous_slot(job.schedule, slot)
    return Run(
        id=run_id, job_id=job.id, kind=job.kind, scheduled_for=slot,
        trigger_source=source, status=RunStatus.QUEUED, attempt_number=1,
        max_attempts=job.max_attempts, produces=list(job.produces),
        idempotency_key=idempotency_key, created_at=now, task_name=task_id(run_id, 1),
        enqueued_at=now, lease_expires_at=max(slot, now) + queued_grace(settings),
        queue=pool_queue(settings.queue, job.pool), interval_start=start,
        backfill_id=backfill_id, lane=lane, upstream_versions=dict(upstream_versions or {}),
        trigger_depth=trigger_depth, one_time=job.schedule.one_time,
        keep_days=settings.run_retention_days,
    )


def skipped_run(job: Job, slot: datetime, reason: str, *, now: datetime, settings: Settings,
                source: TriggerSource = TriggerSource.SCHEDULE) -> Run:
    """The record of a slot the catch-up policy or max_lateness passed over: finished,
    never run, never leased (recovery has nothing to do with it)."""
    run = Run(
        id=scheduled_run_id(job.id, slot), job_id=job.id, kind=job.kind, scheduled_for=slot,
        trigger_source=source, status=RunStatus.SKIPPED, attempt_number=1,
        max_attempts=job.max_attempts, produces=list(job.produces), task_name=None,
        created_at=now, error=reason, interval_start=None,
        keep_days=settings.run_retention_days,
    )
    return replace(run, **_end(run, now))


def _end(run: Run, now: datetime) -> dict:
    """Every ending's fields: when, and so when the TTL policy deletes the run."""
    return {"finished_at": now, "lease_expires_at": None,
            "expire_at": now + timedelta(days=run.keep_days)}


def skipped(run: Run, now: datetime, reason: str) -> Run:
    """A queued run that will not run (too late to start): it ends skipped."""
    return replace(run, status=RunStatus.SKIPPED, error=shorten(reason, MAX_ERROR_CHARS),
                   **_end(run, now))


def cancelled(run: Run, now: datetime, reason: str) -> Run:
    """A queued run of a cancelled backfill: it ends cancelled, unrun."""
    return replace(run, status=RunStatus.CANCELLED, error=shorten(reason, MAX_ERROR_CHARS),
                   **_end(run, now))


def holds_job(run: Run) -> bool:
    """Backfill runs are paced by their backfill (--max-parallel), not by the job's
    one-at-a-time hold: each loads its own slot."""
    return run.trigger_source != TriggerSource.BACKFILL


def as_of(run: Run, now: datetime) -> datetime:
    """When a success makes the data current to: a past slot's run, its slot."""
    return min(run.scheduled_for, now) if run.trigger_source.past_slot else now


def started(run: Run, attempt: int, now: datetime, lease: timedelta) -> Run:
    history = [a for a in run.attempts if a.number != attempt]
    history.append(Attempt(number=attempt, started_at=now))
    # Bounded by construction: never more entries than a run may have attempts, each
    # error at most MAX_ERROR_CHARS characters (tests/integration/test_document_bounds).
    history = history[-MAX_ATTEMPTS:]
    return replace(run, status=RunStatus.RUNNING, attempt_number=attempt, started_at=now,
                   heartbeat_at=now, lease_expires_at=now + lease, finished_at=None,
                   attempts=history,
                   stuck_threshold_minutes=max(1, int(lease.total_seconds() // 60)))


def _close_attempt(run: Run, now: datetime, outcome: AttemptOutcome,
                   error: str | None) -> list[Attempt]:
    return [replace(a, finished_at=now, outcome=outcome, error=shorten(error, MAX_ERROR_CHARS))
            if a.number == run.attempt_number and a.outcome is None else a
            for a in run.attempts]


def record_count(value: object) -> int | None:
    """A sync's record count as a dataset can store it: a whole number in int64, or None."""
    if not is_int(value) or not 0 <= value <= INT64_MAX:
        return None
    return value


def succeeded(run: Run, now: datetime, records: dict[str, int],
              watermarks: dict[str, datetime] | None = None) -> Run:
    """Only the datasets the run produces, with counts Firestore can hold: a sync's
    result is not allowed to grow the run document or break its write."""
    history = _close_attempt(run, now, AttemptOutcome.SUCCEEDED, None)
    kept = {k: record_count(records[k]) for k in run.produces if k in records}
    return replace(run, status=RunStatus.SUCCEEDED, **_end(run, now), error=None,
                   records={k: v for k, v in kept.items() if v is not None},
                   watermarks={k: v for k, v in (watermarks or {}).items()
                               if k in run.produces},
                   attempts=history)


def failed(run: Run, now: datetime, error: str, *, stuck: bool = False) -> Run:
    outcome = AttemptOutcome.STUCK if stuck else AttemptOutcome.FAILED
    return replace(run, status=RunStatus.FAILED, **_end(run, now),
                   error=shorten(error, MAX_ERROR_CHARS), stuck=run.stuck or stuck,
                   attempts=_close_attempt(run, now, outcome, error))


def retrying(run: Run, now: datetime, error: str, wait: timedelta, *,
             stuck: bool = False) -> Run:
    """A transient failure with attempts left: the next attempt must arrive within `wait`."""
    outcome = AttemptOutcome.STUCK if stuck else AttemptOutcome.RETRYING
    return replace(run, status=RunStatus.RETRYING, lease_expires_at=now + wait,
                   error=shorten(error, MAX_ERROR_CHARS), stuck=run.stuck or stuck,
                   attempts=_close_attempt(run, now, outcome, error))


def renewed(run: Run | None, attempt: int, now: datetime, lease: timedelta) -> Run | None:
    """A heartbeat: the run with its lease renewed, or None when the attempt is no
    longer the one running (finished, taken over by recovery, or gone)."""
    if run is None or run.status != RunStatus.RUNNING or run.attempt_number != attempt:
        return None
    return replace(run, heartbeat_at=now, lease_expires_at=now + lease)


def redispatched(run: Run, now: datetime, wait: timedelta, *, next_attempt: bool) -> Run:
    """A new task: for the same attempt (it never arrived, or it waits for an overlapping
    run) or the next one."""
    attempt = run.attempt_number + (1 if next_attempt else 0)
    return replace(run, status=RunStatus.QUEUED, enqueued_at=now, lease_expires_at=now + wait,
                   attempt_number=attempt, dispatches=run.dispatches + 1,
                   task_name=task_id(run.id, attempt, run.dispatches + 1))


def waiting(run: Run, external: External, grace: timedelta) -> Run:
    """The attempt's work runs on an engine: the run waits for its next poll, leased
    until that poll is due plus `grace` (past it, recovery polls again)."""
    return replace(run, status=RunStatus.WAITING, external=external,
                   lease_expires_at=external.next_poll_at + grace)


def unrecorded_attempts(run: Run) -> tuple[int, ...]:
    """Earlier attempts whose sync may have started work on an engine without recording
    it: abandoned by recovery (a crash between the submit and its commit), or failed
    transiently (a submit whose answer was lost: a 503 after BigQuery took the job). An
    engine kind adopts such work if it is running or succeeded, rather than start it
    again; work that failed is not adopted."""
    return tuple(a.number for a in run.attempts if a.number < run.attempt_number
                 and a.outcome in (AttemptOutcome.STUCK, AttemptOutcome.RETRYING))


def attempts_left(run: Run) -> bool:
    return run.attempt_number < run.max_attempts
