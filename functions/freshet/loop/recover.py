"""recover_stuck_runs's step: every unfinished run whose lease ran out gets a verdict.

- running past its lease (no heartbeat within the job's stuck threshold): the attempt
  is marked stuck, the datasets record the failure, and the next attempt is sent if
  attempts remain, else the run fails as stuck;
- queued or retrying past its lease (its task never arrived): a new task is sent;
- waiting on an engine past its lease (its poll task was lost): it is polled again,
  under a new poll number; waiting never fails a run;
- active jobs whose next_run_at is long past are reported: the scheduler is not ticking;
- backfill lanes with nothing in flight get their next run (the backstop of the pacing
  that finishing runs do: a crash between commits, a kind switched back on).
One indexed query on `lease_expires_at` finds them all; cost is O(expired), not O(runs).

Each verdict is decided on the run as the query found it and committed only if the run
is still that version (a compare-and-set, like the tick's claim), so the run is not
read twice; the run carries what recovery needs from its job, so the job is not read
either (core.lifecycle.recovery_reads_job says when it must be). A stuck run with one
dataset costs its query read and the dataset's read. If the run changed meanwhile,
or its job is gone, the verdict is decided again in a transaction that reads them.
"""

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import assert_never

from freshet.core.commit import Commit
from freshet.core.lifecycle import (
    RecoveryVerdict,
    decide_recovery,
    recovery_reads_job,
)
from freshet.core.models import Run, RunStatus
from freshet.core.settings import Settings
from freshet.gcp.store import Store, Tx
from freshet.gcp.tasks import TaskQueue
from freshet.loop.backfill import sweep_backfills
from freshet.loop.followups import end, send_tasks

log = logging.getLogger(__name__)


@dataclass
class SweepResult:
    expired: int = 0
    stuck_retried: list[str] = field(default_factory=list)
    stuck_failed: list[str] = field(default_factory=list)
    redispatched: list[str] = field(default_factory=list)
    repolled: list[str] = field(default_factory=list)
    enqueue_failed: list[str] = field(default_factory=list)
    not_ticking: list[str] = field(default_factory=list)
    backfill_runs: list[str] = field(default_factory=list)  # released by the backstop
    deferred: int = 0

    def to_dict(self) -> dict:
        return {
            "expired": self.expired, "stuck_retried": self.stuck_retried[:50],
            "stuck_failed": self.stuck_failed[:50], "redispatched": self.redispatched[:50],
            "repolled": self.repolled[:50],
            "enqueue_failed": self.enqueue_failed[:50], "not_ticking": self.not_ticking[:50],
            "backfill_runs": self.backfill_runs[:50], "deferred": self.deferred,
        }


def sweep_once(store: Store, queue: TaskQueue, *, now: datetime, settings: Settings,
               budget_s: float | None = None, limit: int = 500) -> SweepResult:
    started = time.monotonic()
    budget = settings.tick_budget_s if budget_s is None else budget_s
    result = SweepResult()
    expired = store.expired_runs_versioned(now, limit)
    result.expired = len(expired)
    for index, (run, version) in enumerate(expired):
        if time.monotonic() - started > budget:
            result.deferred = len(expired) - index
            break
        made = _recover_run(store, run, version, now, settings)
        _act(run, made, send_tasks(queue, made.tasks), result)
    late = now - timedelta(seconds=settings.not_ticking_after_s)
    result.not_ticking = [job.id for job in store.due_jobs(late, 100)]
    if result.not_ticking:
        log.error("scheduler not ticking? %d active jobs are overdue by more than %s s: %s",
                  len(result.not_ticking), settings.not_ticking_after_s,
                  ", ".join(result.not_ticking[:10]))
    result.backfill_runs = sweep_backfills(store, queue, now=now, settings=settings)
    return result


def _act(run: Run, made: Commit[RecoveryVerdict], failed: list[str],
         result: SweepResult) -> None:
    run_id = run.id
    match made.verdict:
        case RecoveryVerdict.SETTLED:
            return
        case RecoveryVerdict.REDISPATCHED:
            result.redispatched.append(run_id)
        case RecoveryVerdict.REPOLLED:
            result.repolled.append(run_id)
        case RecoveryVerdict.STUCK_RETRIED:
            result.stuck_retried.append(run_id)
        case RecoveryVerdict.STUCK_FAILED:
            result.stuck_failed.append(run_id)
        case _:
            assert_never(made.verdict)
    # A failed enqueue leaves the lease renewed: the next sweep tries again.
    if run_id in failed:
        result.enqueue_failed.append(run_id)


def _recover_run(store: Store, run: Run, version: datetime, now: datetime,
                 settings: Settings) -> Commit[RecoveryVerdict]:
    """Decide on the run as the sweep's query found it (a compare-and-set on `version`),
    or, when the job must be read or the run changed meanwhile, read both again."""
    if not recovery_reads_job(run):
        decided = store.transact_if_current(
            lambda tx: _recover_as_found(tx, run, version, now, settings))
        if decided is not None:
            return decided
    return store.transact(lambda tx: _recover(tx, run.id, run.job_id, now, settings))


def _recover_as_found(tx: Tx, run: Run, version: datetime, now: datetime,
                      settings: Settings) -> Commit[RecoveryVerdict]:
    decision = decide_recovery(run, None, now, settings, job_read=False)
    return end(tx, decision, run.job_id, None, now, settings, run_version=version,
               what="recovered run")


def _recover(tx: Tx, run_id: str, job_id: str, now: datetime,
             settings: Settings) -> Commit[RecoveryVerdict]:
    run = tx.get_run(run_id)
    # The job is needed for a running run only (its stuck threshold, its hold).
    job = tx.get_job(job_id) if run is not None and run.status == RunStatus.RUNNING else None
    decision = decide_recovery(run, job, now, settings)
    return end(tx, decision, job_id, job, now, settings, what="recovered run")  # + its lane
