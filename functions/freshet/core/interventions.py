"""What an operator does by hand, as pure rules: pause (with a reason, until a time),
resume (by hand, or by itself once `until` passes), cancel a run, retry a failed run,
and open a maintenance window now. Documents and `now` in; what to write out.

    pause    an active job stops being scheduled; the reason is required, `until` is
             optional. Pausing is runtime state: apply never touches it.
    resume   by hand, or the tick once `paused_until` has passed (due_to_resume).
    cancel   a queued or running run ends `cancelled`: a terminal state, so a later
             delivery of its task is a no-op (lifecycle.decide_claim answers DUPLICATE),
             a running sync's ending is discarded (decide_finish answers TAKEN_OVER)
             and recovery leaves it alone. Its lease is released with the job's hold;
             its datasets are not marked failed (nothing went wrong with the data: an
             operator stopped it) and the job's last_* fields stay as they were.
    retry    a failed (or cancelled) run is run again as a new run of the same slot,
             whose id derives from the failed run's: retrying twice, or from two
             consoles at once, creates one run (its create() is the dedup), and a
             retry never starts while the failed run could still be running.
"""

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from freshet.core import runs
from freshet.core.errors import Conflict, NotFound, ValidationError
from freshet.core.lifecycle import end_mark
from freshet.core.models import Job, JobStatus, Run, RunStatus, TriggerSource
from freshet.core.schedules import next_after
from freshet.core.text import printable, shorten
from freshet.core.timeutil import parse_datetime, parse_duration
from freshet.core.windows import MAX_DURATION, Mode, Scope, Window

MAX_REASON_CHARS = 500
EVERYTHING = Scope()
MAX_PAUSE = timedelta(days=366)
MAX_ADHOC_WINDOWS = 20
MAX_WINDOW_MINUTES = 24 * 60


# -- pause and resume ------------------------------------------------------------------

def check_reason(value: object, field_name: str = "reason") -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field_name, "is required: say why (it is shown to everyone)")
    if len(value) > MAX_REASON_CHARS:
        raise ValidationError(field_name, f"must be at most {MAX_REASON_CHARS} characters")
    return value.strip()


def parse_until(value: object, now: datetime, field_name: str = "until") -> datetime | None:
    """An ISO 8601 time with a zone, or a duration from now ('2h', '3d'); in the future,
    at most a year away. None or '' for no end."""
    if value is None or value == "":
        return None
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, str) and text and text[0].isdigit() and text[-1] in "smhdw":
        until = now + parse_duration(text, field_name)
    else:
        until = parse_datetime(value, field_name)
    if until <= now:
        raise ValidationError(field_name, "must lie in the future")
    if until - now > MAX_PAUSE:
        raise ValidationError(field_name, "must be within a year")
    return until


def paused(job: Job, *, reason: str, until: datetime | None, by: str, now: datetime) -> Job:
    """An active job paused; a paused one gets the new reason and until."""
    if job.status not in (JobStatus.ACTIVE, JobStatus.PAUSED):
        raise Conflict(f"job {job.id!r} is {job.status}; only an active job can be paused")
    return replace(job, status=JobStatus.PAUSED, paused_reason=reason, paused_until=until,
                   paused_by=by, paused_at=now if job.status == JobStatus.ACTIVE
                   else job.paused_at or now, updated_at=now)


def resumed(job: Job, now: datetime) -> Job:
    """Scheduled again from `now` on: slots missed while paused are skipped; a one-time
    job whose moment passed while it was paused runs once, at once (or is completed,
    if its run happened meanwhile): none is left active with nothing to run."""
    if job.status == JobStatus.ACTIVE:
        return job
    if job.status != JobStatus.PAUSED:
        raise Conflict(f"job {job.id!r} is {job.status}; only a paused job can be resumed")
    cleared = replace(job, paused_reason="", paused_until=None, paused_by="", paused_at=None,
                      updated_at=now)
    if job.schedule.recurring:
        return replace(cleared, status=JobStatus.ACTIVE, next_run_at=next_after(job.schedule, now))
    if job.last_run_id is not None:  # its one run happened while it was paused
        return replace(cleared, status=JobStatus.COMPLETED, completed_at=now, next_run_at=None)
    if job.schedule.run_at is None:  # triggered only: nothing to schedule
        return replace(cleared, status=JobStatus.ACTIVE)
    return replace(cleared, status=JobStatus.ACTIVE, next_run_at=job.schedule.run_at)


def due_to_resume(job: Job | None, now: datetime) -> bool:
    """A pause whose `until` has come: the tick resumes it (at `until` or just after)."""
    return (job is not None and job.status == JobStatus.PAUSED
            and job.paused_until is not None and job.paused_until <= now)


# -- cancel ----------------------------------------------------------------------------

# A waiting run's work on its engine is cancelled by its next poll (freshet.loop.poll).
CANCELLABLE = (RunStatus.QUEUED, RunStatus.RETRYING, RunStatus.RUNNING, RunStatus.WAITING)


