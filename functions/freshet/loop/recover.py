"""recover_stuck_runs's step: every unfinished run whose lease ran out gets a verdict.

- running past its lease (no heartbeat within the job's stuck threshold): the attempt
  is marked stuck, the datasets record the failure, and the next attempt is sent if
  attempts remain, else the run fails as stuck;
- queued or retrying past its lease (its task never arrived): a new task is sent;
- active jobs whose next_run_at is long past are reported: the scheduler is not ticking.
One indexed query on `lease_expires_at` finds them all; cost is O(expired), not O(runs).
"""

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from freshet.core import bookkeeping, runs
from freshet.core.models import Dataset, Run
from freshet.core.settings import Settings
from freshet.gcp.store import Store, Tx
from freshet.gcp.tasks import TaskQueue
from freshet.loop.run import fail_run

log = logging.getLogger(__name__)


@dataclass
class SweepResult:
    expired: int = 0
    stuck_retried: list[str] = field(default_factory=list)
    stuck_failed: list[str] = field(default_factory=list)
    redispatched: list[str] = field(default_factory=list)
    enqueue_failed: list[str] = field(default_factory=list)
    not_ticking: list[str] = field(default_factory=list)
    deferred: int = 0

    def to_dict(self) -> dict:
        return {
            "expired": self.expired, "stuck_retried": self.stuck_retried[:50],
            "stuck_failed": self.stuck_failed[:50], "redispatched": self.redispatched[:50],
            "enqueue_failed": self.enqueue_failed[:50], "not_ticking": self.not_ticking[:50],
            "deferred": self.deferred,
        }


@dataclass
class _Verdict:
    kind: str  # stuck_retried | stuck_failed | redispatched
    run: Run


def sweep_once(store: Store, queue: TaskQueue, *, now: datetime, settings: Settings,
               budget_s: float | None = None, limit: int = 500) -> SweepResult:
    started = time.monotonic()
    budget = settings.tick_budget_s if budget_s is None else budget_s
    result = SweepResult()
    expired = store.expired_runs(now, limit)
    result.expired = len(expired)
    for index, run in enumerate(expired):
        if time.monotonic() - started > budget:
            result.deferred = len(expired) - index
            break
        verdict = store.transact(lambda tx, run_id=run.id: _recover(tx, run_id, now, settings))
        if verdict is not None:
            _act(queue, verdict, result)
    late = now - timedelta(seconds=settings.not_ticking_after_s)
    result.not_ticking = [job.id for job in store.due_jobs(late, 100)]
    if result.not_ticking:
        log.error("scheduler not ticking? %d active jobs are overdue by more than %s s: %s",
                  len(result.not_ticking), settings.not_ticking_after_s,
                  ", ".join(result.not_ticking[:10]))
    return result


def _act(queue: TaskQueue, verdict: _Verdict, result: SweepResult) -> None:
    run = verdict.run
    getattr(result, verdict.kind).append(run.id)
    if verdict.kind == "stuck_failed":
        return
    try:
        queue.enqueue(run.id, run.attempt_number, dispatch=run.dispatches)
    except Exception:  # the lease was renewed: the next sweep tries again
        log.exception("enqueue failed for run %s", run.id)
        result.enqueue_failed.append(run.id)


def _recover(tx: Tx, run_id: str, now: datetime, settings: Settings) -> _Verdict | None:
    run = tx.get_run(run_id)
    if run is None or run.terminal or run.lease_expires_at is None or run.lease_expires_at > now:
        return None  # handled meanwhile
    grace = timedelta(seconds=settings.queued_grace_s)
    if run.status in ("queued", "retrying"):
        again = runs.redispatched(run, now, grace, next_attempt=run.status == "retrying")
        tx.set_run(again)
        return _Verdict("redispatched", again)
    job = tx.get_job(run.job_id)
    datasets = [tx.get_dataset(k) or Dataset(key=k) for k in run.produces]
    threshold = runs.stuck_threshold(job, settings)
    error = (f"stuck: no heartbeat for {int(threshold.total_seconds() // 60)} min "
             f"(last at {run.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC); attempt "
             f"{run.attempt_number} of {run.max_attempts} abandoned")
    if not runs.attempts_left(run):
        fail_run(tx, run, job, datasets, error, now, stuck=True)
        return _Verdict("stuck_failed", run)
    for dataset in datasets:
        tx.set_dataset(bookkeeping.apply_failure(dataset, run.id, now, error))
    if job is not None:
        fields = {"last_error": error, "updated_at": now}
        if job.running_run_id == run.id:
            fields["running_run_id"] = None
        tx.update_job(job.id, fields)
    again = runs.redispatched(runs.retrying(run, now, error, grace, stuck=True), now, grace,
                              next_attempt=True)
    tx.set_run(again)
    return _Verdict("stuck_retried", again)
