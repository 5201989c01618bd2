"""run_task's step: run one attempt of one run, at most once, and record the outcome.

Cloud Tasks delivers at least once, so every delivery first claims the run in a
transaction: a finished run, a run already running, or a stale attempt is a no-op
answered 2xx. The sync runs outside any transaction; its outcome, the job's
last_* fields and every produced dataset commit together in one transaction.
"""

import logging
import threading
import time
import traceback
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from freshet.core import bookkeeping, runs
from freshet.core.control import Control
from freshet.core.errors import PermanentError
from freshet.core.models import Dataset, Job, Run
from freshet.core.secrets import redact, secret_values
from freshet.core.settings import Settings
from freshet.core.text import MAX_LOGGED_CHARS, clip
from freshet.core.timeutil import utcnow
from freshet.gcp.store import Store, Tx
from freshet.gcp.tasks import TaskQueue
from freshet.loop.registry import SyncContext, SyncResult, as_result, handler_for

log = logging.getLogger(__name__)

HEARTBEAT_MIN_INTERVAL_S = 10.0
OVERLAP_RETRY_DELAY = timedelta(seconds=30)


@dataclass
class Outcome:
    """What run_task answers: `status` is the HTTP code (5xx asks Cloud Tasks to retry)."""

    status: int
    state: str  # succeeded | failed | retrying | noop | deferred
    detail: str = ""

    def to_dict(self) -> dict:
        return {"state": self.state, "detail": self.detail}


@dataclass
class _Claim:
    outcome: Outcome | None = None
    run: Run | None = None
    job: Job | None = None
    defer: bool = False


def handle_one(store: Store, queue: TaskQueue, run_id: str, attempt: int, *,
               now: datetime, settings: Settings, clock=utcnow) -> Outcome:
    """Claim, run and finish one attempt. `clock` is read after the sync returns."""
    control = Control.from_doc(store.control())
    claim = store.transact(lambda tx: _claim(tx, run_id, attempt, now, settings, control))
    if claim.defer:
        try:
            queue.enqueue(run_id, claim.run.attempt_number, dispatch=claim.run.dispatches,
                          schedule_time=now + OVERLAP_RETRY_DELAY)
        except Exception:  # the run is queued with a lease: recovery sends it
            log.exception("enqueue failed for deferred run %s; recovery will send it", run_id)
        return Outcome(200, "deferred", "another run of this job is running; retried later")
    if claim.outcome is not None:
        return claim.outcome
    result, error, permanent = _execute(store, claim.run, claim.job, now, settings)
    finished_at = clock()
    return store.transact(
        lambda tx: _finish(tx, claim.run, result, error, permanent, finished_at, settings))


# -- claim ---------------------------------------------------------------------


def _claim(tx: Tx, run_id: str, attempt: int, now: datetime, settings: Settings,
           control: Control) -> _Claim:
    run = tx.get_run(run_id)
    if run is None:
        return _Claim(Outcome(200, "noop", f"unknown run {run_id!r}"))
    if run.terminal:
        return _Claim(Outcome(200, "noop", f"run already {run.status}"))
    if run.status == "running":
        return _Claim(Outcome(200, "noop", "run already running"))
    if attempt < run.attempt_number or (run.status == "retrying"
                                        and attempt == run.attempt_number):
        return _Claim(Outcome(200, "noop", f"attempt {attempt} already ran"))
    job = tx.get_job(run.job_id)
    if job is None:
        return _Claim(Outcome(200, "noop", f"job {run.job_id!r} no longer exists"))
    if not control.kind_enabled(run.kind):
        tx.set_run(runs.failed(run, now, _disabled_message(run.kind, control)))
        return _Claim(Outcome(200, "failed", "kind disabled by a kill switch"))
    holder = job.running_run_id
    if not job.allow_overlap and holder not in (None, run.id):
        # The job document names the run holding it: one document read, no query, so
        # claims of other jobs never lock each other out.
        other = tx.get_run(holder)
        if other is not None and other.status == "running" and (
                other.lease_expires_at or now) > now:
            # Wait for the other run: a new task (a new name) later, not a burnt attempt.
            run = runs.redispatched(run, now, OVERLAP_RETRY_DELAY + _grace(settings),
                                    next_attempt=run.status == "retrying")
            tx.set_run(run)
            return _Claim(run=run, defer=True)
    attempt = max(attempt, run.attempt_number)
    run = runs.started(run, attempt, now, runs.stuck_threshold(job, settings))
    datasets = [tx.get_dataset(k) or Dataset(key=k) for k in run.produces]
    tx.set_run(run)
    for dataset in datasets:
        tx.set_dataset(bookkeeping.apply_start(dataset, run.id, now))
    if not job.allow_overlap:
        tx.update_job(job.id, {"running_run_id": run.id})
    return _Claim(run=run, job=job)


def _disabled_message(kind: str, control: Control) -> str:
    why = f" ({control.reason})" if control.reason else ""
    return f"kind {kind!r} is switched off by a kill switch{why}; the sync did not run"


# -- execute -------------------------------------------------------------------


