"""run_task's other step: one poll of a waiting run's engine (a named follow-up task,
`{"run_id", "attempt", "poll"}`), and the commit of what it saw.

The poll itself runs outside any transaction (it calls Google); then one transaction
re-reads the run and, if this poll is still the one it waits for, commits the
decision core.waiting makes: the next poll (its task named by run, attempt and poll
number, so a duplicate dedupes) with the lease renewed, or the end, finished exactly
as run_task finishes a run (core.lifecycle.decide_finish, then loop.followups.end:
bookkeeping, watermarks, triggers, lanes). A transient 429/5xx is "poll again".

A timeout, a kill switch or a `skip` window cancels the work on the engine; the next
poll sees it cancelled and the run fails. A run an operator cancelled (or its
backfill) is already over: its next poll only cancels the work on the engine.
"""

import logging
from dataclasses import dataclass, replace
from datetime import datetime

from freshet.core.commit import Commit
from freshet.core.errors import NotFound, PermanentError, TransientError
from freshet.core.external import (
    EngineState,
    EngineStatus,
    PollAction,
    PollDecision,
    decide_poll,
    judge_poll_error,
)
from freshet.core.lifecycle import SyncOutcome
from freshet.core.models import External, Run, RunStatus
from freshet.core.settings import Settings
from freshet.core.timeutil import utcnow
from freshet.core.waiting import (
    cancel_reason,
    decide_ended,
    decide_polled,
    ended_outcome,
    is_current,
    poll_action,
    poll_cap,
    timeout_reason,
    unconfirmed_cancel,
)
from freshet.gcp.store import Store, Tx
from freshet.gcp.tasks import TaskQueue
from freshet.loop.engines import Engines, process_engines
from freshet.loop.followups import end, send_tasks
from freshet.loop.registry import kind_for

log = logging.getLogger(__name__)


@dataclass
class Polled:
    """What a poll answers (always 2xx: a poll that failed is polled again)."""

    status: int
    state: str  # waiting | succeeded | failed | retrying | cancelled | noop
    detail: str = ""

    def to_dict(self) -> dict:
        return {"state": self.state, "detail": self.detail}


def poll_one(store: Store, queue: TaskQueue, run_id: str, attempt: int, poll: int, *,
             now: datetime, settings: Settings, engines: Engines | None = None,
             clock=utcnow) -> Polled:
    engines = engines or process_engines(settings)
    run = store.get_run(run_id)
    if run is not None and run.status == RunStatus.CANCELLED and run.external is not None:
        return _cancel_cancelled(run, engines)
    if not is_current(run, attempt, poll):
        return Polled(200, "noop", "not the poll this run waits for")
    external = run.external
    status = unconfirmed_cancel(_poll(engines, run), external, now)
    wanted = cancel_reason(run, store.control(), now)
    decision = decide_poll(status, polls=poll, now=now, deadline=external.deadline,
                           cancel_requested=bool(wanted), cap=poll_cap(settings))
    action = poll_action(decision, external)
    if action == PollAction.FINISH:
        outcome = _outcome(store, run, decision.status, engines)
        made = store.transact(lambda tx: _end(tx, run, attempt, poll, outcome, clock(),
                                              settings))
        send_tasks(queue, made.tasks)
        verdict = made.verdict or "noop"
        return Polled(200, str(verdict), made.detail)
    asked = ""
    if action == PollAction.CANCEL:
        asked = _ask_cancel(engines, run, wanted or timeout_reason(external))
    made = store.transact(lambda tx: _wait(tx, run, attempt, poll, decision, now, settings,
                                           asked))
    send_tasks(queue, made.tasks)
    return Polled(200, "waiting" if made.verdict else "noop", made.detail)


def _poll(engines: Engines, run: Run) -> EngineStatus | None:
    """The engine's answer; None when the poll may pass next time (429, 5xx)."""
    try:
        return engines.poll(run.external)
    except TransientError as exc:
        log.warning("poll of %s failed transiently; polled again: %s", run.id, exc)
        return judge_poll_error(True, str(exc))
    except (PermanentError, NotFound) as exc:
        return judge_poll_error(False, str(exc))


def _ask_cancel(engines: Engines, run: Run, reason: str) -> str:
    """Ask the engine to stop the work: the reason, or "" if the ask did not get through
    (asked again at the next poll)."""
    try:
        engines.cancel(run.external)
    except (TransientError, PermanentError, NotFound) as exc:
        log.warning("cancelling %s on %s failed: %s", run.external.external_id,
                    run.external.engine, exc)
        return ""
    log.info("asked %s to cancel %s: %s", run.external.engine, run.external.external_id,
             reason)
    return reason


def _cancel_cancelled(run: Run, engines: Engines) -> Polled:
    """A waiting run cancelled by an operator (or with its backfill): stop its work."""
    asked = _ask_cancel(engines, run, run.error or "cancelled")
    return Polled(200, "cancelled", f"cancel asked of {run.external.engine}" if asked
                  else "the engine's cancel did not get through")


def cancel_work(run: Run, engines: Engines) -> bool:
    """An operator cancelled a waiting run: stop its work on the engine now, best effort
    (its next poll asks again). Whether the engine took the cancel."""
    return run.external is not None and bool(_ask_cancel(engines, run, run.error or
                                                         "cancelled"))


def cancel_unrecorded(store: Store, run_id: str, started: External, engines: Engines) -> bool:
    """Work a start submitted for a run that was cancelled meanwhile (its commit was
    refused, so no poll follows): cancel it on the engine. A run recovery took over
    keeps it: the next attempt adopts it."""
    run = store.get_run(run_id)
    if run is None or run.status != RunStatus.CANCELLED:
        return False
    return bool(_ask_cancel(engines, replace(run, external=started),
                            run.error or "cancelled"))


def _outcome(store: Store, run: Run, status: EngineStatus, engines: Engines) -> SyncOutcome:
    """The end as a run's outcome; a success carries what the kind reads of it."""
    if status.state != EngineState.SUCCEEDED:
        return ended_outcome(status, run.external)
    kind = kind_for(run.kind)
    job = store.get_job(run.job_id)
    if kind is None or kind.finish is None or job is None:
        return ended_outcome(status, run.external)
    try:
        result = kind.finish(dict(job.params), status, list(run.produces), engines)
    except Exception:  # the work succeeded; what it read of it is extra
        log.exception("reading the end of %s's work failed", run.id)
        return ended_outcome(status, run.external)
    return ended_outcome(status, run.external, result.records, result.watermarks)


def _wait(tx: Tx, seen: Run, attempt: int, poll: int, decision: PollDecision,
          now: datetime, settings: Settings, asked: str) -> Commit:
    run = tx.get_run(seen.id)
    if not is_current(run, attempt, poll):
        return Commit(verdict=None, detail="this poll was taken over")
    made = decide_polled(run, poll, decision, now, settings, cancel_asked=asked)
    return end(tx, made, run.job_id, None, now, settings, what="poll")


def _end(tx: Tx, seen: Run, attempt: int, poll: int, outcome: SyncOutcome, now: datetime,
         settings: Settings) -> Commit:
    run = tx.get_run(seen.id)
    if not is_current(run, attempt, poll):
        return Commit(verdict=None, detail="this poll was taken over")
    job = tx.get_job(run.job_id)
    decision = decide_ended(run, attempt, poll, job, outcome, now, settings)
    return end(tx, decision, run.job_id, job, now, settings)

