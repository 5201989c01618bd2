"""run_task's step: run one attempt of one run, at most once, and record the outcome.

Cloud Tasks delivers at least once, so every delivery first claims the run in a
transaction: a finished run, a run already running, or a stale attempt is a no-op
answered 2xx. The sync runs outside any transaction; its outcome, the job's
last_* fields and every produced dataset commit together in one transaction.
Each transaction reads, asks core (lifecycle, then commit) for the whole commit,
persists it as it is, and after it lands sends the tasks it asks for.
"""

import logging
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import assert_never

from freshet.core import runs
from freshet.core.commit import Commit
from freshet.core.control import Control
from freshet.core.errors import PermanentError, ValidationError
from freshet.core.lifecycle import (
    ClaimVerdict,
    FinishVerdict,
    SyncOutcome,
    decide_claim,
    decide_finish,
    holder_to_check,
)
from freshet.core.models import External, Job, Run
from freshet.core.secrets import redact, secret_values
from freshet.core.settings import Settings
from freshet.core.text import MAX_LOGGED_CHARS, clip
from freshet.core.timeutil import utcnow
from freshet.gcp.storage import Sink, snapshot_sink
from freshet.gcp.store import Store, Tx
from freshet.gcp.tasks import TaskQueue
from freshet.loop.engines import Engines, process_engines
from freshet.loop.followups import end, send_tasks
from freshet.loop.poll import cancel_unrecorded
from freshet.loop.registry import SyncContext, as_result, kind_for
from freshet.loop.syncs.base import Started

log = logging.getLogger(__name__)

HEARTBEAT_MIN_INTERVAL_S = 10.0


@dataclass
class Outcome:
    """What run_task answers: `status` is the HTTP code (5xx asks Cloud Tasks to retry)."""

    status: int
    state: str  # succeeded | failed | retrying | waiting | noop | deferred | skipped
    detail: str = ""

    def to_dict(self) -> dict:
        return {"state": self.state, "detail": self.detail}


def handle_one(store: Store, queue: TaskQueue, run_id: str, attempt: int, *,
               now: datetime, settings: Settings, clock=utcnow,
               snapshots: Sink | None = None, engines: Engines | None = None) -> Outcome:
    """Claim, run and finish one attempt. `clock` is read after the sync returns;
    `snapshots` is the process's snapshot sink (freshet.ops.deps; else one for this call);
    `engines` the engine kinds' adapters (else this process's)."""
    control = store.control()
    claim, job = store.transact(lambda tx: _claim(tx, run_id, attempt, control, now, settings))
    send_tasks(queue, claim.tasks)
    match claim.verdict:
        case ClaimVerdict.START:
            pass
        case ClaimVerdict.DEFER:
            return Outcome(200, "deferred", claim.detail)
        case ClaimVerdict.DISABLED | ClaimVerdict.MAINTENANCE:
            return Outcome(200, "failed", claim.detail)
        case ClaimVerdict.TOO_LATE:
            return Outcome(200, "skipped", claim.detail)
        case ClaimVerdict.DUPLICATE | ClaimVerdict.STALE | ClaimVerdict.ORPHAN:
            return Outcome(200, "noop", claim.detail)
        case _:
            assert_never(claim.verdict)
    outcome = _execute(store, claim.run, job, now, settings, control,
                       snapshots or snapshot_sink(settings), engines)
    finished_at = clock()
    finish = store.transact(lambda tx: _finish(tx, claim.run, outcome, finished_at, settings))
    send_tasks(queue, finish.tasks)
    if outcome.started is not None and finish.verdict == FinishVerdict.TAKEN_OVER:
        # cancelled while it submitted: nothing will poll the work, so stop it now
        cancel_unrecorded(store, claim.run.id, outcome.started,
                          engines or process_engines(settings))
    return _answer(finish)


def _claim(tx: Tx, run_id: str, attempt: int, control: Control, now: datetime,
           settings: Settings) -> tuple[Commit[ClaimVerdict], Job | None]:
    run = tx.get_run(run_id)
    unsettled = run is not None and not run.terminal and not run.status.under_way
    job = tx.get_job(run.job_id) if unsettled else None
    # The job document names the run holding it: one document read, no query, so
    # claims of other jobs never lock each other out.
    holder_id = holder_to_check(run, job)
    holder = tx.get_run(holder_id) if holder_id else None
    decision = decide_claim(run, job, holder, attempt, control, now, settings)
    # A run that ends here unrun (switched off, too late) frees its backfill lane; a
    # switched-off kind's lane waits for the switch (recovery's sweep) rather than
    # failing every slot behind it.
    return end(tx, decision, run and run.job_id, job, now, settings, what="deferred run",
               release_next=decision.verdict != ClaimVerdict.DISABLED), job


