"""The rules of a run's life, as pure decisions: the documents a step has read, the
attempt, the kill switches and one `now` in; what to write out.

    decide_claim      run_task, before the sync: start it, or not, and why
    decide_finish     run_task, after the sync: succeeded, retrying or failed
    decide_recovery   recover_stuck_runs: a run whose lease ran out
A run that waits on an engine is polled by freshet.loop.poll (core.waiting decides).

A step's transaction reads the documents, calls one of these, and hands the decision
to core.commit, which makes the whole commit of it (the run, `job_fields`, the
datasets after `datasets`, a lane and its next run, triggered runs, the tasks to send:
`send` is the run's own). tests/unit/test_lifecycle.py covers every rule without
an emulator.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Generic, TypeVar

from freshet.core import bookkeeping, catchup, runs, timing
from freshet.core.control import Control
from freshet.core.external import deadline_of, poll_delay
from freshet.core.models import Dataset, External, Job, LastRun, Run, RunStatus, TriggerSource
from freshet.core.settings import Settings
from freshet.core.text import MAX_ERROR_CHARS, shorten
from freshet.core.timeutil import human_duration
from freshet.core.windows import Occurrence

# A run that waits for another run of its job is sent again this much later.
OVERLAP_RETRY_DELAY = timedelta(seconds=30)


class ClaimVerdict(StrEnum):
    START = "start"  # this delivery runs the attempt
    DUPLICATE = "duplicate"  # the run is running or finished: a repeated delivery
    STALE = "stale"  # the attempt already ran, or it lies beyond the run's allowance
    ORPHAN = "orphan"  # no such run, or its job is gone
    DISABLED = "disabled"  # a kill switch has the kind off: the run fails unrun
    TOO_LATE = "too_late"  # it cannot start within the job's max_lateness: skipped unrun
    MAINTENANCE = "maintenance"  # a maintenance window keeps the job from starting
    DEFER = "defer"  # another run of the job holds it: a new task later


class FinishVerdict(StrEnum):
    SUCCEEDED = "succeeded"
    RETRYING = "retrying"  # a transient failure with attempts left
    FAILED = "failed"  # a permanent failure, or the last attempt
    TAKEN_OVER = "taken_over"  # recovery declared the attempt stuck meanwhile
    WAITING = "waiting"  # the sync started work on an engine: polls follow


class RecoveryVerdict(StrEnum):
    REDISPATCHED = "redispatched"  # queued or retrying, its task never arrived: send again
    REPOLLED = "repolled"  # waiting, its poll task never arrived: poll again (never a failure)
    STUCK_RETRIED = "stuck_retried"  # running without heartbeat: the next attempt is sent
    STUCK_FAILED = "stuck_failed"  # the same on the last attempt: the run fails as stuck
    SETTLED = "settled"  # finished or renewed since the sweep's query: nothing to do


class DatasetEvent(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"


@dataclass(frozen=True)
class DatasetChange:
    """What a decision does to each dataset the run produces (core.bookkeeping's rules).
    `slot` and `past` carry the run's slot and whether it is for a past slot; an
    ending's `started_at` is its attempt's start, recorded with it (the start itself is
    marked on the job: start_mark)."""

    event: DatasetEvent
    run_id: str
    at: datetime
    error: str | None = None
    records: Mapping[str, int] = field(default_factory=dict)
    slot: datetime | None = None
    past: bool = False
    watermarks: Mapping[str, datetime] = field(default_factory=dict)  # data as of, per key
    started_at: datetime | None = None

    def apply(self, dataset: Dataset) -> Dataset:
        if self.started_at is not None and not self.past:
            dataset = bookkeeping.apply_started(dataset, self.run_id, self.started_at)
        match self.event:
            case DatasetEvent.SUCCESS:
                return bookkeeping.apply_success(dataset, self.run_id, self.at,
                                                 self.records.get(dataset.key),
                                                 self.watermarks.get(dataset.key),
                                                 slot=self.slot, past=self.past)
            case DatasetEvent.FAILURE:
                return bookkeeping.apply_failure(dataset, self.run_id, self.at,
                                                 self.error or "failed", slot=self.slot,
                                                 past=self.past)


def _ended(event: DatasetEvent, run: Run, at: datetime, *, error: str | None = None,
           records: Mapping[str, int] | None = None,
           watermarks: Mapping[str, datetime] | None = None) -> DatasetChange | None:
    """A run's ending, for its datasets. A backfill's runs leave them alone here: its
    parallel lanes would all write the same dataset documents (a hot spot). Each lane
    keeps its newest success instead, and recovery's sweep folds them into the datasets
    (freshet.loop.backfill.fold_successes): one writer, no contention."""
    if not runs.holds_job(run):
        return None
    return DatasetChange(event, run.id, at, error=error, records=records or {},
                         watermarks=watermarks or {}, slot=run.scheduled_for,
                         past=run.trigger_source.past_slot, started_at=_newest_start(run))


def _newest_start(run: Run) -> datetime | None:
    """The newest start of any of the run's attempts: a retry on a slower clock may
    start "before" the attempt it retries (each function has its own clock)."""
    starts = [a.started_at for a in run.attempts if a.started_at is not None]
    return max([*starts, run.started_at] if run.started_at else starts, default=None)


def start_mark(run: Run, now: datetime) -> dict:
    """The job's fields that mark its datasets running (not for a past slot's run: it
    is not a refresh of the data in use). One document, however many datasets."""
    if run.trigger_source.past_slot:
        return {}
    return {"refresh_run_id": run.id, "refresh_started_at": now,
            "refresh_ended_run_id": None}


def end_mark(run: Run) -> dict:
    """The job's field that ends the run's running mark, written blind: a later run's
    mark (another refresh id) stays."""
    return {"refresh_ended_run_id": run.id}


@dataclass(frozen=True)
class Send:
    """A task to create once the decision has committed (to the run's pool queue)."""

    attempt: int
    dispatch: int
    at: datetime | None = None  # schedule_time; None: now
    queue: str | None = None  # None: the default queue
    poll: int | None = None  # a poll of a waiting run (its number), not a delivery


V = TypeVar("V", ClaimVerdict, FinishVerdict, RecoveryVerdict)


@dataclass(frozen=True)
class Decision(Generic[V]):
    verdict: V
    detail: str
    run: Run | None = None  # the run document to write
    job_fields: dict | None = None  # fields to update on the job document
    datasets: DatasetChange | None = None  # applied to each of run.produces
    send: Send | None = None


# -- claim ---------------------------------------------------------------------


def holder_to_check(run: Run | None, job: Job | None) -> str | None:
    """The other run a claim must read: the one the job document says is holding it."""
    if run is None or job is None or job.allow_overlap or not runs.holds_job(run):
        return None
    return job.running_run_id if job.running_run_id not in (None, run.id) else None


def decide_claim(run: Run | None, job: Job | None, holder: Run | None, attempt: int,
                 control: Control, now: datetime, settings: Settings
                 ) -> Decision[ClaimVerdict]:
    """May this delivery of `attempt` run the sync? `holder`: holder_to_check's run."""
    if run is None:
        return Decision(ClaimVerdict.ORPHAN, "unknown run")
    if run.terminal or run.status.under_way:
        return Decision(ClaimVerdict.DUPLICATE, f"run already {run.status}")
    due = next_attempt(run)
    if attempt < due:
        return Decision(ClaimVerdict.STALE, f"attempt {attempt} already ran")
    if attempt > run.max_attempts:
        return Decision(ClaimVerdict.STALE, f"attempt {attempt} is beyond the run's "
                                            f"{run.max_attempts} attempt(s)")
    if job is None:
        return Decision(ClaimVerdict.ORPHAN, f"job {run.job_id!r} no longer exists")
    if not control.kind_enabled(run.kind):
        why = f" ({control.reason})" if control.reason else ""
        error = f"kind {run.kind!r} is switched off by a kill switch{why}; the sync did not run"
        return Decision(ClaimVerdict.DISABLED, "kind disabled by a kill switch",
                        run=runs.failed(run, now, error))
    window = control.maintenance.blocking_job(job.id, job.produces, now,
                                              under_way=bool(run.attempts))
    if window is not None:
        return _not_started(run, job, window, now)
    if too_late(run, job, now):
        reason = (f"{catchup.lateness_reason(job)}: it would have started "
                  f"{human_duration(now - run.scheduled_for)} late")
        return Decision(ClaimVerdict.TOO_LATE, reason, run=runs.skipped(run, now, reason),
                        job_fields=_job_fields(run, {
                            "last_run_at": now, "last_run_id": run.id,
                            "last_run_status": LastRun.SKIPPED, "updated_at": now}))
    if _held_by_another(job, holder, now):
        # Wait for the other run: a new task (a new name) later, not a burnt attempt.
        later = runs.redispatched(run, now, OVERLAP_RETRY_DELAY + runs.queued_grace(settings),
                                  next_attempt=run.status == RunStatus.RETRYING)
        return Decision(ClaimVerdict.DEFER,
                        "another run of this job is running; retried later", run=later,
                        send=Send(later.attempt_number, later.dispatches,
                                  now + OVERLAP_RETRY_DELAY, later.queue))
    begun = runs.started(run, due, now, runs.stuck_threshold(job, settings))
    holds = not job.allow_overlap and runs.holds_job(run)
    # The datasets are not written here: they are marked running on the job.
    fields = {"running_run_id": run.id} if holds else {}
    fields.update(start_mark(run, now))
    return Decision(ClaimVerdict.START, f"attempt {begun.attempt_number} started", run=begun,
                    job_fields=fields or None)


LATENESS_SOURCES = (TriggerSource.SCHEDULE, TriggerSource.CATCHUP, TriggerSource.UPSTREAM)


def too_late(run: Run, job: Job, now: datetime) -> bool:
    """max_lateness: the first start of a scheduled, catch-up or triggered run, later
    than this after its slot, never happens (retries of a started run do)."""
    return (job.max_lateness is not None and run.trigger_source in LATENESS_SOURCES
            and not run.attempts and now - run.scheduled_for > job.max_lateness)


def _job_fields(run: Run, fields: dict | None) -> dict | None:
    """A backfill's runs leave the job's last_* alone (they are about past slots, and
    parallel lanes would all write the one job document)."""
    return fields if runs.holds_job(run) else None


def next_attempt(run: Run) -> int:
    """The attempt a delivery starts: the run's own count, not the delivery's. Cloud
    Tasks raises a task's retry count on every 5xx, also when the delivery never got to
    run the sync (a timeout, a lost conflict); only the run knows which attempts ran."""
    return run.attempt_number + (1 if run.status == RunStatus.RETRYING else 0)


def _not_started(run: Run, job: Job, window: Occurrence, now: datetime
                 ) -> Decision[ClaimVerdict]:
    """A run a maintenance window stops. One that never started just ends; one whose
    earlier attempt failed (a `skip` window) ends failed, as its last attempt would."""
    if not run.attempts:
        error = f"not started: {window.describe()}"
        return Decision(ClaimVerdict.MAINTENANCE, error, run=runs.failed(run, now, error))
    return _failed(run, job, f"not retried: {window.describe()}", now,
                   ClaimVerdict.MAINTENANCE)


def _held_by_another(job: Job, holder: Run | None, now: datetime) -> bool:
    return (not job.allow_overlap and holder is not None and holder.id == job.running_run_id
            and holder.status.under_way
            and (holder.lease_expires_at or now) > now)


# -- finish --------------------------------------------------------------------


@dataclass(frozen=True)
class SyncOutcome:
    """What the sync did: records per dataset, or an error and whether it is permanent."""

    records: Mapping[str, int] | None = None
    error: str | None = None
    permanent: bool = False
    watermarks: Mapping[str, datetime] | None = None  # what the data is current to
    started: External | None = None  # the sync started this work on an engine: wait


def decide_finish(run: Run | None, claimed_attempt: int, job: Job | None,
                  outcome: SyncOutcome, now: datetime, settings: Settings
                  ) -> Decision[FinishVerdict]:
    """The run as it is now (re-read), the attempt this process ran, and how it went."""
    if run is None or not run.status.under_way or run.attempt_number != claimed_attempt:
        return Decision(FinishVerdict.TAKEN_OVER, "attempt was taken over by recovery")
    if outcome.started is not None and outcome.error is None:
        return _waiting(run, outcome.started, now, settings)
    if outcome.error is None:
        records = {k: int(v) for k, v in (outcome.records or {}).items()}
        watermarks = dict(outcome.watermarks or {})
        done = runs.succeeded(run, now, records, watermarks)
        job_fields = _last_run(job, run, LastRun.SUCCEEDED, None, now)
        if job_fields is not None:
            job_fields.update(timing.after_success(job, done))
        return Decision(FinishVerdict.SUCCEEDED, f"attempt {run.attempt_number} succeeded",
                        run=done, job_fields=job_fields,
                        datasets=_ended(DatasetEvent.SUCCESS, run, runs.as_of(run, now),
                                        records=records, watermarks=watermarks))
    if not outcome.permanent and runs.attempts_left(run):
        return Decision(FinishVerdict.RETRYING,
                        f"attempt {run.attempt_number} failed: {outcome.error}",
                        run=runs.retrying(run, now, outcome.error, runs.queued_grace(settings)),
                        job_fields=_released(job, run))
    return _failed(run, job, outcome.error, now, FinishVerdict.FAILED)


def _waiting(run: Run, started: External, now: datetime,
             settings: Settings) -> Decision[FinishVerdict]:
    """The work runs on its engine: the run waits, its first poll is sent (10 s on,
    never after the job's timeout)."""
    timeout = None if started.timeout_s is None else timedelta(seconds=started.timeout_s)
    deadline = deadline_of(now, timeout)
    first = now + poll_delay(0, timedelta(seconds=settings.poll_cap_s))
    waits = runs.waiting(run, replace(
        started, submitted_at=now, deadline=deadline, polls=0,
        next_poll_at=first if deadline is None else min(first, deadline)),
        runs.queued_grace(settings))
    return Decision(FinishVerdict.WAITING,
                    f"attempt {run.attempt_number} waits on {started.engine} "
                    f"{started.external_id}", run=waits,
                    send=poll_send(waits))


def poll_send(run: Run) -> Send:
    """The task of a waiting run's next poll: named by run, attempt and poll number."""
    external = run.external
    return Send(run.attempt_number, run.dispatches, external.next_poll_at, run.queue,
                poll=external.polls + 1)


def _failed(run: Run, job: Job | None, error: str, now: datetime, verdict: V, *,
            stuck: bool = False, job_read: bool = True) -> Decision[V]:
    return Decision(verdict, f"run failed after {run.attempt_number} attempt(s): {error}",
                    run=runs.failed(run, now, error, stuck=stuck),
                    job_fields=_last_run(job, run, LastRun.FAILED, error, now, read=job_read),
                    datasets=_ended(DatasetEvent.FAILURE, run, now, error=error))


def _released(job: Job | None, run: Run) -> dict | None:
    """The job's hold, cleared when this run lets go of it."""
    return {"running_run_id": None} if job is not None and job.running_run_id == run.id \
        else None


def _last_run(job: Job | None, run: Run, status: LastRun, error: str | None,
              now: datetime, *, read: bool = True) -> dict | None:
    """The job's last_* fields. `read=False`: the job was not read (recovery of a run of
    a recurring job, see recovery_reads_job): the same fields, written blind, without
    the ones that depend on the job (its hold, a one-time job's completion)."""
    if read and job is None:
        return None
    fields = {"last_run_at": now, "last_run_id": run.id, "last_run_status": status,
              "last_error": shorten(error, MAX_ERROR_CHARS), "updated_at": now,
              **end_mark(run)}
    if read:
        fields.update(_released(job, run) or {})
        if job.schedule.one_time and job.status == "active":
            fields.update(status="completed", completed_at=now)
    return _job_fields(run, fields)


# -- recovery ------------------------------------------------------------------


def recovery_reads_job(run: Run | None) -> bool:
    """Must recovery read this run's job? Only for a running run that started before
    runs recorded their stuck threshold, or whose job is one-time (completed only while
    it is active). Otherwise the run says all recovery needs: the job's last_* fields
    are written blind, and its hold (`running_run_id`) is left as it is. That hold is
    harmless: the next claim of the job reads the run it names, finds it no longer
    running and takes the hold; a retry of this run holds it already. A backfill lane's
    run is read with its job too: its ending releases the lane's next slot, a new run of
    the job."""
    return run is not None and run.status == RunStatus.RUNNING and (
        not run.stuck_threshold_minutes or run.one_time or run.backfill_id is not None)


def decide_recovery(run: Run | None, job: Job | None, now: datetime, settings: Settings,
                    *, job_read: bool = True) -> Decision[RecoveryVerdict]:
    """A run the sweep found with its lease run out, as it is now: re-read, or as the
    sweep's query found it when the write is a compare-and-set on that version.
    `job_read=False`: the job was not read (recovery_reads_job said it need not be)."""
    if run is None or run.terminal or run.lease_expires_at is None or \
            run.lease_expires_at > now:
        return Decision(RecoveryVerdict.SETTLED, "handled meanwhile")
    grace = runs.queued_grace(settings)
    if run.status == RunStatus.WAITING and run.external is not None:
        # Its poll task was lost: poll again now. Waiting is never a failure.
        external = replace(run.external, next_poll_at=now, polls=run.external.polls + 1)
        again = runs.waiting(run, external, grace)
        return Decision(RecoveryVerdict.REPOLLED, "its poll never arrived; polled again",
                        run=again, send=poll_send(again))
    if run.status in (RunStatus.QUEUED, RunStatus.RETRYING):
        again = runs.redispatched(run, now, grace, next_attempt=run.status == RunStatus.RETRYING)
        return Decision(RecoveryVerdict.REDISPATCHED, "its task never arrived; sent again",
                        run=again, send=Send(again.attempt_number, again.dispatches,
                                             queue=again.queue))
    threshold = runs.recorded_threshold(run, job, settings)
    error = (f"stuck: no heartbeat for {int(threshold.total_seconds() // 60)} min "
             f"(last at {run.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC); attempt "
             f"{run.attempt_number} of {run.max_attempts} abandoned")
    if not runs.attempts_left(run):
        return _failed(run, job, error, now, RecoveryVerdict.STUCK_FAILED, stuck=True,
                       job_read=job_read)
    again = runs.redispatched(runs.retrying(run, now, error, grace, stuck=True), now, grace,
                              next_attempt=True)
    job_fields = None if job_read and job is None else {
        "last_error": error, "updated_at": now, **end_mark(run),
        **((_released(job, run) if job_read else None) or {})}
    return Decision(RecoveryVerdict.STUCK_RETRIED, error, run=again,
                    job_fields=_job_fields(run, job_fields),
                    datasets=_ended(DatasetEvent.FAILURE, run, now, error=error),
                    send=Send(again.attempt_number, again.dispatches, queue=again.queue))
