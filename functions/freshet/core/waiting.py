"""A waiting run's polls, as pure decisions: the run (re-read), the poll this task is,
what the engine said (core.external), the kill switches and one `now` in; the commit's
decision out.

    is_current        is this poll task the one the run waits for (else a stale duplicate)
    cancel_reason     a kill switch or a `skip` maintenance window says: cancel the work
    decide_polled     the engine is still at it (or was just asked to cancel): the next
                      poll, with the run's lease renewed
    ended_outcome     the engine's end as the SyncOutcome a run's finish takes
    unconfirmed_cancel  a cancel the engine has not confirmed after 10 minutes ends it
    decide_ended      that end, finished exactly as run_task finishes a run
                      (core.lifecycle.decide_finish): a retry's task is sent here, since
                      no delivery is there to answer 5xx
    poll_action       a cancel is asked of the engine once; then the run waits for it

A poll that fails transiently (429, 5xx) is a poll again, never a failure
(core.external.judge_poll_error); waiting itself never fails a run.
"""

from dataclasses import replace
from datetime import datetime, timedelta

from freshet.core import runs
from freshet.core.control import Control
from freshet.core.external import EngineState, EngineStatus, PollAction, PollDecision
from freshet.core.lifecycle import (
    Decision,
    FinishVerdict,
    Send,
    SyncOutcome,
    decide_finish,
    poll_send,
)
from freshet.core.models import External, Job, Run, RunStatus
from freshet.core.settings import Settings
from freshet.core.text import MAX_ERROR_CHARS, shorten


def poll_cap(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.poll_cap_s)


def is_current(run: Run | None, attempt: int, poll: int) -> bool:
    """Whether poll number `poll` of `attempt` is the one the run waits for."""
    return (run is not None and run.status == RunStatus.WAITING and run.external is not None
            and run.attempt_number == attempt and run.external.polls + 1 == poll)


def cancel_reason(run: Run, control: Control, now: datetime) -> str:
    """Why the work must stop now ("" if it need not): its kind switched off, or a
    `skip` maintenance window over its job (a `drain` window lets work under way go on)."""
    if not control.kind_enabled(run.kind):
        why = f" ({control.reason})" if control.reason else ""
        return f"kind {run.kind!r} was switched off by a kill switch{why}"
    window = control.maintenance.blocking_job(run.job_id, run.produces, now, under_way=True)
    return "" if window is None else f"stopped by {window.describe()}"


def timeout_reason(external: External) -> str:
    return f"timed out: the job's timeout ({external.timeout_s} s) passed"


def decide_polled(run: Run, poll: int, decision: PollDecision, now: datetime,
                  settings: Settings, *, cancel_asked: str = "") -> Decision[FinishVerdict]:
    """Still running: count the poll, set the next one, renew the lease. `cancel_asked`:
    the engine was asked to cancel just now, and why (its next poll sees the end)."""
    external = replace(run.external, polls=poll, next_poll_at=decision.next_poll_at)
    if cancel_asked and not external.cancel_reason:
        external = replace(external, cancel_reason=shorten(cancel_asked, MAX_ERROR_CHARS),
                           cancelled_at=now)
    waits = runs.waiting(run, external, runs.queued_grace(settings))
    detail = f"poll {poll}: {decision.reason}" + (f"; cancel asked: {cancel_asked}"
                                                  if cancel_asked else "")
    return Decision(FinishVerdict.WAITING, detail, run=waits, send=poll_send(waits))


def ended_outcome(status: EngineStatus, external: External,
                  records: dict[str, int] | None = None,
                  watermarks: dict[str, datetime] | None = None) -> SyncOutcome:
    """A success with what the kind read of it; a cancelled execution (partial or not)
    is a failure for good, said with why Freshet cancelled it; another failure is
    transient: the next attempt starts new work."""
    match status.state:
        case EngineState.SUCCEEDED:
            return SyncOutcome(records=records or {}, watermarks=watermarks or {})
        case EngineState.CANCELLED:
            why = external.cancel_reason
            return SyncOutcome(error=f"{why} ({status.error})" if why else status.error,
                               permanent=True)
        case _:
            return SyncOutcome(error=status.error or f"{external.engine} work failed")


def decide_ended(run: Run, attempt: int, poll: int, job: Job | None, outcome: SyncOutcome,
                 now: datetime, settings: Settings) -> Decision[FinishVerdict]:
    """The end (seen by poll number `poll`), finished as run_task finishes a run; a
    retry's task is sent with it."""
    run = replace(run, external=replace(run.external, polls=poll, next_poll_at=None))
    decision = decide_finish(run, attempt, job, outcome, now, settings)
    if decision.verdict != FinishVerdict.RETRYING:
        return decision
    again = decision.run
    return replace(decision, send=Send(again.attempt_number + 1, again.dispatches,
                                       queue=again.queue))


# An engine asked to cancel that still says "running" this long after is not waited on
# for ever: the run ends failed, as cancelled.
CANCEL_GRACE = timedelta(minutes=10)


def unconfirmed_cancel(status: EngineStatus | None, external: External,
                       now: datetime) -> EngineStatus | None:
    """The poll's status, or a cancelled one when the engine has not confirmed a cancel
    asked more than CANCEL_GRACE ago."""
    asked = external.cancelled_at
    if (status is not None and status.finished) or asked is None or \
            now - asked < CANCEL_GRACE:
        return status
    return EngineStatus(EngineState.CANCELLED, f"the engine did not confirm the cancel "
                        f"asked at {asked:%Y-%m-%d %H:%M:%S} UTC")


def poll_action(decision: PollDecision, external: External) -> PollAction:
    """CANCEL once: after the engine was asked, the run waits for it to report the end."""
    if decision.action == PollAction.CANCEL and external.cancelled_at is not None:
        return PollAction.WAIT
    return decision.action