def _finish(tx: Tx, claimed: Run, outcome: SyncOutcome, now: datetime,
            settings: Settings) -> Commit[FinishVerdict]:
    run = tx.get_run(claimed.id)
    job = tx.get_job(claimed.job_id)
    decision = decide_finish(run, claimed.attempt_number, job, outcome, now, settings)
    return end(tx, decision, claimed.job_id, job, now, settings)


def _answer(finish: Commit[FinishVerdict]) -> Outcome:
    match finish.verdict:
        case FinishVerdict.SUCCEEDED:
            return Outcome(200, "succeeded", finish.detail)
        case FinishVerdict.WAITING:  # 2xx: the engine has the work, polls follow
            return Outcome(200, "waiting", finish.detail)
        case FinishVerdict.RETRYING:  # 5xx: Cloud Tasks retries with the queue's backoff
            return Outcome(503, "retrying", finish.detail)
        case FinishVerdict.FAILED:
            return Outcome(200, "failed", finish.detail)
        case FinishVerdict.TAKEN_OVER:  # recovery's verdict stands
            return Outcome(200, "noop", finish.detail)
        case _:
            assert_never(finish.verdict)


# -- execute -------------------------------------------------------------------


def _execute(store: Store, run: Run, job: Job, now: datetime, settings: Settings,
             control: Control, snapshots: Sink, engines: Engines | None) -> SyncOutcome:
    kind = kind_for(run.kind)
    handler = kind.run if kind is not None else None
    if handler is None:
        return SyncOutcome(error=f"no sync is registered for kind {run.kind!r}", permanent=True)
    lease = runs.stuck_threshold(job, settings)
    ctx = SyncContext(
        job_id=job.id, run_id=run.id, attempt=run.attempt_number, params=dict(job.params),
        produces=list(run.produces), deadline=now + lease, slot=run.scheduled_for,
        interval_start=run.interval_start, trigger_source=str(run.trigger_source),
        upstream_versions=dict(run.upstream_versions),
        heartbeat=_Heartbeat(store, run.id, run.attempt_number, lease),
        logger=logging.getLogger(f"freshet.sync.{run.kind}"),
        snapshot=_snapshot_writer(snapshots, job.id), egress=control.egress,
        # only an engine kind gets (and makes) the engines' adapters
        engines=engines or process_engines(settings) if kind.finish else None,
        unrecorded_attempts=runs.unrecorded_attempts(run),
    )
    secrets = secret_values(job)  # errors are stored, shown and logged: never with these
    try:
        value = handler(ctx)
        if isinstance(value, Started):
            return SyncOutcome(started=_external(value))
        result = as_result(value)
        return SyncOutcome(records=result.records, watermarks={
            k: v.astimezone(UTC) for k, v in result.watermarks.items()})
    except (PermanentError, ValidationError) as exc:
        return SyncOutcome(error=redact(_describe(exc), secrets), permanent=True)
    except Exception as exc:  # transient by definition: retried while attempts remain
        log.warning("run %s attempt %s failed: %s", run.id, run.attempt_number,
                    clip(redact(traceback.format_exc(), secrets), MAX_LOGGED_CHARS))
        return SyncOutcome(error=redact(_describe(exc), secrets))


def _external(started: Started) -> External:
    """What the run records of work started on an engine (core.lifecycle adds the times)."""
    timeout = started.timeout
    return External(engine=started.engine, external_id=started.external_id,
                    location=started.location, link=started.link, adopted=started.adopted,
                    timeout_s=None if timeout is None else int(timeout.total_seconds()))


def _snapshot_writer(snapshots: Sink, job_id: str):
    """ctx.snapshot(name, data, content_type): kept under <job id>/ in the snapshot sink."""
    def write(name: str, data: bytes, content_type: str) -> None:
        snapshots.write(f"{job_id}/{name}", data, content_type)

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
        renewed = runs.renewed(tx.get_run(self._run_id), self._attempt, utcnow(), self._lease)
        if renewed is not None:
            tx.set_run(renewed)
        return renewed is not None