def _execute(store: Store, run: Run, job: Job, now: datetime, settings: Settings):
    handler = handler_for(run.kind)
    if handler is None:
        return None, f"no sync is registered for kind {run.kind!r}", True
    lease = runs.stuck_threshold(job, settings)
    ctx = SyncContext(
        job_id=job.id, run_id=run.id, attempt=run.attempt_number, params=dict(job.params),
        produces=list(run.produces), deadline=now + lease,
        heartbeat=_Heartbeat(store, run.id, run.attempt_number, lease),
        logger=logging.getLogger(f"freshet.sync.{run.kind}"),
        snapshot=_snapshot_writer(settings, job.id),
    )
    secrets = secret_values(job)  # errors are stored, shown and logged: never with these
    try:
        return as_result(handler(ctx)), None, False
    except PermanentError as exc:
        return None, redact(_describe(exc), secrets), True
    except Exception as exc:  # transient by definition: retried while attempts remain
        log.warning("run %s attempt %s failed: %s", run.id, run.attempt_number,
                    clip(redact(traceback.format_exc(), secrets), MAX_LOGGED_CHARS))
        return None, redact(_describe(exc), secrets), False


def _snapshot_writer(settings: Settings, job_id: str):
    """ctx.snapshot(name, data, content_type): kept under <job id>/ in the snapshot sink."""
    from freshet.gcp.storage import BucketSink, LocalSink, parse_bucket

    def write(name: str, data: bytes, content_type: str) -> None:
        if settings.snapshot_bucket:
            sink = BucketSink(*parse_bucket(settings.snapshot_bucket, "FRESHET_SNAPSHOT_BUCKET"))
        else:
            sink = LocalSink(settings.snapshot_dir)
        sink.write(f"{job_id}/{name}", data, content_type)

    return write


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Heartbeat:
    """ctx.heartbeat(): renews the lease, at most every 10 s, only while the run is ours."""

    def __init__(self, store: Store, run_id: str, attempt: int, lease: timedelta):
        self._store, self._run_id, self._attempt, self._lease = store, run_id, attempt, lease
        self._last = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> bool:
        with self._lock:
            if time.monotonic() - self._last < HEARTBEAT_MIN_INTERVAL_S:
                return True
            self._last = time.monotonic()
        return self._store.transact(self._renew)

    def _renew(self, tx: Tx) -> bool:
        run = tx.get_run(self._run_id)
        if run is None or run.status != "running" or run.attempt_number != self._attempt:
            return False
        now = utcnow()
        tx.set_run(replace(run, heartbeat_at=now, lease_expires_at=now + self._lease))
        return True


# -- finish --------------------------------------------------------------------


def _finish(tx: Tx, claimed: Run, result: SyncResult | None, error: str | None,
            permanent: bool, now: datetime, settings: Settings) -> Outcome:
    run = tx.get_run(claimed.id)
    if run is None or run.status != "running" or run.attempt_number != claimed.attempt_number:
        # Recovery declared this attempt stuck meanwhile; its verdict stands.
        return Outcome(200, "noop", "attempt was taken over by recovery")
    job = tx.get_job(run.job_id)
    datasets = [tx.get_dataset(k) or Dataset(key=k) for k in run.produces]
    if error is None:
        return _succeed(tx, run, job, datasets, result, now)
    if not permanent and runs.attempts_left(run):
        tx.set_run(runs.retrying(run, now, error, _grace(settings)))
        if job is not None and job.running_run_id == run.id:
            tx.update_job(job.id, {"running_run_id": None})
        return Outcome(503, "retrying", f"attempt {run.attempt_number} failed: {error}")
    return fail_run(tx, run, job, datasets, error, now)


def _grace(settings: Settings) -> timedelta:
    # A task should arrive within this (the queue's max backoff included); past it,
    # recovery sends the attempt itself.
    return timedelta(seconds=settings.queued_grace_s)


def _succeed(tx: Tx, run: Run, job: Job | None, datasets: list[Dataset],
             result: SyncResult, now: datetime) -> Outcome:
    records = {k: int(v) for k, v in result.records.items()}
    tx.set_run(runs.succeeded(run, now, records))
    for dataset in datasets:
        tx.set_dataset(bookkeeping.apply_success(dataset, run.id, now, records.get(dataset.key)))
    if job is not None:
        tx.update_job(job.id, _job_fields(job, run, "succeeded", None, now))
    return Outcome(200, "succeeded", f"attempt {run.attempt_number} succeeded")


def fail_run(tx: Tx, run: Run, job: Job | None, datasets: list[Dataset], error: str,
          now: datetime, *, stuck: bool = False) -> Outcome:
    tx.set_run(runs.failed(run, now, error, stuck=stuck))
    for dataset in datasets:
        tx.set_dataset(bookkeeping.apply_failure(dataset, run.id, now, error))
    if job is not None:
        tx.update_job(job.id, _job_fields(job, run, "failed", error, now))
    return Outcome(200, "failed", f"run failed after {run.attempt_number} attempt(s): {error}")


def _job_fields(job: Job, run: Run, status: str, error: str | None, now: datetime) -> dict:
    fields = {"last_run_at": now, "last_run_id": run.id, "last_run_status": status,
              "last_error": error[: runs.MAX_ATTEMPT_ERROR] if error else None,
              "updated_at": now}
    if job.running_run_id == run.id:
        fields["running_run_id"] = None
    if not job.schedule.recurring and job.status == "active":
        fields.update(status="completed", completed_at=now)
    return fields