@dataclass(frozen=True)
class Cancel:
    run: Run
    job_fields: dict | None  # the job's hold released, when this run held it


def decide_cancel(run: Run, job: Job | None, *, by: str, now: datetime) -> Cancel | None:
    """None: the run was cancelled already (a repeated request changes nothing)."""
    if run.status == RunStatus.CANCELLED:
        return None
    if run.status not in CANCELLABLE:
        raise Conflict(f"run {run.id!r} is {run.status}; only a queued or running run can "
                       "be cancelled")
    if run.backfill_id is not None:
        raise Conflict(f"run {run.id!r} belongs to backfill {run.backfill_id!r}: cancel the "
                       "backfill instead (its lanes pace its runs)")
    who = f" by {printable(by)}" if by else ""
    reason = f"cancelled{who} while {run.status}"
    ended = runs.cancelled(run, now, reason)
    attempts = [replace(a, finished_at=now, error=reason) if a.outcome is None
                and a.finished_at is None else a for a in ended.attempts]
    fields = {"running_run_id": None} if job is not None and job.running_run_id == run.id \
        else {}
    if job is not None and job.refresh_run_id == run.id:
        fields.update(end_mark(run))  # its datasets no longer show it running
    return Cancel(replace(ended, attempts=attempts),
                  {**fields, "updated_at": now} if fields else None)


# -- retry -----------------------------------------------------------------------------

RETRYABLE = (RunStatus.FAILED, RunStatus.CANCELLED)


def retry_run_id(run: Run) -> str:
    """The one retry of `run`: derived from its id, so asking twice makes one run."""
    digest = hashlib.sha256(f"retry|{run.id}".encode()).hexdigest()[:24]
    return f"{run.job_id}__r{digest}"


def check_retry(run: Run, job: Job) -> None:
    if run.status not in RETRYABLE:
        raise Conflict(f"run {run.id!r} is {run.status}; only a failed or cancelled run can "
                       "be retried")
    if job.status == JobStatus.ARCHIVED:
        raise Conflict(f"job {job.id!r} is archived; restore it before retrying its runs")


def retry_of(run: Run, job: Job, *, now: datetime, settings) -> Run:
    """A new run for the failed run's slot and data interval, from attempt 1."""
    check_retry(run, job)
    again = runs.new_run(job, retry_run_id(run), run.scheduled_for, source=TriggerSource.RETRY,
                         now=now, settings=settings)
    return replace(again, interval_start=run.interval_start,
                   lease_expires_at=now + runs.queued_grace(settings))


# -- ad-hoc maintenance ----------------------------------------------------------------

def adhoc_window(*, minutes: object, note: object, by: str, now: datetime,
                 scope: Scope = EVERYTHING, mode: object = "skip") -> Window:
    """A one-off window from now for N minutes (declared windows stay in the config)."""
    if isinstance(minutes, str) and minutes.strip().isdigit():
        minutes = int(minutes.strip())
    if isinstance(minutes, bool) or not isinstance(minutes, int) \
            or not 1 <= minutes <= MAX_WINDOW_MINUTES:
        raise ValidationError("minutes", f"must be a whole number from 1 to "
                                         f"{MAX_WINDOW_MINUTES}")
    if not isinstance(note, str) or not note.strip() or len(note) > MAX_REASON_CHARS:
        raise ValidationError("note", f"is required: 1-{MAX_REASON_CHARS} characters")
    if mode not in tuple(Mode):
        raise ValidationError("mode", "must be skip or drain")
    end = now + min(timedelta(minutes=minutes), MAX_DURATION)
    who = f" (by {shorten(by, 200)})" if by else ""
    return Window(id=f"adhoc-{now:%Y%m%d-%H%M%S}", note=note.strip() + who, start=now, end=end,
                  scope=scope, mode=Mode(mode))


def with_window(stored: list[dict] | None, window: Window, now: datetime) -> list[dict]:
    """The ad-hoc windows to store: those not over yet, plus `window` (at most 20)."""
    kept = [w for w in _windows(stored) if w.end is not None and w.end > now
            and w.id != window.id]
    if len(kept) >= MAX_ADHOC_WINDOWS:
        raise Conflict(f"{len(kept)} ad-hoc windows are open already (at most "
                       f"{MAX_ADHOC_WINDOWS}); end one first")
    return [w.to_doc() for w in [*kept, window]]


def without_window(stored: list[dict] | None, window_id: str, now: datetime) -> list[dict]:
    """End an ad-hoc window now: it is kept, ending at `now` (the record stays)."""
    found = _windows(stored)
    if not any(w.id == window_id for w in found):
        raise NotFound("window", window_id)
    return [(replace(w, end=now) if w.id == window_id and w.end > now else w).to_doc()
            for w in found if w.end > now or w.id == window_id]


def _windows(stored: list[dict] | None) -> list[Window]:
    return [Window.from_doc(d) for d in stored or ()]
