"""Run identity and the pure transitions of a run's state machine.

    queued -> running -> succeeded | failed
                 \\-> retrying -> running ...     (transient failure, attempts remain)

Every run that is not finished has `lease_expires_at`: the moment by which
something must have happened to it (its task arrived, its heartbeat renewed, its
retry arrived). Recovery queries that one field; a finished run has none.
"""

import hashlib
from dataclasses import replace
from datetime import datetime, timedelta
from enum import StrEnum

from freshet.core.errors import ValidationError
from freshet.core.models import Attempt, AttemptOutcome, Job, Run, RunStatus, TriggerSource
from freshet.core.settings import Settings
from freshet.core.text import MAX_ERROR_CHARS, shorten

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
            settings: Settings, idempotency_key: str | None = None) -> Run:
    return Run(
        id=run_id, job_id=job.id, kind=job.kind, scheduled_for=slot,
        trigger_source=TriggerSource(source), status=RunStatus.QUEUED, attempt_number=1,
        max_attempts=job.max_attempts, produces=list(job.produces),
        idempotency_key=idempotency_key, created_at=now, task_name=task_id(run_id, 1),
        enqueued_at=now, lease_expires_at=max(slot, now) + queued_grace(settings),
        one_time=not job.schedule.recurring,
    )


def started(run: Run, attempt: int, now: datetime, lease: timedelta) -> Run:
    history = [a for a in run.attempts if a.number != attempt]
    history.append(Attempt(number=attempt, started_at=now))
    return replace(run, status=RunStatus.RUNNING, attempt_number=attempt, started_at=now,
                   heartbeat_at=now, lease_expires_at=now + lease, finished_at=None,
                   attempts=history,
                   stuck_threshold_minutes=max(1, int(lease.total_seconds() // 60)))


def _close_attempt(run: Run, now: datetime, outcome: AttemptOutcome,
                   error: str | None) -> list[Attempt]:
    return [replace(a, finished_at=now, outcome=outcome, error=shorten(error, MAX_ERROR_CHARS))
            if a.number == run.attempt_number and a.outcome is None else a
            for a in run.attempts]


def succeeded(run: Run, now: datetime, records: dict[str, int]) -> Run:
    history = _close_attempt(run, now, AttemptOutcome.SUCCEEDED, None)
    return replace(run, status=RunStatus.SUCCEEDED, finished_at=now, lease_expires_at=None,
                   error=None, records=records, attempts=history)


def failed(run: Run, now: datetime, error: str, *, stuck: bool = False) -> Run:
    outcome = AttemptOutcome.STUCK if stuck else AttemptOutcome.FAILED
    return replace(run, status=RunStatus.FAILED, finished_at=now, lease_expires_at=None,
                   error=shorten(error, MAX_ERROR_CHARS), stuck=run.stuck or stuck,
                   attempts=_close_attempt(run, now, outcome, error))


def retrying(run: Run, now: datetime, error: str, wait: timedelta, *,
             stuck: bool = False) -> Run:
    """A transient failure with attempts left: the next attempt must arrive within `wait`."""
    outcome = AttemptOutcome.STUCK if stuck else AttemptOutcome.RETRYING
    return replace(run, status=RunStatus.RETRYING, lease_expires_at=now + wait,
                   error=shorten(error, MAX_ERROR_CHARS), stuck=run.stuck or stuck,
                   attempts=_close_attempt(run, now, outcome, error))


def redispatched(run: Run, now: datetime, wait: timedelta, *, next_attempt: bool) -> Run:
    """A new task: for the same attempt (it never arrived, or it waits for an overlapping
    run) or the next one."""
    attempt = run.attempt_number + (1 if next_attempt else 0)
    return replace(run, status=RunStatus.QUEUED, enqueued_at=now, lease_expires_at=now + wait,
                   attempt_number=attempt, dispatches=run.dispatches + 1,
                   task_name=task_id(run.id, attempt, run.dispatches + 1))


def attempts_left(run: Run) -> bool:
    return run.attempt_number < run.max_attempts
